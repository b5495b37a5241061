//! The HTTP/2 connections to one backend, grown with the tunnels in use.
//!
//! Every tunnel is one gRPC stream, and a backend (or a proxy in front of it) limits the streams
//! of one connection with `SETTINGS_MAX_CONCURRENT_STREAMS`, often to 100. An HTTP/2 client
//! queues a stream over the limit without telling anyone, so a fixed handful of connections
//! would leave the 401st player of a backend waiting for a reply that never comes. The pool
//! therefore counts the streams on each connection and never puts more on one than its backend
//! advertised (learnt from the connection's own `SETTINGS`, see [`super::sniff`]; until they
//! arrive, [`ASSUMED_STREAMS`]):
//!
//! ```text
//! acquire ─► a base connection with room (the least loaded of the first `min_connections`,
//!            so tunnels spread and one slow stream's flow control cannot stall the rest)
//!        ─► else the first overflow connection with room (packed, so the overflow drains)
//!        ─► else a new connection, up to `max_connections`
//!        ─► else PoolError::Saturated: the tunnel fails at once (the session answers the
//!           request with SCServerUnexpectedErr) and janus_tunnel_failures_total
//!           {stage="saturated"} counts it
//! release ─► idle overflow connections are closed once the rest has a connection's worth of
//!            room left (so a load at the boundary does not open and close them in a loop)
//! ```

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use tonic::transport::{Channel, Endpoint};

use super::sniff::{AdvertisedLimit, SniffConnector};

/// Streams a connection is trusted with until its `SETTINGS` arrive: RFC 9113 §6.5.2
/// recommends that servers allow at least 100, and common servers and proxies advertise 100
/// or more. A backend that advertises fewer is honoured from its first `SETTINGS` on.
pub const ASSUMED_STREAMS: u32 = 100;

/// How one backend's connections are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections opened as soon as the backend is used, and kept: tunnels are spread over
    /// them. Default [`DEFAULT_MIN_CONNECTIONS`].
    pub min_connections: usize,
    /// Most connections to one backend; with every one at its stream limit, a new tunnel fails
    /// fast. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
}

/// Connections kept per backend (the pool before it grows): 4, as before the pool grew.
pub const DEFAULT_MIN_CONNECTIONS: usize = 4;
/// Most connections per backend: 64 × 100 streams = 6,400 tunnels from one gateway to one
/// backend, beyond which a backend is overloaded anyway.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_connections: DEFAULT_MIN_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why no stream could be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// Every connection is at its stream limit and the pool at its maximum.
    #[error("saturated: {streams} streams on {connections} connections, each at its limit")]
    Saturated { connections: usize, streams: u32 },
}

/// One HTTP/2 connection (lazily dialled, redialled by tonic when lost).
#[derive(Debug)]
struct Slot {
    channel: Channel,
    limit: Arc<AdvertisedLimit>,
    in_use: AtomicU32,
}

impl Slot {
    fn capacity(&self) -> u32 {
        self.limit.get().unwrap_or(ASSUMED_STREAMS)
    }

    fn room(&self) -> u32 {
        self.capacity()
            .saturating_sub(self.in_use.load(Ordering::Relaxed))
    }
}

/// One backend's connections.
#[derive(Debug)]
pub struct ChannelPool {
    endpoint: Endpoint,
    config: PoolConfig,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// A stream's place on a connection, held for the tunnel's life.
#[derive(Debug)]
pub struct StreamLease {
    slot: Arc<Slot>,
    pool: Arc<ChannelPool>,
}

impl StreamLease {
    /// The connection to open the stream on.
    pub fn channel(&self) -> Channel {
        self.slot.channel.clone()
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.slot.in_use.fetch_sub(1, Ordering::Relaxed);
        self.pool.shrink();
    }
}

/// What the admin API shows of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    pub connections: usize,
    pub streams: u32,
    /// The lowest limit a connection advertised (`None`: none has yet).
    pub advertised_limit: Option<u32>,
}

impl ChannelPool {
    /// A pool for `endpoint`; nothing is dialled until a stream is acquired.
    pub fn new(endpoint: Endpoint, config: PoolConfig) -> Arc<Self> {
        let config = PoolConfig {
            min_connections: config.min_connections.max(1),
            max_connections: config.max_connections.max(config.min_connections.max(1)),
        };
        Arc::new(ChannelPool {
            endpoint,
            config,
            slots: Mutex::new(Vec::new()),
        })
    }

    fn slot(&self) -> Arc<Slot> {
        let limit = Arc::new(AdvertisedLimit::default());
        let connector = SniffConnector {
            limit: Arc::clone(&limit),
        };
        Arc::new(Slot {
            channel: self.endpoint.connect_with_connector_lazy(connector),
            limit,
            in_use: AtomicU32::new(0),
        })
    }

    /// A place for one more stream, or [`PoolError::Saturated`] at once.
    pub fn acquire(self: &Arc<Self>) -> Result<StreamLease, PoolError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while slots.len() < self.config.min_connections {
            let slot = self.slot();
            slots.push(slot);
        }
        let base = slots
            .iter()
            .take(self.config.min_connections)
            .filter(|s| s.room() > 0)
            .min_by_key(|s| s.in_use.load(Ordering::Relaxed));
        let chosen = match base {
            Some(s) => Arc::clone(s),
            None => match slots
                .iter()
                .skip(self.config.min_connections)
                .find(|s| s.room() > 0)
            {
                Some(s) => Arc::clone(s),
                None if slots.len() < self.config.max_connections => {
                    let slot = self.slot();
                    slots.push(Arc::clone(&slot));
                    slot
                }
                None => {
                    return Err(PoolError::Saturated {
                        connections: slots.len(),
                        streams: slots.iter().map(|s| s.in_use.load(Ordering::Relaxed)).sum(),
                    });
                }
            },
        };
        chosen.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(StreamLease {
            slot: chosen,
            pool: Arc::clone(self),
        })
    }

    /// Closes idle overflow connections while the others keep a connection's worth of room.
    fn shrink(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while slots.len() > self.config.min_connections {
            let Some((last, rest)) = slots.split_last() else {
                break;
            };
            if last.in_use.load(Ordering::Relaxed) > 0 {
                break;
            }
            let room: u32 = rest.iter().map(|s| s.room()).sum();
            if room < last.capacity() {
                break;
            }
            slots.pop();
        }
    }

    /// Connections, streams in use, and the advertised limit.
    pub fn status(&self) -> PoolStatus {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        PoolStatus {
            connections: slots.len(),
            streams: slots.iter().map(|s| s.in_use.load(Ordering::Relaxed)).sum(),
            advertised_limit: slots.iter().filter_map(|s| s.limit.get()).min(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min: usize, max: usize) -> Arc<ChannelPool> {
        let endpoint = Endpoint::from_static("http://127.0.0.1:1");
        ChannelPool::new(
            endpoint,
            PoolConfig {
                min_connections: min,
                max_connections: max,
            },
        )
    }

    #[tokio::test]
    async fn grows_by_the_assumed_limit_then_fails_fast_and_shrinks_back() {
        let pool = pool(2, 4);
        let mut leases = Vec::new();
        for _ in 0..4 * ASSUMED_STREAMS {
            leases.push(pool.acquire().unwrap());
        }
        assert_eq!(
            pool.status(),
            PoolStatus {
                connections: 4,
                streams: 4 * ASSUMED_STREAMS,
                advertised_limit: None
            }
        );
        assert_eq!(
            pool.acquire().unwrap_err(),
            PoolError::Saturated {
                connections: 4,
                streams: 4 * ASSUMED_STREAMS
            }
        );
        // The base connections were filled evenly before any overflow one opened.
        let first_two: u32 = leases
            .iter()
            .take(2 * ASSUMED_STREAMS as usize)
            .map(|l| u32::from(Arc::ptr_eq(&l.slot, &leases[0].slot)))
            .sum();
        assert_eq!(first_two, ASSUMED_STREAMS);
        // Releasing the overflow streams closes the overflow connections again.
        leases.truncate(ASSUMED_STREAMS as usize);
        let status = pool.status();
        assert_eq!(status.streams, ASSUMED_STREAMS);
        assert_eq!(status.connections, 2, "{status:?}");
        drop(leases);
        assert_eq!(pool.status().connections, 2, "the base stays");
    }

    #[tokio::test]
    async fn an_advertised_limit_below_the_assumption_is_honoured() {
        let pool = pool(1, 3);
        let lease = pool.acquire().unwrap();
        // As if the connection's SETTINGS said 2.
        lease.slot.limit.set_for_test(2);
        let second = pool.acquire().unwrap();
        assert!(Arc::ptr_eq(&lease.slot, &second.slot));
        let third = pool.acquire().unwrap();
        assert!(
            !Arc::ptr_eq(&lease.slot, &third.slot),
            "a full connection gets no third"
        );
        assert_eq!(pool.status().connections, 2);
        assert_eq!(pool.status().advertised_limit, Some(2));
    }
}
