//! What a connection task is told by the rest of the gateway: the only type connections,
//! tunnels, the registry, the push paths and the admin API share, so none of them depends on
//! another.

use std::sync::Arc;

use janus_core::{
    CloseReason,
    config::ServerConfig,
    session::{PushPacket, TunnelId, TunnelMessage},
};
use serde::Serialize;
use tokio::sync::oneshot;

/// A command for one connection.
#[derive(Debug)]
pub enum ConnCmd {
    /// A message from a backend on one of this connection's tunnels.
    Tunnel {
        id: TunnelId,
        message: TunnelMessage,
    },
    /// That tunnel's stream ended; `failed` when it ended with an error (for metrics).
    TunnelClosed { id: TunnelId, failed: bool },
    /// A push for this session, encoded once for every session it goes to.
    Push(PushPacket),
    /// Close now (a kick, a newer login).
    Close(CloseReason),
    /// The session's turn in the drain: stop taking requests, deliver in-flight replies, log out
    /// with `SCServerLogout{Waiting}` (`CloseReason::Drained`).
    Drain,
    /// Ask the filters of this (newer) configuration whether the session may go on (after a
    /// reload or a ban-list refresh); they close it if not.
    Recheck(Arc<ServerConfig>),
    /// Describe the session (the admin API's lookup).
    Describe(oneshot::Sender<SessionInfo>),
    /// A new connection whose client resumes this session: take it over, or hand it back.
    Resume(Box<super::connection::Takeover>),
}

/// One session as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub uid: i64,
    pub sid: i64,
    pub color: String,
    /// The client's address (after a PROXY header, if any).
    pub peer: String,
    /// `tcp` or `ws`.
    pub listener: &'static str,
    pub worker_id: u64,
    /// `established` or `draining`.
    pub state: &'static str,
    /// Unix seconds.
    pub connected_at: u64,
    pub connected_for_secs: u64,
    /// Seconds since the client last sent a frame.
    pub idle_secs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub tunnels: Vec<TunnelInfo>,
}

/// One open tunnel of a session.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelInfo {
    pub id: u64,
    pub kind: String,
    pub oid: i64,
    /// The backend it was placed on; `None` while it is being chosen.
    pub backend: Option<String>,
}

/// A command on its way to a connection task: `session` names the relay session when the task
/// is a hub's link task, which carries many (0 for a direct connection).
#[derive(Debug)]
pub struct Addressed {
    pub session: u64,
    pub cmd: ConnCmd,
}

/// How the registry, tunnels and pushes reach one session: its task's mailbox, and the session's
/// id within that task.
#[derive(Debug, Clone)]
pub struct ConnTx {
    tx: super::mailbox::Sender<Addressed>,
    session: u64,
}

impl ConnTx {
    /// Session `session` of the task behind `tx`.
    pub fn new(tx: super::mailbox::Sender<Addressed>, session: u64) -> Self {
        Self { tx, session }
    }

    /// Queues `cmd` if there is room, without waiting.
    pub fn try_send(&self, cmd: ConnCmd) -> Result<(), super::mailbox::TrySendError<ConnCmd>> {
        use super::mailbox::TrySendError;
        self.tx
            .try_send(Addressed {
                session: self.session,
                cmd,
            })
            .map_err(|e| match e {
                TrySendError::Full(a) => TrySendError::Full(a.cmd),
                TrySendError::Closed(a) => TrySendError::Closed(a.cmd),
            })
    }

    /// Queues `cmd`, waiting for room; hands it back if the task is gone.
    pub async fn send(&self, cmd: ConnCmd) -> Result<(), ConnCmd> {
        self.tx
            .send(Addressed {
                session: self.session,
                cmd,
            })
            .await
            .map_err(|a| a.cmd)
    }

    /// Resolves once the task is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}
