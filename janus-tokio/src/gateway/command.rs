//! What a connection task is told by the rest of the gateway: the only type connections,
//! tunnels, the registry and the push paths share, so none of them depends on another.

use janus_core::{
    CloseReason,
    session::{PushPacket, TunnelId, TunnelMessage},
};

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
    /// Gateway shutdown: stop taking requests, deliver in-flight replies, log out.
    Drain,
}
