//! `access`: which modules a session may use.

use super::{Action, listed, sorted};
use crate::{
    Time,
    filter::{
        Admit, ClientPacket, DropReason, Filter, FilterError, Hooks, PacketVerdict, SessionView,
    },
};

/// Allow and deny lists of modules. A module passes when the allow list is empty or holds it,
/// and the deny list does not hold it. An allow list should name module 1 (System): heartbeats
/// are module 1 requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleAccess {
    allow: Vec<i32>,
    deny: Vec<i32>,
    action: Action,
}

impl ModuleAccess {
    /// Only `allow` (every module when empty), never `deny`; a refused request gets `action`.
    pub fn new(allow: Vec<i32>, deny: Vec<i32>, action: Action) -> Self {
        Self {
            allow: sorted(allow),
            deny: sorted(deny),
            action,
        }
    }

    /// Whether requests of `module` pass.
    pub fn allows(&self, module: i32) -> bool {
        (self.allow.is_empty() || listed(&self.allow, module)) && !listed(&self.deny, module)
    }
}

impl Filter for ModuleAccess {
    type State = ();

    fn name(&self) -> &str {
        "access"
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
        Ok(if self.allows(packet.module()) {
            PacketVerdict::Pass
        } else {
            self.action
                .verdict("module not allowed", DropReason::Denied)
        })
    }
}
