//! The browser build in headless Chromium: the wasm is built for wasm32-unknown-unknown and
//! bound with wasm-bindgen, the example page (`www/`) is served by a tiny local HTTP server, and
//! the page runs the SDK conformance scenario against a real gateway's WebSocket listener and
//! demo backend, POSTing its transcript back to the server.
//!
//! Needs the wasm32 target, wasm-bindgen-cli (Cargo.lock's version) and Debian's chromium;
//! `scripts/sdk-tools.sh` installs whichever is missing, and this test runs it when needed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime},
};

use janus_testkit::{
    BackgroundRig, client_cert_seed,
    conformance::{TRANSCRIPT, UID},
    server_cert_key, token,
};

/// Time for the page to load, run the scenario and report (the scenario itself takes about a
/// second; a cold Chromium start takes a few).
const REPORT_WAIT: Duration = Duration::from_secs(90);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

/// Installs what is missing (the script is idempotent and quick when nothing is).
fn ensure_tools() {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    let want = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasm-bindgen\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap();
    let have = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let chromium = Path::new("/usr/bin/chromium").exists();
    if !have.contains(&want) || !chromium {
        run(
            Command::new("bash").arg(workspace().join("scripts/sdk-tools.sh")),
            "scripts/sdk-tools.sh",
        );
    }
}

/// Builds the wasm in its own target directory (the outer cargo may hold the main one) and
/// binds it for the web into `out/pkg`.
fn build(out: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = workspace().join("target/wasm");
    run(
        Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--locked", "-p", "janus-wasm", "--target"])
            .arg("wasm32-unknown-unknown")
            .env("CARGO_TARGET_DIR", &target_dir),
        "cargo build --target wasm32-unknown-unknown",
    );
    run(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(out.join("pkg"))
            .arg(target_dir.join("wasm32-unknown-unknown/debug/janus_wasm.wasm")),
        "wasm-bindgen",
    );
}

/// Serves `www/` and `pkg/` on 127.0.0.1; a POST to /report sends its body on the channel.
fn serve(www: PathBuf, pkg: PathBuf) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &www, &pkg, &tx);
        }
    });
    (port, rx)
}

fn answer(
    mut stream: TcpStream,
    www: &Path,
    pkg: &Path,
    reports: &mpsc::Sender<String>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    if method == "POST" && path == "/report" {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let _ = reports.send(String::from_utf8_lossy(&body).into_owned());
        return respond(&mut stream, "200 OK", "text/plain", b"ok");
    }
    let file = match path {
        "/" => www.join("index.html"),
        p if p.starts_with("/pkg/") && !p.contains("..") => pkg.join(&p[5..]),
        p if !p.contains("..") => www.join(&p[1..]),
        _ => PathBuf::new(),
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    match std::fs::read(&file) {
        Ok(body) => respond(&mut stream, "200 OK", kind, &body),
        Err(_) => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)
}

#[test]
fn the_page_runs_the_conformance_scenario_in_headless_chromium() {
    ensure_tools();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("janus-wasm");
    build(&out);
    let (http, reports) = serve(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("www"),
        out.join("pkg"),
    );
    let rig = BackgroundRig::start().unwrap();
    let url = format!(
        "http://127.0.0.1:{http}/index.html?report=1&ws={}&token={}&seed={}&key={}",
        rig.rig().ws_url(),
        token(UID).replace('=', "%3D"),
        hex(&client_cert_seed()),
        hex(&server_cert_key()),
    );
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let profile = out.join(format!("chromium-profile-{}-{stamp}", std::process::id()));
    let log = std::fs::File::create(out.join("chromium.log")).unwrap();
    let mut chromium = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("chromium starts");
    let report = reports.recv_timeout(REPORT_WAIT);
    let _ = chromium.kill();
    let _ = chromium.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let report = report.unwrap_or_else(|_| {
        panic!(
            "no report from the page within {REPORT_WAIT:?}; see {}",
            out.join("chromium.log").display()
        )
    });
    assert_eq!(report.lines().collect::<Vec<_>>(), TRANSCRIPT);
}
