//! The C program `examples/echo.c`, compiled with the system `gcc` against the static library
//! cargo built for this test, runs the SDK conformance scenario against a real gateway and
//! demo backend over a plain TCP socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use janus_testkit::{
    BackgroundRig, client_cert_seed,
    conformance::{TRANSCRIPT, UID},
    server_cert_key, token,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `libjanus_ffi.a`, built by cargo next to this test's own binary (target/<profile>/).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps.parent().unwrap(), deps] {
        let lib = dir.join("libjanus_ffi.a");
        if lib.exists() {
            return lib;
        }
    }
    panic!("libjanus_ffi.a not found near {}", exe.display());
}

fn compile(dir: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("janus-echo");
    let status = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("examples/echo.c"))
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed");
    out
}

#[test]
fn the_c_program_runs_the_conformance_scenario() {
    let program = compile(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let rig = BackgroundRig::start().unwrap();
    let addr = rig.rig().tcp();
    let output = Command::new(&program)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(token(UID))
        .arg(hex(&client_cert_seed()))
        .arg(hex(&server_cert_key()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "echo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        TRANSCRIPT,
        "stderr:\n{stderr}"
    );
}
