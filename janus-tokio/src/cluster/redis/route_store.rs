//! The sticky route table (`r_roma.<kind>.service_{<colour>}_{<oid>}`, spec §4.1) in Redis, for
//! the gateway's backend placement.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::RedisTables;
use crate::gateway::backends::{PickError, RouteStore};

/// [`RouteStore`] over [`RedisTables`].
#[derive(Debug)]
pub struct RedisRouteStore(pub RedisTables);

fn table(e: impl std::fmt::Display) -> PickError {
    PickError::Table(e.to_string())
}

impl RouteStore for RedisRouteStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, PickError>> {
        Box::pin(async move { self.0.get(key).await.map_err(table) })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, PickError>> {
        Box::pin(async move { self.0.set_nx_ex(key, addr, ttl).await.map_err(table) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), PickError>> {
        Box::pin(async move {
            self.0
                .set_ex_get(key, addr, ttl)
                .await
                .map(|_| ())
                .map_err(table)
        })
    }
}
