//! Backends per tunnel kind: where a new tunnel goes (sticky route table, colour filter, smooth
//! weighted round-robin), and the gRPC channels to reach them.
//!
//! The backend set of a kind is static from the config or replaced live by discovery
//! ([`Backends::set`]); channels to backends that survive a change are kept, so their tunnels are
//! not disturbed. The route table is in memory by default, with the semantics of the Redis one
//! (spec §4.1, §4.3): `GET`, then `SET NX` with a TTL on first placement, so an oid stays on its
//! backend while the entry lives. Placement is async and runs in the tunnel's own task: a slow
//! route table never stalls a connection.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use janus_core::route::{
    Backend, BackendSet, BreakerConfig, CircuitBreaker, OidRule, Permit, Placement, RouteError,
    RouteWrite, SmoothWrr, place, route_write, settle,
};
use tonic::transport::{Channel, Endpoint};

use super::clock;

/// HTTP/2 connections per backend: tunnels are spread over them by oid, so one slow stream's
/// flow control cannot stall every other tunnel to that backend.
pub const DEFAULT_CHANNELS_PER_BACKEND: usize = 4;

/// A configured or discovered backend.
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
    #[error("invalid backend set: {0}")]
    Set(String),
    #[error("route table: {0}")]
    Table(String),
}

/// The sticky route table: `r_<service>_{<colour>}_{<oid>}` → backend address.
pub trait RouteStore: Send + Sync + std::fmt::Debug {
    /// The stored address, if any.
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<String>, PickError>>;
    /// `SET key addr NX EX ttl`: whether it was written.
    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, PickError>>;
    /// `SET key addr EX ttl`: replaces a dead backend's entry.
    fn set<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), PickError>>;
}

/// The embedded route table.
#[derive(Debug, Default)]
pub struct MemoryRouteStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl RouteStore for MemoryRouteStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<String>, PickError>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let found = entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(addr, _)| addr.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, PickError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if entries.len() > 100_000 {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        let won = match entries.get(key) {
            Some((_, expires)) if *expires > now => false,
            _ => {
                entries.insert(key.to_owned(), (addr.to_owned(), now + ttl));
                true
            }
        };
        Box::pin(std::future::ready(Ok(won)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), PickError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key.to_owned(), (addr.to_owned(), Instant::now() + ttl));
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One kind's backends at one moment.
struct KindBackends {
    set: BackendSet,
    wrr: Mutex<SmoothWrr>,
    /// Channel groups in set order (shared with earlier generations of the set).
    channels: Vec<Arc<[Channel]>>,
}

/// Every kind's backends and the route table.
pub struct Backends {
    kinds: RwLock<BTreeMap<String, Arc<KindBackends>>>,
    /// Channel groups by address, kept while the address is in some set.
    channels: Mutex<HashMap<String, Arc<[Channel]>>>,
    /// This gateway's view of each backend's health: one that keeps failing to open tunnels is
    /// skipped for new placements until a probe succeeds.
    breakers: Mutex<HashMap<String, CircuitBreaker>>,
    /// The route-table service name per kind (`roma.player.service`, ...), for the key.
    services: BTreeMap<String, String>,
    store: Arc<dyn RouteStore>,
    ttl: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("kinds", &self.kinds().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A chosen backend. Report how opening the tunnel went with [`Backends::report`].
#[derive(Debug)]
pub struct Picked {
    pub addr: String,
    pub channel: Channel,
    permit: Option<Permit>,
}

/// The route-table name of a kind's backend service: upstream's `roma.<kind>.service`.
pub fn default_service_name(kind: &str) -> String {
    format!("roma.{kind}.service")
}

impl Backends {
    /// Backends for each kind in `specs`, with an in-memory route table. Channels are lazy:
    /// nothing is dialled until a tunnel needs the backend.
    pub fn new(
        specs: &BTreeMap<String, Vec<BackendSpec>>,
        ttl: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, PickError> {
        Self::with_store(
            specs,
            ttl,
            connect_timeout,
            Arc::new(MemoryRouteStore::default()),
            BTreeMap::new(),
        )
    }

    /// Backends with the given route table and per-kind service names (default
    /// `roma.<kind>.service`).
    pub fn with_store(
        specs: &BTreeMap<String, Vec<BackendSpec>>,
        ttl: Duration,
        connect_timeout: Duration,
        store: Arc<dyn RouteStore>,
        services: BTreeMap<String, String>,
    ) -> Result<Self, PickError> {
        let backends = Self {
            kinds: RwLock::new(BTreeMap::new()),
            channels: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            services,
            store,
            ttl,
            connect_timeout,
        };
        for (kind, list) in specs {
            backends.set(kind, list)?;
        }
        Ok(backends)
    }

    fn channel_group(&self, addr: &str) -> Result<Arc<[Channel]>, PickError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = channels.get(addr) {
            return Ok(Arc::clone(group));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| PickError::Endpoint {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10));
        let group: Arc<[Channel]> = (0..DEFAULT_CHANNELS_PER_BACKEND)
            .map(|_| endpoint.connect_lazy())
            .collect();
        channels.insert(addr.to_owned(), Arc::clone(&group));
        Ok(group)
    }

    /// Replaces the backends of `kind`. Backends that stay keep their channels (their tunnels are
    /// undisturbed) and their round-robin position; tunnels to removed backends end when those
    /// backends close them.
    pub fn set(&self, kind: &str, specs: &[BackendSpec]) -> Result<(), PickError> {
        let list: Vec<Backend> = specs
            .iter()
            .map(|b| Backend {
                addr: b.addr.clone(),
                weight: b.weight,
                color: b.color.clone(),
            })
            .collect();
        let set = BackendSet::new(list).map_err(|e| PickError::Set(e.to_string()))?;
        let channels = specs
            .iter()
            .map(|b| self.channel_group(&b.addr))
            .collect::<Result<Vec<_>, _>>()?;
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        let wrr = match kinds.get(kind) {
            Some(old) => {
                let mut wrr = old.wrr.lock().unwrap_or_else(|p| p.into_inner()).clone();
                wrr.rebuild(&old.set, &set);
                wrr
            }
            None => SmoothWrr::new(&set),
        };
        kinds.insert(
            kind.to_owned(),
            Arc::new(KindBackends {
                set,
                wrr: Mutex::new(wrr),
                channels,
            }),
        );
        // Forget channel groups no set uses any more.
        let live: std::collections::HashSet<String> = kinds
            .values()
            .flat_map(|k| k.set.backends().iter().map(|b| b.addr.clone()))
            .collect();
        drop(kinds);
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|addr, _| live.contains(addr));
        Ok(())
    }

    /// The route-table key of `oid` of `kind` for `color`.
    pub fn route_key(&self, kind: &str, color: &str, oid: i64) -> String {
        let service = self
            .services
            .get(kind)
            .cloned()
            .unwrap_or_else(|| default_service_name(kind));
        format!("r_{service}_{{{color}}}_{{{oid}}}")
    }

    /// Chooses the backend for a new tunnel of `kind` to `oid` for a session of `color`: the route
    /// table's entry if it names an available backend, else a smooth weighted round-robin pick
    /// written with SETNX semantics (losing the race means using the winner's choice). Backends
    /// whose breaker is open are not available; for player-like kinds (`rule`) an entry naming
    /// such a backend is overwritten, so a player is not stuck on a dead backend until the entry
    /// expires (rooms keep the entry: other gateways may still reach that backend).
    pub async fn pick(
        &self,
        kind: &str,
        color: &str,
        oid: i64,
        rule: OidRule,
    ) -> Result<Picked, PickError> {
        let kb = {
            let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                kinds
                    .get(kind)
                    .ok_or_else(|| PickError::UnknownKind(kind.to_owned()))?,
            )
        };
        let key = self.route_key(kind, color, oid);
        let sticky = self.store.get(&key).await?;
        let now = clock::now();
        let healthy = |addr: &str| {
            let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            breakers.get(addr).is_none_or(|b| b.allows(now))
        };
        let index = {
            let mut candidates = kb.set.candidates_for(color);
            candidates.retain(|_, b| healthy(&b.addr));
            match place(sticky.as_deref(), &candidates, |c| {
                kb.wrr.lock().unwrap_or_else(|p| p.into_inner()).pick(c)
            })? {
                Placement::Sticky(i) => Some(i),
                Placement::New(i) => {
                    drop(candidates);
                    let addr = kb.set.get(i).map(|b| b.addr.clone()).unwrap_or_default();
                    let stored_state = sticky.as_deref().and_then(|stored| {
                        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
                        breakers.get(stored).map(|b| b.state(now))
                    });
                    let (won, stored) = match route_write(sticky.as_deref(), stored_state, rule) {
                        RouteWrite::Overwrite => {
                            self.store.set(&key, &addr, self.ttl).await?;
                            (true, Some(addr))
                        }
                        _ => {
                            let won = self.store.set_nx(&key, &addr, self.ttl).await?;
                            let stored = if won {
                                Some(addr)
                            } else {
                                self.store.get(&key).await?
                            };
                            (won, stored)
                        }
                    };
                    let mut candidates = kb.set.candidates_for(color);
                    candidates.retain(|_, b| healthy(&b.addr));
                    Some(settle(i, won, stored.as_deref(), &candidates)?)
                }
            }
        };
        let index = index.ok_or(RouteError::NoBackend {
            color: color.to_owned(),
        })?;
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
        let permit = {
            let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            let breaker = breakers
                .entry(backend.addr.clone())
                .or_insert_with(|| CircuitBreaker::new(BreakerConfig::default()));
            breaker.try_acquire(now).ok()
        };
        Ok(Picked {
            addr: backend.addr.clone(),
            channel,
            permit,
        })
    }

    /// Whether opening a tunnel to `picked` worked: feeds that backend's breaker.
    pub fn report(&self, picked: &mut Picked, opened: bool) {
        let Some(permit) = picked.permit.take() else {
            return;
        };
        let now = clock::now();
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(breaker) = breakers.get_mut(&picked.addr) {
            if opened {
                breaker.on_success(permit, now);
            } else {
                breaker.on_failure(permit, now);
            }
        }
    }

    /// The configured kinds.
    pub fn kinds(&self) -> impl Iterator<Item = String> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        kinds.keys().cloned().collect::<Vec<_>>().into_iter()
    }
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
        let first = b
            .pick("player", "red", 7, OidRule::SessionUid)
            .await
            .unwrap()
            .addr;
        for _ in 0..10 {
            assert_eq!(
                b.pick("player", "red", 7, OidRule::SessionUid)
                    .await
                    .unwrap()
                    .addr,
                first,
                "sticky"
            );
        }
        let mut blue = std::collections::HashSet::new();
        for oid in 0..20 {
            blue.insert(
                b.pick("player", "blue", oid, OidRule::SessionUid)
                    .await
                    .unwrap()
                    .addr,
            );
        }
        assert!(
            !blue.contains("127.0.0.1:3"),
            "red-only backend never serves blue"
        );
        assert_eq!(blue.len(), 2);
        assert!(matches!(
            b.pick("room", "red", 1, OidRule::Object).await,
            Err(PickError::UnknownKind(_))
        ));
        assert_eq!(
            b.route_key("player", "local", 10001),
            "r_roma.player.service_{local}_{10001}"
        );
    }

    #[tokio::test]
    async fn a_live_change_keeps_surviving_backends_and_their_sticky_oids() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "room".to_owned(),
            vec![spec("127.0.0.1:1", 1, None), spec("127.0.0.1:2", 1, None)],
        );
        let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
        let mut placed = BTreeMap::new();
        for oid in 0..10 {
            placed.insert(
                oid,
                b.pick("room", "c", oid, OidRule::Object)
                    .await
                    .unwrap()
                    .addr,
            );
        }
        // backend 2 goes away, backend 3 arrives
        b.set(
            "room",
            &[spec("127.0.0.1:1", 1, None), spec("127.0.0.1:3", 1, None)],
        )
        .unwrap();
        for (oid, addr) in &placed {
            let now = b.pick("room", "c", *oid, OidRule::Object).await;
            if addr == "127.0.0.1:1" {
                assert_eq!(&now.unwrap().addr, addr, "oids on a surviving backend stay");
            } else {
                // its sticky entry names a backend that is gone: SETNX loses to the stale entry,
                // which is no candidate -> the spec's error until the entry expires
                assert!(now.is_err());
            }
        }
        let fresh = b
            .pick("room", "c", 999, OidRule::Object)
            .await
            .unwrap()
            .addr;
        assert!(fresh == "127.0.0.1:1" || fresh == "127.0.0.1:3");
    }

    #[tokio::test]
    async fn a_dead_backend_loses_its_players_but_keeps_its_rooms() {
        let mut specs = BTreeMap::new();
        let two = vec![spec("127.0.0.1:1", 1, None), spec("127.0.0.1:2", 1, None)];
        specs.insert("player".to_owned(), two.clone());
        specs.insert("room".to_owned(), two);
        let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
        let player = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
        let dead = player.addr.clone();
        // a room placed on the same backend
        let mut room_oid = 0;
        while b
            .pick("room", "c", room_oid, OidRule::Object)
            .await
            .unwrap()
            .addr
            != dead
        {
            room_oid += 1;
        }
        // opening tunnels to it keeps failing: its breaker opens
        for _ in 0..janus_core::route::DEFAULT_FAILURE_THRESHOLD {
            let mut p = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
            assert_eq!(p.addr, dead);
            b.report(&mut p, false);
        }
        let moved = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
        assert_ne!(moved.addr, dead, "the player is re-placed at once");
        assert_eq!(
            b.pick("player", "c", 7, OidRule::SessionUid)
                .await
                .unwrap()
                .addr,
            moved.addr,
            "and sticks there"
        );
        // the room keeps its entry (other gateways may still reach that backend) until it expires
        assert!(matches!(
            b.pick("room", "c", room_oid, OidRule::Object).await,
            Err(PickError::Route(
                RouteError::StoredBackendUnavailable { .. }
            ))
        ));
    }
}
