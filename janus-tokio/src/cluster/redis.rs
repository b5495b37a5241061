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
//! tags (one slot per colour), kept for compatibility even though this client is standalone-only.
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
//! # Not supported
//!
//! Redis Cluster (`data.redis.cluster: true` upstream) is out of scope for now: this module talks
//! to one standalone server (or a proxy in front of a cluster). TLS and Sentinel are not supported.

mod route_store;
mod subscriber;

use std::{future::Future, time::Duration};

use ::redis::{
    Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use janus_proto::broadcaster::service::push::v1::PushMessage;
use prost::Message as _;

pub use self::route_store::RedisRouteStore;
pub use self::subscriber::{PING_INTERVAL, RECONNECT_MAX, RECONNECT_MIN, run_subscriber};

/// The channel the roma broadcaster publishes broadcasts to (spec §5.2); the other channel a gateway
/// subscribes to is its own gRPC endpoint.
pub const BROADCAST_CHANNEL: &str = "gate.broadcast.message";

/// Default connect timeout (upstream `data.redis.dial_timeout`).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default per-call timeout (upstream `data.redis.read_timeout` / `write_timeout`): a slow Redis
/// must not stall handshakes or tunnel creation for longer than this.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Where and how to reach Redis (upstream `data.redis`).
#[derive(Clone)]
pub struct RedisConfig {
    /// `host:port` (or `[v6]:port`). Default `localhost:6379`.
    pub addr: String,
    /// `AUTH` password; empty for none. Default empty.
    pub password: String,
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
            .field("dial_timeout", &self.dial_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

impl RedisConfig {
    fn client(&self) -> Result<Client, RedisError> {
        let invalid = || RedisError::InvalidAddr {
            addr: self.addr.clone(),
        };
        let (host, port) = self.addr.rsplit_once(':').ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| invalid())?;
        if host.is_empty() {
            return Err(invalid());
        }
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(host.to_owned(), port),
            redis: RedisConnectionInfo {
                db: 0,
                username: None,
                password: (!self.password.is_empty()).then(|| self.password.clone()),
                protocol: ProtocolVersion::RESP2,
            },
        };
        Client::open(info).map_err(|source| RedisError::Redis { op: "open", source })
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
            Self::Timeout { .. } => true,
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
    conn: ConnectionManager,
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
        let client = cfg.client()?;
        // No internal retries: the crate's backoff starts at 1 s and grows to 60 s, during which
        // every call would wait. Failing the call and redialling on the next one is bounded by
        // our own timeouts instead.
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(cfg.dial_timeout)
            .set_response_timeout(cfg.io_timeout);
        let conn = bounded(
            "connect",
            cfg.dial_timeout,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await?;
        Ok(Self {
            conn,
            io_timeout: cfg.io_timeout,
            expire_if_same: Script::new(EXPIRE_IF_SAME_LUA),
            delete_if_same: Script::new(DELETE_IF_SAME_LUA),
        })
    }

    /// `GET key`; `None` when the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<String>, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("GET").arg(key).to_owned();
        bounded("GET", self.io_timeout, cmd.query_async(&mut conn)).await
    }

    /// `SET key value NX PX ttl`: `true` if this call created the key, `false` if it existed.
    pub async fn set_nx_ex(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .to_owned();
        let reply: Value = bounded("SET NX", self.io_timeout, cmd.query_async(&mut conn)).await?;
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
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .arg("GET")
            .to_owned();
        bounded("SET GET", self.io_timeout, cmd.query_async(&mut conn)).await
    }

    /// Sets the TTL of `key` only if it holds `value`; `false` if the key is missing or holds
    /// another value (for the gate table: the uid is now connected elsewhere).
    pub async fn expire_if_same(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let mut call = self.expire_if_same.key(key);
        call.arg(value).arg(ttl_ms(ttl));
        let n: i64 = bounded(
            "expire_if_same",
            self.io_timeout,
            call.invoke_async(&mut conn),
        )
        .await?;
        Ok(n == 1)
    }

    /// Deletes `key` only if it holds `value`, so a gateway never removes a newer login's entry.
    pub async fn delete_if_same(&self, key: &str, value: &str) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let mut call = self.delete_if_same.key(key);
        call.arg(value);
        let n: i64 = bounded(
            "delete_if_same",
            self.io_timeout,
            call.invoke_async(&mut conn),
        )
        .await?;
        Ok(n == 1)
    }

    /// [`Self::expire_if_same`] for every `(key, value)` in one pipelined round trip; the result is
    /// in `entries` order. The whole batch shares one `io_timeout`; a server error on any entry
    /// (e.g. `WRONGTYPE`) fails the whole call.
    pub async fn expire_many_if_same(
        &self,
        entries: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<bool>, RedisError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = ttl_ms(ttl);
        let hash = self.expire_if_same.get_hash();
        let mut pipe = ::redis::pipe();
        // Loads the script (a no-op when cached) ahead of the EVALSHAs on the same connection.
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(EXPIRE_IF_SAME_LUA)
            .ignore();
        for (key, value) in entries {
            pipe.cmd("EVALSHA")
                .arg(hash)
                .arg(1)
                .arg(key)
                .arg(value)
                .arg(ttl);
        }
        let mut conn = self.conn.clone();
        let renewed: Vec<i64> = bounded(
            "expire_many_if_same",
            self.io_timeout,
            pipe.query_async(&mut conn),
        )
        .await?;
        if renewed.len() != entries.len() {
            return Err(RedisError::UnexpectedReply {
                op: "expire_many_if_same",
                reply: format!("{} replies for {} keys", renewed.len(), entries.len()),
            });
        }
        Ok(renewed.into_iter().map(|n| n == 1).collect())
    }

    /// `PUBLISH channel <protobuf PushMessage>`. Succeeds even when nobody is subscribed.
    pub async fn publish(&self, channel: &str, message: &PushMessage) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message.encode_to_vec())
            .to_owned();
        let _receivers: i64 =
            bounded("PUBLISH", self.io_timeout, cmd.query_async(&mut conn)).await?;
        Ok(())
    }
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
