//! Backends per tunnel kind: where a new tunnel goes (sticky route table, colour filter,
//! circuit breaker, balancer), and the gRPC channels to reach them. The decisions are
//! janus-core's `route` module; this one holds the state and does the IO between them.
//!
//! The backend set of a kind is static from the config or replaced live by discovery
//! ([`Backends::set`]); channels to backends that survive a change are kept, so their tunnels are
//! not disturbed. The route table is in memory by default, with the semantics of the Redis one
//! (spec §4.1, §4.3): `GET`, then `SET NX` with a TTL on first placement, so an oid stays on its
//! backend while the entry lives. Placement is async and runs in the tunnel's own task: a slow
//! route table never stalls a connection.

mod pool;
mod sniff;
mod store;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use janus_core::route::{
    Backend, BackendSet, BreakerConfig, BreakerState, CircuitBreaker, OidRule, Permit, Placement,
    RouteError, RouteWrite, SmoothWrr, default_service, pick_less_loaded, place, route_key,
    route_write, settle,
};
use tonic::transport::{Channel, Endpoint};

pub use self::pool::{
    ASSUMED_STREAMS, ChannelPool, DEFAULT_MAX_CONNECTIONS, DEFAULT_MIN_CONNECTIONS, PoolConfig,
    PoolError, PoolStatus, StreamLease,
};
pub use self::store::{MemoryRouteStore, RouteStore};
use crate::clock;

/// How a new tunnel's backend is chosen when the route table has no placement for its oid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balancer {
    /// Smooth weighted round-robin, as upstream.
    #[default]
    Wrr,
    /// Power of two choices on the tunnels this gateway has open to each backend.
    LeastLoaded,
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
    /// The backend's connections are all at their stream limit.
    #[error("backend {addr}: {source}")]
    Saturated { addr: String, source: PoolError },
}

/// One kind's backends at one moment.
struct KindBackends {
    set: BackendSet,
    wrr: Mutex<SmoothWrr>,
    /// Connection pools in set order (shared with earlier generations of the set).
    channels: Vec<Arc<ChannelPool>>,
}

/// Every kind's backends and the route table.
pub struct Backends {
    kinds: RwLock<BTreeMap<String, Arc<KindBackends>>>,
    /// Connection pools by address, kept while the address is in some set.
    channels: Mutex<HashMap<String, Arc<ChannelPool>>>,
    pool: PoolConfig,
    /// This gateway's view of each backend's health: one that keeps failing to open tunnels is
    /// skipped for new placements until a probe succeeds.
    breakers: Mutex<HashMap<String, CircuitBreaker>>,
    breaker: BreakerConfig,
    /// Tunnels open from this gateway, per backend address.
    loads: Mutex<HashMap<String, Arc<AtomicU32>>>,
    balancer: Balancer,
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

/// One backend as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub kind: String,
    pub addr: String,
    pub weight: u32,
    pub color: Option<String>,
    /// `closed` (healthy), `open` (no new placements) or `half_open` (a probe decides).
    pub breaker: &'static str,
    /// Whether new tunnels may be placed on it.
    pub healthy: bool,
    /// Tunnels this gateway has open to it (every kind).
    pub tunnels: u32,
    /// Its HTTP/2 connections: how many, streams in use, the limit it advertised.
    pub pool: PoolStatus,
}

/// A chosen backend. Report how opening the tunnel went with [`Backends::report`]; keep it for
/// as long as the tunnel is open (it counts towards the backend's load).
#[derive(Debug)]
pub struct Picked {
    pub addr: String,
    pub channel: Channel,
    /// The stream's place on `channel`'s connection.
    _stream: StreamLease,
    permit: Option<Permit>,
    load: Arc<AtomicU32>,
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backends {
    /// Backends for each kind in `specs`, with an in-memory route table, smooth weighted
    /// round-robin and default breakers. Channels are lazy: nothing is dialled until a tunnel
    /// needs the backend.
    pub fn new(
        specs: &BTreeMap<String, Vec<Backend>>,
        ttl: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, PickError> {
        let backends = Self {
            kinds: RwLock::new(BTreeMap::new()),
            channels: Mutex::new(HashMap::new()),
            pool: PoolConfig::default(),
            breakers: Mutex::new(HashMap::new()),
            breaker: BreakerConfig::default(),
            loads: Mutex::new(HashMap::new()),
            balancer: Balancer::default(),
            services: BTreeMap::new(),
            store: Arc::new(MemoryRouteStore::default()),
            ttl,
            connect_timeout,
        };
        for (kind, list) in specs {
            backends.set(kind, list)?;
        }
        Ok(backends)
    }

    /// Places in `store` instead of memory (the Redis route table in cluster mode).
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn RouteStore>) -> Self {
        self.store = store;
        self
    }

    /// Route-table service names per kind (default `roma.<kind>.service`).
    #[must_use]
    pub fn with_services(mut self, services: BTreeMap<String, String>) -> Self {
        self.services = services;
        self
    }

    /// Chooses new placements with `balancer`.
    #[must_use]
    pub fn with_balancer(mut self, balancer: Balancer) -> Self {
        self.balancer = balancer;
        self
    }

    /// Sizes every backend's connection pool (before any backend is used: pools made
    /// earlier keep their size).
    #[must_use]
    pub fn with_pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self.channels
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let kinds: Vec<(String, Vec<Backend>)> = self
            .kinds
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, kb)| (k.clone(), kb.set.backends().to_vec()))
            .collect();
        for (kind, specs) in kinds {
            // The same specs built the set before, so they build it again.
            let _ = self.set(&kind, &specs);
        }
        self
    }

    /// Tunes every backend's breaker.
    #[must_use]
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    fn load_of(&self, addr: &str) -> Arc<AtomicU32> {
        let mut loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(loads.entry(addr.to_owned()).or_default())
    }

    /// Tunnels this gateway has open to `addr`.
    pub fn load(&self, addr: &str) -> u32 {
        let loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        loads.get(addr).map_or(0, |l| l.load(Ordering::Relaxed))
    }

    fn channel_group(&self, addr: &str) -> Result<Arc<ChannelPool>, PickError> {
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
        let group = ChannelPool::new(endpoint, self.pool);
        channels.insert(addr.to_owned(), Arc::clone(&group));
        Ok(group)
    }

    /// Replaces the backends of `kind`. Backends that stay keep their channels (their tunnels are
    /// undisturbed) and their round-robin position; tunnels to removed backends end when those
    /// backends close them.
    pub fn set(&self, kind: &str, specs: &[Backend]) -> Result<(), PickError> {
        let set = BackendSet::new(specs.to_vec()).map_err(|e| PickError::Set(e.to_string()))?;
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
        match self.services.get(kind) {
            Some(service) => route_key(service, color, oid),
            None => route_key(&default_service(kind), color, oid),
        }
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
            let pick = |c: &janus_core::route::Candidates<'_>| match self.balancer {
                Balancer::Wrr => kb.wrr.lock().unwrap_or_else(|p| p.into_inner()).pick(c),
                Balancer::LeastLoaded => {
                    let loads: Vec<u32> = c
                        .set()
                        .backends()
                        .iter()
                        .map(|b| self.load(&b.addr))
                        .collect();
                    pick_less_loaded(c, &loads, &mut rand_core::OsRng)
                }
            };
            match place(sticky.as_deref(), &candidates, pick)? {
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
        let pool = kb.channels.get(index).ok_or(RouteError::NoBackend {
            color: color.to_owned(),
        })?;
        let stream = pool.acquire().map_err(|source| PickError::Saturated {
            addr: backend.addr.clone(),
            source,
        })?;
        let channel = stream.channel();
        let permit = {
            let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            let breaker = breakers
                .entry(backend.addr.clone())
                .or_insert_with(|| CircuitBreaker::new(self.breaker));
            breaker.try_acquire(now).ok()
        };
        let load = self.load_of(&backend.addr);
        load.fetch_add(1, Ordering::Relaxed);
        Ok(Picked {
            addr: backend.addr.clone(),
            channel,
            _stream: stream,
            permit,
            load,
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

    /// Every backend of every kind with its health as this gateway sees it (the admin API).
    pub fn status(&self) -> Vec<BackendStatus> {
        let now = clock::now();
        let kinds: Vec<(String, Arc<KindBackends>)> = {
            let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
            kinds
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (kind, kb) in kinds {
            for b in kb.set.backends() {
                let breaker = match breakers.get(&b.addr).map(|br| br.state(now)) {
                    None | Some(BreakerState::Closed) => "closed",
                    Some(BreakerState::Open { .. }) => "open",
                    Some(_) => "half_open",
                };
                out.push(BackendStatus {
                    kind: kind.clone(),
                    addr: b.addr.clone(),
                    weight: b.weight,
                    color: b.color.clone(),
                    breaker,
                    healthy: breaker != "open",
                    tunnels: 0,
                    pool: PoolStatus::default(),
                });
            }
        }
        drop(breakers);
        let pools = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for status in &mut out {
            status.tunnels = self.load(&status.addr);
            if let Some(pool) = pools.get(&status.addr) {
                status.pool = pool.status();
            }
        }
        out
    }

    /// The configured kinds.
    pub fn kinds(&self) -> impl Iterator<Item = String> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        kinds.keys().cloned().collect::<Vec<_>>().into_iter()
    }
}
