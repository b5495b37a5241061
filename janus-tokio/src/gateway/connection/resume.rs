//! Session resume in the connection tasks (janus-core's `resume` has the protocol).
//!
//! ```text
//! old task: socket lost ─► session parks ─► wait_parked: tunnel replies and pushes go to the
//!           session (its replay buffer), the window's deadline, kicks, the drain
//! new task: handshake with a ticket ─► Event::ResumeRequested ─► hand_off: find the old task
//!           (Shared::resumable) and send it ConnCmd::Resume(Takeover{new conn, new socket})
//! old task: take_over: Session::resume(new, old) ─► ok: keep the new session and socket, drop
//!           the old ones; refused: hand both back to the new task, whose session says why
//! ```
//!
//! The old task keeps the session's identity, registrations (uid, gate table), tunnels and
//! command queue throughout: tunnels never notice the client was away. Taking the new socket
//! over is how the session's state stays in one task with no copying between them.

use std::time::Duration;

use janus_core::{CloseReason, resume::ResumeRefusal};
use tokio::{net::TcpStream, sync::oneshot};
use tracing::debug;

use super::{
    Conn,
    driver::{Kept, sleep_until},
    endpoint::Endpoint,
};
use crate::{
    clock,
    gateway::{command::ConnCmd, drain::DrainPhase, mailbox::TrySendError},
};

/// How long a new connection waits for the old session's task to take it over or hand it back
/// (that task is never blocked for long: it only waits on its own socket and queue).
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(5);

/// A new connection and its socket, on their way to the task of the session its client resumes.
pub struct Attach {
    conn: Box<Conn<Endpoint>>,
    stream: TcpStream,
}

/// [`ConnCmd::Resume`]: a new connection for the session, and the way back if it is refused.
pub struct Takeover {
    attach: Attach,
    back: oneshot::Sender<Attach>,
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Takeover")
            .field("peer", &self.attach.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Takeover {
    /// Sends the new connection back unused (its task then refuses the resume).
    pub fn hand_back(self) {
        let Takeover { attach, back } = self;
        let _ = back.send(attach);
    }
}

/// A parked session's wait for its client: until a new connection takes it over (returned with
/// its socket) or the session ends (its window passed, a kick, a newer login, the drain).
pub(super) async fn wait_parked(mut kept: Kept) -> Option<(Kept, TcpStream)> {
    let mut phase = kept.conn.shared.drain.clone();
    let mut watching = true;
    loop {
        if kept.conn.is_closed() {
            return None;
        }
        let deadline = kept.conn.deadline();
        tokio::select! {
            Some(addressed) = kept.cmds.recv() => match addressed.cmd {
                ConnCmd::Resume(takeover) => {
                    if let Some(stream) = attach(&mut kept, *takeover) {
                        return Some((kept, stream));
                    }
                }
                // A parked client cannot be told to go elsewhere: it learns on resuming.
                ConnCmd::Drain => kept.conn.close(CloseReason::Drained),
                cmd => kept.conn.handle_cmd(cmd),
            },
            changed = phase.changed(), if watching => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { DrainPhase::Cut };
                if now != DrainPhase::Serving {
                    watching = false;
                    kept.conn.close(CloseReason::Drained);
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => kept.conn.on_timeout(),
        }
    }
}

/// A connected session whose client resumes it on a new connection (its old socket is often
/// half-open after a network change): continue on the new socket, or on `stream` if refused.
pub(super) fn take_over(
    mut kept: Kept,
    stream: TcpStream,
    takeover: Takeover,
) -> (Kept, TcpStream) {
    match attach(&mut kept, takeover) {
        Some(new) => (kept, new),
        None => (kept, stream),
    }
}

/// Lets the new connection's session take this one's over; on success this task carries on
/// with the new session and socket. Refused, the new connection goes back to its task.
fn attach(kept: &mut Kept, takeover: Takeover) -> Option<TcpStream> {
    let Takeover {
        attach: Attach {
            conn: mut new,
            stream,
        },
        back,
    } = takeover;
    let now = clock::now();
    let resumed = new
        .session
        .session_mut()
        .resume(now, kept.conn.session.session_mut());
    match resumed {
        Ok(()) => {
            // `new` keeps the old, closed session: dropping it releases the new connection's
            // admission slot and counts one connection closed (two sockets became one).
            std::mem::swap(&mut kept.conn.session, &mut new.session);
            // The socket (TCP or WebSocket) is the new one's: so is the listener it counts for.
            std::mem::swap(&mut kept.conn.listener, &mut new.listener);
            if std::mem::take(&mut kept.conn.parked) {
                kept.conn.shared.metrics.parked(-1);
            }
            kept.conn.last_input = now;
            drop(new);
            kept.conn.process_events();
            debug!(parent: &kept.conn.span, "session resumed on a new connection");
            Some(stream)
        }
        Err(refusal) => {
            debug!(parent: &kept.conn.span, reason = refusal.as_str(), "resume refused");
            let _ = back.send(Attach { conn: new, stream });
            None
        }
    }
}

/// This connection's handshake asks to resume another session: hands this connection to that
/// session's task. Returns it if it comes back (refused: its session then says why, and logs in
/// with its token or closes); `None` when the other session took it over.
pub(super) async fn hand_off(kept: Kept, stream: TcpStream) -> Option<(Kept, TcpStream)> {
    let Kept { mut conn, cmds } = kept;
    let claim = conn.resume_request.take()?;
    let now = clock::now();
    let target = conn
        .shared
        .resumable()
        .find(claim.session, claim.uid, now)
        .cloned();
    let tx = match target {
        Ok(tx) => tx,
        Err(refusal) => return Some(refuse(Kept { conn, cmds }, stream, refusal)),
    };
    let (back, returned) = oneshot::channel();
    let takeover = Box::new(Takeover {
        attach: Attach { conn, stream },
        back,
    });
    if let Err(TrySendError::Full(cmd) | TrySendError::Closed(cmd)) =
        tx.try_send(ConnCmd::Resume(takeover))
    {
        let ConnCmd::Resume(takeover) = cmd else {
            return None;
        };
        let Attach { conn, stream } = takeover.attach;
        // The session's task just ended (or cannot take anything now).
        return Some(refuse(Kept { conn, cmds }, stream, ResumeRefusal::Expired));
    }
    match tokio::time::timeout(HANDOFF_TIMEOUT, returned).await {
        Ok(Ok(Attach { mut conn, stream })) => {
            conn.process_events();
            Some((Kept { conn, cmds }, stream))
        }
        // Taken over (the sender was dropped with the old session), or the other task is gone.
        _ => None,
    }
}

fn refuse(mut kept: Kept, stream: TcpStream, refusal: ResumeRefusal) -> (Kept, TcpStream) {
    kept.conn
        .session
        .session_mut()
        .refuse_resume(clock::now(), refusal);
    kept.conn.process_events();
    (kept, stream)
}
