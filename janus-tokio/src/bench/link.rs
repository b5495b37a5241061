//! One client connection's transport: a TCP stream carrying frames back to back, or a WebSocket
//! carrying exactly one length-prefixed frame per binary message (spec §1.3). Every operation is
//! bounded by a deadline and reports failures as [`Failure`]s, never panics.

use std::{io, net::SocketAddr};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use janus_core::frame::{DEFAULT_MAX_FRAME_LEN, Frames, wire_len};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::{Instant, timeout_at},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest as _,
        http::{HeaderValue, header::ORIGIN},
    },
};

use super::stats::{Failure, Live};

/// Read buffer growth step, bytes: one maximum-size frame.
const READ_CHUNK: usize = wire_len(DEFAULT_MAX_FRAME_LEN);

/// How long a polite close may take before the socket is simply dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Where every connection of the run goes: the address resolved once at start-up, plus the URL
/// for a WebSocket upgrade.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub ws_url: Option<String>,
}

/// An open connection.
#[derive(Debug)]
pub(crate) enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl Link {
    /// Connects (and upgrades, for WebSocket) before `deadline`.
    pub async fn connect(endpoint: &Endpoint, deadline: Instant) -> Result<Link, Failure> {
        let stream = match timeout_at(deadline, TcpStream::connect(endpoint.addr)).await {
            Err(_) => return Err(Failure::ConnectTimeout),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(Failure::ConnectRefused);
            }
            Ok(Err(e)) => return Err(Failure::ConnectError(e.kind())),
            Ok(Ok(stream)) => stream,
        };
        // Small frames are the workload: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let Some(url) = &endpoint.ws_url else {
            return Ok(Link::Tcp(stream));
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| Failure::WsUpgrade(None))?;
        // The upstream gateway accepts exactly the literal `*` (spec §1.3), as its own client sends.
        request
            .headers_mut()
            .insert(ORIGIN, HeaderValue::from_static("*"));
        match timeout_at(deadline, tokio_tungstenite::client_async(request, stream)).await {
            Err(_) => Err(Failure::ConnectTimeout),
            Ok(Ok((ws, _response))) => Ok(Link::Ws(Box::new(ws))),
            Ok(Err(tungstenite::Error::Http(response))) => {
                Err(Failure::WsUpgrade(Some(response.status().as_u16())))
            }
            Ok(Err(tungstenite::Error::Io(e))) => Err(Failure::Io(e.kind())),
            Ok(Err(_)) => Err(Failure::WsUpgrade(None)),
        }
    }

    /// Writes `bytes` (whole frames, as `ClientSession::poll_transmit` returns them) before
    /// `deadline`. Over WebSocket each frame becomes one binary message.
    pub async fn write(
        &mut self,
        bytes: Bytes,
        live: &Live,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let len = bytes.len() as u64;
        let written = match self {
            Link::Tcp(stream) => {
                timeout_at(deadline, async {
                    stream
                        .write_all(&bytes)
                        .await
                        .map_err(|e| Failure::Io(e.kind()))
                })
                .await
            }
            Link::Ws(ws) => {
                timeout_at(deadline, async {
                    let mut frames = Frames(bytes);
                    for frame in frames.by_ref() {
                        ws.feed(Message::Binary(frame)).await.map_err(ws_failure)?;
                    }
                    // A truncated tail (only tests write one) goes out as it is.
                    if !frames.0.is_empty() {
                        ws.feed(Message::Binary(frames.0))
                            .await
                            .map_err(ws_failure)?;
                    }
                    ws.flush().await.map_err(ws_failure)
                })
                .await
            }
        };
        match written {
            Err(_) => Err(Failure::WriteTimeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => {
                Live::add(&live.bytes_out, len);
                Ok(())
            }
        }
    }

    /// Appends what arrives next to `buf`. `Ok(false)` means the server closed the connection;
    /// `Ok(true)` may have appended nothing (a WebSocket control message). Cancel-safe.
    pub async fn read_into(&mut self, buf: &mut BytesMut, live: &Live) -> Result<bool, Failure> {
        match self {
            Link::Tcp(stream) => {
                buf.reserve(READ_CHUNK);
                match stream.read_buf(buf).await {
                    Ok(0) => Ok(false),
                    Ok(n) => {
                        Live::add(&live.bytes_in, n as u64);
                        Ok(true)
                    }
                    Err(e) if is_disconnect(e.kind()) => Ok(false),
                    Err(e) => Err(Failure::Io(e.kind())),
                }
            }
            Link::Ws(ws) => match ws.next().await {
                None | Some(Ok(Message::Close(_))) => Ok(false),
                Some(Ok(Message::Binary(data))) => {
                    Live::add(&live.bytes_in, data.len() as u64);
                    buf.extend_from_slice(&data);
                    Ok(true)
                }
                Some(Ok(Message::Text(_))) => Err(Failure::WsTextMessage),
                // Pings are answered by tungstenite on the next read or write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(true),
                Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                )) => Ok(false),
                Some(Err(e)) => Err(ws_failure(e)),
            },
        }
    }

    /// Closes politely (TCP FIN, WebSocket Close frame), giving up after a short grace.
    pub async fn close(self) {
        let deadline = Instant::now() + CLOSE_GRACE;
        match self {
            Link::Tcp(mut stream) => {
                let _ = timeout_at(deadline, stream.shutdown()).await;
            }
            Link::Ws(mut ws) => {
                let _ = timeout_at(deadline, WebSocketStream::close(&mut ws, None)).await;
            }
        }
    }
}

fn is_disconnect(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn ws_failure(e: tungstenite::Error) -> Failure {
    match e {
        tungstenite::Error::Io(e) => Failure::Io(e.kind()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Failure::Io(io::ErrorKind::BrokenPipe)
        }
        _ => Failure::WsProtocol,
    }
}
