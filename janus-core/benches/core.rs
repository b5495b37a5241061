//! Core benchmarks, each against a reference measured in the same run:
//!
//! * `packet_path/<size>`: one client packet through an established server session (frame decode,
//!   AES-GCM open, protobuf decode, index check, routing, `Forward`) and its reply back out
//!   (protobuf encode, AES-GCM seal, frame) — against `raw_aes_gcm/<size>`, one AES-256-GCM open
//!   plus one seal of the same plaintext size with the same crate.
//! * `filter_chain/<case>`: the 512-byte packet path with an empty chain (`empty`, the default
//!   configuration: the no-filter path), one pass-through filter on packets and replies
//!   (`pass`), and the built-in packet filters configured so that nothing is refused
//!   (`builtins`: access, max_payload, rate_limit, route) — against `packet_path/512`.
//! * `handshake/server`: a full server handshake (`Session::new` to `SCHandshake` queued) — against
//!   the sum of its primitives measured alone: token open, Ed25519 verify, X25519 key generation
//!   and agreement, Ed25519 sign.
//!
//! `cargo bench -p janus-core --bench core` prints the ratios at the end (throughput of the path
//! as a share of the reference; 100 % means no overhead beyond the cryptography).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aes_gcm::{Aes256Gcm, KeyInit, Nonce, aead::AeadInPlace};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, black_box};
use janus_core::{
    Time,
    client::{ClientSession, Outgoing},
    crypto::{EphemeralKey, SigningKey},
    filter::{
        Admit, ClientPacket, Filter, FilterChain, FilterError, Hooks, PacketVerdict, SessionView,
        builtin::{
            Action, MaxPayload, ModuleAccess, ModuleRateLimit, ModuleRoute, RateRule, RouteRule,
        },
    },
    limit::RateLimit,
    route::TunnelKind,
    session::{Event, Session, TunnelMessage},
    testing::{test_client_config, test_context, test_server_config, test_token},
    token::TokenKey,
};

const SIZES: [usize; 3] = [64, 512, 4096];
/// Packets prepared per timed batch: small enough that a batch of 4 KiB frames stays in L2, as
/// bytes just read from a socket would be.
const CHUNK: u64 = 128;

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

/// An established server session and the client that talks to it.
fn established() -> (Session, ClientSession) {
    established_with(FilterChain::new())
}

/// [`established`] with `filters`.
fn established_with(filters: FilterChain) -> (Session, ClientSession) {
    let mut config = test_server_config(true);
    config.filters = filters;
    config.session.compress_threshold = usize::MAX; // measure the plain path
    config.session.outbound_budget = usize::MAX;
    let mut server = Session::new(Arc::new(config), test_context(), t0(), [1; 32]);
    // The client only seals frames here and never reads the replies: without request tracking
    // it keeps no per-request state (and queues no timeouts nobody drains).
    let mut client_config = test_client_config(true, test_token(1, t0(), 1));
    client_config.request_timeout = None;
    client_config.heartbeat_interval = None;
    let mut client = ClientSession::new(&client_config, t0(), [2; 32]);
    server.handle_bytes(t0(), &client.poll_transmit().unwrap());
    client.handle_bytes(t0(), &server.poll_transmit().unwrap());
    while server.poll_event().is_some() {}
    while client.poll_event().is_some() {}
    assert!(client.is_established());
    (server, client)
}

fn packet_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet_path");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let (mut server, mut client) = established();
            let payload = Bytes::from(vec![0x5a; size]);
            run_packet_path(b, &mut server, &mut client, &payload);
        });
    }
    group.finish();

    raw_aes_gcm(c);
    filter_chain(c);
}

/// Lets everything through: the cost of calling a filter at all.
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

/// The built-in packet filters, set so that the benchmark's module 3 requests all pass.
fn builtins() -> FilterChain {
    let mut chain = FilterChain::new();
    chain
        .push(ModuleAccess::new(vec![], vec![6, 7, 8], Action::Reject))
        .unwrap();
    chain
        .push(MaxPayload::new(Some(16384), vec![(5, 64)], Action::Reject))
        .unwrap();
    // The benchmark's clock stands still: a burst this large never runs out.
    let generous = RateLimit {
        per_second: 1_000_000,
        burst: u32::MAX,
    };
    chain
        .push(ModuleRateLimit::new(vec![RateRule::new(
            vec![3],
            generous,
            Action::Reject,
        )]))
        .unwrap();
    chain
        .push(ModuleRoute::new(vec![RouteRule::new(
            9,
            vec![],
            TunnelKind::ROOM,
        )]))
        .unwrap();
    chain
}

fn filter_chain(c: &mut Criterion) {
    const SIZE: usize = 512;
    let mut group = c.benchmark_group("filter_chain");
    group.throughput(Throughput::Bytes(SIZE as u64));
    type Case = (&'static str, fn() -> FilterChain);
    let cases: [Case; 3] = [
        ("empty", FilterChain::new),
        ("pass", || {
            let mut chain = FilterChain::new();
            chain.push(PassThrough).unwrap();
            chain
        }),
        ("builtins", builtins),
    ];
    for (name, chain) in cases {
        // Every case forwards the benchmark's requests (nothing refused makes a path shorter).
        let (mut server, mut client) = established_with(chain());
        let out = Outgoing {
            module: 3,
            seq: 1,
            data: Bytes::from(vec![0x5a; SIZE]),
            ..Default::default()
        };
        client.send(t0(), out).unwrap();
        server.handle_bytes(t0(), &client.poll_transmit().unwrap());
        let forwarded =
            std::iter::from_fn(|| server.poll_event()).any(|e| matches!(e, Event::Forward { .. }));
        assert!(forwarded, "{name}: the request was not forwarded");
        group.bench_function(name, |b| {
            let (mut server, mut client) = established_with(chain());
            let payload = Bytes::from(vec![0x5a; SIZE]);
            run_packet_path(b, &mut server, &mut client, &payload);
        });
    }
    group.finish();
}

/// Times one client packet in and its reply out, per iteration.
fn run_packet_path(
    b: &mut criterion::Bencher<'_>,
    server: &mut Session,
    client: &mut ClientSession,
    payload: &Bytes,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(CHUNK);
            left -= n;
            // Frames are sealed by the client outside the timed region, into one buffer as a
            // socket read of many frames would leave them; the session takes that buffer over
            // (`handle_buf`) instead of copying it.
            let mut stream = BytesMut::new();
            let mut lens = Vec::with_capacity(n as usize);
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
            let frames: Vec<BytesMut> = lens.iter().map(|&len| stream.split_to(len)).collect();
            let start = Instant::now();
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
                // What a socket write would take, without copying it out.
                let written = black_box(server.transmit()).len();
                server.advance_transmit(written);
            }
            total += start.elapsed();
        }
        total
    });
}

fn raw_aes_gcm(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_aes_gcm");
    let aead = Aes256Gcm::new_from_slice(&[7; 32]).unwrap();
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut sealed = vec![0x5a; size];
            let tag = aead
                .encrypt_in_place_detached(Nonce::from_slice(&[1; 12]), &[], &mut sealed)
                .unwrap();
            let mut buf = vec![0u8; size];
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                aead.decrypt_in_place_detached(Nonce::from_slice(&[1; 12]), &[], &mut buf, &tag)
                    .unwrap();
                let tag = aead
                    .encrypt_in_place_detached(Nonce::from_slice(&[2; 12]), &[], &mut buf)
                    .unwrap();
                black_box((&buf, tag));
            });
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let config = Arc::new(test_server_config(true));
    let mut group = c.benchmark_group("handshake");
    group.bench_function("server", |b| {
        let mut serial = 0u64;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                left -= n;
                // Every handshake needs its own token: the gateway refuses a token twice.
                let frames: Vec<Bytes> = (0..n)
                    .map(|_| {
                        serial += 1;
                        let cfg = test_client_config(true, test_token(1, t0(), serial));
                        ClientSession::new(&cfg, t0(), [3; 32])
                            .poll_transmit()
                            .unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for frame in &frames {
                    let mut server =
                        Session::new(Arc::clone(&config), test_context(), t0(), [4; 32]);
                    server.handle_bytes(t0(), frame);
                    black_box(server.poll_event());
                    black_box(server.poll_transmit());
                }
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();

    let mut group = c.benchmark_group("handshake_primitives");
    let token_key = TokenKey::new(janus_core::testing::TEST_TOKEN_KEY).unwrap();
    let token = test_token(1, t0(), 1);
    group.bench_function("token_open", |b| {
        b.iter(|| black_box(token_key.open(black_box(&token)).unwrap()))
    });
    let client_cert = SigningKey::from_seed(&janus_core::testing::TEST_CLIENT_CERT_SEED);
    let client_key = EphemeralKey::from_secret([5; 32]);
    let signature = client_cert.sign(client_key.public());
    let verifier = client_cert.verifying_key();
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(client_key.public()), &signature)
                .unwrap()
        })
    });
    group.bench_function("x25519_keygen", |b| {
        b.iter(|| black_box(EphemeralKey::from_secret(black_box([6; 32]))))
    });
    let server_key = EphemeralKey::from_secret([6; 32]);
    group.bench_function("x25519_agree", |b| {
        b.iter(|| black_box(server_key.agree(black_box(client_key.public())).unwrap()))
    });
    let server_cert = SigningKey::from_seed(&janus_core::testing::TEST_SERVER_CERT_SEED);
    group.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(server_cert.sign(black_box(server_key.public()))))
    });
    group.finish();
}

/// Criterion's point estimate (ns per iteration) for a benchmark id, read from `target/criterion`:
/// the slope of the linear fit when criterion made one (what it prints as `time:`), else the mean.
fn estimate_ns(id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned());
    let text = std::fs::read_to_string(format!("{dir}/criterion/{id}/new/estimates.json")).ok()?;
    let point = |key: &str| -> Option<f64> {
        let section = text.split(&format!("\"{key}\":")).nth(1)?;
        if section.starts_with("null") {
            return None;
        }
        let pe = section.split("\"point_estimate\":").nth(1)?;
        pe.split([',', '}']).next()?.trim().parse().ok()
    };
    point("slope").or_else(|| point("mean"))
}

fn report() {
    println!("\n=== ratios (same run) ===");
    for size in SIZES {
        if let (Some(path), Some(raw)) = (
            estimate_ns(&format!("packet_path/{size}")),
            estimate_ns(&format!("raw_aes_gcm/{size}")),
        ) {
            println!(
                "packet path {size:>5}: {path:>9.1} ns vs raw AES-256-GCM open+seal {raw:>9.1} ns -> {:5.1} % of raw throughput",
                100.0 * raw / path
            );
        }
    }
    if let Some(plain) = estimate_ns("packet_path/512") {
        for case in ["empty", "pass", "builtins"] {
            if let Some(t) = estimate_ns(&format!("filter_chain/{case}")) {
                println!(
                    "filter chain {case:>8}: {t:>9.1} ns vs packet path 512 {plain:>9.1} ns -> {:+5.1} %",
                    100.0 * (t - plain) / plain
                );
            }
        }
    }
    let parts = [
        "token_open",
        "ed25519_verify",
        "x25519_keygen",
        "x25519_agree",
        "ed25519_sign",
    ];
    let sum: Option<f64> = parts
        .iter()
        .map(|p| estimate_ns(&format!("handshake_primitives/{p}")))
        .sum();
    if let (Some(full), Some(sum)) = (estimate_ns("handshake/server"), sum) {
        println!(
            "server handshake: {full:.0} ns vs primitives' sum {sum:.0} ns -> {:5.1} % of the primitives' rate",
            100.0 * sum / full
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    packet_path(&mut c);
    handshake(&mut c);
    c.final_summary();
    report();
}
