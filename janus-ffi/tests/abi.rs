//! The extern "C" functions called directly, against a real server session on virtual time:
//! the checks at the boundary, the transmit and event paths, and the spec's V1 frame coming out
//! of `janus_client_poll_transmit` byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Calling the C ABI from Rust is unsafe by nature; each call follows the documented contract.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::{ffi::CString, ptr, sync::Arc};

use janus_core::{
    Time,
    session::{Event as ServerEvent, Session, TunnelId, TunnelMessage},
    testing::{TEST_CLIENT_CERT_SEED, test_context, test_server_config, test_token},
};
use janus_ffi::*;

const T0_MS: u64 = 1_699_999_990_000;

fn config(token: &CString, keys: Option<(&[u8; 32], &[u8; 32])>, seed: &[u8; 32]) -> JanusConfig {
    JanusConfig {
        token: token.as_ptr(),
        client_cert_seed: keys.map_or(ptr::null(), |k| k.0.as_ptr()),
        server_cert_key: keys.map_or(ptr::null(), |k| k.1.as_ptr()),
        seed: seed.as_ptr(),
        server_id: 0,
        handshake_timeout_ms: 0,
        heartbeat_interval_ms: 0,
        request_timeout_ms: 0,
        max_pending: 0,
        max_frame_len: 0,
    }
}

fn zero_event() -> JanusEvent {
    JanusEvent {
        kind: JanusEventKind::None,
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

/// A client handle and a server session moving bytes between them.
struct Pair {
    client: *mut JanusClient,
    server: Session,
    tunnel: Option<TunnelId>,
    forwarded: Vec<TunnelMessage>,
    now_ms: u64,
}

impl Pair {
    fn new(encrypted: bool, heartbeat_ms: u32) -> Pair {
        let token = CString::new(test_token(10001, Time::from_unix_millis(T0_MS), 1)).unwrap();
        let server_key = janus_core::crypto::SigningKey::from_seed(&[0x22; 32])
            .verifying_key()
            .to_bytes();
        let keys = encrypted.then_some((&TEST_CLIENT_CERT_SEED, &server_key));
        let mut c = config(&token, keys, &[9; 32]);
        c.heartbeat_interval_ms = heartbeat_ms;
        let mut client = ptr::null_mut();
        assert_eq!(
            unsafe { janus_client_new(&c, T0_MS, &mut client) },
            JanusStatus::Ok
        );
        let server = Session::new(
            Arc::new(test_server_config(encrypted)),
            test_context(),
            Time::from_unix_millis(T0_MS),
            [4; 32],
        );
        Pair {
            client,
            server,
            tunnel: None,
            forwarded: Vec::new(),
            now_ms: T0_MS,
        }
    }

    fn take_transmit(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7]; // small on purpose: partial copies must add up
        let mut n = 0;
        while unsafe {
            janus_client_poll_transmit(self.client, buf.as_mut_ptr(), buf.len(), &mut n)
        } == JanusStatus::Ok
        {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn drive(&mut self) -> Vec<JanusEvent> {
        let now = Time::from_unix_millis(self.now_ms);
        let sent = self.take_transmit();
        if !sent.is_empty() {
            self.server.handle_bytes(now, &sent);
        }
        while let Some(e) = self.server.poll_event() {
            if let ServerEvent::Forward { tunnel, message } = e {
                self.tunnel = Some(tunnel);
                self.forwarded.push(message);
            }
        }
        if let Some(bytes) = self.server.poll_transmit() {
            let status = unsafe {
                janus_client_handle_bytes(self.client, self.now_ms, bytes.as_ptr(), bytes.len())
            };
            assert_eq!(status, JanusStatus::Ok);
        }
        self.events()
    }

    fn events(&mut self) -> Vec<JanusEvent> {
        let mut events = Vec::new();
        let mut e = zero_event();
        while unsafe { janus_client_poll_event(self.client, &mut e) } == JanusStatus::Ok {
            events.push(e);
            e = zero_event();
        }
        events
    }

    fn send(&mut self, data: &[u8]) -> Result<i32, JanusStatus> {
        let request = JanusRequest {
            module: 3,
            seq: 1,
            obj: 0,
            data: data.as_ptr(),
            data_len: data.len(),
            data_version: 0,
            compress: 0,
        };
        let mut index = 0;
        match unsafe { janus_client_send(self.client, self.now_ms, &request, &mut index) } {
            JanusStatus::Ok => Ok(index),
            other => Err(other),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        unsafe { janus_client_free(self.client) };
    }
}

fn data(e: &JanusEvent) -> &[u8] {
    if e.data.is_null() {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(e.data, e.data_len) }
}

fn free(mut events: Vec<JanusEvent>) {
    for e in &mut events {
        unsafe { janus_event_free(e) };
        assert_eq!(e.kind, JanusEventKind::None);
        assert!(e.data.is_null());
        unsafe { janus_event_free(e) }; // twice is harmless
    }
}

#[test]
fn v1_comes_out_of_the_transmit_path_byte_for_byte() {
    let mut p = Pair::new(false, 10_000);
    let events = p.drive();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, JanusEventKind::Established);
    assert_eq!(events[0].index, 1, "start_index");
    free(events);
    let mut deadline = 0;
    assert_eq!(
        unsafe { janus_client_poll_timeout(p.client, &mut deadline) },
        JanusStatus::Ok
    );
    assert_eq!(deadline, 1_700_000_000_000);
    assert_eq!(
        unsafe { janus_client_handle_timeout(p.client, deadline) },
        JanusStatus::Ok
    );
    let frame = p.take_transmit();
    assert_eq!(
        frame.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        janus_client::known_answers::V1_FRAME
    );
}

#[test]
fn an_encrypted_session_echoes_fails_and_closes_through_the_abi() {
    let mut p = Pair::new(true, JANUS_NEVER);
    assert_eq!(p.send(b"too early"), Err(JanusStatus::NotConnected));
    assert!(!unsafe { janus_client_is_established(p.client) });
    free(p.drive());
    assert!(unsafe { janus_client_is_established(p.client) });

    let index = p.send(b"hello").unwrap();
    assert_eq!(index, 1);
    assert!(p.drive().is_empty());
    let request = p.forwarded.pop().unwrap();
    let tunnel = p.tunnel.unwrap();
    p.server
        .handle_tunnel(Time::from_unix_millis(p.now_ms), tunnel, request.clone());
    let push = TunnelMessage {
        data: bytes::Bytes::from_static(b"pushed"),
        obj: 10001,
        module: 3,
        seq: 2,
        ..Default::default()
    };
    p.server
        .handle_tunnel(Time::from_unix_millis(p.now_ms), tunnel, push);
    let failure = janus_core::system::unexpected_err(3, 1, 2, "nope");
    let index2 = p.send(b"fails").unwrap();
    let mut events = p.drive();
    p.server.handle_tunnel(
        Time::from_unix_millis(p.now_ms),
        tunnel,
        TunnelMessage {
            data: failure.data,
            module: failure.r#mod,
            seq: failure.seq,
            index: index2,
            obj: 10001,
            ..Default::default()
        },
    );
    events.extend(p.drive());
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            JanusEventKind::Packet,
            JanusEventKind::Packet,
            JanusEventKind::RequestFailed
        ]
    );
    assert_eq!((events[0].index, data(&events[0])), (1, &b"hello"[..]));
    assert_eq!(
        (events[1].index, events[1].seq, data(&events[1])),
        (0, 2, &b"pushed"[..])
    );
    assert_eq!((events[2].index, data(&events[2])), (2, &b"nope"[..]));
    free(events);

    assert_eq!(unsafe { janus_client_close(p.client) }, JanusStatus::Ok);
    let events = p.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, JanusEventKind::Closed);
    assert_eq!(events[0].code, JanusCloseReason::Local as i32);
    assert_eq!(data(&events[0]), b"closed locally");
    free(events);
    assert!(unsafe { janus_client_is_closed(p.client) });
    assert_eq!(p.send(b"after"), Err(JanusStatus::NotConnected));
}

#[test]
fn frames_come_one_at_a_time_for_message_transports() {
    let mut p = Pair::new(true, JANUS_NEVER);
    let mut small = [0u8; 8];
    let mut n = 0;
    assert_eq!(
        unsafe { janus_client_poll_frame(p.client, small.as_mut_ptr(), small.len(), &mut n) },
        JanusStatus::BufferTooSmall
    );
    let hello_len = n;
    assert_eq!(unsafe { janus_client_transmit_len(p.client) }, hello_len);
    let mut buf = vec![0u8; 1024];
    assert_eq!(
        unsafe { janus_client_poll_frame(p.client, buf.as_mut_ptr(), buf.len(), &mut n) },
        JanusStatus::Ok
    );
    assert_eq!(n, hello_len);
    assert_eq!(
        u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize + 4,
        n
    );
    assert_eq!(
        unsafe { janus_client_poll_frame(p.client, buf.as_mut_ptr(), buf.len(), &mut n) },
        JanusStatus::None
    );
    p.server
        .handle_bytes(Time::from_unix_millis(p.now_ms), &buf[..hello_len]);
    free(p.drive());
    p.send(b"one").unwrap();
    p.send(b"two").unwrap();
    let mut frames = 0;
    while unsafe { janus_client_poll_frame(p.client, buf.as_mut_ptr(), buf.len(), &mut n) }
        == JanusStatus::Ok
    {
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize + 4,
            n
        );
        frames += 1;
    }
    assert_eq!(frames, 2);
}

#[test]
fn every_pointer_is_checked() {
    let token = CString::new("t").unwrap();
    let seed = [1u8; 32];
    let mut client = ptr::null_mut();
    unsafe {
        assert_eq!(
            janus_client_new(ptr::null(), 0, &mut client),
            JanusStatus::NullArgument
        );
        assert!(client.is_null());
        let c = config(&token, None, &seed);
        assert_eq!(
            janus_client_new(&c, 0, ptr::null_mut()),
            JanusStatus::NullArgument
        );
        let mut no_token = config(&token, None, &seed);
        no_token.token = ptr::null();
        assert_eq!(
            janus_client_new(&no_token, 0, &mut client),
            JanusStatus::NullArgument
        );
        let mut no_seed = config(&token, None, &seed);
        no_seed.seed = ptr::null();
        assert_eq!(
            janus_client_new(&no_seed, 0, &mut client),
            JanusStatus::NullArgument
        );
        let bad = CString::new(vec![0xff, 0xfe]).unwrap();
        assert_eq!(
            janus_client_new(&config(&bad, None, &seed), 0, &mut client),
            JanusStatus::InvalidArgument
        );

        let null = ptr::null_mut();
        let mut buf = [0u8; 4];
        let mut n = 0;
        let mut e = zero_event();
        let mut deadline = 0;
        assert_eq!(
            janus_client_handle_bytes(null, 0, buf.as_ptr(), 4),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_handle_timeout(null, 0),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_poll_timeout(null, &mut deadline),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_poll_transmit(null, buf.as_mut_ptr(), 4, &mut n),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_poll_event(null, &mut e),
            JanusStatus::NullArgument
        );
        assert_eq!(janus_client_close(null), JanusStatus::NullArgument);
        assert_eq!(janus_client_transmit_len(null), 0);
        assert!(!janus_client_is_established(null));
        assert!(janus_client_is_closed(null));
        janus_client_free(null);
        janus_event_free(ptr::null_mut());

        assert_eq!(janus_client_new(&c, 0, &mut client), JanusStatus::Ok);
        assert_eq!(
            janus_client_handle_bytes(client, 0, ptr::null(), 3),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_handle_bytes(client, 0, ptr::null(), 0),
            JanusStatus::Ok
        );
        assert_eq!(
            janus_client_poll_transmit(client, ptr::null_mut(), 4, &mut n),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_poll_transmit(client, buf.as_mut_ptr(), 4, ptr::null_mut()),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_poll_event(client, ptr::null_mut()),
            JanusStatus::NullArgument
        );
        assert_eq!(
            janus_client_send(client, 0, ptr::null(), ptr::null_mut()),
            JanusStatus::NullArgument
        );
        janus_client_free(client);
    }
}

#[test]
fn the_self_test_passes_and_the_version_is_a_c_string() {
    assert_eq!(janus_self_test(), 12);
    let version = unsafe { std::ffi::CStr::from_ptr(janus_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
