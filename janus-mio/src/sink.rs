//! A relay sink: the hub side of the protocol answering every request itself (each `Data` is
//! echoed back on its tunnel), with no tunnels, registry or backends behind it. It measures the
//! edge alone (`janus-edge sink`, see the README's benchmarks) and serves tests.

use std::{
    io::{self, Read as _, Write as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use janus_core::relay::{Link, LinkCloseReason, LinkConfig, LinkEvent, Outgoing};
use mio::{Events, Interest, Poll, Token, net::TcpListener, net::TcpStream};
use rand_core::RngCore as _;
use slab::Slab;

use crate::clock;

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    link: Link,
}

/// Serves relay links on `listener` until `stop` turns true.
pub fn run(
    listener: std::net::TcpListener,
    config: Arc<LinkConfig>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = clock::now();
        let mut touched = Vec::new();
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let entry = conns.vacant_entry();
                    let key = entry.key();
                    poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let mut challenge = [0u8; janus_core::relay::CHALLENGE_LEN];
                    rand_core::OsRng.fill_bytes(&mut challenge);
                    let link = Link::new(Arc::clone(&config), now, challenge);
                    entry.insert(Conn { stream, link });
                    touched.push(key);
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        conn.link.close(now, LinkCloseReason::PeerClosed);
                        break;
                    }
                    Ok(n) => conn
                        .link
                        .handle_bytes(now, buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        conn.link.close(now, LinkCloseReason::PeerClosed);
                        break;
                    }
                }
            }
            touched.push(key);
        }
        // Heartbeats (an idle edge would otherwise time the link out) and the hello deadline.
        for (key, conn) in conns.iter_mut() {
            if conn.link.poll_timeout().is_some_and(|t| t <= now) {
                conn.link.handle_timeout(now);
                touched.push(key);
            }
        }
        for key in touched {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut closed = false;
            while let Some(event) = conn.link.poll_event() {
                match event {
                    LinkEvent::Data {
                        session,
                        tunnel,
                        message,
                        cost,
                    } => {
                        let _ = conn
                            .link
                            .send(now, session, Outgoing::Data { tunnel, message });
                        conn.link.release(session, cost);
                    }
                    LinkEvent::Closed(_) => closed = true,
                    _ => {}
                }
            }
            while !conn.link.transmit().is_empty() {
                match conn.stream.write(conn.link.transmit()) {
                    Ok(n) if n > 0 => conn.link.advance_transmit(n),
                    _ => break,
                }
            }
            if closed {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
    Ok(())
}
