//! An example custom filter, `trial`: a game's trial accounts (uids in a configured range) may
//! use only some modules, and only so many requests of them per session; everyone else passes
//! untouched. It shows every part a game team writes:
//!
//! * the [`Filter`] itself, with per-session state (the requests used so far) and a rewrite (a
//!   trial player's requests to the shop are sent as the trial shop's module);
//! * its settings, read from `filters.custom.trial` in the gateway's YAML;
//! * [`register`], which janus-tokio calls when built with `--features filter-example`.
//!
//! ```yaml
//! filters:
//!   custom:
//!     trial:
//!       uids: {from: 900000, to: 999999}   # inclusive
//!       modules: [1, 3, 5]                 # what a trial account may use (1: heartbeats)
//!       max_requests: 500                  # per session, over those modules
//!       shop: {module: 5, trial_module: 15} # the trial shop answers module 5 for them
//! ```
//!
//! A trial player who asks for another module gets an error reply; one who used up the quota
//! is logged out with `SCServerLogout{Unauthorized}` (the client's cue to show the upgrade
//! screen). Nothing here does IO: the decision is made from the token's uid and what the
//! session did, as every hook must (see `janus_core::filter`, "Decisions that need IO").

use janus_config::CustomFilters;
use janus_core::{
    Time,
    filter::{
        Admit, ClientPacket, Filter, FilterChain, FilterError, Hooks, PacketVerdict, Refusal,
        SessionView,
    },
};
use serde::Deserialize;
use serde_yaml::Value;

/// The name the filter is configured under and counted as.
pub const NAME: &str = "trial";

/// `filters.custom.trial`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrialSettings {
    /// The trial accounts' uids.
    pub uids: UidRange,
    /// The modules a trial account may use.
    pub modules: Vec<i32>,
    /// Requests of those modules per session.
    pub max_requests: u32,
    /// A module whose requests go to a trial-only module instead.
    #[serde(default)]
    pub shop: Option<Redirect>,
}

/// Inclusive uid range.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UidRange {
    /// First trial uid.
    pub from: i64,
    /// Last trial uid.
    pub to: i64,
}

/// Requests of `module` are forwarded as `trial_module`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// What the client sends.
    pub module: i32,
    /// What the backend gets.
    pub trial_module: i32,
}

/// The filter.
#[derive(Debug, Clone)]
pub struct Trial {
    settings: TrialSettings,
}

impl Trial {
    /// The filter for `settings` (checked: a range that is empty, or a quota of 0, is an error).
    pub fn new(settings: TrialSettings) -> Result<Self, String> {
        if settings.uids.from > settings.uids.to {
            return Err(format!(
                "uids: from {} is above to {}",
                settings.uids.from, settings.uids.to
            ));
        }
        if settings.max_requests == 0 {
            return Err("max_requests must be at least 1".to_owned());
        }
        let mut settings = settings;
        settings.modules.sort_unstable();
        settings.modules.dedup();
        Ok(Self { settings })
    }

    fn is_trial(&self, uid: i64) -> bool {
        (self.settings.uids.from..=self.settings.uids.to).contains(&uid)
    }
}

/// Per session: `None` for a full account (nothing to count), the requests used for a trial one.
pub type TrialState = Option<u32>;

impl Filter for Trial {
    type State = TrialState;

    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        Hooks::PACKET
    }

    fn on_handshake(&self, s: &SessionView<'_>, _: Time) -> Result<Admit<TrialState>, FilterError> {
        Ok(Admit::Accept(self.is_trial(s.uid()).then_some(0)))
    }

    fn on_packet(
        &self,
        used: &mut TrialState,
        _: &SessionView<'_>,
        p: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        let Some(used) = used else {
            return Ok(PacketVerdict::Pass);
        };
        if self.settings.modules.binary_search(&p.module()).is_err() {
            return Ok(PacketVerdict::reject("not available on a trial account"));
        }
        *used += 1;
        if *used > self.settings.max_requests {
            return Ok(PacketVerdict::Close(Refusal::Unauthorized));
        }
        if let Some(shop) = self.settings.shop {
            if p.module() == shop.module {
                p.set_module(shop.trial_module);
            }
        }
        Ok(PacketVerdict::Pass)
    }
}

/// Builds the filter from its YAML settings and adds it to `chain` (a
/// [`CustomFilterFn`](janus_config::CustomFilterFn)).
pub fn make(settings: &Value, chain: &mut FilterChain) -> Result<(), String> {
    let settings: TrialSettings =
        serde_yaml::from_value(settings.clone()).map_err(|e| e.to_string())?;
    chain.push(Trial::new(settings)?).map_err(|e| e.to_string())
}

/// Makes `filters.custom.trial` available.
pub fn register(custom: &mut CustomFilters) {
    custom.register(NAME, make);
}

#[cfg(test)]
mod tests;
