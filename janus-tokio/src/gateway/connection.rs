//! One task per client connection, driving a [`Session`].
//!
//! The task owns the socket and the session and never blocks on anything but them: bytes read
//! go to [`Session::handle_buf`]; events open tunnels and forward packets (never waiting on a
//! tunnel: a full tunnel queue closes the session); replies, pushes and kicks arrive on the
//! connection's command channel; bytes to write are taken from the session only when the socket
//! can take them, so a client that does not read is caught by the session's outbound budget.
//!
//! TCP uses socket readiness (`readable`/`writable` with `try_read`/`try_write`), so an idle
//! connection holds no read or write buffer. WebSocket messages go through a writer task, one
//! binary message per frame.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, sync::atomic::Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use janus_core::{
    CloseReason,
    frame::frame_len,
    handshake::Identity,
    limit::Admitted,
    route::TunnelKey,
    session::{Event, Session, SessionState, TunnelMessage},
};
use janus_proto::broadcaster::service::push::v1::PushBody;
use tokio::{io::AsyncWriteExt as _, net::TcpStream, sync::mpsc, time::Instant};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};
use tracing::debug;

use super::{
    Shared, clock, mailbox,
    registry::ConnHandle,
    tunnel::{self, TunnelMeta},
};

/// Commands a connection receives from tunnels, the push service and the gateway.
#[derive(Debug)]
pub enum ConnCmd {
    /// A message from a backend on one of this connection's tunnels.
    Tunnel {
        key: TunnelKey,
        generation: u64,
        message: TunnelMessage,
    },
    /// That tunnel's stream ended.
    TunnelClosed {
        key: TunnelKey,
        generation: u64,
        failed: bool,
    },
    /// A push for this session.
    Push(PushBody),
    /// A push already serialized as a `Packet` (broadcasts).
    PushPacket(Bytes),
    /// Close now (kick).
    Close(CloseReason),
    /// Gateway shutdown: stop taking requests, deliver in-flight replies, log out.
    Drain,
}

/// Commands queued per connection. Replies wait for room (backpressure onto the backend stream);
/// pushes that find it full close the session as a slow consumer.
pub const CONN_QUEUE: usize = 256;
/// Bytes read per socket readiness event at most, so one busy connection cannot starve the rest
/// of its worker thread.
const READ_BUDGET: usize = 64 * 1024;
/// How long the last bytes of a closed session may take to go out (a logout packet, the
/// replies a drain waited for) before the socket is closed anyway.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Read buffer size per readiness event (allocated only when there is something to read).
const READ_CHUNK: usize = 4096;

struct TunnelHandle {
    generation: u64,
    tx: mpsc::Sender<TunnelMessage>,
}

/// The transport-independent half of a connection.
struct Conn {
    shared: Arc<Shared>,
    session: Session,
    peer: SocketAddr,
    wid: u64,
    conn_id: u64,
    admitted: Option<Admitted>,
    handshake_counted: bool,
    cmd_tx: mailbox::Sender<ConnCmd>,
    /// The session's uid once authenticated (the rest of the identity lives in the session).
    uid: Option<i64>,
    tunnels: HashMap<TunnelKey, TunnelHandle>,
    next_generation: u64,
    closed: Option<CloseReason>,
}

impl Conn {
    fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        wid: u64,
        admitted: Admitted,
    ) -> (Self, mailbox::Receiver<ConnCmd>) {
        let (cmd_tx, cmd_rx) = mailbox::mailbox(CONN_QUEUE);
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let session = Session::new(Arc::clone(&shared.core), clock::now(), seed);
        shared
            .metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let conn = Self {
            shared,
            session,
            peer,
            wid,
            conn_id,
            admitted: Some(admitted),
            handshake_counted: false,
            cmd_tx,
            uid: None,
            tunnels: HashMap::new(),
            next_generation: 0,
            closed: None,
        };
        (conn, cmd_rx)
    }

    fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout().map(clock::instant_of)
    }

    /// Drains the session's events after an input.
    fn process_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Authenticated(identity) => self.authenticated(identity),
                Event::OpenTunnel(key) => self.open_tunnel(key),
                Event::Forward { key, message } => self.forward(key, message),
                Event::CloseTunnel(key) if self.tunnels.remove(&key).is_some() => {
                    self.shared
                        .metrics
                        .tunnels_open
                        .fetch_sub(1, Ordering::Relaxed);
                }
                Event::Closed(reason) => {
                    self.closed = Some(reason);
                    self.shared.metrics.closed(reason);
                    debug!(peer = %self.peer, reason = reason.as_str(), "session closed");
                }
                _ => {}
            }
        }
    }

    fn finish_handshake_admission(&mut self) {
        if !self.handshake_counted {
            self.handshake_counted = true;
            if let Some(admitted) = &self.admitted {
                self.shared.admission().handshake_finished(admitted);
            }
        }
    }

    fn authenticated(&mut self, identity: Identity) {
        self.finish_handshake_admission();
        let metrics = &self.shared.metrics;
        metrics.inc(&metrics.sessions_authenticated);
        metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
        let handle = ConnHandle {
            conn_id: self.conn_id,
            color: identity.color.clone(),
            sid: identity.sid,
            tx: self.cmd_tx.clone(),
        };
        if let Some(old) = self.shared.registry.insert(identity.uid, handle) {
            if old.conn_id != self.conn_id {
                // The same uid logged in again here: the older connection goes.
                metrics.inc(&metrics.kicks_conflicting_login);
                let _ = old
                    .tx
                    .try_send(ConnCmd::Close(CloseReason::ConflictingLogin));
            }
        }
        if let Some(gate) = &self.shared.gate {
            gate.login(&self.shared, identity.uid, &identity.color);
        }
        debug!(peer = %self.peer, uid = identity.uid, sid = identity.sid, color = %identity.color, "authenticated");
        self.uid = Some(identity.uid);
    }

    fn open_tunnel(&mut self, key: TunnelKey) {
        let Some(identity) = self.session.identity().cloned() else {
            return;
        };
        let routes = &self.shared.core.routes;
        let kind = routes.kind_name(key.kind).to_owned();
        self.next_generation += 1;
        let meta = TunnelMeta {
            oid: key.oid,
            uid: identity.uid,
            sid: identity.sid,
            status: identity.status,
            color: identity.color,
            client_ip: self.peer.to_string(),
            referer: format!("{}#{}", self.shared.endpoint, self.wid),
        };
        // The backend is chosen inside the tunnel's task (the route table may be Redis); if none
        // can be, the tunnel ends at once and the pending request is answered with an error.
        let id = tunnel::TunnelId {
            kind,
            rule: routes.oid_rule(key.kind),
            key,
            generation: self.next_generation,
        };
        let tx = tunnel::spawn(Arc::clone(&self.shared), id, meta, self.cmd_tx.clone());
        if self
            .tunnels
            .insert(
                key,
                TunnelHandle {
                    generation: self.next_generation,
                    tx,
                },
            )
            .is_none()
        {
            self.shared
                .metrics
                .tunnels_open
                .fetch_add(1, Ordering::Relaxed);
        }
        let metrics = &self.shared.metrics;
        metrics.inc(&metrics.tunnels_opened);
    }

    fn forward(&mut self, key: TunnelKey, message: TunnelMessage) {
        // No tunnel: opening it failed and the request was already answered with an error.
        let Some(tunnel) = self.tunnels.get(&key) else {
            return;
        };
        match tunnel.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let metrics = &self.shared.metrics;
                metrics.inc(&metrics.tunnel_overflow);
                self.session.close(clock::now(), CloseReason::RateLimited);
            }
            // The stream just ended; its TunnelClosed command is on the way and will answer
            // this request along with the others pending.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn handle_cmd(&mut self, cmd: ConnCmd) {
        let now = clock::now();
        match cmd {
            ConnCmd::Tunnel { key, message, .. } => self.session.handle_tunnel(now, key, message),
            ConnCmd::TunnelClosed {
                key,
                generation,
                failed,
            } => {
                if self
                    .tunnels
                    .get(&key)
                    .is_some_and(|t| t.generation == generation)
                {
                    self.tunnels.remove(&key);
                    self.shared
                        .metrics
                        .tunnels_open
                        .fetch_sub(1, Ordering::Relaxed);
                    if failed {
                        let metrics = &self.shared.metrics;
                        metrics.inc(&metrics.tunnel_failures);
                    }
                    self.session.handle_tunnel_closed(now, key);
                }
            }
            ConnCmd::Push(body) => {
                self.session.push(now, &body);
            }
            ConnCmd::PushPacket(packet) => {
                self.session.push_packet(now, &packet);
            }
            ConnCmd::Close(reason) => self.session.close(now, reason),
            ConnCmd::Drain => self.session.drain(now),
        }
        self.process_events();
    }

    fn on_timeout(&mut self) {
        self.session.handle_timeout(clock::now());
        self.process_events();
    }

    fn on_read(&mut self, buf: BytesMut) {
        let metrics = &self.shared.metrics;
        metrics
            .bytes_in
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.session.handle_buf(clock::now(), buf);
        self.process_events();
    }

    fn peer_closed(&mut self) {
        self.session.close(clock::now(), CloseReason::PeerClosed);
        self.process_events();
    }

    fn is_closed(&self) -> bool {
        self.session.state() == SessionState::Closed
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let metrics = &self.shared.metrics;
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(uid) = self.uid {
            metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
            if let Some(handle) = self.shared.registry.remove(uid, self.conn_id) {
                if let Some(gate) = &self.shared.gate {
                    gate.logout(&self.shared, uid, &handle.color);
                }
            }
        }
        metrics
            .tunnels_open
            .fetch_sub(self.tunnels.len() as i64, Ordering::Relaxed);
        self.finish_handshake_admission();
        if let Some(admitted) = self.admitted.take() {
            self.shared.admission().release(admitted);
        }
    }
}

/// Serves one TCP connection until its session ends.
pub async fn serve_tcp(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    wid: u64,
    admitted: Admitted,
) {
    let mut drain = shared.drain.clone();
    let (mut conn, mut cmds) = Conn::new(shared, peer, wid, admitted);
    let _ = stream.set_nodelay(true);
    let mut eof = false;
    let mut draining = false;
    let mut flush_deadline = None;
    loop {
        let wants_write = !conn.session.transmit().is_empty();
        if conn.is_closed() {
            if !wants_write {
                break;
            }
            flush_deadline.get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
        }
        let deadline = flush_deadline.or_else(|| conn.deadline());
        tokio::select! {
            ready = stream.readable(), if !eof && !conn.is_closed() => {
                if ready.is_err() {
                    conn.peer_closed();
                    continue;
                }
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                let mut total = 0;
                loop {
                    if buf.capacity() == buf.len() {
                        buf.reserve(READ_CHUNK);
                    }
                    match stream.try_read_buf(&mut buf) {
                        Ok(0) => { eof = true; break; }
                        Ok(n) => { total += n; if total >= READ_BUDGET { break; } }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => { eof = true; break; }
                    }
                }
                if !buf.is_empty() {
                    conn.on_read(buf);
                }
                if eof {
                    conn.peer_closed();
                }
            }
            ready = stream.writable(), if wants_write => {
                if ready.is_err() {
                    break;
                }
                match stream.try_write(conn.session.transmit()) {
                    Ok(n) => {
                        conn.shared.metrics.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        conn.session.advance_transmit(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        conn.peer_closed();
                        break;
                    }
                }
            }
            Some(cmd) = cmds.recv(), if !conn.is_closed() => conn.handle_cmd(cmd),
            () = super::until_true(&mut drain), if !draining && !conn.is_closed() => {
                draining = true;
                conn.handle_cmd(ConnCmd::Drain);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if flush_deadline.is_some() {
                    break;
                }
                conn.on_timeout();
            }
        }
    }
    let mut stream = stream;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.shutdown()).await;
    debug!(peer = %peer, reason = conn.closed.map_or("unknown", CloseReason::as_str), "connection closed");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves one WebSocket connection (already upgraded) until its session ends. Each binary
/// message carries exactly one frame; a text message closes the connection.
pub async fn serve_ws<S>(
    shared: Arc<Shared>,
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    wid: u64,
    admitted: Admitted,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut drain = shared.drain.clone();
    let (mut conn, mut cmds) = Conn::new(shared, peer, wid, admitted);
    let (mut sink, mut stream) = ws.split();
    // The writer: one binary message per frame. Capacity 1: bytes waiting for a slow client stay
    // in the session, where they count against its budget.
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(1);
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<CloseReason>();
    let metrics_shared = Arc::clone(&conn.shared);
    let writer = tokio::spawn(async move {
        while let Some(mut bytes) = out_rx.recv().await {
            let n = bytes.len();
            while let Some(frame) = next_frame(&mut bytes) {
                if sink.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            metrics_shared
                .metrics
                .bytes_out
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        let reason = close_rx.await.unwrap_or(CloseReason::PeerClosed);
        let frame = CloseFrame {
            code: close_code(reason),
            reason: reason.as_str().into(),
        };
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
        let _ = sink.close().await;
    });
    let mut reading = true;
    let mut draining = false;
    let mut flush_deadline = None;
    loop {
        let pending = !conn.session.transmit().is_empty();
        if conn.is_closed() {
            if !pending {
                break;
            }
            flush_deadline.get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
        }
        let deadline = flush_deadline.or_else(|| conn.deadline());
        tokio::select! {
            message = stream.next(), if reading && !conn.is_closed() => match message {
                Some(Ok(Message::Binary(payload))) => match one_frame(payload) {
                    Some(frame) => conn.on_read(frame),
                    None => { conn.session.close(clock::now(), CloseReason::MalformedFrame); conn.process_events(); }
                },
                Some(Ok(Message::Text(_))) => { conn.session.close(clock::now(), CloseReason::MalformedFrame); conn.process_events(); }
                // Pings are answered by tungstenite; pongs and raw frames carry nothing for us.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => { reading = false; conn.peer_closed(); }
            },
            permit = out_tx.reserve(), if pending => match permit {
                Ok(permit) => {
                    if let Some(bytes) = conn.session.poll_transmit() {
                        permit.send(bytes);
                    }
                }
                Err(_) => { conn.peer_closed(); break; }
            },
            Some(cmd) = cmds.recv(), if !conn.is_closed() => conn.handle_cmd(cmd),
            () = super::until_true(&mut drain), if !draining && !conn.is_closed() => {
                draining = true;
                conn.handle_cmd(ConnCmd::Drain);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if flush_deadline.is_some() {
                    break;
                }
                conn.on_timeout();
            }
        }
    }
    let _ = close_tx.send(conn.closed.unwrap_or(CloseReason::PeerClosed));
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), writer).await;
    debug!(peer = %peer, reason = conn.closed.map_or("unknown", CloseReason::as_str), "websocket closed");
}

/// Splits the next frame off a run of frames the session queued (one WebSocket message each).
fn next_frame(bytes: &mut Bytes) -> Option<Bytes> {
    frame_len(bytes).map(|end| bytes.split_to(end))
}

/// The frame a WebSocket message carries: its length prefix must fit inside the message;
/// trailing bytes are ignored, as upstream does (spec §1.3).
fn one_frame(payload: Bytes) -> Option<BytesMut> {
    let frame = payload.slice(..frame_len(&payload)?);
    Some(
        frame
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
    )
}

fn close_code(reason: CloseReason) -> CloseCode {
    match reason {
        CloseReason::Shutdown => CloseCode::Away,
        CloseReason::MalformedFrame | CloseReason::MalformedPacket => CloseCode::Protocol,
        CloseReason::PeerClosed
        | CloseReason::ConflictingLogin
        | CloseReason::AdminKickOut
        | CloseReason::Banned => CloseCode::Normal,
        CloseReason::ServerError => CloseCode::Error,
        _ => CloseCode::Policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_messages_carry_exactly_one_frame() {
        let msg = Bytes::from_static(&[0, 0, 0, 2, 7, 8, 9, 9]);
        assert_eq!(&one_frame(msg).unwrap()[..], &[0, 0, 0, 2, 7, 8]);
        assert!(
            one_frame(Bytes::from_static(&[0, 0, 0, 5, 1])).is_none(),
            "frame cannot span messages"
        );
        assert!(one_frame(Bytes::from_static(&[0, 0])).is_none());
        let mut batch = Bytes::from_static(&[0, 0, 0, 1, 1, 0, 0, 0, 2, 2, 2]);
        let frames: Vec<Bytes> = std::iter::from_fn(|| next_frame(&mut batch)).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[1][..], &[0, 0, 0, 2, 2, 2]);
    }
}
