//! The edge's Prometheus metrics: relaxed atomics shared by the event loops, rendered as text
//! by the admin thread.

use std::{
    fmt::Write as _,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use janus_core::{
    CloseReason,
    filter::{FilterStats, render_metrics},
    relay::LinkCloseReason,
    session::SessionStats,
};

/// Counters and gauges of one edge process.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    pub connections_tcp: AtomicU64,
    pub connections_ws: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub ws_upgrades_rejected: AtomicU64,
    pub connections_open: AtomicI64,
    pub sessions_authenticated: AtomicU64,
    pub sessions_open: AtomicI64,
    closed: PerReason,
    /// Handshakes closed to give their slot to a newcomer (the handshake pool was full).
    pub handshakes_evicted: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Sessions opened on a hub after their first hub went away.
    pub sessions_rehomed: AtomicU64,
    /// Tunnels failed because their hub went away (their pending requests got an error).
    pub tunnels_failed_by_link: AtomicU64,
    /// Requests answered with an error because no hub was reachable.
    pub requests_without_hub: AtomicU64,
    pub pushes_delivered: AtomicU64,
    pub links_connected: AtomicU64,
    pub links_up: AtomicI64,
    links_closed: [AtomicU64; LinkCloseReason::ALL.len()],
    /// The counters of the configured filters (`janus_filter_*`), set at start.
    pub filters: OnceLock<Vec<(Arc<str>, Arc<FilterStats>)>>,
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

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl EdgeMetrics {
    /// One more.
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves a gauge.
    pub fn gauge(&self, g: &AtomicI64, delta: i64) {
        g.fetch_add(delta, Ordering::Relaxed);
    }

    /// A session ended for `reason`.
    pub fn closed(&self, reason: CloseReason) {
        if let Some(c) = self.closed.get(reason.index()) {
            self.inc(c);
        }
    }

    /// Sessions closed for `reason` so far.
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed.get(reason.index()).map_or(0, get)
    }

    /// A link to a hub ended for `reason`.
    pub fn link_closed(&self, reason: LinkCloseReason) {
        if let Some(c) = self.links_closed.get(reason.index()) {
            self.inc(c);
        }
    }

    /// What a session moved since last exported.
    pub fn session_moved(&self, d: &SessionStats) {
        for (c, n) in [
            (&self.packets_in, d.packets_in),
            (&self.packets_out, d.packets_out),
            (&self.bytes_in, d.bytes_in),
            (&self.bytes_out, d.bytes_out),
        ] {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The Prometheus text exposition (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |c: &AtomicU64| vec![(String::new(), get(c))];
        counter(
            "janus_connections_accepted_total",
            "Client connections accepted, by transport.",
            &[
                ("{transport=\"tcp\"}".into(), get(&self.connections_tcp)),
                ("{transport=\"ws\"}".into(), get(&self.connections_ws)),
            ],
        );
        counter(
            "janus_connections_rejected_total",
            "Connections refused by admission control.",
            &one(&self.connections_rejected),
        );
        counter(
            "janus_handshakes_evicted_total",
            "Handshakes closed to give their slot to a newcomer: the pool was full and they had made the least progress.",
            &one(&self.handshakes_evicted),
        );
        counter(
            "janus_ws_upgrades_rejected_total",
            "WebSocket upgrades refused (path, origin, protocol).",
            &one(&self.ws_upgrades_rejected),
        );
        counter(
            "janus_sessions_authenticated_total",
            "Handshakes that succeeded.",
            &one(&self.sessions_authenticated),
        );
        let closed: Vec<(String, u64)> = CloseReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.as_str()),
                    self.closed_count(*r),
                )
            })
            .collect();
        counter(
            "janus_sessions_closed_total",
            "Sessions closed, by reason.",
            &closed,
        );
        for (name, help, c) in [
            (
                "janus_packets_in_total",
                "Client packets received (frames).",
                &self.packets_in,
            ),
            (
                "janus_packets_out_total",
                "Packets sent to clients.",
                &self.packets_out,
            ),
            (
                "janus_bytes_in_total",
                "Bytes read from clients.",
                &self.bytes_in,
            ),
            (
                "janus_bytes_out_total",
                "Bytes written to clients.",
                &self.bytes_out,
            ),
            (
                "janus_edge_sessions_rehomed_total",
                "Sessions moved to another hub after theirs went away.",
                &self.sessions_rehomed,
            ),
            (
                "janus_edge_tunnels_failed_by_link_total",
                "Tunnels whose hub went away (pending requests answered with an error).",
                &self.tunnels_failed_by_link,
            ),
            (
                "janus_edge_requests_without_hub_total",
                "Requests answered with an error because no hub was connected.",
                &self.requests_without_hub,
            ),
            (
                "janus_push_delivered_total",
                "Push packets handed to sessions.",
                &self.pushes_delivered,
            ),
            (
                "janus_edge_links_connected_total",
                "Links to hubs authenticated.",
                &self.links_connected,
            ),
        ] {
            counter(name, help, &one(c));
        }
        let links: Vec<(String, u64)> = LinkCloseReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.as_str()),
                    self.links_closed.get(r.index()).map_or(0, get),
                )
            })
            .collect();
        counter(
            "janus_edge_links_closed_total",
            "Links to hubs that ended, by reason.",
            &links,
        );
        if let Some(rss) = resident_memory_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
            );
        }
        for (name, help, g) in [
            (
                "janus_connections_open",
                "Client connections open.",
                &self.connections_open,
            ),
            (
                "janus_sessions_open",
                "Authenticated sessions open.",
                &self.sessions_open,
            ),
            (
                "janus_edge_links_up",
                "Links to hubs authenticated and open.",
                &self.links_up,
            ),
        ] {
            let v = g.load(Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Some(filters) = self.filters.get() {
            render_metrics(filters, &mut out);
        }
        out
    }
}

/// The process's resident set size, from `/proc/self/statm` (Linux; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
