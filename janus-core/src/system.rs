//! System-module messages (module 1, spec §3.1): built and recognised here, and nowhere else.
//!
//! | seq | client → server | server → client |
//! |---|---|---|
//! | 1 `Handshake` | `CSHandshake` | `SCHandshake` |
//! | 2 `Heartbeat` | `CSHeartbeat` (forwarded to the player backend, which answers) | `SCHeartbeat` |
//! | 3 `ServerUnexpectedErr` | — | `SCServerUnexpectedErr` answering one request (same index) |
//! | 4 `ServerLogout` | — | `SCServerLogout`, a push (index 0) before the server closes |
//!
//! The numbers come from janus-proto's `ModuleId` and `SystemSeq` enums; every other crate asks
//! this module instead of repeating them.

use janus_proto::{
    broadcaster::service::push::v1::PushBody,
    message::{
        CsHeartbeat, ScHeartbeat, ScServerLogout, ScServerUnexpectedErr,
        sc_server_logout::Code as LogoutCode,
    },
    module::ModuleId,
    packet::Packet,
    sequence::SystemSeq,
};
use prost::Message as _;

/// `ModuleID.System`.
pub const SYSTEM_MODULE: i32 = ModuleId::System as i32;
/// `ModuleID.Room`: routed to the room tunnel by default (spec §4.2).
pub const ROOM_MODULE: i32 = ModuleId::Room as i32;
/// `SystemSeq.Handshake`: the only `seq` a first packet may carry.
pub const HANDSHAKE_SEQ: i32 = SystemSeq::Handshake as i32;
/// `SystemSeq.Heartbeat`.
pub const HEARTBEAT_SEQ: i32 = SystemSeq::Heartbeat as i32;
/// `SystemSeq.ServerUnexpectedErr`.
pub const UNEXPECTED_ERR_SEQ: i32 = SystemSeq::ServerUnexpectedErr as i32;
/// `SystemSeq.ServerLogout`.
pub const LOGOUT_SEQ: i32 = SystemSeq::ServerLogout as i32;

/// A system message a client receives, recognised from a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemMessage {
    /// `SCHeartbeat`: the backend's answer to a heartbeat.
    Heartbeat(ScHeartbeat),
    /// `SCServerUnexpectedErr`: the request `(module, seq)` at the packet's index failed.
    UnexpectedErr(ScServerUnexpectedErr),
    /// `SCServerLogout`: the server is about to close the session, and says why.
    Logout(LogoutCode),
}

impl SystemMessage {
    /// The system message `packet` carries, if it is one (module 1, seq 2..=4, a body that
    /// decodes). `data` must already be inflated.
    pub fn recognise(packet: &Packet) -> Option<Self> {
        if packet.r#mod != SYSTEM_MODULE {
            return None;
        }
        let data = packet.data.clone();
        match packet.seq {
            HEARTBEAT_SEQ => ScHeartbeat::decode(data).ok().map(Self::Heartbeat),
            UNEXPECTED_ERR_SEQ => ScServerUnexpectedErr::decode(data)
                .ok()
                .map(Self::UnexpectedErr),
            LOGOUT_SEQ => ScServerLogout::decode(data)
                .ok()
                .map(|l| Self::Logout(l.code())),
            _ => None,
        }
    }
}

/// `Packet{mod=1, seq=4, data=SCServerLogout{code}}`, index 0.
pub fn logout(code: LogoutCode) -> Packet {
    Packet {
        data: ScServerLogout { code: code as i32 }.encode_to_vec().into(),
        r#mod: SYSTEM_MODULE,
        seq: LOGOUT_SEQ,
        ..Default::default()
    }
}

/// The same logout as a push body, as a gateway publishes it to another gateway (cross-gateway
/// kick, spec §5.2): a Go gateway passes it to its client, a Janus gateway closes the session.
pub fn logout_push(code: LogoutCode) -> PushBody {
    let packet = logout(code);
    PushBody {
        data: packet.data,
        r#mod: packet.r#mod,
        seq: packet.seq,
        ..Default::default()
    }
}

/// The logout code a push body carries, if it is an `SCServerLogout`.
pub fn logout_code(body: &PushBody) -> Option<LogoutCode> {
    if body.r#mod != SYSTEM_MODULE || body.seq != LOGOUT_SEQ {
        return None;
    }
    ScServerLogout::decode(body.data.clone())
        .ok()
        .map(|l| l.code())
}

/// `SCServerUnexpectedErr{module, seq, msg}` answering the request at `index`, as roma sends it.
pub fn unexpected_err(module: i32, seq: i32, index: i32, msg: &str) -> Packet {
    let body = ScServerUnexpectedErr {
        r#mod: module,
        seq,
        msg: msg.to_owned(),
    };
    Packet {
        data: body.encode_to_vec().into(),
        r#mod: SYSTEM_MODULE,
        seq: UNEXPECTED_ERR_SEQ,
        index,
        ..Default::default()
    }
}

/// The body of a client heartbeat (`CSHeartbeat{client_time}`, unix seconds), sent as module 1,
/// seq 2.
pub fn heartbeat_body(client_time: i64) -> bytes::Bytes {
    CsHeartbeat { client_time }.encode_to_vec().into()
}

/// The backend's heartbeat answer (`SCHeartbeat{server_time, code}`), as the demo backend and
/// roma build it.
pub fn heartbeat_reply(server_time: i64, code: i32) -> bytes::Bytes {
    ScHeartbeat { server_time, code }.encode_to_vec().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_specs() {
        assert_eq!(
            (SYSTEM_MODULE, ROOM_MODULE, HANDSHAKE_SEQ, HEARTBEAT_SEQ),
            (1, 6, 1, 2)
        );
        assert_eq!((UNEXPECTED_ERR_SEQ, LOGOUT_SEQ), (3, 4));
    }

    #[test]
    fn built_messages_are_recognised() {
        assert_eq!(
            SystemMessage::recognise(&logout(LogoutCode::Banned)),
            Some(SystemMessage::Logout(LogoutCode::Banned))
        );
        let err = unexpected_err(3, 1, 7, "backend unavailable");
        assert_eq!(err.index, 7);
        assert!(matches!(
            SystemMessage::recognise(&err),
            Some(SystemMessage::UnexpectedErr(e)) if e.r#mod == 3 && e.seq == 1 && e.msg == "backend unavailable"
        ));
        let beat = Packet {
            data: heartbeat_reply(5, 1),
            r#mod: SYSTEM_MODULE,
            seq: HEARTBEAT_SEQ,
            index: 3,
            ..Default::default()
        };
        assert!(matches!(
            SystemMessage::recognise(&beat),
            Some(SystemMessage::Heartbeat(h)) if h.server_time == 5
        ));
        let game = Packet {
            r#mod: 3,
            seq: 4,
            ..Default::default()
        };
        assert_eq!(SystemMessage::recognise(&game), None);
        assert_eq!(
            logout_code(&logout_push(LogoutCode::ConflictingLogin)),
            Some(LogoutCode::ConflictingLogin)
        );
        assert_eq!(logout_code(&PushBody::default()), None);
    }
}
