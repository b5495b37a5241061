//! `janus-demo-backend`: the Roma-compatible demo backend as a standalone process.
//!
//! Serves `player.intra.v1.TunnelService` and `room.intra.v1.TunnelService` on `--addr` (see
//! `janus_tokio::demo` for what it answers) until SIGINT or SIGTERM, then stops gracefully and
//! exits 0. Logs go to stderr, filtered by `RUST_LOG` (default `info`).
//!
//! ```text
//! janus-demo-backend --addr 127.0.0.1:17102 --push-interval 10s
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use janus_tokio::demo::{DemoBackend, DemoConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How long a graceful stop may take before the process exits anyway: long enough for every
/// stream to get its logout push, short enough that a gateway holding connections open cannot
/// keep the process alive.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Roma-compatible demo backend for the Janus gateway.
#[derive(Debug, Parser)]
#[command(name = "janus-demo-backend", version)]
struct Args {
    /// Address to serve the tunnel services on.
    #[arg(long, default_value = "127.0.0.1:17102")]
    addr: SocketAddr,
    /// Send a PushSyncUser push on every open stream this often (e.g. `500ms`, `10s`, `1m`; a bare
    /// number is seconds). No periodic pushes when absent.
    #[arg(long, value_parser = parse_duration)]
    push_interval: Option<Duration>,
    /// Name in log lines.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Advertise this SETTINGS_MAX_CONCURRENT_STREAMS per HTTP/2 connection (as a backend or
    /// proxy limited to, e.g., 100 streams would). Unlimited when absent.
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let backend = DemoBackend::new(DemoConfig {
        name: args.name,
        push_interval: args.push_interval,
        // Nobody reads the history of a standalone process, so keep none.
        observe_capacity: 0,
        max_concurrent_streams: args.max_concurrent_streams,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(backend.serve(listener, async move {
        let _ = stopped.await;
    }));

    tokio::select! {
        result = &mut server => {
            // The server only returns early when it fails.
            result.context("demo backend task")?.context("demo backend server")?;
            return Ok(());
        }
        signal = shutdown_signal() => {
            info!(signal = signal?, "shutting down");
        }
    }
    let _ = stop.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result
            .context("demo backend task")?
            .context("demo backend server")?,
        Err(_) => {
            warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; exiting")
        }
    }
    Ok(())
}

/// Resolves with the signal's name on SIGINT or (on Unix) SIGTERM.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").context("waiting for SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}

/// `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds; must not be zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 2m or 1h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ));
        }
    };
    if duration.is_zero() {
        return Err("the push interval must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "0s", "1.5s", "10d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn args_parse() {
        let args = Args::try_parse_from(["janus-demo-backend", "--push-interval", "50ms"]).unwrap();
        assert_eq!(args.addr, "127.0.0.1:17102".parse().unwrap());
        assert_eq!(args.push_interval, Some(Duration::from_millis(50)));
    }
}
