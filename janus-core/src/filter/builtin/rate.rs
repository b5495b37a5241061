//! `rate_limit`: GCRA rate limits per module, per session.

use super::{Action, listed, sorted};
use crate::{
    Time,
    filter::{
        Admit, ClientPacket, DropReason, Filter, FilterError, Hooks, PacketVerdict, SessionView,
    },
    limit::{Gcra, RateLimit},
};

/// One rate rule: requests of `modules` (every module when empty) share one
/// [`Gcra`](crate::limit::Gcra) bucket per session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRule {
    modules: Vec<i32>,
    limit: RateLimit,
    action: Action,
}

impl RateRule {
    /// `limit` over the requests of `modules` (every module when empty); a request over it gets
    /// `action`.
    pub fn new(modules: Vec<i32>, limit: RateLimit, action: Action) -> Self {
        Self {
            modules: sorted(modules),
            limit,
            action,
        }
    }

    fn covers(&self, module: i32) -> bool {
        self.modules.is_empty() || listed(&self.modules, module)
    }
}

/// Rate limits per module: unlike `limits.session.rate_limit` (every packet, over it the session
/// closes), a rule meters some modules only and by default refuses just the request over it, so
/// a client spamming one action (chat, a shop refresh) is slowed down, not disconnected. A
/// request covered by several rules must conform to all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRateLimit {
    rules: Vec<RateRule>,
}

impl ModuleRateLimit {
    /// The rules, checked in order.
    pub fn new(rules: Vec<RateRule>) -> Self {
        Self { rules }
    }
}

impl Filter for ModuleRateLimit {
    /// One bucket per rule.
    type State = Vec<Gcra>;

    fn name(&self) -> &str {
        "rate_limit"
    }

    fn hooks(&self) -> Hooks {
        Hooks::PACKET
    }

    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<Vec<Gcra>>, FilterError> {
        Ok(Admit::Accept(
            self.rules.iter().map(|r| Gcra::new(r.limit)).collect(),
        ))
    }

    fn on_packet(
        &self,
        buckets: &mut Vec<Gcra>,
        _: &SessionView<'_>,
        packet: &mut ClientPacket,
        now: Time,
    ) -> Result<PacketVerdict, FilterError> {
        let module = packet.module();
        for (rule, bucket) in self.rules.iter().zip(buckets.iter_mut()) {
            if rule.covers(module) && bucket.check(now).is_err() {
                return Ok(rule.action.verdict("rate limited", DropReason::RateLimited));
            }
        }
        Ok(PacketVerdict::Pass)
    }
}
