//! C ABI over the Janus sans-IO client (`janus_core::client::ClientSession`), for game engines
//! that own their sockets and their main loop: Unity (P/Invoke), Unreal, Godot (GDExtension), or
//! plain C. The header is `include/janus.h`, generated from this file by cbindgen.
//!
//! The engine does all IO; the library frames, seals, handshakes, heartbeats and times requests
//! out, exactly as the gateway expects:
//!
//! ```text
//! JanusClient *c; janus_client_new(&config, now_ms, &c);     // queues the handshake
//! loop (each frame of the game, or when the socket is readable):
//!     janus_client_handle_bytes(c, now_ms, buf, n);          // bytes read from the socket
//!     janus_client_handle_timeout(c, now_ms);                // the clock (cheap when nothing is due)
//!     while (janus_client_poll_event(c, &ev) == JANUS_STATUS_OK) { ...; janus_event_free(&ev); }
//!     while (janus_client_poll_transmit(c, out, sizeof out, &n) == JANUS_STATUS_OK) send(out, n);
//!     janus_client_send(c, now_ms, &request, &index);        // whenever the game wants
//! janus_client_free(c);
//! ```
//!
//! # Rules of the boundary
//!
//! * Every function returns a [`JanusStatus`] (or a value documented otherwise) and never
//!   unwinds into C: a Rust panic is caught, reported as `JANUS_STATUS_PANIC`, and the handle
//!   refuses every later call except [`janus_client_free`].
//! * Every pointer argument is checked for NULL. A non-NULL pointer must point to what the
//!   function documents (e.g. 32 readable bytes for a key); the library cannot check that.
//! * A [`JanusClient`] is not thread-safe: call it from one thread at a time.
//! * Ownership: the library never keeps a pointer the caller passed in (it copies). An event's
//!   `data` is owned by the event until [`janus_event_free`]. Transmit bytes are copied into the
//!   caller's buffer.
//! * Time is Unix milliseconds (`now_ms`) from the caller's clock; it should never go backwards.
//! * Randomness: [`JanusConfig::seed`] is 32 bytes from the platform's CSPRNG; the library has
//!   no other source (it makes the ephemeral key and every nonce from it).
#![allow(unsafe_code)] // The one crate of the workspace that must: raw pointers from C.

use std::{
    ffi::{CStr, c_char},
    panic::{AssertUnwindSafe, catch_unwind},
    ptr, slice,
    time::Duration,
};

use bytes::{Buf as _, BytesMut};
use janus_client::keys_from_bytes;
use janus_core::{
    Time,
    client::{ClientConfig, ClientError, ClientEvent, ClientSession, Outgoing},
    frame::frame_len,
};

/// Length of every key and seed the ABI takes, bytes.
pub const JANUS_KEY_LEN: usize = 32;
/// A duration field set to this turns the behaviour off (no heartbeats, no request timeouts).
pub const JANUS_NEVER: u32 = u32::MAX;

/// What a call did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanusStatus {
    /// Done; for `poll_*`, something was returned.
    Ok = 0,
    /// Nothing to return (no event, no bytes, no deadline).
    None = 1,
    /// A required pointer was NULL.
    NullArgument = -1,
    /// An argument is invalid (a token that is not UTF-8, a key that is not a valid key).
    InvalidArgument = -2,
    /// The buffer is too small; `*written` says how many bytes are needed.
    BufferTooSmall = -3,
    /// The session is not established (handshaking, or closed): nothing was sent.
    NotConnected = -4,
    /// The request could not be encoded (e.g. compression failed): nothing was sent.
    RequestRefused = -5,
    /// The library panicked; the handle is unusable except for [`janus_client_free`].
    Panic = -6,
}

/// What an event is (see [`JanusEvent`] for which fields each kind fills).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanusEventKind {
    /// A zeroed or freed event.
    None = 0,
    /// The handshake completed: `index` is the first request index, `server_time` the server's
    /// clock (unix seconds).
    Established = 1,
    /// A server packet: a reply (`index` of its request) or a push (`index` 0); `module`, `seq`,
    /// `obj`, `data_version`, and `data` (already inflated).
    Packet = 2,
    /// The answer to the library's own heartbeat: `server_time`, `code` (`SCHeartbeat.code`:
    /// 1 succeeded, 2 clock too far off, 0 server error).
    Heartbeat = 3,
    /// The request at `index` (`module`, `seq`) failed on the server (`SCServerUnexpectedErr`);
    /// `data` is its message (UTF-8, not NUL-terminated).
    RequestFailed = 4,
    /// The request at `index` (`module`, `seq`) got no reply in time. A later reply is dropped.
    RequestTimeout = 5,
    /// The server logged the session out: `code` is `SCServerLogout.code` (0 server, 1 waiting,
    /// 2 unauthorized, 3 conflicting login, 4 admin kick, 5 banned). `CLOSED` follows.
    Logout = 6,
    /// The session is over (always the last event): `code` is a [`JanusCloseReason`], `data`
    /// the reason in words. Close the socket.
    Closed = 7,
}

/// Why a session closed ([`JanusEventKind::Closed`]'s `code`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanusCloseReason {
    /// The handshake failed (refused by the server, bad signature, clock skew, bad reply).
    Handshake = 1,
    /// No handshake reply within the handshake timeout.
    HandshakeTimeout = 2,
    /// The server sent a bad length prefix.
    Frame = 3,
    /// A packet did not authenticate.
    DecryptFailed = 4,
    /// A packet did not decode.
    MalformedPacket = 5,
    /// The server logged the session out (see the `LOGOUT` event before).
    LoggedOut = 6,
    /// [`janus_client_close`].
    Local = 7,
    /// Anything newer than this header.
    Other = 99,
}

/// How to connect. Zero means "the default" for every number; [`JANUS_NEVER`] turns a timer off.
#[repr(C)]
#[derive(Debug)]
pub struct JanusConfig {
    /// The account-service token, NUL-terminated UTF-8 (required; each token opens one session).
    pub token: *const c_char,
    /// The client certificate's Ed25519 seed, [`JANUS_KEY_LEN`] bytes; NULL for a gateway running
    /// unencrypted.
    pub client_cert_seed: *const u8,
    /// The server certificate's Ed25519 public key, [`JANUS_KEY_LEN`] bytes; NULL skips verifying
    /// the server (tests only).
    pub server_cert_key: *const u8,
    /// [`JANUS_KEY_LEN`] bytes from a CSPRNG (required).
    pub seed: *const u8,
    /// `CSHandshake.server_id`; 0 takes the token's.
    pub server_id: i64,
    /// Default 10000.
    pub handshake_timeout_ms: u32,
    /// Silence before a heartbeat; default 10000; [`JANUS_NEVER`]: no heartbeats.
    pub heartbeat_interval_ms: u32,
    /// Time a request waits for its reply; default 30000; [`JANUS_NEVER`]: requests are not
    /// tracked (no `REQUEST_TIMEOUT` events).
    pub request_timeout_ms: u32,
    /// Requests awaiting a reply at once; default 1024.
    pub max_pending: u32,
    /// Largest frame body accepted, bytes; default 16384.
    pub max_frame_len: u32,
}

/// A request to send.
#[repr(C)]
#[derive(Debug)]
pub struct JanusRequest {
    pub module: i32,
    pub seq: i32,
    /// The object id; 0 means "my own uid".
    pub obj: i64,
    /// `data_len` bytes (may be NULL when `data_len` is 0). Copied.
    pub data: *const u8,
    pub data_len: usize,
    pub data_version: u64,
    /// Non-zero: zlib-compress `data` and set the packet's `compress` flag.
    pub compress: u8,
}

/// One event, filled by [`janus_client_poll_event`]. Fields a kind does not use are zero. `data`
/// (`data_len` bytes, NULL when empty) is owned by the event: release it with
/// [`janus_event_free`], which may be called on any event, filled or zeroed, once.
#[repr(C)]
#[derive(Debug)]
pub struct JanusEvent {
    pub kind: JanusEventKind,
    pub index: i32,
    pub module: i32,
    pub seq: i32,
    pub code: i32,
    pub obj: i64,
    pub server_time: i64,
    pub data_version: u64,
    pub data: *mut u8,
    pub data_len: usize,
}

/// One client connection (opaque).
#[derive(Debug)]
pub struct JanusClient {
    session: ClientSession,
    /// Bytes taken from the session and not yet copied out.
    tx: BytesMut,
    /// A panic happened inside a call: the state cannot be trusted.
    poisoned: bool,
}

impl JanusClient {
    /// Everything queued for the socket, moved into `tx`.
    fn gather(&mut self) {
        if let Some(bytes) = self.session.poll_transmit() {
            self.tx.extend_from_slice(&bytes);
        }
    }
}

/// Runs `f` on the client behind `client`, catching panics.
fn with_client(
    client: *mut JanusClient,
    f: impl FnOnce(&mut JanusClient) -> JanusStatus,
) -> JanusStatus {
    // SAFETY: the caller passes NULL or a pointer from `janus_client_new` not yet freed, used by
    // one thread at a time (the documented contract), so it is valid and unaliased.
    let Some(c) = (unsafe { client.as_mut() }) else {
        return JanusStatus::NullArgument;
    };
    if c.poisoned {
        return JanusStatus::Panic;
    }
    match catch_unwind(AssertUnwindSafe(|| f(&mut *c))) {
        Ok(status) => status,
        Err(_) => {
            c.poisoned = true;
            JanusStatus::Panic
        }
    }
}

/// `len` bytes at `ptr`, or `None` when `ptr` is NULL (an empty slice when `len` is 0).
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid and unmodified for `'a`.
unsafe fn bytes_at<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Some(unsafe { slice::from_raw_parts(ptr, len) })
}

/// A key argument: NULL, or [`JANUS_KEY_LEN`] bytes.
///
/// # Safety
/// A non-NULL `ptr` must point to [`JANUS_KEY_LEN`] readable bytes.
unsafe fn key_at<'a>(ptr: *const u8) -> Option<&'a [u8]> {
    // SAFETY: forwarded contract.
    (!ptr.is_null()).then(|| unsafe { slice::from_raw_parts(ptr, JANUS_KEY_LEN) })
}

fn millis(ms: u32, default: Duration) -> Option<Duration> {
    match ms {
        0 => Some(default),
        JANUS_NEVER => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    }
}

fn client_config(config: &JanusConfig) -> Result<(ClientConfig, [u8; 32]), JanusStatus> {
    if config.token.is_null() || config.seed.is_null() {
        return Err(JanusStatus::NullArgument);
    }
    // SAFETY: non-NULL; the contract says NUL-terminated.
    let token = unsafe { CStr::from_ptr(config.token) }
        .to_str()
        .map_err(|_| JanusStatus::InvalidArgument)?;
    // SAFETY: the contract says these are NULL or JANUS_KEY_LEN readable bytes.
    let (seed, client_seed, server_key) = unsafe {
        (
            key_at(config.seed),
            key_at(config.client_cert_seed),
            key_at(config.server_cert_key),
        )
    };
    let seed: [u8; 32] = seed
        .and_then(|s| s.try_into().ok())
        .ok_or(JanusStatus::NullArgument)?;
    let keys = match client_seed {
        Some(client_seed) => Some(
            keys_from_bytes(client_seed, server_key).map_err(|_| JanusStatus::InvalidArgument)?,
        ),
        None => None,
    };
    let mut c = ClientConfig::new(keys, token);
    let defaults = ClientConfig::new(None, "");
    c.server_id = config.server_id;
    if let Some(t) = millis(config.handshake_timeout_ms, defaults.handshake_timeout) {
        c.handshake_timeout = t;
    }
    c.heartbeat_interval = match config.heartbeat_interval_ms {
        0 => defaults.heartbeat_interval,
        ms => millis(ms, Duration::ZERO),
    };
    c.request_timeout = match config.request_timeout_ms {
        0 => defaults.request_timeout,
        ms => millis(ms, Duration::ZERO),
    };
    if config.max_pending != 0 {
        c.max_pending = config.max_pending as usize;
    }
    if config.max_frame_len != 0 {
        c.max_frame_len = config.max_frame_len as usize;
    }
    Ok((c, seed))
}

/// Creates a client at `now_ms` (Unix milliseconds) and queues its handshake; `*out` receives
/// the handle (free it with [`janus_client_free`]) or NULL on error. The library copies what
/// it needs from `config`.
///
/// # Safety
/// `config` is NULL or points to a valid [`JanusConfig`] whose pointers follow its docs; `out`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_new(
    config: *const JanusConfig,
    now_ms: u64,
    out: *mut *mut JanusClient,
) -> JanusStatus {
    if out.is_null() {
        return JanusStatus::NullArgument;
    }
    // SAFETY: `out` is non-NULL and writable (contract).
    unsafe { out.write(ptr::null_mut()) };
    // SAFETY: NULL or a valid JanusConfig (contract).
    let Some(config) = (unsafe { config.as_ref() }) else {
        return JanusStatus::NullArgument;
    };
    let made = catch_unwind(|| {
        let (c, seed) = client_config(config)?;
        let session = ClientSession::new(&c, Time::from_unix_millis(now_ms), seed);
        Ok::<_, JanusStatus>(Box::new(JanusClient {
            session,
            tx: BytesMut::new(),
            poisoned: false,
        }))
    });
    match made {
        Ok(Ok(client)) => {
            // SAFETY: as above.
            unsafe { out.write(Box::into_raw(client)) };
            JanusStatus::Ok
        }
        Ok(Err(status)) => status,
        Err(_) => JanusStatus::Panic,
    }
}

/// Frees a client (NULL is fine). The handle must not be used afterwards.
///
/// # Safety
/// `client` is NULL or a handle from [`janus_client_new`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_free(client: *mut JanusClient) {
    if !client.is_null() {
        // SAFETY: the handle came from Box::into_raw in janus_client_new and is freed once.
        let owned = unsafe { Box::from_raw(client) };
        // Dropping plain Rust data does not panic; guard anyway so nothing unwinds into C.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(owned)));
    }
}

/// Bytes read from the socket, in any split. `bytes` may be NULL when `len` is 0.
///
/// # Safety
/// `client` as in [`janus_client_free`]; `bytes` is NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_handle_bytes(
    client: *mut JanusClient,
    now_ms: u64,
    bytes: *const u8,
    len: usize,
) -> JanusStatus {
    // SAFETY: contract above.
    let Some(bytes) = (unsafe { bytes_at(bytes, len) }) else {
        return JanusStatus::NullArgument;
    };
    with_client(client, |c| {
        c.session
            .handle_bytes(Time::from_unix_millis(now_ms), bytes);
        JanusStatus::Ok
    })
}

/// Runs the client's timers (handshake deadline, heartbeats, request timeouts) at `now_ms`;
/// does nothing before [`janus_client_poll_timeout`]'s deadline, so it may be called every
/// game frame.
///
/// # Safety
/// `client` as in [`janus_client_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_handle_timeout(
    client: *mut JanusClient,
    now_ms: u64,
) -> JanusStatus {
    with_client(client, |c| {
        let now = Time::from_unix_millis(now_ms);
        if c.session.poll_timeout().is_some_and(|t| t <= now) {
            c.session.handle_timeout(now);
        }
        JanusStatus::Ok
    })
}

/// The next deadline (Unix ms) at which to call [`janus_client_handle_timeout`]:
/// `JANUS_STATUS_OK` and `*deadline_ms` set, or `JANUS_STATUS_NONE` when nothing is due ever.
///
/// # Safety
/// `client` as in [`janus_client_free`]; `deadline_ms` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_poll_timeout(
    client: *mut JanusClient,
    deadline_ms: *mut u64,
) -> JanusStatus {
    if deadline_ms.is_null() {
        return JanusStatus::NullArgument;
    }
    with_client(client, |c| match c.session.poll_timeout() {
        Some(t) => {
            // SAFETY: non-NULL and writable (contract).
            unsafe { deadline_ms.write(t.unix_millis()) };
            JanusStatus::Ok
        }
        None => JanusStatus::None,
    })
}

/// How many bytes are waiting to be sent (to size the buffer of
/// [`janus_client_poll_transmit`]); 0 for a NULL or unusable handle.
///
/// # Safety
/// `client` as in [`janus_client_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_transmit_len(client: *mut JanusClient) -> usize {
    let mut len = 0;
    with_client(client, |c| {
        c.gather();
        len = c.tx.len();
        JanusStatus::Ok
    });
    len
}

/// Copies up to `cap` bytes to send into `buf` (`*written` of them) and forgets them: a stream
/// transport (TCP) writes them as they are, and calls again until `JANUS_STATUS_NONE`.
///
/// # Safety
/// `client` as in [`janus_client_free`]; `buf` is `cap` writable bytes; `written` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_poll_transmit(
    client: *mut JanusClient,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> JanusStatus {
    if buf.is_null() || written.is_null() {
        return JanusStatus::NullArgument;
    }
    with_client(client, |c| {
        c.gather();
        let n = c.tx.len().min(cap);
        // SAFETY: `buf` holds `cap` >= n writable bytes, `written` is writable (contract), and
        // `c.tx` is our own buffer, which cannot overlap the caller's.
        unsafe {
            ptr::copy_nonoverlapping(c.tx.as_ptr(), buf, n);
            written.write(n);
        }
        c.tx.advance(n);
        if n == 0 {
            JanusStatus::None
        } else {
            JanusStatus::Ok
        }
    })
}

/// Copies exactly one whole frame to send into `buf`: for message transports (WebSocket, one
/// frame per binary message). `JANUS_STATUS_BUFFER_TOO_SMALL` sets `*written` to the size
/// needed and keeps the frame. Do not mix with [`janus_client_poll_transmit`] mid-frame.
///
/// # Safety
/// As [`janus_client_poll_transmit`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_poll_frame(
    client: *mut JanusClient,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> JanusStatus {
    if buf.is_null() || written.is_null() {
        return JanusStatus::NullArgument;
    }
    with_client(client, |c| {
        c.gather();
        let Some(len) = frame_len(&c.tx) else {
            // SAFETY: writable (contract).
            unsafe { written.write(0) };
            return JanusStatus::None;
        };
        // SAFETY: writable (contract).
        unsafe { written.write(len) };
        if len > cap {
            return JanusStatus::BufferTooSmall;
        }
        // SAFETY: `buf` holds `cap` >= len writable bytes; our buffer cannot overlap it.
        unsafe { ptr::copy_nonoverlapping(c.tx.as_ptr(), buf, len) };
        c.tx.advance(len);
        JanusStatus::Ok
    })
}

/// Queues a request with the next index (`*index`); its outcome comes as a `PACKET` with that
/// index, a `REQUEST_FAILED` or a `REQUEST_TIMEOUT` event. Call
/// [`janus_client_poll_transmit`] afterwards.
///
/// # Safety
/// `client` as in [`janus_client_free`]; `request` points to a valid [`JanusRequest`] whose
/// `data` follows its docs; `index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_send(
    client: *mut JanusClient,
    now_ms: u64,
    request: *const JanusRequest,
    index: *mut i32,
) -> JanusStatus {
    // SAFETY: NULL or a valid JanusRequest (contract).
    let Some(request) = (unsafe { request.as_ref() }) else {
        return JanusStatus::NullArgument;
    };
    // SAFETY: contract of JanusRequest::data.
    let Some(data) = (unsafe { bytes_at(request.data, request.data_len) }) else {
        return JanusStatus::NullArgument;
    };
    with_client(client, |c| {
        let out = Outgoing {
            module: request.module,
            seq: request.seq,
            obj: request.obj,
            data: bytes::Bytes::copy_from_slice(data),
            data_version: request.data_version,
            compress: request.compress != 0,
        };
        match c.session.send(Time::from_unix_millis(now_ms), out) {
            Ok(i) => {
                if !index.is_null() {
                    // SAFETY: non-NULL and writable (contract).
                    unsafe { index.write(i) };
                }
                JanusStatus::Ok
            }
            Err(ClientError::NotEstablished) => JanusStatus::NotConnected,
            Err(_) => JanusStatus::RequestRefused,
        }
    })
}

/// The next event into `*event` (`JANUS_STATUS_OK`), or `JANUS_STATUS_NONE`. Drain events after
/// every call that feeds the client. Release each with [`janus_event_free`].
///
/// # Safety
/// `client` as in [`janus_client_free`]; `event` writable. Whatever `*event` held is
/// overwritten, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_poll_event(
    client: *mut JanusClient,
    event: *mut JanusEvent,
) -> JanusStatus {
    if event.is_null() {
        return JanusStatus::NullArgument;
    }
    with_client(client, |c| match c.session.poll_event() {
        Some(e) => {
            // SAFETY: non-NULL and writable (contract).
            unsafe { event.write(to_c(e)) };
            JanusStatus::Ok
        }
        None => JanusStatus::None,
    })
}

/// Releases an event's `data` and zeroes it (kind `NONE`); NULL and zeroed events are fine.
///
/// # Safety
/// `event` is NULL or points to an event filled by [`janus_client_poll_event`] (or zeroed)
/// whose `data` and `data_len` were not changed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_event_free(event: *mut JanusEvent) {
    // SAFETY: NULL or a valid event (contract).
    let Some(e) = (unsafe { event.as_mut() }) else {
        return;
    };
    if !e.data.is_null() {
        // SAFETY: `data`/`data_len` came from Box::<[u8]>::into_raw in `owned` and are freed
        // once: the fields are cleared below.
        let owned = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(e.data, e.data_len)) };
        drop(owned);
    }
    *e = empty_event(JanusEventKind::None);
}

/// Ends the session locally (a `CLOSED` event follows); close the socket yourself.
///
/// # Safety
/// `client` as in [`janus_client_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_close(client: *mut JanusClient) -> JanusStatus {
    with_client(client, |c| {
        c.session.close();
        JanusStatus::Ok
    })
}

/// Whether the handshake has completed and the session is open (false for NULL).
///
/// # Safety
/// `client` as in [`janus_client_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_is_established(client: *mut JanusClient) -> bool {
    let mut yes = false;
    with_client(client, |c| {
        yes = c.session.is_established();
        JanusStatus::Ok
    });
    yes
}

/// Whether the session is over (true for NULL and for a handle that panicked).
///
/// # Safety
/// `client` as in [`janus_client_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn janus_client_is_closed(client: *mut JanusClient) -> bool {
    let mut yes = true;
    with_client(client, |c| {
        yes = c.session.is_closed();
        JanusStatus::Ok
    });
    yes
}

/// Recomputes the wire-protocol spec's golden vectors (V1–V5) with this build: the number
/// checked (12) when all match, -1 when one differs, -2 on a panic. Run it once on a new
/// platform or toolchain.
#[unsafe(no_mangle)]
pub extern "C" fn janus_self_test() -> i32 {
    match catch_unwind(janus_client::known_answers::check) {
        Ok(Ok(n)) => i32::try_from(n).unwrap_or(i32::MAX),
        Ok(Err(_)) => -1,
        Err(_) => -2,
    }
}

/// The library version, a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn janus_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

fn empty_event(kind: JanusEventKind) -> JanusEvent {
    JanusEvent {
        kind,
        index: 0,
        module: 0,
        seq: 0,
        code: 0,
        obj: 0,
        server_time: 0,
        data_version: 0,
        data: ptr::null_mut(),
        data_len: 0,
    }
}

/// Moves `bytes` into an allocation the event owns (NULL when empty).
fn owned(bytes: &[u8]) -> (*mut u8, usize) {
    if bytes.is_empty() {
        return (ptr::null_mut(), 0);
    }
    let boxed: Box<[u8]> = bytes.into();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

fn to_c(event: ClientEvent) -> JanusEvent {
    match event {
        ClientEvent::Established {
            start_index,
            server_time,
        } => JanusEvent {
            index: start_index,
            server_time,
            ..empty_event(JanusEventKind::Established)
        },
        ClientEvent::Packet(p) => {
            let (data, data_len) = owned(&p.data);
            JanusEvent {
                index: p.index,
                module: p.r#mod,
                seq: p.seq,
                obj: p.obj,
                data_version: p.data_version,
                data,
                data_len,
                ..empty_event(JanusEventKind::Packet)
            }
        }
        ClientEvent::Heartbeat { server_time, code } => JanusEvent {
            server_time,
            code: code as i32,
            ..empty_event(JanusEventKind::Heartbeat)
        },
        ClientEvent::RequestFailed {
            index,
            module,
            seq,
            message,
        } => {
            let (data, data_len) = owned(message.as_bytes());
            JanusEvent {
                index,
                module,
                seq,
                data,
                data_len,
                ..empty_event(JanusEventKind::RequestFailed)
            }
        }
        ClientEvent::RequestTimeout { index, module, seq } => JanusEvent {
            index,
            module,
            seq,
            ..empty_event(JanusEventKind::RequestTimeout)
        },
        ClientEvent::Logout(code) => JanusEvent {
            code: code as i32,
            ..empty_event(JanusEventKind::Logout)
        },
        ClientEvent::Closed(error) => {
            let reason = match error {
                ClientError::Handshake(_) => JanusCloseReason::Handshake,
                ClientError::HandshakeTimeout => JanusCloseReason::HandshakeTimeout,
                ClientError::Frame(_) => JanusCloseReason::Frame,
                ClientError::DecryptFailed => JanusCloseReason::DecryptFailed,
                ClientError::MalformedPacket => JanusCloseReason::MalformedPacket,
                ClientError::LoggedOut(_) => JanusCloseReason::LoggedOut,
                ClientError::Local => JanusCloseReason::Local,
                _ => JanusCloseReason::Other,
            };
            let (data, data_len) = owned(error.to_string().as_bytes());
            JanusEvent {
                code: reason as i32,
                data,
                data_len,
                ..empty_event(JanusEventKind::Closed)
            }
        }
        // A kind of event newer than this ABI: reported as a packet-less closed-ended nothing.
        _ => empty_event(JanusEventKind::None),
    }
}
