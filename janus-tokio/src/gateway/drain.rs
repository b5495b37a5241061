//! The drain (SIGTERM, `POST /admin/drain`): leave the cluster without a thundering herd.
//!
//! ```text
//! t0  readiness 503 ─► etcd deregistration ─► accept loops stop; handshaking connections close
//!     sessions get ConnCmd::Drain one by one, evenly over limits.drain_window: each stops taking
//!     requests, delivers the replies already in flight (up to limits.session.drain_timeout),
//!     then says SCServerLogout{Waiting} and closes (CloseReason::Drained)
//! t0 + window    a second sweep for sessions that authenticated meanwhile or missed their turn
//! t0 + grace     whatever is still open is closed (same logout), bounded by the final flush
//! ```
//!
//! Clients reconnect through the load balancer as their turn comes, so the other gateways see
//! the reconnects spread over the window rather than all at once.

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;
use tracing::{info, warn};

use super::{Shared, command::ConnCmd, mailbox::TrySendError};

/// Where the drain is; connection tasks and accept loops watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainPhase {
    /// Taking connections.
    Serving,
    /// Not accepting; sessions are logged out at their turn.
    Draining,
    /// The grace period is over: every connection closes now.
    Cut,
}

/// How often the scheduler hands out turns: turns due within a tick go together.
const TICK: Duration = Duration::from_millis(10);
/// How long connections get to say goodbye once cut, before the drain reports them left.
const CUT_FLUSH: Duration = Duration::from_secs(3);

/// Runs the drain to its end and then marks the gateway drained.
pub(crate) async fn run(shared: Arc<Shared>) {
    let start = Instant::now();
    let (window, grace) = *shared
        .ops
        .drain_timing
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let deadline = start + grace;
    info!(
        window_ms = window.as_millis() as u64,
        grace_ms = grace.as_millis() as u64,
        sessions = shared.registry.len(),
        "draining: readiness fails, deregistering, no more connections"
    );
    // Out of the registry first, so no new traffic is routed here while draining.
    #[cfg(feature = "etcd")]
    if let Some(registration) = shared.ops.registration.lock().await.take() {
        if let Err(e) = registration.deregister().await {
            warn!(error = %e, "deregistering from etcd failed (the lease will expire)");
        }
        shared
            .metrics
            .etcd
            .registered
            .store(false, Ordering::Relaxed);
    }
    shared.ops.phase.send_replace(DrainPhase::Draining);

    // The sessions at the start, in registry order, each with its turn.
    let sessions = shared.registry.entries();
    let count = sessions.len();
    let mut next = 0;
    let mut missed = Vec::new();
    while next < count {
        let elapsed = start.elapsed();
        // Session i's turn is at window * i / count: the first goes at once.
        let due = if window.is_zero() {
            count
        } else {
            let share = elapsed.as_secs_f64() / window.as_secs_f64();
            ((share * count as f64).floor() as usize + 1).min(count)
        };
        for (uid, handle) in sessions.get(next..due).unwrap_or_default() {
            match handle.tx.try_send(ConnCmd::Drain) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => missed.push(*uid),
            }
        }
        next = due;
        if next < count {
            if open(&shared) == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
    }
    // Sessions that authenticated during the drain's first moments, or whose queue was full.
    for (_, handle) in shared.registry.entries() {
        let _ = handle.tx.try_send(ConnCmd::Drain);
    }
    if !missed.is_empty() {
        warn!(
            missed = missed.len(),
            "sessions whose queue was full at their turn were told again after the window"
        );
    }
    // Wait for the sessions to finish their in-flight replies, up to the grace deadline.
    while open(&shared) > 0 && Instant::now() < deadline {
        tokio::time::sleep(TICK).await;
    }
    let left = open(&shared);
    if left > 0 {
        warn!(
            left,
            "grace period over: closing the connections still open"
        );
        shared.ops.phase.send_replace(DrainPhase::Cut);
        let cut_deadline = Instant::now() + CUT_FLUSH;
        while open(&shared) > 0 && Instant::now() < cut_deadline {
            tokio::time::sleep(TICK).await;
        }
    }
    info!(
        took_ms = start.elapsed().as_millis() as u64,
        left = open(&shared),
        "drained"
    );
    shared.ops.drained.send_replace(true);
}

fn open(shared: &Shared) -> i64 {
    shared.metrics.connections_open.load(Ordering::Relaxed)
}
