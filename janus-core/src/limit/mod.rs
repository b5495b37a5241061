//! Admission control and rate limiting, and the list of every limit in the core.
//!
//! Upstream has no connection cap, no per-address limit and no rate limit (spec §7.1). The gateway
//! asks an [`Admission`] before it reads a byte from a new connection, and sessions meter packets
//! with a [`Gcra`].
//!
//! ```text
//! accept(ip) ─► Admission::try_admit(ip, now) ─► Err: close the socket, read nothing
//!                  │ Ok(Admit { admitted, evict })  ─► evict: close that handshake now
//!                  ▼
//!              Session handshake ─► handshake_progress(&admitted, bytes received)
//!                  ▼               ─► established or failed ─► handshake_finished(&admitted)
//!              connection closes ─► release(admitted)
//! ```
//!
//! # Limits
//!
//! Every limit of the core with its default, its unit and what it stops. A `DEFAULT_*` constant
//! documents each one; configuration structs take their defaults from them.
//!
//! ## Admission (this module)
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`DEFAULT_MAX_CONNECTIONS`] | 100 000 | connections per [`Admission`] | connection floods exhausting memory and file descriptors |
//! | [`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`] | 4096 | connections per IPv4 address or IPv6 prefix | one host taking every slot; admits thousands of players behind one carrier-grade NAT |
//! | [`DEFAULT_IPV6_PREFIX_LEN`] | 64 | bits | one IPv6 host dodging the per-address limits by rotating through its /64 |
//! | [`DEFAULT_MAX_HANDSHAKES`] | 1024 | connections in the handshake; when full, the least advanced is evicted for a newcomer | handshake floods burning CPU (X25519, Ed25519, AES-GCM per attempt); a slowloris holding the pool (it loses its slots instead of locking players out) |
//! | [`DEFAULT_MAX_HANDSHAKES_PER_ADDRESS`] | 32 | connections in the handshake per address | one host filling the handshake pool |
//! | [`DEFAULT_CONNECTION_RATE`] | 20/s, burst 300 | new connections per address | reconnect loops from one host, and with them the pace at which a slowloris turns the handshake pool over |
//! | [`MAX_RATE_ENTRIES`] | 65 536 (fixed) | addresses with a tracked connection rate | the rate table growing without bound |
//!
//! ## Rates (this module)
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`RateLimit`] `per_second` / `burst`, enforced by [`Gcra`] | set where used | cells per second / cells | floods of packets (or of whatever is metered) beyond what a real client sends |
//!
//! ## Routing ([`crate::route`])
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`DEFAULT_FAILURE_THRESHOLD`](crate::route::DEFAULT_FAILURE_THRESHOLD) | 5 | consecutive failed tunnel opens | every new tunnel paying a dial timeout to a dead backend |
//! | [`DEFAULT_COOL_DOWN`](crate::route::DEFAULT_COOL_DOWN) | 10 | seconds open after a trip | hammering a backend that is restarting |
//! | [`DEFAULT_MAX_COOL_DOWN`](crate::route::DEFAULT_MAX_COOL_DOWN) | 300 | seconds, cap of the doubling cool-down | probing a dead backend more than once per 5 minutes |
//! | [`DEFAULT_PROBE_TIMEOUT`](crate::route::DEFAULT_PROBE_TIMEOUT) | 30 | seconds a half-open probe may go unreported | a lost probe keeping a backend out of rotation forever |
//! | [`MAX_TUNNEL_KINDS`](crate::route::MAX_TUNNEL_KINDS) | 256 (fixed) | kinds per route table | — (size of the kind id) |
//! | [`MAX_KIND_NAME_LEN`](crate::route::MAX_KIND_NAME_LEN) | 32 (fixed) | bytes | unbounded names in logs and metric labels |
//!
//! ## Session limits
//!
//! The per-connection limits (frame length, first-frame, handshake and idle timeouts, timestamp
//! skew, inflated size, outbound budget, tunnels per session, packet rate, drain time) are listed with their
//! defaults, units and reasons on [`SessionConfig`](crate::config::SessionConfig).
//!
//! ## PROXY protocol ([`crate::proxy`])
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`V1_MAX_LEN`](crate::proxy::V1_MAX_LEN) | 107 | bytes of a v1 header line | a peer holding a buffer open with an endless line |
//! | [`V2_MAX_LEN`](crate::proxy::V2_MAX_LEN) | 1040 | bytes of a v2 header (16 fixed + addresses and TLVs) | a forged length making the gateway buffer 64 KiB per connection |
//!
//! ## Client limits ([`crate::client`])
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`ClientConfig::handshake_timeout`](crate::client::ClientConfig::handshake_timeout) | 10 | seconds from connect to `SCHandshake` | a client hanging on a server that never answers |
//! | [`DEFAULT_HEARTBEAT_INTERVAL`](crate::client::DEFAULT_HEARTBEAT_INTERVAL) | 10 | seconds of silence before a heartbeat | a quiet player being dropped by the gateway's 60 s idle timeout |
//! | [`DEFAULT_REQUEST_TIMEOUT`](crate::client::DEFAULT_REQUEST_TIMEOUT) | 30 | seconds a request waits for its reply | an application waiting forever for a lost reply |
//! | [`DEFAULT_CLIENT_MAX_PENDING`](crate::client::DEFAULT_CLIENT_MAX_PENDING) | 1024 | requests awaiting a reply | a server that stops answering growing the client's memory |
//! | [`DEFAULT_CLIENT_MAX_INFLATED_LEN`](crate::client::DEFAULT_CLIENT_MAX_INFLATED_LEN) | 16 | MiB of inflated server `data` | a zlib bomb from a compromised server |

mod address;
mod admission;
mod gcra;

pub use address::AddressGroup;
pub use admission::{
    Admission, AdmissionConfig, AdmissionError, AdmissionSnapshot, Admit, Admitted,
    DEFAULT_CONNECTION_RATE, DEFAULT_IPV6_PREFIX_LEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_ADDRESS, EVICTION_SCAN, MAX_RATE_ENTRIES,
};
pub use gcra::{Gcra, InvalidRateLimit, RateLimit, RateLimited};
