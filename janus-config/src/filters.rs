//! Building the filter chain of `filters` ([`Config::filter_chain`]): the built-in filters from
//! their sections, then the compiled-in custom filters a runtime registered ([`CustomFilters`]).

use std::{collections::BTreeMap, fmt};

use janus_core::{
    filter::{
        FilterChain,
        builtin::{
            Ban, IpNetwork, MaxPayload, ModuleAccess, ModuleRateLimit, ModuleRoute, RateRule,
            RouteRule,
        },
    },
    route::RouteTable,
};
use serde_yaml::Value;

use super::{Config, ConfigError};

/// Adds a custom filter, configured by `settings` (the YAML under `filters.custom.<name>`), to
/// `chain`; `Err` says what is wrong with the settings.
pub type CustomFilterFn = fn(settings: &Value, chain: &mut FilterChain) -> Result<(), String>;

/// The custom filters a runtime was compiled with, by the name they are configured under.
/// janus-tokio registers each behind a cargo feature (see the README).
#[derive(Clone, Default)]
pub struct CustomFilters {
    makers: BTreeMap<&'static str, CustomFilterFn>,
}

impl fmt::Debug for CustomFilters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.makers.keys()).finish()
    }
}

impl CustomFilters {
    /// None registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` configurable under `filters.custom.<name>`, built by `make`.
    pub fn register(&mut self, name: &'static str, make: CustomFilterFn) -> &mut Self {
        self.makers.insert(name, make);
        self
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.makers.keys().copied()
    }
}

impl Config {
    /// The chain `filters` describes, custom filters made by `custom`: every error names its
    /// key (`filters.route[0].kind: unknown tunnel kind "guild"`).
    pub fn filter_chain(&self, custom: &CustomFilters) -> Result<FilterChain, ConfigError> {
        let table = self.route_table()?;
        let mut chain = self.builtin_filters(&table)?;
        for (name, settings) in &self.filters.custom {
            let key = format!("filters.custom.{name}");
            let make = custom.makers.get(name.as_str()).ok_or_else(|| {
                let known: Vec<&str> = custom.names().collect();
                ConfigError::invalid(
                    &key,
                    format!(
                        "no custom filter {name:?} in this build (compiled in: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            make(settings, &mut chain).map_err(|why| ConfigError::invalid(&key, why))?;
        }
        Ok(chain)
    }

    /// The built-in filters alone.
    pub(crate) fn builtin_filters(&self, table: &RouteTable) -> Result<FilterChain, ConfigError> {
        let f = &self.filters;
        let mut chain = FilterChain::new();
        let add = |key: &str, r: Result<(), janus_core::filter::FilterConfigError>| {
            r.map_err(|e| ConfigError::invalid(key, e.to_string()))
        };
        if let Some(ban) = &f.ban {
            let mut networks = Vec::with_capacity(ban.networks.len());
            for (i, net) in ban.networks.iter().enumerate() {
                let parsed: IpNetwork =
                    net.parse()
                        .map_err(|e: janus_core::filter::builtin::InvalidNetwork| {
                            ConfigError::invalid(
                                format!("filters.ban.networks[{i}]"),
                                e.to_string(),
                            )
                        })?;
                networks.push(parsed);
            }
            add(
                "filters.ban",
                chain.push(Ban::new(ban.uids.iter().copied(), networks, None)),
            )?;
        }
        if let Some(access) = &f.access {
            let filter = ModuleAccess::new(
                access.allow.clone(),
                access.deny.clone(),
                access.action.into(),
            );
            add("filters.access", chain.push(filter))?;
        }
        if let Some(max) = &f.max_payload {
            let modules = max.modules.iter().map(|(m, n)| (*m, *n)).collect();
            let filter = MaxPayload::new(max.default, modules, max.action.into());
            add("filters.max_payload", chain.push(filter))?;
        }
        if !f.rate_limit.is_empty() {
            let mut rules = Vec::with_capacity(f.rate_limit.len());
            for (i, rule) in f.rate_limit.iter().enumerate() {
                let limit = rule.limit();
                limit.validate().map_err(|e| {
                    ConfigError::invalid(format!("filters.rate_limit[{i}]"), e.to_string())
                })?;
                rules.push(RateRule::new(
                    rule.modules.clone(),
                    limit,
                    rule.action.into(),
                ));
            }
            add(
                "filters.rate_limit",
                chain.push(ModuleRateLimit::new(rules)),
            )?;
        }
        if !f.route.is_empty() {
            let mut rules = Vec::with_capacity(f.route.len());
            for (i, rule) in f.route.iter().enumerate() {
                let kind = table.kind_by_name(&rule.kind).ok_or_else(|| {
                    let known: Vec<String> = table
                        .kinds()
                        .map(|k| table.kind_name(k).to_owned())
                        .collect();
                    ConfigError::invalid(
                        format!("filters.route[{i}].kind"),
                        format!(
                            "unknown tunnel kind {:?} (known: {}; add it under routes.kinds)",
                            rule.kind,
                            known.join(", ")
                        ),
                    )
                })?;
                rules.push(RouteRule::new(rule.module, rule.seqs.clone(), kind));
            }
            add("filters.route", chain.push(ModuleRoute::new(rules)))?;
        }
        Ok(chain)
    }
}

#[cfg(test)]
mod tests;
