//! `include/janus.h` is what cbindgen makes of `src/lib.rs` with `cbindgen.toml`: this test
//! regenerates it (cbindgen as a library, no install) and fails on a diff.
//! `JANUS_REGENERATE=1 cargo test -p janus-ffi --test header` rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn the_checked_in_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/janus.h");
    if std::env::var_os("JANUS_REGENERATE").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    if checked_in != generated {
        panic!(
            "include/janus.h is stale: run `JANUS_REGENERATE=1 cargo test -p janus-ffi --test header`\n\
             --- generated ---\n{}",
            String::from_utf8_lossy(&generated)
        );
    }
}
