//! What `/proc` tells about the processes of a run: CPU time over the measured window (the
//! generator's own and the system under test's, `--watch-pid`, so a reader can see which side
//! saturated), resident memory, and the kernel's TCP buffer pages (`/proc/net/sockstat`), which
//! are reported apart from the processes' own memory.

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds `pid` (all its threads) has used so far, or `None` when it
/// cannot be read (not Linux, or the process is gone).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime(14) stime(15).
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds of a set of processes at one instant.
#[derive(Debug, Clone)]
pub(crate) struct CpuSample {
    at: Instant,
    generator: Option<f64>,
    watched: Vec<(u32, Option<f64>)>,
}

impl CpuSample {
    pub fn take(watched: &[u32]) -> Self {
        Self {
            at: Instant::now(),
            generator: cpu_seconds(std::process::id()),
            watched: watched.iter().map(|&pid| (pid, cpu_seconds(pid))).collect(),
        }
    }

    /// Percentages of one core used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuSample) -> super::report::Cpu {
        let secs = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        let percent = |now: Option<f64>, then: Option<f64>| match (now, then) {
            (Some(now), Some(then)) if secs > 0.0 => Some(100.0 * (now - then).max(0.0) / secs),
            _ => None,
        };
        let watched: Vec<_> = self
            .watched
            .iter()
            .zip(&earlier.watched)
            .map(|(&(pid, now), &(_, then))| super::report::ProcessCpu {
                pid,
                percent: percent(now, then),
            })
            .collect();
        super::report::Cpu {
            generator_percent: percent(self.generator, earlier.generator),
            watched_percent: watched.iter().filter_map(|p| p.percent).sum(),
            watched,
        }
    }
}

/// Resident memory of `pid`, bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Pages the kernel holds for TCP socket buffers, machine-wide (`TCP: ... mem N` of
/// `/proc/net/sockstat`).
pub(crate) fn tcp_buffer_pages() -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}
