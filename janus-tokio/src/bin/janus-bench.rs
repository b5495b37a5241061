//! `janus-bench`: load generator for the Janus gateway (see `janus_tokio::bench`).
//!
//! ```sh
//! janus-bench --addr 127.0.0.1:7001 --clients 100 --duration 10s --mode echo
//! janus-bench --ws ws://127.0.0.1:7002/ws --clients 50 --mode handshake --json out.json
//! janus-bench --echo-server 127.0.0.1:17200          # echo backend for --mode frames via a proxy
//! janus-bench --addr 127.0.0.1:17201 --mode frames   # plain frames through that proxy
//! ```
//!
//! Prints the report as a table on stdout (notes and the progress bar go to stderr). Exit status:
//! 0 when the run measured something, 1 on bad arguments or setup, 2 when not one handshake
//! succeeded.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use janus_tokio::bench::{self, BenchArgs};

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("janus-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &args.echo_server {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(bench::echo_server(addr.clone()))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.crypto_bound {
        let bound = bench::crypto_bound(std::time::Duration::from_secs(2))?;
        println!("{}", serde_json::to_string_pretty(&bound)?);
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&bound)?)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (mut opts, notes) = args.to_options()?;
    opts.progress = !args.quiet && std::io::stderr().is_terminal();
    for note in notes {
        eprintln!("janus-bench: {note}");
    }

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads.filter(|&t| t > 0) {
        runtime.worker_threads(threads);
    }
    let report = runtime.build()?.block_on(bench::run(opts))?;

    println!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(if report.handshakes == 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
