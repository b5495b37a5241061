//! WebSocket: each binary message carries exactly one frame (spec §1.3); a text message closes
//! the session. Writes go through a writer task, one binary message per frame, ending with a
//! close frame whose code the core chose for the session's close reason.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{
    SinkExt as _, StreamExt as _,
    stream::{SplitSink, SplitStream},
};
use janus_core::{
    CloseReason,
    frame::{Frames, frame_of_message},
    limit::Admitted,
    session::Session,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use super::{
    Conn,
    driver::{self, Input, Reader, Writer},
};
use crate::gateway::Shared;

/// How long the writer may take to send the close frame and close the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the connection waits for its writer to finish.
const WRITER_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves one WebSocket connection (already upgraded) until its session ends.
pub async fn serve_ws<S>(
    shared: Arc<Shared>,
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    worker_id: u64,
    admitted: Admitted,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, cmds) = Conn::direct(shared, peer, worker_id, admitted);
    let (sink, stream) = ws.split();
    // Capacity 1: bytes waiting for a slow client stay in the session, where they count
    // against its outbound budget.
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(1);
    let (close_tx, close_rx) = oneshot::channel::<CloseReason>();
    let task = tokio::spawn(write_messages(sink, out_rx, close_rx));
    let writer = WsWriter {
        out: out_tx,
        close: close_tx,
        task,
    };
    driver::run(conn, cmds, WsReader { stream }, writer).await;
}

struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
}

impl<S> Reader for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn read(&mut self) -> Input {
        match self.stream.next().await {
            Some(Ok(Message::Binary(payload))) => match frame_of_message(payload) {
                Some(frame) => Input::Data(frame),
                None => Input::Violation(CloseReason::MalformedFrame),
            },
            Some(Ok(Message::Text(_))) => Input::Violation(CloseReason::MalformedFrame),
            // Pings are answered by tungstenite; pongs and raw frames carry nothing for us.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Input::Nothing,
            Some(Ok(Message::Close(_)) | Err(_)) | None => Input::Closed,
        }
    }
}

struct WsWriter {
    out: mpsc::Sender<Bytes>,
    close: oneshot::Sender<CloseReason>,
    task: JoinHandle<()>,
}

impl Writer for WsWriter {
    async fn ready(&mut self) -> bool {
        // This task is the only sender, so the slot seen free stays free until `write`.
        self.out.reserve().await.is_ok()
    }

    fn write(&mut self, session: &mut Session) -> io::Result<()> {
        let Some(bytes) = session.poll_transmit() else {
            return Ok(());
        };
        self.out
            .try_send(bytes)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    async fn finish(self, reason: CloseReason) {
        let _ = self.close.send(reason);
        drop(self.out);
        let _ = tokio::time::timeout(WRITER_TIMEOUT, self.task).await;
    }
}

/// The writer task: one binary message per frame, then the close frame.
async fn write_messages<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut out: mpsc::Receiver<Bytes>,
    close: oneshot::Receiver<CloseReason>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(bytes) = out.recv().await {
        for frame in Frames(bytes) {
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let reason = close.await.unwrap_or(CloseReason::PeerClosed);
    let frame = CloseFrame {
        code: CloseCode::from(reason.ws_close_code()),
        reason: reason.as_str().into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    let _ = sink.close().await;
}
