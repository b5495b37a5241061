//! The gateway's resumable sessions by session id, and what became of the ones that ended, so a
//! late resume is refused for the right reason. Sans-IO like [`Logins`](crate::login::Logins):
//! the adapter keeps it behind a lock and carries out what it says.

use std::collections::{HashMap, VecDeque};

use core::time::Duration;

use super::{ResumeRefusal, SessionId};
use crate::Time;

/// At most this many ended sessions are remembered (oldest forgotten first): a login storm of
/// sessions that end at once must not grow memory; a forgotten one is refused as `Unknown`.
pub const MAX_TOMBSTONES: usize = 65_536;

/// How a resumable session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tombstone {
    /// Its window passed, or it ended otherwise (kick, shutdown, buffer overflow, protocol error).
    Ended,
    /// A newer login of its uid replaced it.
    Superseded,
}

impl Tombstone {
    /// What a resume of such a session is told.
    pub const fn refusal(self) -> ResumeRefusal {
        match self {
            Self::Ended => ResumeRefusal::Expired,
            Self::Superseded => ResumeRefusal::Superseded,
        }
    }
}

/// Resumable sessions (`H` reaches one: a connection's mailbox) and recently ended ones.
#[derive(Debug)]
pub struct ResumableSessions<H> {
    live: HashMap<SessionId, (i64, H)>,
    ended: HashMap<SessionId, (Tombstone, Time)>,
    /// Ended sessions in the order they ended, with when they are forgotten.
    order: VecDeque<(SessionId, Time)>,
    max_tombstones: usize,
}

impl<H> Default for ResumableSessions<H> {
    fn default() -> Self {
        Self::new(MAX_TOMBSTONES)
    }
}

impl<H> ResumableSessions<H> {
    /// Remembers at most `max_tombstones` ended sessions.
    pub fn new(max_tombstones: usize) -> Self {
        Self {
            live: HashMap::new(),
            ended: HashMap::new(),
            order: VecDeque::new(),
            max_tombstones,
        }
    }

    /// Session `session` of `uid` can be resumed through `handle`.
    pub fn insert(&mut self, session: SessionId, uid: i64, handle: H) {
        self.ended.remove(&session);
        self.live.insert(session, (uid, handle));
    }

    /// Session `session` ended at `now` (how: `tombstone`); a resume within `remember` of now is
    /// refused with the tombstone's reason, later ones as `Unknown`.
    pub fn remove(
        &mut self,
        session: SessionId,
        now: Time,
        tombstone: Tombstone,
        remember: Duration,
    ) {
        if self.live.remove(&session).is_none() {
            return;
        }
        self.forget_old(now);
        let until = now + remember;
        self.ended.insert(session, (tombstone, until));
        self.order.push_back((session, until));
        while self.order.len() > self.max_tombstones {
            if let Some((old, _)) = self.order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    /// Where to take a resume of `session` by `uid`, or why there is none.
    pub fn find(&self, session: SessionId, uid: i64, now: Time) -> Result<&H, ResumeRefusal> {
        match self.live.get(&session) {
            Some((owner, handle)) if *owner == uid => Ok(handle),
            // Tickets are authenticated, so this means a key was shared across gateways wrongly.
            Some(_) => Err(ResumeRefusal::Invalid),
            None => match self.ended.get(&session) {
                Some((tombstone, until)) if now < *until => Err(tombstone.refusal()),
                _ => Err(ResumeRefusal::Unknown),
            },
        }
    }

    /// Resumable sessions.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Ended sessions still remembered.
    pub fn tombstones(&self) -> usize {
        self.ended.len()
    }

    fn forget_old(&mut self, now: Time) {
        while let Some((session, until)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.ended.get(&session).is_some_and(|(_, u)| *u == until) {
                self.ended.remove(&session);
            }
        }
    }
}
