//! The push subscriber: one dedicated pub/sub connection, re-established forever.
//!
//! A subscribed connection cannot run other commands, so it is separate from
//! [`RedisTables`](super::RedisTables). Redis keeps no backlog: messages published while the
//! connection is down are lost, which is why the state is reported through a `watch` channel. When it
//! turns `true` again the gateway should re-assert what the broadcaster reads (re-write its gate keys)
//! instead of waiting for the next renewal.
//!
//! Where it connects depends on the topology: the standalone server; in a cluster, one node at a
//! time (a cluster propagates every `PUBLISH` to all nodes), moving to the next seed node after
//! each lost or failed session; with Sentinel, the primary the sentinels name at each attempt,
//! so after a failover it subscribes on the new primary.

use std::{future::Future, pin::pin, time::Duration};

use futures_util::StreamExt as _;
use janus_proto::broadcaster::service::push::v1::PushMessage;
use prost::Message as _;
use rand_core::{OsRng, RngCore as _};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{RedisConfig, RedisError, RedisTopology, bounded};

/// First reconnect delay after a lost or failed connection.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Reconnect delays double up to this cap, so an outage costs at most one attempt per 5 s.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often an idle subscription is checked with `PING`: a half-open TCP connection (Redis host gone
/// without a FIN) would otherwise look subscribed forever.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Why a subscribed session ended.
enum SessionEnd {
    /// The gateway dropped the receiver: nobody to deliver to.
    ReceiverGone,
    /// Lost or never established; reconnect.
    Lost(RedisError),
}

/// Subscribes to `channels` and forwards every decoded `PushMessage`, with the channel it arrived
/// on, to `out`.
///
/// Reconnects with jittered exponential backoff ([`RECONNECT_MIN`] .. [`RECONNECT_MAX`]) until
/// `shutdown` completes or `out` is closed. `state` is `true` while every channel is subscribed and
/// `false` otherwise; it changes only on transitions. Undecodable payloads are counted, logged and
/// skipped. A slow `out` stalls reading; if Redis's pub/sub output buffer limit is hit, Redis drops
/// the connection and this loop reconnects.
pub async fn run_subscriber(
    cfg: RedisConfig,
    channels: Vec<String>,
    out: mpsc::Sender<(String, PushMessage)>,
    state: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    let mut delay = RECONNECT_MIN;
    let mut undecodable: u64 = 0;
    let mut target = Target::default();
    loop {
        let session = session(&cfg, &mut target, &channels, &out, &state, &mut undecodable);
        let end = tokio::select! {
            () = &mut shutdown => break,
            end = session => end,
        };
        let was_subscribed = set_state(&state, false);
        match end {
            SessionEnd::ReceiverGone => {
                debug!("redis subscriber: receiver closed, stopping");
                return;
            }
            SessionEnd::Lost(err) => {
                if was_subscribed {
                    // A session that got as far as subscribing restarts the backoff.
                    delay = RECONNECT_MIN;
                    warn!(addr = %target.addr, error = %err, "redis subscription lost, reconnecting");
                } else {
                    debug!(addr = %target.addr, error = %err, ?delay, "redis subscribe failed");
                }
                // The next session tries the next node (cluster mode).
                target.attempt = target.attempt.wrapping_add(1);
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(jittered(delay)) => {}
        }
        delay = delay.saturating_mul(2).min(RECONNECT_MAX);
    }
    set_state(&state, false);
}

/// Where the subscriber connects next.
#[derive(Default)]
struct Target {
    /// Sessions tried so far: picks the cluster node.
    attempt: usize,
    /// Sentinel mode: asks for the primary, kept across sessions.
    sentinel: Option<::redis::sentinel::SentinelClient>,
    /// The node of the current (or last) session, for logs.
    addr: String,
}

impl Target {
    /// A client for the node to subscribe on.
    async fn client(&mut self, cfg: &RedisConfig) -> Result<::redis::Client, RedisError> {
        let client = match &cfg.topology {
            RedisTopology::Standalone => cfg.client()?,
            RedisTopology::Cluster { .. } => {
                let nodes = cfg.cluster_nodes();
                let node = nodes
                    .get(self.attempt % nodes.len().max(1))
                    .unwrap_or(&cfg.addr);
                cfg.node_client(node)?
            }
            RedisTopology::Sentinel {
                master_name,
                sentinels,
                password,
            } => {
                let sentinel = match &mut self.sentinel {
                    Some(s) => s,
                    None => self.sentinel.insert(cfg.sentinel_client(
                        master_name,
                        sentinels,
                        password,
                    )?),
                };
                bounded(
                    "sentinel: find the primary",
                    cfg.dial_timeout,
                    sentinel.async_get_client(),
                )
                .await?
            }
        };
        self.addr = client.get_connection_info().addr.to_string();
        Ok(client)
    }
}

/// One connection: connect, subscribe, forward until it breaks.
async fn session(
    cfg: &RedisConfig,
    target: &mut Target,
    channels: &[String],
    out: &mpsc::Sender<(String, PushMessage)>,
    state: &watch::Sender<bool>,
    undecodable: &mut u64,
) -> SessionEnd {
    let pubsub = match connect(cfg, target, channels).await {
        Ok(p) => p,
        Err(e) => return SessionEnd::Lost(e),
    };
    let (mut sink, mut stream) = pubsub.split();
    set_state(state, true);
    info!(addr = %target.addr, ?channels, "redis subscriber: subscribed");
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = ping.tick() => {
                let reply = bounded("PING", cfg.io_timeout, sink.ping::<::redis::Value>()).await;
                match reply {
                    Ok(_) => continue,
                    Err(e) => return SessionEnd::Lost(e),
                }
            }
        };
        let Some(msg) = msg else {
            return SessionEnd::Lost(RedisError::Redis {
                op: "subscribe",
                source: ::redis::RedisError::from((
                    ::redis::ErrorKind::IoError,
                    "pub/sub connection closed",
                )),
            });
        };
        let channel = msg.get_channel_name().to_owned();
        match PushMessage::decode(msg.get_payload_bytes()) {
            Ok(message) => {
                if out.send((channel, message)).await.is_err() {
                    return SessionEnd::ReceiverGone;
                }
            }
            Err(source) => {
                *undecodable = undecodable.saturating_add(1);
                let err = RedisError::Decode { channel, source };
                warn!(error = %err, undecodable = *undecodable, "redis subscriber: skipped payload");
            }
        }
    }
}

async fn connect(
    cfg: &RedisConfig,
    target: &mut Target,
    channels: &[String],
) -> Result<::redis::aio::PubSub, RedisError> {
    let client = target.client(cfg).await?;
    let mut pubsub = bounded("connect", cfg.dial_timeout, client.get_async_pubsub()).await?;
    for channel in channels {
        bounded("SUBSCRIBE", cfg.io_timeout, pubsub.subscribe(channel)).await?;
    }
    Ok(pubsub)
}

/// Sets the state, notifying only on change; returns the previous value.
fn set_state(state: &watch::Sender<bool>, subscribed: bool) -> bool {
    let mut previous = false;
    state.send_if_modified(|s| {
        previous = *s;
        *s = subscribed;
        previous != subscribed
    });
    previous
}

/// `delay` scaled by a random factor in [0.5, 1.0), so gateways restarted together do not redial in
/// lockstep.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(OsRng.next_u64() % nanos.max(1))
}
