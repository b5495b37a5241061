//! What a run measured: a serde struct (written with `--json`) that also prints as a table.

use std::{collections::BTreeMap, fmt};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{
    client::Shared,
    options::{BenchOptions, Mode, Target},
    stats::{ClientStats, Snapshot},
};

/// The parameters a run used, echoed in the report so a JSON file stands on its own.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parameters {
    /// `host:port` or `ws://` URL.
    pub target: String,
    /// `"tcp"` or `"ws"`.
    pub transport: String,
    pub mode: Mode,
    pub clients: u32,
    pub duration_secs: f64,
    /// Requests per second per client; 0 is closed loop.
    pub rate: f64,
    pub payload: usize,
    pub module: i32,
    pub seq: i32,
    pub ramp_secs: f64,
    #[serde(default)]
    pub warmup_secs: f64,
    pub timeout_secs: f64,
    pub drain_secs: f64,
    pub encrypted: bool,
    /// Whether the server's handshake signature was checked against a known key.
    pub server_verified: bool,
    pub uid_base: i64,
    pub color: String,
}

/// Latency percentiles in microseconds (all zero when nothing was measured).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything a run measured.
///
/// `*_per_sec` figures are counted over the steady-state window (`window_secs`: the end of the
/// ramp to the end of the duration); the totals and the latencies cover the whole run, drain
/// included. Byte counts are frame bytes (length prefixes included, WebSocket headers not).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub parameters: Parameters,
    /// Wall time from start to the last client finishing.
    pub elapsed_secs: f64,
    pub window_secs: f64,
    /// Handshakes completed (connect to verified `SCHandshake`).
    pub handshakes: u64,
    pub handshakes_per_sec: f64,
    pub handshake_latency_us: Latency,
    /// Echo requests sent.
    pub requests: u64,
    /// Echo replies received (matched to a request in time).
    pub replies: u64,
    /// Replies per second.
    pub messages_per_sec: f64,
    /// Request due time to reply.
    pub request_latency_us: Latency,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent_per_sec: f64,
    pub bytes_received_per_sec: f64,
    /// Server pushes (index 0) received; in broadcast mode, every frame received after the
    /// handshake.
    pub pushes: u64,
    /// Pushes received per second (broadcast mode: encrypted deliveries per second).
    #[serde(default)]
    pub pushes_per_sec: f64,
    /// Replies after their request timed out, or matching nothing sent.
    pub late_replies: u64,
    /// Requests still in flight when the drain grace ended (not errors).
    pub unanswered: u64,
    /// Failures by kind (`connect_refused`, `handshake_closed`, `request_timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    /// The gateway's resident memory around the run, when `--metrics` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_memory: Option<GatewayMemory>,
    /// CPU used over the rate window, by the generator and by the `--watch-pid` processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// What the broadcaster asked for (broadcast mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<BroadcastReport>,
}

/// CPU over the rate window, in percent of one core (100 = one core saturated).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cpu {
    /// This process (the load generator); `None` where `/proc` cannot be read.
    pub generator_percent: Option<f64>,
    /// Each `--watch-pid` process.
    pub watched: Vec<ProcessCpu>,
    /// Their sum (the system under test).
    pub watched_percent: f64,
}

/// One watched process's CPU over the rate window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessCpu {
    pub pid: u32,
    pub percent: Option<f64>,
}

/// The broadcaster's side of a broadcast run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BroadcastReport {
    /// Broadcast calls the push service accepted.
    pub broadcasts: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Sessions connected when the broadcasts started.
    pub sessions: u64,
}

/// The gateway's `process_resident_memory_bytes` before the clients connected and at the end of
/// the run, while they were still connected.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayMemory {
    pub rss_before: u64,
    pub rss_after: u64,
    /// Connections open when `rss_after` was read.
    pub connections: u64,
    /// `(rss_after - rss_before) / connections`.
    pub bytes_per_connection: f64,
    /// Growth of the kernel's TCP buffer memory over the same interval, bytes, machine-wide
    /// (both ends of every connection; `/proc/net/sockstat`), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_tcp_buffers: Option<u64>,
}

pub(crate) fn build(
    opts: &BenchOptions,
    shared: &Shared,
    total: ClientStats,
    window_start: (Instant, Snapshot),
    window_end: (Instant, Snapshot),
    finished: Instant,
) -> BenchReport {
    let window_secs = window_end
        .0
        .saturating_duration_since(window_start.0)
        .as_secs_f64();
    let window = window_end.1.since(window_start.1);
    let per_sec = |n: u64| {
        if window_secs > 0.0 {
            n as f64 / window_secs
        } else {
            0.0
        }
    };
    let all = shared.live.snapshot();
    let (target, transport) = match &opts.target {
        Target::Tcp(addr) => (addr.clone(), "tcp"),
        Target::WebSocket(url) => (url.clone(), "ws"),
    };
    BenchReport {
        parameters: Parameters {
            target,
            transport: transport.into(),
            mode: opts.mode,
            clients: opts.clients,
            duration_secs: opts.duration.as_secs_f64(),
            rate: opts.rate,
            payload: opts.payload,
            module: opts.module,
            seq: opts.seq,
            ramp_secs: opts.ramp.as_secs_f64(),
            warmup_secs: opts.warmup.as_secs_f64(),
            timeout_secs: opts.timeout.as_secs_f64(),
            drain_secs: opts.drain.as_secs_f64(),
            encrypted: opts.encrypted,
            server_verified: opts.encrypted && opts.server_key.is_some(),
            uid_base: opts.uid_base,
            color: opts.color.clone(),
        },
        elapsed_secs: finished
            .saturating_duration_since(shared.start)
            .as_secs_f64(),
        window_secs,
        handshakes: all.handshakes,
        handshakes_per_sec: per_sec(window.handshakes),
        handshake_latency_us: Latency::from_histogram(&total.handshake_us),
        requests: all.requests,
        replies: all.replies,
        messages_per_sec: per_sec(window.replies),
        request_latency_us: Latency::from_histogram(&total.request_us),
        bytes_sent: all.bytes_out,
        bytes_received: all.bytes_in,
        bytes_sent_per_sec: per_sec(window.bytes_out),
        bytes_received_per_sec: per_sec(window.bytes_in),
        pushes: shared
            .live
            .pushes
            .load(std::sync::atomic::Ordering::Relaxed),
        pushes_per_sec: per_sec(window.pushes),
        late_replies: total.late_replies,
        unanswered: total.unanswered,
        error_total: total.errors.values().sum(),
        errors: total.errors,
        gateway_memory: None,
        cpu: None,
        broadcast: None,
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.parameters;
        let mode = match p.mode {
            Mode::Handshake => "handshake storm".to_owned(),
            Mode::Echo if p.rate > 0.0 => format!(
                "echo, open loop at {} req/s per client, {} B payload",
                p.rate, p.payload
            ),
            Mode::Echo => format!("echo, closed loop, {} B payload", p.payload),
            Mode::Idle => "idle connections".to_owned(),
            Mode::Frames if p.rate > 0.0 => format!(
                "plain frames, open loop at {} msg/s per client, {} B payload",
                p.rate, p.payload
            ),
            Mode::Frames => format!("plain frames, closed loop, {} B payload", p.payload),
            Mode::IdleFrames => "idle connections, no handshake".to_owned(),
            Mode::Broadcast => format!("encrypted broadcasts, {} B payload", p.payload),
        };
        let security = match (p.encrypted, p.server_verified) {
            (false, _) => "unencrypted",
            (true, true) => "encrypted, server signature verified",
            (true, false) => "encrypted, server signature NOT verified",
        };
        writeln!(
            f,
            "janus-bench: {mode}; {} clients over {} to {}; {:.1} s (rate window {:.2} s); {security}",
            p.clients, p.transport, p.target, p.duration_secs, self.window_secs
        )?;
        writeln!(f)?;
        writeln!(f, "{:<18} {:>14} {:>16}", "", "total", "per second")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, total: u64, rate: Option<f64>| match rate
        {
            Some(r) => writeln!(f, "{name:<18} {total:>14} {r:>16.1}"),
            None => writeln!(f, "{name:<18} {total:>14} {:>16}", "-"),
        };
        row(
            f,
            "handshakes",
            self.handshakes,
            Some(self.handshakes_per_sec),
        )?;
        row(f, "requests sent", self.requests, None)?;
        row(f, "replies", self.replies, Some(self.messages_per_sec))?;
        row(
            f,
            "bytes sent",
            self.bytes_sent,
            Some(self.bytes_sent_per_sec),
        )?;
        row(
            f,
            "bytes received",
            self.bytes_received,
            Some(self.bytes_received_per_sec),
        )?;
        row(f, "pushes", self.pushes, Some(self.pushes_per_sec))?;
        row(f, "late replies", self.late_replies, None)?;
        row(f, "unanswered", self.unanswered, None)?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (µs)", "count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"
        )?;
        for (name, l) in [
            ("handshake", &self.handshake_latency_us),
            ("request", &self.request_latency_us),
        ] {
            writeln!(
                f,
                "{name:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.0}",
                l.count, l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            )?;
        }
        writeln!(f)?;
        if let Some(m) = &self.gateway_memory {
            writeln!(
                f,
                "gateway memory: {:.1} MiB -> {:.1} MiB with {} connections open: {:.0} bytes per connection\n",
                m.rss_before as f64 / 1048576.0,
                m.rss_after as f64 / 1048576.0,
                m.connections,
                m.bytes_per_connection
            )?;
            if let Some(kernel) = m.kernel_tcp_buffers {
                writeln!(
                    f,
                    "kernel TCP buffers (apart, both ends): +{kernel} bytes\n"
                )?;
            }
        }
        if let Some(b) = &self.broadcast {
            writeln!(
                f,
                "broadcasts: {} to {} sessions ({} failed)\n",
                b.broadcasts, b.sessions, b.failed
            )?;
        }
        if let Some(cpu) = &self.cpu {
            let pct = |p: Option<f64>| p.map_or_else(|| "?".to_owned(), |p| format!("{p:.0} %"));
            write!(
                f,
                "cpu over the window: generator {}",
                pct(cpu.generator_percent)
            )?;
            if !cpu.watched.is_empty() {
                write!(f, ", watched {:.0} %", cpu.watched_percent)?;
                for p in &cpu.watched {
                    write!(f, " (pid {}: {})", p.pid, pct(p.percent))?;
                }
            }
            writeln!(f, "\n")?;
        }
        if self.errors.is_empty() {
            write!(f, "errors: none")
        } else {
            write!(f, "errors: {}", self.error_total)?;
            for (kind, n) in &self.errors {
                write!(f, "\n  {kind:<40} {n:>10}")?;
            }
            Ok(())
        }
    }
}
