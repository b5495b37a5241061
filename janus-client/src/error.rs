//! What the application hears: one outcome per request, events, and why a connection ended.

use core::time::Duration;

use janus_core::{
    client::{ClientError, HeartbeatCode, LogoutCode},
    handshake::ClientHandshakeError,
};
use janus_proto::packet::Packet;

/// What a token source may fail with (the account service is another process, so anything).
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// The outcome of a request that did not get its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server could not serve it (`SCServerUnexpectedErr`): the request's `module` and `seq`
    /// as the server names them, and its message.
    #[error("request {module}/{seq} failed on the server: {message}")]
    Failed {
        module: i32,
        seq: i32,
        message: String,
    },
    /// No reply within [`Config::request_timeout`](crate::Config::request_timeout), or given up on
    /// to stay within [`Config::max_pending`](crate::Config::max_pending).
    #[error("no reply in time")]
    Timeout,
    /// The connection ended before the reply came. Whether the server acted on the request is
    /// unknown (session resume will close this gap).
    #[error("the connection closed before the reply")]
    ConnectionClosed,
    /// Sent while no connection was established (connecting or waiting to reconnect): nothing
    /// was sent.
    #[error("not connected")]
    NotConnected,
    /// The client is closed for good.
    #[error("the client is closed")]
    Closed,
}

/// Why a connection ended, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Disconnect {
    /// The socket could not be opened, failed, or was closed by the other side.
    #[error("transport: {0}")]
    Transport(String),
    /// The protocol ended the session: a handshake failure or timeout, bytes that do not
    /// decode, or a logout by the server (see [`logout`](Self::logout)).
    #[error("{0}")]
    Session(ClientError),
    /// The token source failed.
    #[error("token source: {0}")]
    Token(String),
    /// The application closed the client.
    #[error("closed by the application")]
    Closed,
}

/// Why [`connect`](crate::tokio::Client::connect) failed: the first connection is made once,
/// without retrying, so a wrong address or key is reported at once.
pub type ConnectError = Disconnect;

impl Disconnect {
    /// The logout code, when the server logged the session out or refused the handshake saying
    /// why.
    pub fn logout(&self) -> Option<LogoutCode> {
        match self {
            Self::Session(ClientError::LoggedOut(code))
            | Self::Session(ClientError::Handshake(ClientHandshakeError::Refused(code))) => {
                Some(*code)
            }
            _ => None,
        }
    }

    /// Whether reconnecting can help. Not after the application closed the client, nor after a
    /// newer login of the same player ([`LogoutCode::ConflictingLogin`]), an administrator's
    /// kick or a ban: those are decisions a reconnect must not undo. Everything else (a lost
    /// socket, a gateway shutting down, a refused or expired token, a handshake timeout) may
    /// go better with a new connection and a fresh token.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Closed => false,
            _ => !matches!(
                self.logout(),
                Some(LogoutCode::ConflictingLogin | LogoutCode::AdminKickOut | LogoutCode::Banned)
            ),
        }
    }
}

/// What the application is told, in order, on the client's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection was established (the first one, or after a reconnect): requests can be sent.
    Connected {
        /// The gateway's clock, unix seconds.
        server_time: i64,
    },
    /// A reconnect resumed the session (see [`Config::resume`](crate::Config::resume)): requests
    /// in flight are still waiting, and what the gateway sent meanwhile follows.
    Resumed {
        /// The gateway's clock, unix seconds.
        server_time: i64,
    },
    /// A server push (index 0); `data` already inflated.
    Push(Packet),
    /// The answer to one of the client's own heartbeats: the server's clock (unix seconds) and
    /// whether it accepted ours.
    Heartbeat {
        server_time: i64,
        code: HeartbeatCode,
    },
    /// The connection ended (or a reconnect attempt failed). `retry_in` is when the next attempt
    /// starts; `None` means the client is closed for good and no more events follow.
    Disconnected {
        reason: Disconnect,
        retry_in: Option<Duration>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decisions_are_final() {
        let logout = |code| Disconnect::Session(ClientError::LoggedOut(code));
        assert!(!Disconnect::Closed.is_retryable());
        assert!(!logout(LogoutCode::ConflictingLogin).is_retryable());
        assert!(!logout(LogoutCode::AdminKickOut).is_retryable());
        assert!(!logout(LogoutCode::Banned).is_retryable());
        assert!(logout(LogoutCode::Server).is_retryable());
        assert!(logout(LogoutCode::Waiting).is_retryable());
        let refused =
            |code| Disconnect::Session(ClientError::Handshake(ClientHandshakeError::Refused(code)));
        assert!(
            refused(LogoutCode::Unauthorized).is_retryable(),
            "a fresh token may do"
        );
        assert!(!refused(LogoutCode::Banned).is_retryable());
        assert_eq!(
            refused(LogoutCode::Banned).logout(),
            Some(LogoutCode::Banned)
        );
        assert!(Disconnect::Transport("reset".into()).is_retryable());
        assert!(Disconnect::Session(ClientError::HandshakeTimeout).is_retryable());
        assert!(Disconnect::Token("account service down".into()).is_retryable());
    }
}
