//! Session resume: a player whose connection drops carries on over a new connection within a
//! window, with no new login at the backend, no lost reply and no lost push. Opt-in by the client,
//! invisible to everyone else (`docs/resume.md` is the wire reference; this page is the design).
//!
//! # Wire
//!
//! A client that wants resume appends `janus.resume.v1.CSHandshakeResume{resume_request}` to its
//! `CSHandshake` (fields 1001.., which a Go gateway skips). A gateway with resume on answers with
//! `SCHandshakeResume{resume_ticket, resume_window_secs}` appended to its `SCHandshake`; without
//! the request it appends nothing, so the bytes are upstream's. To resume, the client handshakes
//! again (fresh X25519 keys, its certificate signature, optionally a fresh token for the fallback)
//! with `resume_ticket`, `resume_received` (server packets it has) and `resume_proof` (an HMAC
//! under a secret derived from the previous connection's session key, which never crossed the
//! wire: a ticket sniffed from a plaintext handshake is useless without it).
//!
//! # Server side
//!
//! * **Ticket** ([`ResumeKey`]): AES-256-GCM under the gateway's resume key over (session id, uid,
//!   generation); opaque to the client. Every successful resume bumps the generation and issues a
//!   new ticket, so a ticket is single use.
//! * **Replay buffer** ([`ReplayBuffer`]): every packet sent to a resumable client is kept, as
//!   plaintext, until the client acknowledges it (`CSResumeAck`, system seq
//!   [`RESUME_ACK_SEQ`], or `resume_received` on resume). Bounded by
//!   [`ResumeConfig::max_buffered_bytes`] and [`ResumeConfig::max_buffered_packets`]: while
//!   connected the oldest is forgotten (a later resume that needs it is refused with
//!   [`ResumeRefusal::Gap`]); while parked the session ends (`CloseReason::ResumeOverflow`).
//! * **Parking** (`Session::transport_lost`, or the idle deadline): the session keeps its
//!   identity, index, tunnels and pending requests; replies and pushes go into the replay buffer
//!   only; after [`ResumeConfig::window`] it closes as on a normal disconnect
//!   (`CloseReason::ResumeExpired`). A newer login of the uid closes it as today.
//! * **Resume**: the new connection's session verifies the handshake and the ticket and emits
//!   `Event::ResumeRequested`; the adapter finds the old session ([`ResumableSessions`]), which
//!   checks generation, uid and proof (`Session::check_resume`); the new session then takes the
//!   old one's state over (`Session::resume`): `SCHandshake{start_index = next index}` with a new
//!   ticket, then every buffered packet after `resume_received`, sealed under the new key. The
//!   old session may still look connected (a phone that changed network leaves a half-open
//!   socket behind): it is taken over all the same.
//! * **Refusal**: with a token in the same handshake the gateway falls back to a normal login
//!   (the reply says `REFUSED_*`); without one it sends `SCHandshake{resume_status}` and closes
//!   (`CloseReason::ResumeRefused`).
//!
//! # Client side
//!
//! `client::ClientSession` counts the server packets it receives, acknowledges them, keeps every
//! request it sent until a reply at that index or later shows the server had it, and on resume
//! re-sends the ones at or after the server's `start_index`: each request reaches the server
//! once, and its reply reaches the application once.

mod registry;
mod replay;
#[cfg(test)]
mod tests;
mod ticket;

use core::time::Duration;

use janus_proto::janus::resume::v1::ResumeStatus;

pub use self::{
    registry::{ResumableSessions, Tombstone},
    replay::{ReplayBuffer, ReplayGap},
    ticket::{ResumeKey, SessionId, TicketClaims, hmac_sha256, proof, resume_secret, verify_proof},
};

/// How long a session whose connection dropped is kept for its client to resume it: long enough
/// for a phone to change networks or leave a tunnel, short enough that a player who is really
/// gone does not hold backend state (and an admission slot's worth of memory) for long.
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(30);
/// Bytes of packets kept for a client that has not acknowledged them: a resumable session can
/// never hold more, so a client that stops acknowledging (or a parked one receiving a flood of
/// pushes) costs bounded memory.
pub const DEFAULT_RESUME_BUFFER_BYTES: usize = 256 * 1024;
/// Packets kept for a client that has not acknowledged them (many tiny pushes cost per-packet
/// overhead the byte bound does not see).
pub const DEFAULT_RESUME_BUFFER_PACKETS: usize = 1024;
/// `CSResumeAck`'s seq in the system module (1): outside upstream's `SystemSeq` (1..=4).
pub const RESUME_ACK_SEQ: i32 = 100;
/// A client acknowledges after this many unacknowledged packets...
pub const ACK_EVERY_PACKETS: u64 = 32;
/// ...or this long after the first one (so the gateway's buffer empties even on a trickle).
pub const ACK_DELAY: Duration = Duration::from_secs(1);

/// Resume settings of a gateway (`limits.session.resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumeConfig {
    /// How long a dropped session is kept; zero turns resume off (requests are ignored, as a Go
    /// gateway does). Default [`DEFAULT_RESUME_WINDOW`] (30 s).
    pub window: Duration,
    /// Default [`DEFAULT_RESUME_BUFFER_BYTES`] (256 KiB).
    pub max_buffered_bytes: usize,
    /// Default [`DEFAULT_RESUME_BUFFER_PACKETS`] (1024).
    pub max_buffered_packets: usize,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_RESUME_WINDOW,
            max_buffered_bytes: DEFAULT_RESUME_BUFFER_BYTES,
            max_buffered_packets: DEFAULT_RESUME_BUFFER_PACKETS,
        }
    }
}

impl ResumeConfig {
    /// Whether sessions may be resumed.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

/// Why a resume was refused. Each maps to the `ResumeStatus` the client is told and to a metric
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResumeRefusal {
    /// The ticket does not open under this gateway's key (forged, damaged, another gateway's).
    Invalid,
    /// The session is over: its window passed, or it ended otherwise (kick, shutdown, overflow).
    Expired,
    /// An older ticket of the session: each resume issues a new one.
    Replayed,
    /// A newer login of the same uid replaced the session.
    Superseded,
    /// The proof of possession does not verify.
    Proof,
    /// The client lacks packets the gateway no longer holds.
    Gap,
    /// Resume is off here, or the session is not known (nothing remembered of it).
    Unknown,
}

impl ResumeRefusal {
    /// Every refusal, for per-reason counters.
    pub const ALL: [ResumeRefusal; 7] = [
        Self::Invalid,
        Self::Expired,
        Self::Replayed,
        Self::Superseded,
        Self::Proof,
        Self::Gap,
        Self::Unknown,
    ];

    /// A stable snake_case name, for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Replayed => "replayed",
            Self::Superseded => "superseded",
            Self::Proof => "proof",
            Self::Gap => "gap",
            Self::Unknown => "unknown",
        }
    }

    /// What the client is told.
    pub const fn status(self) -> ResumeStatus {
        match self {
            Self::Invalid => ResumeStatus::RefusedInvalid,
            Self::Expired => ResumeStatus::RefusedExpired,
            Self::Replayed => ResumeStatus::RefusedReplayed,
            Self::Superseded => ResumeStatus::RefusedSuperseded,
            Self::Proof => ResumeStatus::RefusedProof,
            Self::Gap => ResumeStatus::RefusedGap,
            Self::Unknown => ResumeStatus::RefusedUnknown,
        }
    }

    /// The refusal a client was told (`None` for `NONE` and `RESUMED`).
    pub fn from_status(status: ResumeStatus) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.status() == status)
    }
}

impl core::fmt::Display for ResumeRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified request to resume session `session` of `uid`, produced by the new connection's
/// session (`Event::ResumeRequested`) for the adapter to take to the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaim {
    /// The session to resume (the adapter's lookup key).
    pub session: SessionId,
    /// Its player.
    pub uid: i64,
    /// Which of the session's tickets this is.
    pub(crate) generation: u32,
    /// Server packets the client has.
    pub(crate) received: u64,
    /// The new connection's X25519 public key and the proof over it (empty when unencrypted).
    pub(crate) client_pub: bytes::Bytes,
    pub(crate) proof: bytes::Bytes,
    /// The ticket as presented (the proof covers it).
    pub(crate) ticket: bytes::Bytes,
}
