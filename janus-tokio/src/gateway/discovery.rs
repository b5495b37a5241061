//! etcd in the gateway (feature `etcd`): this gateway registered as a kratos `ServiceInstance`,
//! and each configured backend service discovered and applied to [`super::backends::Backends`]
//! live. Discovery only publishes snapshots: no connection ever waits on etcd, and when etcd is
//! down the last known backends stay in use.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::Context as _;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use super::{BoundAddrs, EtcdSettings, Shared, until_true};
use crate::cluster::etcd::{
    ANY_COLOR, EtcdConfig, Registration, ServiceInstance, discover, register,
};

fn etcd_config(s: &EtcdSettings, shared: &Shared) -> EtcdConfig {
    EtcdConfig {
        endpoints: s.endpoints.clone(),
        username: s.username.clone(),
        password: s.password.clone(),
        health: Arc::clone(&shared.metrics.etcd),
        ..EtcdConfig::default()
    }
}

/// Registers the gateway and starts one discovery task per configured service.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    settings: &EtcdSettings,
    addrs: &BoundAddrs,
    ws_path: &str,
    stop: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Registration> {
    let cfg = etcd_config(settings, shared);
    for (kind, service) in &settings.services {
        let (tx, mut rx) = watch::channel(Vec::new());
        let mut stop_discovery = stop.clone();
        tasks.push(tokio::spawn(discover(
            cfg.clone(),
            service.clone(),
            // Every colour: each session is routed to backends of its own colour (the Go
            // gateway's per-request node filter), not only those of this gateway's colour.
            ANY_COLOR.to_owned(),
            tx,
            async move {
                until_true(&mut stop_discovery).await;
            },
        )));
        let shared = Arc::clone(shared);
        let kind = kind.clone();
        let service = service.clone();
        let mut stop_apply = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = until_true(&mut stop_apply) => return,
                }
                let backends = rx.borrow_and_update().clone();
                info!(kind = %kind, service = %service, count = backends.len(), "backends discovered");
                if let Err(e) = shared.backends.set(&kind, &backends) {
                    warn!(kind = %kind, error = %e, "discovered backend set refused");
                }
            }
        }));
    }

    // Endpoints as kratos lists them (health, tcp, ws, http, grpc); gRPC clients use grpc:// only.
    let mut endpoints = Vec::new();
    if let Some(tcp) = addrs.tcp {
        endpoints.push(format!("tcp://{tcp}"));
    }
    if let Some(ws) = addrs.ws {
        endpoints.push(format!("ws://{ws}{ws_path}"));
    }
    if let Some(http) = addrs.http {
        endpoints.push(format!("http://{http}"));
    }
    endpoints.push(format!("grpc://{}", shared.endpoint));
    let metadata: BTreeMap<String, String> = [
        ("svc", settings.name.clone()),
        ("profile", settings.profile.clone()),
        ("ver", settings.version.clone()),
        ("color", settings.color.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let instance = ServiceInstance::new(
        settings.name.clone(),
        settings.version.clone(),
        metadata,
        endpoints,
    );
    register(&cfg, instance)
        .await
        .context("registering in etcd")
}
