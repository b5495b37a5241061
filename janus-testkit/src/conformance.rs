//! The conformance scenario every binding runs against a real gateway and demo backend: the Rust
//! SDK (tokio and blocking), the C ABI (the C program `janus-ffi/examples/echo.c`) and the
//! browser build (the page `janus-wasm/www/index.html` in headless Chromium). Each prints or
//! collects one line per step; the test compares them with [`TRANSCRIPT`], so every binding is
//! held to the same observable behaviour.
//!
//! 1. `known answers`: the binding's build recomputes the spec's V1–V5 (`janus_client::known_answers`).
//! 2. `connected`: TCP (or WebSocket) connect and handshake with the test-vector keys.
//! 3. `echo`: module [`MODULE`], seq [`SEQ`], data [`ECHO`]; the reply carries the same data and
//!    the request's index.
//! 4. `heartbeat`: the client's own heartbeat after [`HEARTBEAT_MS`] of silence, answered by the
//!    backend (`SCHeartbeat`, code Succeeded).
//! 5. `push`: data [`PUSH_ME`] gets its echo, then a push (index 0, mod 3, seq 2, data `pushed`).
//! 6. `failure`: data [`FAIL`] is answered with `SCServerUnexpectedErr`, whose message the
//!    binding reports.

/// The game module and request used (User / Login): routed to the player tunnel.
pub const MODULE: i32 = 3;
pub const SEQ: i32 = 1;
/// The echo request's data.
pub const ECHO: &str = "hello janus";
/// Data that makes the demo backend push right after its reply.
pub const PUSH_ME: &str = "push-me";
/// Data the demo backend cannot serve (`big:N` without a number).
pub const FAIL: &str = "big:x";
/// The heartbeat interval the scenario configures, milliseconds.
pub const HEARTBEAT_MS: u64 = 300;
/// The player the scenario logs in as.
pub const UID: i64 = 20001;

/// What every binding must report, in order.
pub const TRANSCRIPT: &[&str] = &[
    "known answers: 12 ok",
    "connected",
    "echo: hello janus",
    "heartbeat: succeeded",
    "push reply: push-me",
    "push: module=3 seq=2 data=pushed",
    "failure: module=3 seq=1 message=big:N wants N as ASCII decimal, at most 1048576",
];
