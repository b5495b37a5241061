//! The Janus gateway on tokio.
//!
//! * [`config`]: the YAML configuration (upstream key names, `${NAME:default}` placeholders),
//!   `check-config` and `keygen`.
//! * [`gateway`]: listeners (TCP, WebSocket), one task per connection driving a
//!   [`janus_core::session::Session`], tonic tunnels to backends, the push service, admin HTTP.
//! * [`demo`]: a Roma-compatible demo backend for local runs and tests.
//! * [`bench`]: the `janus-bench` load generator.

pub mod bench;
pub mod clock;
pub mod cluster;
/// The configuration file (the `janus-config` crate, shared with builds without tokio).
pub use janus_config as config;
pub mod demo;
pub mod filters;
pub mod gateway;
pub mod telemetry;
