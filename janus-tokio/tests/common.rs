//! Shared by the integration tests: a gateway on free ports in front of the demo backend, and
//! test clients speaking the protocol through janus-core's client over real sockets.
#![allow(
    dead_code,
    missing_debug_implementations,
    clippy::large_enum_variant,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use janus_core::{
    Time,
    client::{ClientConfig, ClientEvent, ClientSession, LogoutCode, Outgoing},
    testing::{TEST_TOKEN_KEY, test_client_config, test_server_config},
    token::TokenKey,
};
use janus_proto::{gate::intra::v1::AuthToken, packet::Packet};
use janus_tokio::{
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::{Gateway, GatewaySettings},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(5);

pub fn now() -> Time {
    janus_tokio::clock::now()
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh token (the gateway takes a token once) for `uid` of `color`.
pub fn token(uid: i64, color: &str) -> String {
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = AuthToken {
        rand: format!("r{serial:07}"),
        color: color.into(),
        account_id: uid,
        server_id: 1,
        timeout: now().unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&serial.to_le_bytes());
    nonce[8..].copy_from_slice(&(uid as u32).to_le_bytes());
    TokenKey::new(TEST_TOKEN_KEY).unwrap().seal(&t, nonce)
}

pub fn settings(backend: SocketAddr) -> GatewaySettings {
    let mut s = GatewaySettings::local(Arc::new(test_server_config(true)), &backend.to_string());
    s.connect_timeout = Duration::from_secs(1);
    s
}

/// One HTTP/1.1 request to the admin port: the status code and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned());
    (status, body)
}

/// A demo backend and a gateway in front of it.
pub struct Rig {
    pub demo: DemoHandle,
    pub gateway: Gateway,
}

impl Rig {
    pub async fn start() -> Rig {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut GatewaySettings)) -> Rig {
        let demo = DemoBackend::new(DemoConfig::default())
            .spawn_local()
            .await
            .unwrap();
        let mut s = settings(demo.addr());
        edit(&mut s);
        let gateway = Gateway::start(s).await.unwrap();
        Rig { demo, gateway }
    }

    pub fn tcp(&self) -> SocketAddr {
        self.gateway.addrs().tcp.unwrap()
    }
}

/// A TCP connection to `addr` from source address `source` (port chosen by the kernel).
pub async fn connect_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// How a test client reaches the gateway.
pub enum Wire {
    Tcp(TcpStream),
    Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>),
}

/// A test client's configuration: the test-vector keys, and no heartbeats of its own, so the
/// backend sees exactly what the test sends.
pub fn quiet_config(token: String) -> ClientConfig {
    let mut config = test_client_config(true, token);
    config.heartbeat_interval = None;
    config
}

/// How the gateway answered one request.
#[derive(Debug)]
pub enum Answer {
    /// Its reply.
    Reply(Packet),
    /// `SCServerUnexpectedErr`: the request (`module`, `seq`) could not be served.
    Failed {
        module: i32,
        seq: i32,
        message: String,
    },
}

impl Answer {
    /// The reply's data; `None` for a failure.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Answer::Reply(p) => Some(&p.data),
            Answer::Failed { .. } => None,
        }
    }
}

/// A protocol client over a real socket. It runs the client's timers (heartbeats, request
/// timeouts) while it waits for events.
pub struct TestClient {
    pub wire: Wire,
    pub session: ClientSession,
    pub uid: i64,
    pub local: SocketAddr,
    /// Bytes received from the gateway.
    pub received: usize,
    closed: bool,
}

impl TestClient {
    pub async fn tcp(addr: SocketAddr, uid: i64) -> TestClient {
        Self::tcp_with(addr, uid, quiet_config(token(uid, "local"))).await
    }

    pub async fn tcp_color(addr: SocketAddr, uid: i64, color: &str) -> TestClient {
        Self::tcp_with(addr, uid, quiet_config(token(uid, color))).await
    }

    pub async fn tcp_with(addr: SocketAddr, uid: i64, config: ClientConfig) -> TestClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::over_tcp(stream, uid, config).await
    }

    /// A client connecting from `source` (any 127.x address works on Linux loopback), so tests
    /// can play many hosts.
    pub async fn tcp_from(addr: SocketAddr, source: std::net::IpAddr, uid: i64) -> TestClient {
        let stream = connect_from(addr, source).await.unwrap();
        Self::over_tcp(stream, uid, quiet_config(token(uid, "local"))).await
    }

    pub async fn over_tcp(stream: TcpStream, uid: i64, config: ClientConfig) -> TestClient {
        let local = stream.local_addr().unwrap();
        let mut c = TestClient {
            wire: Wire::Tcp(stream),
            session: ClientSession::new(&config, now(), [5; 32]),
            uid,
            local,
            received: 0,
            closed: false,
        };
        c.establish().await;
        c
    }

    pub async fn ws(url: &str, uid: i64) -> TestClient {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let local = match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
            _ => unreachable!(),
        };
        let config = quiet_config(token(uid, "local"));
        let mut c = TestClient {
            wire: Wire::Ws(ws),
            session: ClientSession::new(&config, now(), [6; 32]),
            uid,
            local,
            received: 0,
            closed: false,
        };
        c.establish().await;
        c
    }

    /// A client over a connection the test opened itself (after a PROXY header, say).
    pub async fn over(wire: Wire, local: SocketAddr, uid: i64, config: ClientConfig) -> TestClient {
        let mut c = TestClient {
            wire,
            session: ClientSession::new(&config, now(), [7; 32]),
            uid,
            local,
            received: 0,
            closed: false,
        };
        c.establish().await;
        c
    }

    /// A client that has sent its handshake over `stream` and read nothing yet (to see a
    /// refusal: its next event is the handshake's outcome).
    pub async fn handshake_sent(stream: TcpStream, uid: i64, config: ClientConfig) -> TestClient {
        let local = stream.local_addr().unwrap();
        let mut c = TestClient {
            wire: Wire::Tcp(stream),
            session: ClientSession::new(&config, now(), [8; 32]),
            uid,
            local,
            received: 0,
            closed: false,
        };
        c.flush().await;
        c
    }

    /// A client whose session the test started itself (a resume, say): its first bytes are sent
    /// and nothing is awaited.
    pub async fn started(
        wire: Wire,
        local: SocketAddr,
        uid: i64,
        session: ClientSession,
    ) -> TestClient {
        let mut c = TestClient {
            wire,
            session,
            uid,
            local,
            received: 0,
            closed: false,
        };
        c.flush().await;
        c
    }

    async fn establish(&mut self) {
        self.flush().await;
        match self.next_event().await {
            Some(ClientEvent::Established { start_index, .. }) => assert_eq!(start_index, 1),
            other => panic!("handshake failed: {other:?}"),
        }
    }

    pub async fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            self.write_raw(bytes).await;
        }
    }

    /// Writes bytes as they are (one WebSocket message per frame).
    pub async fn write_raw(&mut self, bytes: Bytes) {
        match &mut self.wire {
            Wire::Tcp(s) => s.write_all(&bytes).await.unwrap(),
            Wire::Ws(ws) => {
                let mut rest = bytes;
                while rest.len() >= 4 {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    let frame = rest.split_to((4 + len).min(rest.len()));
                    ws.send(Message::Binary(frame)).await.unwrap();
                }
            }
        }
    }

    pub async fn send(&mut self, module: i32, seq: i32, obj: i64, data: &[u8]) -> i32 {
        self.send_out(Outgoing {
            module,
            seq,
            obj,
            data: Bytes::copy_from_slice(data),
            ..Default::default()
        })
        .await
    }

    pub async fn send_out(&mut self, out: Outgoing) -> i32 {
        let index = self.session.send(now(), out).unwrap();
        self.flush().await;
        index
    }

    /// The next event, or None when the connection closed (or nothing came within WAIT).
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.session.poll_event() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            // The client's own deadline, on the gateway's clock.
            let wake = match self.session.poll_timeout() {
                Some(t) => deadline.min(tokio::time::Instant::now() + t.saturating_since(now())),
                None => deadline,
            };
            let read = tokio::time::timeout_at(wake, async {
                match &mut self.wire {
                    Wire::Tcp(s) => {
                        let mut buf = BytesMut::with_capacity(64 * 1024);
                        match s.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => None,
                            Ok(_) => Some(buf.freeze()),
                        }
                    }
                    Wire::Ws(ws) => loop {
                        match ws.next().await {
                            Some(Ok(Message::Binary(b))) => break Some(b),
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                            Some(Ok(_)) => {}
                        }
                    },
                }
            })
            .await;
            match read {
                Ok(Some(bytes)) => {
                    self.received += bytes.len();
                    self.session.handle_bytes(now(), &bytes);
                    // What the bytes made the client send (a resume's re-sent requests, acks).
                    self.flush().await;
                }
                Ok(None) => self.closed = true,
                Err(_) if wake < deadline => {
                    self.session.handle_timeout(now());
                    self.flush().await;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next packet, skipping periodic pushes unless `pushes`.
    pub async fn next_packet(&mut self) -> Option<Packet> {
        loop {
            match self.next_event().await? {
                ClientEvent::Packet(p) => return Some(p),
                ClientEvent::Closed(_) => return None,
                _ => {}
            }
        }
    }

    /// Waits for the answer to the request at `index`, reply or failure.
    pub async fn answer(&mut self, index: i32) -> Answer {
        loop {
            match self.next_event().await {
                Some(ClientEvent::Packet(p)) if p.index == index => return Answer::Reply(p),
                Some(ClientEvent::RequestFailed {
                    index: i,
                    module,
                    seq,
                    message,
                }) if i == index => {
                    return Answer::Failed {
                        module,
                        seq,
                        message,
                    };
                }
                Some(ClientEvent::RequestTimeout { index: i, .. }) if i == index => {
                    panic!("request {index} timed out")
                }
                Some(ClientEvent::Closed(e)) => panic!("closed before the answer: {e}"),
                Some(_) => {}
                None => panic!("connection closed before the answer"),
            }
        }
    }

    /// Waits for the reply with `index`; a failed request fails the test.
    pub async fn reply(&mut self, index: i32) -> Packet {
        match self.answer(index).await {
            Answer::Reply(p) => p,
            failed => panic!("request {index} failed: {failed:?}"),
        }
    }

    /// Whether the gateway closes the connection within WAIT, the logout it sent before (if
    /// any), and every other event before the close.
    pub async fn closed_after(&mut self) -> (bool, Option<LogoutCode>, Vec<ClientEvent>) {
        let mut logout = None;
        let mut events = Vec::new();
        loop {
            match self.next_event().await {
                Some(ClientEvent::Logout(code)) => logout = Some(code),
                Some(ClientEvent::Closed(_)) => {}
                Some(event) => events.push(event),
                None => return (self.closed, logout, events),
            }
        }
    }
}
