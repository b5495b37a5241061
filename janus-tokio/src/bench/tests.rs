//! The bench against a loopback server built from the core's server `Session` (the gateway's own
//! state machine) that answers every forwarded packet itself, over real TCP and WebSocket
//! sockets. Each run is short (about a second) and checks what a user reads in the report.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use janus_core::{
    CloseReason, Time,
    client::LogoutCode,
    config::ServerConfig,
    crypto::SigningKey,
    session::{Event, PushPacket, Session, TunnelMessage},
    system,
    testing::{TEST_SERVER_CERT_SEED, test_context, test_server_config},
};
use janus_proto::broadcaster::service::push::v1::PushBody;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::tungstenite::Message;

use super::{BenchOptions, BenchReport, Mode, Target, run};

fn now() -> Time {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Time::from_unix_millis(ms as u64)
}

/// How the loopback server behaves.
#[derive(Debug, Clone, Copy)]
struct ServerBehaviour {
    ws: bool,
    encrypted: bool,
    /// Push one packet to each session right after its handshake.
    push_on_login: bool,
    /// How it answers a request.
    answer: Answer,
}

/// What the loopback server does with each request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Replies with the request's data.
    Echo,
    /// Answers `SCServerUnexpectedErr`, as the gateway does for a dead backend.
    Error,
    /// Logs the session out (admin kick) and closes it.
    Kick,
}

/// Starts the loopback server; it runs until the test's runtime ends.
async fn start_server(behaviour: ServerBehaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(test_server_config(behaviour.encrypted));
    tokio::spawn(accept(listener, config, behaviour));
    addr
}

async fn accept(listener: TcpListener, config: Arc<ServerConfig>, behaviour: ServerBehaviour) {
    let mut seed = 0u8;
    while let Ok((stream, _)) = listener.accept().await {
        seed = seed.wrapping_add(1);
        let session = Session::new(Arc::clone(&config), test_context(), now(), [seed; 32]);
        if behaviour.ws {
            tokio::spawn(serve_ws(stream, session, behaviour));
        } else {
            tokio::spawn(serve_tcp(stream, session, behaviour));
        }
    }
}

/// Answers every forwarded packet with the same data, module, seq, index and obj; returns whether
/// the session closed.
fn drive(session: &mut Session, behaviour: ServerBehaviour) -> bool {
    let mut closed = false;
    while let Some(event) = session.poll_event() {
        match event {
            Event::Forward { tunnel, message } => {
                let reply = match behaviour.answer {
                    Answer::Echo => TunnelMessage {
                        data: message.data,
                        module: message.module,
                        seq: message.seq,
                        index: message.index,
                        obj: message.obj,
                        ..Default::default()
                    },
                    Answer::Error => {
                        let error = system::unexpected_err(
                            message.module,
                            message.seq,
                            message.index,
                            "no",
                        );
                        TunnelMessage {
                            data: error.data,
                            module: error.r#mod,
                            seq: error.seq,
                            index: error.index,
                            obj: message.obj,
                            ..Default::default()
                        }
                    }
                    Answer::Kick => {
                        session.close(now(), CloseReason::AdminKickOut);
                        continue;
                    }
                };
                session.handle_tunnel(now(), tunnel, reply);
            }
            Event::Authenticated(_) if behaviour.push_on_login => {
                // The SCHandshake is queued first, so the push follows it on the wire.
                let body = PushBody {
                    data: Bytes::from_static(b"welcome"),
                    r#mod: 3,
                    seq: 2,
                    ..Default::default()
                };
                let config = test_server_config(behaviour.encrypted);
                if let Ok(push) = PushPacket::encode(&body, &config) {
                    session.push(now(), &push);
                }
            }
            Event::Closed(_) => closed = true,
            _ => {}
        }
    }
    closed
}

async fn serve_tcp(mut stream: TcpStream, mut session: Session, behaviour: ServerBehaviour) {
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        session.handle_bytes(now(), &buf[..n]);
        let closed = drive(&mut session, behaviour);
        if let Some(out) = session.poll_transmit() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
    }
}

async fn serve_ws(stream: TcpStream, mut session: Session, behaviour: ServerBehaviour) {
    stream.set_nodelay(true).unwrap();
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let data = match message {
            // One frame per binary message, as the gateway requires.
            Message::Binary(data) => data,
            Message::Close(_) => return,
            _ => continue,
        };
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, data.len(), "a message carries exactly one frame");
        session.handle_bytes(now(), &data);
        let closed = drive(&mut session, behaviour);
        if let Some(out) = session.poll_transmit() {
            for frame in janus_core::frame::Frames(out) {
                if ws.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
            if ws.flush().await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
    }
}

fn options(addr: SocketAddr, ws: bool, mode: Mode) -> BenchOptions {
    BenchOptions {
        target: if ws {
            Target::WebSocket(format!("ws://{addr}/ws"))
        } else {
            Target::Tcp(addr.to_string())
        },
        clients: 4,
        duration: Duration::from_millis(1000),
        mode,
        timeout: Duration::from_secs(2),
        drain: Duration::from_millis(500),
        ..BenchOptions::default()
    }
}

const TCP: ServerBehaviour = ServerBehaviour {
    ws: false,
    encrypted: true,
    push_on_login: false,
    answer: Answer::Echo,
};

fn assert_sane_latency(report: &BenchReport) {
    for l in [report.handshake_latency_us, report.request_latency_us] {
        if l.count == 0 {
            continue;
        }
        assert!(l.min >= 1, "{report}");
        assert!(
            l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99,
            "{report}"
        );
        assert!(l.p99 <= l.p999 && l.p999 <= l.max, "{report}");
        // Loopback: nothing should take anywhere near the timeout.
        assert!(l.p50 < 1_000_000, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_closed_loop_over_tcp() {
    let addr = start_server(TCP).await;
    let report = run(options(addr, false, Mode::Echo)).await.unwrap();
    println!("{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.handshakes, 4, "one connection per client: {report}");
    assert!(report.replies > 100, "{report}");
    assert!(report.messages_per_sec > 100.0, "{report}");
    assert_eq!(report.request_latency_us.count, report.replies, "{report}");
    // Closed loop: every request is answered, one at a time.
    assert_eq!(report.requests, report.replies, "{report}");
    assert_eq!((report.unanswered, report.late_replies), (0, 0), "{report}");
    assert!(
        report.bytes_received_per_sec > 0.0 && report.bytes_sent > 0,
        "{report}"
    );
    assert_sane_latency(&report);
    assert!(!report.parameters.server_verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_storm_over_tcp() {
    let addr = start_server(TCP).await;
    let report = run(options(addr, false, Mode::Handshake)).await.unwrap();
    println!("{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.handshakes > 8, "{report}");
    assert!(report.handshakes_per_sec > 8.0, "{report}");
    assert_eq!(
        report.handshake_latency_us.count, report.handshakes,
        "{report}"
    );
    assert_eq!(report.requests, 0);
    assert_sane_latency(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_open_loop_over_websocket_counts_pushes() {
    let addr = start_server(ServerBehaviour {
        ws: true,
        encrypted: true,
        push_on_login: true,
        answer: Answer::Echo,
    })
    .await;
    let mut opts = options(addr, true, Mode::Echo);
    opts.clients = 3;
    opts.rate = 100.0;
    opts.payload = 200;
    opts.ramp = Duration::from_millis(200);
    let server = SigningKey::from_seed(&TEST_SERVER_CERT_SEED);
    opts.server_key = Some(server.verifying_key());
    let report = run(opts).await.unwrap();
    println!("{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.handshakes, 3, "{report}");
    assert_eq!(report.pushes, 3, "one welcome push per session: {report}");
    // About 3 clients × 100/s × 1 s (less the ramp); the window rate is ~300/s.
    assert!((200..=330).contains(&report.requests), "{report}");
    assert_eq!(report.replies, report.requests, "{report}");
    assert!(
        (200.0..=400.0).contains(&report.messages_per_sec),
        "{report}"
    );
    assert!(report.parameters.server_verified);
    assert_sane_latency(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_storm_over_websocket_unencrypted() {
    let addr = start_server(ServerBehaviour {
        ws: true,
        encrypted: false,
        push_on_login: false,
        answer: Answer::Echo,
    })
    .await;
    let mut opts = options(addr, true, Mode::Handshake);
    opts.encrypted = false;
    let report = run(opts).await.unwrap();
    println!("{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.handshakes_per_sec > 8.0, "{report}");
    assert_sane_latency(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason() {
    // Nothing listens: every attempt is refused, and the run still ends on time.
    let free = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut opts = options(free, false, Mode::Handshake);
    opts.duration = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let report = run(opts).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.handshakes, 0);
    assert!(
        report.errors.get("connect_refused").copied().unwrap_or(0) > 0,
        "{report}"
    );

    // A server key that is not the server's: the signature check fails every handshake.
    let addr = start_server(TCP).await;
    let mut opts = options(addr, false, Mode::Echo);
    opts.duration = Duration::from_millis(300);
    opts.server_key = Some(SigningKey::from_seed(&[0x44; 32]).verifying_key());
    let report = run(opts).await.unwrap();
    assert_eq!(report.handshakes, 0);
    assert!(
        report
            .errors
            .keys()
            .all(|k| k.starts_with("handshake_invalid(bad server signature")),
        "{report}"
    );

    // The wrong token key: the gateway closes without a word.
    let mut opts = options(addr, false, Mode::Handshake);
    opts.duration = Duration::from_millis(300);
    opts.token_key = b"fedcba9876543210fedcba9876543210".to_vec();
    let report = run(opts).await.unwrap();
    assert_eq!(report.handshakes, 0);
    assert!(report.error_total > 0, "{report}");
    assert!(
        report
            .errors
            .keys()
            .all(|k| k == "handshake_closed" || k.starts_with("handshake_refused")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_and_logouts_are_counted_by_reason() {
    let addr = start_server(ServerBehaviour {
        answer: Answer::Error,
        ..TCP
    })
    .await;
    let mut opts = options(addr, false, Mode::Echo);
    opts.duration = Duration::from_millis(300);
    let report = run(opts.clone()).await.unwrap();
    let failed = report.errors.get("server_unexpected_err").copied();
    assert!(failed.unwrap_or(0) > 0, "{report}");
    assert_eq!(report.errors.len(), 1, "{report}");
    assert_eq!(
        Some(report.requests),
        failed,
        "every request failed: {report}"
    );
    assert_eq!((report.replies, report.late_replies), (0, 0), "{report}");

    let addr = start_server(ServerBehaviour {
        answer: Answer::Kick,
        ..TCP
    })
    .await;
    opts.target = Target::Tcp(addr.to_string());
    let report = run(opts).await.unwrap();
    let logout = format!("logout({})", LogoutCode::AdminKickOut.as_str_name());
    let logouts = report.errors.get(&logout).copied().unwrap_or(0);
    assert!(logouts > 0, "{report}");
    assert_eq!(report.pushes, logouts, "the logout is a push: {report}");
    assert!(
        report
            .errors
            .keys()
            .all(|k| *k == logout || k == "request_lost"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_serialises_with_its_parameters() {
    let addr = start_server(TCP).await;
    let mut opts = options(addr, false, Mode::Echo);
    opts.duration = Duration::from_millis(300);
    opts.module = system::SYSTEM_MODULE;
    opts.seq = system::HEARTBEAT_SEQ; // a real CSHeartbeat
    let report = run(opts).await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["parameters"]["mode"], "echo");
    assert_eq!(json["parameters"]["transport"], "tcp");
    assert_eq!(json["parameters"]["module"], system::SYSTEM_MODULE);
    assert!(json["messages_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["request_latency_us"]["p999"].as_u64().is_some());
    let back: BenchReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

/// Not a test: serves the loopback server for manual `janus-bench` runs, TCP on
/// `JANUS_BENCH_SERVE` (default 127.0.0.1:7101) and WebSocket on the next port, for
/// `JANUS_BENCH_SERVE_SECS` seconds (default 60).
///
/// ```sh
/// cargo test --release -p janus-tokio --lib bench::tests::serve_for_manual_runs -- --ignored &
/// target/release/janus-bench --addr 127.0.0.1:7101 --clients 50 --duration 5s
/// ```
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a server for manual runs, not a test"]
async fn serve_for_manual_runs() {
    let tcp: SocketAddr = std::env::var("JANUS_BENCH_SERVE")
        .unwrap_or_else(|_| "127.0.0.1:7101".into())
        .parse()
        .unwrap();
    let secs: u64 = std::env::var("JANUS_BENCH_SERVE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let ws = SocketAddr::new(tcp.ip(), tcp.port() + 1);
    let config = Arc::new(test_server_config(true));
    for (addr, ws) in [(tcp, false), (ws, true)] {
        let listener = TcpListener::bind(addr).await.unwrap();
        let behaviour = ServerBehaviour {
            ws,
            encrypted: true,
            push_on_login: false,
            answer: Answer::Echo,
        };
        tokio::spawn(accept(listener, Arc::clone(&config), behaviour));
    }
    eprintln!("serving tcp://{tcp} and ws://{ws}/ws for {secs} s");
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_frames_against_the_echo_server() {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    tokio::spawn(super::echo_server(addr.to_string()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut opts = options(addr, false, Mode::Frames);
    opts.duration = Duration::from_millis(500);
    let report = run(opts).await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.handshakes, 4, "{report}");
    assert!(report.replies > 100, "{report}");
    assert_eq!(report.requests, report.replies, "{report}");
    assert_sane_latency(&report);
    assert!(report.to_string().contains("plain frames"), "{report}");
}

/// The echo server on a free port, in this process.
async fn echo_server_here() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    tokio::spawn(super::echo_server(addr.to_string()));
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the echo server never listened on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_up_is_left_out_and_cpu_is_reported() {
    let addr = echo_server_here().await;
    let mut opts = options(addr, false, Mode::Frames);
    opts.duration = Duration::from_millis(900);
    opts.warmup = Duration::from_millis(400);
    opts.watch_pids = vec![std::process::id()];
    let report = run(opts).await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.parameters.warmup_secs, 0.4);
    // Replies during the warm-up count nowhere in the latencies.
    let measured = report.request_latency_us.count;
    assert!(measured > 50, "{report}");
    assert!(measured < report.replies, "{report}");
    let cpu = report.cpu.clone().unwrap();
    assert_eq!(cpu.watched.len(), 1);
    // This process both generates and echoes: it is busy, and it is the same process twice.
    let watched = cpu.watched[0].percent.unwrap();
    assert!(watched > 1.0, "{report}");
    assert_eq!(Some(watched), cpu.generator_percent, "{report}");
    assert!(
        report.to_string().contains("cpu over the window"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_plain_connections_measure_the_watched_process_memory() {
    let addr = echo_server_here().await;
    let mut opts = options(addr, false, Mode::IdleFrames);
    opts.clients = 20;
    opts.duration = Duration::from_millis(1200);
    opts.watch_pids = vec![std::process::id()];
    let report = run(opts).await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.handshakes, 20, "{report}");
    assert_eq!(report.requests, 0, "{report}");
    let memory = report.gateway_memory.clone().unwrap();
    assert_eq!(memory.connections, 20, "{report}");
    assert!(memory.rss_before > 0 && memory.rss_after > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_memory_of_a_process_that_is_gone_is_an_error() {
    let addr = echo_server_here().await;
    let mut opts = options(addr, false, Mode::IdleFrames);
    // Pid numbers stop far below this (pid_max is at most 2^22).
    opts.watch_pids = vec![u32::MAX - 1];
    let err = run(opts).await.unwrap_err();
    assert!(format!("{err:#}").contains("VmRSS"), "{err:#}");
}

#[test]
fn broadcast_needs_the_push_service() {
    let opts = options("127.0.0.1:1".parse().unwrap(), false, Mode::Broadcast);
    let err = opts.validate().unwrap_err();
    assert!(err.to_string().contains("--push-addr"), "{err}");
}

#[test]
fn the_crypto_bound_is_the_sum_of_the_primitives() {
    let bound = super::crypto_bound(Duration::from_millis(100)).unwrap();
    let parts = [
        bound.token_open_ns,
        bound.ed25519_verify_ns,
        bound.x25519_keygen_ns,
        bound.x25519_agree_ns,
        bound.ed25519_sign_ns,
    ];
    assert!(parts.iter().all(|&ns| ns > 0.0), "{bound:?}");
    let sum: f64 = parts.iter().sum();
    assert!((sum - bound.sum_ns).abs() < 1e-6, "{bound:?}");
    assert!(
        (bound.handshakes_per_sec * bound.sum_ns - 1e9).abs() < 1.0,
        "{bound:?}"
    );
}
