//! The client's half of session resume (`crate::resume` has the design): counting the server's
//! packets, acknowledging them, keeping the packets the server may not have received, and
//! carrying a session over to a new connection.

use std::collections::VecDeque;

use bytes::Bytes;
use core::time::Duration;
use janus_proto::{
    janus::resume::v1::{CsResumeAck, ResumeStatus},
    packet::Packet,
};
use prost::Message as _;

use super::{
    ClientError, ClientEvent, ClientSession, Link, Outgoing, State, pending::Pending, queue,
    timed_out,
};
use crate::{
    Time,
    crypto::PacketCipher,
    handshake::{Established, ResumeRequest},
    resume::{ACK_DELAY, ACK_EVERY_PACKETS, RESUME_ACK_SEQ, ResumeRefusal, resume_secret},
    system::{self, HEARTBEAT_SEQ, SYSTEM_MODULE},
};

/// Packets the client keeps until a reply shows the server had them. Past this many the client
/// asks for a confirmation (a heartbeat, whose reply confirms everything before it); a client
/// that still exceeds [`DEFAULT_MAX_UNCONFIRMED`] can no longer resume safely.
const PROBE_AFTER: usize = 64;
/// Packets the client keeps at most for a resume; beyond it the session cannot be resumed (the
/// server might lack one the client dropped).
pub const DEFAULT_MAX_UNCONFIRMED: usize = 1024;

/// What a session granted resume keeps while its connection is up.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct ResumeLink {
    ticket: Bytes,
    secret: Option<[u8; 32]>,
    window: Duration,
    /// Server packets received over the session's life.
    received: u64,
    /// The count last acknowledged.
    acked: u64,
    /// When an acknowledgement is due (set by the first unacknowledged packet).
    ack_due: Option<Time>,
    /// Packets sent that no reply has confirmed yet, in index order.
    unconfirmed: VecDeque<Packet>,
    /// A packet was dropped from `unconfirmed` unconfirmed: resuming could lose it.
    overflowed: bool,
    /// The heartbeat sent to confirm `unconfirmed`, while it is unanswered.
    probe: Option<i32>,
}

/// Whether index `a` was sent at or before `b` (indexes wrap; a session never has 2^31 packets
/// in flight).
fn not_after(a: i32, b: i32) -> bool {
    b.wrapping_sub(a) >= 0
}

impl ResumeLink {
    fn new(ticket: Bytes, secret: Option<[u8; 32]>, window_secs: u32, received: u64) -> Self {
        Self {
            ticket,
            secret,
            window: Duration::from_secs(u64::from(window_secs)),
            received,
            acked: received,
            ack_due: None,
            unconfirmed: VecDeque::new(),
            overflowed: false,
            probe: None,
        }
    }

    /// One server packet arrived (counted whatever it is).
    pub(super) fn received(&mut self, now: Time, packet: &Packet) {
        self.received += 1;
        self.ack_due.get_or_insert(now + ACK_DELAY);
        if packet.index != 0 {
            // The server handles packets in index order: a reply at `index` means it had every
            // packet up to it.
            while self
                .unconfirmed
                .front()
                .is_some_and(|p| not_after(p.index, packet.index))
            {
                self.unconfirmed.pop_front();
            }
            if self.probe.is_some_and(|p| not_after(p, packet.index)) {
                self.probe = None;
            }
        }
    }

    /// A packet was queued.
    pub(super) fn sent(&mut self, packet: Packet) {
        self.unconfirmed.push_back(packet);
        if self.unconfirmed.len() > DEFAULT_MAX_UNCONFIRMED {
            self.unconfirmed.pop_front();
            self.overflowed = true;
        }
    }

    pub(super) fn ack_due(&self) -> Option<Time> {
        self.ack_due
    }

    /// Whether a confirmation should be asked for.
    fn needs_probe(&self) -> bool {
        self.probe.is_none() && self.unconfirmed.len() >= PROBE_AFTER
    }
}

/// A session whose connection dropped, taken from its [`ClientSession`] with
/// [`take_resume`](ClientSession::take_resume), to carry on with [`ClientSession::resume`] on a
/// new connection within [`window`](Self::window).
///
/// Cloning one lets a test present the same ticket twice; a real client uses it once.
#[derive(Debug, Clone)]
pub struct ClientResume {
    ticket: Bytes,
    secret: Option<[u8; 32]>,
    received: u64,
    window: Duration,
    next_index: i32,
    pub(super) pending: Pending,
    unconfirmed: VecDeque<Packet>,
}

impl ClientResume {
    /// How long the gateway keeps the session after its connection dropped.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Server packets received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Requests still awaiting their reply.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn request(&self) -> ResumeRequest {
        ResumeRequest {
            request: true,
            ticket: self.ticket.clone(),
            received: self.received,
            secret: self.secret,
        }
    }
}

impl ClientSession {
    /// Whether the gateway granted session resume to this session (it holds a ticket).
    pub fn is_resumable(&self) -> bool {
        matches!(&self.state, State::Established(link)
            if link.resume.as_ref().is_some_and(|r| !r.overflowed))
    }

    /// The connection dropped: takes what a new connection needs to resume the session
    /// ([`ClientSession::resume`]), leaving this one closed without an event. `None` when the
    /// session is not resumable (never granted, closed, or it sent more unconfirmed packets than
    /// it keeps); the caller then logs in afresh.
    pub fn take_resume(&mut self) -> Option<ClientResume> {
        // A resume handshake cut short can be tried again on the next connection.
        if let State::Handshaking { resuming, .. } = &mut self.state {
            let previous = resuming.take()?;
            self.state = State::Closed;
            self.tx.clear();
            return Some(*previous);
        }
        if !self.is_resumable() {
            return None;
        }
        let State::Established(link) = std::mem::replace(&mut self.state, State::Closed) else {
            return None;
        };
        let resume = link.resume?;
        self.tx.clear();
        Some(ClientResume {
            ticket: resume.ticket,
            secret: resume.secret,
            received: resume.received,
            window: resume.window,
            next_index: link.next_index,
            pending: link.pending,
            unconfirmed: resume.unconfirmed,
        })
    }

    /// The handshake completed (`resuming`: the session it resumes, if any).
    pub(super) fn established(
        &mut self,
        now: Time,
        done: Established,
        resuming: Option<Box<ClientResume>>,
    ) {
        let cipher = done.key.as_ref().map(|k| Box::new(PacketCipher::new(k)));
        let grant = &done.resume;
        let link_resume = |received| {
            (!grant.ticket.is_empty()).then(|| {
                Box::new(ResumeLink::new(
                    grant.ticket.clone(),
                    done.key.as_ref().map(resume_secret),
                    grant.window_secs,
                    received,
                ))
            })
        };
        match resuming {
            Some(previous) if grant.status == ResumeStatus::Resumed => {
                let ClientResume {
                    received,
                    next_index,
                    mut pending,
                    mut unconfirmed,
                    ..
                } = *previous;
                // What the server had is confirmed; the rest must be exactly the indexes from
                // its start_index to ours.
                while unconfirmed
                    .front()
                    .is_some_and(|p| !not_after(done.start_index, p.index))
                {
                    unconfirmed.pop_front();
                }
                let mut expected = done.start_index;
                let contiguous = unconfirmed.iter().all(|p| {
                    let ok = p.index == expected;
                    expected = expected.wrapping_add(1);
                    ok
                }) && expected == next_index;
                if !contiguous {
                    self.give_up_all(&mut pending);
                    // The state is still Closed (the handshake took it): report directly.
                    self.events
                        .push_back(ClientEvent::Closed(ClientError::ResumeGap));
                    return;
                }
                let mut link = Link {
                    cipher,
                    next_index,
                    pending,
                    last_sent: now,
                    resume: link_resume(received),
                };
                self.events.push_back(ClientEvent::Resumed {
                    start_index: done.start_index,
                    server_time: done.server_time,
                });
                for packet in unconfirmed {
                    if let Err(e) =
                        queue(&mut self.tx, link.cipher.as_deref(), &mut self.rng, &packet)
                    {
                        self.events.push_back(ClientEvent::Closed(e));
                        return;
                    }
                    if let Some(resume) = link.resume.as_mut() {
                        resume.sent(packet);
                    }
                }
                self.state = State::Established(link);
            }
            resuming => {
                if let Some(mut previous) = resuming {
                    // Refused with a fresh login (or a gateway that ignores resume).
                    let refusal =
                        ResumeRefusal::from_status(grant.status).unwrap_or(ResumeRefusal::Unknown);
                    self.events.push_back(ClientEvent::ResumeRefused(refusal));
                    self.give_up_all(&mut previous.pending);
                }
                self.state = State::Established(Link {
                    cipher,
                    next_index: done.start_index,
                    pending: Pending::new(done.start_index, self.max_pending),
                    last_sent: now,
                    resume: link_resume(0),
                });
                self.events.push_back(ClientEvent::Established {
                    start_index: done.start_index,
                    server_time: done.server_time,
                });
            }
        }
    }

    /// Reports every request of a session that cannot go on as timed out.
    pub(super) fn give_up_all(&mut self, pending: &mut Pending) {
        for request in pending.give_up_all() {
            self.events.push_back(timed_out(request));
        }
    }

    /// Acknowledges received packets when enough arrived or the delay passed (`timer`: called
    /// from `handle_timeout`), and asks for a confirmation when too many sent packets await one.
    pub(super) fn ack_if_due(&mut self, now: Time, timer: bool) {
        let State::Established(link) = &mut self.state else {
            return;
        };
        let Some(resume) = link.resume.as_mut() else {
            return;
        };
        let unacked = resume.received - resume.acked;
        let due = unacked >= ACK_EVERY_PACKETS
            || (timer && unacked > 0 && resume.ack_due.is_some_and(|t| t <= now));
        if due {
            let received = resume.received;
            resume.acked = received;
            resume.ack_due = None;
            let ack = Outgoing {
                module: SYSTEM_MODULE,
                seq: RESUME_ACK_SEQ,
                data: CsResumeAck { received }.encode_to_vec().into(),
                ..Default::default()
            };
            let last_sent = link.last_sent;
            if let Err(e) = self.send_request(now, ack, false, false) {
                self.fail(e);
                return;
            }
            // An acknowledgement is not traffic: heartbeats still fill the silences.
            if let State::Established(link) = &mut self.state {
                link.last_sent = last_sent;
            }
        } else if resume.ack_due.is_some() && unacked == 0 {
            resume.ack_due = None;
        }
        let State::Established(link) = &mut self.state else {
            return;
        };
        if link.resume.as_ref().is_some_and(|r| r.needs_probe()) {
            let beat = Outgoing {
                module: SYSTEM_MODULE,
                seq: HEARTBEAT_SEQ,
                data: system::heartbeat_body(now.unix_secs()),
                ..Default::default()
            };
            match self.send_request(now, beat, true, true) {
                Ok(index) => {
                    if let State::Established(link) = &mut self.state {
                        if let Some(r) = link.resume.as_mut() {
                            r.probe = Some(index);
                        }
                    }
                }
                Err(e) => self.fail(e),
            }
        }
    }
}
