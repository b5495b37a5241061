//! The async client on tokio: one task per client owns the socket and the [`Engine`]; the
//! [`Client`] handle sends it requests, and [`Events`] receives pushes, heartbeats and
//! connection changes.
//!
//! ```text
//! Client::request ─► command channel ─► task: Engine::send ─► socket
//! socket ─► task: Engine::handle_bytes ─► reply ─► the request's PendingReply
//!                                      └► Push / Heartbeat / Connected ─► Events
//! connection lost ─► Disconnected{retry_in} ─► backoff ─► fresh token ─► connect ─► Connected
//! ```
//!
//! Requests sent while the client is between connections fail at once with
//! [`RequestError::NotConnected`]; requests in flight when a connection is lost end with
//! [`RequestError::ConnectionClosed`].

mod transport;

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use janus_core::client::Outgoing;
use janus_proto::packet::Packet;
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep_until, timeout},
};

use self::transport::Transport;
use crate::{
    Backoff, Config, ConnectError, Disconnect, Engine, Event, Output, RequestError, TokenError,
    clock,
};

/// Commands queued for the client's task before it takes them: enough for a burst of requests,
/// small enough that a stalled task pushes back on the caller.
const COMMAND_CAPACITY: usize = 256;

type Answer = Result<Packet, RequestError>;
type Waiter = oneshot::Sender<Answer>;

/// Where fresh tokens come from: the account service issues one per connection (the gateway
/// takes each token once). Implemented for closures returning a future:
///
/// ```
/// # use janus_client::TokenError;
/// let tokens = || async { Ok::<_, TokenError>(String::from("…")) };
/// # fn is_source(_: impl janus_client::tokio::TokenSource) {}
/// # is_source(tokens);
/// ```
pub trait TokenSource: Send + 'static {
    /// A token for the next connection.
    fn token(&mut self) -> Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + '_>>;
}

impl<F, Fut> TokenSource for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
{
    fn token(&mut self) -> Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + '_>> {
        Box::pin(self())
    }
}

enum Command {
    Send {
        out: Outgoing,
        index: oneshot::Sender<Result<i32, RequestError>>,
        reply: Waiter,
    },
    Close(oneshot::Sender<()>),
}

/// A connected client. Cheap to clone; the connection closes when [`close`](Self::close) is
/// called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send { out, .. } => write!(f, "Send({}/{})", out.module, out.seq),
            Self::Close(_) => write!(f, "Close"),
        }
    }
}

/// The answer to one request: resolves to its reply, or why there is none.
#[derive(Debug)]
#[must_use = "a request's outcome is only seen by awaiting it"]
pub struct PendingReply {
    index: i32,
    rx: oneshot::Receiver<Answer>,
}

impl PendingReply {
    /// The request's index (`Packet.index`), which its reply carries too.
    pub fn index(&self) -> i32 {
        self.index
    }
}

impl Future for PendingReply {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(RequestError::Closed)))
    }
}

/// The client's events, in order (see [`Event`]). Ends after `Disconnected { retry_in: None }`.
/// While it is full the client stops reading its socket (see
/// [`Config::event_capacity`](crate::Config::event_capacity)); dropping it discards events.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed for good.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The channel itself (e.g. for `tokio_stream::wrappers::ReceiverStream`).
    pub fn into_inner(self) -> mpsc::Receiver<Event> {
        self.rx
    }
}

impl Client {
    /// Connects and handshakes once, with a token from `tokens`; later connections (after a loss,
    /// per [`Config::reconnect`](crate::Config::reconnect)) take a fresh token each. The first
    /// [`Event::Connected`] is already waiting on the returned [`Events`].
    pub async fn connect(
        config: Config,
        mut tokens: impl TokenSource,
    ) -> Result<(Client, Events), ConnectError> {
        let mut engine = Engine::new();
        let (transport, connected) = open(&config, &mut tokens, &mut engine).await?;
        let (events_tx, rx) = mpsc::channel(config.event_capacity.max(1));
        let (commands, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let driver = Driver {
            backoff: config
                .reconnect
                .clone()
                .map(|p| Backoff::new(p, clock::seed())),
            config,
            engine,
            commands: commands_rx,
            events: events_tx,
            close_ack: None,
        };
        tokio::spawn(driver.run(Box::new(tokens), transport, connected));
        Ok((Client { commands }, Events { rx }))
    }

    /// Sends a request and returns its pending reply without waiting for it; fails at once when
    /// no connection is established.
    pub async fn send(&self, out: Outgoing) -> Result<PendingReply, RequestError> {
        let (index_tx, index_rx) = oneshot::channel();
        let (reply, rx) = oneshot::channel();
        let command = Command::Send {
            out,
            index: index_tx,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| RequestError::Closed)?;
        let index = index_rx.await.unwrap_or(Err(RequestError::Closed))?;
        Ok(PendingReply { index, rx })
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&self, out: Outgoing) -> Result<Packet, RequestError> {
        self.send(out).await?.await
    }

    /// Closes the connection and stops reconnecting; requests in flight end with
    /// [`RequestError::ConnectionClosed`], and [`Events`] ends with
    /// `Disconnected { reason: Closed, retry_in: None }`. Returns once the task has finished.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.commands.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Whether the client is closed for good.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

/// Opens a transport with a fresh token and handshakes; the events the handshake produced
/// (`Connected`) come back with it.
async fn open(
    config: &Config,
    tokens: &mut (impl TokenSource + ?Sized),
    engine: &mut Engine<Waiter>,
) -> Result<(Transport, Vec<Event>), Disconnect> {
    let token = tokens
        .token()
        .await
        .map_err(|e| Disconnect::Token(e.to_string()))?;
    let mut transport = match timeout(config.connect_timeout, Transport::open(config)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(Disconnect::Transport(e.to_string())),
        Err(_) => return Err(Disconnect::Transport("connect timed out".into())),
    };
    engine.start(&config.session(token), clock::now(), clock::seed());
    let mut events = Vec::new();
    loop {
        while let Some(out) = engine.poll() {
            match out {
                Output::Event(e) => events.push(e),
                Output::Ended(reason) => {
                    transport.shutdown().await;
                    return Err(reason);
                }
                // No request can be waiting before the handshake.
                Output::Answer(w, r) => {
                    let _ = w.send(r);
                }
            }
        }
        if engine.is_established() {
            return Ok((transport, events));
        }
        if let Some(bytes) = engine.poll_transmit() {
            if let Err(e) = transport.write(bytes).await {
                engine.lost(Disconnect::Transport(e.to_string()));
                continue;
            }
        }
        let deadline = engine.poll_timeout().map(tokio_instant);
        tokio::select! {
            read = transport.read() => match read {
                Ok(Some(bytes)) => engine.handle_bytes(clock::now(), &bytes),
                Ok(None) => engine.lost(Disconnect::Transport("closed by the gateway during the handshake".into())),
                Err(e) => engine.lost(Disconnect::Transport(e.to_string())),
            },
            () = sleep_until(deadline.unwrap_or_else(far_future)) => engine.handle_timeout(clock::now()),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}

/// The client's task.
struct Driver {
    config: Config,
    engine: Engine<Waiter>,
    backoff: Option<Backoff>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Whom to tell once the task is done (the caller of `close`).
    close_ack: Option<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(
        mut self,
        mut tokens: Box<dyn TokenSource>,
        mut transport: Transport,
        mut connected: Vec<Event>,
    ) {
        'connected: loop {
            for event in connected.drain(..) {
                self.emit(event).await;
            }
            let mut reason = self.serve(&mut transport).await;
            transport.shutdown().await;
            // Reconnect attempts until one succeeds or the policy gives up.
            loop {
                let retry_in = match &mut self.backoff {
                    Some(backoff) if reason.is_retryable() => backoff.next_delay(),
                    _ => None,
                };
                self.emit(Event::Disconnected {
                    reason: reason.clone(),
                    retry_in,
                })
                .await;
                let Some(delay) = retry_in else {
                    break 'connected;
                };
                if !self.idle_until(Instant::now() + delay).await {
                    self.emit(Event::Disconnected {
                        reason: Disconnect::Closed,
                        retry_in: None,
                    })
                    .await;
                    break 'connected;
                }
                match self.reopen(&mut *tokens).await {
                    Some(Ok((t, events))) => {
                        if let Some(b) = &mut self.backoff {
                            b.reset();
                        }
                        transport = t;
                        connected = events;
                        continue 'connected;
                    }
                    Some(Err(r)) => reason = r,
                    None => {
                        self.emit(Event::Disconnected {
                            reason: Disconnect::Closed,
                            retry_in: None,
                        })
                        .await;
                        break 'connected;
                    }
                }
            }
        }
        // Dropping `self` closes the command channel: later requests see `Closed`.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            self.refuse(command, RequestError::Closed);
        }
        if let Some(ack) = self.close_ack.take() {
            let _ = ack.send(());
        }
    }

    /// Runs one established connection until it ends.
    async fn serve(&mut self, transport: &mut Transport) -> Disconnect {
        loop {
            while let Some(out) = self.engine.poll() {
                match out {
                    Output::Answer(w, r) => {
                        let _ = w.send(r);
                    }
                    Output::Event(e) => self.emit(e).await,
                    Output::Ended(reason) => return reason,
                }
            }
            if let Some(bytes) = self.engine.poll_transmit() {
                if let Err(e) = transport.write(bytes).await {
                    self.engine.lost(Disconnect::Transport(e.to_string()));
                    continue;
                }
            }
            let deadline = self.engine.poll_timeout().map(tokio_instant);
            tokio::select! {
                read = transport.read() => match read {
                    Ok(Some(bytes)) => self.engine.handle_bytes(clock::now(), &bytes),
                    Ok(None) => self.engine.lost(Disconnect::Transport("closed by the gateway".into())),
                    Err(e) => self.engine.lost(Disconnect::Transport(e.to_string())),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Send { out, index, reply }) => {
                        let sent = self.engine.send(clock::now(), out, reply);
                        let _ = index.send(sent.map_err(|(_, e)| e));
                    }
                    Some(Command::Close(ack)) => {
                        self.close_ack = Some(ack);
                        self.engine.close();
                    }
                    // Every `Client` is gone: nobody can send or listen for replies any more.
                    None => self.engine.close(),
                },
                () = sleep_until(deadline.unwrap_or_else(far_future)) => {
                    self.engine.handle_timeout(clock::now());
                }
            }
        }
    }

    /// Waits until `until` while refusing requests (no connection); false when closed meanwhile.
    async fn idle_until(&mut self, until: Instant) -> bool {
        loop {
            tokio::select! {
                () = sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    Some(Command::Send { index, .. }) => {
                        let _ = index.send(Err(RequestError::NotConnected));
                    }
                    Some(Command::Close(ack)) => {
                        self.close_ack = Some(ack);
                        return false;
                    }
                    None => return false,
                },
            }
        }
    }

    /// One reconnect attempt, refusing requests meanwhile; `None` when closed meanwhile.
    async fn reopen(
        &mut self,
        tokens: &mut dyn TokenSource,
    ) -> Option<Result<(Transport, Vec<Event>), Disconnect>> {
        let attempt = open(&self.config, tokens, &mut self.engine);
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => return Some(result),
                command = self.commands.recv() => match command {
                    Some(Command::Send { index, .. }) => {
                        let _ = index.send(Err(RequestError::NotConnected));
                    }
                    Some(Command::Close(ack)) => {
                        self.close_ack = Some(ack);
                        return None;
                    }
                    None => return None,
                },
            }
        }
    }

    fn refuse(&self, command: Command, error: RequestError) {
        match command {
            Command::Send { index, .. } => {
                let _ = index.send(Err(error));
            }
            Command::Close(ack) => {
                let _ = ack.send(());
            }
        }
    }

    /// Hands an event to the application, waiting while its queue is full; dropped if it has
    /// stopped listening.
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }
}

fn tokio_instant(time: janus_core::Time) -> Instant {
    Instant::from_std(clock::instant_of(time))
}
