//! The runtime-free heart of every binding: one [`ClientSession`] per connection, and the
//! waiter of each request kept by index so that each gets exactly one answer.
//!
//! Like the session it wraps, it owns no socket and no clock. A runtime (the tokio task, the
//! blocking thread, the browser's event handlers) feeds it and drains it:
//!
//! 1. [`start`](Engine::start) when a transport is open (the `CSHandshake` is queued);
//! 2. [`handle_bytes`](Engine::handle_bytes), [`handle_timeout`](Engine::handle_timeout),
//!    [`send`](Engine::send), [`lost`](Engine::lost), [`close`](Engine::close) as things happen;
//! 3. after each: [`poll`](Engine::poll) until `None` (answers for waiters, events for the
//!    application, and [`Output::Ended`] when the connection is over), then
//!    [`poll_transmit`](Engine::poll_transmit) (write all of it), then
//!    [`poll_timeout`](Engine::poll_timeout) to re-arm the timer.
//!
//! `W` is whatever the runtime wakes a waiting request with: a oneshot sender, a channel, a
//! JavaScript promise's resolve and reject functions.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use janus_core::{
    Time,
    client::{ClientConfig, ClientError, ClientEvent, ClientResume, ClientSession, Outgoing},
};
use janus_proto::packet::Packet;

use crate::{Disconnect, Event, RequestError};

/// What the engine hands back, drained by [`Engine::poll`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Output<W> {
    /// The outcome of the request `W` waits on.
    Answer(W, Result<Packet, RequestError>),
    /// For the application's event stream ([`Event::Connected`], [`Event::Push`],
    /// [`Event::Heartbeat`]; the runtime adds [`Event::Disconnected`], knowing whether it will
    /// retry).
    Event(Event),
    /// The connection is over: close the transport. Every waiter has been answered before this.
    Ended(Disconnect),
}

/// Requests, events and the session of the current connection (see the [module docs](self)).
#[derive(Debug)]
pub struct Engine<W> {
    session: Option<ClientSession>,
    /// The session of a lost connection, to resume on the next (its waiters are kept).
    resume: Option<ClientResume>,
    waiters: HashMap<i32, W>,
    outputs: VecDeque<Output<W>>,
}

impl<W> Default for Engine<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W> Engine<W> {
    /// An engine with no connection.
    pub fn new() -> Self {
        Self {
            session: None,
            resume: None,
            waiters: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// Starts the session of a newly opened transport: the `CSHandshake` frame is queued for
    /// [`poll_transmit`](Self::poll_transmit) and the handshake deadline armed. A session still
    /// running is ended first. `seed` must come from a CSPRNG (it makes the ephemeral key and
    /// the nonces).
    ///
    /// When the previous connection's session was granted resume, this one resumes it
    /// (`config.token` is the fallback: a refused resume logs in afresh with it, and the
    /// requests still waiting end with [`RequestError::ConnectionClosed`]).
    pub fn start(&mut self, config: &ClientConfig, now: Time, seed: [u8; 32]) {
        if self.session.is_some() {
            self.lost(Disconnect::Transport("replaced by a new connection".into()));
        }
        self.session = Some(match self.resume.take() {
            Some(previous) => ClientSession::resume(config, now, seed, previous),
            None => ClientSession::new(config, now, seed),
        });
        self.drain();
    }

    /// Whether the next [`start`](Self::start) resumes the lost session.
    pub fn can_resume(&self) -> bool {
        self.resume.is_some()
    }

    /// Whether a session is up (handshake done) and can take requests.
    pub fn is_established(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(ClientSession::is_established)
    }

    /// Whether a session exists (handshaking or established).
    pub fn is_active(&self) -> bool {
        self.session.is_some()
    }

    /// Requests awaiting their answer.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Bytes read from the transport, in any split (a WebSocket message's frame, or any run of
    /// TCP bytes).
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if let Some(session) = &mut self.session {
            session.handle_bytes(now, bytes);
        }
        self.drain();
    }

    /// A deadline may have passed; does nothing before [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(session) = &mut self.session {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
        }
        self.drain();
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.session.as_ref().and_then(ClientSession::poll_timeout)
    }

    /// Everything to write to the transport, as one buffer (a run of whole frames; a message
    /// transport sends each frame as its own message, see `janus_core::frame::Frames`).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.session.as_mut().and_then(ClientSession::poll_transmit)
    }

    /// Queues a request; `waiter` gets its answer through [`poll`](Self::poll). Returns the
    /// request's index, or the waiter back with why nothing was sent.
    pub fn send(&mut self, now: Time, out: Outgoing, waiter: W) -> Result<i32, (W, RequestError)> {
        let Some(session) = self.session.as_mut().filter(|s| s.is_established()) else {
            return Err((waiter, RequestError::NotConnected));
        };
        match session.send(now, out) {
            Ok(index) => {
                // An index is reused only after 2^32 requests; the older waiter, if any, is long
                // answered or timed out, and is answered now rather than leaked.
                if let Some(old) = self.waiters.insert(index, waiter) {
                    self.outputs
                        .push_back(Output::Answer(old, Err(RequestError::Timeout)));
                }
                self.drain();
                Ok(index)
            }
            Err(ClientError::NotEstablished) => Err((waiter, RequestError::NotConnected)),
            // A request that cannot be framed (compression failed): nothing was sent.
            Err(e) => Err((
                waiter,
                RequestError::Failed {
                    module: 0,
                    seq: 0,
                    message: e.to_string(),
                },
            )),
        }
    }

    /// The transport ended (EOF, an IO error, a failed write): the session is over, unless it
    /// can be resumed on the next connection ([`Output::Ended`] comes either way; the waiters
    /// are answered only when it cannot).
    pub fn lost(&mut self, reason: Disconnect) {
        self.drain();
        if let Some(mut session) = self.session.take() {
            if reason != Disconnect::Closed {
                if let Some(resume) = session.take_resume() {
                    self.resume = Some(resume);
                    self.outputs.push_back(Output::Ended(reason));
                    return;
                }
            }
            self.end(reason);
        }
    }

    /// The application closes the connection (and gives up a resume it could have made).
    pub fn close(&mut self) {
        if self.resume.take().is_some() && self.session.is_none() {
            self.answer_all();
        }
        self.lost(Disconnect::Closed);
    }

    /// The next output, in order.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output<W>> {
        self.outputs.pop_front()
    }

    /// Moves the session's events into outputs.
    fn drain(&mut self) {
        while let Some(event) = self.session.as_mut().and_then(ClientSession::poll_event) {
            match event {
                ClientEvent::Established { server_time, .. } => {
                    self.outputs
                        .push_back(Output::Event(Event::Connected { server_time }));
                }
                ClientEvent::Resumed { server_time, .. } => {
                    self.outputs
                        .push_back(Output::Event(Event::Resumed { server_time }));
                }
                // A fresh login follows (`Established`): the old session's requests are gone.
                ClientEvent::ResumeRefused(_) => self.answer_all(),
                ClientEvent::Packet(packet) if packet.index == 0 => {
                    self.outputs.push_back(Output::Event(Event::Push(packet)));
                }
                ClientEvent::Packet(packet) => {
                    // A reply nobody waits for (its waiter was answered already) is dropped.
                    if let Some(w) = self.waiters.remove(&packet.index) {
                        self.outputs.push_back(Output::Answer(w, Ok(packet)));
                    }
                }
                ClientEvent::Heartbeat { server_time, code } => {
                    self.outputs
                        .push_back(Output::Event(Event::Heartbeat { server_time, code }));
                }
                ClientEvent::RequestFailed {
                    index,
                    module,
                    seq,
                    message,
                } => self.answer(
                    index,
                    RequestError::Failed {
                        module,
                        seq,
                        message,
                    },
                ),
                // The client's own heartbeats have no waiter: nothing happens for them.
                ClientEvent::RequestTimeout { index, .. } => {
                    self.answer(index, RequestError::Timeout);
                }
                // `Closed(LoggedOut)` follows and says it all.
                ClientEvent::Logout(_) => {}
                ClientEvent::Closed(error) => {
                    self.session = None;
                    self.end(match error {
                        ClientError::Local => Disconnect::Closed,
                        other => Disconnect::Session(other),
                    });
                }
                // A future kind of event: nothing this SDK version can tell the application.
                _ => {}
            }
        }
    }

    fn answer(&mut self, index: i32, error: RequestError) {
        if let Some(w) = self.waiters.remove(&index) {
            self.outputs.push_back(Output::Answer(w, Err(error)));
        }
    }

    /// Answers every waiter, then says the connection is over.
    fn end(&mut self, reason: Disconnect) {
        self.answer_all();
        self.outputs.push_back(Output::Ended(reason));
    }

    /// Answers every waiter: its connection is gone for good.
    fn answer_all(&mut self) {
        let mut waiting: Vec<_> = self.waiters.drain().collect();
        // In sending order (wrapping indexes aside), so the application sees a tidy sequence.
        waiting.sort_by_key(|(index, _)| *index);
        for (_, w) in waiting {
            self.outputs
                .push_back(Output::Answer(w, Err(RequestError::ConnectionClosed)));
        }
    }
}

#[cfg(test)]
mod tests;
