//! The requests a client is waiting on, so each gets exactly one outcome: its reply, its error,
//! or a timeout.
//!
//! Requests are kept in the order they were sent, and their deadlines never decrease along that
//! order, so the oldest request is always the next to time out and timeouts (and the memory
//! bound) only ever remove from the front. Everything removed from the front without an answer
//! was "given up"; the newest such index is all the client needs to recognise a reply that comes
//! after it gave up, because indexes are handed out in sending order.

use std::collections::VecDeque;

use crate::Time;

/// One request awaiting its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Request {
    pub index: i32,
    pub module: i32,
    pub seq: i32,
    /// When to give up on it; `None` never.
    pub deadline: Option<Time>,
    /// Sent by the client itself (its heartbeat), not by the application.
    pub heartbeat: bool,
}

/// What a server packet's index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// A request still waiting: it is now settled.
    Request(Request),
    /// A request the client already gave up on (timed out or forgotten), or answered twice.
    Stale,
    /// Nothing the client is tracking (sent untracked, or an index it never sent).
    Unknown,
}

/// The waiting requests of one established session.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    requests: VecDeque<Request>,
    max: usize,
    /// The index of the first request of the session (`SCHandshake.start_index`): the origin of
    /// the sending order, so comparisons survive the i32 wrap.
    first: i32,
    /// The newest index given up on.
    given_up: Option<i32>,
}

impl Pending {
    /// Remembers at most `max` requests (at least one).
    pub fn new(first: i32, max: usize) -> Self {
        Self {
            requests: VecDeque::new(),
            max: max.max(1),
            first,
            given_up: None,
        }
    }

    /// Remembers `request`, sent after every request already remembered. When that makes one
    /// too many, the oldest is given up on and returned.
    pub fn insert(&mut self, mut request: Request) -> Option<Request> {
        // A clock that went backwards must not let a newer request time out before an older one.
        if let (Some(deadline), Some(Some(last))) =
            (request.deadline, self.requests.back().map(|r| r.deadline))
        {
            request.deadline = Some(deadline.max(last));
        }
        self.requests.push_back(request);
        if self.requests.len() > self.max {
            return self.give_up_front();
        }
        None
    }

    /// Settles the request a server packet with `index` answers.
    pub fn answer(&mut self, index: i32) -> Answered {
        // Replies mostly come in sending order: the match is usually at the front.
        if let Some(request) = self
            .requests
            .iter()
            .position(|r| r.index == index)
            .and_then(|pos| self.requests.remove(pos))
        {
            return Answered::Request(request);
        }
        match self.given_up {
            Some(newest) if self.order(index) <= self.order(newest) => Answered::Stale,
            _ => Answered::Unknown,
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Time> {
        self.requests.front().and_then(|r| r.deadline)
    }

    /// Gives up on the oldest request if its deadline is at or before `now`.
    pub fn expire(&mut self, now: Time) -> Option<Request> {
        match self.next_deadline() {
            Some(deadline) if deadline <= now => self.give_up_front(),
            _ => None,
        }
    }

    /// Gives up on every request (a session that cannot go on), oldest first.
    pub fn give_up_all(&mut self) -> impl Iterator<Item = Request> + '_ {
        if let Some(last) = self.requests.back() {
            self.given_up = Some(last.index);
        }
        self.requests.drain(..)
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    fn give_up_front(&mut self) -> Option<Request> {
        let request = self.requests.pop_front()?;
        self.given_up = Some(request.index);
        Some(request)
    }

    /// Position of `index` in the sending order (0 for the session's first request).
    fn order(&self, index: i32) -> u32 {
        index.wrapping_sub(self.first) as u32
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(index: i32, deadline: Option<Time>) -> Request {
        Request {
            index,
            module: 3,
            seq: 1,
            deadline,
            heartbeat: false,
        }
    }

    fn at(ms: u64) -> Time {
        Time::from_unix_millis(ms)
    }

    #[test]
    fn replies_settle_in_any_order_and_once() {
        let mut p = Pending::new(1, 8);
        for i in 1..=3 {
            assert_eq!(p.insert(request(i, Some(at(100)))), None);
        }
        assert_eq!(p.answer(2), Answered::Request(request(2, Some(at(100)))));
        assert_eq!(p.answer(2), Answered::Unknown, "nothing given up yet");
        assert_eq!(p.answer(0), Answered::Unknown);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn timeouts_leave_from_the_front_and_later_replies_are_stale() {
        let mut p = Pending::new(1, 8);
        p.insert(request(1, Some(at(100))));
        p.insert(request(2, Some(at(200))));
        p.insert(request(3, Some(at(300))));
        assert_eq!(p.expire(at(99)), None);
        assert_eq!(p.expire(at(250)).map(|r| r.index), Some(1));
        assert_eq!(p.expire(at(250)).map(|r| r.index), Some(2));
        assert_eq!(p.expire(at(250)), None);
        assert_eq!(p.next_deadline(), Some(at(300)));
        assert_eq!(p.answer(1), Answered::Stale);
        assert_eq!(p.answer(2), Answered::Stale);
        assert!(matches!(p.answer(3), Answered::Request(_)));
        assert_eq!(
            p.answer(3),
            Answered::Unknown,
            "answered, and after the last give-up"
        );
        assert_eq!(p.answer(9), Answered::Unknown, "never sent");
    }

    #[test]
    fn the_bound_gives_up_the_oldest() {
        let mut p = Pending::new(1, 2);
        p.insert(request(1, None));
        p.insert(request(2, None));
        assert_eq!(p.insert(request(3, None)).map(|r| r.index), Some(1));
        assert_eq!(p.len(), 2);
        assert_eq!(p.answer(1), Answered::Stale);
        assert_eq!(
            Pending::new(1, 0).insert(request(1, None)),
            None,
            "at least one"
        );
    }

    #[test]
    fn deadlines_never_decrease_and_order_survives_the_wrap() {
        let mut p = Pending::new(i32::MAX, 8);
        p.insert(request(i32::MAX, Some(at(500))));
        p.insert(request(i32::MIN, Some(at(400))));
        assert_eq!(
            p.expire(at(450)),
            None,
            "the clock went back: the newer one waits too"
        );
        assert_eq!(p.expire(at(500)).map(|r| r.index), Some(i32::MAX));
        assert_eq!(p.expire(at(500)).map(|r| r.index), Some(i32::MIN));
        assert_eq!(p.answer(i32::MAX), Answered::Stale);
        assert_eq!(p.answer(i32::MIN), Answered::Stale);
        assert_eq!(p.answer(i32::MIN + 1), Answered::Unknown);
    }
}
