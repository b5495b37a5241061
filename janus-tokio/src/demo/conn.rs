//! Accepted TCP connections, tracked so a test can cut them all at once.
//!
//! tonic runs every HTTP/2 connection on its own task, so dropping the server future leaves open
//! connections (and their tunnel streams) alive. To simulate a backend that dies mid-stream,
//! [`Connections`] keeps a duplicate handle of each accepted socket and can `shutdown(Both)` them:
//! hyper then reads EOF and drops every stream of the connection, and the gateway sees its
//! streams fail as they would if the backend process had been killed. The duplicate is closed as
//! soon as hyper drops the connection, so nothing accumulates.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Pause after a failed `accept` (for example EMFILE) so the accept loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    sockets: HashMap<u64, std::net::TcpStream>,
    /// Set by [`Connections::kill`]: later connections are cut as soon as they are accepted.
    killed: bool,
}

/// The accepted connections of one server.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    registry: Mutex<Registry>,
}

impl Connections {
    /// Connections open now.
    pub(crate) fn count(&self) -> usize {
        self.registry().sockets.len()
    }

    /// Cuts every open connection; the server keeps accepting new ones.
    pub(crate) fn reset_all(&self) -> usize {
        let sockets: Vec<_> = self.registry().sockets.drain().map(|(_, s)| s).collect();
        for socket in &sockets {
            // NotConnected just means the peer is already gone.
            let _ = socket.shutdown(Shutdown::Both);
        }
        sockets.len()
    }

    /// Cuts every open connection and every connection accepted from now on.
    pub(crate) fn kill(&self) -> usize {
        self.registry().killed = true;
        self.reset_all()
    }

    fn track(self: &Arc<Self>, stream: TcpStream) -> io::Result<TrackedStream> {
        let std_stream = stream.into_std()?;
        let duplicate = std_stream.try_clone()?;
        let stream = TcpStream::from_std(std_stream)?;
        let mut registry = self.registry();
        if registry.killed {
            let _ = duplicate.shutdown(Shutdown::Both);
        }
        let id = registry.next_id;
        registry.next_id += 1;
        registry.sockets.insert(id, duplicate);
        Ok(TrackedStream {
            stream,
            _entry: Entry {
                id,
                connections: Arc::clone(self),
            },
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Each update is a single map operation, so a poisoned lock still holds a usable map.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The accept loop as the stream of connections tonic serves.
pub(crate) fn incoming(
    listener: TcpListener,
    connections: Arc<Connections>,
) -> impl Stream<Item = io::Result<TrackedStream>> + Send + 'static {
    futures_util::stream::unfold(
        (listener, connections),
        |(listener, connections)| async move {
            let item = match listener.accept().await {
                Ok((stream, _peer)) => {
                    // Tunnel messages are small and latency-bound; a failure only costs latency.
                    let _ = stream.set_nodelay(true);
                    connections.track(stream)
                }
                Err(error) => {
                    tracing::warn!(%error, "demo backend: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    Err(error)
                }
            };
            Some((item, (listener, connections)))
        },
    )
}

/// Removes a connection's duplicate socket from the registry when hyper drops the connection.
#[derive(Debug)]
struct Entry {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.connections.registry().sockets.remove(&self.id);
    }
}

/// An accepted connection; reads and writes go straight to the socket.
#[derive(Debug)]
pub(crate) struct TrackedStream {
    stream: TcpStream,
    _entry: Entry,
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
