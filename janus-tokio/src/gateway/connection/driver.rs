//! The loop every connection runs, whatever its transport: read, write when there is something
//! to write and the socket can take it, take commands, fire the session's deadline, drain on
//! shutdown, and flush the last bytes (a logout) before closing.

use std::{future::Future, io};

use bytes::BytesMut;
use janus_core::CloseReason;
use tokio::time::Instant;
use tracing::debug;

use super::{Conn, FLUSH_TIMEOUT, endpoint::Endpoint, resume::Takeover};
use crate::gateway::{
    command::{Addressed, ConnCmd},
    drain::DrainPhase,
    mailbox,
};

/// A connection task's session and command queue, kept across sockets by session resume.
pub(super) struct Kept {
    pub conn: Box<Conn<Endpoint>>,
    pub cmds: mailbox::Receiver<Addressed>,
}

/// Why [`run`] returned.
pub(super) enum Exit {
    /// The session is over and the socket closed.
    Closed,
    /// The socket is gone but the session waits for its client to resume it.
    Parked(Kept),
    /// Another connection's client resumes this session: attach its socket instead (this one is
    /// still open, in case the takeover fails).
    Takeover(Kept, Box<Takeover>),
    /// This connection's handshake resumes another session: hand the socket over to it.
    HandOff(Kept),
}

/// What a read produced.
pub(super) enum Input {
    /// Bytes for the endpoint, in any split.
    Data(BytesMut),
    /// The peer closed, or the transport failed.
    Closed,
}

/// The receiving half of a transport.
pub(super) trait Reader: Send {
    /// The next input. Must be cancel-safe: it races the other events of the loop.
    fn read(&mut self) -> impl Future<Output = Input> + Send;
    /// After the last bytes went out: reads and drops whatever the peer still sends, until it
    /// closes. Closing a socket with unread input makes the kernel send a reset, which can
    /// destroy the last bytes (a logout) before the client reads them.
    fn linger(&mut self) -> impl Future<Output = ()> + Send;
}

/// How long a closed connection keeps reading (and dropping) the peer's bytes so its last
/// packets are not lost to a reset.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The sending half of a transport.
pub(super) trait Writer: Send {
    /// Resolves once bytes can be written; `false` when the transport is broken. Cancel-safe.
    fn ready(&mut self) -> impl Future<Output = bool> + Send;
    /// Writes what it can of the endpoint's queued bytes without waiting.
    fn write(&mut self, endpoint: &mut Endpoint) -> io::Result<()>;
    /// The session is over (for `reason`): say so if the transport can (a WebSocket close frame)
    /// and shut the sending side down.
    fn finish(self, reason: CloseReason) -> impl Future<Output = ()> + Send;
}

/// How long a connection stays quiet (nothing read, written or received from the gateway)
/// before its session gives back its idle memory ([`Endpoint::compact`]).
const COMPACT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a connection until its session has closed and its last bytes are out (or the flush
/// deadline passed), or until session resume moves it to or from another socket.
pub(super) async fn run(
    Kept { mut conn, mut cmds }: Kept,
    mut reader: impl Reader,
    mut writer: impl Writer,
) -> Exit {
    let mut phase = conn.shared.drain.clone();
    let mut watching = true;
    let mut reading = true;
    let mut flush_deadline = None;
    // When the connection compacts unless something happens first; `busy` says something did
    // since the timer was last armed (cheaper than re-arming on every event).
    let mut compact_at = Some(Instant::now() + COMPACT_AFTER);
    let mut busy = false;
    // One timer for every deadline, re-armed only when the earliest one moves.
    let timer = tokio::time::sleep_until(Instant::now() + COMPACT_AFTER);
    tokio::pin!(timer);
    let mut armed = None;
    loop {
        if conn.parked && !conn.is_closed() {
            return Exit::Parked(Kept { conn, cmds });
        }
        if conn.resume_request.is_some() {
            return Exit::HandOff(Kept { conn, cmds });
        }
        let wants_write = conn.session.pending_transmit() > 0;
        if conn.is_closed() {
            if !wants_write {
                break;
            }
            flush_deadline.get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
        }
        let open = !conn.is_closed();
        let deadline = flush_deadline.or_else(|| conn.deadline());
        let next = match (deadline, compact_at.filter(|_| open)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if next != armed {
            if let Some(at) = next {
                timer.as_mut().reset(at);
            }
            armed = next;
        }
        tokio::select! {
            input = reader.read(), if reading && open => {
                busy = true;
                match input {
                    Input::Data(buf) => conn.on_read(buf),
                    Input::Closed => {
                        reading = false;
                        conn.transport_lost();
                    }
                }
            },
            ready = writer.ready(), if wants_write => {
                busy = true;
                let written = ready && writer.write(&mut conn.session).is_ok();
                conn.export_stats();
                if !written {
                    conn.transport_lost();
                    if conn.parked {
                        continue;
                    }
                    break;
                }
            }
            Some(addressed) = cmds.recv(), if open => {
                busy = true;
                match addressed.cmd {
                    ConnCmd::Resume(takeover) => return Exit::Takeover(Kept { conn, cmds }, takeover),
                    cmd => conn.handle_cmd(cmd),
                }
            }
            changed = phase.changed(), if watching && open => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { DrainPhase::Cut };
                match now {
                    DrainPhase::Serving => {}
                    // Established sessions wait for their turn (ConnCmd::Drain).
                    DrainPhase::Draining => conn.drain_if_handshaking(),
                    DrainPhase::Cut => {
                        watching = false;
                        conn.close(CloseReason::Drained);
                    }
                }
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                if flush_deadline.is_some_and(|at| now >= at) {
                    break;
                }
                if compact_at.is_some_and(|at| now >= at) {
                    if busy {
                        busy = false;
                        compact_at = Some(now + COMPACT_AFTER);
                    } else {
                        conn.session.compact();
                        compact_at = None;
                    }
                }
                if flush_deadline.is_none() && deadline.is_some_and(|at| now >= at) {
                    conn.on_timeout();
                }
            }
        }
        if busy && compact_at.is_none() {
            compact_at = Some(Instant::now() + COMPACT_AFTER);
            busy = false;
        }
    }
    let reason = conn.closed.unwrap_or(CloseReason::PeerClosed);
    debug!(reason = reason.as_str(), "connection closed");
    // Unregister before the (bounded) goodbye, so nothing more is routed here.
    drop(conn);
    drop(cmds);
    writer.finish(reason).await;
    let _ = tokio::time::timeout(LINGER, reader.linger()).await;
    Exit::Closed
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
