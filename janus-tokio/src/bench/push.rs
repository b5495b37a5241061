//! The broadcaster of `--mode broadcast`: asks the gateway's gRPC push service for broadcasts to
//! every session of the run's colour, keeping `push_window` of them in flight (asked for, and
//! not yet received by every session), so the gateway always has work and no session's command
//! queue overflows.

use std::{sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use janus_proto::broadcaster::service::push::v1::{
    BroadcastRequest, PushBody, push_service_client::PushServiceClient,
};
use tokio::time::{Instant, sleep, sleep_until};

use super::client::Shared;

/// How often the broadcaster looks at the delivery count while its window is full.
const POLL: Duration = Duration::from_millis(1);
/// Module and seq of the broadcast body (`PushSyncUser`, as the demo backend's pushes).
const PUSH_MODULE: i32 = 3;
const PUSH_SEQ: i32 = 2;

/// What the broadcaster did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Broadcasts {
    /// Broadcast calls the gateway accepted.
    pub sent: u64,
    /// Calls that failed (the error is printed once).
    pub failed: u64,
    /// Sessions the broadcasts went to (handshakes completed when it started).
    pub sessions: u64,
}

/// Runs until the run's deadline. Starts once every client has handshaken (or the ramp and
/// warm-up are over, whichever comes later).
pub(crate) async fn broadcaster(
    shared: Arc<Shared>,
    addr: String,
    window: u32,
    payload: usize,
    color: String,
) -> Broadcasts {
    let mut done = Broadcasts::default();
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(shared.timeout),
        Err(e) => {
            eprintln!("janus-bench: bad --push-addr {addr:?}: {e}");
            return done;
        }
    };
    // Everyone connected: broadcasts made before would reach only some of the sessions.
    sleep_until(shared.ramp_end).await;
    while shared.live.handshakes.load(Relaxed) < u64::from(shared.clients)
        && Instant::now() < shared.measure_from
    {
        sleep(POLL * 10).await;
    }
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("janus-bench: cannot reach the push service at {addr}: {e}");
            return done;
        }
    };
    let mut client = PushServiceClient::new(channel);
    let sessions = shared.live.connections.load(Relaxed).max(1);
    done.sessions = sessions;
    let base = shared.live.pushes.load(Relaxed);
    let request = BroadcastRequest {
        bodies: vec![PushBody {
            data: vec![0x5a; payload].into(),
            r#mod: PUSH_MODULE,
            seq: PUSH_SEQ,
            ..Default::default()
        }],
        color,
        sid: 0,
    };
    while Instant::now() < shared.deadline {
        let delivered = shared.live.pushes.load(Relaxed).saturating_sub(base) / sessions;
        if done.sent.saturating_sub(delivered) >= u64::from(window) {
            sleep(POLL).await;
            continue;
        }
        match client.broadcast(request.clone()).await {
            Ok(_) => done.sent += 1,
            Err(status) => {
                if done.failed == 0 {
                    eprintln!("janus-bench: broadcast failed: {status}");
                }
                done.failed += 1;
                sleep(POLL * 10).await;
            }
        }
    }
    done
}
