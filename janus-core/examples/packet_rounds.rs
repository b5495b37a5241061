//! The per-packet path of the `packet_path` benchmark as a plain program, for instruction counts
//! (wall-clock timings on a shared machine are noisy; callgrind's counts are not):
//!
//! ```text
//! cargo build --release -p janus-core --example packet_rounds
//! valgrind --tool=callgrind --toggle-collect='*round_trips*' \
//!     target/release/examples/packet_rounds 512 10000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! Only `round_trips` is counted: the client seals every frame beforehand, as in the benchmark.
//! Arguments: payload size in bytes (default 512), round trips (default 10000), and `raw` to count
//! the benchmark's reference instead (one AES-256-GCM open plus one seal of the payload size),
//! `pass` to run the session with one pass-through filter on packets and replies (the cost of a
//! filter call; the default runs the empty chain), `builtins` with the built-in packet filters
//! set so that nothing is refused (as the `filter_chain/builtins` benchmark), or
//! `time` to time both, interleaved in batches of 128, and print the fastest batch of each: a rough
//! ratio that survives a busy machine better than means do (criterion's figures are the ones to
//! quote).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{hint::black_box, sync::Arc, time::Instant};

use aes_gcm::{Aes256Gcm, KeyInit, Nonce, aead::AeadInPlace};
use bytes::{Bytes, BytesMut};
use janus_core::{
    Time,
    client::{ClientSession, Outgoing},
    filter::{
        Admit, ClientPacket, Filter, FilterError, Hooks, PacketVerdict, SessionView,
        builtin::{
            Action, MaxPayload, ModuleAccess, ModuleRateLimit, ModuleRoute, RateRule, RouteRule,
        },
    },
    limit::RateLimit,
    route::TunnelKind,
    session::{Event, Session, TunnelMessage},
    testing::{test_client_config, test_context, test_server_config, test_token},
};

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

/// The counted run.
#[inline(never)]
fn round_trips(server: &mut Session, frames: Vec<BytesMut>) {
    drive(server, frames);
}

/// The same, not counted: the tunnel opens, buffers reach their working size.
#[inline(never)]
fn warm_up(server: &mut Session, frames: Vec<BytesMut>) {
    drive(server, frames);
}

/// One client packet in and its reply out per frame, as `packet_path` times it.
#[inline(always)]
fn drive(server: &mut Session, frames: Vec<BytesMut>) {
    for frame in frames {
        server.handle_buf(t0(), frame);
        while let Some(event) = server.poll_event() {
            if let Event::Forward { tunnel, message } = event {
                let reply = TunnelMessage {
                    data: message.data,
                    module: message.module,
                    seq: message.seq,
                    index: message.index,
                    obj: message.obj,
                    ..Default::default()
                };
                server.handle_tunnel(t0(), tunnel, reply);
            }
        }
        let written = black_box(server.transmit()).len();
        server.advance_transmit(written);
    }
}

/// The `raw_aes_gcm` reference, counted under the same name.
#[inline(never)]
fn round_trips_raw(size: usize, rounds: usize) {
    let aead = Aes256Gcm::new_from_slice(&[7; 32]).unwrap();
    let mut sealed = vec![0x5a; size];
    let tag = aead
        .encrypt_in_place_detached(Nonce::from_slice(&[1; 12]), &[], &mut sealed)
        .unwrap();
    let mut buf = vec![0u8; size];
    for _ in 0..rounds {
        buf.copy_from_slice(&sealed);
        aead.decrypt_in_place_detached(Nonce::from_slice(&[1; 12]), &[], &mut buf, &tag)
            .unwrap();
        let tag = aead
            .encrypt_in_place_detached(Nonce::from_slice(&[2; 12]), &[], &mut buf)
            .unwrap();
        black_box((&buf, tag));
    }
}

/// Lets everything through.
#[derive(Debug)]
struct PassThrough;

impl Filter for PassThrough {
    type State = ();
    fn name(&self) -> &str {
        "pass"
    }
    fn hooks(&self) -> Hooks {
        Hooks::PACKET | Hooks::REPLY
    }
    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(Admit::Accept(()))
    }
    fn on_packet(
        &self,
        _: &mut (),
        _: &SessionView<'_>,
        _: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        Ok(PacketVerdict::Pass)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().map_or(512, |a| a.parse().expect("size"));
    let rounds: usize = args.next().map_or(10_000, |a| a.parse().expect("rounds"));
    let mode = args.next();
    if mode.as_deref() == Some("raw") {
        round_trips_raw(size, rounds);
        println!("{rounds} raw AES-256-GCM open+seal of {size} B");
        return;
    }

    let mut config = test_server_config(true);
    config.session.compress_threshold = usize::MAX;
    config.session.outbound_budget = usize::MAX;
    match mode.as_deref() {
        Some("pass") => config.filters.push(PassThrough).unwrap(),
        Some("builtins") => {
            let f = &mut config.filters;
            f.push(ModuleAccess::new(vec![], vec![6, 7, 8], Action::Reject))
                .unwrap();
            f.push(MaxPayload::new(Some(16384), vec![(5, 64)], Action::Reject))
                .unwrap();
            let generous = RateLimit {
                per_second: 1_000_000,
                burst: u32::MAX,
            };
            let rule = RateRule::new(vec![3], generous, Action::Reject);
            f.push(ModuleRateLimit::new(vec![rule])).unwrap();
            let rule = RouteRule::new(9, vec![], TunnelKind::ROOM);
            f.push(ModuleRoute::new(vec![rule])).unwrap();
        }
        _ => {}
    }
    let mut server = Session::new(Arc::new(config), test_context(), t0(), [1; 32]);
    let mut client = ClientSession::new(
        &test_client_config(true, test_token(1, t0(), 1)),
        t0(),
        [2; 32],
    );
    server.handle_bytes(t0(), &client.poll_transmit().unwrap());
    client.handle_bytes(t0(), &server.poll_transmit().unwrap());
    while server.poll_event().is_some() {}
    while client.poll_event().is_some() {}
    assert!(client.is_established());

    let payload = Bytes::from(vec![0x5a; size]);
    let mut seal = |n: usize| {
        let mut stream = BytesMut::new();
        let mut lens = Vec::with_capacity(n);
        for _ in 0..n {
            let out = Outgoing {
                module: 3,
                seq: 1,
                data: payload.clone(),
                ..Default::default()
            };
            client.send(t0(), out).unwrap();
            let frame = client.poll_transmit().unwrap();
            lens.push(frame.len());
            stream.extend_from_slice(&frame);
        }
        lens.iter()
            .map(|&len| stream.split_to(len))
            .collect::<Vec<_>>()
    };
    let warm = seal(16);
    warm_up(&mut server, warm);
    if mode.as_deref() == Some("time") {
        const BATCH: usize = 128;
        let (mut best_path, mut best_raw) = (f64::MAX, f64::MAX);
        for _ in 0..rounds.div_ceil(BATCH) {
            let frames = seal(BATCH);
            let start = Instant::now();
            drive(&mut server, frames);
            best_path = best_path.min(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
            let start = Instant::now();
            round_trips_raw(size, BATCH);
            best_raw = best_raw.min(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        }
        println!(
            "{size:>5} B: path {best_path:7.1} ns, raw open+seal {best_raw:7.1} ns -> {:5.1} % (fastest batch of each)",
            100.0 * best_raw / best_path
        );
        return;
    }
    let frames = seal(rounds);
    round_trips(&mut server, frames);
    println!(
        "{rounds} round trips of {size} B; session stats {:?}",
        server.stats()
    );
}
