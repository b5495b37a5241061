//! `${NAME}` and `${NAME:default}` placeholders, filled from the environment.
//!
//! Upstream (kratos) resolves the same syntax against its merged keys and `PANTHEON_`-prefixed
//! environment variables; here the environment is looked up directly, so `${REDIS_PASSWORD}` is
//! fed by `REDIS_PASSWORD`.
//!
//! Substitution runs on the parsed YAML tree, string scalars only (values, not keys), never on
//! the raw text: a multi-line PEM or a value holding `: ` or `#` that comes from the environment
//! cannot change the structure of the document. The result is always text; numeric and boolean
//! fields re-read it (see [`super::de`]).
//!
//! Syntax: `NAME` is `[A-Za-z_][A-Za-z0-9_]*`; the default runs from the first `:` after the
//! name to the next `}` and may contain `:` (`${REDIS:127.0.0.1:6379}`) and newlines, but not
//! `}`. A variable that is set wins over the default even when it is empty (an empty Redis
//! password is a real setting). `$${` stands for a literal `${`. Anything else that starts with
//! `${` and is not a placeholder is an error, so a typo never passes as a literal.

use serde_yaml::Value;

use super::ConfigError;

/// Replaces the placeholders of every string scalar under `value`. `path` is the key path of
/// `value` (empty for the document root), for error messages.
pub(crate) fn substitute(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand(s, path, env)?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                substitute(item, &join(path, key), env)?;
            }
        }
        Value::Tagged(tagged) => substitute(&mut tagged.value, path, env)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// `parent.key`, with keys that are not text shown as YAML would write them.
fn join(parent: &str, key: &Value) -> String {
    let key = match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// Expands the placeholders of one string.
fn expand(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(at);
        out.push_str(before);
        if let Some(after) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = from_dollar.strip_prefix("${") {
            let (replacement, after) = placeholder(after, path, env)?;
            out.push_str(&replacement);
            rest = after;
        } else {
            out.push('$');
            rest = from_dollar.get(1..).unwrap_or("");
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves one placeholder; `text` starts right after `${`. Returns the value and what follows
/// the closing `}`.
fn placeholder<'a>(
    text: &'a str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, &'a str), ConfigError> {
    let name_len = text
        .char_indices()
        .find(|&(i, c)| {
            let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            !ok
        })
        .map_or(text.len(), |(i, _)| i);
    let (name, after) = text.split_at(name_len);
    let bad = |why: &str| {
        let shown: String = text.chars().take(40).collect();
        ConfigError::invalid(
            path,
            format!("malformed placeholder \"${{{shown}\": {why} (write $${{ for a literal ${{)"),
        )
    };
    if name.is_empty() {
        return Err(bad("expected a variable name [A-Za-z_][A-Za-z0-9_]*"));
    }
    let (default, after) = if let Some(after) = after.strip_prefix('}') {
        (None, after)
    } else if let Some(after) = after.strip_prefix(':') {
        let end = after.find('}').ok_or_else(|| bad("no closing }"))?;
        let (default, after) = after.split_at(end);
        (Some(default), after.get(1..).unwrap_or(""))
    } else if after.is_empty() {
        return Err(bad("no closing }"));
    } else {
        return Err(bad("expected } or :default} after the variable name"));
    };
    match (env(name), default) {
        (Some(value), _) => Ok((value, after)),
        (None, Some(default)) => Ok((default.to_owned(), after)),
        (None, None) => Err(ConfigError::Placeholder {
            name: name.to_owned(),
            path: path.to_owned(),
        }),
    }
}
