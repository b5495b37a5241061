//! The `relay` and `edge` sections as janus-core's link configuration: key parsing (PEM as
//! `janus keygen` writes it, or raw base64) and the checks `check-config` runs on them.

use std::time::SystemTime;

use base64::Engine as _;
use janus_core::{
    crypto::{SigningKey, VerifyingKey},
    relay::{LinkConfig, MIN_PEER_FRAME_LEN, Role},
};

use super::{Config, ConfigError, LinkLimits, secrets};

/// An Ed25519 private key: PKCS#8 PEM, or base64 (standard alphabet) of the 32-byte seed.
pub fn parse_relay_private_key(which: &str, text: &str) -> Result<SigningKey, ConfigError> {
    let text = text.trim();
    if text.contains("-----BEGIN") {
        return secrets::parse_private_key(which, text);
    }
    let seed: [u8; 32] = decode_base64_32(which, text)?;
    Ok(SigningKey::from_seed(&seed))
}

/// An Ed25519 public key: an X.509 certificate PEM, a `PUBLIC KEY` PEM, or base64 of the 32 raw
/// bytes.
pub fn parse_relay_public_key(which: &str, text: &str) -> Result<VerifyingKey, ConfigError> {
    let text = text.trim();
    if text.contains("BEGIN CERTIFICATE") {
        return secrets::parse_certificate_key(which, text, SystemTime::now());
    }
    let raw = if text.contains("BEGIN PUBLIC KEY") {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        ed25519_dalek::VerifyingKey::from_public_key_pem(text)
            .map_err(|e| ConfigError::secret(which, format!("not an Ed25519 PUBLIC KEY: {e}")))?
            .to_bytes()
    } else {
        decode_base64_32(which, text)?
    };
    VerifyingKey::from_bytes(&raw)
        .map_err(|_| ConfigError::secret(which, "not an Ed25519 public key (not a curve point)"))
}

fn decode_base64_32(which: &str, text: &str) -> Result<[u8; 32], ConfigError> {
    if text.is_empty() {
        return Err(ConfigError::secret(
            which,
            "is empty; expected a PKCS#8 PEM key or base64 of 32 bytes",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ConfigError::secret(which, format!("not PEM and not base64: {e}")))?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| ConfigError::secret(which, format!("{len} bytes of base64, expected 32")))
}

fn link_config(
    role: Role,
    node: String,
    key: SigningKey,
    peers: Vec<VerifyingKey>,
    limits: &LinkLimits,
) -> LinkConfig {
    let mut c = LinkConfig::new(role, node, key, peers);
    c.max_frame_len = limits.max_frame_len;
    c.session_window = limits.session_window;
    c.max_sessions = limits.max_sessions;
    c.max_buffered = limits.max_buffered;
    c.handshake_timeout = limits.handshake_timeout;
    c.heartbeat_interval = limits.heartbeat_interval;
    c.heartbeat_timeout = limits.heartbeat_timeout;
    c
}

impl Config {
    /// The hub's link configuration (`relay`), naming itself `node` (its endpoint); `None`
    /// without a `relay` section.
    pub fn hub_link_config(&self, node: &str) -> Result<Option<LinkConfig>, ConfigError> {
        let Some(relay) = &self.relay else {
            return Ok(None);
        };
        let key = parse_relay_private_key("relay.private_key", &relay.private_key)?;
        let peers = relay
            .edge_keys
            .iter()
            .enumerate()
            .map(|(i, k)| parse_relay_public_key(&format!("relay.edge_keys[{i}]"), k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(link_config(
            Role::Hub,
            node.to_owned(),
            key,
            peers,
            &relay.link,
        )))
    }

    /// The edge's link configuration and its hubs' addresses (`edge`).
    pub fn edge_link_config(&self) -> Result<(LinkConfig, Vec<String>), ConfigError> {
        let edge = self.edge.as_ref().ok_or_else(|| {
            ConfigError::invalid("edge", "missing: janus-edge needs an edge section")
        })?;
        let key = parse_relay_private_key("edge.private_key", &edge.private_key)?;
        let peers = edge
            .hubs
            .iter()
            .enumerate()
            .map(|(i, h)| {
                parse_relay_public_key(&format!("edge.hubs[{i}].public_key"), &h.public_key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let addrs = edge.hubs.iter().map(|h| h.addr.clone()).collect();
        Ok((
            link_config(Role::Edge, edge.id.clone(), key, peers, &edge.link),
            addrs,
        ))
    }

    /// Everything `janus-edge check-config` checks: the shared sections ([`validate`](Self::validate))
    /// and the `edge` section.
    pub fn validate_edge(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.validate() {
            match e {
                ConfigError::Several(list) => problems.extend(list),
                other => problems.push(other),
            }
        }
        match &self.edge {
            None => problems.push(ConfigError::invalid(
                "edge",
                "missing: janus-edge needs an edge section (id, private_key, hubs)",
            )),
            Some(edge) => {
                if let Err(e) = self.edge_link_config() {
                    problems.push(e);
                }
                if edge.hubs.is_empty() {
                    problems.push(ConfigError::invalid(
                        "edge.hubs",
                        "empty; list at least one hub",
                    ));
                }
                for (i, hub) in edge.hubs.iter().enumerate() {
                    if hub.addr.parse::<std::net::SocketAddr>().is_err()
                        && !hub.addr.rsplit_once(':').is_some_and(|(h, p)| {
                            !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                        })
                    {
                        problems.push(ConfigError::invalid(
                            format!("edge.hubs[{i}].addr"),
                            format!("{:?} is not host:port", hub.addr),
                        ));
                    }
                }
                if edge.reconnect_min.is_zero() || edge.reconnect_max < edge.reconnect_min {
                    problems.push(ConfigError::invalid(
                        "edge.reconnect_max",
                        "reconnect_min must be positive and at most reconnect_max",
                    ));
                }
                check_link("edge.link", &edge.link, self, &mut problems);
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    pub(crate) fn check_relay(&self, problems: &mut Vec<ConfigError>) {
        let Some(relay) = &self.relay else {
            return;
        };
        if relay.addr.parse::<std::net::SocketAddr>().is_err() {
            problems.push(ConfigError::invalid(
                "relay.addr",
                format!("{:?} is not an ip:port address", relay.addr),
            ));
        }
        if let Err(e) = self.hub_link_config("hub") {
            problems.push(e);
        }
        if relay.edge_keys.is_empty() {
            problems.push(ConfigError::invalid(
                "relay.edge_keys",
                "empty: no edge could connect; list the edges' public keys",
            ));
        }
        if relay.max_links == 0 {
            problems.push(ConfigError::invalid(
                "relay.max_links",
                "must be at least 1",
            ));
        }
        check_link("relay.link", &relay.link, self, problems);
    }
}

/// Link limits that would make the link unusable.
fn check_link(path: &str, l: &LinkLimits, config: &Config, problems: &mut Vec<ConfigError>) {
    let mut bad = |key: &str, why: String| {
        problems.push(ConfigError::invalid(format!("{path}.{key}"), why));
    };
    // A client request (inflated data) plus its envelope must fit one frame.
    let needed = config.limits.session.max_inflated_len.saturating_add(1024);
    if l.max_frame_len < needed.max(MIN_PEER_FRAME_LEN as usize) {
        bad(
            "max_frame_len",
            format!(
                "{} bytes cannot carry a largest client request ({} bytes inflated + envelope)",
                l.max_frame_len, config.limits.session.max_inflated_len
            ),
        );
    }
    if (l.session_window as usize) < l.max_frame_len {
        bad(
            "session_window",
            format!(
                "{} is smaller than max_frame_len ({}): a largest frame could never be sent",
                l.session_window, l.max_frame_len
            ),
        );
    }
    if l.max_sessions == 0 {
        bad("max_sessions", "must be at least 1".into());
    }
    for (key, d) in [
        ("handshake_timeout", l.handshake_timeout),
        ("heartbeat_interval", l.heartbeat_interval),
    ] {
        if d.is_zero() {
            bad(key, "must be longer than 0".into());
        }
    }
    if l.heartbeat_timeout < l.heartbeat_interval.saturating_mul(2) {
        bad(
            "heartbeat_timeout",
            "must be at least twice heartbeat_interval (one lost heartbeat is not a dead peer)"
                .into(),
        );
    }
}
