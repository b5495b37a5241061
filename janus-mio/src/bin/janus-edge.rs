//! `janus-edge`: the edge node.
//!
//! * `janus-edge --config FILE`: run (SIGTERM/SIGINT drain and exit 0);
//! * `janus-edge check-config FILE`: validate a configuration (shared sections and `edge`);
//! * `janus-edge sink --config FILE`: a relay sink that echoes every request, on the config's
//!   `relay` section (the edge's benchmark peer; see the README).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use janus_config::Config;
use janus_mio::{Edge, EdgeSettings};

#[derive(Parser, Debug)]
#[command(name = "janus-edge", version, about = "The Janus edge node (mio)")]
struct Cli {
    /// The configuration file (YAML, the gateway's format with an `edge` section).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
    /// Run a relay sink (echo hub) on the `relay` section of --config.
    Sink {
        /// Listen here instead of `relay.addr`.
        #[arg(long)]
        listen: Option<String>,
    },
}

fn load(file: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(file).map_err(|e| {
        eprintln!("{}: {e}", file.display());
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            match load(&file).map(|c| c.validate_edge().map_err(|e| (file.clone(), e))) {
                Ok(Ok(())) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Ok(Err((file, e))) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
                Err(code) => code,
            }
        }
        Some(Command::Sink { listen }) => {
            let Some(file) = cli.config else {
                eprintln!("janus-edge sink: --config FILE (with a relay section) is required");
                return ExitCode::from(2);
            };
            match sink(&file, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("janus-edge sink: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let Some(file) = cli.config else {
                eprintln!("janus-edge: --config FILE is required (see --help)");
                return ExitCode::from(2);
            };
            run(&file)
        }
    }
}

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn run(file: &std::path::Path) -> ExitCode {
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.validate_edge() {
        eprintln!("{}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    init_logs(&config.log.level);
    let edge = match EdgeSettings::from_config(&config).and_then(Edge::start) {
        Ok(edge) => edge,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let trigger = edge.trigger();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    tracing::info!("shutdown signal received: draining");
                    trigger.drain();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "no signal handling"),
    }
    edge.wait();
    tracing::info!("edge stopped");
    ExitCode::SUCCESS
}

fn sink(file: &std::path::Path, listen: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    init_logs(&config.log.level);
    let relay = config
        .relay
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{}: no relay section", file.display()))?;
    let addr = listen.unwrap_or_else(|| relay.addr.clone());
    let link = config
        .hub_link_config(&format!("sink@{addr}"))?
        .ok_or_else(|| anyhow::anyhow!("no relay section"))?;
    let listener = std::net::TcpListener::bind(&addr)?;
    tracing::info!(%addr, "relay sink listening");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    janus_mio::sink::run(listener, Arc::new(link), stop)?;
    Ok(())
}
