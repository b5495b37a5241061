//! The gateway's configuration file: one YAML document, upstream's key names. Shared by every
//! runtime (the tokio gateway, the mio edge), so it depends on janus-core and serde only.
//!
//! ```text
//! file ─► YAML tree ─► ${NAME:default} from the environment ─► typed Config (unknown keys refused)
//!      ─► validate()        everything `janus check-config` checks, all problems at once
//!      ─► core_config()     janus_core::config::ServerConfig (token key, credentials, limits, routes)
//! ```
//!
//! Upstream's gateway merges every YAML file of a directory and reads `${NAME:default}` from
//! `PANTHEON_`-prefixed environment variables (spec §6.1). Janus reads one file and takes
//! `${NAME}` straight from the environment; the sections and keys that upstream has keep their
//! names and meanings (`label`, `server`, `compress`, `data`, `secret`, `log`, `trace`, `etcd`),
//! so an upstream configuration pasted into one file loads. Settings upstream does not have get
//! their own sections: `backends` (static discovery), `routes` (module → tunnel kind), `limits`
//! and `demo`.
//!
//! # Placeholders
//!
//! `${NAME}` and `${NAME:default}` may appear anywhere inside a string value (not in keys).
//! `NAME` is `[A-Za-z_][A-Za-z0-9_]*`; the default runs from the first `:` after the name to the
//! next `}`, so it may hold `:` and newlines (`${REDIS:127.0.0.1:6379}`, a PEM) but not `}`. A
//! variable that is set wins over the default even when empty; one that is unset without a
//! default is an error naming it and the key. `$${` is a literal `${`. Substitution runs on the
//! parsed tree, so a value from the environment can never change the document's structure.
//! Number and boolean keys read substituted text as a YAML scalar (`zone: ${ZONE:0}`,
//! `encrypted: ${ENC:true}`); string keys keep it verbatim (a password `123456` stays text).
//!
//! Durations are Go-style strings: `500ms`, `0.5s`, `10s`, `1m30s`, `2h` ([`parse_duration`]).
//!
//! Every struct rejects unknown keys with the path of the offending key
//! (`server.tcp.adr: unknown field `adr`, expected `addr` or `proxy_protocol``): a misspelt limit must not silently
//! fall back to its default. Every section and field has a default ([`Config::default`] is a
//! gateway on the upstream ports with no secrets), so a file holds only what differs.
//!
//! Secrets stay text in [`Config`] (its `Debug` redacts them) and are parsed by
//! [`Config::core_config`] and [`Config::validate`]: the token key's raw bytes, the server's
//! PKCS#8 Ed25519 key and the client certificate, whose validity period is checked against the
//! clock at start-up as upstream does. [`keygen`] makes a fresh set.

mod de;
mod duration;
mod env;
mod error;
mod filters;
pub mod keygen;
mod relay;
mod schema;
mod secrets;
mod validate;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime},
};

use janus_core::{
    config::{ServerConfig, ServerCredentials, SessionConfig},
    crypto::VerifyingKey,
    limit::{AdmissionConfig, RateLimit},
    replay::TokenReplayCache,
    resume::ResumeKey,
    route::RouteTable,
    token::{TokenError, TokenKey},
};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

pub use duration::{DurationError, format_duration, parse_duration};
pub use error::ConfigError;
pub use filters::{CustomFilterFn, CustomFilters};
pub use relay::{parse_relay_private_key, parse_relay_public_key};
pub use schema::{
    AccessFilter, ActionName, AdmissionLimits, BackendEntry, BackendPool, BalancerName, BanFilter,
    BreakerSettings, Compress, DEFAULT_DRAIN_WINDOW, DEFAULT_MAX_LINKS, DEFAULT_RECONNECT_MAX,
    DEFAULT_RECONNECT_MIN, Data, Demo, Edge, Etcd, Filters, GrpcServer, HttpServer, HubEntry,
    KcpServer, Label, Limits, LinkLimits, Log, LogFormat, MaxPayloadFilter, OidRuleName,
    RateLimitConfig, RateRuleConfig, Redis, RedisSentinel, Relay, RouteRuleConfig, Routes, Secret,
    Server, SessionLimits, TcpServer, Trace, WsServer,
};
pub use secrets::{load_certificate_key, load_client_signing_key};

/// `configs/local.yaml`, compiled in: a gateway on 127.0.0.1 with the demo backend in process and
/// the DEV-ONLY secrets of `configs/dev/`. For laptops and tests, never for production.
pub const LOCAL_YAML: &str = include_str!("../../configs/local.yaml");

/// The whole configuration file. See the module docs, and each section for its keys and
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Who this gateway is.
    pub label: Label,
    /// Listeners.
    pub server: Server,
    /// Reply compression thresholds.
    pub compress: Compress,
    /// Route-table TTLs and Redis.
    pub data: Data,
    /// Token key and certificate material.
    pub secret: Secret,
    /// Static backends: tunnel kind name (`player`, `room`, ...) → backends.
    pub backends: BTreeMap<String, Vec<BackendEntry>>,
    /// Extra tunnel kinds and module mappings.
    pub routes: Routes,
    /// Session, admission and shutdown limits.
    pub limits: Limits,
    /// The demo backend in process; `None` (the default) runs none.
    pub demo: Option<Demo>,
    /// Logging.
    pub log: Log,
    /// Tracing export.
    pub trace: Trace,
    /// etcd discovery and registration; `None` (the default) uses `backends` only.
    pub etcd: Option<Etcd>,
    /// The relay listener for edges (this gateway is a hub); `None` (the default): none.
    pub relay: Option<Relay>,
    /// The edge node's settings (`janus-edge`); ignored by `janus`.
    pub edge: Option<Edge>,
    /// The filter chain: built-in filters and compiled-in custom ones. Default: none.
    #[serde(skip_serializing_if = "Filters::is_empty")]
    pub filters: Filters,
}

impl Config {
    /// Reads and parses `path`, filling placeholders from the process environment. Does not
    /// [`validate`](Self::validate).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// The compiled-in [`LOCAL_YAML`], with placeholders from the process environment.
    pub fn local() -> Result<Config, ConfigError> {
        Config::from_yaml(LOCAL_YAML, &|name| std::env::var(name).ok())
    }

    /// Parses YAML text, looking placeholders up with `env`. Does not
    /// [`validate`](Self::validate). An empty document is the default configuration.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut tree: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(&e))?;
        if tree.is_null() {
            tree = Value::Mapping(serde_yaml::Mapping::new());
        }
        tree.apply_merge().map_err(|e| ConfigError::yaml(&e))?;
        env::substitute(&mut tree, "", env)?;
        serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => "(document)".to_owned(),
                p => p,
            };
            let mut reason = e.into_inner().to_string();
            if reason.starts_with("invalid type: ") && reason.ends_with("expected a string") {
                reason.push_str(" (quote the value to keep it as text)");
            }
            ConfigError::invalid(path, reason)
        })
    }

    /// The core's configuration: token key, credentials (when `label.encrypted`), session limits
    /// (`compress.weak`/`strong` become the compression thresholds), replay cache, routes and
    /// the built-in filters (a `filters.custom` entry is an error: see
    /// [`core_config_with`](Self::core_config_with)). Checks the client certificate's validity
    /// period against the clock.
    pub fn core_config(&self) -> Result<ServerConfig, ConfigError> {
        self.core_config_with(&CustomFilters::default())
    }

    /// [`core_config`](Self::core_config) with the custom filters of `custom` available to
    /// `filters.custom`.
    pub fn core_config_with(&self, custom: &CustomFilters) -> Result<ServerConfig, ConfigError> {
        let mut core = self.core_config_at(SystemTime::now())?;
        core.filters = self.filter_chain(custom)?;
        Ok(core)
    }

    pub(crate) fn core_config_at(&self, now: SystemTime) -> Result<ServerConfig, ConfigError> {
        let credentials = if self.label.encrypted {
            Some(self.credentials(now)?)
        } else {
            None
        };
        let mut core = ServerConfig::new(self.token_key()?, credentials);
        core.session = self.session_config()?;
        core.replay = TokenReplayCache::new(self.limits.replay_cache);
        core.routes = self.route_table()?;
        core.resume_key = self.resume_key()?;
        Ok(core)
    }

    /// `secret.resume_key` as the ticket key, when resume is on and a key is set (`None`: the
    /// gateway makes a random one).
    pub fn resume_key(&self) -> Result<Option<ResumeKey>, ConfigError> {
        let key = &self.secret.resume_key;
        if !self.limits.session.resume.enabled || key.is_empty() {
            return Ok(None);
        }
        if key.len() < 16 {
            return Err(ConfigError::secret(
                "secret.resume_key",
                format!("is {} bytes; use at least 16 random ones", key.len()),
            ));
        }
        Ok(Some(ResumeKey::from_secret(key.as_bytes())))
    }

    /// `secret.account_aes_key` as the token key: the raw bytes of the text.
    pub fn token_key(&self) -> Result<TokenKey, ConfigError> {
        let key = &self.secret.account_aes_key;
        TokenKey::new(key.as_bytes()).map_err(|e| {
            let reason = match e {
                TokenError::BadKeyLength { len: 0 } => "is empty; set it to the account \
                    service's token_key (16, 24 or 32 bytes; `janus keygen` makes one)"
                    .to_owned(),
                TokenError::BadKeyLength { len } => format!(
                    "is {len} bytes; the token key is the raw bytes of this text and AES \
                     needs 16, 24 or 32"
                ),
                other => other.to_string(),
            };
            ConfigError::secret("secret.account_aes_key", reason)
        })
    }

    /// The public key of `secret.server_cert_private_key`: what clients and the bench tool
    /// verify the server's handshake signature with.
    pub fn server_verifying_key(&self) -> Result<VerifyingKey, ConfigError> {
        secrets::parse_private_key(
            "secret.server_cert_private_key",
            &self.secret.server_cert_private_key,
        )
        .map(|k| k.verifying_key())
    }

    fn credentials(&self, now: SystemTime) -> Result<ServerCredentials, ConfigError> {
        Ok(ServerCredentials {
            server_key: secrets::parse_private_key(
                "secret.server_cert_private_key",
                &self.secret.server_cert_private_key,
            )?,
            client_cert: secrets::parse_certificate_key(
                "secret.client_cert",
                &self.secret.client_cert,
                now,
            )?,
        })
    }

    /// `limits.session` and `compress` as the core's per-session configuration.
    pub fn session_config(&self) -> Result<SessionConfig, ConfigError> {
        let s = &self.limits.session;
        let rate_limit =
            s.rate_limit
                .map(|r| {
                    let limit = RateLimit::from(r);
                    limit.validate().map(|()| limit).map_err(|e| {
                        ConfigError::invalid("limits.session.rate_limit", e.to_string())
                    })
                })
                .transpose()?;
        let mut core = SessionConfig::default();
        core.max_frame_len = s.max_frame_len;
        core.handshake_timeout = s.handshake_timeout;
        core.first_frame_timeout = s.first_frame_timeout;
        core.idle_timeout = s.idle_timeout;
        core.max_timestamp_skew = s.max_timestamp_skew;
        core.compress_threshold = self.compress.weak;
        core.compress_strong = self.compress.strong;
        core.max_inflated_len = s.max_inflated_len;
        core.outbound_budget = s.outbound_budget;
        core.rate_limit = rate_limit;
        core.max_tunnels = s.max_tunnels;
        core.max_pending = s.max_pending;
        core.drain_timeout = s.drain_timeout;
        core.check_index = s.check_index;
        let r = &s.resume;
        if r.enabled && r.window.is_zero() {
            return Err(ConfigError::invalid(
                "limits.session.resume.window",
                "must be more than 0s when resume is enabled",
            ));
        }
        core.resume.window = if r.enabled { r.window } else { Duration::ZERO };
        core.resume.max_buffered_bytes = r.max_buffered_bytes;
        core.resume.max_buffered_packets = r.max_buffered_packets;
        Ok(core)
    }

    /// The built-in routing plus `routes.kinds` (added in name order) and `routes.modules`.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let mut table = RouteTable::new();
        for (name, rule) in &self.routes.kinds {
            table
                .add_kind(name, (*rule).into())
                .map_err(|e| ConfigError::invalid(format!("routes.kinds.{name}"), e.to_string()))?;
        }
        for (module, name) in &self.routes.modules {
            let kind = table.kind_by_name(name).ok_or_else(|| {
                ConfigError::invalid(
                    format!("routes.modules.{module}"),
                    format!(
                        "unknown tunnel kind {name:?} (known: {})",
                        kind_names(&table).join(", ")
                    ),
                )
            })?;
            table.map_module(*module, kind).map_err(|e| {
                ConfigError::invalid(format!("routes.modules.{module}"), e.to_string())
            })?;
        }
        Ok(table)
    }

    /// The configuration as YAML with every secret replaced by `<redacted>`: what the admin API
    /// shows as the effective configuration.
    pub fn redacted_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The core's configuration for a reload: like [`core_config`](Self::core_config), but
    /// remembering tokens in `replay` (the running gateway's cache, shared), so a token used
    /// before the reload cannot open a second session after it.
    pub fn core_config_sharing(
        &self,
        replay: &TokenReplayCache,
        custom: &CustomFilters,
    ) -> Result<ServerConfig, ConfigError> {
        let mut core = self.core_config_with(custom)?;
        core.replay = replay.share();
        Ok(core)
    }

    /// `limits.admission` as the core's admission configuration.
    pub fn admission_config(&self) -> AdmissionConfig {
        let a = &self.limits.admission;
        AdmissionConfig {
            max_connections: a.max_connections,
            max_connections_per_address: a.max_connections_per_address,
            max_handshakes: a.max_handshakes,
            max_handshakes_per_address: a.max_handshakes_per_address,
            connection_rate: a.connection_rate.map(Into::into),
            ipv6_prefix_len: a.ipv6_prefix_len,
        }
    }
}

fn kind_names(table: &RouteTable) -> Vec<String> {
    table
        .kinds()
        .map(|k| table.kind_name(k).to_owned())
        .collect()
}
