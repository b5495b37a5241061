//! uid → connection, for pushes and kicks: janus-core's [`Logins`] (the newer login wins; only
//! the owner removes its entry), sharded behind mutexes so a login storm does not serialise on
//! one lock.

use std::sync::{Mutex, MutexGuard};

use janus_core::{
    CloseReason,
    login::{Logins, SUPERSEDED},
    session::PushPacket,
};

use super::{
    command::{ConnCmd, ConnTx},
    mailbox::TrySendError,
};

/// How to reach one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub color: String,
    pub sid: i64,
    pub tx: ConnTx,
}

/// What became of a command offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// No session for that uid here (or it just ended).
    Unknown,
    /// The session's queue is full; it has been told to close as a slow consumer.
    Dropped,
}

const SHARDS: usize = 16;

/// The sessions of this gateway by uid.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<Mutex<Logins<ConnHandle>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Logins::default())).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard only means a panic elsewhere mid-update of a plain map; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    #[allow(clippy::indexing_slicing)] // `i < SHARDS == self.shards.len()`
    fn shard(&self, uid: i64) -> &Mutex<Logins<ConnHandle>> {
        let i = (uid.unsigned_abs() % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Registers connection `conn` as `uid`'s. The connection it replaces, if any, is told to
    /// close ([`SUPERSEDED`]); returns whether there was one.
    pub fn login(&self, uid: i64, conn: u64, handle: ConnHandle) -> bool {
        let replaced = lock(self.shard(uid)).login(uid, conn, handle);
        match replaced {
            Some(old) => {
                let _ = old.tx.try_send(ConnCmd::Close(SUPERSEDED));
                true
            }
            None => false,
        }
    }

    /// Removes `uid` if connection `conn` still holds it, returning its handle.
    pub fn logout(&self, uid: i64, conn: u64) -> Option<ConnHandle> {
        lock(self.shard(uid)).logout(uid, conn)
    }

    /// Every registered session (snapshot).
    pub fn entries(&self) -> Vec<(i64, ConnHandle)> {
        let mut out = Vec::with_capacity(self.len());
        for shard in &self.shards {
            out.extend(lock(shard).iter().map(|(uid, h)| (uid, h.clone())));
        }
        out
    }

    /// The connection of `uid`.
    pub fn get(&self, uid: i64) -> Option<ConnHandle> {
        lock(self.shard(uid)).get(uid).cloned()
    }

    /// Sessions registered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every connection whose session matches `keep` (snapshot; the locks are not held while the
    /// caller sends).
    pub fn select(&self, mut keep: impl FnMut(&ConnHandle) -> bool) -> Vec<ConnHandle> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(
                lock(shard)
                    .iter()
                    .map(|(_, h)| h)
                    .filter(|h| keep(h))
                    .cloned(),
            );
        }
        out
    }

    /// Hands `cmd` to `handle` without waiting. A full queue means the connection cannot keep
    /// up: it is told to close as a slow consumer (best effort) and the command is dropped.
    pub fn offer(handle: &ConnHandle, cmd: ConnCmd) -> Delivery {
        match handle.tx.try_send(cmd) {
            Ok(()) => Delivery::Delivered,
            Err(TrySendError::Full(_)) => {
                // The queue is full, so this may be dropped too; the connection's own budget and
                // deadlines still bound it.
                let _ = handle
                    .tx
                    .try_send(ConnCmd::Close(CloseReason::SlowConsumer));
                Delivery::Dropped
            }
            Err(TrySendError::Closed(_)) => Delivery::Unknown,
        }
    }

    /// Hands an encoded push to every session `keep` selects; returns how many took it and how
    /// many were dropped.
    pub fn broadcast(
        &self,
        push: &PushPacket,
        keep: impl FnMut(&ConnHandle) -> bool,
    ) -> (usize, usize) {
        let (mut delivered, mut dropped) = (0, 0);
        for handle in self.select(keep) {
            match Self::offer(&handle, ConnCmd::Push(push.clone())) {
                Delivery::Delivered => delivered += 1,
                Delivery::Dropped => dropped += 1,
                Delivery::Unknown => {}
            }
        }
        (delivered, dropped)
    }
}
