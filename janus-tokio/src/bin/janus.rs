//! `janus`: the gateway.
//!
//! * `janus --config FILE`: run. SIGTERM/SIGINT (or `POST /admin/drain`) drain and exit 0; a
//!   second signal during the drain exits at once (status 1). SIGHUP reloads the file.
//!   `--log-json` logs JSON lines whatever `log.format` says.
//! * `janus check-config FILE`: validate a configuration and say what is wrong;
//! * `janus keygen DIR`: make the token key and the two Ed25519 key pairs (with certificates)
//!   for a new deployment.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use janus_tokio::{
    config::{self, Config, LogFormat},
    demo::{DemoBackend, DemoConfig},
    gateway::{ConfigSource, Gateway, GatewaySettings, settings::listen_addr},
    telemetry::{Telemetry, TelemetryConfig, TraceExport},
};
use tracing::{error, info, warn};

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
    /// Log JSON lines (overrides `log.format`).
    #[arg(long)]
    log_json: bool,
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
            run(file, cli.log_json)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let checked = Config::load(file).and_then(|c| {
        c.validate()?;
        // Custom filters are known to the build, not to the schema.
        c.filter_chain(&janus_tokio::filters::custom_filters())?;
        Ok(c)
    });
    match checked {
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

fn run(file: PathBuf, log_json: bool) -> ExitCode {
    let source = match ConfigSource::load(&file) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
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
    match runtime.block_on(serve(source, log_json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("janus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The subscriber the configuration asks for (inside the runtime: the OTLP client lives there).
fn telemetry(config: &Config, log_json: bool) -> anyhow::Result<Telemetry> {
    let trace = &config.trace;
    Telemetry::init(&TelemetryConfig {
        level: config.log.level.clone(),
        json: log_json || config.log.format == LogFormat::Json,
        export: trace
            .endpoint
            .as_ref()
            .filter(|e| !e.is_empty())
            .map(|endpoint| TraceExport {
                endpoint: endpoint.clone(),
                sampler: trace.sampler,
                service_name: trace
                    .service_name
                    .clone()
                    .unwrap_or_else(|| config.label.service.clone()),
            }),
    })
}

async fn serve(source: ConfigSource, log_json: bool) -> anyhow::Result<()> {
    let config = source.config.clone();
    let telemetry = telemetry(&config, log_json)?;
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
    let mut settings = GatewaySettings::from_source(source)?;
    settings.ops.telemetry = Some(telemetry.clone());
    let gateway = Gateway::start(settings).await?;
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Reload => {
                    info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and counted by the reload itself.
                    let _ = gateway.reload().await;
                }
                Signal::Stop => {
                    info!("shutdown signal received: draining");
                    gateway.start_drain();
                    break;
                }
            },
            () = gateway.drain_started() => break,
        }
    }
    // A second stop signal during the drain: the operator wants out now.
    tokio::spawn(async move {
        loop {
            if signals.next().await == Signal::Stop {
                warn!("second shutdown signal: exiting without finishing the drain");
                std::process::exit(1);
            }
        }
    });
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
    telemetry.shutdown().await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT.
    Stop,
}

/// The process signals the gateway acts on.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
                hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
                int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop,
                _ = self.int.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
