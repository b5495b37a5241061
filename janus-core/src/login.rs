//! Who holds a uid: one session per uid per gateway, and across gateways through the gate table.
//!
//! The rules, decided here and only carried out by the adapters:
//!
//! * **The newer login wins.** A second login of a uid on this gateway replaces the first, which
//!   is closed with [`SUPERSEDED`] (`SCServerLogout{ConflictingLogin}`); roma does the same for its
//!   actors (spec §4.4). [`Logins`] keeps the map; only the connection that owns an entry removes
//!   it, so a late logout of the older connection cannot unregister the newer one (upstream deletes
//!   by the wrong key and leaks entries, spec §5.2).
//! * **Across gateways** (cluster mode, spec §4.1): a login writes the gate table with `SET … GET`;
//!   [`gate_login`] says whether the previous value names another gateway, which must then be told
//!   to close its session ([`kick_message`], published on that gateway's channel). The periodic
//!   renewal's outcome for each session is [`gate_renewal`].
//! * **Pushes from Redis** ([`PushRoute::of`]): a `PushMessage` with the broadcast flag or no uids
//!   (how the Go broadcaster sends broadcasts) goes to every session of its colour and sid; one
//!   carrying `SCServerLogout{ConflictingLogin}` is a kick; anything else is a push to its uids.

use std::collections::HashMap;

use janus_proto::{
    broadcaster::service::push::v1::PushMessage, message::sc_server_logout::Code as LogoutCode,
};

use crate::{CloseReason, system};

/// How a session replaced by a newer login of its uid is closed.
pub const SUPERSEDED: CloseReason = CloseReason::ConflictingLogin;

/// The sessions of one gateway (or one shard of them) by uid: `H` is how the adapter reaches a
/// connection, `conn` a number unique per connection for the gateway's life.
#[derive(Debug)]
pub struct Logins<H> {
    by_uid: HashMap<i64, (u64, H)>,
}

impl<H> Default for Logins<H> {
    fn default() -> Self {
        Self {
            by_uid: HashMap::new(),
        }
    }
}

impl<H> Logins<H> {
    /// Registers connection `conn` as the holder of `uid`. Returns the handle of the connection it
    /// replaces, which the adapter closes with [`SUPERSEDED`]; `None` for a first login (or the
    /// same connection again).
    pub fn login(&mut self, uid: i64, conn: u64, handle: H) -> Option<H> {
        match self.by_uid.insert(uid, (conn, handle)) {
            Some((old, handle)) if old != conn => Some(handle),
            _ => None,
        }
    }

    /// Removes `uid` if connection `conn` still holds it, returning its handle.
    pub fn logout(&mut self, uid: i64, conn: u64) -> Option<H> {
        if self.by_uid.get(&uid).is_some_and(|(c, _)| *c == conn) {
            return self.by_uid.remove(&uid).map(|(_, h)| h);
        }
        None
    }

    /// The connection holding `uid`.
    pub fn get(&self, uid: i64) -> Option<&H> {
        self.by_uid.get(&uid).map(|(_, h)| h)
    }

    /// Every uid with its connection.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &H)> {
        self.by_uid.iter().map(|(uid, (_, h))| (*uid, h))
    }

    /// Sessions registered.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// After this gateway wrote its endpoint into the gate table with `SET … GET`: the gateway whose
/// session for the uid must now close (the previous value, when it names another gateway).
pub fn gate_login<'a>(previous: Option<&'a str>, me: &str) -> Option<&'a str> {
    previous.filter(|p| *p != me)
}

/// What the periodic gate-table renewal found for one local session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRenewal {
    /// The entry is ours and its TTL was extended.
    Renewed,
    /// The entry is gone (Redis restarted or lost it): write it again (`SET NX`).
    Reassert,
    /// Another gateway holds the uid now, so this session is the older login: close it with
    /// [`SUPERSEDED`].
    Superseded,
}

/// The renewal outcome for one session: whether compare-and-expire `renewed` it, and if not, what
/// the entry holds now (`stored`).
pub fn gate_renewal(renewed: bool, stored: Option<&str>, me: &str) -> GateRenewal {
    match (renewed, stored) {
        (true, _) => GateRenewal::Renewed,
        (false, None) => GateRenewal::Reassert,
        (false, Some(s)) if s == me => GateRenewal::Renewed,
        (false, Some(_)) => GateRenewal::Superseded,
    }
}

/// The message that tells another gateway to close its session of `uid` (published on that
/// gateway's endpoint channel): a push of `SCServerLogout{ConflictingLogin}`, which a Go gateway
/// passes to its client and a Janus gateway turns into a close.
pub fn kick_message(uid: i64) -> PushMessage {
    PushMessage {
        bodies: vec![system::logout_push(LogoutCode::ConflictingLogin)],
        uids: vec![uid],
        ..Default::default()
    }
}

/// Where a `PushMessage` received from Redis goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRoute {
    /// Every session whose colour is the message's and whose sid is the message's (0: any).
    Broadcast,
    /// Close the sessions of the message's uids with [`SUPERSEDED`].
    Kick,
    /// Push the bodies to each of the message's uids.
    Uids,
}

impl PushRoute {
    /// The route of `message` (see the [module documentation](self)).
    pub fn of(message: &PushMessage) -> Self {
        if message.broadcast || message.uids.is_empty() {
            PushRoute::Broadcast
        } else if message
            .bodies
            .iter()
            .any(|b| system::logout_code(b) == Some(LogoutCode::ConflictingLogin))
        {
            PushRoute::Kick
        } else {
            PushRoute::Uids
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_proto::broadcaster::service::push::v1::PushBody;

    #[test]
    fn the_newer_login_wins_and_only_the_owner_logs_out() {
        let mut logins = Logins::default();
        assert_eq!(logins.login(7, 1, "first"), None);
        assert_eq!(logins.login(7, 1, "first"), None, "same connection");
        assert_eq!(logins.login(7, 2, "second"), Some("first"));
        assert_eq!(
            logins.logout(7, 1),
            None,
            "the older connection cannot unregister"
        );
        assert_eq!(logins.get(7), Some(&"second"));
        assert_eq!(logins.logout(7, 2), Some("second"));
        assert!(logins.is_empty());
    }

    #[test]
    fn gate_table_decisions() {
        assert_eq!(gate_login(None, "a:1"), None);
        assert_eq!(gate_login(Some("a:1"), "a:1"), None);
        assert_eq!(gate_login(Some("b:1"), "a:1"), Some("b:1"));
        assert_eq!(gate_renewal(true, None, "a:1"), GateRenewal::Renewed);
        assert_eq!(gate_renewal(false, None, "a:1"), GateRenewal::Reassert);
        assert_eq!(
            gate_renewal(false, Some("a:1"), "a:1"),
            GateRenewal::Renewed
        );
        assert_eq!(
            gate_renewal(false, Some("b:1"), "a:1"),
            GateRenewal::Superseded
        );
    }

    #[test]
    fn push_messages_are_routed_as_the_go_broadcaster_means_them() {
        let body = PushBody {
            data: "x".into(),
            r#mod: 3,
            seq: 2,
            ..Default::default()
        };
        let mut msg = PushMessage {
            bodies: vec![body],
            ..Default::default()
        };
        assert_eq!(PushRoute::of(&msg), PushRoute::Broadcast, "no uids");
        msg.uids = vec![1, 2];
        assert_eq!(PushRoute::of(&msg), PushRoute::Uids);
        msg.broadcast = true;
        assert_eq!(PushRoute::of(&msg), PushRoute::Broadcast);
        assert_eq!(PushRoute::of(&kick_message(9)), PushRoute::Kick);
        assert_eq!(kick_message(9).uids, vec![9]);
    }
}
