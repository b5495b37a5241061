//! TCP: frames back to back on the stream, read and written on socket readiness, so an idle
//! connection holds no read or write buffer.

use std::{io, net::SocketAddr, sync::Arc};

use bytes::BytesMut;
use janus_core::{CloseReason, limit::Admitted, session::Session};
use tokio::{
    io::AsyncWriteExt as _,
    net::{
        TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
};

use super::{
    Conn,
    driver::{self, Input, Reader, Writer},
};
use crate::gateway::Shared;

/// Bytes read per readiness event at most, so one busy connection cannot starve the rest of its
/// worker thread.
const READ_BUDGET: usize = 64 * 1024;
/// Read buffer growth step (allocated only when there is something to read).
const READ_CHUNK: usize = 4096;
/// How long the final shutdown of the socket may take.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves one TCP connection until its session ends.
pub async fn serve_tcp(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    worker_id: u64,
    admitted: Admitted,
) {
    let _ = stream.set_nodelay(true);
    let (conn, cmds) = Conn::direct(shared, peer, worker_id, admitted);
    let (read, write) = stream.split();
    driver::run(
        conn,
        cmds,
        TcpReader {
            half: read,
            eof: false,
        },
        TcpWriter { half: write },
    )
    .await;
}

struct TcpReader<'a> {
    half: ReadHalf<'a>,
    /// The stream ended after the last bytes returned.
    eof: bool,
}

impl Reader for TcpReader<'_> {
    async fn read(&mut self) -> Input {
        loop {
            if self.eof {
                return Input::Closed;
            }
            if self.half.readable().await.is_err() {
                return Input::Closed;
            }
            // No await below: once readiness is seen, the bytes are read and returned in the
            // same poll, so dropping this future never loses data.
            let mut buf = BytesMut::new();
            let mut total = 0;
            loop {
                if buf.capacity() == buf.len() {
                    buf.reserve(READ_CHUNK);
                }
                match self.half.try_read_buf(&mut buf) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        total += n;
                        if total >= READ_BUDGET {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.eof = true;
                        break;
                    }
                }
            }
            if !buf.is_empty() {
                return Input::Data(buf);
            }
            // A spurious wake-up: wait again.
        }
    }
}

struct TcpWriter<'a> {
    half: WriteHalf<'a>,
}

impl Writer for TcpWriter<'_> {
    async fn ready(&mut self) -> bool {
        self.half.writable().await.is_ok()
    }

    fn write(&mut self, session: &mut Session) -> io::Result<()> {
        match self.half.try_write(session.transmit()) {
            Ok(n) => {
                session.advance_transmit(n);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn finish(mut self, _reason: CloseReason) {
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.half.shutdown()).await;
    }
}
