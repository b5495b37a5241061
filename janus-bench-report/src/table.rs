//! The summary as Markdown tables (what the README shows).

use std::fmt::Write as _;

use crate::summary::Summary;

fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 100.0 => group_thousands(v.round() as u64),
        Some(v) => format!("{v:.1}"),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: Option<f64>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us >= 10_000.0 => format!("{:.0} ms", us / 1000.0),
        Some(us) => format!("{:.2} ms", us / 1000.0),
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "–".into(), |p| format!("{p:.0} %"))
}

/// Markdown for every table the summary has rows for.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
    if !s.echo.is_empty() {
        let _ = writeln!(
            out,
            "#### Messages per second and latency (ratios against `{}` at the same point, same suite run)\n",
            s.reference
        );
        let _ = writeln!(
            out,
            "| target | conns | payload | msgs/s (median) | range | × {0} | p50 | p99 | p99.9 | p99 × {0} | CPU SUT | CPU gen | msgs per SUT CPU-second | × {0} | errors |",
            s.reference
        );
        let _ = writeln!(
            out,
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for r in &s.echo {
            let range = r.msgs_per_sec_range.map_or_else(
                || "–".into(),
                |(lo, hi)| format!("{}–{}", num(Some(lo)), num(Some(hi))),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                group_thousands(r.conns),
                r.payload,
                num(r.msgs_per_sec),
                range,
                ratio(r.msgs_ratio),
                ms(r.p50_us),
                ms(r.p99_us),
                ms(r.p999_us),
                ratio(r.p99_ratio),
                pct(r.sut_cpu_percent),
                pct(r.generator_cpu_percent),
                num(r.msgs_per_cpu_sec),
                ratio(r.per_cpu_ratio),
                r.errors
            );
        }
        out.push('\n');
    }
    if !s.handshake.is_empty() {
        let _ = writeln!(out, "#### Handshakes\n");
        let _ = writeln!(
            out,
            "| target | transport | clients | handshakes/s | CPU SUT | per core | crypto bound per core | share of bound | p99 | errors |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in &s.handshake {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                r.transport,
                r.conns,
                num(r.handshakes_per_sec),
                pct(r.sut_cpu_percent),
                num(r.per_core),
                num(r.crypto_bound_per_core),
                r.share_of_bound
                    .map_or_else(|| "–".into(), |s| format!("{:.0} %", s * 100.0)),
                ms(r.p99_us),
                r.errors
            );
        }
        out.push('\n');
    }
    if !s.broadcast.is_empty() {
        let _ = writeln!(out, "#### Encrypted broadcast\n");
        let _ = writeln!(
            out,
            "| target | transport | sessions | payload | deliveries/s | CPU SUT | per core | errors |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|");
        for r in &s.broadcast {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} B | {} | {} | {} | {} |",
                r.label,
                r.transport,
                group_thousands(r.sessions),
                r.payload,
                num(r.deliveries_per_sec),
                pct(r.sut_cpu_percent),
                num(r.per_core),
                r.errors
            );
        }
        out.push('\n');
    }
    if !s.idle.is_empty() {
        let _ = writeln!(out, "#### Idle connections\n");
        let _ = writeln!(
            out,
            "| target | transport | connections | held | bytes per connection (process) | kernel TCP buffers per connection (apart) | errors |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|");
        for r in &s.idle {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                r.transport,
                group_thousands(r.conns),
                num(r.connected),
                num(r.bytes_per_connection),
                num(r.kernel_tcp_bytes_per_connection),
                r.errors
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(num(Some(12.34)), "12.3");
        assert_eq!(ms(Some(361_000.0)), "361 ms");
        assert_eq!(ms(Some(1_350.0)), "1.35 ms");
    }
}
