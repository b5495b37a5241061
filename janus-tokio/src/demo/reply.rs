//! What the demo backend answers to one tunnel request, and the pushes it sends.
//!
//! Pure decisions, no I/O: the stream task (`stream.rs`) hands each request here together with the
//! stream's oid and the wall-clock second, and sends whatever comes back. Keeping the rules here
//! lets tests and readers see the whole request → reply table in one place:
//!
//! | request                                | reply                                                   |
//! |----------------------------------------|---------------------------------------------------------|
//! | mod 1 (System), seq 2 (Heartbeat)      | `SCHeartbeat{server_time: now, code: Succeeded}`        |
//! | data `big:N`, `N` ≤ [`MAX_BIG_REPLY`]  | `N` bytes of [`big_payload`]                            |
//! | data `big:…` otherwise                 | mod 1 seq 3 `SCServerUnexpectedErr{mod, seq, msg}`      |
//! | data [`PUSH_ME`]                       | the echo, then one push (index 0, data [`PUSHED`])      |
//! | data [`FAIL_STREAM`]                   | no reply; the stream ends with `Status::internal`       |
//! | data `delay:MS`, `MS` ≤ [`MAX_DELAY_MS`] | the echo, `MS` milliseconds later (the stream waits)    |
//! | anything else                          | the data byte for byte                                  |
//!
//! Every reply echoes `mod`, `seq`, `obj`, `index`, `data_version` and, on room streams, `conn_id`
//! and `frag_*`, like roma's generated handlers echo the request's `index` (wire-protocol §3.3).

use bytes::Bytes;
use janus_core::{
    client::{HeartbeatCode, LogoutCode},
    system::{self, HEARTBEAT_SEQ, SYSTEM_MODULE},
};
use janus_proto::module::ModuleId;
use janus_proto::sequence::UserSeq;

/// Request data that makes the backend send one push right after the echo.
pub const PUSH_ME: &[u8] = b"push-me";
/// Data of the push triggered by [`PUSH_ME`].
pub const PUSHED: &[u8] = b"pushed";
/// Request data that makes the backend end the stream with `Status::internal`.
pub const FAIL_STREAM: &[u8] = b"fail-stream";
/// Prefix of a `delay:MS` request (ASCII decimal milliseconds): echo it after that long, as a
/// slow actor would (the stream answers in order, so later requests wait too).
pub const DELAY_PREFIX: &[u8] = b"delay:";
/// Longest `delay:MS`, milliseconds.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Prefix of a `big:N` request (ASCII decimal `N`): reply with `N` bytes of [`big_payload`].
pub const BIG_PREFIX: &[u8] = b"big:";
/// Largest `N` a `big:N` request may ask for, in bytes (1 MiB): big enough to cross the gateway's
/// strong-compression threshold (1 024 000 bytes, §3.4), small enough that a stray request cannot
/// make the demo backend allocate without bound.
pub const MAX_BIG_REPLY: usize = 1 << 20;

/// The repeating pattern of [`big_payload`]: short and ASCII, so zlib shrinks it a lot.
const BIG_PATTERN: &[u8] = b"janus demo backend 0123456789 ";

/// One tunnel message, player or room: the core's type, with its conversions to and from both
/// proto shapes. `module` is the proto field `mod`.
pub use janus_core::session::TunnelMessage;

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Send this reply.
    Answer(TunnelMessage),
    /// Send this reply, then this push.
    AnswerThenPush(TunnelMessage, TunnelMessage),
    /// Send nothing and end the stream with an error status.
    FailStream,
    /// Send this reply after this long.
    AnswerAfter(std::time::Duration, TunnelMessage),
}

/// Decides the reply to `request` on a stream whose oid is `oid`, at wall-clock `now_unix` seconds.
pub(crate) fn respond(request: &TunnelMessage, oid: i64, now_unix: i64) -> Reply {
    if request.module == SYSTEM_MODULE && request.seq == HEARTBEAT_SEQ {
        // Roma answers ErrTime to a later heartbeat whose client_time is off by more than 30 s;
        // the demo always answers Succeeded so clients with skewed or absent clocks still pass.
        let heartbeat = system::heartbeat_reply(now_unix, HeartbeatCode::Succeeded as i32);
        return Reply::Answer(echo(request, heartbeat));
    }
    let data = &request.data;
    if data.as_ref() == FAIL_STREAM {
        return Reply::FailStream;
    }
    if data.as_ref() == PUSH_ME {
        return Reply::AnswerThenPush(
            echo(request, data.clone()),
            push(oid, Bytes::from_static(PUSHED)),
        );
    }
    if let Some(ms) = data.strip_prefix(DELAY_PREFIX) {
        let ms = std::str::from_utf8(ms)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms <= MAX_DELAY_MS);
        return match ms {
            Some(ms) => Reply::AnswerAfter(
                std::time::Duration::from_millis(ms),
                echo(request, data.clone()),
            ),
            None => Reply::Answer(unexpected_error(
                request,
                "delay:MS wants MS as ASCII decimal, at most 60000",
            )),
        };
    }
    if let Some(len) = data.strip_prefix(BIG_PREFIX) {
        return Reply::Answer(match big_len(len) {
            Some(len) => echo(request, big_payload(len)),
            None => unexpected_error(request, "big:N wants N as ASCII decimal, at most 1048576"),
        });
    }
    Reply::Answer(echo(request, data.clone()))
}

/// The periodic push number `n` (1, 2, …) of a stream: mod 3 (User), seq 2 (PushSyncUser),
/// obj = the stream's oid, index 0, data `tick <n>`.
pub(crate) fn tick_push(oid: i64, n: u64) -> TunnelMessage {
    push(oid, Bytes::from(format!("tick {n}")))
}

/// The push roma sends when a player's actor stops (§3.6): mod 1 (System), seq 4 (ServerLogout),
/// `SCServerLogout{code: Waiting}`, index 0. The demo sends it when it shuts down gracefully.
pub(crate) fn logout_push(oid: i64) -> TunnelMessage {
    let logout = system::logout(LogoutCode::Waiting);
    TunnelMessage {
        data: logout.data,
        obj: oid,
        module: logout.r#mod,
        seq: logout.seq,
        ..TunnelMessage::default()
    }
}

/// `len` bytes of a repeating ASCII pattern: what a `big:<len>` request gets back.
#[must_use]
pub fn big_payload(len: usize) -> Bytes {
    BIG_PATTERN
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect::<Vec<u8>>()
        .into()
}

fn big_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (len <= MAX_BIG_REPLY).then_some(len)
}

/// The request's header fields with new data.
fn echo(request: &TunnelMessage, data: Bytes) -> TunnelMessage {
    TunnelMessage {
        data,
        ..request.clone()
    }
}

fn push(oid: i64, data: Bytes) -> TunnelMessage {
    TunnelMessage {
        data,
        obj: oid,
        module: ModuleId::User as i32,
        seq: UserSeq::PushSyncUser as i32,
        ..TunnelMessage::default()
    }
}

/// Roma's answer to a handler that failed without a response: mod 1 seq 3 with the request's
/// index and obj, and `SCServerUnexpectedErr{mod, seq, msg}` naming the failed request.
fn unexpected_error(request: &TunnelMessage, msg: &str) -> TunnelMessage {
    let error = system::unexpected_err(request.module, request.seq, request.index, msg);
    TunnelMessage {
        data: error.data,
        module: error.r#mod,
        seq: error.seq,
        ..request.clone()
    }
}

#[cfg(test)]
mod tests {
    use janus_core::system::UNEXPECTED_ERR_SEQ;
    use janus_proto::message::{ScHeartbeat, ScServerUnexpectedErr};
    use prost::Message as _;

    use super::*;

    fn request(module: i32, seq: i32, data: &'static [u8]) -> TunnelMessage {
        TunnelMessage {
            data: Bytes::from_static(data),
            data_version: 9,
            obj: 42,
            module,
            seq,
            index: 7,
            conn_id: 3,
            frag_id: 4,
            frag_count: 5,
            frag_index: 1,
        }
    }

    #[test]
    fn echoes_everything_byte_for_byte() {
        let req = request(3, 3, b"\x00\xffname");
        assert_eq!(respond(&req, 42, 0), Reply::Answer(req.clone()));
    }

    #[test]
    fn heartbeat_gets_server_time() {
        let req = request(SYSTEM_MODULE, HEARTBEAT_SEQ, b"");
        let Reply::Answer(reply) = respond(&req, 42, 1_700_000_000) else {
            panic!("not an answer")
        };
        let hb = ScHeartbeat::decode(reply.data.clone()).unwrap();
        assert_eq!(hb.server_time, 1_700_000_000);
        assert_eq!(hb.code(), HeartbeatCode::Succeeded);
        assert_eq!(
            (reply.module, reply.seq, reply.index, reply.obj),
            (SYSTEM_MODULE, HEARTBEAT_SEQ, 7, 42)
        );
    }

    #[test]
    fn big_replies_with_the_pattern_and_rejects_too_big() {
        let Reply::Answer(reply) = respond(&request(3, 3, b"big:100"), 42, 0) else {
            panic!("not an answer")
        };
        assert_eq!(reply.data, big_payload(100));
        assert_eq!(reply.data.len(), 100);
        assert_eq!(reply.index, 7);
        for bad in [
            &b"big:"[..],
            b"big:x",
            b"big:-1",
            b"big:1048577",
            b"big:99999999999999999999999",
        ] {
            let req = TunnelMessage {
                data: Bytes::copy_from_slice(bad),
                ..request(3, 3, b"")
            };
            let Reply::Answer(reply) = respond(&req, 42, 0) else {
                panic!("not an answer")
            };
            assert_eq!(
                (reply.module, reply.seq, reply.index),
                (SYSTEM_MODULE, UNEXPECTED_ERR_SEQ, 7),
                "{bad:?}"
            );
            let err = ScServerUnexpectedErr::decode(reply.data).unwrap();
            assert_eq!((err.r#mod, err.seq), (3, 3));
        }
        let Reply::Answer(reply) = respond(&request(3, 3, b"big:1048576"), 42, 0) else {
            panic!("not an answer")
        };
        assert_eq!(reply.data.len(), MAX_BIG_REPLY);
    }

    #[test]
    fn push_me_and_fail_stream() {
        let req = request(3, 3, b"push-me");
        let Reply::AnswerThenPush(reply, push) = respond(&req, 42, 0) else {
            panic!("no push")
        };
        assert_eq!(reply, req);
        assert_eq!((push.module, push.seq, push.obj, push.index), (3, 2, 42, 0));
        assert_eq!(push.data.as_ref(), PUSHED);
        assert_eq!(
            respond(&request(3, 3, b"fail-stream"), 42, 0),
            Reply::FailStream
        );
    }

    #[test]
    fn delay_answers_later_within_its_bound() {
        let req = request(3, 3, b"delay:250");
        assert_eq!(
            respond(&req, 42, 0),
            Reply::AnswerAfter(std::time::Duration::from_millis(250), req.clone())
        );
        let Reply::Answer(error) = respond(&request(3, 3, b"delay:99999"), 42, 0) else {
            panic!("an error reply")
        };
        assert_eq!((error.module, error.seq), (1, 3));
    }
}
