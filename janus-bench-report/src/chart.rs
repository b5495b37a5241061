//! The SVG chart: messages per second (top, linear) and p99 latency (bottom, log scale) per
//! target, one group of bars per point (connections, payload). Plain SVG written by hand: no
//! drawing crate to build.

use std::fmt::Write as _;

use crate::summary::{EchoRow, Summary};

const WIDTH: f64 = 1100.0;
/// Height of each of the two panels.
const PANEL: f64 = 380.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;
/// One colour per target, in the order targets first appear.
const PALETTE: [&str; 8] = [
    "#787878", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
];

fn colour(i: usize) -> &'static str {
    PALETTE.get(i % PALETTE.len()).copied().unwrap_or("#000")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart of the echo rows, as an SVG document (an empty frame when there are none).
pub fn svg(s: &Summary) -> String {
    let mut points: Vec<(u64, u64)> = Vec::new();
    let mut targets: Vec<(String, String)> = Vec::new();
    for r in &s.echo {
        if !points.contains(&(r.conns, r.payload)) {
            points.push((r.conns, r.payload));
        }
        if !targets.iter().any(|(t, _)| *t == r.target) {
            targets.push((r.target.clone(), r.label.clone()));
        }
    }
    let find = |target: &str, point: (u64, u64)| -> Option<&EchoRow> {
        s.echo
            .iter()
            .find(|r| r.target == target && (r.conns, r.payload) == point)
    };
    let height = 2.0 * PANEL;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL - TOP - BOTTOM;
    let group_w = plot_w / points.len().max(1) as f64;
    let bar_w = group_w * 0.8 / targets.len().max(1) as f64;

    // (panel index, title, value of a row, log scale?)
    type Value = fn(&EchoRow) -> Option<f64>;
    let panels: [(&str, Value, bool); 2] = [
        (
            "messages per second (median of runs)",
            |r| r.msgs_per_sec,
            false,
        ),
        (
            "p99 latency, ms (median of runs; log scale)",
            |r| r.p99_us,
            true,
        ),
    ];
    for (panel, (title, value, log)) in panels.iter().enumerate() {
        let y0 = panel as f64 * PANEL;
        let values: Vec<f64> = s
            .echo
            .iter()
            .filter_map(value)
            .filter(|v| *v > 0.0)
            .collect();
        let hi = values.iter().copied().fold(1.0, f64::max);
        let lo = values.iter().copied().fold(f64::MAX, f64::min);
        // The value axis: linear from 0, or log over whole decades.
        let (axis_lo, axis_hi) = if *log {
            let lo = if lo == f64::MAX { 1.0 } else { lo };
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
            )
        } else {
            (0.0, nice_ceiling(hi * 1.05))
        };
        let scale = |v: f64| -> f64 {
            let f = if *log {
                (v.max(axis_lo).log10() - axis_lo.log10()) / (axis_hi.log10() - axis_lo.log10())
            } else {
                v / axis_hi
            };
            y0 + TOP + plot_h * (1.0 - f.clamp(0.0, 1.0))
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="16" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            y0 + 24.0,
            escape(title)
        );
        // Grid lines and value labels.
        let ticks: Vec<f64> = if *log {
            let mut t = Vec::new();
            let mut v = axis_lo;
            while v <= axis_hi * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            (0..=5).map(|i| axis_hi * f64::from(i) / 5.0).collect()
        };
        for t in ticks {
            let y = scale(t);
            let label = if *log {
                let ms = t / 1000.0;
                if ms >= 1.0 {
                    format!("{ms:.0}")
                } else {
                    format!("{ms}")
                }
            } else if t >= 1e6 {
                format!("{:.1}M", t / 1e6)
            } else {
                format!("{:.0}k", t / 1e3)
            };
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0
            );
        }
        // Bars.
        for (i, &point) in points.iter().enumerate() {
            let gx = LEFT + group_w * i as f64;
            for (t, (target, _)) in targets.iter().enumerate() {
                let Some(v) = find(target, point).and_then(value) else {
                    continue;
                };
                let x = gx + group_w * 0.1 + bar_w * t as f64;
                let top = scale(v);
                let base = y0 + TOP + plot_h;
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.0}</title></rect>"#,
                    bar_w * 0.9,
                    (base - top).max(0.5),
                    colour(t),
                    escape(target)
                );
            }
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} conns, {} B</text>"#,
                gx + group_w / 2.0,
                y0 + TOP + plot_h + 18.0,
                point.0,
                point.1
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{}" y2="{}" stroke="#000"/><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#000"/>"##,
            y0 + TOP,
            y0 + TOP + plot_h,
            LEFT + plot_w,
            y0 + TOP + plot_h,
            y0 + TOP + plot_h
        );
    }
    // Legend.
    for (t, (_, label)) in targets.iter().enumerate() {
        let x = WIDTH - RIGHT + 20.0;
        let y = TOP + 10.0 + 22.0 * t as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y - 10.0,
            colour(t),
            x + 18.0,
            y,
            escape(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The smallest 1, 2 or 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let decade = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if decade * step >= v {
            return decade * step;
        }
    }
    decade * 10.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(130_000.0), 200_000.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }

    #[test]
    fn a_bar_per_target_and_point_and_escaped_labels() {
        let row = |target: &str, label: &str, conns, rate, p99| EchoRow {
            target: target.into(),
            label: label.into(),
            transport: "tcp".into(),
            conns,
            payload: 64,
            runs: 1,
            msgs_per_sec: Some(rate),
            msgs_per_sec_range: None,
            p50_us: None,
            p99_us: Some(p99),
            p999_us: None,
            sut_cpu_percent: None,
            generator_cpu_percent: None,
            errors: 0,
            msgs_ratio: None,
            p99_ratio: None,
            msgs_per_cpu_sec: None,
            per_cpu_ratio: None,
        };
        let s = Summary {
            reference: "haproxy".into(),
            echo: vec![
                row("haproxy", "HAProxy <tcp>", 50, 100_000.0, 900.0),
                row("janus", "janus -> x", 50, 50_000.0, 4_000.0),
                row("haproxy", "HAProxy <tcp>", 1000, 90_000.0, 30_000.0),
            ],
            handshake: vec![],
            broadcast: vec![],
            idle: vec![],
        };
        let svg = svg(&s);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Two panels x three rows with values.
        assert_eq!(svg.matches("<title>").count(), 6);
        assert!(svg.contains("HAProxy &lt;tcp&gt;"));
        assert!(svg.contains("janus -&gt; x"));
        assert!(svg.contains("1000 conns, 64 B"));
    }
}
