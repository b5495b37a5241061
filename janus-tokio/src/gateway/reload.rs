//! Hot reload (`SIGHUP`, `POST /admin/reload`): re-read the configuration file and apply what
//! can change without dropping a connection.
//!
//! | changes live | takes effect |
//! | --- | --- |
//! | `limits.session.*`, `compress.*`, `routes.kinds`, `routes.modules` | for sessions that start after the reload (a live session keeps the rules it started with: the core's `ServerConfig` is shared by sessions as an `Arc`, and a new one is handed to new sessions) |
//! | `limits.admission.*` | at the next accept, for every listener |
//! | `limits.drain_window`, `limits.shutdown_grace` | at the next drain |
//! | `server.ws.allowed_origins`, `server.{tcp,ws}.proxy_protocol` | at the next accept |
//! | `server.http.admin_token` | at the next admin request (`JANUS_ADMIN_TOKEN` still wins) |
//! | `backends.<kind>` (kinds not discovered from etcd) | for new tunnels; tunnels to backends that stay are untouched |
//! | `log.level` | at once (`RUST_LOG`, when set, still wins) |
//! | `trace.sampler` | for new traces |
//! | `filters` | for sessions that start after the reload; every live session is also asked the new chain's `recheck` (so a uid or network added to `filters.ban` ends its sessions at once) |
//!
//! Anything else (listen addresses, `secret.*`, `label.*`, `data.*`, `etcd`, `demo`,
//! `log.format`, `trace.endpoint`, `limits.replay_cache`, `routes.balancer`, `routes.breaker`)
//! is reported as needing a restart and keeps its running value. A file that does not parse or
//! validate is rejected with every problem and its key path, and nothing changes. Either way a
//! log line and `janus_config_info{hash}` / `janus_config_reloads_total{result}` say what is
//! live.

use std::path::PathBuf;

use janus_core::route::Backend;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tracing::{error, info, warn};

use super::{
    Shared,
    metrics::{Listener, ReloadResult},
    settings::{ConfigSource, admin_token},
};
use crate::config::{Config, ConfigError};

/// Key paths (and their subtrees) a reload applies while the gateway runs.
pub const LIVE_KEYS: &[&str] = &[
    "limits.session",
    "limits.admission",
    "limits.shutdown_grace",
    "limits.drain_window",
    "compress",
    "routes.kinds",
    "routes.modules",
    "server.ws.allowed_origins",
    "server.tcp.proxy_protocol",
    "server.ws.proxy_protocol",
    "server.http.admin_token",
    "backends",
    "log.level",
    "trace.sampler",
    "filters",
];

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The content hash of the file now live.
    pub hash: String,
    /// Changed keys now in force.
    pub applied: Vec<String>,
    /// Keys that differ from the running process's and wait for a restart.
    pub restart_needed: Vec<String>,
    /// Changed keys that have no effect, and why.
    pub ignored: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was started from settings, not from a file.
    #[error("this gateway was not started from a configuration file; nothing to reload")]
    NoFile,
    /// The file does not read, parse or validate (every problem listed).
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: ConfigError },
    /// The new configuration could not be built.
    #[error("{0}")]
    Apply(String),
}

/// Reloads the configuration file (one reload at a time).
pub(crate) async fn reload(shared: &Shared) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = shared.ops.reload_lock.lock().await;
    let path = shared
        .ops
        .source
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.path.clone());
    let result = match path {
        None => Err(ReloadError::NoFile),
        Some(path) => {
            let loaded = tokio::task::spawn_blocking({
                let path = path.clone();
                move || ConfigSource::load(&path)
            })
            .await
            .map_err(|e| ReloadError::Apply(e.to_string()))
            .and_then(|r| r.map_err(|source| ReloadError::Invalid { path, source }));
            loaded.and_then(|new| apply(shared, new))
        }
    };
    match &result {
        Ok(report) => {
            shared.metrics.reloaded(ReloadResult::Applied);
            info!(
                hash = %report.hash,
                applied = ?report.applied,
                restart_needed = ?report.restart_needed,
                ignored = ?report.ignored,
                "configuration reloaded"
            );
        }
        Err(e) => {
            shared.metrics.reloaded(ReloadResult::Rejected);
            error!(error = %e, "configuration reload rejected; the running configuration stays");
        }
    }
    result
}

fn is_live(path: &str) -> bool {
    LIVE_KEYS.iter().any(|live| {
        path == *live
            || path
                .strip_prefix(live)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// Leaf key paths whose values differ. Secrets are compared in the clear, reported by path.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let to_value = |c: &Config| serde_json::to_value(c).unwrap_or(Value::Null);
    diff("", &to_value(old), &to_value(new), &mut out);
    let secrets = [
        (
            "secret.account_aes_key",
            old.secret.account_aes_key != new.secret.account_aes_key,
        ),
        (
            "secret.server_cert_private_key",
            old.secret.server_cert_private_key != new.secret.server_cert_private_key,
        ),
        (
            "server.http.admin_token",
            old.server.http.admin_token != new.server.http.admin_token,
        ),
        (
            "data.redis.password",
            old.data.redis.as_ref().map(|r| &r.password)
                != new.data.redis.as_ref().map(|r| &r.password),
        ),
        (
            "etcd.password",
            old.etcd.as_ref().map(|e| &e.password) != new.etcd.as_ref().map(|e| &e.password),
        ),
    ];
    for (path, changed) in secrets {
        if changed && !out.iter().any(|p| p == path) {
            out.push(path.to_owned());
        }
    }
    out.sort();
    out
}

fn diff(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &child,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

fn backends_of(config: &Config, kind: &str) -> Vec<Backend> {
    config
        .backends
        .get(kind)
        .map(|list| list.iter().map(Backend::from).collect())
        .unwrap_or_default()
}

/// Applies `new` over the running configuration. Everything that can fail is built first, so a
/// failure changes nothing.
fn apply(shared: &Shared, new: ConfigSource) -> Result<ReloadReport, ReloadError> {
    let (old, started) = {
        let source = shared.ops.source.lock().unwrap_or_else(|p| p.into_inner());
        let old = source
            .as_ref()
            .map(|s| s.config.clone())
            .unwrap_or_default();
        let started = shared.ops.started.clone().unwrap_or_else(|| old.clone());
        (old, started)
    };
    let cfg = &new.config;
    let changed = changed_keys(&old, cfg);
    let core_changed = changed.iter().any(|p| {
        [
            "limits.session",
            "compress",
            "routes.kinds",
            "routes.modules",
            "filters",
        ]
        .iter()
        .any(|k| p.starts_with(k))
    });
    let filters_changed = changed.iter().any(|p| p.starts_with("filters"));
    let core = if core_changed {
        let running = shared.core();
        let mut core = cfg
            .core_config_sharing(&running.replay, &crate::filters::custom_filters())
            .map_err(|e| ReloadError::Apply(e.to_string()))?;
        crate::filters::prepare(&mut core.filters, Some(&running.filters));
        super::settings::ensure_resume_key(&mut core, running.resume_key.as_ref());
        Some(Arc::new(core))
    } else {
        None
    };
    let discovered: Vec<String> = started
        .etcd
        .as_ref()
        .map(|e| e.services.keys().cloned().collect())
        .unwrap_or_default();
    let mut report = ReloadReport {
        hash: new.hash.clone(),
        ..ReloadReport::default()
    };
    let mut kinds = std::collections::BTreeSet::new();
    for path in &changed {
        if !is_live(path) {
            continue;
        }
        if let Some(rest) = path.strip_prefix("backends.") {
            let kind = rest.split(['.', '[']).next().unwrap_or(rest).to_owned();
            if discovered.contains(&kind) {
                report.ignored.push(format!("{path}: discovered from etcd"));
                continue;
            }
            kinds.insert(kind);
        }
        report.applied.push(path.clone());
    }
    let sets: Vec<(String, Vec<Backend>)> = kinds
        .into_iter()
        .map(|kind| {
            let specs = backends_of(cfg, &kind);
            (kind, specs)
        })
        .collect();
    for (kind, specs) in &sets {
        janus_core::route::BackendSet::new(specs.clone())
            .map_err(|e| ReloadError::Apply(format!("backends.{kind}: {e}")))?;
    }

    // Nothing below fails the reload.
    if let Some(core) = core {
        shared.set_core(core);
        if filters_changed {
            shared.recheck_sessions();
        }
    }
    shared.admission().set_config(cfg.admission_config());
    if let Some(ws) = &cfg.server.ws {
        shared.set_allowed_origins(ws.allowed_origins.clone());
    }
    let proxy = [
        (
            Listener::Tcp,
            cfg.server.tcp.as_ref().is_some_and(|t| t.proxy_protocol),
        ),
        (
            Listener::Ws,
            cfg.server.ws.as_ref().is_some_and(|w| w.proxy_protocol),
        ),
    ];
    for (listener, on) in proxy {
        if let Some(flag) = shared.ops.proxy_protocol.get(listener as usize) {
            flag.store(on, std::sync::atomic::Ordering::Relaxed);
        }
    }
    *shared
        .ops
        .admin_token
        .write()
        .unwrap_or_else(|p| p.into_inner()) = admin_token(cfg);
    *shared
        .ops
        .drain_timing
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = (cfg.limits.drain_window, cfg.limits.shutdown_grace);
    for (kind, specs) in &sets {
        if let Err(e) = shared.backends.set(kind, specs) {
            warn!(kind, error = %e, "backend set not applied");
        }
    }
    if let Some(telemetry) = &shared.ops.telemetry {
        if old.log.level != cfg.log.level {
            match telemetry.set_level(&cfg.log.level) {
                Ok(true) => {}
                Ok(false) => report
                    .ignored
                    .push("log.level: RUST_LOG is set and wins".to_owned()),
                Err(e) => report.ignored.push(format!("log.level: {e}")),
            }
        }
        telemetry.set_sampler(cfg.trace.sampler);
    }
    report.restart_needed = changed_keys(&started, cfg)
        .into_iter()
        .filter(|p| !is_live(p))
        .collect();
    shared
        .metrics
        .set_config(&new.hash, report.restart_needed.len());
    *shared
        .ops
        .restart_pending
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = report.restart_needed.clone();
    *shared.ops.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(new);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_leaf_paths_and_live_ones_are_recognised() {
        let old = Config::local().unwrap();
        let mut new = old.clone();
        new.limits.admission.max_connections = 7;
        new.server.tcp.as_mut().unwrap().addr = "127.0.0.1:1".into();
        new.secret.account_aes_key = "another key of 32 bytes........".into();
        let changed = changed_keys(&old, &new);
        assert_eq!(
            changed,
            [
                "limits.admission.max_connections",
                "secret.account_aes_key",
                "server.tcp.addr"
            ]
        );
        assert!(is_live("limits.admission.max_connections"));
        assert!(is_live("backends.player"));
        assert!(!is_live("server.tcp.addr"));
        assert!(!is_live("limits.replay_cache"));
        assert!(!is_live("log.format"));
    }
}
