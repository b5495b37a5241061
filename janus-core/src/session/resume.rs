//! Session resume on the server side (see [`crate::resume`] for the design): granting a ticket at
//! login, parking a session whose connection dropped, and a new connection taking a parked (or
//! stale) session over.

use bytes::{Bytes, BytesMut};
use janus_proto::{
    janus::resume::v1::{CsHandshakeResume, ResumeStatus, ScHandshakeResume},
    message::{CsHandshake, ScHandshake},
    packet::Packet,
};
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use super::{
    Event, Session, State,
    link::Link,
    outbound::{Outbound, Sealer},
};
use crate::{
    CloseReason, Time,
    config::ServerConfig,
    crypto::{NONCE_LEN, NonceSequence, SharedKey},
    handshake::{self, within_skew},
    resume::{
        RESUME_ACK_SEQ, ReplayBuffer, ResumeClaim, ResumeRefusal, SessionId, TicketClaims,
        resume_secret, verify_proof,
    },
    system::{HANDSHAKE_SEQ, SYSTEM_MODULE},
};

/// What a resumable session keeps besides its replay buffer (which lives in its `Outbound`).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Resumable {
    pub session: SessionId,
    /// The generation of the only ticket that resumes it now.
    pub generation: u32,
    /// What the client must prove it holds; `None` in unencrypted mode.
    pub secret: Option<[u8; 32]>,
    /// Whether the connection is gone and the session waits for its client.
    pub parked: bool,
}

/// A handshake with a valid ticket, waiting for the adapter to bring the old session.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Resuming {
    claim: ResumeClaim,
    key: Option<SharedKey>,
    /// The `SCHandshake` agreed (its `start_index` is set on resume).
    sc: ScHandshake,
    reply_mod: i32,
    reply_seq: i32,
    /// The handshake frame, for a login with its token if the resume is refused.
    body: Bytes,
    has_token: bool,
    requested: bool,
    rng: ChaCha20Rng,
}

/// What [`Session::resume_intent`] decided about a handshake.
pub(super) enum Intent {
    /// A login: with a ticket for the client if it `requested` one, telling it `refused` if it
    /// asked to resume and cannot.
    Login {
        requested: bool,
        refused: Option<ResumeRefusal>,
    },
    /// Waiting for the adapter (`Event::ResumeRequested`), or closed.
    Handled,
}

impl Session {
    /// Reads the resume extension of a handshake frame (`CSHandshakeResume`). A frame without a
    /// ticket is a login; one with a valid ticket waits for the old session; one whose ticket
    /// is refused at once falls back to a login (with a token) or is refused.
    pub(super) fn resume_intent(
        &mut self,
        now: Time,
        body: &[u8],
        rng: &mut ChaCha20Rng,
    ) -> Intent {
        let enabled = self.config.session.resume.enabled() && self.config.resume_key.is_some();
        let login = Intent::Login {
            requested: false,
            refused: None,
        };
        // Anything malformed is left to the login path, which says what is wrong with it.
        let Ok(packet) = Packet::decode(body) else {
            return login;
        };
        if packet.seq != HANDSHAKE_SEQ {
            return login;
        }
        let Ok(ext) = CsHandshakeResume::decode(packet.data.clone()) else {
            return login;
        };
        let requested = enabled && ext.resume_request;
        if ext.resume_ticket.is_empty() {
            return Intent::Login {
                requested,
                refused: None,
            };
        }
        let Ok(cs) = CsHandshake::decode(packet.data.clone()) else {
            return login;
        };
        let has_token = !cs.token.is_empty();
        let claims = match &self.config.resume_key {
            Some(key) if enabled => key.open(&ext.resume_ticket),
            _ => Err(ResumeRefusal::Unknown),
        };
        let now_secs = now.unix_secs();
        let max_skew = self.config.session.max_timestamp_skew.as_secs();
        if !within_skew(cs.timestamp, now_secs, max_skew) {
            self.close(now, CloseReason::TimestampSkew);
            return Intent::Handled;
        }
        let (sc, key) = match handshake::agree(&self.config, &cs, now_secs, rng) {
            Ok(agreed) => agreed,
            Err(e) => {
                self.close(now, e.close_reason());
                return Intent::Handled;
            }
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(refusal) => {
                self.events.push(Event::ResumeRefused(refusal));
                if has_token {
                    return Intent::Login {
                        requested,
                        refused: Some(refusal),
                    };
                }
                self.refuse_plainly(now, &packet, sc.timestamp, refusal);
                return Intent::Handled;
            }
        };
        let claim = ResumeClaim {
            session: claims.session,
            uid: claims.uid,
            generation: claims.generation,
            received: ext.resume_received,
            client_pub: cs.r#pub.clone(),
            proof: ext.resume_proof.clone(),
            ticket: ext.resume_ticket.clone(),
        };
        if let State::Handshaking { resuming, .. } = &mut self.state {
            *resuming = Some(Box::new(Resuming {
                claim: claim.clone(),
                key,
                sc,
                reply_mod: packet.r#mod,
                reply_seq: packet.seq,
                body: Bytes::copy_from_slice(body),
                has_token,
                requested,
                rng: rng.clone(),
            }));
        }
        self.events.push(Event::ResumeRequested(claim));
        Intent::Handled
    }

    /// After a login's `SCHandshake` was built: when the client `requested` resume, makes the
    /// session resumable and appends its ticket (and `refused`, when it had asked to resume) to
    /// the reply. Returns the replay buffer to install once the reply is queued.
    pub(super) fn grant_resume(
        &mut self,
        link: &mut Link,
        key: Option<&SharedKey>,
        reply: &mut Packet,
        rng: &mut ChaCha20Rng,
        requested: bool,
        refused: Option<ResumeRefusal>,
    ) -> Option<Box<ReplayBuffer>> {
        let status = refused.map_or(ResumeStatus::None, ResumeRefusal::status);
        let ticket_key = self.config.resume_key.as_ref().filter(|_| requested);
        let Some(ticket_key) = ticket_key else {
            if refused.is_some() {
                append_ext(reply, &self.config, Bytes::new(), status);
            }
            return None;
        };
        let session = SessionId(rng.next_u64());
        let claims = TicketClaims {
            session,
            uid: link.identity.uid,
            generation: 1,
        };
        let ticket = ticket_key.seal(&claims, nonce(rng));
        append_ext(reply, &self.config, ticket, status);
        link.resume = Some(Box::new(Resumable {
            session,
            generation: 1,
            secret: key.map(resume_secret),
            parked: false,
        }));
        Some(Box::new(ReplayBuffer::new(&self.config.session.resume)))
    }

    /// The connection is gone (EOF, a read or write error). A resumable session is parked for
    /// its window ([`Event::Parked`]); any other closes with [`CloseReason::PeerClosed`].
    pub fn transport_lost(&mut self, now: Time) {
        if !self.park(now) {
            self.close(now, CloseReason::PeerClosed);
        }
    }

    /// Parks the session if it is resumable; returns whether it is parked.
    pub(super) fn park(&mut self, now: Time) -> bool {
        let State::Established(link) = &mut self.state else {
            return false;
        };
        let (Some(resumable), Some(replay)) = (link.resume.as_mut(), self.tx.replay.as_mut())
        else {
            return false;
        };
        if link.drain_deadline.is_some() {
            return false;
        }
        if resumable.parked {
            return true;
        }
        resumable.parked = true;
        replay.park();
        // Unsent bytes were sealed for a transport that is gone; the buffer has them all.
        self.tx.discard();
        self.rx = BytesMut::new();
        link.idle_deadline = now + self.config.session.resume.window;
        self.events.push(Event::Parked);
        true
    }

    /// Whether the session is parked (its client away, within its window).
    pub fn is_parked(&self) -> bool {
        matches!(&self.state, State::Established(link)
            if link.resume.as_ref().is_some_and(|r| r.parked))
    }

    /// Packets held for the client in its replay buffer, if it was granted resume.
    pub fn replay_len(&self) -> Option<usize> {
        self.tx.replay.as_ref().map(|r| r.len())
    }

    /// The session's resume id, if its client was granted resume.
    pub fn resume_id(&self) -> Option<SessionId> {
        match &self.state {
            State::Established(link) => link.resume.as_ref().map(|r| r.session),
            _ => None,
        }
    }

    /// Whether `claim` (from another connection's [`Event::ResumeRequested`]) may take this
    /// session over: same player, the current ticket, a valid proof, and every packet the client
    /// lacks still held. A session that looks connected may be taken over too.
    pub fn check_resume(&self, claim: &ResumeClaim) -> Result<(), ResumeRefusal> {
        let link = match &self.state {
            State::Established(link) => link,
            State::Closed => return Err(ResumeRefusal::Expired),
            State::Handshaking { .. } => return Err(ResumeRefusal::Unknown),
        };
        let resumable = link.resume.as_ref().ok_or(ResumeRefusal::Unknown)?;
        if link.drain_deadline.is_some() {
            return Err(ResumeRefusal::Expired);
        }
        if claim.session != resumable.session || claim.uid != link.identity.uid {
            return Err(ResumeRefusal::Invalid);
        }
        if claim.generation != resumable.generation {
            return Err(ResumeRefusal::Replayed);
        }
        if let Some(secret) = &resumable.secret {
            if !verify_proof(secret, &claim.client_pub, &claim.ticket, &claim.proof) {
                return Err(ResumeRefusal::Proof);
            }
        }
        let replay = self.tx.replay.as_ref().ok_or(ResumeRefusal::Unknown)?;
        match replay.since(claim.received) {
            Ok(_) => Ok(()),
            Err(_) => Err(ResumeRefusal::Gap),
        }
    }

    /// Takes `old` over for this handshake (after [`Event::ResumeRequested`]): its identity,
    /// index, tunnels and pending requests become this session's; the client gets
    /// `SCHandshake{start_index = the next index}` with a new ticket, then every packet it lacks,
    /// sealed under the new key; [`Event::Resumed`] follows. `old` is left closed, without
    /// events: the adapter drops it and keeps its registrations. When `old` refuses
    /// ([`check_resume`](Self::check_resume)), this session is refused instead
    /// ([`refuse_resume`](Self::refuse_resume)) and `old` is untouched.
    pub fn resume(&mut self, now: Time, old: &mut Session) -> Result<(), ResumeRefusal> {
        let State::Handshaking { resuming, .. } = &mut self.state else {
            return Err(ResumeRefusal::Unknown);
        };
        let Some(pending) = resuming.take() else {
            return Err(ResumeRefusal::Unknown);
        };
        if let Err(refusal) = old.check_resume(&pending.claim) {
            self.refused(now, *pending, refusal);
            return Err(refusal);
        }
        let (State::Established(link), Some(replay)) = (
            std::mem::replace(&mut old.state, State::Closed),
            old.tx.replay.take(),
        ) else {
            return Err(ResumeRefusal::Unknown);
        };
        let Resuming {
            claim,
            key,
            mut sc,
            reply_mod,
            reply_seq,
            mut rng,
            ..
        } = *pending;
        let mut link = link;
        let mut replay = replay;
        let mut sealer = key.as_ref().map(|k| {
            let mut prefix = [0u8; 4];
            rng.fill_bytes(&mut prefix);
            Sealer::new(k, NonceSequence::new(prefix))
        });
        link.idle_deadline = now + self.config.session.idle_timeout;
        let Some(resumable) = link.resume.as_mut() else {
            return Err(ResumeRefusal::Unknown);
        };
        resumable.generation = resumable.generation.wrapping_add(1);
        resumable.secret = key.as_ref().map(resume_secret);
        resumable.parked = false;
        let ticket = match &self.config.resume_key {
            Some(ticket_key) => ticket_key.seal(
                &TicketClaims {
                    session: resumable.session,
                    uid: link.identity.uid,
                    generation: resumable.generation,
                },
                nonce(&mut rng),
            ),
            None => Bytes::new(),
        };
        sc.start_index = link.next_index;
        let mut reply = Packet {
            data: sc.encode_to_vec().into(),
            r#mod: reply_mod,
            seq: reply_seq,
            ..Default::default()
        };
        append_ext(&mut reply, &self.config, ticket, ResumeStatus::Resumed);
        self.tx.packet(None, &reply);
        if let Ok(missed) = replay.since(claim.received) {
            for packet in missed {
                self.tx.resend(sealer.as_mut(), packet);
            }
        }
        replay.ack(claim.received);
        replay.unpark();
        link.sealer = sealer;
        self.tx.replay = Some(replay);
        self.state = State::Established(link);
        self.events.push(Event::Resumed(claim.session));
        self.check_budget(now);
        Ok(())
    }

    /// The adapter found no session for the [`Event::ResumeRequested`] claim (or could not reach
    /// it): with a token in the handshake the client is logged in afresh, told why its resume
    /// was refused; without one it is told and the connection closes
    /// ([`CloseReason::ResumeRefused`]).
    pub fn refuse_resume(&mut self, now: Time, refusal: ResumeRefusal) {
        let State::Handshaking { resuming, .. } = &mut self.state else {
            return;
        };
        if let Some(pending) = resuming.take() {
            self.refused(now, *pending, refusal);
        }
    }

    fn refused(&mut self, now: Time, pending: Resuming, refusal: ResumeRefusal) {
        self.events.push(Event::ResumeRefused(refusal));
        if pending.has_token {
            self.login(now, &pending.body, pending.requested, Some(refusal));
        } else {
            let packet = Packet {
                r#mod: pending.reply_mod,
                seq: pending.reply_seq,
                ..Default::default()
            };
            self.refuse_plainly(now, &packet, pending.sc.timestamp, refusal);
        }
    }

    /// Answers a resume that cannot go on and has no token to fall back on:
    /// `SCHandshake{timestamp, resume_status}` in plaintext, then the connection closes.
    fn refuse_plainly(
        &mut self,
        now: Time,
        request: &Packet,
        timestamp: i64,
        refusal: ResumeRefusal,
    ) {
        let sc = ScHandshake {
            timestamp,
            ..Default::default()
        };
        let mut reply = Packet {
            data: sc.encode_to_vec().into(),
            r#mod: request.r#mod,
            seq: request.seq,
            ..Default::default()
        };
        append_ext(&mut reply, &self.config, Bytes::new(), refusal.status());
        self.tx.packet(None, &reply);
        self.close(now, CloseReason::ResumeRefused);
    }
}

/// Consumes a client's `CSResumeAck` (system seq [`RESUME_ACK_SEQ`]) on a resumable session:
/// the acknowledged packets are forgotten. Returns whether `packet` was one (it is then neither
/// forwarded nor answered); on other sessions the packet is an ordinary request, as upstream.
pub(super) fn consume_ack(tx: &mut Outbound, packet: &Packet) -> bool {
    if packet.r#mod != SYSTEM_MODULE || packet.seq != RESUME_ACK_SEQ {
        return false;
    }
    let Some(replay) = tx.replay.as_mut() else {
        return false;
    };
    if let Ok(ack) = janus_proto::janus::resume::v1::CsResumeAck::decode(packet.data.clone()) {
        // A count beyond what was sent is ignored: the buffer only ever shrinks on real acks.
        replay.ack(ack.received);
    }
    true
}

/// Appends `SCHandshakeResume{ticket, window, status}` to the encoded `SCHandshake` in `reply`:
/// one message with the extension fields after upstream's.
fn append_ext(reply: &mut Packet, config: &ServerConfig, ticket: Bytes, status: ResumeStatus) {
    let window = if ticket.is_empty() {
        0
    } else {
        u32::try_from(config.session.resume.window.as_secs()).unwrap_or(u32::MAX)
    };
    let ext = ScHandshakeResume {
        resume_ticket: ticket,
        resume_window_secs: window,
        resume_status: status as i32,
    };
    let mut data = BytesMut::from(&reply.data[..]);
    ext.encode_raw(&mut data);
    reply.data = data.freeze();
}

fn nonce(rng: &mut ChaCha20Rng) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    nonce
}
