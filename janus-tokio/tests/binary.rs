//! The `janus` binary itself: it runs on configs/local.yaml (demo backend in process), serves a
//! client, and on SIGTERM logs the client out and exits 0; `check-config` and `keygen` work.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::TestClient;
use janus_core::client::ClientConfig;
use janus_core::handshake::ClientKeys;
use janus_proto::message::sc_server_logout::Code as LogoutCode;
use janus_tokio::config::{Config, load_client_signing_key};

const JANUS: &str = env!("CARGO_BIN_EXE_janus");

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// configs/local.yaml with every port replaced by a free one.
fn local_config_on_free_ports(dir: &std::path::Path) -> (std::path::PathBuf, u16, u16) {
    let mut text = std::fs::read_to_string(repo_file("configs/local.yaml")).unwrap();
    let tcp = free_port();
    let http = free_port();
    for (old, new) in [
        ("7001", tcp),
        ("7002", free_port()),
        ("8100", http),
        ("9100", free_port()),
        ("17102", free_port()),
    ] {
        text = text.replace(&format!("127.0.0.1:{old}"), &format!("127.0.0.1:{new}"));
    }
    let path = dir.join("local.yaml");
    std::fs::write(&path, text).unwrap();
    (path, tcp, http)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_the_local_config_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, tcp, _http) = local_config_on_free_ports(dir.path());
    let child = Command::new(JANUS)
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    wait_for_port(tcp);

    // A client with the dev keys the local config uses.
    let config = Config::load(&config_path).unwrap();
    let client_key = load_client_signing_key(
        &std::fs::read_to_string(repo_file("configs/dev/client.key.pem")).unwrap(),
    )
    .unwrap();
    let keys = ClientKeys {
        client_cert: client_key,
        server_cert: Some(config.server_verifying_key().unwrap()),
    };
    let token_key = config.token_key().unwrap();
    let token = janus_proto::gate::intra::v1::AuthToken {
        rand: "sigterm1".into(),
        color: "local".into(),
        account_id: 4242,
        server_id: 1,
        timeout: common::now().unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    let client_config = ClientConfig::new(Some(keys), token_key.seal(&token, [7; 12]));
    let mut c = TestClient::tcp_with(
        format!("127.0.0.1:{tcp}").parse().unwrap(),
        4242,
        client_config,
    )
    .await;
    let index = c.send(3, 1, 0, b"through the binary").await;
    assert_eq!(&c.reply(index).await.data[..], b"through the binary");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(running.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let (closed, logout, _) = c.closed_after().await;
    assert!(closed);
    assert_eq!(
        logout,
        Some(LogoutCode::Waiting),
        "SCServerLogout{{Waiting}} before the close"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn check_config_accepts_the_shipped_configs_and_names_bad_keys() {
    let out = Command::new(JANUS)
        .arg("check-config")
        .arg(repo_file("configs/local.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(repo_file("configs/local.yaml"))
        .unwrap()
        .replace("  tcp:\n    addr:", "  tcp:\n    adr:");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(JANUS)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.tcp") && stderr.contains("adr"),
        "{stderr}"
    );
}

#[test]
fn keygen_makes_a_working_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    let out = Command::new(JANUS)
        .arg("keygen")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "token.key",
        "server.key.pem",
        "server.cert.pem",
        "client.key.pem",
        "client.cert.pem",
        "secret.yaml",
    ] {
        assert!(out_dir.join(f).exists(), "{f} missing");
    }
    // refuses to overwrite
    let again = Command::new(JANUS)
        .arg("keygen")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

/// A client of the gateway running on `config_path` (the dev keys), for `uid`.
fn dev_client(config_path: &std::path::Path, uid: i64, rand: &str) -> ClientConfig {
    let config = Config::load(config_path).unwrap();
    let client_key = load_client_signing_key(
        &std::fs::read_to_string(repo_file("configs/dev/client.key.pem")).unwrap(),
    )
    .unwrap();
    let keys = ClientKeys {
        client_cert: client_key,
        server_cert: Some(config.server_verifying_key().unwrap()),
    };
    let token = janus_proto::gate::intra::v1::AuthToken {
        rand: rand.into(),
        color: "local".into(),
        account_id: uid,
        server_id: 1,
        timeout: common::now().unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    let mut nonce = [9u8; 12];
    nonce[..8].copy_from_slice(&uid.to_le_bytes());
    let mut client = ClientConfig::new(Some(keys), config.token_key().unwrap().seal(&token, nonce));
    client.heartbeat_interval = None;
    client
}

fn config_hash(metrics: &str) -> String {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("janus_config_info{hash=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_second_sigterm_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, tcp, http) = local_config_on_free_ports(dir.path());
    // A long drain window: the drain is still running when the second signal comes.
    let mut text = std::fs::read_to_string(&config_path).unwrap();
    text.push_str("  drain_window: 20s\n  shutdown_grace: 30s\n");
    std::fs::write(&config_path, &text).unwrap();
    let child = Command::new(JANUS)
        .arg("--config")
        .arg(&config_path)
        .arg("--log-json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    wait_for_port(tcp);
    let admin: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    wait_for_port(http);
    let before = config_hash(&common::http(admin, "GET", "/metrics", None).await.1);

    std::fs::write(
        &config_path,
        text.replace(
            "max_connections_per_address: 100000",
            "max_connections_per_address: 99999",
        ),
    )
    .unwrap();
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = common::http(admin, "GET", "/metrics", None).await.1;
        if config_hash(&metrics) != before {
            break metrics;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("janus_config_reloads_total{result=\"applied\"} 1"));

    let addr = format!("127.0.0.1:{tcp}").parse().unwrap();
    let mut first =
        TestClient::tcp_with(addr, 5001, dev_client(&config_path, 5001, "twice001")).await;
    let _second =
        TestClient::tcp_with(addr, 5002, dev_client(&config_path, 5002, "twice002")).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The first turn comes at once; the second would come 10 s later.
    let (closed, logout, _) = first.closed_after().await;
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Waiting));
    assert_eq!(common::http(admin, "GET", "/readyz", None).await.0, 503);
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "the second signal did not end the process"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !exit.success(),
        "exit status {exit:?}: the drain did not finish"
    );
}

/// A client of the binary's local config, logged in as `uid`.
async fn local_client(config_path: &std::path::Path, tcp: u16, uid: i64) -> TestClient {
    let rand = format!("drain{uid}");
    TestClient::tcp_with(
        format!("127.0.0.1:{tcp}").parse().unwrap(),
        uid,
        dev_client(config_path, uid, &rand),
    )
    .await
}

/// `janus drain` against the gateway running with `config`; its exit status and stdout.
fn janus_drain(config: &std::path::Path, wait: &str) -> (bool, String) {
    let out = Command::new(JANUS)
        .args(["drain", "--wait", wait, "--config"])
        .arg(config)
        .env("JANUS_ADMIN_TOKEN", "prestop-token")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn wait_exit(running: &mut Running, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Kubernetes preStop hook (deploy/k8s): `janus drain` posts the drain with the token from
/// the environment and waits for the exit; and the SIGTERM the kubelet sends right after a hook
/// that did not wait belongs to the same shutdown, so the drain still logs every player out
/// with SCServerLogout{Waiting} and the process exits 0 (not 1, as for an impatient operator's
/// second signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_drain_is_a_prestop_hook_and_the_sigterm_after_it_does_not_cut_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, tcp, _http) = local_config_on_free_ports(dir.path());
    // A drain spread over 3 s: still running when the SIGTERM comes.
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace(
            "limits:\n",
            "limits:\n  drain_window: 3s\n  shutdown_grace: 10s\n",
        ),
    )
    .unwrap();
    let spawn = || {
        Running(
            Command::new(JANUS)
                .arg("--config")
                .arg(&config_path)
                .env("JANUS_ADMIN_TOKEN", "prestop-token")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };

    // Without the token the hook is refused, and says why (401: a token is configured).
    let mut running = spawn();
    wait_for_port(tcp);
    let out = Command::new(JANUS)
        .args(["drain", "--wait", "0s", "--config"])
        .arg(&config_path)
        .env_remove("JANUS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    // A hook that does not wait, then the SIGTERM.
    let mut clients = Vec::new();
    for uid in [7101, 7102, 7103] {
        clients.push(local_client(&config_path, tcp, uid).await);
    }
    let (ok, said) = janus_drain(&config_path, "0s");
    assert!(ok && said.contains("is draining"), "{said}");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(running.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for c in &mut clients {
        let (closed, logout, _) = c.closed_after().await;
        assert!(closed && logout == Some(LogoutCode::Waiting), "{logout:?}");
    }
    let exit = wait_exit(&mut running, Duration::from_secs(15));
    assert!(exit.success(), "exit status {exit:?}");

    // A hook that waits returns once the gateway has exited.
    let mut running = spawn();
    wait_for_port(tcp);
    let mut c = local_client(&config_path, tcp, 7104).await;
    let started = Instant::now();
    let hook = std::thread::spawn({
        let config_path = config_path.clone();
        move || janus_drain(&config_path, "20s")
    });
    let (closed, logout, _) = c.closed_after().await;
    assert!(closed && logout == Some(LogoutCode::Waiting), "{logout:?}");
    let (ok, said) = tokio::task::spawn_blocking(move || hook.join().unwrap())
        .await
        .unwrap();
    assert!(ok && said.contains("drained and exited"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let exit = wait_exit(&mut running, Duration::from_secs(1));
    assert!(exit.success(), "exit status {exit:?}");
}
