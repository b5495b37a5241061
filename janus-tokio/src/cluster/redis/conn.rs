//! The three ways to reach Redis, behind one [`Connection`]: a standalone server, a Redis
//! Cluster, or the primary of a Sentinel-managed primary/replica set.
//!
//! ```text
//! Standalone  ConnectionManager: one multiplexed connection, redialled after an error
//! Cluster     ClusterConnection: a connection per node, commands routed by key slot,
//!             MOVED/ASK followed, topology refreshed on errors
//! Sentinel    Primary: asks the sentinels for the primary (its ROLE checked), keeps one
//!             multiplexed connection to it; a connection error, a timeout or READONLY (the
//!             node was demoted) drops it, and the next call asks the sentinels again
//! ```
//!
//! Every call takes a [`Lease`] (a clone of the live connection), runs on it, and reports how it
//! went with [`Connection::settle`], which is how the Sentinel variant learns that its primary
//! is gone. Redialling is single-flight and at most once per [`super::RECONNECT_MIN`], so a
//! burst of calls during a failover costs one sentinel round trip, not one each.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use ::redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
    cluster_async::ClusterConnection,
    sentinel::SentinelClient,
};
use tracing::{info, warn};

use super::{RECONNECT_MIN, RedisError, bounded};

/// A connection to Redis in one of its topologies. Cheap to clone; clones share it.
#[derive(Clone)]
pub(super) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<Primary>),
}

impl Connection {
    /// The connection a call runs on; for Sentinel, (re)connects to the current primary first
    /// (bounded by the dial timeout).
    pub(super) async fn lease(&self) -> Result<Lease, RedisError> {
        match self {
            Connection::Standalone(c) => Ok(Lease::Standalone(c.clone())),
            Connection::Cluster(c) => Ok(Lease::Cluster(c.clone())),
            Connection::Sentinel(p) => p.lease().await,
        }
    }

    /// Reports a call's outcome: a Sentinel primary that failed is forgotten.
    pub(super) fn settle<T>(
        &self,
        lease: &Lease,
        result: Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        if let (Connection::Sentinel(p), Lease::Primary { generation, .. }, Err(e)) =
            (self, lease, &result)
        {
            if primary_lost(e) {
                p.forget(*generation, e);
            }
        }
        result
    }

    /// Whether keys of different slots must go in separate pipelines.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

/// Whether `e` means the connection no longer reaches a writable primary.
fn primary_lost(e: &RedisError) -> bool {
    e.is_unavailable()
        || matches!(e, RedisError::Redis { source, .. }
            if matches!(source.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown))
}

/// One call's connection.
#[derive(Clone)]
pub(super) enum Lease {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Primary {
        conn: MultiplexedConnection,
        generation: u64,
    },
}

impl ConnectionLike for Lease {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Lease::Standalone(c) => c.req_packed_command(cmd),
            Lease::Cluster(c) => c.req_packed_command(cmd),
            Lease::Primary { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Lease::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Lease::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Lease::Primary { conn, .. } => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Lease::Standalone(c) => c.get_db(),
            Lease::Cluster(c) => c.get_db(),
            Lease::Primary { conn, .. } => conn.get_db(),
        }
    }
}

/// The primary of a Sentinel-managed set, followed across failovers.
pub(super) struct Primary {
    /// Asks the sentinels; locked while (re)connecting, which makes redialling single-flight.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The live connection and its generation; `None` after a failure.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// When the last attempt to reach a primary failed: the next waits [`RECONNECT_MIN`].
    failed_at: Mutex<Option<Instant>>,
    config: AsyncConnectionConfig,
    dial_timeout: std::time::Duration,
    /// The sentinels' master name, for logs.
    pub(super) master_name: String,
}

impl Primary {
    /// Connects to the current primary now (start-up must fail when there is none).
    pub(super) async fn connect(
        sentinel: SentinelClient,
        master_name: String,
        config: AsyncConnectionConfig,
        dial_timeout: std::time::Duration,
    ) -> Result<Arc<Self>, RedisError> {
        let primary = Arc::new(Primary {
            sentinel: tokio::sync::Mutex::new(sentinel),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            failed_at: Mutex::new(None),
            config,
            dial_timeout,
            master_name,
        });
        primary.lease().await?;
        Ok(primary)
    }

    fn live(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn lease(&self) -> Result<Lease, RedisError> {
        if let Some((generation, conn)) = self.live() {
            return Ok(Lease::Primary { conn, generation });
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another call may have connected while this one waited for the lock.
        if let Some((generation, conn)) = self.live() {
            return Ok(Lease::Primary { conn, generation });
        }
        let recent_failure = self
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < RECONNECT_MIN);
        if recent_failure {
            return Err(RedisError::NoPrimary {
                master_name: self.master_name.clone(),
            });
        }
        let config = self.config.clone();
        let dialled = bounded("sentinel: connect to primary", self.dial_timeout, async {
            let client = sentinel.async_get_client().await?;
            let addr = client.get_connection_info().addr.to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok((addr, conn))
        })
        .await;
        drop(sentinel);
        match dialled {
            Ok((addr, conn)) => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, conn.clone()));
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                info!(master = %self.master_name, primary = %addr, generation, "redis sentinel: connected to the primary");
                Ok(Lease::Primary { conn, generation })
            }
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Drops the connection of `generation` (if still current) after `error`.
    fn forget(&self, generation: u64, error: &RedisError) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
            warn!(master = %self.master_name, %error, "redis sentinel: primary lost, asking the sentinels again");
        }
    }
}
