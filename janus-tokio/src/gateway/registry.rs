//! uid → connection, for pushes and kicks.
//!
//! One entry per uid: a second login replaces the first, which is told to close with
//! `ConflictingLogin`. An entry is removed only by the connection that owns it (upstream deletes
//! by the wrong key and leaks entries, spec §5.2).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use super::mailbox::{self, TrySendError};
use bytes::Bytes;
use janus_core::CloseReason;

use super::connection::ConnCmd;

/// How to reach one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Unique per connection for the gateway's life.
    pub conn_id: u64,
    pub color: String,
    pub sid: i64,
    pub tx: mailbox::Sender<ConnCmd>,
}

/// Why a message could not be handed to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// No session for that uid here.
    Unknown,
    /// The session's queue is full; it has been told to close as a slow consumer.
    Dropped,
}

const SHARDS: usize = 16;

/// The sessions of this gateway by uid, sharded to keep lock hold times short under login storms.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<Mutex<HashMap<i64, ConnHandle>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard only means a panic elsewhere mid-update of a plain map; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    #[allow(clippy::indexing_slicing)] // `i < SHARDS == self.shards.len()`
    fn shard(&self, uid: i64) -> &Mutex<HashMap<i64, ConnHandle>> {
        let i = (uid.unsigned_abs() % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Registers `handle` for `uid`, returning the connection it replaces, if any.
    pub fn insert(&self, uid: i64, handle: ConnHandle) -> Option<ConnHandle> {
        lock(self.shard(uid)).insert(uid, handle)
    }

    /// Removes `uid` if it still belongs to connection `conn_id`, returning its handle.
    pub fn remove(&self, uid: i64, conn_id: u64) -> Option<ConnHandle> {
        let mut shard = lock(self.shard(uid));
        if shard.get(&uid).is_some_and(|h| h.conn_id == conn_id) {
            return shard.remove(&uid);
        }
        None
    }

    /// Every registered session (snapshot).
    pub fn entries(&self) -> Vec<(i64, ConnHandle)> {
        let mut out = Vec::with_capacity(self.len());
        for shard in &self.shards {
            out.extend(lock(shard).iter().map(|(uid, h)| (*uid, h.clone())));
        }
        out
    }

    /// The connection of `uid`.
    pub fn get(&self, uid: i64) -> Option<ConnHandle> {
        lock(self.shard(uid)).get(&uid).cloned()
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
            out.extend(lock(shard).values().filter(|h| keep(h)).cloned());
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

    /// Hands an already serialized packet to every session `keep` selects; returns how many took it.
    pub fn broadcast(
        &self,
        packet: &Bytes,
        keep: impl FnMut(&ConnHandle) -> bool,
    ) -> (usize, usize) {
        let (mut delivered, mut dropped) = (0, 0);
        for handle in self.select(keep) {
            match Self::offer(&handle, ConnCmd::PushPacket(packet.clone())) {
                Delivery::Delivered => delivered += 1,
                Delivery::Dropped => dropped += 1,
                Delivery::Unknown => {}
            }
        }
        (delivered, dropped)
    }
}
