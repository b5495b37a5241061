//! Why a session ended, and what the client is told.

use janus_proto::message::sc_server_logout::Code as LogoutCode;

/// Why a session closed. Every error in the core maps to one of these; adapters turn it into a
/// metric label ([`as_str`](Self::as_str)), a WebSocket close reason, and, where
/// [`logout_code`](Self::logout_code) says so, a last `SCServerLogout` packet before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    // --- handshake (spec §2.6) ---
    /// No valid handshake within the handshake deadline (or no complete first frame within the
    /// first-frame deadline).
    HandshakeTimeout,
    /// The handshake pool was full and this connection had made the least progress: its slot
    /// went to a newcomer (slowloris defence).
    HandshakeEvicted,
    /// A length prefix of 0, negative, or over the limit.
    MalformedFrame,
    /// A frame that is not a `Packet`, or a handshake packet that is not a `CSHandshake`.
    MalformedPacket,
    /// The first packet's `seq` is not 1.
    UnexpectedHandshakeSeq,
    /// `CSHandshake.token` is empty.
    EmptyToken,
    /// `CSHandshake.timestamp` is outside the allowed skew.
    TimestampSkew,
    /// The token does not decode, decrypt or parse.
    InvalidToken,
    /// The token's `timeout` has passed.
    TokenExpired,
    /// The token already opened a session.
    TokenReplayed,
    /// The client signature does not verify.
    BadSignature,
    /// The client public key is not 32 bytes.
    BadKeyLength,
    /// The client public key is a low-order point.
    LowOrderPoint,
    // --- established ---
    /// Nothing received within the idle deadline.
    IdleTimeout,
    /// A packet that does not authenticate under the session key.
    DecryptFailed,
    /// A packet whose `index` is not the expected next one (replay or reordering).
    IndexMismatch,
    /// Compressed `data` that does not inflate, or inflates too far.
    DecompressFailed,
    /// A player-module packet naming another player's `obj` (spec §4.2).
    ObjectNotOwned,
    // --- WebSocket (RFC 6455) ---
    /// A WebSocket upgrade refused (bad request, path, version, key or origin); the client got
    /// an HTTP answer saying which.
    WsUpgradeRejected,
    /// A WebSocket protocol violation: reserved bits, an unknown opcode, an unmasked frame, a bad
    /// control frame or close frame, a continuation without a start or a new message inside a
    /// fragmented one (close code 1002).
    WsProtocolError,
    /// A text message: the protocol is binary (close code 1003).
    WsTextMessage,
    /// Text or a close reason that is not UTF-8 (close code 1007).
    WsInvalidUtf8,
    /// A message larger than the largest frame (close code 1009).
    WsMessageTooBig,
    /// More packets than the session's rate limit allows.
    RateLimited,
    /// The client does not read fast enough: its outbound bytes exceeded the budget.
    SlowConsumer,
    /// A backend does not take the session's requests as fast as the client sends them: the
    /// tunnel's queue to it filled up (upstream blocks the connection's read loop instead).
    BackendBackpressure,
    // --- decided by the gateway ---
    /// The same uid logged in elsewhere.
    ConflictingLogin,
    /// An operator kicked the session.
    AdminKickOut,
    /// The account is banned.
    Banned,
    /// The gateway is shutting down.
    Shutdown,
    /// The gateway is draining (a rolling restart or an operator's drain): the client is told
    /// `Waiting` and should reconnect, to another gateway.
    Drained,
    /// The gateway could not serve the session (route table, registry or backend unavailable).
    ServerError,
    /// The peer closed the connection or the transport failed.
    PeerClosed,
    // --- decided by a filter (`crate::filter`) ---
    /// A filter refused the session at the handshake. The client is told the refusal's logout
    /// code (`Unauthorized` when none is chosen); a ban closes with [`Banned`](Self::Banned).
    FilterRefused,
    /// A filter closed an established session (a packet, reply, push or recheck verdict).
    FilterClosed,
    /// A filter failed (returned an error or panicked) and its failure policy closes the
    /// session.
    FilterFailed,
    // --- session resume (janus_core::resume) ---
    /// The connection of a resumable session dropped and its client did not come back within
    /// the resume window: the session ends as on a normal disconnect.
    ResumeExpired,
    /// A parked session received more than its replay buffer holds: packets would be lost, so it
    /// ends instead.
    ResumeOverflow,
    /// A resume handshake without a token was refused (the `SCHandshake` says why).
    ResumeRefused,
}

impl CloseReason {
    /// Every reason, in declaration order: for metrics that export a counter per reason.
    pub const ALL: [CloseReason; 39] = {
        use CloseReason::*;
        [
            HandshakeTimeout,
            HandshakeEvicted,
            MalformedFrame,
            MalformedPacket,
            UnexpectedHandshakeSeq,
            EmptyToken,
            TimestampSkew,
            InvalidToken,
            TokenExpired,
            TokenReplayed,
            BadSignature,
            BadKeyLength,
            LowOrderPoint,
            IdleTimeout,
            DecryptFailed,
            IndexMismatch,
            DecompressFailed,
            ObjectNotOwned,
            WsUpgradeRejected,
            WsProtocolError,
            WsTextMessage,
            WsInvalidUtf8,
            WsMessageTooBig,
            RateLimited,
            SlowConsumer,
            BackendBackpressure,
            ConflictingLogin,
            AdminKickOut,
            Banned,
            Shutdown,
            Drained,
            ServerError,
            PeerClosed,
            FilterRefused,
            FilterClosed,
            FilterFailed,
            ResumeExpired,
            ResumeOverflow,
            ResumeRefused,
        ]
    };

    /// The position of this reason in [`ALL`](Self::ALL), for per-reason counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The WebSocket close code (RFC 6455 §7.4.1) a message transport sends when the session ends
    /// for this reason: 1001 going away for a shutdown, 1002 protocol error for bytes that are not
    /// frames or packets (or WebSocket frames that break the protocol), 1003 for text, 1007 for
    /// invalid UTF-8, 1009 for a message too big, 1011 for the gateway's own failures, 1000 for the peer's close and for
    /// kicks (a normal end, the logout packet says why), and 1008 policy violation for the rest
    /// (authentication, limits, deadlines); 1013 try again later for an evicted handshake.
    pub const fn ws_close_code(self) -> u16 {
        use CloseReason::*;
        match self {
            Shutdown | Drained => 1001,
            MalformedFrame | MalformedPacket | WsProtocolError => 1002,
            WsTextMessage => 1003,
            WsInvalidUtf8 => 1007,
            WsMessageTooBig => 1009,
            ServerError | BackendBackpressure | FilterFailed => 1011,
            HandshakeEvicted => 1013,
            PeerClosed | ConflictingLogin | AdminKickOut | Banned | ResumeExpired
            | ResumeOverflow => 1000,
            _ => 1008,
        }
    }

    /// A stable snake_case name, for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        use CloseReason::*;
        match self {
            HandshakeTimeout => "handshake_timeout",
            HandshakeEvicted => "handshake_evicted",
            MalformedFrame => "malformed_frame",
            MalformedPacket => "malformed_packet",
            UnexpectedHandshakeSeq => "unexpected_handshake_seq",
            EmptyToken => "empty_token",
            TimestampSkew => "timestamp_skew",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            TokenReplayed => "token_replayed",
            BadSignature => "bad_signature",
            BadKeyLength => "bad_key_length",
            LowOrderPoint => "low_order_point",
            IdleTimeout => "idle_timeout",
            DecryptFailed => "decrypt_failed",
            IndexMismatch => "index_mismatch",
            DecompressFailed => "decompress_failed",
            ObjectNotOwned => "object_not_owned",
            WsUpgradeRejected => "ws_upgrade_rejected",
            WsProtocolError => "ws_protocol_error",
            WsTextMessage => "ws_text_message",
            WsInvalidUtf8 => "ws_invalid_utf8",
            WsMessageTooBig => "ws_message_too_big",
            RateLimited => "rate_limited",
            SlowConsumer => "slow_consumer",
            BackendBackpressure => "backend_backpressure",
            ConflictingLogin => "conflicting_login",
            AdminKickOut => "admin_kick_out",
            Banned => "banned",
            Shutdown => "shutdown",
            Drained => "drained",
            ServerError => "server_error",
            PeerClosed => "peer_closed",
            FilterRefused => "filter_refused",
            FilterClosed => "filter_closed",
            FilterFailed => "filter_failed",
            ResumeExpired => "resume_expired",
            ResumeOverflow => "resume_overflow",
            ResumeRefused => "resume_refused",
        }
    }

    /// The reason named `name` ([`as_str`](Self::as_str)), e.g. as a relay link carries it.
    pub fn from_name(name: &str) -> Option<CloseReason> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    /// The `SCServerLogout` code sent to the client before closing, if any.
    ///
    /// Upstream closes silently on every failure (spec §2.6), so a client cannot tell a bad token
    /// from a network error. We tell it when it can act on the answer: an authentication failure
    /// (`Unauthorized`: fetch a new token), a kick, a shutdown. Malformed input, timeouts and
    /// protocol violations close silently: the peer is broken or hostile, and an answer would only
    /// help a prober.
    pub const fn logout_code(self) -> Option<LogoutCode> {
        use CloseReason::*;
        match self {
            EmptyToken | TimestampSkew | InvalidToken | TokenExpired | TokenReplayed
            | BadSignature => Some(LogoutCode::Unauthorized),
            ConflictingLogin => Some(LogoutCode::ConflictingLogin),
            AdminKickOut => Some(LogoutCode::AdminKickOut),
            Banned => Some(LogoutCode::Banned),
            Shutdown | ServerError | BackendBackpressure | FilterFailed => Some(LogoutCode::Server),
            FilterRefused => Some(LogoutCode::Unauthorized),
            Drained => Some(LogoutCode::Waiting),
            HandshakeTimeout
            | HandshakeEvicted
            | MalformedFrame
            | MalformedPacket
            | UnexpectedHandshakeSeq
            | BadKeyLength
            | LowOrderPoint
            | IdleTimeout
            | DecryptFailed
            | IndexMismatch
            | DecompressFailed
            | ObjectNotOwned
            | WsUpgradeRejected
            | WsProtocolError
            | WsTextMessage
            | WsInvalidUtf8
            | WsMessageTooBig
            | RateLimited
            | SlowConsumer
            | PeerClosed
            | FilterClosed
            | ResumeExpired
            | ResumeOverflow
            | ResumeRefused => None,
        }
    }

    /// Whether the peer, rather than the gateway, is at fault (for logging levels and alerts).
    pub const fn is_peer_fault(self) -> bool {
        !matches!(
            self,
            Self::ConflictingLogin
                | Self::AdminKickOut
                | Self::Banned
                | Self::Shutdown
                | Self::Drained
                | Self::ServerError
                | Self::BackendBackpressure
                | Self::PeerClosed
                | Self::FilterFailed
                | Self::ResumeExpired
                | Self::ResumeOverflow
        )
    }
}

impl core::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_with_distinct_names() {
        let names: std::collections::BTreeSet<&str> =
            CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), CloseReason::ALL.len());
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        // No wildcard: a new reason does not compile here until it is listed in ALL too.
        let listed = |r: CloseReason| {
            use CloseReason::*;
            match r {
                HandshakeTimeout
                | HandshakeEvicted
                | MalformedFrame
                | MalformedPacket
                | UnexpectedHandshakeSeq
                | EmptyToken
                | TimestampSkew
                | InvalidToken
                | TokenExpired
                | TokenReplayed
                | BadSignature
                | BadKeyLength
                | LowOrderPoint
                | IdleTimeout
                | DecryptFailed
                | IndexMismatch
                | DecompressFailed
                | ObjectNotOwned
                | WsUpgradeRejected
                | WsProtocolError
                | WsTextMessage
                | WsInvalidUtf8
                | WsMessageTooBig
                | RateLimited
                | SlowConsumer
                | BackendBackpressure
                | ConflictingLogin
                | AdminKickOut
                | Banned
                | Shutdown
                | Drained
                | ServerError
                | PeerClosed
                | FilterRefused
                | FilterClosed
                | FilterFailed
                | ResumeExpired
                | ResumeOverflow
                | ResumeRefused => CloseReason::ALL.contains(&r),
            }
        };
        assert!(CloseReason::ALL.iter().all(|r| listed(*r)));
        assert_eq!(CloseReason::Shutdown.ws_close_code(), 1001);
        assert_eq!(CloseReason::Drained.ws_close_code(), 1001);
        assert_eq!(
            CloseReason::Drained.logout_code(),
            Some(LogoutCode::Waiting)
        );
        assert_eq!(CloseReason::MalformedFrame.ws_close_code(), 1002);
        assert_eq!(CloseReason::IndexMismatch.ws_close_code(), 1008);
        for r in CloseReason::ALL {
            assert_eq!(CloseReason::from_name(r.as_str()), Some(r));
        }
        assert_eq!(CloseReason::from_name("nope"), None);
    }
}
