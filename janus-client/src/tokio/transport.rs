//! The two transports of the async client: a TCP stream carrying frames back to back, or a
//! WebSocket carrying one frame per binary message (spec §1.3).

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use janus_core::frame::{Frames, frame_of_message};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest as _, http::HeaderValue},
};

use crate::{Config, Endpoint};

/// Bytes asked of the kernel per TCP read: a full frame plus its prefix.
const READ_CHUNK: usize = 16 * 1024 + 4;

/// An open connection to the gateway.
pub(super) enum Transport {
    Tcp { stream: TcpStream, buf: BytesMut },
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl Transport {
    /// Opens the socket (and upgrades it, for a WebSocket endpoint).
    pub(super) async fn open(config: &Config) -> io::Result<Self> {
        match &config.endpoint {
            Endpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr.as_str()).await?;
                stream.set_nodelay(true)?;
                Ok(Self::Tcp {
                    stream,
                    buf: BytesMut::new(),
                })
            }
            Endpoint::WebSocket(url) => {
                let mut request = url
                    .as_str()
                    .into_client_request()
                    .map_err(io::Error::other)?;
                if let Some(origin) = &config.origin {
                    let value = HeaderValue::from_str(origin).map_err(io::Error::other)?;
                    request.headers_mut().insert("Origin", value);
                }
                let (ws, _) = tokio_tungstenite::connect_async(request)
                    .await
                    .map_err(io::Error::other)?;
                if let MaybeTlsStream::Plain(s) = ws.get_ref() {
                    s.set_nodelay(true)?;
                }
                Ok(Self::Ws(Box::new(ws)))
            }
        }
    }

    /// The next bytes from the gateway; `None` when it closed the connection. Cancel-safe.
    pub(super) async fn read(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Self::Tcp { stream, buf } => {
                buf.reserve(READ_CHUNK);
                match stream.read_buf(buf).await? {
                    0 => Ok(None),
                    _ => Ok(Some(buf.split().freeze())),
                }
            }
            Self::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(Message::Binary(message))) => {
                        // A message without a whole frame is malformed: the length prefix check
                        // in the session closes the connection on the bytes we pass instead.
                        let frame =
                            frame_of_message(message.clone()).map_or(message, BytesMut::freeze);
                        return Ok(Some(frame));
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "text message from the gateway",
                        ));
                    }
                    // Pings are answered by tungstenite.
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// Writes a run of whole frames (one message each on a WebSocket).
    pub(super) async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Self::Tcp { stream, .. } => stream.write_all(&bytes).await,
            Self::Ws(ws) => {
                for frame in Frames(bytes) {
                    ws.feed(Message::Binary(frame))
                        .await
                        .map_err(io::Error::other)?;
                }
                ws.flush().await.map_err(io::Error::other)
            }
        }
    }

    /// Closes politely (a WebSocket Close frame); errors do not matter any more.
    pub(super) async fn shutdown(self) {
        match self {
            Self::Tcp { mut stream, .. } => {
                let _ = stream.shutdown().await;
            }
            Self::Ws(mut ws) => {
                let _ = WebSocketStream::close(&mut *ws, None).await;
            }
        }
    }
}
