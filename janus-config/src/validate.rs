//! [`Config::validate`]: everything `janus check-config` checks, so that a configuration that
//! passes starts (ports aside), and one that does not is refused with every problem listed
//! rather than the first one found at start-up.
//!
//! Listen addresses must be `ip:port` (what the listeners bind); addresses the gateway dials
//! (backends, Redis, etcd, the advertised gRPC address) may use host names. Durations that
//! would make the gateway useless at zero (timeouts, TTLs, intervals) must be positive.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime},
};

use janus_core::{
    frame::wire_len,
    route::{BackendSet, TunnelKind},
};

use super::{Config, ConfigError, secrets};

/// Smallest `limits.session.max_frame_len`: a handshake with a Lares token, the keys and the
/// signature takes a few hundred bytes.
const MIN_FRAME_LEN: usize = 1024;
/// Largest `limits.session.max_frame_len`: the length prefix is a signed 32-bit integer.
const MAX_FRAME_LEN: usize = i32::MAX as usize;

impl Config {
    /// Checks everything that can be checked without opening a socket: addresses, the WebSocket
    /// path, the secrets (including the client certificate's validity period, now), backends
    /// against the known tunnel kinds, routes, limits and durations. Reports every problem
    /// found ([`ConfigError::Several`] when there is more than one).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at(SystemTime::now())
    }

    pub(crate) fn validate_at(&self, now: SystemTime) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.check_server(&mut p);
        self.check_secrets(&mut p, now);
        self.check_backends(&mut p);
        self.check_limits(&mut p);
        self.check_services(&mut p);
        self.check_backend_pool(&mut p);
        self.check_relay(&mut p.0);
        self.check_filters(&mut p);
        let mut problems = p.0;
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems
                .pop()
                .unwrap_or_else(|| ConfigError::Several(Vec::new()))),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    /// Settings that are accepted but have no effect, and choices worth a second look; for
    /// `check-config` and the start-up log. Never errors.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.server.kcp.is_some() {
            out.push("server.kcp: Janus has no KCP listener; ignored".to_owned());
        }
        if self.server.health.as_deref().is_some_and(|h| !h.is_empty()) {
            out.push(
                "server.health: ignored; health and metrics are served on server.http.addr"
                    .to_owned(),
            );
        }
        if let Some(endpoint) = self.trace.endpoint.as_deref() {
            let authority = endpoint
                .split_once("://")
                .map_or(endpoint, |(_, rest)| rest);
            if authority.trim_end_matches('/').contains('/') {
                out.push(format!(
                    "trace.endpoint: {endpoint:?} has a path (upstream's template names a Jaeger \
                     URL); spans are exported with OTLP/gRPC to its host:port only"
                ));
            }
        }
        if let Some(access) = &self.filters.access {
            if !access.allow.is_empty() && !access.allow.contains(&1) {
                out.push(
                    "filters.access.allow: module 1 (System) is not listed; heartbeats are \
                     module 1 requests and will be refused"
                        .to_owned(),
                );
            }
        }
        if !self.label.encrypted {
            out.push(
                "label.encrypted is false: no ECDH, no packet encryption, no client \
                 certificate check (upstream's test mode)"
                    .to_owned(),
            );
        }
        if self.etcd.is_none() {
            if let Ok(table) = self.route_table() {
                let mut kinds = used_kinds(&table, &self.routes.modules);
                kinds.extend(
                    self.filters
                        .route
                        .iter()
                        .filter_map(|r| table.kind_by_name(&r.kind)),
                );
                kinds.sort();
                kinds.dedup();
                for kind in kinds {
                    let name = table.kind_name(kind);
                    if self.backends.get(name).is_none_or(Vec::is_empty) {
                        out.push(format!(
                            "backends.{name}: no backends and no etcd; packets for this tunnel \
                             kind will be answered with errors"
                        ));
                    }
                }
            }
        }
        out
    }

    fn check_server(&self, p: &mut Problems) {
        let s = &self.server;
        let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
        if let Some(tcp) = &s.tcp {
            p.listen("server.tcp.addr", &tcp.addr, &mut listeners);
        }
        if let Some(ws) = &s.ws {
            p.listen("server.ws.addr", &ws.addr, &mut listeners);
            if !ws.path.starts_with('/') {
                p.invalid(
                    "server.ws.path",
                    format!("{:?} must start with '/'", ws.path),
                );
            }
            for (i, origin) in ws.allowed_origins.iter().enumerate() {
                if let Err(why) = check_origin(origin) {
                    p.invalid(format!("server.ws.allowed_origins[{i}]"), why);
                }
            }
        }
        if s.tcp.is_none() && s.ws.is_none() {
            p.invalid(
                "server",
                "neither server.tcp nor server.ws is set: clients could not connect",
            );
        }
        p.listen("server.http.addr", &s.http.addr, &mut listeners);
        p.positive("server.http.timeout", s.http.timeout);
        p.listen("server.grpc.addr", &s.grpc.addr, &mut listeners);
        p.positive("server.grpc.timeout", s.grpc.timeout);
        if let Some(advertise) = &s.grpc.advertise {
            p.dial("server.grpc.advertise", advertise);
        }
        if let Some(demo) = &self.demo {
            p.listen("demo.addr", &demo.addr, &mut listeners);
            p.positive("demo.push_interval", demo.push_interval);
        }
        for (i, (path, addr)) in listeners.iter().enumerate() {
            let clash = listeners
                .iter()
                .take(i)
                .find(|(_, other)| same_port(*addr, *other));
            if let Some((other_path, _)) = clash {
                p.invalid(*path, format!("{addr} clashes with {other_path}"));
            }
        }
    }

    fn check_secrets(&self, p: &mut Problems, now: SystemTime) {
        p.record(self.token_key().map(drop));
        let secret = &self.secret;
        // Upstream parses the key material at start-up whether or not it is used; so do we,
        // but only require it in encrypted mode.
        if self.label.encrypted || !secret.server_cert_private_key.trim().is_empty() {
            p.record(
                secrets::parse_private_key(
                    "secret.server_cert_private_key",
                    &secret.server_cert_private_key,
                )
                .map(drop),
            );
        }
        if self.label.encrypted || !secret.client_cert.trim().is_empty() {
            p.record(
                secrets::parse_certificate_key("secret.client_cert", &secret.client_cert, now)
                    .map(drop),
            );
        }
    }

    fn check_backends(&self, p: &mut Problems) {
        let table = match self.route_table() {
            Ok(table) => table,
            Err(e) => {
                p.0.push(e);
                return;
            }
        };
        for (kind, entries) in &self.backends {
            if table.kind_by_name(kind).is_none() {
                p.invalid(
                    format!("backends.{kind}"),
                    format!(
                        "unknown tunnel kind {kind:?} (known: {}; add it under routes.kinds)",
                        super::kind_names(&table).join(", ")
                    ),
                );
            }
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("backends.{kind}[{i}]");
                p.dial(&format!("{path}.addr"), &entry.addr);
                if entry.color.as_deref() == Some("") {
                    p.invalid(
                        format!("{path}.color"),
                        "empty; leave color out to serve every colour",
                    );
                }
            }
            let set = entries.iter().map(Into::into).collect();
            if let Err(e) = BackendSet::new(set) {
                p.invalid(format!("backends.{kind}"), e.to_string());
            }
        }
        let b = &self.routes.breaker;
        p.at_least_one(
            "routes.breaker.failure_threshold",
            usize::try_from(b.failure_threshold).unwrap_or(usize::MAX),
        );
        p.positive("routes.breaker.cool_down", b.cool_down);
        p.positive("routes.breaker.probe_timeout", b.probe_timeout);
        if b.max_cool_down < b.cool_down {
            p.invalid(
                "routes.breaker.max_cool_down",
                format!(
                    "{} is shorter than routes.breaker.cool_down ({})",
                    super::format_duration(b.max_cool_down),
                    super::format_duration(b.cool_down)
                ),
            );
        }
    }

    fn check_limits(&self, p: &mut Problems) {
        let s = &self.limits.session;
        p.positive("limits.session.handshake_timeout", s.handshake_timeout);
        p.positive("limits.session.first_frame_timeout", s.first_frame_timeout);
        p.positive("limits.session.idle_timeout", s.idle_timeout);
        p.positive("limits.session.max_timestamp_skew", s.max_timestamp_skew);
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&s.max_frame_len) {
            p.invalid(
                "limits.session.max_frame_len",
                format!(
                    "{} is outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN} bytes",
                    s.max_frame_len
                ),
            );
        }
        if s.outbound_budget < wire_len(s.max_frame_len) {
            p.invalid(
                "limits.session.outbound_budget",
                format!(
                    "{} bytes cannot hold one largest frame ({} bytes); every large reply would \
                     evict its session",
                    s.outbound_budget,
                    wire_len(s.max_frame_len)
                ),
            );
        }
        p.at_least_one("limits.session.max_inflated_len", s.max_inflated_len);
        p.at_least_one("limits.session.max_tunnels", s.max_tunnels);
        p.at_least_one("limits.session.max_pending", s.max_pending);
        p.record(self.session_config().map(drop));
        let a = &self.limits.admission;
        p.at_least_one("limits.admission.max_connections", a.max_connections);
        p.at_least_one(
            "limits.admission.max_connections_per_address",
            usize::try_from(a.max_connections_per_address).unwrap_or(usize::MAX),
        );
        p.at_least_one("limits.admission.max_handshakes", a.max_handshakes);
        p.at_least_one(
            "limits.admission.max_handshakes_per_address",
            usize::try_from(a.max_handshakes_per_address).unwrap_or(usize::MAX),
        );
        if let Some(rate) = a.connection_rate {
            if let Err(e) = janus_core::limit::RateLimit::from(rate).validate() {
                p.invalid("limits.admission.connection_rate", e.to_string());
            }
        }
        if a.ipv6_prefix_len > 128 {
            p.invalid(
                "limits.admission.ipv6_prefix_len",
                format!("{} bits; an IPv6 address has 128", a.ipv6_prefix_len),
            );
        }
        p.at_least_one("limits.replay_cache", self.limits.replay_cache);
        p.positive("limits.shutdown_grace", self.limits.shutdown_grace);
        if self.limits.drain_window >= self.limits.shutdown_grace {
            p.invalid(
                "limits.drain_window",
                format!(
                    "{} is not shorter than limits.shutdown_grace ({}): sessions whose turn \
                     comes after the grace period would be cut instead of logged out",
                    super::format_duration(self.limits.drain_window),
                    super::format_duration(self.limits.shutdown_grace)
                ),
            );
        }
    }

    fn check_backend_pool(&self, p: &mut Problems) {
        let pool = &self.limits.backend_pool;
        p.at_least_one("limits.backend_pool.min_connections", pool.min_connections);
        if pool.max_connections < pool.min_connections {
            p.invalid(
                "limits.backend_pool.max_connections",
                format!(
                    "{} is below min_connections ({})",
                    pool.max_connections, pool.min_connections
                ),
            );
        }
    }

    /// The built-in filters build (custom ones are checked when the runtime, which knows what
    /// was compiled in, builds the chain).
    fn check_filters(&self, p: &mut Problems) {
        if let Ok(table) = self.route_table() {
            p.record(self.builtin_filters(&table).map(|_| ()));
        }
    }

    fn check_services(&self, p: &mut Problems) {
        let d = &self.data;
        p.positive(
            "data.gateway_route_table_alive_duration",
            d.gateway_route_table_alive_duration,
        );
        p.positive(
            "data.app_route_table_alive_duration",
            d.app_route_table_alive_duration,
        );
        if let Some(redis) = &d.redis {
            if redis.sentinel.is_none() {
                p.dial("data.redis.addr", &redis.addr);
            }
            if !redis.cluster_seeds.is_empty() && !redis.cluster {
                p.invalid(
                    "data.redis.cluster_seeds",
                    "only used with data.redis.cluster: true",
                );
            }
            for (i, seed) in redis.cluster_seeds.iter().enumerate() {
                p.dial(&format!("data.redis.cluster_seeds[{i}]"), seed);
            }
            if let Some(sentinel) = &redis.sentinel {
                if redis.cluster {
                    p.invalid(
                        "data.redis.sentinel",
                        "cannot be combined with data.redis.cluster: true (a Redis Cluster \
                         fails over by itself; Sentinel manages one primary/replica set)",
                    );
                }
                if sentinel.master_name.trim().is_empty() {
                    p.invalid(
                        "data.redis.sentinel.master_name",
                        "empty; the name the sentinels monitor the primary under",
                    );
                }
                if sentinel.addrs.is_empty() {
                    p.invalid(
                        "data.redis.sentinel.addrs",
                        "empty; list the sentinels (host:port each)",
                    );
                }
                for (i, addr) in sentinel.addrs.iter().enumerate() {
                    p.dial(&format!("data.redis.sentinel.addrs[{i}]"), addr);
                }
            }
            p.positive("data.redis.dial_timeout", redis.dial_timeout);
            p.positive("data.redis.read_timeout", redis.read_timeout);
            p.positive("data.redis.write_timeout", redis.write_timeout);
        }
        if let Some(etcd) = &self.etcd {
            if etcd.endpoints.is_empty() {
                p.invalid("etcd.endpoints", "empty; list at least one host:port");
            }
            for (i, endpoint) in etcd.endpoints.iter().enumerate() {
                let bare = endpoint
                    .strip_prefix("http://")
                    .or_else(|| endpoint.strip_prefix("https://"))
                    .unwrap_or(endpoint);
                p.dial(&format!("etcd.endpoints[{i}]"), bare);
            }
        }
        let t = &self.trace;
        if !(0.0..=1.0).contains(&t.sampler) {
            p.invalid(
                "trace.sampler",
                format!("{} is not a fraction in 0.0..=1.0", t.sampler),
            );
        }
        if let Some(endpoint) = t.endpoint.as_deref().filter(|e| !e.is_empty()) {
            match endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
            {
                Some(rest) => {
                    p.dial("trace.endpoint", rest.split('/').next().unwrap_or(rest));
                }
                None => p.invalid(
                    "trace.endpoint",
                    format!(
                        "{endpoint:?}: write the OTLP/gRPC collector as http://host:port \
                         (e.g. http://otel-collector:4317)"
                    ),
                ),
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.invalid(
                "log.level",
                format!(
                    "{:?} is not a log filter (e.g. info, debug): {e}",
                    self.log.level
                ),
            );
        }
    }
}

/// Tunnel kinds some module routes to: `player` (every unmapped module) and each mapped target.
fn used_kinds(
    table: &janus_core::route::RouteTable,
    modules: &std::collections::BTreeMap<i32, String>,
) -> Vec<TunnelKind> {
    let mut kinds = vec![TunnelKind::PLAYER, table.kind_for_module(6)];
    kinds.extend(modules.keys().map(|m| table.kind_for_module(*m)));
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Two listeners on one port collide when their IPs are equal or either is a wildcard.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// An `Origin` header value: `*`, `null`, or `scheme://host[:port]` with nothing after it.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" || origin == "null" {
        return Ok(());
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "{origin:?} is not an origin; write scheme://host[:port], e.g. https://game.example.com"
        ));
    };
    if scheme.is_empty() || rest.is_empty() {
        return Err(format!(
            "{origin:?} is not an origin (scheme://host[:port])"
        ));
    }
    if rest.contains('/') {
        return Err(format!(
            "{origin:?} has a path or a trailing '/'; browsers send scheme://host[:port] only, \
             so it would never match"
        ));
    }
    Ok(())
}

/// Whether `addr` is a `host:port` that can be dialled (host name, IPv4, or `[IPv6]`).
fn check_dial(addr: &str) -> Result<(), String> {
    if addr.contains("://") {
        return Err(format!("{addr:?}: write host:port, without a scheme"));
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return if sa.port() == 0 {
            Err(format!("{addr:?}: port 0 cannot be dialled"))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{addr:?}: {port:?} is not a port (1-65535)")),
        Ok(_) => {}
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "{addr:?}: {host:?} is not a host name or IP address (IPv6 goes in brackets)"
        ))
    }
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn invalid(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::invalid(path, reason));
    }

    fn record(&mut self, result: Result<(), ConfigError>) {
        if let Err(e) = result {
            self.0.push(e);
        }
    }

    fn listen<'a>(&mut self, path: &'a str, addr: &str, seen: &mut Vec<(&'a str, SocketAddr)>) {
        match addr.parse::<SocketAddr>() {
            Ok(sa) => seen.push((path, sa)),
            Err(_) => {
                let hint = if addr.parse::<IpAddr>().is_ok() {
                    " (the port is missing)"
                } else {
                    " (listen addresses are ip:port, e.g. 0.0.0.0:7001 or 127.0.0.1:7001)"
                };
                self.invalid(path, format!("{addr:?} is not an ip:port address{hint}"));
            }
        }
    }

    fn dial(&mut self, path: &str, addr: &str) {
        if let Err(why) = check_dial(addr) {
            self.invalid(path, why);
        }
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.invalid(path, "must be longer than 0 (e.g. \"5s\")");
        }
    }

    fn at_least_one(&mut self, path: &str, n: usize) {
        if n == 0 {
            self.invalid(path, "must be at least 1");
        }
    }
}
