//! [`Link`]: one end of a relay connection (see the [module documentation](super)).

use std::{collections::HashMap, collections::VecDeque, sync::Arc};

use bytes::{Bytes, BytesMut};
use janus_proto::janus::relay::v1::{self as pb, frame::Body};

use super::{
    CHALLENGE_LEN, LinkCloseReason, LinkConfig, Role, SessionInfo,
    flow::Flow,
    handshake::{self, PeerHello},
    wire,
};
use crate::{
    CloseReason, Time,
    crypto::VerifyingKey,
    frame::FrameDecoder,
    session::{PushPacket, TunnelId, TunnelMessage},
};

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the peer's `Hello`.
    Hello,
    /// `Auth` sent, waiting for the peer's.
    Auth,
    /// Authenticated both ways: sessions flow.
    Established,
    /// Over; only buffered bytes remain to be written.
    Closed,
}

/// The authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its Ed25519 key (one of [`LinkConfig::peers`]).
    pub key: VerifyingKey,
    /// The name it gave.
    pub node: String,
    /// The protocol version in use.
    pub version: u32,
}

/// Something the adapter must act on, drained with [`Link::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// Both sides are authenticated.
    Established(PeerInfo),
    /// Hub: the edge opened a session.
    SessionOpened(Box<SessionInfo>),
    /// The peer closed a session (edge: a kick; hub: the client is gone).
    SessionClosed { session: u64, reason: CloseReason },
    /// Hub: the edge opened a tunnel.
    TunnelOpened {
        session: u64,
        tunnel: TunnelId,
        kind: String,
        oid: i64,
    },
    /// The peer closed a tunnel (edge: the backend stream ended; hub: the session closed it).
    TunnelClosed {
        session: u64,
        tunnel: TunnelId,
        failed: bool,
    },
    /// A tunnel message. [`release`](Link::release) `cost` once it is consumed.
    Data {
        session: u64,
        tunnel: TunnelId,
        message: TunnelMessage,
        cost: u32,
    },
    /// Edge: a push for each of `sessions`.
    Push {
        sessions: Vec<u64>,
        packet: PushPacket,
    },
    /// Edge: the hub is shutting down; move its sessions.
    Drain,
    /// The link is over. Its sessions are gone ([`Link::take_sessions`] lists them).
    Closed(LinkCloseReason),
}

/// Why [`Link::send`] did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The link is not established, or closed.
    #[error("link not established")]
    NotEstablished,
    /// No such session open on this link.
    #[error("session not open on this link")]
    UnknownSession,
    /// The session's queue of frames waiting for credit is full (its peer does not keep up), or
    /// the link's buffer is over its limit (pushes).
    #[error("backlog full")]
    Backlog,
    /// The frame is larger than the peer accepts.
    #[error("frame larger than the peer accepts")]
    TooLarge,
    /// The message is not one this role sends, or the session id is already in use.
    #[error("message not valid here")]
    Invalid,
}

/// Frames and bytes a link has moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
}

/// A push waiting to be encoded, so consecutive pushes of one packet become one message.
#[derive(Debug)]
pub(super) struct PendingPush {
    pub packet: PushPacket,
    pub sessions: Vec<u64>,
}

/// One end of a relay link.
#[derive(Debug)]
pub struct Link {
    pub(super) config: Arc<LinkConfig>,
    pub(super) state: LinkState,
    decoder: FrameDecoder,
    rx: BytesMut,
    pub(super) tx: BytesMut,
    events: VecDeque<LinkEvent>,
    pub(super) sessions: HashMap<u64, Flow>,
    /// This side's `Hello`, as sent.
    hello: Bytes,
    pub(super) peer: Option<PeerHello>,
    handshake_deadline: Time,
    pub(super) last_sent: Time,
    last_received: Time,
    pub(super) pending_push: Option<PendingPush>,
    pub(super) drain_sent: bool,
    peer_goodbye: Option<String>,
    pub(super) stats: LinkStats,
}

impl Link {
    /// A link whose connection is up at `now`; queues this side's `Hello`. `challenge` must come
    /// from a CSPRNG.
    pub fn new(config: Arc<LinkConfig>, now: Time, challenge: [u8; CHALLENGE_LEN]) -> Self {
        let (msg, hello) = handshake::hello(&config, challenge);
        let mut link = Self {
            decoder: FrameDecoder::new(config.max_frame_len),
            handshake_deadline: now + config.handshake_timeout,
            config,
            state: LinkState::Hello,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            events: VecDeque::new(),
            sessions: HashMap::new(),
            hello: Bytes::new(),
            peer: None,
            last_sent: now,
            last_received: now,
            pending_push: None,
            drain_sent: false,
            peer_goodbye: None,
            stats: LinkStats::default(),
        };
        link.encode(now, Body::Hello(msg));
        link.hello = hello;
        link
    }

    /// Where the link is.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether sessions can flow.
    pub fn is_established(&self) -> bool {
        self.state == LinkState::Established
    }

    /// The authenticated peer, once established.
    pub fn peer(&self) -> Option<PeerInfo> {
        match (&self.peer, self.state) {
            (Some(p), LinkState::Established | LinkState::Closed) => Some(PeerInfo {
                key: p.key,
                node: p.node.clone(),
                version: p.version,
            }),
            _ => None,
        }
    }

    /// The reason the peer gave in its `Goodbye`, if it sent one.
    pub fn peer_goodbye(&self) -> Option<&str> {
        self.peer_goodbye.as_deref()
    }

    /// Sessions open on the link.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `session` is open on this link.
    pub fn has_session(&self, session: u64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The credit this side has left for `session` (tests and metrics).
    pub fn credit(&self, session: u64) -> Option<u32> {
        self.sessions.get(&session).map(|f| f.credit)
    }

    /// Frames and bytes moved.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Bytes queued for the peer and not yet taken.
    pub fn pending_transmit(&self) -> usize {
        self.tx.len() + usize::from(self.pending_push.is_some())
    }

    /// Removes and returns every session with its open tunnels (after [`LinkEvent::Closed`]:
    /// the edge fails their tunnels and re-homes them; the hub closes them).
    pub fn take_sessions(&mut self) -> Vec<(u64, Vec<TunnelId>)> {
        self.sessions
            .drain()
            .map(|(id, flow)| (id, flow.tunnels.into_iter().map(TunnelId).collect()))
            .collect()
    }

    /// Bytes received from the peer, in any split.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if self.state == LinkState::Closed {
            return;
        }
        self.rx.extend_from_slice(bytes);
        while self.state != LinkState::Closed {
            match self.decoder.decode(&mut self.rx) {
                Ok(Some(frame)) => {
                    let body = frame.into_body().freeze();
                    self.last_received = now;
                    self.stats.frames_in += 1;
                    self.stats.bytes_in += (body.len() + crate::frame::HEADER_LEN) as u64;
                    self.handle_frame(now, body);
                }
                Ok(None) => break,
                Err(_) => self.close(now, LinkCloseReason::MalformedFrame),
            }
        }
        if self.rx.is_empty() && self.rx.capacity() > 64 * 1024 {
            self.rx = BytesMut::new();
        }
    }

    fn handle_frame(&mut self, now: Time, raw: Bytes) {
        let cost = u32::try_from(raw.len() + crate::frame::HEADER_LEN).unwrap_or(u32::MAX);
        let Some(body) = wire::decode(raw.clone()) else {
            return self.close(now, LinkCloseReason::MalformedMessage);
        };
        let result = match (self.state, body) {
            (LinkState::Hello, Body::Hello(_)) => self.on_hello(now, &raw),
            (LinkState::Auth, Body::Auth(auth)) => self.on_auth(&auth.signature),
            (_, Body::Goodbye(g)) => {
                self.peer_goodbye = Some(g.reason.chars().take(64).collect());
                Err(LinkCloseReason::PeerGoodbye)
            }
            (LinkState::Established, Body::Heartbeat(_)) => Ok(()),
            (LinkState::Established, body) => self.on_session_message(now, body, cost),
            _ => Err(LinkCloseReason::UnexpectedMessage),
        };
        if let Err(reason) = result {
            self.close(now, reason);
        }
    }

    fn on_hello(&mut self, now: Time, raw: &[u8]) -> Result<(), LinkCloseReason> {
        let hello = wire::hello_bytes(raw).ok_or(LinkCloseReason::MalformedMessage)?;
        let peer = handshake::check_hello(&self.config, Bytes::copy_from_slice(hello))?;
        let signature = handshake::sign(&self.config, peer.version, &self.hello, &peer.raw);
        self.peer = Some(peer);
        self.state = LinkState::Auth;
        self.encode(now, Body::Auth(pb::Auth { signature }));
        Ok(())
    }

    fn on_auth(&mut self, signature: &[u8]) -> Result<(), LinkCloseReason> {
        let peer = self
            .peer
            .as_ref()
            .ok_or(LinkCloseReason::UnexpectedMessage)?;
        handshake::verify(&self.config, peer, &self.hello, signature)?;
        self.state = LinkState::Established;
        self.events.push_back(LinkEvent::Established(PeerInfo {
            key: peer.key,
            node: peer.node.clone(),
            version: peer.version,
        }));
        Ok(())
    }

    /// The peer's receive window (what this side may have in flight per session).
    pub(super) fn peer_window(&self) -> u32 {
        self.peer.as_ref().map_or(0, |p| p.session_window)
    }

    fn on_session_message(
        &mut self,
        now: Time,
        body: Body,
        cost: u32,
    ) -> Result<(), LinkCloseReason> {
        let role = self.config.role;
        let window = self.config.session_window;
        match (role, body) {
            (Role::Hub, Body::SessionOpen(open)) => return self.on_session_open(now, open),
            (_, Body::SessionClose(close)) => {
                if self.sessions.remove(&close.session).is_some() {
                    let reason =
                        CloseReason::from_name(&close.reason).unwrap_or(CloseReason::PeerClosed);
                    self.events.push_back(LinkEvent::SessionClosed {
                        session: close.session,
                        reason,
                    });
                }
            }
            (Role::Hub, Body::TunnelOpen(open)) => {
                let Some(flow) = self.sessions.get_mut(&open.session) else {
                    return Ok(());
                };
                if flow.has_tunnel(open.tunnel) {
                    return Err(LinkCloseReason::ProtocolViolation);
                }
                if !flow.open_tunnel(open.tunnel) {
                    return Err(LinkCloseReason::ProtocolViolation);
                }
                self.events.push_back(LinkEvent::TunnelOpened {
                    session: open.session,
                    tunnel: TunnelId(open.tunnel),
                    kind: open.kind,
                    oid: open.oid,
                });
            }
            (_, Body::TunnelClose(close)) => {
                let Some(flow) = self.sessions.get_mut(&close.session) else {
                    return Ok(());
                };
                if flow.close_tunnel(close.tunnel) {
                    self.events.push_back(LinkEvent::TunnelClosed {
                        session: close.session,
                        tunnel: TunnelId(close.tunnel),
                        failed: close.failed,
                    });
                }
            }
            (_, Body::Data(data)) => {
                let Some(flow) = self.sessions.get_mut(&data.session) else {
                    return Ok(());
                };
                if !flow.receive(cost, window) {
                    return Err(LinkCloseReason::FlowControl);
                }
                if !flow.has_tunnel(data.tunnel) {
                    // A late message for a tunnel already closed here: nobody to give it to.
                    self.release(data.session, cost);
                    return Ok(());
                }
                let (session, tunnel) = (data.session, TunnelId(data.tunnel));
                self.events.push_back(LinkEvent::Data {
                    session,
                    tunnel,
                    message: wire::message_of(data),
                    cost,
                });
            }
            (_, Body::Credit(credit)) => {
                let peer_window = self.peer_window();
                let Some(flow) = self.sessions.get_mut(&credit.session) else {
                    return Ok(());
                };
                if !flow.add_credit(credit.bytes, peer_window) {
                    return Err(LinkCloseReason::FlowControl);
                }
                self.flush_queue(now, credit.session);
            }
            (Role::Edge, Body::Push(push)) => {
                if push.packet.is_empty() {
                    return Err(LinkCloseReason::MalformedMessage);
                }
                let sessions: Vec<u64> = push
                    .sessions
                    .into_iter()
                    .filter(|s| self.sessions.contains_key(s))
                    .collect();
                if !sessions.is_empty() {
                    let packet = PushPacket::from_relay(push.packet, push.compressed);
                    self.events.push_back(LinkEvent::Push { sessions, packet });
                }
            }
            (Role::Edge, Body::Drain(_)) => self.events.push_back(LinkEvent::Drain),
            _ => return Err(LinkCloseReason::UnexpectedMessage),
        }
        Ok(())
    }

    fn on_session_open(&mut self, now: Time, open: pb::SessionOpen) -> Result<(), LinkCloseReason> {
        if self.sessions.contains_key(&open.session) {
            return Err(LinkCloseReason::ProtocolViolation);
        }
        if self.sessions.len() >= self.config.max_sessions {
            // Refused, not a protocol error: the edge closes the client (or tries another hub).
            self.encode(
                now,
                Body::SessionClose(pb::SessionClose {
                    session: open.session,
                    reason: CloseReason::ServerError.as_str().into(),
                }),
            );
            return Ok(());
        }
        let client_addr = open
            .client_addr
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let info = SessionInfo {
            session: open.session,
            identity: crate::handshake::Identity {
                uid: open.uid,
                sid: open.sid,
                color: open.color,
                status: open.status,
                conn_id: open.conn_id,
                token_expiry: open.token_expiry,
            },
            client_addr,
            worker_id: open.worker_id,
        };
        self.sessions
            .insert(open.session, Flow::new(self.peer_window()));
        self.events
            .push_back(LinkEvent::SessionOpened(Box::new(info)));
        Ok(())
    }

    /// Hub: tells the edge this hub is going away (once).
    pub fn drain(&mut self, now: Time) {
        if self.config.role == Role::Hub && self.is_established() && !self.drain_sent {
            self.drain_sent = true;
            self.encode(now, Body::Drain(pb::Drain {}));
        }
    }

    /// Closes the link: a `Goodbye` naming `reason` is queued (unless the peer is the one who
    /// left), and [`LinkEvent::Closed`] follows. Closing twice does nothing.
    pub fn close(&mut self, now: Time, reason: LinkCloseReason) {
        if self.state == LinkState::Closed {
            return;
        }
        if !matches!(
            reason,
            LinkCloseReason::PeerClosed | LinkCloseReason::PeerGoodbye
        ) {
            self.encode(
                now,
                Body::Goodbye(pb::Goodbye {
                    reason: reason.as_str().into(),
                }),
            );
        } else {
            self.pending_push = None;
        }
        self.flush_push(now);
        self.state = LinkState::Closed;
        self.rx = BytesMut::new();
        self.events.push_back(LinkEvent::Closed(reason));
    }

    /// A deadline passed (call when `now` reaches [`poll_timeout`](Self::poll_timeout)).
    pub fn handle_timeout(&mut self, now: Time) {
        match self.state {
            LinkState::Closed => {}
            LinkState::Hello | LinkState::Auth => {
                if now >= self.handshake_deadline {
                    self.close(now, LinkCloseReason::HandshakeTimeout);
                }
            }
            LinkState::Established => {
                if now >= self.receive_deadline() {
                    self.close(now, LinkCloseReason::HeartbeatTimeout);
                } else if now >= self.last_sent + self.config.heartbeat_interval {
                    self.encode(now, Body::Heartbeat(pb::Heartbeat {}));
                }
            }
        }
    }

    fn receive_deadline(&self) -> Time {
        let peer = self
            .peer
            .as_ref()
            .map_or(self.config.heartbeat_interval, |p| p.heartbeat);
        self.last_received + self.config.heartbeat_timeout.max(peer.saturating_mul(3))
    }

    /// The next deadline, or `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            LinkState::Closed => None,
            LinkState::Hello | LinkState::Auth => Some(self.handshake_deadline),
            LinkState::Established => Some(
                self.receive_deadline()
                    .min(self.last_sent + self.config.heartbeat_interval),
            ),
        }
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Everything queued for the peer, as one buffer.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.flush_push(self.last_sent);
        if self.tx.is_empty() {
            return None;
        }
        Some(self.tx.split().freeze())
    }

    /// The bytes queued for the peer, to write; then [`advance_transmit`](Self::advance_transmit).
    pub fn transmit(&mut self) -> &[u8] {
        self.flush_push(self.last_sent);
        &self.tx
    }

    /// Consumes `written` bytes from the front of [`transmit`](Self::transmit).
    pub fn advance_transmit(&mut self, written: usize) {
        let n = written.min(self.tx.len());
        bytes::Buf::advance(&mut self.tx, n);
        if self.tx.is_empty() && self.tx.capacity() > 256 * 1024 {
            self.tx = BytesMut::new();
        }
    }

    pub(super) fn encode(&mut self, now: Time, body: Body) {
        self.flush_push(now);
        self.encode_now(now, body);
    }

    pub(super) fn encode_now(&mut self, now: Time, body: Body) {
        let len = wire::encode(body, &mut self.tx);
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
        self.last_sent = now;
    }
}
