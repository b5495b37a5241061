//! What an idle authenticated connection keeps on the gateway's heap, TCP and WebSocket alike:
//! the gateway runs in this process under a counting allocator, the clients in another
//! (`janus-bench --mode idle`), so every byte counted is the gateway's. Live bytes, not resident
//! memory: the allocator's own slack and the kernel's socket memory are not in it (the suite,
//! `scripts/bench.sh`, reports resident memory).
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    process::Stdio,
    sync::atomic::{AtomicIsize, Ordering::Relaxed},
    time::Duration,
};

use common::Rig;

/// Bytes allocated and not yet freed, process-wide.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CLIENTS: usize = 400;
/// A regression guard, not the goal: issue 11 targets at most 2 KiB per idle authenticated
/// connection; measured here on 2026-12-03: 3,747 B over TCP and 4,172 B over WebSocket (the
/// connection task's future about 1.2 KiB, the driver's boxed future 0.9 KiB, the boxed `Conn`
/// 768 B, the WebSocket layer's boxed state 512 B, mailbox and registry entries ~0.6 KiB);
/// the margin is for a loaded machine, where some sessions have not compacted yet.
const BUDGET: isize = 5 * 1024;

/// Live heap bytes per connection with `CLIENTS` idle clients on `args` (a destination).
async fn live_bytes_per_connection(args: &[String]) -> isize {
    // Settle: the gateway's own start-up allocations are done.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = LIVE.load(Relaxed);
    let bench = std::process::Command::new(env!("CARGO_BIN_EXE_janus-bench"))
        .args(args)
        .args([
            "--mode",
            "idle",
            "--clients",
            &CLIENTS.to_string(),
            "--ramp",
            "1s",
            "--duration",
            "6s",
            "--threads",
            "1",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every client is in after the ramp; a quiet second later the sessions have compacted.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let during = LIVE.load(Relaxed);
    // The bench exits by itself after its duration (`--timeout` bounds every wait inside it).
    let out = tokio::task::spawn_blocking(move || bench.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("errors: none"), "{report}");
    (during - before) / CLIENTS as isize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_idle_connection_holds_under_five_kib_of_heap() {
    let rig = Rig::start_with(|s| {
        s.admission.max_handshakes_per_address = 1024;
        s.admission.connection_rate = None;
    })
    .await;
    let tcp = live_bytes_per_connection(&["--addr".into(), rig.tcp().to_string()]).await;
    let ws_url = format!("ws://{}/ws", rig.gateway.addrs().ws.unwrap());
    let ws = live_bytes_per_connection(&["--ws".into(), ws_url]).await;
    eprintln!("live heap per idle connection: tcp {tcp} B, websocket {ws} B");
    assert!(tcp > 0 && ws > 0, "tcp {tcp}, ws {ws}");
    assert!(tcp <= BUDGET, "tcp: {tcp} bytes per idle connection");
    assert!(ws <= BUDGET, "websocket: {ws} bytes per idle connection");
}
