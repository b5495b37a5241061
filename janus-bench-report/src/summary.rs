//! The runs of one suite run, grouped by what they measured, reduced to medians, with ratios
//! against the reference target measured in the same suite run.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of `runs.jsonl`: one `janus-bench` run and what it was.
#[derive(Debug, Clone, Deserialize)]
pub struct RunLine {
    /// `echo`, `handshake`, `broadcast`, `idle` or `crypto`.
    pub kind: String,
    /// Short name of the system under test (`direct`, `haproxy`, `nginx`, `janus`, ...).
    pub target: String,
    /// How the table names it.
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub conns: u64,
    #[serde(default)]
    pub payload: u64,
    /// `tcp` or `ws`.
    #[serde(default = "tcp")]
    pub transport: String,
    /// The run's JSON report, relative to the directory.
    pub file: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// A run line and its report.
#[derive(Debug, Clone)]
pub struct Run {
    pub line: RunLine,
    pub report: Value,
}

impl Run {
    /// Every run listed in `dir/runs.jsonl` whose report could be read; a missing or broken
    /// report is skipped with a note (a target that failed to start must not hide the others).
    pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Run>> {
        let list = dir.join("runs.jsonl");
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("cannot read {}", list.display()))?;
        let mut runs = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let line: RunLine = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a run line", list.display(), n + 1))?;
            let path = dir.join(&line.file);
            match std::fs::read(&path)
                .ok()
                .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            {
                Some(report) => runs.push(Run { line, report }),
                None => eprintln!(
                    "bench-report: skipping {} (no readable report)",
                    path.display()
                ),
            }
        }
        Ok(runs)
    }

    fn num(&self, path: &[&str]) -> Option<f64> {
        let mut v = &self.report;
        for key in path {
            v = v.get(key)?;
        }
        v.as_f64()
    }
}

/// The median of `values` (`None` when empty).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let upper = *values.get(mid)?;
    Some(if values.len() % 2 == 1 {
        upper
    } else {
        (values.get(mid - 1)? + upper) / 2.0
    })
}

/// The median of `field` over `runs`.
fn med(runs: &[&Run], field: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = runs.iter().filter_map(|r| field(r)).collect();
    median(&mut values)
}

fn range(runs: &[&Run], field: impl Fn(&Run) -> Option<f64>) -> Option<(f64, f64)> {
    let values: Vec<f64> = runs.iter().filter_map(|r| field(r)).collect();
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

/// Messages per second and latency of one target at one point.
#[derive(Debug, Clone, Serialize)]
pub struct EchoRow {
    pub target: String,
    pub label: String,
    pub transport: String,
    pub conns: u64,
    pub payload: u64,
    pub runs: usize,
    pub msgs_per_sec: Option<f64>,
    pub msgs_per_sec_range: Option<(f64, f64)>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// CPU of the system under test over the window, % of one core.
    pub sut_cpu_percent: Option<f64>,
    /// CPU of the load generator, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// Errors of every kind, summed over the runs.
    pub errors: u64,
    /// `msgs_per_sec / reference's` at the same point.
    pub msgs_ratio: Option<f64>,
    /// `p99 / reference's p99` at the same point.
    pub p99_ratio: Option<f64>,
    /// Messages per second of the system under test's own CPU time (`msgs_per_sec / (CPU SUT /
    /// 100)`): the comparison that holds when other work shares the core.
    pub msgs_per_cpu_sec: Option<f64>,
    /// `msgs_per_cpu_sec / reference's` at the same point.
    pub per_cpu_ratio: Option<f64>,
}

/// Handshakes per second against the bound the cryptography sets on one core.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeRow {
    pub target: String,
    pub label: String,
    pub transport: String,
    pub conns: u64,
    pub handshakes_per_sec: Option<f64>,
    pub sut_cpu_percent: Option<f64>,
    /// `handshakes_per_sec / (sut_cpu_percent / 100)`.
    pub per_core: Option<f64>,
    /// `1 / (sum of the primitives' times)`, measured on the same core in the same suite run.
    pub crypto_bound_per_core: Option<f64>,
    /// `per_core / crypto_bound_per_core`.
    pub share_of_bound: Option<f64>,
    pub p99_us: Option<f64>,
    pub errors: u64,
}

/// Encrypted broadcast deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastRow {
    pub target: String,
    pub label: String,
    pub transport: String,
    pub sessions: u64,
    pub payload: u64,
    pub deliveries_per_sec: Option<f64>,
    pub sut_cpu_percent: Option<f64>,
    /// `deliveries_per_sec / (sut_cpu_percent / 100)`.
    pub per_core: Option<f64>,
    pub errors: u64,
}

/// Memory of idle connections.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    pub target: String,
    pub label: String,
    pub transport: String,
    pub conns: u64,
    /// Connections open when the memory was read (median).
    pub connected: Option<f64>,
    /// Resident memory growth of the system under test per connection, bytes.
    pub bytes_per_connection: Option<f64>,
    /// Kernel TCP buffer growth per connection (both ends), bytes, reported apart.
    pub kernel_tcp_bytes_per_connection: Option<f64>,
    pub errors: u64,
}

/// Everything `bench-report` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub reference: String,
    pub echo: Vec<EchoRow>,
    pub handshake: Vec<HandshakeRow>,
    pub broadcast: Vec<BroadcastRow>,
    pub idle: Vec<IdleRow>,
}

fn errors(runs: &[&Run]) -> u64 {
    runs.iter()
        .filter_map(|r| r.num(&["error_total"]))
        .sum::<f64>() as u64
}

fn sut_cpu(r: &Run) -> Option<f64> {
    r.num(&["cpu", "watched_percent"]).filter(|p| *p > 0.0)
}

fn gen_cpu(r: &Run) -> Option<f64> {
    r.num(&["cpu", "generator_percent"])
}

/// Runs grouped by (kind, target, transport, conns, payload), in first-seen order.
fn groups<'a>(runs: &'a [Run], kind: &str) -> Vec<(&'a Run, Vec<&'a Run>)> {
    let mut order: Vec<(String, String, u64, u64)> = Vec::new();
    let mut map: BTreeMap<(String, String, u64, u64), Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.line.kind == kind) {
        let key = (
            run.line.target.clone(),
            run.line.transport.clone(),
            run.line.conns,
            run.line.payload,
        );
        if !map.contains_key(&key) {
            order.push(key.clone());
        }
        map.entry(key).or_default().push(run);
    }
    order
        .into_iter()
        .filter_map(|k| map.remove(&k))
        .filter_map(|g| Some((*g.first()?, g)))
        .collect()
}

fn label(run: &Run) -> String {
    if run.line.label.is_empty() {
        run.line.target.clone()
    } else {
        run.line.label.clone()
    }
}

impl Summary {
    pub fn build(runs: &[Run], reference: &str) -> Self {
        let mut echo: Vec<EchoRow> = groups(runs, "echo")
            .into_iter()
            .map(|(first, g)| {
                let msgs_per_sec = med(&g, |r| r.num(&["messages_per_sec"]));
                let sut_cpu_percent = med(&g, sut_cpu);
                EchoRow {
                    target: first.line.target.clone(),
                    label: label(first),
                    transport: first.line.transport.clone(),
                    conns: first.line.conns,
                    payload: first.line.payload,
                    runs: g.len(),
                    msgs_per_sec,
                    msgs_per_sec_range: range(&g, |r| r.num(&["messages_per_sec"])),
                    p50_us: med(&g, |r| r.num(&["request_latency_us", "p50"])),
                    p99_us: med(&g, |r| r.num(&["request_latency_us", "p99"])),
                    p999_us: med(&g, |r| r.num(&["request_latency_us", "p999"])),
                    sut_cpu_percent,
                    generator_cpu_percent: med(&g, gen_cpu),
                    errors: errors(&g),
                    msgs_ratio: None,
                    p99_ratio: None,
                    msgs_per_cpu_sec: per_core(msgs_per_sec, sut_cpu_percent),
                    per_cpu_ratio: None,
                }
            })
            .collect();
        let refs: Vec<EchoRow> = echo
            .iter()
            .filter(|r| r.target == reference)
            .cloned()
            .collect();
        for row in &mut echo {
            if let Some(base) = refs
                .iter()
                .find(|b| b.conns == row.conns && b.payload == row.payload)
            {
                row.msgs_ratio = ratio(row.msgs_per_sec, base.msgs_per_sec);
                row.p99_ratio = ratio(row.p99_us, base.p99_us);
                row.per_cpu_ratio = ratio(row.msgs_per_cpu_sec, base.msgs_per_cpu_sec);
            }
        }

        let mut bounds: Vec<f64> = runs
            .iter()
            .filter(|r| r.line.kind == "crypto")
            .filter_map(|r| r.num(&["handshakes_per_sec"]))
            .collect();
        let bound = median(&mut bounds);
        let handshake = groups(runs, "handshake")
            .into_iter()
            .map(|(first, g)| {
                let rate = med(&g, |r| r.num(&["handshakes_per_sec"]));
                let cpu = med(&g, sut_cpu);
                let per_core = per_core(rate, cpu);
                HandshakeRow {
                    target: first.line.target.clone(),
                    label: label(first),
                    transport: first.line.transport.clone(),
                    conns: first.line.conns,
                    handshakes_per_sec: rate,
                    sut_cpu_percent: cpu,
                    per_core,
                    crypto_bound_per_core: bound,
                    share_of_bound: ratio(per_core, bound),
                    p99_us: med(&g, |r| r.num(&["handshake_latency_us", "p99"])),
                    errors: errors(&g),
                }
            })
            .collect();

        let broadcast = groups(runs, "broadcast")
            .into_iter()
            .map(|(first, g)| {
                let rate = med(&g, |r| r.num(&["pushes_per_sec"]));
                let cpu = med(&g, sut_cpu);
                BroadcastRow {
                    target: first.line.target.clone(),
                    label: label(first),
                    transport: first.line.transport.clone(),
                    sessions: first.line.conns,
                    payload: first.line.payload,
                    deliveries_per_sec: rate,
                    sut_cpu_percent: cpu,
                    per_core: per_core(rate, cpu),
                    errors: errors(&g),
                }
            })
            .collect();

        let idle = groups(runs, "idle")
            .into_iter()
            .map(|(first, g)| {
                let connected = med(&g, |r| r.num(&["gateway_memory", "connections"]));
                IdleRow {
                    target: first.line.target.clone(),
                    label: label(first),
                    transport: first.line.transport.clone(),
                    conns: first.line.conns,
                    connected,
                    bytes_per_connection: med(&g, |r| {
                        r.num(&["gateway_memory", "bytes_per_connection"])
                    }),
                    kernel_tcp_bytes_per_connection: med(&g, |r| {
                        let kernel = r.num(&["gateway_memory", "kernel_tcp_buffers"])?;
                        let conns = r.num(&["gateway_memory", "connections"])?;
                        (conns > 0.0).then(|| kernel / conns)
                    }),
                    errors: errors(&g),
                }
            })
            .collect();

        Summary {
            reference: reference.to_owned(),
            echo,
            handshake,
            broadcast,
            idle,
        }
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn per_core(rate: Option<f64>, cpu_percent: Option<f64>) -> Option<f64> {
    match (rate, cpu_percent) {
        (Some(rate), Some(cpu)) if cpu > 1.0 => Some(rate * 100.0 / cpu),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn run(kind: &str, target: &str, conns: u64, msgs: f64, p99: f64) -> Run {
        Run {
            line: RunLine {
                kind: kind.into(),
                target: target.into(),
                label: String::new(),
                conns,
                payload: 64,
                transport: "tcp".into(),
                file: String::new(),
            },
            report: serde_json::json!({
                "messages_per_sec": msgs,
                "request_latency_us": {"p50": 1, "p99": p99, "p999": p99},
                "error_total": 1,
                "cpu": {"generator_percent": 50.0, "watched_percent": 80.0, "watched": []},
            }),
        }
    }

    #[test]
    fn medians_and_ratios_against_the_reference() {
        let runs = vec![
            run("echo", "haproxy", 50, 100.0, 10.0),
            run("echo", "haproxy", 50, 300.0, 30.0),
            run("echo", "haproxy", 50, 200.0, 20.0),
            run("echo", "janus", 50, 160.0, 40.0),
            run("echo", "janus", 1000, 50.0, 40.0),
        ];
        let s = Summary::build(&runs, "haproxy");
        assert_eq!(s.echo.len(), 3);
        let haproxy = &s.echo[0];
        assert_eq!(haproxy.msgs_per_sec, Some(200.0));
        assert_eq!(haproxy.msgs_per_sec_range, Some((100.0, 300.0)));
        assert_eq!(haproxy.errors, 3);
        let janus = &s.echo[1];
        assert_eq!(janus.msgs_ratio, Some(0.8));
        assert_eq!(janus.p99_ratio, Some(2.0));
        // Same CPU (80 %) on both sides: the per-CPU ratio is the rate ratio.
        assert_eq!(janus.msgs_per_cpu_sec, Some(200.0));
        assert!((janus.per_cpu_ratio.unwrap() - 0.8).abs() < 1e-9);
        // No reference at 1000 connections: no ratio rather than a wrong one.
        assert_eq!(s.echo[2].msgs_ratio, None);
    }

    #[test]
    fn even_counts_take_the_middle_pair() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
