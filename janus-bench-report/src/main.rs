//! `bench-report DIR`: reads the runs a `scripts/bench.sh` run left in `DIR` (`runs.jsonl`, one
//! line per `janus-bench` run naming its JSON report) and writes, from that one run of the
//! suite:
//!
//! * `DIR/summary.json`: medians per target and point (connections, payload), with every ratio
//!   against the reference target (HAProxy unless `--reference` says otherwise);
//! * `DIR/table.md`: the same as Markdown tables (also printed), for the README;
//! * `DIR/chart.svg`: messages per second and p99 latency per target and point.
//!
//! A separate tool: the gateway's crates do not carry the report's code.

use std::path::PathBuf;

use anyhow::Context as _;

mod chart;
mod summary;
mod table;

use summary::Run;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut reference = "haproxy".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reference" => reference = args.next().context("--reference needs a target name")?,
            "-h" | "--help" => {
                println!("usage: bench-report [--reference TARGET] DIR");
                return Ok(());
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => anyhow::bail!(
                "unexpected argument {arg:?} (usage: bench-report [--reference TARGET] DIR)"
            ),
        }
    }
    let dir = dir.context("usage: bench-report [--reference TARGET] DIR")?;
    let runs = Run::load_all(&dir)?;
    anyhow::ensure!(!runs.is_empty(), "{}: no runs in runs.jsonl", dir.display());
    let summary = summary::Summary::build(&runs, &reference);
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let markdown = table::markdown(&summary);
    std::fs::write(dir.join("table.md"), &markdown)?;
    std::fs::write(dir.join("chart.svg"), chart::svg(&summary))?;
    println!("{markdown}");
    eprintln!(
        "bench-report: wrote {0}/summary.json, {0}/table.md, {0}/chart.svg",
        dir.display()
    );
    Ok(())
}
