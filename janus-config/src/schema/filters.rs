//! `filters`: the built-in filters of `janus_core::filter::builtin` and the compiled-in custom
//! ones, in the order they run:
//!
//! ```yaml
//! filters:
//!   ban:                        # refuse (and, after a reload, close) banned players
//!     uids: [1001, 1002]
//!     networks: ["203.0.113.0/24", "2001:db8::/32"]
//!   access:                     # which modules a session may use
//!     allow: [1, 2, 3, 4, 5]    # empty: every module
//!     deny: [6]
//!     action: reject            # reject (error reply, the default) | drop | close
//!   max_payload:                # largest request payload (inflated), bytes
//!     default: 8192             # modules not listed; omit for no limit
//!     modules: {5: 512}
//!   rate_limit:                 # GCRA per session; a request must conform to every rule covering it
//!     - {modules: [5], per_second: 2, burst: 5}
//!     - {modules: [], per_second: 50, burst: 100, action: drop}   # [] = every module
//!   route:                      # send some modules (or some seqs) to another tunnel kind
//!     - {module: 9, kind: guild}
//!     - {module: 4, seqs: [2, 3], kind: chat}
//!   custom:                     # compiled-in filters (cargo features of the gateway), by name
//!     example_stamp: {module: 5}
//! ```
//!
//! Order: `ban`, `access`, `max_payload`, `rate_limit`, `route`, then `custom` in name order.
//! Each section left out adds no filter; no `filters` at all is an empty chain (no cost). The
//! whole section is reloadable: sessions that start after a reload run the new chain, and every
//! live session is asked the new `ban` list (`Filter::recheck`), so a ban also ends sessions
//! already open.

use std::collections::BTreeMap;

use janus_core::{filter::builtin::Action, limit::RateLimit};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::de::scalar;

/// `filters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Banned uids and client networks. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanFilter>,
    /// Module allow and deny lists. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessFilter>,
    /// Largest request payload per module. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<MaxPayloadFilter>,
    /// Per-module rate limits. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limit: Vec<RateRuleConfig>,
    /// Module (and seq) → tunnel kind. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteRuleConfig>,
    /// Compiled-in filters by registered name → their settings (any YAML the filter reads).
    /// Default: none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, Value>,
}

impl Filters {
    /// Whether no filter is configured.
    pub fn is_empty(&self) -> bool {
        self == &Filters::default()
    }
}

/// `filters.ban`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BanFilter {
    /// Banned accounts (`token.account_id`).
    pub uids: Vec<i64>,
    /// Banned client addresses or networks (`a.b.c.d`, `a.b.c.d/n`, IPv6 likewise), as the
    /// gateway sees them (after a PROXY header). The wire protocol carries no device id: an
    /// address is the device ban the gateway can enforce.
    pub networks: Vec<String>,
}

/// `filters.access`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessFilter {
    /// Only these modules (empty: every module). Name module 1: heartbeats are module 1.
    pub allow: Vec<i32>,
    /// Never these modules.
    pub deny: Vec<i32>,
    /// What a refused request gets. Default `reject`.
    pub action: ActionName,
}

/// `filters.max_payload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxPayloadFilter {
    /// Bytes for modules not in `modules`; none: no limit for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<usize>,
    /// Module → bytes.
    pub modules: BTreeMap<i32, usize>,
    /// What a refused request gets. Default `reject`.
    pub action: ActionName,
}

/// One `filters.rate_limit` rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateRuleConfig {
    /// The modules sharing this bucket (empty: every module).
    #[serde(default)]
    pub modules: Vec<i32>,
    /// Sustained requests per second, at least 1.
    #[serde(deserialize_with = "scalar")]
    pub per_second: u32,
    /// Requests accepted back to back, at least 1.
    #[serde(deserialize_with = "scalar")]
    pub burst: u32,
    /// What a request over the limit gets. Default `reject`.
    #[serde(default)]
    pub action: ActionName,
}

impl RateRuleConfig {
    /// The rule's limit.
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.per_second,
            burst: self.burst,
        }
    }
}

/// One `filters.route` rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleConfig {
    /// The module.
    #[serde(deserialize_with = "scalar")]
    pub module: i32,
    /// Only these seqs of it (empty, the default: all).
    #[serde(default)]
    pub seqs: Vec<i32>,
    /// A tunnel kind: built in (`player`, `room`) or from `routes.kinds`; its backends come
    /// from `backends.<kind>` or etcd (`etcd.services.<kind>`), like any kind's.
    pub kind: String,
}

/// What a built-in rule does with a request it refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    /// An error reply (`SCServerUnexpectedErr`); the session goes on.
    #[default]
    Reject,
    /// Nothing forwarded, nothing answered (counted).
    Drop,
    /// The session is closed.
    Close,
}

impl From<ActionName> for Action {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Reject => Action::Reject,
            ActionName::Drop => Action::Drop,
            ActionName::Close => Action::Close,
        }
    }
}
