//! The socket halves of every connection (TCP and WebSocket alike: janus-core frames the
//! WebSocket protocol), read and written on readiness, so an idle connection holds no read or
//! write buffer and no task beyond its own.

use std::io;

use bytes::BytesMut;
use janus_core::{CloseReason, session::Transport};
use tokio::{
    io::AsyncWriteExt as _,
    net::{
        TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
};

use super::{
    Conn, Ticket,
    driver::{self, Exit, Input, Kept, Reader, Writer},
    endpoint::Endpoint,
    resume,
};

/// Bytes read per readiness event at most, so one busy connection cannot starve the rest of its
/// worker thread.
const READ_BUDGET: usize = 64 * 1024;
/// Read buffer growth step (allocated only when there is something to read).
const READ_CHUNK: usize = 4096;
/// How long the final shutdown of the socket may take.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves one connection (`transport`: TCP, or WebSocket from its upgrade request on) until
/// its session ends. `early` holds client bytes already read (after a PROXY header). Runs in the
/// connection's span.
pub async fn serve(ticket: Ticket, mut stream: TcpStream, transport: Transport, early: BytesMut) {
    let _ = stream.set_nodelay(true);
    let span = tracing::Span::current();
    let Some((mut conn, cmds)) = Conn::direct(ticket, transport, span) else {
        return;
    };
    if !early.is_empty() {
        conn.on_read(early);
    }
    let mut kept = Kept {
        conn: Box::new(conn),
        cmds,
    };
    // Session resume moves a session from socket to socket: this task keeps it (and its
    // tunnels and registrations) while its client is away and takes the next socket over.
    loop {
        let (read, write) = stream.split();
        // Boxed, as are the resume phases below: a task's future is as large as its largest
        // state, so each phase gets an allocation of its own size instead of every connection
        // paying for the largest one while it idles (issue 11's memory per idle connection).
        let run = Box::pin(driver::run(
            kept,
            TcpReader {
                half: read,
                eof: false,
            },
            TcpWriter { half: write },
        ));
        let exit = run.await;
        (kept, stream) = match exit {
            Exit::Closed => return,
            Exit::Parked(parked) => {
                drop(stream);
                match Box::pin(resume::wait_parked(parked)).await {
                    Some(next) => next,
                    None => return,
                }
            }
            Exit::Takeover(live, takeover) => resume::take_over(live, stream, *takeover),
            Exit::HandOff(new) => match Box::pin(resume::hand_off(new, stream)).await {
                Some(next) => next,
                None => return,
            },
        };
    }
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

    async fn linger(&mut self) {
        // On the heap: an array here would sit in every connection's task future for its whole
        // life, though only a closing connection uses it.
        let mut scratch = vec![0u8; 1024];
        let mut left = READ_BUDGET;
        while !self.eof && left > 0 {
            if self.half.readable().await.is_err() {
                return;
            }
            match self.half.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
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

    fn write(&mut self, endpoint: &mut Endpoint) -> io::Result<()> {
        match self.half.try_write(endpoint.transmit()) {
            Ok(n) => {
                endpoint.advance_transmit(n);
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
