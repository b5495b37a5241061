//! `janus`: the gateway.
//!
//! * `janus --config FILE`: run (SIGTERM/SIGINT drain and exit 0);
//! * `janus check-config FILE`: validate a configuration and say what is wrong;
//! * `janus keygen DIR`: make the token key and the two Ed25519 key pairs (with certificates)
//!   for a new deployment.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use janus_tokio::{
    config::{self, Config},
    demo::{DemoBackend, DemoConfig},
    gateway::{Gateway, GatewaySettings, settings::listen_addr},
};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "janus",
    version,
    about = "The Janus game gateway (go-pantheon compatible)"
)]
struct Cli {
    /// The configuration file (YAML).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
    /// Generate the secrets of a new deployment into DIR (refuses to overwrite).
    Keygen { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Keygen { dir }) => match config::keygen::generate(&dir) {
            Ok(generated) => {
                println!("{generated}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("janus keygen: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let Some(file) = cli.config else {
                eprintln!("janus: --config FILE is required (see --help)");
                return ExitCode::from(2);
            };
            run(file)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file).and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => {
            for warning in config.warnings() {
                println!("{}: warning: {warning}", file.display());
            }
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn run(file: PathBuf) -> ExitCode {
    let config = match Config::load(&file).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("janus: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // The demo backend, when configured, runs in this process on its own port, reached over a
    // real socket like any backend.
    let demo = match &config.demo {
        Some(demo) => {
            let addr = listen_addr("demo.addr", &demo.addr)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the demo backend on {addr}"))?;
            let backend = DemoBackend::new(DemoConfig {
                name: "demo".into(),
                push_interval: Some(demo.push_interval),
                ..DemoConfig::default()
            });
            info!(%addr, "demo backend started in process");
            Some(backend.spawn(listener)?)
        }
        None => None,
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let settings = GatewaySettings::from_config(&config)?;
    let gateway = Gateway::start(settings).await?;
    shutdown_signal().await;
    let left = gateway.shutdown().await;
    if let Some(demo) = demo {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), demo.stop()).await;
    }
    if left > 0 {
        info!(
            left,
            "exiting with connections cut at the end of the grace period"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutdown signal received");
}
