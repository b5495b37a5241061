//! Registration: one key under a kept-alive lease, re-registered when the lease is lost.
//!
//! kratos grants a 15 s lease, puts the instance under it and keeps it alive; if the keep-alive
//! channel closes it retries registration a few times. We retry forever (jittered backoff), since
//! a gateway that silently drops out of the registry until restart receives no pushes (§5.2).

use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

use super::{Backoff, EtcdConfig, EtcdError, ServiceInstance, bounded, connect};

/// kratos' lease TTL: the registry forgets a dead instance after at most this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// Upper bound on [`Registration::deregister`], so a dead etcd cannot hold up shutdown; the lease
/// then removes the key within its TTL anyway.
pub const DEFAULT_DEREGISTER_TIMEOUT: Duration = Duration::from_secs(3);

/// A live registration. Dropping it without [`deregister`](Self::deregister) stops the keep-alive
/// and leaves the key to expire with its lease.
#[derive(Debug)]
pub struct Registration {
    key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EtcdError>>>,
}

impl Registration {
    /// `/microservices/<name>/<id>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Deletes the key and revokes the lease, bounded by [`DEFAULT_DEREGISTER_TIMEOUT`]. Call it
    /// first on shutdown, so no new tunnels or pushes are routed here while we drain.
    pub async fn deregister(mut self) -> Result<(), EtcdError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(DEFAULT_DEREGISTER_TIMEOUT, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::RegistrationTaskGone),
            Err(_) => {
                task.abort();
                Err(EtcdError::Timeout {
                    op: "deregister",
                    after: DEFAULT_DEREGISTER_TIMEOUT,
                })
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Registers `instance` under `/microservices/<name>/<id>` with a [`DEFAULT_LEASE_TTL`] lease
/// kept alive in the background. The first registration must succeed (as in kratos, a gateway
/// that cannot register fails to start); later losses of the lease or of etcd are repaired by
/// re-registering under a new lease, with jittered backoff.
pub async fn register(
    cfg: &EtcdConfig,
    instance: ServiceInstance,
) -> Result<Registration, EtcdError> {
    register_with_ttl(cfg, instance, DEFAULT_LEASE_TTL).await
}

/// [`register`] with another lease TTL (whole seconds, at least 1; etcd may round it up to its
/// minimum). Meant for tests; production peers expect 15 s.
pub async fn register_with_ttl(
    cfg: &EtcdConfig,
    instance: ServiceInstance,
    ttl: Duration,
) -> Result<Registration, EtcdError> {
    let key = instance.key();
    let value = serde_json::to_string(&instance)?;
    let ttl = Duration::from_secs(ttl.as_secs().max(1));
    let lease = match Lease::put(cfg, &key, &value, ttl).await {
        Ok(lease) => lease,
        Err(e) => {
            cfg.health.register_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    cfg.health.registered.store(true, Ordering::Relaxed);
    tracing::info!(
        key,
        lease = format_args!("{:x}", lease.id),
        "registered in etcd"
    );
    let (stop, stopped) = oneshot::channel();
    let keeper = Keeper {
        cfg: cfg.clone(),
        key: key.clone(),
        value,
        ttl,
    };
    let task = tokio::spawn(keeper.run(lease, stopped));
    Ok(Registration {
        key,
        stop: Some(stop),
        task: Some(task),
    })
}

/// The background side of a [`Registration`].
struct Keeper {
    cfg: EtcdConfig,
    key: String,
    value: String,
    ttl: Duration,
}

impl Keeper {
    async fn run(self, first: Lease, mut stop: oneshot::Receiver<()>) -> Result<(), EtcdError> {
        let mut backoff = Backoff::new();
        let mut current = Some(first);
        loop {
            if let Some(mut lease) = current.take() {
                tokio::select! {
                    _ = &mut stop => return lease.withdraw(&self.key, self.cfg.dial_timeout).await,
                    err = lease.keep_alive(self.ttl) => {
                        self.cfg.health.registered.store(false, Ordering::Relaxed);
                        self.cfg.health.register_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(key = self.key, error = %err, "etcd registration lost; re-registering");
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return self.withdraw_without_lease().await,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
            tokio::select! {
                _ = &mut stop => return self.withdraw_without_lease().await,
                r = Lease::put(&self.cfg, &self.key, &self.value, self.ttl) => match r {
                    Ok(lease) => {
                        self.cfg.health.registered.store(true, Ordering::Relaxed);
                        tracing::info!(key = self.key, lease = format_args!("{:x}", lease.id), "re-registered in etcd");
                        backoff.reset();
                        current = Some(lease);
                    }
                    Err(err) => {
                        self.cfg.health.register_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(key = self.key, error = %err, "etcd re-registration failed");
                    }
                },
            }
        }
    }

    /// Stopped while between leases: delete the key in case an old lease still holds it.
    async fn withdraw_without_lease(&self) -> Result<(), EtcdError> {
        let mut client = connect(&self.cfg).await?;
        bounded(
            "delete",
            self.cfg.dial_timeout,
            client.delete(self.key.as_str(), None),
        )
        .await?;
        Ok(())
    }
}

/// A granted lease holding our key, with its keep-alive stream.
struct Lease {
    client: Client,
    id: i64,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

impl Lease {
    /// Fresh client, `LeaseGrant(ttl)`, `Put(key, value, lease)`, open the keep-alive stream.
    async fn put(
        cfg: &EtcdConfig,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Self, EtcdError> {
        let mut client = connect(cfg).await?;
        let t = cfg.dial_timeout;
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let id = bounded("lease grant", t, client.lease_grant(secs, None))
            .await?
            .id();
        let opts = PutOptions::new().with_lease(id);
        bounded("put", t, client.put(key, value, Some(opts))).await?;
        let (keeper, responses) =
            bounded("lease keep-alive", t, client.lease_keep_alive(id)).await?;
        Ok(Self {
            client,
            id,
            keeper,
            responses,
        })
    }

    /// Renews every `ttl / 3` until the lease is gone; returns why.
    async fn keep_alive(&mut self, ttl: Duration) -> EtcdError {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // No answer for a whole TTL: the server has dropped the lease by now.
                    if renewed.elapsed() >= ttl {
                        return EtcdError::LeaseLost { lease: self.id };
                    }
                    if let Err(source) = self.keeper.keep_alive().await {
                        return EtcdError::Request { op: "lease keep-alive", source };
                    }
                }
                msg = self.responses.message() => match msg {
                    Ok(Some(resp)) if resp.ttl() > 0 => renewed = Instant::now(),
                    Ok(_) => return EtcdError::LeaseLost { lease: self.id },
                    Err(source) => return EtcdError::Request { op: "lease keep-alive", source },
                },
            }
        }
    }

    /// Deletes the key, then revokes the lease.
    async fn withdraw(mut self, key: &str, t: Duration) -> Result<(), EtcdError> {
        bounded("delete", t, self.client.delete(key, None)).await?;
        bounded("lease revoke", t, self.client.lease_revoke(self.id)).await?;
        tracing::info!(key, "deregistered from etcd");
        Ok(())
    }
}
