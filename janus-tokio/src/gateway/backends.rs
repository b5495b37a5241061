//! Backends per tunnel kind: where a new tunnel goes (sticky route table, colour filter, smooth
//! weighted round-robin), and the gRPC channels to reach them.
//!
//! The embedded default is a static list per kind from the config and an in-memory route table
//! with the semantics of the Redis one (spec §4.1, §4.3): `GET`, then `SET NX` with a TTL on
//! first placement, so an oid stays on its backend while the entry lives.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use janus_core::route::{
    Backend, BackendSet, Placement, RouteError, SmoothWrr, TunnelKind, place, settle,
};
use tonic::transport::{Channel, Endpoint};

/// HTTP/2 connections per backend: tunnels are spread over them by oid, so one slow stream's
/// flow control cannot stall every other tunnel to that backend.
pub const DEFAULT_CHANNELS_PER_BACKEND: usize = 4;

/// A configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// `host:port` of its gRPC server.
    pub addr: String,
    pub weight: u32,
    /// `None` serves every colour.
    pub color: Option<String>,
}

/// Why no backend could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("no backends configured for tunnel kind {0:?}")]
    UnknownKind(String),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("backend {addr}: {source}")]
    Endpoint {
        addr: String,
        source: tonic::transport::Error,
    },
}

struct KindBackends {
    set: BackendSet,
    wrr: Mutex<SmoothWrr>,
    /// One lazily connected channel group per backend, in set order.
    channels: Vec<Vec<Channel>>,
}

/// A route-table key: `(kind, colour, oid)`, as in `r_<kind service>_{<colour>}_{<oid>}`.
type RouteKey = (String, String, i64);

/// The in-memory route table: key → (backend address, expiry).
#[derive(Debug, Default)]
struct MemoryRouteTable {
    entries: Mutex<HashMap<RouteKey, (String, Instant)>>,
}

impl MemoryRouteTable {
    fn get(&self, key: &RouteKey, now: Instant) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(addr, _)| addr.clone())
    }

    /// `SET key addr NX EX ttl`: whether we won, and what the entry holds afterwards.
    fn set_nx(
        &self,
        key: (String, String, i64),
        addr: &str,
        ttl: Duration,
        now: Instant,
    ) -> (bool, String) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 100_000 {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        match entries.get(&key) {
            Some((existing, expires)) if *expires > now => (false, existing.clone()),
            _ => {
                entries.insert(key, (addr.to_owned(), now + ttl));
                (true, addr.to_owned())
            }
        }
    }
}

/// Every kind's backends and the route table.
pub struct Backends {
    kinds: BTreeMap<String, KindBackends>,
    table: MemoryRouteTable,
    ttl: Duration,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A chosen backend.
#[derive(Debug, Clone)]
pub struct Picked {
    pub addr: String,
    pub channel: Channel,
}

impl Backends {
    /// Channels are created lazily: nothing is dialled until a tunnel needs the backend.
    pub fn new(
        specs: &BTreeMap<String, Vec<BackendSpec>>,
        ttl: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, PickError> {
        let mut kinds = BTreeMap::new();
        for (kind, list) in specs {
            let backends: Vec<Backend> = list
                .iter()
                .map(|b| Backend {
                    addr: b.addr.clone(),
                    weight: b.weight,
                    color: b.color.clone(),
                })
                .collect();
            let set = BackendSet::new(backends).map_err(|e| {
                PickError::Route(RouteError::NoBackend {
                    color: e.to_string(),
                })
            })?;
            let mut channels = Vec::with_capacity(list.len());
            for b in list {
                let endpoint = Endpoint::from_shared(format!("http://{}", b.addr))
                    .map_err(|source| PickError::Endpoint {
                        addr: b.addr.clone(),
                        source,
                    })?
                    .connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .keep_alive_timeout(Duration::from_secs(10));
                channels.push(
                    (0..DEFAULT_CHANNELS_PER_BACKEND)
                        .map(|_| endpoint.connect_lazy())
                        .collect(),
                );
            }
            let wrr = Mutex::new(SmoothWrr::new(&set));
            kinds.insert(kind.clone(), KindBackends { set, wrr, channels });
        }
        Ok(Self {
            kinds,
            table: MemoryRouteTable::default(),
            ttl,
        })
    }

    /// Chooses the backend for a new tunnel of `kind` (its configured name) to `oid` for a session
    /// of `color`: the route table's entry if it names an available backend, else a smooth
    /// weighted round-robin pick written with SETNX semantics.
    pub fn pick(&self, kind: &str, color: &str, oid: i64) -> Result<Picked, PickError> {
        let kb = self
            .kinds
            .get(kind)
            .ok_or_else(|| PickError::UnknownKind(kind.to_owned()))?;
        let candidates = kb.set.candidates_for(color);
        let key = (kind.to_owned(), color.to_owned(), oid);
        let now = Instant::now();
        let sticky = self.table.get(&key, now);
        let placement = place(sticky.as_deref(), &candidates, |c| {
            kb.wrr.lock().unwrap_or_else(|p| p.into_inner()).pick(c)
        })?;
        let index = match placement {
            Placement::Sticky(i) => i,
            Placement::New(i) => {
                let addr = kb.set.get(i).map(|b| b.addr.clone()).unwrap_or_default();
                let (won, stored) = self.table.set_nx(key, &addr, self.ttl, now);
                settle(i, won, Some(&stored), &candidates)?
            }
        };
        let backend = kb.set.get(index).ok_or(RouteError::NoBackend {
            color: color.to_owned(),
        })?;
        let group = kb.channels.get(index).ok_or(RouteError::NoBackend {
            color: color.to_owned(),
        })?;
        let channel = group
            .get((oid.unsigned_abs() % group.len().max(1) as u64) as usize)
            .cloned()
            .ok_or(RouteError::NoBackend {
                color: color.to_owned(),
            })?;
        Ok(Picked {
            addr: backend.addr.clone(),
            channel,
        })
    }

    /// Whether `kind` has any configured backend.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// The configured kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}

/// The kind name the core's route table uses for `kind` (player, room, or a configured one).
pub fn kind_name(routes: &janus_core::route::RouteTable, kind: TunnelKind) -> &str {
    routes.kind_name(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, weight: u32, color: Option<&str>) -> BackendSpec {
        BackendSpec {
            addr: addr.into(),
            weight,
            color: color.map(Into::into),
        }
    }

    #[tokio::test]
    async fn placement_is_sticky_and_colour_filtered() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "player".to_owned(),
            vec![
                spec("127.0.0.1:1", 1, None),
                spec("127.0.0.1:2", 1, Some("blue")),
                spec("127.0.0.1:3", 2, Some("red")),
            ],
        );
        let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
        let first = b.pick("player", "red", 7).unwrap().addr;
        for _ in 0..10 {
            assert_eq!(b.pick("player", "red", 7).unwrap().addr, first, "sticky");
        }
        let mut blue = std::collections::HashSet::new();
        for oid in 0..20 {
            blue.insert(b.pick("player", "blue", oid).unwrap().addr);
        }
        assert!(
            !blue.contains("127.0.0.1:3"),
            "red-only backend never serves blue"
        );
        assert_eq!(blue.len(), 2);
        assert!(matches!(
            b.pick("room", "red", 1),
            Err(PickError::UnknownKind(_))
        ));
    }
}
