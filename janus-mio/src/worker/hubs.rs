//! An event loop's links to the hubs: connect, reconnect with jittered backoff, read and write,
//! and the choice of hub for a session.

use std::{
    io::{self, Read as _, Write as _},
    net::ToSocketAddrs as _,
    sync::Arc,
    time::Duration,
};

use janus_core::{
    Time,
    relay::{Link, LinkCloseReason, LinkConfig},
};
use mio::{Interest, Registry, Token, net::TcpStream};
use rand_core::RngCore;

/// Bytes read from one link per turn at most (a link carries every session of the loop, so it
/// gets a larger share than a client).
pub const LINK_READ_BUDGET: usize = 1 << 20;

/// A live connection to a hub.
pub struct HubConn {
    pub stream: TcpStream,
    pub link: Link,
    /// Authenticated both ways (sessions may be opened).
    pub up: bool,
}

/// One configured hub, as seen from one event loop.
pub struct Hub {
    pub addr: String,
    pub token: Token,
    pub conn: Option<HubConn>,
    /// When to try connecting again (while `conn` is `None`).
    pub retry_at: Time,
    /// The next backoff delay.
    pub backoff: Duration,
    /// Sessions open on it.
    pub sessions: usize,
}

impl Hub {
    pub fn new(addr: String, token: Token, now: Time, first_backoff: Duration) -> Self {
        Self {
            addr,
            token,
            conn: None,
            retry_at: now,
            backoff: first_backoff,
            sessions: 0,
        }
    }

    /// Whether sessions may be opened on it.
    pub fn is_up(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.up && c.link.is_established())
    }

    /// Starts connecting (the link queues its `Hello` at once; its handshake deadline bounds the
    /// connect too). A failure schedules the next try.
    pub fn connect(
        &mut self,
        registry: &Registry,
        config: &Arc<LinkConfig>,
        now: Time,
        rng: &mut impl RngCore,
        backoff_max: Duration,
    ) {
        let addr = self.addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        let stream = addr.and_then(|a| TcpStream::connect(a).ok());
        let Some(mut stream) = stream else {
            self.schedule_retry(now, rng, backoff_max);
            return;
        };
        let _ = stream.set_nodelay(true);
        if registry
            .register(
                &mut stream,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.schedule_retry(now, rng, backoff_max);
            return;
        }
        let mut challenge = [0u8; janus_core::relay::CHALLENGE_LEN];
        rng.fill_bytes(&mut challenge);
        let link = Link::new(Arc::clone(config), now, challenge);
        self.conn = Some(HubConn {
            stream,
            link,
            up: false,
        });
    }

    /// The next connect attempt after a failure: the backoff, ±50 % jitter (so the edges of a
    /// fleet do not reconnect in step), doubling up to `max`.
    pub fn schedule_retry(&mut self, now: Time, rng: &mut impl RngCore, max: Duration) {
        let base = self.backoff.as_millis().max(1) as u64;
        let jitter = rng.next_u64() % base.max(1);
        let delay = Duration::from_millis(base / 2 + jitter);
        self.retry_at = now + delay;
        self.backoff = (self.backoff * 2).min(max);
    }

    /// Reads what the hub sent into the link. `true` when there may be more (budget spent).
    pub fn read(&mut self, now: Time, buf: &mut [u8]) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        let mut total = 0;
        loop {
            match conn.stream.read(buf) {
                Ok(0) => {
                    conn.link.close(now, LinkCloseReason::PeerClosed);
                    return false;
                }
                Ok(n) => {
                    conn.link
                        .handle_bytes(now, buf.get(..n).unwrap_or_default());
                    total += n;
                    if total >= LINK_READ_BUDGET {
                        return true;
                    }
                    // A short read drained the socket (see `Client::read`).
                    if n < buf.len() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Not connected yet (connect in progress) reads as an error on some systems.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(_) => {
                    conn.link.close(now, LinkCloseReason::PeerClosed);
                    return false;
                }
            }
        }
    }

    /// Writes what the link has queued, as far as the socket takes it.
    pub fn write(&mut self, now: Time) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        loop {
            let pending = conn.link.transmit();
            if pending.is_empty() {
                return;
            }
            match conn.stream.write(pending) {
                Ok(0) => {
                    conn.link.close(now, LinkCloseReason::PeerClosed);
                    return;
                }
                Ok(n) => conn.link.advance_transmit(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.link.close(now, LinkCloseReason::PeerClosed);
                    // Nothing more can go out.
                    let n = conn.link.transmit().len();
                    conn.link.advance_transmit(n);
                    return;
                }
            }
        }
    }
}

/// The hub for a new session: the live one with the fewest sessions.
pub fn pick(hubs: &[Hub]) -> Option<usize> {
    hubs.iter()
        .enumerate()
        .filter(|(_, h)| h.is_up())
        .min_by_key(|(_, h)| h.sessions)
        .map(|(i, _)| i)
}
