//! `route`: send a module's requests, or some of its messages, to another tunnel kind.

use super::sorted;
use crate::{
    Time,
    filter::{Admit, ClientPacket, Filter, FilterError, Hooks, PacketVerdict, SessionView},
    route::TunnelKind,
};

/// One routing rule: requests of `module` whose seq is in `seqs` (every seq when empty) go to
/// tunnel kind `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    module: i32,
    seqs: Vec<i32>,
    kind: TunnelKind,
}

impl RouteRule {
    /// `module`'s requests (only those of `seqs`, when not empty) go to `kind`.
    pub fn new(module: i32, seqs: Vec<i32>, kind: TunnelKind) -> Self {
        Self {
            module,
            seqs: sorted(seqs),
            kind,
        }
    }

    fn matches(&self, module: i32, seq: i32) -> bool {
        self.module == module && (self.seqs.is_empty() || self.seqs.binary_search(&seq).is_ok())
    }
}

/// Routing finer than the route table's module → kind map (`routes.modules`): a rule can move
/// some messages of a module to a kind (a guild service, a chat service) and leave the rest
/// where the table sends them. The kinds are the route table's (`routes.kinds`), so the oid rule,
/// backends, etcd discovery and tunnel metadata are those of the kind, exactly as for a module
/// the table maps there. The first matching rule wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRoute {
    rules: Vec<RouteRule>,
}

impl ModuleRoute {
    /// The rules, first match wins.
    pub fn new(rules: Vec<RouteRule>) -> Self {
        Self { rules }
    }

    /// Where a request of `module`/`seq` goes, if a rule says.
    pub fn kind_for(&self, module: i32, seq: i32) -> Option<TunnelKind> {
        self.rules
            .iter()
            .find(|r| r.matches(module, seq))
            .map(|r| r.kind)
    }
}

impl Filter for ModuleRoute {
    type State = ();

    fn name(&self) -> &str {
        "route"
    }

    fn hooks(&self) -> Hooks {
        Hooks::PACKET
    }

    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(Admit::Accept(()))
    }

    fn on_packet(
        &self,
        _: &mut (),
        _: &SessionView<'_>,
        packet: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        if let Some(kind) = self.kind_for(packet.module(), packet.seq()) {
            packet.route_to(kind);
        }
        Ok(PacketVerdict::Pass)
    }
}
