//! What a session knows about its connection, handed in by the adapter: the client's address,
//! the gateway's identity and the connection's worker id. The core builds the backend metadata
//! from it (`x-md-global-client-ip`, `-referer`, `-gate-referer`, spec §4.4).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// A connection's context, given to [`Session::new`](super::Session::new).
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// The client's address as the gateway sees it (after a PROXY-protocol header, if any). Sent
    /// to backends as `ip:port`, as upstream does.
    pub peer: SocketAddr,
    /// This gateway's advertised gRPC endpoint (`host:port`): its identity in referers, route
    /// tables and push channels.
    pub gateway: Arc<str>,
    /// The connection's worker id ([`WorkerIds`]).
    pub worker_id: u64,
}

/// The transport of a connection, the low bits of its worker id (spec §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (`netType` 0).
    Tcp,
    /// WebSocket (`netType` 1).
    WebSocket,
    /// KCP over UDP (`netType` 2; not served by Janus, kept for the numbering).
    Kcp,
}

impl Transport {
    const fn net_type(self) -> u64 {
        match self {
            Transport::Tcp => 0,
            Transport::WebSocket => 1,
            Transport::Kcp => 2,
        }
    }
}

/// Worker ids as upstream numbers connections: `(per-transport counter, from 1) << 4 | netType`,
/// so the first TCP connection is 16, the first WebSocket one 17 (spec §1.5). Backends see it in
/// the referer. Shared by a gateway's listeners; the counters are atomics, so any thread may ask.
#[derive(Debug, Default)]
pub struct WorkerIds {
    counters: [AtomicU64; 3],
}

impl WorkerIds {
    /// The id of the next connection on `transport`.
    pub fn next(&self, transport: Transport) -> u64 {
        let counter = match transport {
            Transport::Tcp => &self.counters[0],
            Transport::WebSocket => &self.counters[1],
            Transport::Kcp => &self.counters[2],
        };
        let n = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        (n << 4) | transport.net_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_number_each_transport_from_one() {
        let ids = WorkerIds::default();
        assert_eq!(ids.next(Transport::Tcp), 16);
        assert_eq!(ids.next(Transport::WebSocket), 17);
        assert_eq!(ids.next(Transport::Tcp), 32);
        assert_eq!(ids.next(Transport::Kcp), 18);
        assert_eq!(ids.next(Transport::WebSocket), 33);
    }
}
