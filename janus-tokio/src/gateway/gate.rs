//! Cluster state in Redis: the gate table (uid → the gateway holding the session), kicks across
//! gateways, and pushes published by backends (spec §4.1, §5.2).
//!
//! * **Login**: `SET r_<label.service>_{<colour>}_{<uid>} <endpoint> EX ttl GET`. If the previous
//!   owner was another gateway, a `PushMessage` carrying `SCServerLogout{ConflictingLogin}` for
//!   that uid is published on that gateway's channel: a Janus gateway closes the session at once
//!   (upstream only noticed at its next renewal, up to 5 minutes later); a Go gateway passes the
//!   logout to the client.
//! * **Renewal**: every TTL/2, one pipelined compare-and-expire for every live session. An entry
//!   that is missing (Redis restarted, or was down) is written again; one that names another
//!   gateway means the uid logged in elsewhere and the local session is kicked.
//! * **Logout**: compare-and-delete (upstream leaves the key to expire).
//! * **Pushes**: the subscriber delivers `PushMessage`s from this gateway's endpoint channel and
//!   `gate.broadcast.message`. A message with the `broadcast` flag, or with no uids (how the Go
//!   broadcaster sends broadcasts), goes to every session of its colour and sid.
//!
//! Redis is never on a connection's path: these run in their own tasks, and a login while Redis
//! is down **fails open** (the session is served; the renewal loop writes the entry once Redis
//! is back). Failures are counted (`janus_redis_errors_total`).

use std::{sync::Arc, time::Duration};

use janus_core::{
    login::{GateRenewal, PushRoute, SUPERSEDED, gate_login, gate_renewal, kick_message},
    route::route_key,
};
use janus_proto::broadcaster::service::push::v1::PushMessage;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{
    Shared,
    command::ConnCmd,
    metrics::{PushKind, PushOutcome, RedisOp},
    push::{broadcast, deliver_to_uid, encode},
    registry::Registry,
};
use crate::cluster::redis::RedisTables;

/// Sessions renewed per pipelined round trip.
const RENEW_BATCH: usize = 512;

/// The gate table of this gateway.
#[derive(Debug)]
pub struct GateTable {
    pub tables: RedisTables,
    /// `label.service`: the table's name.
    pub service: String,
    /// This gateway's endpoint: the value, and its push channel.
    pub endpoint: String,
    pub ttl: Duration,
}

impl GateTable {
    fn key(&self, color: &str, uid: i64) -> String {
        route_key(&self.service, color, uid)
    }

    /// Records a login (in its own task).
    pub fn login(self: &Arc<Self>, shared: &Arc<Shared>, uid: i64, color: &str) {
        let this = Arc::clone(self);
        let shared = Arc::clone(shared);
        let key = self.key(color, uid);
        tokio::spawn(async move {
            match this.tables.set_ex_get(&key, &this.endpoint, this.ttl).await {
                Ok(previous) => {
                    if let Some(other) = gate_login(previous.as_deref(), &this.endpoint) {
                        debug!(uid, %other, "uid was held by another gateway: kicking it there");
                        if let Err(e) = this.tables.publish(other, &kick_message(uid)).await {
                            warn!(uid, %other, error = %e, "could not publish the kick");
                            shared.metrics.redis_error(RedisOp::Publish);
                        }
                    }
                }
                Err(e) => {
                    // Fail open: serve the session; the renewal loop writes the entry later.
                    debug!(uid, error = %e, "gate table write failed");
                    shared.metrics.redis_error(RedisOp::GateLogin);
                }
            }
        });
    }

    /// Removes a session's entry if it is still ours (in its own task).
    pub fn logout(self: &Arc<Self>, shared: &Arc<Shared>, uid: i64, color: &str) {
        let this = Arc::clone(self);
        let shared = Arc::clone(shared);
        let key = self.key(color, uid);
        tokio::spawn(async move {
            if this
                .tables
                .delete_if_same(&key, &this.endpoint)
                .await
                .is_err()
            {
                shared.metrics.redis_error(RedisOp::GateLogout);
            }
        });
    }

    /// The gateway holding `uid` of `color`, per the gate table (the admin API's lookup).
    pub async fn holder(
        &self,
        uid: i64,
        color: &str,
    ) -> Result<Option<String>, crate::cluster::redis::RedisError> {
        self.tables.get(&self.key(color, uid)).await
    }

    /// Renews every live session's entry each TTL/2 (and right after Redis comes back).
    pub async fn renew_loop(
        self: Arc<Self>,
        shared: Arc<Shared>,
        mut redis_up: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let period = (self.ttl / 2).max(Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // Redis came back: re-assert at once rather than at the next tick.
                Ok(()) = redis_up.changed() => {
                    if !*redis_up.borrow_and_update() {
                        continue;
                    }
                    info!("redis is back: re-asserting the gate table");
                }
                () = super::until_true(&mut stop) => return,
            }
            self.renew_once(&shared).await;
        }
    }

    async fn renew_once(&self, shared: &Shared) {
        let sessions = shared.registry.entries();
        for chunk in sessions.chunks(RENEW_BATCH) {
            let entries: Vec<(String, String)> = chunk
                .iter()
                .map(|(uid, h)| (self.key(&h.color, *uid), self.endpoint.clone()))
                .collect();
            let renewed = match self.tables.expire_many_if_same(&entries, self.ttl).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "gate table renewal failed");
                    shared.metrics.redis_error(RedisOp::GateRenew);
                    return;
                }
            };
            for ((uid, handle), ((key, _), ok)) in chunk.iter().zip(entries.iter().zip(renewed)) {
                let stored = if ok {
                    None
                } else {
                    match self.tables.get(key).await {
                        Ok(stored) => stored,
                        Err(_) => {
                            shared.metrics.redis_error(RedisOp::GateRenew);
                            continue;
                        }
                    }
                };
                match gate_renewal(ok, stored.as_deref(), &self.endpoint) {
                    GateRenewal::Renewed => {}
                    // Redis restarted or lost it: ours again.
                    GateRenewal::Reassert => {
                        if self
                            .tables
                            .set_nx_ex(key, &self.endpoint, self.ttl)
                            .await
                            .is_err()
                        {
                            shared.metrics.redis_error(RedisOp::GateRenew);
                        }
                    }
                    GateRenewal::Superseded => {
                        shared.metrics.kicked(SUPERSEDED);
                        let _ = Registry::offer(handle, ConnCmd::Close(SUPERSEDED));
                        debug!(uid, "session superseded by a login elsewhere");
                    }
                }
            }
        }
    }
}

/// Follows the Redis subscription's state: `janus_redis_up`, and each loss counted.
pub async fn watch_subscription(shared: Arc<Shared>, mut up: watch::Receiver<bool>) {
    loop {
        let now = *up.borrow_and_update();
        let was = shared.metrics.redis_up();
        shared.metrics.set_redis_up(now);
        if was && !now {
            shared.metrics.redis_error(RedisOp::Subscribe);
        }
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// Delivers what the Redis subscriber receives.
pub async fn deliver_loop(
    shared: Arc<Shared>,
    mut messages: mpsc::Receiver<(String, PushMessage)>,
) {
    while let Some((channel, message)) = messages.recv().await {
        deliver(&shared, &channel, message);
    }
}

fn deliver(shared: &Shared, channel: &str, message: PushMessage) {
    let metrics = &shared.metrics;
    match PushRoute::of(&message) {
        PushRoute::Broadcast => {
            metrics.push_requested(PushKind::Broadcast);
            let pushes = encode(shared, PushKind::Broadcast, &message.bodies);
            broadcast(shared, &message.color, message.sid, &pushes);
        }
        PushRoute::Kick => {
            for uid in &message.uids {
                match shared.registry.get(*uid) {
                    Some(handle) => {
                        metrics.kicked(SUPERSEDED);
                        let _ = Registry::offer(&handle, ConnCmd::Close(SUPERSEDED));
                    }
                    None => metrics.push(PushKind::Push, PushOutcome::UnknownUid, 1),
                }
            }
        }
        PushRoute::Uids => {
            let kind = if message.uids.len() == 1 {
                PushKind::Push
            } else {
                PushKind::Multicast
            };
            metrics.push_requested(kind);
            let pushes = encode(shared, kind, &message.bodies);
            for uid in &message.uids {
                deliver_to_uid(shared, kind, *uid, &pushes);
            }
            debug!(channel, "push message delivered");
        }
    }
}
