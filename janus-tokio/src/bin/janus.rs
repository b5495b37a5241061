//! `janus`: the gateway.
//!
//! * `janus --config FILE`: run. SIGTERM/SIGINT (or `POST /admin/drain`) drain and exit 0; a
//!   second signal during the drain exits at once (status 1); after a drain started over the
//!   admin API the first SIGTERM joins it (the orchestrator's, after a preStop hook). SIGHUP
//!   reloads the file.
//!   `--log-json` logs JSON lines whatever `log.format` says.
//! * `janus check-config FILE`: validate a configuration and say what is wrong;
//! * `janus keygen DIR`: make the token key and the two Ed25519 key pairs (with certificates)
//!   for a new deployment.
//! * `janus drain --config FILE [--wait 150s]`: ask the gateway running with FILE to drain
//!   (`POST /admin/drain` on its `server.http.addr`, with its admin token) and wait until it has
//!   exited: the Kubernetes `preStop` hook (deploy/k8s), no curl needed in the image.

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
    /// Ask the gateway running with --config to drain, and wait for it to exit (a preStop
    /// hook). Exit status 0 once it has exited or is draining when --wait runs out.
    Drain {
        /// How long to wait for the gateway to exit (0: only start the drain).
        #[arg(long, default_value = "150s", value_parser = parse_wait)]
        wait: std::time::Duration,
        /// The admin address, when not the configuration's `server.http.addr`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
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
        Some(Command::Drain { wait, admin }) => drain(cli.config.as_deref(), admin, wait),
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

/// `janus drain`: the admin address (a wildcard listen address becomes loopback) and token come
/// from the configuration file, as the running gateway read it.
fn drain(
    file: Option<&std::path::Path>,
    admin: Option<std::net::SocketAddr>,
    wait: std::time::Duration,
) -> ExitCode {
    use janus_tokio::gateway::admin::client::{DrainOutcome, request_drain};
    let Some(file) = file else {
        eprintln!("janus drain: --config FILE is required (the running gateway's file)");
        return ExitCode::from(2);
    };
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let addr = match admin {
        Some(a) => a,
        None => match listen_addr("server.http.addr", &config.server.http.addr) {
            Ok(mut a) => {
                if a.ip().is_unspecified() {
                    a.set_ip(if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                a
            }
            Err(e) => {
                eprintln!("janus drain: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let token = janus_tokio::gateway::settings::admin_token(&config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("janus drain: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(request_drain(addr, &token, wait)) {
        Ok(DrainOutcome::Exited(took)) => {
            println!("janus drain: {addr} drained and exited after {took:.1?}");
            ExitCode::SUCCESS
        }
        Ok(DrainOutcome::Draining) => {
            println!("janus drain: {addr} is draining (still running after {wait:?})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("janus drain: {e}");
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
    // Whether the drain was started by a signal: after an API drain (a preStop hook's `janus
    // drain`), the SIGTERM the orchestrator sends next belongs to the same shutdown.
    let mut by_signal = false;
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
                    by_signal = true;
                    break;
                }
            },
            () = gateway.drain_started() => break,
        }
    }
    // A second stop signal during the drain: the operator wants out now.
    tokio::spawn(async move {
        let mut stops = u32::from(by_signal);
        loop {
            if signals.next().await == Signal::Stop {
                stops += 1;
                if stops == 1 {
                    info!("shutdown signal received: already draining (admin API)");
                    continue;
                }
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
