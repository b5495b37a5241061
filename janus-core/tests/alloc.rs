//! Heap allocations on the forwarding path, counted with a counting global allocator (a count,
//! not a timing, so it is deterministic).
//!
//! Target (issue: "no heap allocation per forwarded packet beyond the output buffer"): in steady
//! state, one client packet in and its reply out cost at most one allocation — the buffer handed
//! to the socket by `poll_transmit` — and usually none, because the session reclaims its buffers
//! once the adapter has dropped them.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use janus_core::{
    Time,
    client::{ClientSession, Outgoing},
    session::{Event, Session, TunnelMessage},
    testing::{test_client_config, test_context, test_server_config, test_token},
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forwarding_allocates_at_most_the_output_buffer() {
    let now = Time::from_unix_secs(1_700_000_000);
    let mut config = test_server_config(true);
    config.session.compress_threshold = usize::MAX;
    let mut server = Session::new(Arc::new(config), test_context(), now, [1; 32]);
    let mut client = ClientSession::new(
        &test_client_config(true, test_token(1, now, 1)),
        now,
        [2; 32],
    );
    server.handle_bytes(now, &client.poll_transmit().unwrap());
    client.handle_bytes(now, &server.poll_transmit().unwrap());
    while server.poll_event().is_some() {}

    const PACKETS: usize = 1000;
    let frames: Vec<Bytes> = (0..PACKETS + 100)
        .map(|_| {
            client
                .send(
                    now,
                    Outgoing {
                        module: 3,
                        seq: 1,
                        data: Bytes::from(vec![7u8; 512]),
                        ..Default::default()
                    },
                )
                .unwrap();
            client.poll_transmit().unwrap()
        })
        .collect();

    let mut run = |frames: &[Bytes]| {
        let mut forwarded = 0;
        for frame in frames {
            server.handle_bytes(now, frame);
            while let Some(event) = server.poll_event() {
                if let Event::Forward { tunnel, message } = event {
                    forwarded += 1;
                    let reply = TunnelMessage {
                        data: message.data,
                        module: 3,
                        seq: 1,
                        index: message.index,
                        ..Default::default()
                    };
                    server.handle_tunnel(now, tunnel, reply);
                }
            }
            drop(server.poll_transmit().unwrap());
        }
        forwarded
    };
    // warm up: the first tunnel, buffers reaching their working size
    assert_eq!(run(&frames[..100]), 100);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(run(&frames[100..]), PACKETS);
    let per_packet = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / PACKETS as f64;
    println!("allocations per forwarded packet and reply: {per_packet:.2}");
    assert!(per_packet <= 1.0, "{per_packet} allocations per packet");
}
