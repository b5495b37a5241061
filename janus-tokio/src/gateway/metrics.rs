//! Prometheus metrics, kept as plain atomics and rendered as text on `/metrics`.
//!
//! Hand-rolled rather than a metrics crate: the set is small and fixed, every update on the hot
//! path is one relaxed atomic add, and the text format is simple.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
};

use janus_core::{CloseReason, relay::LinkCloseReason, session::SessionStats};

/// The gateway's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_tcp: AtomicU64,
    pub connections_ws: AtomicU64,
    /// Sessions that arrived over relay links (each also counts as a connection).
    pub connections_relay: AtomicU64,
    pub relay_links_accepted: AtomicU64,
    pub relay_links_open: AtomicI64,
    /// Links refused before authentication, by reason.
    relay_links_refused: [AtomicU64; LinkCloseReason::ALL.len()],
    /// Authenticated links that ended, by reason.
    relay_links_closed: [AtomicU64; LinkCloseReason::ALL.len()],
    pub connections_rejected: AtomicU64,
    pub ws_upgrades_rejected: AtomicU64,
    pub connections_open: AtomicI64,
    pub sessions_authenticated: AtomicU64,
    pub sessions_open: AtomicI64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub tunnels_opened: AtomicU64,
    pub tunnels_open: AtomicI64,
    pub tunnel_failures: AtomicU64,
    pub tunnel_no_backend: AtomicU64,
    pub tunnel_overflow: AtomicU64,
    pub pushes: AtomicU64,
    pub multicasts: AtomicU64,
    pub broadcasts: AtomicU64,
    pub push_unknown_uid: AtomicU64,
    pub push_delivered: AtomicU64,
    pub push_dropped: AtomicU64,
    pub push_too_large: AtomicU64,
    pub kicks_conflicting_login: AtomicU64,
    pub redis_errors: AtomicU64,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts one increment of `counter` (a field of this struct).
    pub fn inc(&self, counter: &AtomicU64) {
        inc(counter);
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a session's end by reason.
    pub fn closed(&self, reason: CloseReason) {
        if let Some(c) = self.closed.get(reason.index()) {
            inc(c);
        }
    }

    /// A relay link ended for `reason`; `authenticated` says whether it got that far (a link
    /// refused before is counted as a refusal).
    pub fn relay_link_closed(&self, reason: LinkCloseReason, authenticated: bool) {
        let counters = if authenticated {
            &self.relay_links_closed
        } else {
            &self.relay_links_refused
        };
        if let Some(c) = counters.get(reason.index()) {
            inc(c);
        }
    }

    /// Relay links refused for `reason` so far.
    pub fn relay_links_refused(&self, reason: LinkCloseReason) -> u64 {
        self.relay_links_refused
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Sessions closed for `reason` so far (tests and logs).
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// What a session moved since it was last exported.
    pub fn session_moved(&self, delta: &SessionStats) {
        for (counter, n) in [
            (&self.packets_in, delta.packets_in),
            (&self.packets_out, delta.packets_out),
            (&self.bytes_in, delta.bytes_in),
            (&self.bytes_out, delta.bytes_out),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// A connection task started.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection task ended.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session authenticated.
    pub fn session_opened(&self) {
        inc(&self.sessions_authenticated);
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An authenticated session ended.
    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A tunnel was opened for a session.
    pub fn tunnel_opened(&self) {
        inc(&self.tunnels_opened);
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A session's tunnel is gone.
    pub fn tunnel_closed(&self) {
        self.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let gauge = |g: &AtomicI64| g.load(Ordering::Relaxed);
        let counter = |out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            &mut out,
            "janus_connections_accepted_total",
            "Client connections accepted, by transport.",
            &[
                ("{transport=\"tcp\"}", get(&self.connections_tcp)),
                ("{transport=\"ws\"}", get(&self.connections_ws)),
                ("{transport=\"relay\"}", get(&self.connections_relay)),
            ],
        );
        counter(
            &mut out,
            "janus_relay_links_accepted_total",
            "Relay links from edges accepted (before authentication).",
            &[("", get(&self.relay_links_accepted))],
        );
        for (name, help, counters) in [
            (
                "janus_relay_links_refused_total",
                "Relay links refused before authentication (wrong key, bad version, garbage), by reason.",
                &self.relay_links_refused,
            ),
            (
                "janus_relay_links_closed_total",
                "Authenticated relay links that ended, by reason.",
                &self.relay_links_closed,
            ),
        ] {
            let samples: Vec<(String, u64)> = LinkCloseReason::ALL
                .iter()
                .map(|r| {
                    (
                        format!("{{reason=\"{}\"}}", r.as_str()),
                        counters.get(r.index()).map_or(0, get),
                    )
                })
                .collect();
            let refs: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            counter(&mut out, name, help, &refs);
        }
        counter(
            &mut out,
            "janus_connections_rejected_total",
            "Connections refused by admission control.",
            &[("", get(&self.connections_rejected))],
        );
        counter(
            &mut out,
            "janus_ws_upgrades_rejected_total",
            "WebSocket upgrades refused (path, origin, protocol).",
            &[("", get(&self.ws_upgrades_rejected))],
        );
        counter(
            &mut out,
            "janus_sessions_authenticated_total",
            "Handshakes that succeeded.",
            &[("", get(&self.sessions_authenticated))],
        );
        let closed: Vec<(String, u64)> = CloseReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("{{reason=\"{}\"}}", r.as_str()),
                    self.closed.get(i).map_or(0, get),
                )
            })
            .collect();
        let closed_refs: Vec<(&str, u64)> = closed.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "janus_sessions_closed_total",
            "Sessions closed, by reason.",
            &closed_refs,
        );
        counter(
            &mut out,
            "janus_packets_in_total",
            "Client packets received (frames).",
            &[("", get(&self.packets_in))],
        );
        counter(
            &mut out,
            "janus_packets_out_total",
            "Packets sent to clients (replies and pushes).",
            &[("", get(&self.packets_out))],
        );
        counter(
            &mut out,
            "janus_bytes_in_total",
            "Bytes read from clients.",
            &[("", get(&self.bytes_in))],
        );
        counter(
            &mut out,
            "janus_bytes_out_total",
            "Bytes written to clients.",
            &[("", get(&self.bytes_out))],
        );
        counter(
            &mut out,
            "janus_tunnels_opened_total",
            "Backend tunnels opened.",
            &[("", get(&self.tunnels_opened))],
        );
        counter(
            &mut out,
            "janus_tunnel_failures_total",
            "Backend tunnels that ended with an error.",
            &[("", get(&self.tunnel_failures))],
        );
        counter(
            &mut out,
            "janus_tunnel_no_backend_total",
            "Tunnels that could not be opened: no backend for the kind and colour.",
            &[("", get(&self.tunnel_no_backend))],
        );
        counter(
            &mut out,
            "janus_tunnel_overflow_total",
            "Sessions closed because a tunnel's queue to the backend was full (backend_backpressure).",
            &[("", get(&self.tunnel_overflow))],
        );
        counter(
            &mut out,
            "janus_push_requests_total",
            "Push service calls, by kind.",
            &[
                ("{kind=\"push\"}", get(&self.pushes)),
                ("{kind=\"multicast\"}", get(&self.multicasts)),
                ("{kind=\"broadcast\"}", get(&self.broadcasts)),
            ],
        );
        counter(
            &mut out,
            "janus_push_unknown_uid_total",
            "Pushes for a uid with no session here (no-ops).",
            &[("", get(&self.push_unknown_uid))],
        );
        counter(
            &mut out,
            "janus_push_delivered_total",
            "Push packets handed to sessions.",
            &[("", get(&self.push_delivered))],
        );
        counter(
            &mut out,
            "janus_push_too_large_total",
            "Push bodies no client could receive: over the frame limit even compressed.",
            &[("", get(&self.push_too_large))],
        );
        counter(
            &mut out,
            "janus_push_dropped_total",
            "Push packets dropped: the session's queue was full (it is closed as a slow consumer).",
            &[("", get(&self.push_dropped))],
        );
        counter(
            &mut out,
            "janus_redis_errors_total",
            "Redis operations that failed (the gateway keeps serving; see the gate module).",
            &[("", get(&self.redis_errors))],
        );
        counter(
            &mut out,
            "janus_kicks_total",
            "Sessions replaced by a newer login of the same uid.",
            &[(
                "{reason=\"conflicting_login\"}",
                get(&self.kicks_conflicting_login),
            )],
        );
        if let Some(rss) = resident_memory_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
            );
        }
        for (name, help, v) in [
            (
                "janus_connections_open",
                "Client connections open.",
                gauge(&self.connections_open),
            ),
            (
                "janus_sessions_open",
                "Authenticated sessions open.",
                gauge(&self.sessions_open),
            ),
            (
                "janus_tunnels_open",
                "Backend tunnels open.",
                gauge(&self.tunnels_open),
            ),
            (
                "janus_relay_links_open",
                "Relay links from edges open.",
                gauge(&self.relay_links_open),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// The process's resident set size, from `/proc/self/statm` (Linux; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every platform this is deployed on; reading it would need libc.
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_a_slot_and_renders() {
        let m = Metrics::default();
        m.closed(CloseReason::IndexMismatch);
        m.inc(&m.connections_tcp);
        let text = m.render();
        assert!(
            text.contains("janus_sessions_closed_total{reason=\"index_mismatch\"} 1"),
            "{text}"
        );
        assert!(text.contains("janus_connections_accepted_total{transport=\"tcp\"} 1"));
        assert_eq!(m.closed_count(CloseReason::IndexMismatch), 1);
    }
}
