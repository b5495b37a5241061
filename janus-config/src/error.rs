//! [`ConfigError`]: everything that can be wrong with a configuration file, worded for the person
//! who has to fix it. Its `Display` is what `janus check-config` prints.

use std::path::PathBuf;

/// Why a configuration could not be loaded, validated or turned into the core's configuration.
///
/// Every variant names where the problem is: the file, the line and column, or the key path
/// (`server.tcp.addr`, `backends.room[1].weight`) in the form the file is written in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (or, for `keygen`, written).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("YAML syntax error{}: {message}", location(*line, *column))]
    Yaml {
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A `${NAME}` placeholder names an environment variable that is not set, and gives no
    /// default.
    #[error("{path}: environment variable {name} is not set (and the placeholder has no default)")]
    Placeholder {
        /// The variable.
        name: String,
        /// The key whose value holds the placeholder.
        path: String,
    },
    /// A value is of the wrong type, out of range, or an unknown key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The key, e.g. `server.tcp.adr` (empty for the document root).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Key material does not parse or does not fit (wrong algorithm, expired certificate, ...).
    #[error("{which}: {reason}")]
    Secret {
        /// The key path (`secret.client_cert`) or file holding the material.
        which: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`Config::validate`](super::Config::validate) found more than one problem; each is listed.
    #[error("{} problems:{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn secret(which: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Secret {
            which: which.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConfigError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn yaml(error: &serde_yaml::Error) -> Self {
        let location = error.location();
        ConfigError::Yaml {
            line: location.as_ref().map(serde_yaml::Location::line),
            column: location.as_ref().map(serde_yaml::Location::column),
            message: yaml_message(error),
        }
    }
}

/// serde_yaml's message without its own " at line L column C" suffix, which the variant prints.
fn yaml_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

fn list(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}
