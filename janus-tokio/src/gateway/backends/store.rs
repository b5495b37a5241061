//! Where sticky placements live: the route table `r_<service>_{<colour>}_{<oid>}` → backend
//! address (spec §4.1, §4.3). In memory by default, with the Redis table's semantics; the Redis
//! one is `cluster::redis::RedisRouteStore`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;

use super::PickError;

/// Entries the in-memory table holds before it sweeps expired ones.
const SWEEP_ABOVE: usize = 100_000;

/// The sticky route table: `r_<service>_{<colour>}_{<oid>}` → backend address.
pub trait RouteStore: Send + Sync + std::fmt::Debug {
    /// The stored address, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, PickError>>;
    /// `SET key addr NX EX ttl`: whether it was written.
    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, PickError>>;
    /// `SET key addr EX ttl`: replaces a dead backend's entry.
    fn set<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), PickError>>;
}

/// The embedded route table.
#[derive(Debug, Default)]
pub struct MemoryRouteStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl RouteStore for MemoryRouteStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, PickError>> {
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
    ) -> BoxFuture<'a, Result<bool, PickError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if entries.len() > SWEEP_ABOVE {
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
    ) -> BoxFuture<'a, Result<(), PickError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key.to_owned(), (addr.to_owned(), Instant::now() + ttl));
        Box::pin(std::future::ready(Ok(())))
    }
}
