//! Field deserializers shared by the sections: durations and typed scalars.
//!
//! Placeholder substitution ([`super::env`]) always produces text. Fields that are numbers or
//! booleans therefore also accept text and re-read it as a YAML scalar of their type, so
//! `zone: ${ZONE:0}` is the number 0 and `encrypted: ${ENC:true}` the boolean `true`; string
//! fields keep the substituted text exactly as it was (a password `123456`, a version `1.10` or a
//! PEM from the environment is never reinterpreted). For the same reason a quoted `"5"` is
//! accepted where a number is expected.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::DeserializeOwned, de::Error as _};
use serde_yaml::Value;

use super::duration::{format_duration, parse_duration};

/// A Go-style duration string (`"600s"`, `"0.5s"`, `"1m30s"`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => parse_duration(&s).map_err(D::Error::custom),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        Value::Number(n) => Err(D::Error::custom(format!(
            "duration {n} needs a unit (ns, us, ms, s, m, h), e.g. \"{n}s\""
        ))),
        other => Err(D::Error::custom(format!(
            "expected a duration such as \"600s\", found {}",
            kind(&other)
        ))),
    }
}

/// A number or boolean, given natively or as text holding one.
pub(crate) fn scalar<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::String(s) => {
            let trimmed = s.trim();
            // A scalar, not a flow collection or another document hiding in an env variable.
            let reread = if trimmed.starts_with(['[', '{']) || trimmed.contains('\n') {
                None
            } else {
                serde_yaml::from_str::<Value>(trimmed)
                    .ok()
                    .filter(|v| matches!(v, Value::Bool(_) | Value::Number(_)))
            };
            match reread {
                Some(v) => serde_yaml::from_value(v).map_err(|e| {
                    D::Error::custom(format!("{s:?}: {}", strip_location(&e.to_string())))
                }),
                None => Err(D::Error::custom(format!(
                    "expected {}, found the text {s:?}",
                    std::any::type_name::<T>()
                ))),
            }
        }
        other => serde_yaml::from_value(other)
            .map_err(|e| D::Error::custom(strip_location(&e.to_string()))),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(at) => msg.get(..at).unwrap_or(msg).to_owned(),
        None => msg.to_owned(),
    }
}

/// Writes a duration the way the file reads it (`"600s"`), for the effective configuration.
pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Writes a secret as `<redacted>` (or `""` when unset): the effective configuration the admin
/// API shows never carries key material or passwords.
pub(crate) fn ser_secret<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { "<redacted>" })
}
