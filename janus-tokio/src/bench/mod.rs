//! `janus-bench`, the load generator: many clients that speak the real client protocol (the same
//! [`janus_core::client::ClientSession`] an SDK embeds) against one gateway address, and a report
//! of what they measured.
//!
//! Two workloads ([`Mode`]):
//!
//! * **handshake storm**: every client connects, handshakes, closes and repeats until the run
//!   ends. It measures handshakes per second and the latency from the start of the TCP connect
//!   (and WebSocket upgrade) to the verified `SCHandshake`, which is what a login wave costs.
//! * **echo**: every client connects once and then sends packets, either closed loop (one request
//!   in flight per client, `rate` 0) or open loop at a fixed rate per client, matching each reply
//!   to its request by `index`. Open-loop latency is measured from the time a request was *due*,
//!   not from when it was written, so a stalled client does not hide the stall (coordinated
//!   omission).
//!
//! Every connection carries a freshly minted token (the gateway accepts a token once), sealed with
//! the token key exactly as the account service seals it. The run is bounded: nothing new starts
//! after `duration`, requests still in flight get `drain` to complete, and every connect,
//! handshake, write and request has `timeout`.
//!
//! ```text
//! BenchOptions ─► run ─► one task per client ─► Link (TCP | WebSocket) ⇄ ClientSession
//!                  │         └─ per-client histograms and error counts ─┐
//!                  └─ Live counters ─► progress bar, rate windows ──────┴─► BenchReport
//! ```
//!
//! Rates (handshakes/s, messages/s, bytes/s) are counted over the steady-state window, from the
//! end of the `ramp` to the end of `duration`; totals and latency histograms cover the whole run
//! including the drain.

mod cli;
mod client;
mod crypto;
mod link;
mod options;
mod procfs;
mod progress;
mod push;
mod report;
mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::{task::JoinSet, time::Instant};

pub use cli::{BenchArgs, parse_duration};
pub use client::echo_server;
pub use crypto::{CryptoBound, crypto_bound};
pub use options::{BenchOptions, DEFAULT_PUSH_WINDOW, Mode, Target};
pub use report::{
    BenchReport, BroadcastReport, Cpu, GatewayMemory, Latency, Parameters, ProcessCpu,
};

use client::Shared;
use stats::{ClientStats, Snapshot};

/// How long after the drain grace the runner waits for client tasks before abandoning them. Every
/// await inside a client is already bounded, so this only guards against a bug.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a benchmark to completion and returns what it measured.
///
/// Fails only on bad options (an unresolvable address, a token key of the wrong length, a payload
/// that cannot fit a frame); everything the server does wrong is counted in the report instead.
pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let shared = Arc::new(Shared::new(&opts).await?);
    let template = stats::histogram()?;
    let rss_before = memory(&opts)
        .await
        .context("reading the gateway's memory before the run")?;
    let tcp_pages_before = procfs::tcp_buffer_pages();

    let bar = opts
        .progress
        .then(|| progress::Progress::start(Arc::clone(&shared), opts.duration));

    let mut clients = JoinSet::new();
    for index in 0..opts.clients {
        let shared = Arc::clone(&shared);
        let stats = ClientStats::new(&template);
        clients.spawn(client::run_client(shared, index, stats));
    }

    let broadcaster = match (&opts.push_addr, opts.mode) {
        (Some(addr), Mode::Broadcast) => Some(tokio::spawn(push::broadcaster(
            Arc::clone(&shared),
            addr.clone(),
            opts.push_window,
            opts.payload,
            opts.color.clone(),
        ))),
        _ => None,
    };

    // Rate window: from the end of the ramp (when every client has started) and the warm-up to
    // the deadline.
    let window_start =
        if shared.measure_from > shared.start && shared.measure_from < shared.deadline {
            tokio::time::sleep_until(shared.measure_from).await;
            (Instant::now(), shared.live.snapshot())
        } else {
            (shared.start, Snapshot::default())
        };
    let cpu_start = procfs::CpuSample::take(&opts.watch_pids);
    // Read the gateway's memory just before the deadline, while every client is still connected.
    let mut gateway_memory = None;
    if let Some(before) = rss_before {
        let at = shared
            .deadline
            .checked_sub(std::time::Duration::from_millis(500))
            .unwrap_or(shared.deadline);
        tokio::time::sleep_until(at.max(Instant::now())).await;
        let connections = shared
            .live
            .connections
            .load(std::sync::atomic::Ordering::Relaxed) as u64;
        let after = memory(&opts)
            .await
            .context("reading the gateway's memory at the end of the run")?
            .unwrap_or(before);
        let kernel_tcp_buffers = match (tcp_pages_before, procfs::tcp_buffer_pages()) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before) * PAGE_SIZE),
            _ => None,
        };
        gateway_memory = Some(GatewayMemory {
            kernel_tcp_buffers,
            rss_before: before,
            rss_after: after,
            connections,
            bytes_per_connection: if connections > 0 {
                after.saturating_sub(before) as f64 / connections as f64
            } else {
                0.0
            },
        });
    }
    tokio::time::sleep_until(shared.deadline).await;
    let window_end = (Instant::now(), shared.live.snapshot());
    let cpu = procfs::CpuSample::take(&opts.watch_pids).since(&cpu_start);
    let broadcasts = match broadcaster {
        Some(task) => Some(task.await.context("the broadcaster failed")?),
        None => None,
    };

    let mut total = ClientStats::new(&template);
    let mut abandoned = 0u64;
    let collect = async {
        while let Some(joined) = clients.join_next().await {
            match joined {
                Ok(stats) => total.merge(stats)?,
                Err(_) => abandoned += 1,
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout_at(shared.drain_end + ABANDON_GRACE, collect).await {
        Ok(merged) => merged.context("merging client statistics")?,
        Err(_) => {
            abandoned += clients.len() as u64;
            clients.abort_all();
        }
    }
    if abandoned > 0 {
        total.count_n(stats::Failure::ClientAbandoned, abandoned);
    }
    if let Some(bar) = bar {
        bar.finish();
    }

    let mut report = report::build(
        &opts,
        &shared,
        total,
        window_start,
        window_end,
        Instant::now(),
    );
    report.gateway_memory = gateway_memory;
    report.cpu = Some(cpu);
    report.broadcast = broadcasts.map(|b| BroadcastReport {
        broadcasts: b.sent,
        failed: b.failed,
        sessions: b.sessions,
    });
    Ok(report)
}

/// Bytes per page of `/proc/net/sockstat`'s `mem` (4 KiB on the machines this runs on).
const PAGE_SIZE: u64 = 4096;

/// The system under test's resident memory: its `/metrics` when given, else the sum of the
/// watched processes' `VmRSS`; `None` when neither was asked for.
async fn memory(opts: &BenchOptions) -> anyhow::Result<Option<u64>> {
    if let Some(url) = &opts.metrics_url {
        return gateway_rss(url).await.map(Some);
    }
    if !matches!(opts.mode, Mode::Idle | Mode::IdleFrames) || opts.watch_pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for &pid in &opts.watch_pids {
        total += procfs::rss_bytes(pid).with_context(|| format!("no VmRSS for pid {pid}"))?;
    }
    Ok(Some(total))
}

/// `process_resident_memory_bytes` from a Prometheus text endpoint (`http://host:port/path`).
async fn gateway_rss(url: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url
        .strip_prefix("http://")
        .context("the metrics URL must start with http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/metrics".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(host),
    )
    .await??;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut body = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_string(&mut body),
    )
    .await??;
    body.lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("no process_resident_memory_bytes in the gateway's metrics")
}
