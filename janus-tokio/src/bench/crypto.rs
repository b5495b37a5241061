//! `janus-bench --crypto-bound`: what the server's handshake cryptography alone allows on this
//! core, the bound a handshake storm is compared against. The primitives are the ones a server
//! handshake runs once each (the same list as the core's criterion reference): token open,
//! Ed25519 verify of the client key, X25519 key generation and agreement, Ed25519 sign. Timed in
//! the thread's CPU time, as the system under test's CPU is measured.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use janus_core::{
    Time,
    crypto::{EphemeralKey, SigningKey},
    testing::{TEST_CLIENT_CERT_SEED, TEST_SERVER_CERT_SEED, TEST_TOKEN_KEY, test_token},
    token::TokenKey,
};

/// Nanoseconds per call of each primitive, and the handshakes per second their sum allows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CryptoBound {
    pub token_open_ns: f64,
    pub ed25519_verify_ns: f64,
    pub x25519_keygen_ns: f64,
    pub x25519_agree_ns: f64,
    pub ed25519_sign_ns: f64,
    pub sum_ns: f64,
    /// `1e9 / sum_ns`: handshakes per second per core if nothing but the cryptography ran.
    pub handshakes_per_sec: f64,
}

/// CPU time this thread has run, nanoseconds (`/proc/thread-self/schedstat`), so that a core
/// shared with other work does not make the primitives look slower than they are.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Times `f` for about `budget` of wall time (after a short warm-up) and returns nanoseconds of
/// this thread's CPU time per call (wall time where the CPU time cannot be read).
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..16 {
        f();
    }
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    let wall = start.elapsed().as_nanos() as f64;
    let spent = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64,
        _ => wall,
    };
    spent / calls.max(1) as f64
}

/// Measures each primitive for `budget / 5`.
pub fn crypto_bound(budget: Duration) -> anyhow::Result<CryptoBound> {
    let each = budget / 5;
    let token_key = TokenKey::new(TEST_TOKEN_KEY).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = test_token(1, Time::from_unix_secs(1_700_000_000), 1);
    anyhow::ensure!(
        token_key.open(&token).is_ok(),
        "the test token does not open"
    );
    let client_cert = SigningKey::from_seed(&TEST_CLIENT_CERT_SEED);
    let client_key = EphemeralKey::from_secret([5; 32]);
    let signature = client_cert.sign(client_key.public());
    let verifier = client_cert.verifying_key();
    let server_key = EphemeralKey::from_secret([6; 32]);
    let server_cert = SigningKey::from_seed(&TEST_SERVER_CERT_SEED);

    let token_open_ns = time_per_call(each, || {
        let _ = black_box(token_key.open(black_box(&token)));
    });
    let ed25519_verify_ns = time_per_call(each, || {
        let _ = black_box(verifier.verify(black_box(client_key.public()), &signature));
    });
    let x25519_keygen_ns = time_per_call(each, || {
        black_box(EphemeralKey::from_secret(black_box([6; 32])));
    });
    let x25519_agree_ns = time_per_call(each, || {
        let _ = black_box(server_key.agree(black_box(client_key.public())));
    });
    let ed25519_sign_ns = time_per_call(each, || {
        black_box(server_cert.sign(black_box(server_key.public())));
    });
    let sum_ns =
        token_open_ns + ed25519_verify_ns + x25519_keygen_ns + x25519_agree_ns + ed25519_sign_ns;
    Ok(CryptoBound {
        token_open_ns,
        ed25519_verify_ns,
        x25519_keygen_ns,
        x25519_agree_ns,
        ed25519_sign_ns,
        sum_ns,
        handshakes_per_sec: 1e9 / sum_ns,
    })
}
