//! The built-in filters, configured in the `filters` section of the configuration file
//! (`janus-config` builds them; the names are their metric labels):
//!
//! | filter | name | hooks | decides |
//! | --- | --- | --- | --- |
//! | [`Ban`] | `ban` | handshake, recheck | refuses (and, after a reload or a ban-list refresh, closes) sessions of banned uids or client addresses, `SCServerLogout{Banned}`; uids can also come from a [`BanFeed`] the adapter refreshes |
//! | [`ModuleAccess`] | `access` | packet | modules a session may use: an allow list, a deny list |
//! | [`MaxPayload`] | `max_payload` | packet | the largest request payload, per module |
//! | [`ModuleRateLimit`] | `rate_limit` | packet | GCRA rate limits per module (or group of modules), per session |
//! | [`ModuleRoute`] | `route` | packet | sends a module's requests (or only some seqs) to another tunnel kind |
//!
//! A request a rule refuses gets the rule's [`Action`]: an error reply (the default: the client's
//! request fails at once and the session goes on), a silent drop, or the session closed.

mod access;
mod ban;
mod payload;
mod rate;
mod route;

pub use access::ModuleAccess;
pub use ban::{Ban, BanFeed, InvalidNetwork, IpNetwork};
pub use payload::MaxPayload;
pub use rate::{ModuleRateLimit, RateRule};
pub use route::{ModuleRoute, RouteRule};

use std::borrow::Cow;

use super::{DropReason, PacketVerdict, Refusal};

/// What a built-in packet rule does with a request it refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Answer it with `SCServerUnexpectedErr{mod, seq, <why>}`; the session goes on.
    #[default]
    Reject,
    /// Forward nothing, answer nothing (counted).
    Drop,
    /// Close the session without a logout packet (as for other abuse: the rate limit, a bad
    /// index).
    Close,
}

impl Action {
    /// The verdict for a request refused for `why`, counted as `reason` when dropped.
    pub(crate) fn verdict(self, why: &'static str, reason: DropReason) -> PacketVerdict {
        match self {
            Action::Reject => PacketVerdict::Reject(Cow::Borrowed(why)),
            Action::Drop => PacketVerdict::Drop(reason),
            Action::Close => PacketVerdict::Close(Refusal::Silent),
        }
    }
}

/// Whether sorted `list` holds `module`.
fn listed(list: &[i32], module: i32) -> bool {
    list.binary_search(&module).is_ok()
}

/// `list`, sorted, without repeats.
fn sorted(mut list: Vec<i32>) -> Vec<i32> {
    list.sort_unstable();
    list.dedup();
    list
}

#[cfg(test)]
mod tests;
