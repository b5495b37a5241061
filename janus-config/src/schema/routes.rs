//! `backends` and `routes`: where each tunnel kind's backends are and how modules map to kinds.

use std::{collections::BTreeMap, fmt, time::Duration};

use janus_core::route::{BreakerConfig, OidRule};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};

use crate::de::{duration, scalar, ser_duration};

/// One backend of a tunnel kind. In YAML either `"host:port"` or
/// `{addr: "host:port", weight: 2, color: blue}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendEntry {
    /// `host:port` of its gRPC server (host names allowed).
    pub addr: String,
    /// Share of new placements. Default 1; 0 takes no new oids but keeps those stuck to it.
    pub weight: u32,
    /// The colour it serves; `None` (the default) serves every colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

impl From<&BackendEntry> for janus_core::route::Backend {
    fn from(entry: &BackendEntry) -> Self {
        janus_core::route::Backend {
            addr: entry.addr.clone(),
            weight: entry.weight,
            color: entry.color.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendMap {
    addr: String,
    #[serde(default = "one", deserialize_with = "scalar")]
    weight: u32,
    #[serde(default)]
    color: Option<String>,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = BackendEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend: \"host:port\" or {addr, weight, color}")
            }
            fn visit_str<E: serde::de::Error>(self, addr: &str) -> Result<BackendEntry, E> {
                Ok(BackendEntry {
                    addr: addr.to_owned(),
                    weight: 1,
                    color: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BackendEntry, A::Error> {
                let m = BackendMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(BackendEntry {
                    addr: m.addr,
                    weight: m.weight,
                    color: m.color,
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// `routes`: which tunnel kind each module's packets go to.
///
/// Built in: kinds `player` (oid = the session uid) and `room` (oid = the packet's `obj`);
/// module 6 goes to `room`, every other module to `player` (upstream's routing, spec §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    /// Extra tunnel kinds (`team: object`), each with its oid rule. Names: `a-z0-9_-`, ≤ 32 bytes.
    pub kinds: BTreeMap<String, OidRuleName>,
    /// Module id → kind name, overriding the built-in mapping (`7: team`, `6: player`).
    pub modules: BTreeMap<i32, String>,
    /// How a new tunnel's backend is chosen when the route table has no placement for its oid.
    /// Default `wrr`.
    pub balancer: BalancerName,
    /// When a backend stops getting new tunnels after failing to open them.
    pub breaker: BreakerSettings,
}

/// `routes.balancer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerName {
    /// Smooth weighted round-robin over the backend weights, as upstream (nginx's algorithm).
    #[default]
    Wrr,
    /// Power of two choices: of two backends drawn at random (weight > 0), the one with fewer
    /// tunnels open from this gateway. Spreads load by what backends actually carry.
    LeastLoaded,
}

/// `routes.breaker`: see `janus_core::route::BreakerConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failed tunnel opens that take a backend out of placement. Default 5.
    #[serde(deserialize_with = "scalar")]
    pub failure_threshold: u32,
    /// How long it stays out after the first trip. Default `10s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub cool_down: Duration,
    /// Longest stay out (the cool-down doubles after each failed probe). Default `300s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub max_cool_down: Duration,
    /// How long a probe may go unanswered before another is allowed. Default `30s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub probe_timeout: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        let d = BreakerConfig::default();
        BreakerSettings {
            failure_threshold: d.failure_threshold,
            cool_down: d.cool_down,
            max_cool_down: d.max_cool_down,
            probe_timeout: d.probe_timeout,
        }
    }
}

impl From<BreakerSettings> for BreakerConfig {
    fn from(s: BreakerSettings) -> Self {
        BreakerConfig {
            failure_threshold: s.failure_threshold,
            cool_down: s.cool_down,
            max_cool_down: s.max_cool_down,
            probe_timeout: s.probe_timeout,
        }
    }
}

/// How a tunnel kind finds its oid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OidRuleName {
    /// Like `player`: the oid is the session uid; a packet may only name its own uid.
    Player,
    /// Like `room`: the oid is the packet's `obj` (0 means the session uid, as upstream).
    Object,
}

impl From<OidRuleName> for OidRule {
    fn from(rule: OidRuleName) -> Self {
        match rule {
            OidRuleName::Player => OidRule::SessionUid,
            OidRuleName::Object => OidRule::Object,
        }
    }
}
