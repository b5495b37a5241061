//! `max_payload`: the largest request payload, per module.

use super::Action;
use crate::Time;
use crate::filter::{
    Admit, ClientPacket, DropReason, Filter, FilterError, Hooks, PacketVerdict, SessionView,
};

/// A ceiling on the request payload (the inflated `data`), per module, with a default for the
/// modules not listed. Stops one module's oversized requests (a chat line of 16 KiB) from
/// reaching a backend that expects a few bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPayload {
    default: Option<usize>,
    /// Sorted by module.
    modules: Vec<(i32, usize)>,
    action: Action,
}

impl MaxPayload {
    /// At most `default` bytes for modules not in `modules` (`None`: no limit for them), at most
    /// the listed bytes for those in it; a refused request gets `action`.
    pub fn new(default: Option<usize>, mut modules: Vec<(i32, usize)>, action: Action) -> Self {
        modules.sort_unstable_by_key(|&(m, _)| m);
        modules.dedup_by_key(|&mut (m, _)| m);
        Self {
            default,
            modules,
            action,
        }
    }

    /// The limit for `module`, bytes.
    pub fn limit(&self, module: i32) -> Option<usize> {
        match self.modules.binary_search_by_key(&module, |&(m, _)| m) {
            Ok(i) => self.modules.get(i).map(|&(_, max)| max),
            Err(_) => self.default,
        }
    }
}

impl Filter for MaxPayload {
    type State = ();

    fn name(&self) -> &str {
        "max_payload"
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
        Ok(match self.limit(packet.module()) {
            Some(max) if packet.data().len() > max => self
                .action
                .verdict("payload too large", DropReason::TooLarge),
            _ => PacketVerdict::Pass,
        })
    }
}
