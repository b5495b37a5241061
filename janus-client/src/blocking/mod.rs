//! The blocking client: std threads and sockets, no async runtime.
//!
//! One thread per client reads the socket, runs the timers (heartbeats, request timeouts) and
//! reconnects. Requests are written by the calling thread under the client's lock, and each
//! waits on its own channel for its answer.
//!
//! ```text
//! Client::request ─► lock: Engine::send ─► socket write ─► wait on the request's channel
//! client thread: socket read (or timer) ─► lock: Engine ─► answers ─► request channels
//!                                                        └► Push / Heartbeat / Connected ─► Events
//! connection lost ─► Disconnected{retry_in} ─► backoff ─► fresh token ─► connect ─► Connected
//! ```

mod transport;

use std::{
    sync::{Arc, Mutex, MutexGuard, mpsc},
    thread,
    time::Duration,
};

use janus_core::client::Outgoing;
use janus_proto::packet::Packet;

use self::transport::{Incoming, Reader, Writer};
use crate::{
    Backoff, Config, ConnectError, Disconnect, Engine, Event, Output, RequestError, TokenError,
    clock,
};

/// The longest the client thread waits in one socket read before looking at its timers again:
/// a request sent meanwhile may bring a deadline earlier than the one it was waiting for. Also
/// the precision of request timeouts.
const READ_TICK: Duration = Duration::from_millis(50);

type Answer = Result<Packet, RequestError>;
type Waiter = mpsc::SyncSender<Answer>;

/// Where fresh tokens come from: the account service issues one per connection (the gateway
/// takes each token once). Implemented for closures:
///
/// ```
/// # use janus_client::TokenError;
/// let tokens = || Ok::<_, TokenError>(String::from("…"));
/// # fn is_source(_: impl janus_client::blocking::TokenSource) {}
/// # is_source(tokens);
/// ```
pub trait TokenSource: Send + 'static {
    /// A token for the next connection.
    fn token(&mut self) -> Result<String, TokenError>;
}

impl<F> TokenSource for F
where
    F: FnMut() -> Result<String, TokenError> + Send + 'static,
{
    fn token(&mut self) -> Result<String, TokenError> {
        self()
    }
}

/// What the client thread and the callers share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

struct State {
    engine: Engine<Waiter>,
    /// The writing half of the current connection; `None` between connections.
    writer: Option<Writer>,
    /// The application closed the client.
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("engine", &self.engine)
            .field("connected", &self.writer.is_some())
            .field("closed", &self.closed)
            .finish()
    }
}

impl State {
    /// Writes whatever the engine queued; a failed write ends the connection.
    fn flush(&mut self) {
        let Some(bytes) = self.engine.poll_transmit() else {
            return;
        };
        let failed = match &mut self.writer {
            Some(w) => w.write(bytes).err(),
            None => None,
        };
        if let Some(e) = failed {
            self.engine.lost(Disconnect::Transport(e.to_string()));
            self.shutdown();
        }
    }

    fn shutdown(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.shutdown();
        }
    }

    fn outputs(&mut self) -> Vec<Output<Waiter>> {
        std::iter::from_fn(|| self.engine.poll()).collect()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A thread that panicked while holding the lock left the state as consistent as the engine
    // keeps it between calls; carry on rather than poison every later request.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connected client. Share it between threads behind an `Arc`; dropping it (or
/// [`close`](Self::close)) closes the connection.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    stop: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

/// The answer to one request, to wait for.
#[derive(Debug)]
#[must_use = "a request's outcome is only seen by waiting for it"]
pub struct PendingReply {
    index: i32,
    rx: mpsc::Receiver<Answer>,
}

impl PendingReply {
    /// The request's index (`Packet.index`), which its reply carries too.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// Blocks until the reply, or why there is none (the request timeout bounds the wait).
    pub fn wait(self) -> Answer {
        self.rx.recv().unwrap_or(Err(RequestError::Closed))
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
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// The next event within `wait`.
    pub fn recv_timeout(&self, wait: Duration) -> Option<Event> {
        self.rx.recv_timeout(wait).ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Client {
    /// Connects and handshakes once, on the calling thread, with a token from `tokens`; later
    /// connections (after a loss, per [`Config::reconnect`](crate::Config::reconnect)) take a
    /// fresh token each. The first [`Event::Connected`] is already waiting on the returned
    /// [`Events`].
    pub fn connect(
        config: Config,
        mut tokens: impl TokenSource,
    ) -> Result<(Client, Events), ConnectError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                engine: Engine::new(),
                writer: None,
                closed: false,
            }),
        });
        let (reader, connected) = open(&config, &mut tokens, &shared)?;
        let (events_tx, rx) = mpsc::sync_channel(config.event_capacity.max(1));
        let (stop, stop_rx) = mpsc::channel();
        let driver = Driver {
            backoff: config
                .reconnect
                .clone()
                .map(|p| Backoff::new(p, clock::seed())),
            config,
            shared: Arc::clone(&shared),
            events: events_tx,
            stop: stop_rx,
        };
        let thread = thread::Builder::new()
            .name("janus-client".into())
            .spawn(move || driver.run(Box::new(tokens), reader, connected))
            .map_err(|e| Disconnect::Transport(format!("spawning the client thread: {e}")))?;
        Ok((
            Client {
                shared,
                stop,
                thread: Some(thread),
            },
            Events { rx },
        ))
    }

    /// Sends a request; fails at once when no connection is established.
    pub fn send(&self, out: Outgoing) -> Result<PendingReply, RequestError> {
        let (waiter, rx) = mpsc::sync_channel(1);
        let mut state = lock(&self.shared);
        if state.closed {
            return Err(RequestError::Closed);
        }
        let index = state
            .engine
            .send(clock::now(), out, waiter)
            .map_err(|(_, e)| e)?;
        state.flush();
        // Answers this produced (a request given up on to stay within `max_pending`) and a
        // failed write's end are delivered by the client thread at its next turn.
        Ok(PendingReply { index, rx })
    }

    /// Sends a request and waits for its reply.
    pub fn request(&self, out: Outgoing) -> Answer {
        self.send(out)?.wait()
    }

    /// Closes the connection and stops reconnecting; requests in flight end with
    /// [`RequestError::ConnectionClosed`], and [`Events`] ends with
    /// `Disconnected { reason: Closed, retry_in: None }`. Returns once the client thread has
    /// finished (at most a connect timeout, if it was connecting).
    pub fn close(mut self) {
        self.begin_close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Whether the client is closed for good.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn begin_close(&self) {
        let mut state = lock(&self.shared);
        if !state.closed {
            state.closed = true;
            state.engine.close();
            state.shutdown();
        }
        drop(state);
        let _ = self.stop.send(());
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The thread notices at once and finishes on its own.
        self.begin_close();
    }
}

/// Opens a transport with a fresh token and handshakes on the calling thread; the writing half
/// goes into the shared state, the reading half and the handshake's events come back.
fn open(
    config: &Config,
    tokens: &mut (impl TokenSource + ?Sized),
    shared: &Shared,
) -> Result<(Reader, Vec<Event>), Disconnect> {
    let token = tokens
        .token()
        .map_err(|e| Disconnect::Token(e.to_string()))?;
    let (mut reader, writer) =
        transport::open(config).map_err(|e| Disconnect::Transport(e.to_string()))?;
    {
        let mut state = lock(shared);
        if state.closed {
            return Err(Disconnect::Closed);
        }
        state.writer = Some(writer);
        state
            .engine
            .start(&config.session(token), clock::now(), clock::seed());
        state.flush();
    }
    let mut events = Vec::new();
    loop {
        let wait = lock(shared).engine.poll_timeout().map(until);
        let read = reader.read(wait.unwrap_or(READ_TICK).min(READ_TICK));
        let mut state = lock(shared);
        step(&mut state, read);
        for out in state.outputs() {
            match out {
                Output::Event(e) => events.push(e),
                Output::Ended(reason) => {
                    state.shutdown();
                    return Err(reason);
                }
                Output::Answer(w, r) => {
                    let _ = w.try_send(r);
                }
            }
        }
        if state.engine.is_established() {
            return Ok((reader, events));
        }
    }
}

/// Feeds one read's outcome (or the timer) to the engine and writes what it queued.
fn step(state: &mut State, read: std::io::Result<Incoming>) {
    let now = clock::now();
    match read {
        Ok(Incoming::Bytes(bytes)) => state.engine.handle_bytes(now, &bytes),
        Ok(Incoming::Idle) => state.engine.handle_timeout(now),
        Ok(Incoming::Closed) => {
            state
                .engine
                .lost(Disconnect::Transport("closed by the gateway".into()));
        }
        Err(e) => state.engine.lost(Disconnect::Transport(e.to_string())),
    }
    // A deadline may have passed while bytes kept arriving.
    state.engine.handle_timeout(now);
    state.flush();
}

/// Time left until `deadline`.
fn until(deadline: janus_core::Time) -> Duration {
    deadline.saturating_since(clock::now())
}

/// The client thread.
struct Driver {
    config: Config,
    shared: Arc<Shared>,
    backoff: Option<Backoff>,
    events: mpsc::SyncSender<Event>,
    stop: mpsc::Receiver<()>,
}

impl Driver {
    fn run(mut self, mut tokens: Box<dyn TokenSource>, mut reader: Reader, connected: Vec<Event>) {
        self.emit_all(connected);
        loop {
            let mut reason = self.serve(&mut reader);
            // Reconnect attempts until one succeeds or the policy gives up.
            loop {
                let closed = lock(&self.shared).closed;
                let retry_in = match &mut self.backoff {
                    Some(backoff) if !closed && reason.is_retryable() => backoff.next_delay(),
                    _ => None,
                };
                if retry_in.is_none() {
                    // Final: `is_closed` says so before the event stream ends, not only once
                    // this thread has finished.
                    lock(&self.shared).closed = true;
                }
                self.emit(Event::Disconnected {
                    reason: if closed {
                        Disconnect::Closed
                    } else {
                        reason.clone()
                    },
                    retry_in,
                });
                let Some(delay) = retry_in else {
                    return;
                };
                // Sleeps, unless the client is closed meanwhile.
                if !matches!(
                    self.stop.recv_timeout(delay),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    self.emit(Event::Disconnected {
                        reason: Disconnect::Closed,
                        retry_in: None,
                    });
                    return;
                }
                match open(&self.config, &mut *tokens, &self.shared) {
                    Ok((r, events)) => {
                        if let Some(b) = &mut self.backoff {
                            b.reset();
                        }
                        reader = r;
                        self.emit_all(events);
                        break;
                    }
                    Err(r) => reason = r,
                }
            }
        }
    }

    /// Runs one established connection until it ends.
    fn serve(&mut self, reader: &mut Reader) -> Disconnect {
        loop {
            let wait = lock(&self.shared).engine.poll_timeout().map(until);
            let read = reader.read(wait.unwrap_or(READ_TICK).min(READ_TICK));
            let outputs = {
                let mut state = lock(&self.shared);
                step(&mut state, read);
                state.outputs()
            };
            // Delivered outside the lock: a full event queue must not block requests.
            for out in outputs {
                match out {
                    Output::Answer(w, r) => {
                        let _ = w.try_send(r);
                    }
                    Output::Event(e) => self.emit(e),
                    Output::Ended(reason) => {
                        lock(&self.shared).shutdown();
                        return reason;
                    }
                }
            }
        }
    }

    fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// Hands an event to the application, waiting while its queue is full; dropped if it has
    /// stopped listening.
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}
