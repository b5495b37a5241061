//! Regenerates the prost/tonic code from `proto/` with the pure-Rust `protox` compiler and fails when
//! it differs from what is checked in under `src/gen/`.
//!
//! To update the checked-in code after editing a `.proto` file:
//! `JANUS_REGENERATE=1 cargo test -p janus-proto --test codegen`.

#![allow(clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

const PROTO_FILES: &[&str] = &[
    "packet/packet.proto",
    "message/system.proto",
    "module/module.proto",
    "sequence/sequence.proto",
    "gate/intra/v1/auth.proto",
    "player/intra/v1/tunnel.proto",
    "room/intra/v1/tunnel.proto",
    "broadcaster/service/push/v1/push.proto",
    "janus/relay/v1/relay.proto",
    "janus/resume/v1/resume.proto",
];

/// Packages whose services get tonic code (behind the `grpc` feature), and the Rust path of each
/// package's messages, so the service files refer to the messages instead of repeating them.
const SERVICE_PACKAGES: &[(&str, &str)] = &[
    (".player.intra.v1", "crate::player::intra::v1"),
    (".room.intra.v1", "crate::room::intra::v1"),
    (
        ".broadcaster.service.push.v1",
        "crate::broadcaster::service::push::v1",
    ),
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out: &Path) -> BTreeMap<String, String> {
    let proto_root = crate_dir().join("../proto");
    let fds = protox::compile(PROTO_FILES, [&proto_root]).expect("protox compiles proto/");

    let messages = out.join("messages");
    fs::create_dir_all(&messages).expect("mkdir");
    let mut config = prost_build::Config::new();
    config
        .out_dir(&messages)
        .bytes(["."])
        .disable_comments(["."]);
    config
        .compile_fds(fds.clone())
        .expect("prost-build generates messages");

    let services = out.join("grpc");
    fs::create_dir_all(&services).expect("mkdir");
    let mut builder = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .out_dir(&services);
    for (proto, rust) in SERVICE_PACKAGES {
        builder = builder.extern_path(*proto, *rust);
    }
    let mut service_config = prost_build::Config::new();
    service_config.bytes(["."]).disable_comments(["."]);
    builder
        .compile_fds_with_config(fds, service_config)
        .expect("tonic-prost-build generates services");

    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&messages).expect("read messages") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        files.insert(name, fs::read_to_string(&path).expect("read"));
    }
    for (proto, _) in SERVICE_PACKAGES {
        let name = format!("{}.rs", proto.trim_start_matches('.'));
        let text = fs::read_to_string(services.join(&name)).expect("service file");
        files.insert(format!("grpc/{name}"), text);
    }
    files
}

#[test]
fn checked_in_code_matches_protos() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let generated = generate(tmp.path());
    let gen_dir = crate_dir().join("src/gen");

    if std::env::var_os("JANUS_REGENERATE").is_some() {
        for (name, text) in &generated {
            let path = gen_dir.join(name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, text).expect("write");
        }
    }

    let mut stale = Vec::new();
    for (name, text) in &generated {
        let checked_in = fs::read_to_string(gen_dir.join(name)).unwrap_or_default();
        if &checked_in != text {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "generated code under janus-proto/src/gen is stale for {stale:?}; \
         run `JANUS_REGENERATE=1 cargo test -p janus-proto --test codegen`"
    );
}
