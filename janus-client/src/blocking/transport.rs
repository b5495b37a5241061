//! The two transports of the blocking client, each split into a reading half (the client's
//! thread) and a writing half (whoever sends, under the client's lock).

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream, ToSocketAddrs},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use janus_core::frame::{Frames, frame_of_message};
use tungstenite::{
    Message, WebSocket,
    client::IntoClientRequest as _,
    http::HeaderValue,
    protocol::{Role, WebSocketConfig},
};

use crate::{Config, Endpoint};

/// Bytes asked of the kernel per TCP read: a full frame plus its prefix.
const READ_CHUNK: usize = 16 * 1024 + 4;

/// The reading half.
pub(super) enum Reader {
    Tcp { stream: TcpStream, buf: Vec<u8> },
    Ws(Box<WebSocket<ReadOnly>>),
}

/// The writing half.
pub(super) enum Writer {
    Tcp(TcpStream),
    Ws(Box<WebSocket<TcpStream>>),
}

/// What a read brought.
pub(super) enum Incoming {
    Bytes(Bytes),
    /// Nothing before the read timeout.
    Idle,
    /// The gateway closed the connection.
    Closed,
}

/// The reading half's socket: its writes go nowhere. The writing half owns the only way to
/// write, so frames never interleave; what tungstenite would write from the reading half are
/// replies to pings (the gateway sends none, spec §1.3) and to a Close (the connection is shut
/// down by the writing half right after).
pub(super) struct ReadOnly(TcpStream);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the socket (upgrading it for a WebSocket endpoint) within the connect timeout.
pub(super) fn open(config: &Config) -> io::Result<(Reader, Writer)> {
    let (addr, url) = match &config.endpoint {
        Endpoint::Tcp(addr) => (addr.clone(), None),
        Endpoint::WebSocket(url) => (ws_authority(url)?, Some(url)),
    };
    let stream = connect(&addr, config.connect_timeout)?;
    stream.set_nodelay(true)?;
    let Some(url) = url else {
        let reader = stream.try_clone()?;
        return Ok((
            Reader::Tcp {
                stream: reader,
                buf: vec![0; READ_CHUNK],
            },
            Writer::Tcp(stream),
        ));
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(io::Error::other)?;
    if let Some(origin) = &config.origin {
        let value = HeaderValue::from_str(origin).map_err(io::Error::other)?;
        request.headers_mut().insert("Origin", value);
    }
    // The upgrade runs on a clone under the connect timeout; the gateway says nothing before
    // the client's handshake frame, so no frame bytes can be left in the upgrade's buffer.
    let upgrade = stream.try_clone()?;
    upgrade.set_read_timeout(Some(config.connect_timeout))?;
    upgrade.set_write_timeout(Some(config.connect_timeout))?;
    tungstenite::client::client(request, upgrade).map_err(io::Error::other)?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    let ws_config = Some(WebSocketConfig::default());
    let reader = WebSocket::from_raw_socket(ReadOnly(stream.try_clone()?), Role::Client, ws_config);
    let writer = WebSocket::from_raw_socket(stream, Role::Client, ws_config);
    Ok((Reader::Ws(Box::new(reader)), Writer::Ws(Box::new(writer))))
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} did not resolve"));
    for candidate in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `host:port` of a `ws://` URL (port 80 when absent).
fn ws_authority(url: &str) -> io::Result<String> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad URL {url}"));
    let rest = url.strip_prefix("ws://").ok_or_else(invalid)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid());
    }
    let has_port = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside brackets.
        Some((_, port)) => !port.contains(']'),
        None => false,
    };
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

impl Reader {
    /// Reads for at most `wait`.
    pub(super) fn read(&mut self, wait: Duration) -> io::Result<Incoming> {
        let wait = Some(wait.max(Duration::from_millis(1)));
        match self {
            Self::Tcp { stream, buf } => {
                stream.set_read_timeout(wait)?;
                match stream.read(buf) {
                    Ok(0) => Ok(Incoming::Closed),
                    Ok(n) => Ok(Incoming::Bytes(Bytes::copy_from_slice(
                        buf.get(..n).unwrap_or_default(),
                    ))),
                    Err(e) if is_timeout(&e) => Ok(Incoming::Idle),
                    Err(e) => Err(e),
                }
            }
            Self::Ws(ws) => {
                ws.get_ref().0.set_read_timeout(wait)?;
                loop {
                    match ws.read() {
                        Ok(Message::Binary(message)) => {
                            let frame =
                                frame_of_message(message.clone()).map_or(message, BytesMut::freeze);
                            return Ok(Incoming::Bytes(frame));
                        }
                        Ok(Message::Close(_)) => return Ok(Incoming::Closed),
                        Ok(Message::Text(_)) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "text message from the gateway",
                            ));
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                            return Ok(Incoming::Idle);
                        }
                        Err(
                            tungstenite::Error::ConnectionClosed
                            | tungstenite::Error::AlreadyClosed,
                        ) => return Ok(Incoming::Closed),
                        Err(tungstenite::Error::Io(e)) => return Err(e),
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
            }
        }
    }
}

impl Writer {
    /// Writes a run of whole frames (one message each on a WebSocket).
    pub(super) fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.write_all(&bytes),
            Self::Ws(ws) => {
                for frame in Frames(bytes) {
                    ws.write(Message::Binary(frame)).map_err(ws_io)?;
                }
                ws.flush().map_err(ws_io)
            }
        }
    }

    /// Shuts the socket down both ways, which also wakes the reading half.
    pub(super) fn shutdown(&mut self) {
        match self {
            Self::Tcp(stream) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Self::Ws(ws) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                let _ = ws.get_ref().shutdown(Shutdown::Both);
            }
        }
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn websocket_urls_name_their_socket() {
        let a = |u| super::ws_authority(u).unwrap();
        assert_eq!(a("ws://127.0.0.1:7002/ws"), "127.0.0.1:7002");
        assert_eq!(a("ws://gate.example/ws?x=1"), "gate.example:80");
        assert_eq!(a("ws://[::1]:7002/ws"), "[::1]:7002");
        assert_eq!(a("ws://[::1]/ws"), "[::1]:80");
        assert!(super::ws_authority("ws:///ws").is_err());
    }
}
