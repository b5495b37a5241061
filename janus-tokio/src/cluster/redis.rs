//! Redis route tables and push pub/sub, in go-pantheon's layout (spec §4.1, §4.3, §5.2).
//!
//! ```text
//! handshake done ─► set_ex_get(gate key, own endpoint)      (gate table, written by Janus)
//! every TTL/2    ─► expire_many_if_same(all own sessions)   false ⇒ the uid logged in elsewhere: kick
//! disconnect     ─► delete_if_same(gate key, own endpoint)
//! new tunnel     ─► get(player key) … set_nx_ex(player key)  (player/room table, sticky placement)
//! roma broadcaster ─PUBLISH <own endpoint> / gate.broadcast.message─► run_subscriber ─► gateway
//! ```
//!
//! # Keys
//!
//! Every table uses janus-core's [`route_key`](janus_core::route::route_key): `r_<name>_{<color>}_{<id>}`. The gate table is
//! `janus.gate.interface` keyed by uid with the gate's gRPC endpoint as value; the player table is
//! `roma.player.service` keyed by oid with the roma node's address. The braces are Redis Cluster hash
//! tags: every key of one colour lands in one slot (so on one cluster node), as with upstream.
//!
//! # Gate-table lifecycle
//!
//! The roma broadcaster finds a player's gateway by reading the gate key and publishes to the
//! channel named after that endpoint, so the key must say where the uid is connected *now*:
//!
//! 1. After the handshake the gateway writes its endpoint with [`RedisTables::set_ex_get`]. The
//!    previous value tells it whether the uid was connected to another gate; that gate loses the
//!    key and drops its connection at its next renewal.
//! 2. Every TTL/2 the gateway renews all its sessions in one round trip with
//!    [`RedisTables::expire_many_if_same`]. `false` means the key is gone or holds another gate's
//!    endpoint (the uid logged in elsewhere): the gateway disconnects that session, as upstream does.
//! 3. On disconnect the gateway deletes the key with [`RedisTables::delete_if_same`]. Upstream leaves
//!    it to expire (the delete is commented out), so pushes go to a gate without the session for up to
//!    the TTL. Comparing first means a stale gateway can never delete a newer login's key.
//!
//! # Why Lua scripts
//!
//! Upstream's `ExpireIfSame` is `WATCH`, `GET`, compare, `MULTI`/`EXPIRE`/`EXEC`: four round trips
//! and a connection of its own, because `WATCH` is connection state. Here compare-and-expire and
//! compare-and-delete are one-line Lua scripts: atomic on the server, one round trip, safe on the
//! shared multiplexed connection, and they can be pipelined, so renewing thousands of sessions is
//! one round trip. Scripts run as `EVALSHA`; the batch path sends `SCRIPT LOAD` first in the same
//! pipeline, so a restarted (empty-cache) Redis never answers `NOSCRIPT`.
//!
//! # Failures
//!
//! Every call is bounded by [`RedisConfig::io_timeout`]: a slow or dead Redis yields
//! [`RedisError::Timeout`] or [`RedisError::Redis`], never a hang. [`RedisTables`] wraps a
//! [`ConnectionManager`] configured with no internal retries: after an I/O error the next call
//! dials again (bounded by [`RedisConfig::dial_timeout`]). While Redis is down calls fail fast; the
//! first call after it comes back may still fail, the following ones use the new connection.
//! The subscriber has its own connection and loop, see [`run_subscriber`].
//!
//! TTLs are sent in milliseconds (`PX`, `PEXPIRE`), at least 1 ms. `set_ex_get` needs Redis ≥ 6.2.
//!
//! # Topologies
//!
//! [`RedisTopology`] picks how Redis is reached (see `conn.rs`):
//!
//! * **Standalone** (default): one server at `addr`.
//! * **Cluster** (`data.redis.cluster: true`): a cluster client seeded with `addr` and
//!   `cluster_seeds`. Every command names one key, so it goes to that key's node; the Lua
//!   scripts touch only their one key, so compare-and-expire and compare-and-delete stay
//!   atomic per key (upstream's go-redis fallback for non-single-node clients is a `GET`
//!   followed by an unconditional `DEL`, which can delete a key another gateway just wrote; it
//!   is not copied). A renewal batch is split into one pipeline per hash tag (per colour, so
//!   per slot), sent to the nodes concurrently. Pushes use plain `PUBLISH`, which a cluster
//!   propagates to every node, so the Go broadcaster's `PUBLISH` reaches a gateway subscribed
//!   on any node; the subscriber connects to one seed node and moves to the next when it is
//!   lost (`SPUBLISH` is not used: the Go side does not send it).
//! * **Sentinel** (`data.redis.sentinel`): the primary of a Sentinel-managed set, found by
//!   asking the sentinels (its `ROLE` checked). When the primary dies or is demoted, calls fail
//!   fast until the sentinels have promoted a replica, then go to the new primary; the
//!   subscriber follows too, and its coming back makes the gateway re-assert its gate table.
//!
//! TLS is not supported.

mod conn;
mod route_store;
mod subscriber;

use std::{future::Future, time::Duration};

use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion,
    RedisConnectionInfo, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use janus_proto::broadcaster::service::push::v1::PushMessage;
use prost::Message as _;

use self::conn::{Connection, Primary};

pub use self::route_store::RedisRouteStore;
pub use self::subscriber::{PING_INTERVAL, RECONNECT_MAX, RECONNECT_MIN, run_subscriber};

/// The channel the roma broadcaster publishes broadcasts to (spec §5.2); the other channel a gateway
/// subscribes to is its own gRPC endpoint.
pub const BROADCAST_CHANNEL: &str = "gate.broadcast.message";

/// Retries of a cluster call (after `MOVED`, `ASK`, `TRYAGAIN` or a lost node), 10–100 ms
/// apart: enough to follow a slot migration, few enough to stay within the call's timeout.
const CLUSTER_RETRIES: u32 = 3;

/// Default connect timeout (upstream `data.redis.dial_timeout`).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default per-call timeout (upstream `data.redis.read_timeout` / `write_timeout`): a slow Redis
/// must not stall handshakes or tunnel creation for longer than this.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// How Redis is deployed.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server at [`RedisConfig::addr`].
    #[default]
    Standalone,
    /// A Redis Cluster, learnt from [`RedisConfig::addr`] and `seeds` (`host:port` each).
    Cluster { seeds: Vec<String> },
    /// The primary the sentinels name `master_name`; [`RedisConfig::addr`] is unused.
    Sentinel {
        master_name: String,
        /// `host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The sentinels' own password; empty for none.
        password: String,
    },
}

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standalone => f.write_str("Standalone"),
            Self::Cluster { seeds } => f.debug_struct("Cluster").field("seeds", seeds).finish(),
            Self::Sentinel {
                master_name,
                sentinels,
                password,
            } => f
                .debug_struct("Sentinel")
                .field("master_name", master_name)
                .field("sentinels", sentinels)
                .field("password", &if password.is_empty() { "" } else { "***" })
                .finish(),
        }
    }
}

/// Where and how to reach Redis (upstream `data.redis`).
#[derive(Clone)]
pub struct RedisConfig {
    /// `host:port` (or `[v6]:port`); the first seed node in cluster mode. Default
    /// `localhost:6379`.
    pub addr: String,
    /// `AUTH` password of the data nodes; empty for none. Default empty.
    pub password: String,
    /// Standalone, cluster or Sentinel. Default standalone.
    pub topology: RedisTopology,
    /// Bound on each TCP connect and handshake. Default [`DEFAULT_DIAL_TIMEOUT`].
    pub dial_timeout: Duration,
    /// Bound on each call, from send to reply. Default [`DEFAULT_IO_TIMEOUT`].
    pub io_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            addr: "localhost:6379".to_owned(),
            password: String::new(),
            topology: RedisTopology::Standalone,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("topology", &self.topology)
            .field("dial_timeout", &self.dial_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

/// `host:port` (or `[v6]:port`) as a TCP address.
fn tcp_addr(addr: &str) -> Result<ConnectionAddr, RedisError> {
    let invalid = || RedisError::InvalidAddr {
        addr: addr.to_owned(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok(ConnectionAddr::Tcp(host.to_owned(), port))
}

impl RedisConfig {
    /// A data node at `addr`, with the data nodes' password.
    fn node_info(&self, addr: &str) -> Result<ConnectionInfo, RedisError> {
        Ok(ConnectionInfo {
            addr: tcp_addr(addr)?,
            redis: RedisConnectionInfo {
                db: 0,
                username: None,
                password: (!self.password.is_empty()).then(|| self.password.clone()),
                protocol: ProtocolVersion::RESP2,
            },
        })
    }

    /// A client for the standalone server (`addr`).
    fn client(&self) -> Result<Client, RedisError> {
        self.node_client(&self.addr)
    }

    fn node_client(&self, addr: &str) -> Result<Client, RedisError> {
        Client::open(self.node_info(addr)?)
            .map_err(|source| RedisError::Redis { op: "open", source })
    }

    /// The cluster's seed nodes: `addr`, then the configured seeds.
    fn cluster_nodes(&self) -> Vec<String> {
        let mut nodes = vec![self.addr.clone()];
        if let RedisTopology::Cluster { seeds } = &self.topology {
            nodes.extend(seeds.iter().filter(|s| **s != self.addr).cloned());
        }
        nodes
    }

    /// A client that asks the sentinels for the primary named `master_name`.
    fn sentinel_client(
        &self,
        master_name: &str,
        sentinels: &[String],
        password: &str,
    ) -> Result<SentinelClient, RedisError> {
        let open = |source| RedisError::Redis {
            op: "sentinel",
            source,
        };
        let addrs = sentinels
            .iter()
            .map(|s| tcp_addr(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder =
            SentinelClientBuilder::new(addrs, master_name.to_owned(), SentinelServerType::Master)
                .map_err(open)?
                .set_client_to_redis_protocol(ProtocolVersion::RESP2)
                .set_client_to_sentinel_protocol(ProtocolVersion::RESP2);
        if !self.password.is_empty() {
            builder = builder.set_client_to_redis_password(self.password.clone());
        }
        if !password.is_empty() {
            builder = builder.set_client_to_sentinel_password(password.to_owned());
        }
        builder.build().map_err(open)
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(self.dial_timeout)
            .set_response_timeout(self.io_timeout)
    }
}

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// No reply (or no connection) within the configured timeout.
    #[error("redis {op}: no answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// Redis or the connection reported an error (refused, reset, `WRONGTYPE`, `NOAUTH`, ...).
    #[error("redis {op}: {source}")]
    Redis {
        op: &'static str,
        #[source]
        source: ::redis::RedisError,
    },
    /// `addr` is not `host:port`.
    #[error("redis address {addr:?} is not host:port")]
    InvalidAddr { addr: String },
    /// Sentinel mode: no primary could be reached just now (the last attempt failed less than
    /// [`RECONNECT_MIN`] ago; a failover is probably under way).
    #[error("redis sentinel: no reachable primary for {master_name:?} (retrying)")]
    NoPrimary { master_name: String },
    /// A pub/sub payload is not a `PushMessage`.
    #[error("undecodable PushMessage on channel {channel:?}: {source}")]
    Decode {
        channel: String,
        #[source]
        source: prost::DecodeError,
    },
    /// Redis answered with a shape the command cannot produce (a proxy or a wrong server).
    #[error("redis {op}: unexpected reply {reply}")]
    UnexpectedReply { op: &'static str, reply: String },
}

impl RedisError {
    /// Whether the server is unreachable or slow (as opposed to a command or data error).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::NoPrimary { .. } => true,
            Self::Redis { source, .. } => {
                source.is_io_error() || source.is_timeout() || source.is_connection_dropped()
            }
            _ => false,
        }
    }
}

/// `GET == value` then `PEXPIRE`, atomically. Returns 1 if renewed, 0 otherwise.
const EXPIRE_IF_SAME_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// `GET == value` then `DEL`, atomically. Returns 1 if deleted, 0 otherwise.
const DELETE_IF_SAME_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// The route tables and the publisher, over one multiplexed connection. Cheap to clone; clones
/// share the connection.
#[derive(Clone)]
pub struct RedisTables {
    conn: Connection,
    io_timeout: Duration,
    expire_if_same: Script,
    delete_if_same: Script,
}

impl std::fmt::Debug for RedisTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTables")
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisTables {
    /// Connects (and authenticates) within `dial_timeout`; fails if Redis is unreachable now, so the
    /// caller decides whether to start without it. Later outages are survived by reconnecting.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self, RedisError> {
        let conn = match &cfg.topology {
            RedisTopology::Standalone => {
                let client = cfg.client()?;
                // No internal retries: the crate's backoff starts at 1 s and grows to 60 s,
                // during which every call would wait. Failing the call and redialling on the
                // next one is bounded by our own timeouts instead.
                let manager_config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(cfg.dial_timeout)
                    .set_response_timeout(cfg.io_timeout);
                Connection::Standalone(
                    bounded(
                        "connect",
                        cfg.dial_timeout,
                        ConnectionManager::new_with_config(client, manager_config),
                    )
                    .await?,
                )
            }
            RedisTopology::Cluster { .. } => {
                let nodes = cfg
                    .cluster_nodes()
                    .iter()
                    .map(|n| cfg.node_info(n))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(nodes)
                    .use_protocol(ProtocolVersion::RESP2)
                    .connection_timeout(cfg.dial_timeout)
                    .response_timeout(cfg.io_timeout)
                    // A few quick retries follow MOVED/ASK and a refreshed slot map; every call
                    // is bounded by io_timeout on top.
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if !cfg.password.is_empty() {
                    builder = builder.password(cfg.password.clone());
                }
                let client = builder.build().map_err(|source| RedisError::Redis {
                    op: "cluster",
                    source,
                })?;
                Connection::Cluster(
                    bounded("connect", cfg.dial_timeout, client.get_async_connection()).await?,
                )
            }
            RedisTopology::Sentinel {
                master_name,
                sentinels,
                password,
            } => {
                let sentinel = cfg.sentinel_client(master_name, sentinels, password)?;
                Connection::Sentinel(
                    Primary::connect(
                        sentinel,
                        master_name.clone(),
                        cfg.async_config(),
                        cfg.dial_timeout,
                    )
                    .await?,
                )
            }
        };
        Ok(Self {
            conn,
            io_timeout: cfg.io_timeout,
            expire_if_same: Script::new(EXPIRE_IF_SAME_LUA),
            delete_if_same: Script::new(DELETE_IF_SAME_LUA),
        })
    }

    /// `GET key`; `None` when the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<String>, RedisError> {
        self.query("GET", ::redis::cmd("GET").arg(key)).await
    }

    /// `SET key value NX PX ttl`: `true` if this call created the key, `false` if it existed.
    pub async fn set_nx_ex(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let cmd = ::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .to_owned();
        let reply: Value = self.query("SET NX", &cmd).await?;
        match reply {
            Value::Okay => Ok(true),
            Value::SimpleString(s) if s == "OK" => Ok(true),
            Value::Nil => Ok(false),
            other => Err(unexpected("SET NX", &other)),
        }
    }

    /// `SET key value PX ttl GET`: writes unconditionally and returns the previous value.
    pub async fn set_ex_get(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, RedisError> {
        let cmd = ::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .arg("GET")
            .to_owned();
        self.query("SET GET", &cmd).await
    }

    /// Sets the TTL of `key` only if it holds `value`; `false` if the key is missing or holds
    /// another value (for the gate table: the uid is now connected elsewhere).
    pub async fn expire_if_same(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let mut call = self.expire_if_same.key(key);
        call.arg(value).arg(ttl_ms(ttl));
        let mut lease = self.conn.lease().await?;
        let result = bounded(
            "expire_if_same",
            self.io_timeout,
            call.invoke_async::<i64>(&mut lease),
        )
        .await;
        Ok(self.conn.settle(&lease, result)? == 1)
    }

    /// Deletes `key` only if it holds `value`, so a gateway never removes a newer login's entry.
    pub async fn delete_if_same(&self, key: &str, value: &str) -> Result<bool, RedisError> {
        let mut call = self.delete_if_same.key(key);
        call.arg(value);
        let mut lease = self.conn.lease().await?;
        let result = bounded(
            "delete_if_same",
            self.io_timeout,
            call.invoke_async::<i64>(&mut lease),
        )
        .await;
        Ok(self.conn.settle(&lease, result)? == 1)
    }

    /// [`Self::expire_if_same`] for every `(key, value)`, pipelined; the result is in `entries`
    /// order. Standalone and Sentinel: one round trip. Cluster: one pipeline per hash tag (a
    /// pipeline must stay in one slot), all sent at once. The whole batch shares one
    /// `io_timeout`; a server error on any entry (e.g. `WRONGTYPE`) fails the whole call.
    pub async fn expire_many_if_same(
        &self,
        entries: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<bool>, RedisError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = ttl_ms(ttl);
        let groups: Vec<Vec<usize>> = if self.conn.is_cluster() {
            let mut by_tag: std::collections::HashMap<&str, Vec<usize>> =
                std::collections::HashMap::new();
            for (i, (key, _)) in entries.iter().enumerate() {
                by_tag.entry(hash_tag(key)).or_default().push(i);
            }
            by_tag.into_values().collect()
        } else {
            vec![(0..entries.len()).collect()]
        };
        let lease = self.conn.lease().await?;
        let batch = async {
            let mut pipes = Vec::with_capacity(groups.len());
            for group in &groups {
                let mut pipe = ::redis::pipe();
                // Loads the script (a no-op when cached) ahead of the EVALSHAs on the same
                // connection (in a cluster: on the node the group's keys live on).
                pipe.cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(EXPIRE_IF_SAME_LUA)
                    .ignore();
                for (key, value) in group.iter().filter_map(|&i| entries.get(i)) {
                    pipe.cmd("EVALSHA")
                        .arg(self.expire_if_same.get_hash())
                        .arg(1)
                        .arg(key)
                        .arg(value)
                        .arg(ttl);
                }
                pipes.push(pipe);
            }
            let replies = futures_util::future::join_all(pipes.iter().map(|pipe| {
                let mut conn = lease.clone();
                async move { pipe.query_async::<Vec<i64>>(&mut conn).await }
            }))
            .await;
            let mut renewed = vec![false; entries.len()];
            for (group, reply) in groups.iter().zip(replies) {
                let reply = reply?;
                if reply.len() != group.len() {
                    return Err(::redis::RedisError::from((
                        ::redis::ErrorKind::ResponseError,
                        "wrong number of replies",
                        format!("{} replies for {} keys", reply.len(), group.len()),
                    )));
                }
                for (&i, n) in group.iter().zip(reply) {
                    if let Some(slot) = renewed.get_mut(i) {
                        *slot = n == 1;
                    }
                }
            }
            Ok(renewed)
        };
        let result = bounded("expire_many_if_same", self.io_timeout, batch).await;
        self.conn.settle(&lease, result)
    }

    /// `PUBLISH channel <protobuf PushMessage>`. Succeeds even when nobody is subscribed. In a
    /// cluster the message reaches subscribers on every node.
    pub async fn publish(&self, channel: &str, message: &PushMessage) -> Result<(), RedisError> {
        let cmd = ::redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message.encode_to_vec())
            .to_owned();
        let _receivers: i64 = self.query("PUBLISH", &cmd).await?;
        Ok(())
    }

    /// Runs one command on the live connection.
    async fn query<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut lease = self.conn.lease().await?;
        let result = bounded(op, self.io_timeout, cmd.query_async(&mut lease)).await;
        self.conn.settle(&lease, result)
    }
}

/// The part of `key` Redis Cluster hashes: the text inside the first `{…}` when it is not
/// empty, else the whole key (`r_svc_{blue}_{7}` → `blue`).
fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

/// Runs `fut` with a deadline, naming `op` in the error.
async fn bounded<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RedisError::Redis { op, source }),
        Err(_) => Err(RedisError::Timeout { op, after }),
    }
}

/// A TTL in whole milliseconds, at least 1 (Redis rejects `PX 0`).
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn unexpected(op: &'static str, reply: &Value) -> RedisError {
    RedisError::UnexpectedReply {
        op,
        reply: format!("{reply:?}"),
    }
}
