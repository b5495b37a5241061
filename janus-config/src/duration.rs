//! Go-style durations (`"600s"`, `"0.5s"`, `"100ms"`, `"1m30s"`), as upstream's configuration
//! writes them (kratos reads them into `google.protobuf.Duration` through Go's
//! `time.ParseDuration`), so an upstream file keeps its meaning here.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A negative duration never makes sense for a timeout or a TTL.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// A number without a unit (only `"0"` may omit it, as in Go).
    #[error("duration {0:?} needs a unit (ns, us, ms, s, m, h), e.g. \"600s\"")]
    MissingUnit(String),
    /// A unit Go does not know.
    #[error("duration {text:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The whole input.
        text: String,
        /// The unknown unit.
        unit: String,
    },
    /// Not a sequence of `<number><unit>`.
    #[error("invalid duration {0:?} (expected e.g. \"600s\", \"0.5s\", \"100ms\", \"1m30s\")")]
    Syntax(String),
    /// More than `u64::MAX` nanoseconds (about 584 years).
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a Go-style duration: one or more `<decimal><unit>` terms (`"1h30m"`, `"1.5s"`), units
/// `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`; `"0"` alone needs no unit. A leading `+` is allowed,
/// a `-` is refused (no timeout or TTL is negative).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let syntax = || DurationError::Syntax(text.to_owned());
    let overflow = || DurationError::Overflow(text.to_owned());
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(syntax());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        total = whole
            .checked_mul(unit_ns)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(overflow)?;
        // Digits beyond the 19th are below a nanosecond for every unit but h; dropping them
        // keeps the arithmetic in range and rounds down, as Go does.
        let frac = frac.get(..frac.len().min(19)).unwrap_or("");
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| syntax())?;
            let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| syntax())?);
            total = total
                .checked_add(digits * unit_ns / scale)
                .ok_or_else(overflow)?;
        }
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way [`parse_duration`] reads it back (`"600s"`, `"500ms"`, `"1m30s"`),
/// for messages and generated files.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d.subsec_nanos() != 0 {
        let nanos = d.as_nanos();
        return if nanos % 1_000_000 == 0 {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}
