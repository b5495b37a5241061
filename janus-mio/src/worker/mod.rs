//! One event loop (one per core): a `mio::Poll`, its own `SO_REUSEPORT` listeners, a slab of
//! client connections driving janus-core sessions, one read buffer, a timer heap fed by the
//! sessions' `poll_timeout`, and its own links to every hub.
//!
//! ```text
//! poll ─► listener readable ─► accept (admission) ─► Client{Session} in the slab
//!      ─► client readable ─► read (≤ READ_BUDGET per turn) ─► Session ─► relay::drive ─► Link.send
//!      ─► hub readable ─► Link ─► LinkEvent ─► Session inputs (replies, pushes, kicks) ─► dirty
//!      ─► end of turn: write every dirty client and every link (one write each: batched),
//!         settle (close finished clients, re-arm timers), fire due timers
//! ```
//!
//! Sockets are registered once for both directions (edge-triggered), so interest changes cost no
//! system call: a client whose replies pile up is simply not read (`paused`) until it drains,
//! and one with budget left over is read again next turn. Timers are lazy: one heap entry per
//! connection, re-armed when it fires early.

mod client;
mod hubs;
mod relay;
mod timers;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use janus_core::{
    CloseReason, Time,
    config::ServerConfig,
    limit::Admission,
    relay::LinkConfig,
    session::{ConnectionContext, Session, SessionState, Transport, WorkerIds},
};
use mio::{Events, Interest, Poll, Token, Waker, net::TcpListener};
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use rand_core::RngCore;
use slab::Slab;

pub use self::client::Upgrade;
use self::{
    client::{Client, Io, ReadOutcome},
    hubs::Hub,
};
use crate::{clock, metrics::EdgeMetrics};

const TCP_LISTENER: Token = Token(usize::MAX - 1);
const WS_LISTENER: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);
/// Hub `i` is `Token(HUB_BASE - i)`.
const HUB_BASE: usize = usize::MAX - 16;
/// Connections accepted per listener per turn at most (the rest next turn).
const ACCEPT_BUDGET: usize = 256;
/// Unwritten bytes for a client beyond which its requests are no longer read.
const PAUSE_ABOVE: usize = 256 * 1024;
/// How long the last bytes of a closed session may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The one read buffer of an event loop, bytes.
const READ_BUFFER: usize = 64 * 1024;
/// Longest sleep without a deadline (the drain flag is also checked on wake-ups).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// What every event loop of an edge shares.
#[derive(Debug)]
pub struct Shared {
    pub core: Arc<ServerConfig>,
    pub link: Arc<LinkConfig>,
    pub hubs: Vec<String>,
    pub metrics: Arc<EdgeMetrics>,
    pub admission: Mutex<Admission>,
    pub worker_ids: WorkerIds,
    /// This edge's name: the "gateway" in its sessions' context (hubs replace it with theirs).
    pub node: Arc<str>,
    pub upgrade: Upgrade,
    pub reconnect: (Duration, Duration),
    /// Turns true on SIGTERM / shutdown: drain.
    pub draining: Arc<AtomicBool>,
    /// Turns true to stop at once (tests: an edge that dies).
    pub abort: Arc<AtomicBool>,
    pub shutdown_grace: Duration,
    /// Handshakes another event loop's admission evicted (admission id, when), for the loop
    /// that holds them; `evictions_pending` says the list is not empty.
    pub evictions: Mutex<Vec<(u64, Time)>>,
    pub evictions_pending: AtomicBool,
}

/// How long an eviction waits in [`Shared::evictions`] for its loop (a handshake that ended
/// meanwhile leaves its entry behind).
const EVICTION_TTL: Duration = Duration::from_secs(2);

impl Shared {
    pub fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evictions(&self) -> MutexGuard<'_, Vec<(u64, Time)>> {
        self.evictions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One event loop.
pub struct Worker {
    shared: Arc<Shared>,
    poll: Poll,
    tcp: Option<TcpListener>,
    ws: Option<TcpListener>,
    /// Boxed: a slab grows by doubling, and an empty slot should cost a pointer, not a client.
    clients: Slab<Box<Client>>,
    hubs: Vec<Hub>,
    timers: BinaryHeap<Reverse<(Time, usize, u64)>>,
    read_buf: Vec<u8>,
    /// Clients with bytes left to read after their budget.
    again: Vec<usize>,
    /// Hubs with bytes left to read after their budget.
    hubs_again: Vec<usize>,
    /// Clients to write and settle at the end of the turn.
    dirty: Vec<usize>,
    generation: u32,
    rng: ChaCha20Rng,
    drain_deadline: Option<Time>,
    /// This loop's clients still handshaking, by admission id: what an eviction closes.
    handshaking: HashMap<u64, usize>,
}

impl Worker {
    /// A loop serving `tcp` and `ws` (already bound, non-blocking); returns it and its waker.
    pub fn new(
        shared: Arc<Shared>,
        tcp: Option<std::net::TcpListener>,
        ws: Option<std::net::TcpListener>,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let register = |l: Option<std::net::TcpListener>, token| -> io::Result<_> {
            l.map(|l| {
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, token, Interest::READABLE)
                    .map(|()| l)
            })
            .transpose()
        };
        let tcp = register(tcp, TCP_LISTENER)?;
        let ws = register(ws, WS_LISTENER)?;
        let mut seed = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut seed);
        let now = clock::now();
        let hubs = shared
            .hubs
            .iter()
            .enumerate()
            .map(|(i, addr)| Hub::new(addr.clone(), Token(HUB_BASE - i), now, shared.reconnect.0))
            .collect();
        let worker = Worker {
            shared,
            poll,
            tcp,
            ws,
            clients: Slab::new(),
            hubs,
            timers: BinaryHeap::new(),
            read_buf: vec![0; READ_BUFFER],
            again: Vec::new(),
            hubs_again: Vec::new(),
            dirty: Vec::new(),
            generation: 0,
            rng: ChaCha20Rng::from_seed(seed),
            drain_deadline: None,
            handshaking: HashMap::new(),
        };
        Ok((worker, waker))
    }

    /// Runs until drained (or aborted).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.shared.abort.load(Ordering::Relaxed) {
                return;
            }
            let now = clock::now();
            if self.shared.draining.load(Ordering::Relaxed) && self.drain_deadline.is_none() {
                self.start_drain(now);
            }
            if self.drain_deadline.is_some_and(|d| now >= d) || self.drained() {
                self.finish(now);
                return;
            }
            let timeout = if self.again.is_empty() && self.hubs_again.is_empty() {
                self.next_deadline()
                    .map_or(MAX_SLEEP, |t| clock::until(t, now).min(MAX_SLEEP))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "poll failed");
                return;
            }
            let now = clock::now();
            for event in events.iter() {
                match event.token() {
                    TCP_LISTENER => self.accept(Transport::Tcp, now),
                    WS_LISTENER => self.accept(Transport::WebSocket, now),
                    WAKER => {}
                    Token(t) if t > HUB_BASE - 64 && t <= HUB_BASE => {
                        self.hub_ready(HUB_BASE - t, now);
                    }
                    Token(key) => {
                        self.client_ready(key, event.is_readable(), now);
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.client_ready(key, true, now);
            }
            for h in std::mem::take(&mut self.hubs_again) {
                self.hub_ready(h, now);
            }
            if self.shared.evictions_pending.load(Ordering::Relaxed) {
                self.take_evictions(now);
            }
            self.fire_timers(now);
            self.end_turn(now);
        }
    }

    fn accept(&mut self, transport: Transport, now: Time) {
        for _ in 0..ACCEPT_BUDGET {
            let listener = match transport {
                Transport::WebSocket => self.ws.as_ref(),
                _ => self.tcp.as_ref(),
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, transport, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
        // Budget spent: more may be waiting, and the edge will not fire again for them.
        let _ = self.poll.registry().reregister(
            match transport {
                Transport::WebSocket => match self.ws.as_mut() {
                    Some(l) => l,
                    None => return,
                },
                _ => match self.tcp.as_mut() {
                    Some(l) => l,
                    None => return,
                },
            },
            if transport == Transport::WebSocket {
                WS_LISTENER
            } else {
                TCP_LISTENER
            },
            Interest::READABLE,
        );
    }

    fn admit(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: SocketAddr,
        transport: Transport,
        now: Time,
    ) {
        let metrics = Arc::clone(&self.shared.metrics);
        let admit = self.shared.admission().try_admit(peer.ip(), now);
        let (admitted, evict) = match admit {
            Ok(a) => (a.admitted, a.evict),
            Err(_) => {
                metrics.inc(&metrics.connections_rejected);
                return;
            }
        };
        if let Some(id) = evict {
            self.evict(id, now);
        }
        let _ = stream.set_nodelay(true);
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if key >= HUB_BASE - 64 {
            self.shared.admission().release(admitted);
            return;
        }
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.shared.admission().release(admitted);
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let id = (u64::from(self.generation) << 32) | key as u64;
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let context = ConnectionContext {
            peer,
            gateway: Arc::clone(&self.shared.node),
            worker_id: self.shared.worker_ids.next(transport),
        };
        let session = Session::new(Arc::clone(&self.shared.core), context, now, seed);
        let io = if transport == Transport::WebSocket {
            metrics.inc(&metrics.connections_ws);
            let config = tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0)
                .max_write_buffer_size(self.shared.core.session.outbound_budget.saturating_mul(2))
                .max_message_size(Some(janus_core::frame::wire_len(
                    self.shared.core.session.max_frame_len,
                )))
                .max_frame_size(Some(janus_core::frame::wire_len(
                    self.shared.core.session.max_frame_len,
                )));
            match tungstenite::accept_hdr_with_config(
                stream,
                self.shared.upgrade.clone(),
                Some(config),
            ) {
                Ok(ws) => Io::Ws(Box::new(ws)),
                Err(tungstenite::HandshakeError::Interrupted(mid)) => {
                    Io::Upgrading(Box::new(Some(mid)))
                }
                Err(tungstenite::HandshakeError::Failure(_)) => {
                    metrics.inc(&metrics.ws_upgrades_rejected);
                    self.shared.admission().release(admitted);
                    return;
                }
            }
        } else {
            metrics.inc(&metrics.connections_tcp);
            Io::Tcp(stream)
        };
        metrics.gauge(&metrics.connections_open, 1);
        self.handshaking.insert(admitted.id(), key);
        entry.insert(Box::new(Client::new(io, session, id, admitted)));
        self.arm(key, now);
        if self.drain_deadline.is_some() {
            if let Some(c) = self.clients.get_mut(key) {
                c.session.drain(now);
            }
            self.mark_dirty(key);
        }
    }

    /// A client's socket is ready (either way: writing happens when the turn ends).
    fn client_ready(&mut self, key: usize, readable: bool, now: Time) {
        let shared = Arc::clone(&self.shared);
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if let Io::Upgrading(_) = client.io {
            if client.upgrade().is_err() {
                shared.metrics.inc(&shared.metrics.ws_upgrades_rejected);
                client.eof = true;
                client.session.close(now, CloseReason::PeerClosed);
            }
        }
        client.touch(now);
        if readable && !client.paused {
            let buf = &mut self.read_buf;
            match client.read(now, buf) {
                ReadOutcome::More => self.again.push(key),
                ReadOutcome::Drained | ReadOutcome::Closed => {}
            }
            // A handshake's progress decides who a full handshake pool evicts.
            if client.evictable && client.session.state() == SessionState::Handshaking {
                if let Some(admitted) = &client.admitted {
                    let received = client.session.stats().bytes_in;
                    shared.admission().handshake_progress(admitted, received);
                }
            }
        }
        self.mark_dirty(key);
    }

    fn hub_ready(&mut self, h: usize, now: Time) {
        let Some(hub) = self.hubs.get_mut(h) else {
            return;
        };
        let more = hub.read(now, &mut self.read_buf);
        self.drain_link_events(h, now);
        if more && !self.hubs_again.contains(&h) {
            // Budget spent: the rest next turn, after the clients had theirs.
            self.hubs_again.push(h);
        }
    }

    fn drain_link_events(&mut self, h: usize, now: Time) {
        loop {
            let event = self
                .hubs
                .get_mut(h)
                .and_then(|hub| hub.conn.as_mut())
                .and_then(|c| c.link.poll_event());
            let Some(event) = event else { return };
            self.on_link_event(h, event, now);
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The end of a turn: every touched client is driven, written and settled; every link
    /// writes what the turn queued (many sessions' messages in one write).
    fn end_turn(&mut self, now: Time) {
        loop {
            for key in std::mem::take(&mut self.dirty) {
                self.settle(key, now);
            }
            for h in 0..self.hubs.len() {
                self.flush_hub(h, now);
            }
            if self.dirty.is_empty() {
                return;
            }
        }
    }

    fn flush_hub(&mut self, h: usize, now: Time) {
        if let Some(hub) = self.hubs.get_mut(h) {
            hub.write(now);
        }
        self.drain_link_events(h, now);
    }

    /// Drives a client's session, writes its bytes, returns credit, pauses or resumes reading,
    /// re-arms its timer, and removes it once it is over.
    fn settle(&mut self, key: usize, now: Time) {
        let shared = Arc::clone(&self.shared);
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        client.dirty = false;
        relay::drive(client, &mut self.hubs, &shared, now);
        if client.evictable && client.session.state() != SessionState::Handshaking {
            client.evictable = false;
            if let Some(admitted) = &client.admitted {
                self.handshaking.remove(&admitted.id());
            }
        }
        let failed = client.write().is_err();
        if client.owed > 0 && client.session.pending_transmit() <= PAUSE_ABOVE / 4 {
            let owed = std::mem::take(&mut client.owed);
            if let Some(conn) = client
                .home
                .and_then(|h| self.hubs.get_mut(usize::from(h)))
                .and_then(|hub| hub.conn.as_mut())
            {
                conn.link.release(client.id, owed);
            }
        }
        let was_paused = client.paused;
        client.paused = client.session.pending_transmit() > PAUSE_ABOVE;
        if was_paused && !client.paused {
            self.again.push(key);
        }
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let over = client.session.state() == SessionState::Closed;
        if failed || (over && !client.wants_write()) || client.close_by.is_some_and(|t| now >= t) {
            self.remove(key, now);
            return;
        }
        if over && client.close_by.is_none() {
            client.close_by = Some(now + FLUSH_TIMEOUT);
        }
        self.arm(key, now);
    }

    /// Closes the handshake admission id `id` (its slot went to a newcomer), here or, through
    /// [`Shared::evictions`], in the loop that holds it.
    fn evict(&mut self, id: u64, now: Time) {
        let Some(key) = self.handshaking.remove(&id) else {
            self.shared.evictions().push((id, now));
            self.shared.evictions_pending.store(true, Ordering::Relaxed);
            return;
        };
        if let Some(client) = self.clients.get_mut(key) {
            if client.session.state() == SessionState::Handshaking {
                client.session.close(now, CloseReason::HandshakeEvicted);
                let metrics = &self.shared.metrics;
                metrics.inc(&metrics.handshakes_evicted);
                self.mark_dirty(key);
            }
        }
    }

    /// Evictions other loops could not carry out: this loop's are closed, stale ones dropped.
    fn take_evictions(&mut self, now: Time) {
        let mine: Vec<u64> = {
            let mut list = self.shared.evictions();
            let mut mine = Vec::new();
            list.retain(|&(id, at)| {
                if self.handshaking.contains_key(&id) {
                    mine.push(id);
                    false
                } else {
                    now.saturating_since(at) < EVICTION_TTL
                }
            });
            if list.is_empty() {
                self.shared
                    .evictions_pending
                    .store(false, Ordering::Relaxed);
            }
            mine
        };
        for id in mine {
            self.evict(id, now);
        }
    }

    fn remove(&mut self, key: usize, now: Time) {
        if !self.clients.contains(key) {
            return;
        }
        let mut client = self.clients.remove(key);
        let shared = Arc::clone(&self.shared);
        if client.session.state() != SessionState::Closed {
            client.session.close(now, CloseReason::PeerClosed);
        }
        relay::drive(&mut client, &mut self.hubs, &shared, now);
        client.finish(CloseReason::PeerClosed);
        if let Some(stream) = client.stream() {
            let _ = self.poll.registry().deregister(stream);
        }
        if let Some(admitted) = client.admitted.take() {
            self.handshaking.remove(&admitted.id());
            shared.admission().release(admitted);
        }
        shared.metrics.gauge(&shared.metrics.connections_open, -1);
    }
}
