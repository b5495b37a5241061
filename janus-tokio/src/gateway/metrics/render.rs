//! The Prometheus text exposition (version 0.0.4) of [`Metrics`].

use std::{
    fmt::{Display, Write as _},
    sync::atomic::Ordering,
};

use janus_core::{CloseReason, relay::LinkCloseReason};

use super::{
    AdminRefusal, DropCause, Listener, Metrics, PushKind, PushOutcome, RedisOp, Refusal,
    ReloadResult, ResumeOutcome, TunnelFailure, load,
};
use janus_core::resume::ResumeRefusal;

/// The close reasons a handshake can end with, always exported (others appear once seen).
const HANDSHAKE_FAILURES: [CloseReason; 21] = {
    use CloseReason::*;
    [
        HandshakeTimeout,
        HandshakeEvicted,
        WsUpgradeRejected,
        WsProtocolError,
        WsTextMessage,
        WsInvalidUtf8,
        WsMessageTooBig,
        MalformedFrame,
        MalformedPacket,
        UnexpectedHandshakeSeq,
        EmptyToken,
        TimestampSkew,
        InvalidToken,
        TokenExpired,
        TokenReplayed,
        BadSignature,
        BadKeyLength,
        LowOrderPoint,
        PeerClosed,
        Shutdown,
        Drained,
    ]
};

/// The reasons another party closes a session for.
const KICKS: [CloseReason; 3] = [
    CloseReason::ConflictingLogin,
    CloseReason::AdminKickOut,
    CloseReason::Banned,
];

/// The cargo features this binary was built with, for `janus_build_info`.
fn features() -> &'static str {
    match (cfg!(feature = "etcd"), cfg!(feature = "otel")) {
        (true, true) => "etcd,otel",
        (true, false) => "etcd",
        (false, true) => "otel",
        (false, false) => "",
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one sample per value of a label.
    fn by<T: Copy>(
        &mut self,
        (name, kind, help): (&str, &str, &str),
        label: &str,
        values: &[T],
        text: impl Fn(T) -> &'static str,
        value: impl Fn(T) -> u64,
    ) {
        self.family(name, kind, help);
        for v in values {
            self.sample(name, &[(label, text(*v))], value(*v));
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = Out(String::with_capacity(16 * 1024));
        let relaxed = Ordering::Relaxed;
        o.family(
            "janus_build_info",
            "gauge",
            "The running build: version and cargo features.",
        );
        o.sample(
            "janus_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("features", features()),
            ],
            1,
        );
        let (hash, pending) = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        o.family(
            "janus_config_info",
            "gauge",
            "The live configuration: the sha256 of its file (first 16 hex digits).",
        );
        o.sample("janus_config_info", &[("hash", &hash)], 1);
        o.family(
            "janus_config_restart_pending",
            "gauge",
            "Changed configuration keys that take effect only after a restart.",
        );
        o.sample("janus_config_restart_pending", &[], pending);
        o.by(
            (
                "janus_config_reloads_total",
                "counter",
                "Configuration reloads (SIGHUP, POST /admin/reload), by result.",
            ),
            "result",
            ReloadResult::ALL,
            ReloadResult::as_str,
            |r| load(&self.reloads, r.index()),
        );
        o.family(
            "janus_draining",
            "gauge",
            "1 once the gateway drains (readiness fails, sessions are logged out).",
        );
        o.sample("janus_draining", &[], u8::from(self.draining.load(relaxed)));

        let listener = |f: fn(&super::ListenerCounters) -> i64| {
            move |l: Listener| {
                self.listeners
                    .get(l.index())
                    .map_or(0, |c| u64::try_from(f(c)).unwrap_or(0))
            }
        };
        o.by(
            (
                "janus_connections_active",
                "gauge",
                "Client connections open, by listener.",
            ),
            "listener",
            Listener::ALL,
            Listener::as_str,
            listener(|c| c.active.load(Ordering::Relaxed)),
        );
        o.by(
            (
                "janus_connections_total",
                "counter",
                "Client connections admitted, by listener.",
            ),
            "listener",
            Listener::ALL,
            Listener::as_str,
            listener(|c| i64::try_from(c.total.load(Ordering::Relaxed)).unwrap_or(i64::MAX)),
        );
        o.by(
            (
                "janus_connections_peak",
                "gauge",
                "Most client connections open at once since start, by listener.",
            ),
            "listener",
            Listener::ALL,
            Listener::as_str,
            listener(|c| c.peak.load(Ordering::Relaxed)),
        );
        o.by(
            (
                "janus_admission_refusals_total",
                "counter",
                "Connections refused before a session started, by cause.",
            ),
            "cause",
            Refusal::ALL,
            Refusal::as_str,
            |r| load(&self.refusals, r.index()),
        );
        o.family(
            "janus_handshakes_evicted_total",
            "counter",
            "Handshakes closed to give their slot to a newcomer: the pool was full and they had made the least progress.",
        );
        o.sample(
            "janus_handshakes_evicted_total",
            &[],
            self.evictions.load(relaxed),
        );

        o.family(
            "janus_handshakes_total",
            "counter",
            "Handshakes by result: ok, or the close reason of a connection that never authenticated.",
        );
        o.sample(
            "janus_handshakes_total",
            &[("result", "ok")],
            self.handshakes_ok.load(relaxed),
        );
        for reason in CloseReason::ALL {
            let n = load(&self.handshakes_failed, reason.index());
            if n > 0 || HANDSHAKE_FAILURES.contains(&reason) {
                o.sample("janus_handshakes_total", &[("result", reason.as_str())], n);
            }
        }
        o.family(
            "janus_sessions_open",
            "gauge",
            "Authenticated sessions open.",
        );
        o.sample("janus_sessions_open", &[], self.sessions_open.load(relaxed));
        o.by(
            (
                "janus_sessions_closed_total",
                "counter",
                "Sessions (and connections that never authenticated) closed, by reason.",
            ),
            "reason",
            &CloseReason::ALL,
            CloseReason::as_str,
            |r| load(&self.closed, r.index()),
        );
        o.by(
            (
                "janus_kicks_total",
                "counter",
                "Sessions closed by someone else: a newer login of the uid, an operator.",
            ),
            "reason",
            &KICKS,
            CloseReason::as_str,
            |r| load(&self.kicks, r.index()),
        );
        o.by(
            (
                "janus_resumes_total",
                "counter",
                "Session resumes: attempted (a ticket presented), and each one's end: succeeded, expired (its window had passed), refused (any other reason).",
            ),
            "outcome",
            &ResumeOutcome::ALL,
            ResumeOutcome::as_str,
            |o| self.resumes(o),
        );
        o.by(
            (
                "janus_resume_refusals_total",
                "counter",
                "Session resumes refused, by reason.",
            ),
            "reason",
            &ResumeRefusal::ALL,
            ResumeRefusal::as_str,
            |r| {
                ResumeRefusal::ALL
                    .iter()
                    .position(|x| *x == r)
                    .map_or(0, |i| load(&self.resume_refusals, i))
            },
        );
        o.family(
            "janus_sessions_parked",
            "gauge",
            "Sessions whose connection dropped, kept for their client to resume.",
        );
        o.sample("janus_sessions_parked", &[], self.parked.load(relaxed));
        o.by(
            ("janus_drops_total", "counter", "Traffic refused: sessions closed for rate or budget, commands dropped on full queues."),
            "cause",
            DropCause::ALL,
            DropCause::as_str,
            |c| load(&self.drops, c.index()),
        );
        for (name, help, inbound, outbound) in [
            (
                "janus_packets_total",
                "Frames from and to clients (handshake, requests, replies, pushes, logouts).",
                &self.packets_in,
                &self.packets_out,
            ),
            (
                "janus_bytes_total",
                "Bytes read from and written to clients.",
                &self.bytes_in,
                &self.bytes_out,
            ),
        ] {
            o.family(name, "counter", help);
            o.sample(name, &[("direction", "in")], inbound.load(relaxed));
            o.sample(name, &[("direction", "out")], outbound.load(relaxed));
        }

        self.render_tunnels(&mut o);
        self.render_pushes(&mut o);
        self.render_relay(&mut o);
        self.render_cluster(&mut o);
        o.by(
            (
                "janus_admin_refusals_total",
                "counter",
                "Admin API requests refused, by cause.",
            ),
            "cause",
            AdminRefusal::ALL,
            AdminRefusal::as_str,
            |r| load(&self.admin_refusals, r.index()),
        );
        if let Some(rss) = resident_memory_bytes() {
            o.family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            o.sample("process_resident_memory_bytes", &[], rss);
        }
        o.0
    }

    fn render_tunnels(&self, o: &mut Out) {
        o.family(
            "janus_tunnels_requested_total",
            "counter",
            "Tunnels sessions asked for (one per new (kind, oid) of a session).",
        );
        o.sample(
            "janus_tunnels_requested_total",
            &[],
            self.tunnels_requested.load(Ordering::Relaxed),
        );
        let backends: Vec<_> = self
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
            .collect();
        o.family(
            "janus_tunnel_opens_total",
            "counter",
            "Backend streams opened, by tunnel kind and backend.",
        );
        for ((kind, backend), c) in &backends {
            let labels = [("kind", kind.as_str()), ("backend", backend.as_str())];
            o.sample(
                "janus_tunnel_opens_total",
                &labels,
                c.opens.load(Ordering::Relaxed),
            );
        }
        o.family(
            "janus_tunnel_failures_total",
            "counter",
            "Tunnels that failed, by kind, backend (none: no backend) and stage.",
        );
        for ((kind, backend), c) in &backends {
            for stage in TunnelFailure::ALL {
                let labels = [
                    ("kind", kind.as_str()),
                    ("backend", backend.as_str()),
                    ("stage", stage.as_str()),
                ];
                o.sample(
                    "janus_tunnel_failures_total",
                    &labels,
                    load(&c.failures, stage.index()),
                );
            }
        }
        o.family(
            "janus_tunnels_active",
            "gauge",
            "Backend streams open, by tunnel kind and backend.",
        );
        for ((kind, backend), c) in &backends {
            let labels = [("kind", kind.as_str()), ("backend", backend.as_str())];
            o.sample(
                "janus_tunnels_active",
                &labels,
                c.active.load(Ordering::Relaxed),
            );
        }
        let latency: Vec<_> = self
            .latency
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
            .collect();
        let name = "janus_backend_latency_seconds";
        o.family(
            name,
            "histogram",
            "Backend round trip, request forwarded to reply back, by tunnel kind.",
        );
        for (kind, h) in &latency {
            let (buckets, sum, count) = h.snapshot();
            for (le, n) in &buckets {
                o.sample(
                    &format!("{name}_bucket"),
                    &[("kind", kind.as_str()), ("le", le.as_str())],
                    n,
                );
            }
            o.sample(&format!("{name}_sum"), &[("kind", kind.as_str())], sum);
            o.sample(&format!("{name}_count"), &[("kind", kind.as_str())], count);
        }
    }

    fn render_pushes(&self, o: &mut Out) {
        o.by(
            (
                "janus_push_requests_total",
                "counter",
                "Push requests (gRPC push service calls and Redis push messages), by kind.",
            ),
            "kind",
            PushKind::ALL,
            PushKind::as_str,
            |k| load(&self.push_requests, k.index()),
        );
        o.family(
            "janus_pushes_total",
            "counter",
            "Push packets per session, by kind and outcome.",
        );
        for kind in PushKind::ALL {
            for outcome in PushOutcome::ALL {
                let n = self
                    .pushes
                    .get(kind.index())
                    .map_or(0, |k| load(k, outcome.index()));
                o.sample(
                    "janus_pushes_total",
                    &[("kind", kind.as_str()), ("outcome", outcome.as_str())],
                    n,
                );
            }
        }
    }

    fn render_relay(&self, o: &mut Out) {
        let relay = &self.relay;
        if !relay.configured.load(Ordering::Relaxed) {
            return;
        }
        o.family(
            "janus_relay_links_open",
            "gauge",
            "Relay links from janus-mio edges open (authenticated or not).",
        );
        o.sample(
            "janus_relay_links_open",
            &[],
            relay.open.load(Ordering::Relaxed).max(0),
        );
        o.family(
            "janus_relay_links_accepted_total",
            "counter",
            "Relay links accepted (before authentication).",
        );
        o.sample(
            "janus_relay_links_accepted_total",
            &[],
            relay.accepted.load(Ordering::Relaxed),
        );
        o.family(
            "janus_relay_links_over_limit_total",
            "counter",
            "Relay links closed at accept because relay.max_links were open.",
        );
        o.sample(
            "janus_relay_links_over_limit_total",
            &[],
            relay.over_limit.load(Ordering::Relaxed),
        );
        o.by(
            (
                "janus_relay_links_refused_total",
                "counter",
                "Relay links refused before authentication (unknown key, bad version, garbage), by reason.",
            ),
            "reason",
            &LinkCloseReason::ALL,
            LinkCloseReason::as_str,
            |r| load(&relay.refused, r.index()),
        );
        o.by(
            (
                "janus_relay_links_closed_total",
                "counter",
                "Authenticated relay links that ended, by reason.",
            ),
            "reason",
            &LinkCloseReason::ALL,
            LinkCloseReason::as_str,
            |r| load(&relay.closed, r.index()),
        );
    }

    fn render_cluster(&self, o: &mut Out) {
        let relaxed = Ordering::Relaxed;
        if self.redis_configured.load(relaxed) {
            o.family(
                "janus_redis_up",
                "gauge",
                "1 while the Redis push subscription is connected.",
            );
            o.sample("janus_redis_up", &[], u8::from(self.redis_up.load(relaxed)));
            o.by(
                (
                    "janus_redis_errors_total",
                    "counter",
                    "Redis operations that failed, by operation (the gateway keeps serving).",
                ),
                "op",
                RedisOp::ALL,
                RedisOp::as_str,
                |op| load(&self.redis_errors, op.index()),
            );
        }
        let etcd = &self.etcd;
        if etcd.configured.load(relaxed) {
            o.family(
                "janus_etcd_up",
                "gauge",
                "1 while etcd discovery lists and watches without error.",
            );
            o.sample("janus_etcd_up", &[], u8::from(etcd.up.load(relaxed)));
            o.family(
                "janus_etcd_registered",
                "gauge",
                "1 while this gateway's key is registered in etcd.",
            );
            o.sample(
                "janus_etcd_registered",
                &[],
                u8::from(etcd.registered.load(relaxed)),
            );
            o.family(
                "janus_etcd_errors_total",
                "counter",
                "etcd failures: discovery (watch) and registration (register), by operation.",
            );
            o.sample(
                "janus_etcd_errors_total",
                &[("op", "watch")],
                etcd.watch_errors.load(relaxed),
            );
            o.sample(
                "janus_etcd_errors_total",
                &[("op", "register")],
                etcd.register_errors.load(relaxed),
            );
        }
    }
}

/// The process's resident set size, from `/proc/self/statm` (Linux; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every platform this is deployed on; reading it would need libc.
    Some(pages * 4096)
}
