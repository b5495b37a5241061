//! A connection's command queue: bounded, many senders, one receiver.
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a 32-slot block up front, which for
//! `ConnCmd` is 3.5 KiB per connection whether or not anything is ever sent. This queue is a
//! `VecDeque` that grows when used and shrinks back when drained, so an idle connection pays
//! about a hundred bytes for it.
//!
//! Semantics match what the gateway needs from mpsc: `try_send` (pushes: never wait, report a
//! full queue), `send` (tunnel replies: wait for room, which slows the backend stream of a client
//! that cannot keep up), `closed` (a tunnel notices its connection is gone), and `recv` returning
//! `None` once every sender is gone.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

/// Queues larger than this are shrunk once drained.
const SHRINK_ABOVE: usize = 16;

#[derive(Debug)]
struct Inner<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    receiver_alive: AtomicBool,
    senders: AtomicUsize,
    /// Wakes the receiver: an item arrived, or the last sender left.
    items: Notify,
    /// Wakes senders: room was made, or the receiver left.
    space: Notify,
}

impl<T> Inner<T> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<T>> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why `try_send` did not queue the item (it is handed back).
#[derive(Debug)]
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

/// A sending half.
#[derive(Debug)]
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

/// The receiving half.
#[derive(Debug)]
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

/// A queue holding at most `capacity` items.
pub fn mailbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        receiver_alive: AtomicBool::new(true),
        senders: AtomicUsize::new(1),
        items: Notify::new(),
        space: Notify::new(),
    });
    (
        Sender {
            inner: Arc::clone(&inner),
        },
        Receiver { inner },
    )
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inner.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.inner.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.items.notify_one();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` if there is room, without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if !self.inner.receiver_alive.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        let mut queue = self.inner.queue();
        if queue.len() >= self.inner.capacity {
            return Err(TrySendError::Full(item));
        }
        queue.push_back(item);
        drop(queue);
        self.inner.items.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room. Hands it back if the receiver is gone.
    pub async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            // Registered before the check, so room made in between is not missed.
            let space = self.inner.space.notified();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => item = back,
            }
            space.await;
        }
    }

    /// Resolves once the receiver is gone.
    pub async fn closed(&self) {
        loop {
            let space = self.inner.space.notified();
            if !self.inner.receiver_alive.load(Ordering::Acquire) {
                return;
            }
            space.await;
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once it is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let items = self.inner.items.notified();
            {
                let mut queue = self.inner.queue();
                if let Some(item) = queue.pop_front() {
                    if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
                        queue.shrink_to_fit();
                    }
                    drop(queue);
                    // One slot freed: one waiting sender may proceed.
                    self.inner.space.notify_one();
                    return Some(item);
                }
            }
            if self.inner.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            items.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.inner.receiver_alive.store(false, Ordering::Release);
        self.inner.queue().clear();
        // Every sender waiting for room or for the close must look again.
        self.inner.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bounded_with_backpressure_and_close() {
        let (tx, mut rx) = mailbox::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        // a waiting send completes once there is room
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(3).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        // the receiver waits for items
        let tx3 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx3.try_send(4).unwrap();
        });
        assert_eq!(rx.recv().await, Some(4));
        // closing wakes senders
        let tx4 = tx.clone();
        tx4.try_send(5).unwrap();
        tx4.try_send(6).unwrap();
        let blocked = tokio::spawn(async move { tx4.send(7).await });
        let watcher = {
            let tx5 = tx.clone();
            tokio::spawn(async move { tx5.closed().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(blocked.await.unwrap(), Err(7));
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(tx.try_send(8), Err(TrySendError::Closed(8))));
    }

    #[tokio::test]
    async fn recv_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox::<u32>(4);
        tx.try_send(1).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing() {
        let (tx, mut rx) = mailbox::<u64>(8);
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..2000 {
                    tx.send(t * 10_000 + i).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(got.len(), 8000);
        for t in 0..4u64 {
            let mine: Vec<u64> = got.iter().copied().filter(|v| v / 10_000 == t).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "per-sender order kept"
            );
        }
    }
}
