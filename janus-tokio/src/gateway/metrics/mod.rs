//! Prometheus metrics, kept as plain atomics and rendered as text on `/metrics` ([`render`]).
//!
//! Hand-rolled rather than a metrics crate: every update on the hot path is one relaxed atomic
//! add, and the text format is simple. Every label has a bounded set of values: the enums below,
//! [`CloseReason::ALL`], the configured tunnel kinds, and the backend addresses (configured or
//! discovered, never chosen by a client; at most [`MAX_BACKEND_SERIES`] of them). No label ever
//! holds a uid or a client address.
//!
//! The recorders are functions on [`Metrics`] so every kind of session (TCP and WebSocket
//! connections here, relayed sessions elsewhere) reports the same way: `connection_opened`,
//! `handshake_succeeded`, `session_closed_for`, `backend`, `latency`, `push`, ...

mod histogram;
mod render;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
};

use janus_core::{
    CloseReason, relay::LinkCloseReason, resume::ResumeRefusal, session::SessionStats,
};

pub use self::histogram::{BUCKETS, Histogram};
pub use self::render::resident_memory_bytes;

/// Distinct (kind, backend) series kept at most; later backends share the `other` series. A
/// registry that churns through addresses cannot grow the exposition without bound.
pub const MAX_BACKEND_SERIES: usize = 1024;
/// Distinct tunnel kinds with a latency histogram at most (kinds come from the configuration).
pub const MAX_LATENCY_KINDS: usize = 64;

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }
        impl $name {
            /// Every value, in label order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            const fn index(self) -> usize { self as usize }
        }
    };
}

label_enum!(
    /// Which listener a connection came in on.
    Listener {
        /// `server.tcp`.
        Tcp => "tcp",
        /// `server.ws`.
        Ws => "ws",
        /// Sessions relayed by janus-mio edges over `relay` links (this gateway is their hub).
        Relay => "relay",
    }
);

label_enum!(
    /// Why a connection was refused before its session started.
    Refusal {
        /// `limits.admission.max_connections`.
        MaxConnections => "max_connections",
        /// `limits.admission.max_connections_per_address`.
        PerAddress => "max_connections_per_address",
        /// `limits.admission.max_handshakes`: only PROXY headers waiting now (a full handshake
        /// pool evicts instead of refusing).
        MaxHandshakes => "max_handshakes",
        /// `limits.admission.max_handshakes_per_address`.
        HandshakesPerAddress => "max_handshakes_per_address",
        /// `limits.admission.connection_rate`.
        ConnectionRate => "connection_rate",
        /// A WebSocket upgrade on another path.
        WsPath => "ws_path",
        /// A WebSocket `Origin` not in `server.ws.allowed_origins`.
        WsOrigin => "ws_origin",
        /// A WebSocket upgrade that was malformed (or another version, or not an upgrade).
        WsUpgrade => "ws_upgrade",
        /// A missing, malformed or late PROXY protocol header (when it is required).
        ProxyHeader => "proxy_header",
    }
);

label_enum!(
    /// How a push reached (or did not reach) a session.
    PushKind {
        /// One uid (`Push`, or a Redis message for one uid).
        Push => "push",
        /// Several uids.
        Multicast => "multicast",
        /// Everyone of a colour and sid.
        Broadcast => "broadcast",
    }
);

label_enum!(
    /// What became of one push packet for one session.
    PushOutcome {
        /// Queued for the session.
        Delivered => "delivered",
        /// No session for the uid here.
        UnknownUid => "unknown_uid",
        /// The session's queue was full (it is closed as a slow consumer).
        Dropped => "dropped",
        /// Over the client frame limit even compressed: sent to nobody.
        TooLarge => "too_large",
    }
);

label_enum!(
    /// Traffic the gateway refused to carry.
    DropCause {
        /// A session over `limits.session.rate_limit` (closed).
        RateLimited => "rate_limited",
        /// A session over its outbound budget (closed).
        SlowConsumer => "slow_consumer",
        /// A session whose tunnel queue to the backend was full (closed).
        BackendBackpressure => "backend_backpressure",
        /// A push or command for a session whose queue was full.
        QueueFull => "queue_full",
    }
);

label_enum!(
    /// Where a tunnel failed.
    TunnelFailure {
        /// No backend for the kind and colour (or the route table failed).
        NoBackend => "no_backend",
        /// The backend did not accept the stream.
        Open => "open",
        /// The stream ended with an error after it opened.
        Stream => "stream",
        /// Every HTTP/2 connection to the backend was at its advertised stream limit and the
        /// pool at its maximum: the tunnel failed at once instead of queueing.
        Saturated => "saturated",
    }
);

label_enum!(
    /// Which Redis operation failed.
    RedisOp {
        /// Writing the gate table at login.
        GateLogin => "gate_login",
        /// Deleting the gate-table entry at logout.
        GateLogout => "gate_logout",
        /// The periodic gate-table renewal.
        GateRenew => "gate_renew",
        /// Publishing a kick to another gateway.
        Publish => "publish",
        /// The sticky route table.
        RouteTable => "route_table",
        /// The push subscription (lost).
        Subscribe => "subscribe",
        /// An admin lookup.
        Lookup => "lookup",
    }
);

label_enum!(
    /// Why the admin API refused a request.
    AdminRefusal {
        /// No `Authorization: Bearer` header.
        MissingToken => "missing_token",
        /// A token that does not match.
        BadToken => "bad_token",
        /// A changing endpoint while no admin token is configured.
        NoTokenConfigured => "no_token_configured",
    }
);

label_enum!(
    /// How a configuration reload ended.
    ReloadResult {
        /// Read, valid, applied (some keys may need a restart).
        Applied => "applied",
        /// Unreadable or invalid: the running configuration stays.
        Rejected => "rejected",
    }
);

/// Connections of one listener.
#[derive(Debug, Default)]
struct ListenerCounters {
    active: AtomicI64,
    total: AtomicU64,
    peak: AtomicI64,
}

/// The tunnels of one (kind, backend).
#[derive(Debug, Default)]
pub struct BackendCounters {
    opens: AtomicU64,
    failures: [AtomicU64; TunnelFailure::ALL.len()],
    active: AtomicI64,
}

impl BackendCounters {
    /// A stream opened.
    pub fn opened(&self) {
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream that [`opened`](Self::opened) ended.
    pub fn ended(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A tunnel failed at `stage`.
    pub fn failed(&self, stage: TunnelFailure) {
        inc_slot(&self.failures, stage.index());
    }
}

/// etcd's state as the registration and discovery tasks see it.
#[derive(Debug, Default)]
pub struct EtcdHealth {
    /// An etcd section is configured (the families are rendered).
    pub configured: AtomicBool,
    /// The last list or watch of every service succeeded.
    pub up: AtomicBool,
    /// This gateway's key is registered.
    pub registered: AtomicBool,
    /// Watch or list failures.
    pub watch_errors: AtomicU64,
    /// Lost leases and failed (re-)registrations.
    pub register_errors: AtomicU64,
}

/// The relay links of a hub (rendered once a relay listener is configured).
#[derive(Debug, Default)]
pub struct RelayLinks {
    /// A relay listener is configured (the families are rendered).
    pub configured: AtomicBool,
    accepted: AtomicU64,
    open: AtomicI64,
    /// Links over `relay.max_links`, closed at accept.
    over_limit: AtomicU64,
    refused: [AtomicU64; LinkCloseReason::ALL.len()],
    closed: [AtomicU64; LinkCloseReason::ALL.len()],
}

impl RelayLinks {
    /// A link was accepted (before authentication); it counts as open until [`ended`](Self::ended).
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A link [`accepted`](Self::accepted) is over.
    pub fn ended(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A link was closed at accept: `relay.max_links` are open.
    pub fn over_limit(&self) {
        self.over_limit.fetch_add(1, Ordering::Relaxed);
    }

    /// A link closed for `reason`; `authenticated` says whether it got that far (a link that
    /// did not is a refusal).
    pub fn closed(&self, reason: LinkCloseReason, authenticated: bool) {
        let slots = if authenticated {
            &self.closed
        } else {
            &self.refused
        };
        inc_slot(slots, reason.index());
    }

    /// Links refused before authentication for `reason` so far.
    pub fn refused(&self, reason: LinkCloseReason) -> u64 {
        load(&self.refused, reason.index())
    }

    /// Links open now.
    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// The gateway's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    listeners: [ListenerCounters; Listener::ALL.len()],
    /// Connections open, every listener (the drain waits for it to reach 0).
    pub connections_open: AtomicI64,
    refusals: [AtomicU64; Refusal::ALL.len()],
    /// Handshakes closed to give their slot to a newcomer.
    evictions: AtomicU64,
    handshakes_ok: AtomicU64,
    handshakes_failed: PerReason,
    sessions_open: AtomicI64,
    closed: PerReason,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    tunnels_requested: AtomicU64,
    backends: Mutex<BTreeMap<(String, String), Arc<BackendCounters>>>,
    latency: RwLock<BTreeMap<String, Arc<Histogram>>>,
    push_requests: [AtomicU64; PushKind::ALL.len()],
    pushes: [[AtomicU64; PushOutcome::ALL.len()]; PushKind::ALL.len()],
    drops: [AtomicU64; DropCause::ALL.len()],
    kicks: PerReason,
    /// Session resume: outcomes, refusals by reason, sessions parked now.
    resumes: [AtomicU64; ResumeOutcome::ALL.len()],
    resume_refusals: [AtomicU64; ResumeRefusal::ALL.len()],
    parked: AtomicI64,
    /// Redis is configured (the families are rendered).
    pub redis_configured: AtomicBool,
    redis_up: AtomicBool,
    redis_errors: [AtomicU64; RedisOp::ALL.len()],
    /// etcd's state, shared with the registration and discovery tasks.
    pub etcd: Arc<EtcdHealth>,
    /// The hub's relay links.
    pub relay: RelayLinks,
    admin_refusals: [AtomicU64; AdminRefusal::ALL.len()],
    reloads: [AtomicU64; ReloadResult::ALL.len()],
    /// The live configuration's content hash and the keys waiting for a restart.
    config: Mutex<(String, usize)>,
    draining: AtomicBool,
}

/// One counter per close reason (more than the 32 elements arrays get `Default` for).
#[derive(Debug)]
struct PerReason([AtomicU64; CloseReason::ALL.len()]);

impl Default for PerReason {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl std::ops::Deref for PerReason {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        &self.0
    }
}

fn inc_slot(slots: &[AtomicU64], i: usize) {
    if let Some(c) = slots.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn load(slots: &[AtomicU64], i: usize) -> u64 {
    slots.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// What became of a session resume (`janus_resumes_total{outcome}`): every `attempted` one
/// ends `succeeded`, `expired` (its window had passed) or `refused` (any other reason, see
/// `janus_resume_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    Attempted,
    Succeeded,
    Expired,
    Refused,
}

impl ResumeOutcome {
    pub const ALL: [ResumeOutcome; 4] = [
        Self::Attempted,
        Self::Succeeded,
        Self::Expired,
        Self::Refused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Attempted => "attempted",
            Self::Succeeded => "succeeded",
            Self::Expired => "expired",
            Self::Refused => "refused",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl Metrics {
    /// A client presented a resume ticket.
    pub fn resume_attempted(&self) {
        inc_slot(&self.resumes, ResumeOutcome::Attempted.index());
    }

    /// A resume succeeded.
    pub fn resume_succeeded(&self) {
        inc_slot(&self.resumes, ResumeOutcome::Succeeded.index());
    }

    /// A resume was refused for `refusal`.
    pub fn resume_refused(&self, refusal: ResumeRefusal) {
        let outcome = match refusal {
            ResumeRefusal::Expired => ResumeOutcome::Expired,
            _ => ResumeOutcome::Refused,
        };
        inc_slot(&self.resumes, outcome.index());
        if let Some(i) = ResumeRefusal::ALL.iter().position(|r| *r == refusal) {
            inc_slot(&self.resume_refusals, i);
        }
    }

    /// Resumes with `outcome` so far.
    pub fn resumes(&self, outcome: ResumeOutcome) -> u64 {
        load(&self.resumes, outcome.index())
    }

    /// A session's connection dropped and it waits for its client (`+1`), or stopped waiting.
    pub fn parked(&self, delta: i64) {
        self.parked.fetch_add(delta, Ordering::Relaxed);
    }

    /// A connection was accepted on `listener` (admitted; its task starts).
    pub fn connection_opened(&self, listener: Listener) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = self.listeners.get(listener.index()) {
            l.total.fetch_add(1, Ordering::Relaxed);
            let now = l.active.fetch_add(1, Ordering::Relaxed) + 1;
            l.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// A connection of `listener` ended.
    pub fn connection_closed(&self, listener: Listener) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(l) = self.listeners.get(listener.index()) {
            l.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection was refused before its session started.
    pub fn refused(&self, cause: Refusal) {
        inc_slot(&self.refusals, cause.index());
    }

    /// A handshake lost its slot to a newcomer (the pool was full).
    pub fn handshake_evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Connections refused for `cause` so far.
    pub fn refusals(&self, cause: Refusal) -> u64 {
        load(&self.refusals, cause.index())
    }

    /// A handshake succeeded: the session is open.
    pub fn handshake_succeeded(&self) {
        self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed before its handshake succeeded.
    pub fn handshake_failed(&self, reason: CloseReason) {
        inc_slot(&self.handshakes_failed, reason.index());
    }

    /// An authenticated session ended.
    pub fn session_ended(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session closed for `reason` (authenticated or not); the reasons that drop traffic are
    /// counted as drops too.
    pub fn session_closed_for(&self, reason: CloseReason) {
        inc_slot(&self.closed, reason.index());
        let drop = match reason {
            CloseReason::RateLimited => Some(DropCause::RateLimited),
            CloseReason::SlowConsumer => Some(DropCause::SlowConsumer),
            CloseReason::BackendBackpressure => Some(DropCause::BackendBackpressure),
            _ => None,
        };
        if let Some(cause) = drop {
            self.dropped(cause);
        }
    }

    /// Sessions closed for `reason` so far (tests and logs).
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        load(&self.closed, reason.index())
    }

    /// Traffic refused for `cause`.
    pub fn dropped(&self, cause: DropCause) {
        inc_slot(&self.drops, cause.index());
    }

    /// A session was told to close for `reason` by someone else (a newer login, an operator).
    pub fn kicked(&self, reason: CloseReason) {
        inc_slot(&self.kicks, reason.index());
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

    /// A session asked for a tunnel (before any backend is chosen).
    pub fn tunnel_requested(&self) {
        self.tunnels_requested.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of `backend` for `kind` (`"none"` when no backend could be chosen). Keep the
    /// handle for the tunnel's life: updates are then plain atomics.
    pub fn backend(&self, kind: &str, backend: &str) -> Arc<BackendCounters> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind.to_owned(), backend.to_owned());
        if let Some(c) = map.get(&key) {
            return Arc::clone(c);
        }
        let key = if map.len() >= MAX_BACKEND_SERIES {
            (kind.to_owned(), "other".to_owned())
        } else {
            key
        };
        Arc::clone(map.entry(key).or_default())
    }

    /// The round-trip histogram of tunnels of `kind` (request forwarded → reply back).
    pub fn latency(&self, kind: &str) -> Arc<Histogram> {
        if let Some(h) = self
            .latency
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
        {
            return Arc::clone(h);
        }
        let mut map = self.latency.write().unwrap_or_else(|p| p.into_inner());
        let kind = if map.len() >= MAX_LATENCY_KINDS && !map.contains_key(kind) {
            "other"
        } else {
            kind
        };
        Arc::clone(map.entry(kind.to_owned()).or_default())
    }

    /// A push-service call (or Redis push message) of `kind` arrived.
    pub fn push_requested(&self, kind: PushKind) {
        inc_slot(&self.push_requests, kind.index());
    }

    /// `n` push packets of `kind` ended as `outcome`.
    pub fn push(&self, kind: PushKind, outcome: PushOutcome, n: u64) {
        if let Some(c) = self
            .pushes
            .get(kind.index())
            .and_then(|k| k.get(outcome.index()))
        {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A Redis operation failed.
    pub fn redis_error(&self, op: RedisOp) {
        inc_slot(&self.redis_errors, op.index());
    }

    /// Whether the Redis push subscription is up.
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    /// The last [`set_redis_up`](Self::set_redis_up).
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// The admin API refused a request.
    pub fn admin_refused(&self, why: AdminRefusal) {
        inc_slot(&self.admin_refusals, why.index());
    }

    /// A reload ended.
    pub fn reloaded(&self, result: ReloadResult) {
        inc_slot(&self.reloads, result.index());
    }

    /// The configuration now live: its content hash, and how many changed keys wait for a
    /// restart.
    pub fn set_config(&self, hash: &str, restart_pending: usize) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = (hash.to_owned(), restart_pending);
    }

    /// The drain has started.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_a_slot_and_renders() {
        let m = Metrics::default();
        m.session_closed_for(CloseReason::IndexMismatch);
        m.session_closed_for(CloseReason::RateLimited);
        m.connection_opened(Listener::Tcp);
        let text = m.render();
        assert!(
            text.contains("janus_sessions_closed_total{reason=\"index_mismatch\"} 1"),
            "{text}"
        );
        assert!(text.contains("janus_connections_total{listener=\"tcp\"} 1"));
        assert!(text.contains("janus_connections_peak{listener=\"tcp\"} 1"));
        assert!(text.contains("janus_drops_total{cause=\"rate_limited\"} 1"));
        assert_eq!(m.closed_count(CloseReason::IndexMismatch), 1);
    }

    #[test]
    fn backend_series_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_BACKEND_SERIES + 10 {
            m.backend("player", &format!("10.0.0.{i}:1")).opened();
        }
        let text = m.render();
        assert!(
            text.contains("janus_tunnel_opens_total{kind=\"player\",backend=\"other\"} 10"),
            "the overflow shares one series"
        );
    }
}
