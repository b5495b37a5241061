//! The WebSocket opening handshake, server side (RFC 6455 §4.2): an HTTP/1.1 `GET` with the
//! upgrade headers, answered `101 Switching Protocols` or refused with an HTTP status the
//! client can read (a bare TCP close tells a browser nothing).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha1::{Digest as _, Sha1};

/// Longest upgrade request head, bytes. Stops a peer from making the gateway buffer an endless
/// header; browsers send well under 2 KiB.
pub const MAX_REQUEST_LEN: usize = 8 * 1024;
/// Most request headers parsed.
const MAX_HEADERS: usize = 32;
/// RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Who may upgrade.
#[derive(Debug, Clone)]
pub struct UpgradePolicy {
    /// The one path served (`server.ws.path`, e.g. `/ws`); the query string is ignored.
    pub path: String,
    /// Allowed `Origin` values. Empty, or containing `*`, allows any. A request without an
    /// `Origin` header (a native client; browsers always send one) is allowed either way: the
    /// list protects browser users from other sites, which it cannot do for non-browsers.
    pub allowed_origins: Vec<String>,
}

/// Why an upgrade was refused, with the HTTP status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Not an HTTP/1.1 request, or a header over the limits: 400.
    #[error("malformed upgrade request")]
    Malformed,
    /// Not a `GET`: 405.
    #[error("method not allowed")]
    Method,
    /// Another path: 404.
    #[error("no such path")]
    Path,
    /// Not a WebSocket upgrade, or another protocol version: 426, naming version 13.
    #[error("upgrade to WebSocket version 13 required")]
    UpgradeRequired,
    /// No valid `Sec-WebSocket-Key`: 400.
    #[error("missing or invalid Sec-WebSocket-Key")]
    Key,
    /// An `Origin` not in the list: 403.
    #[error("origin not allowed")]
    Origin,
}

impl UpgradeError {
    /// The HTTP response that refuses the upgrade.
    pub fn response(self) -> String {
        let (status, extra) = match self {
            Self::Malformed | Self::Key => ("400 Bad Request", ""),
            Self::Method => ("405 Method Not Allowed", "Allow: GET\r\n"),
            Self::Path => ("404 Not Found", ""),
            Self::UpgradeRequired => (
                "426 Upgrade Required",
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            ),
            Self::Origin => ("403 Forbidden", ""),
        };
        let body = self.to_string();
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
            body.len() + 1
        )
    }
}

/// Reads an upgrade request from the front of `buf`. `Ok(None)` until the head is complete;
/// `Ok(Some((response, consumed)))` with the `101` response and the head's length (bytes after it
/// are already WebSocket frames).
pub fn accept(buf: &[u8], policy: &UpgradePolicy) -> Result<Option<(String, usize)>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_LEN => return Ok(None),
        Ok(httparse::Status::Partial) | Err(_) => return Err(UpgradeError::Malformed),
    };
    if request.version != Some(1) {
        return Err(UpgradeError::Malformed);
    }
    if request.method != Some("GET") {
        return Err(UpgradeError::Method);
    }
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != policy.path {
        return Err(UpgradeError::Path);
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |value: Option<&str>, token: &str| {
        value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header("upgrade"), "websocket")
        || !has_token(header("connection"), "upgrade")
        || header("sec-websocket-version").map(str::trim) != Some("13")
    {
        return Err(UpgradeError::UpgradeRequired);
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .unwrap_or_default();
    if STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(UpgradeError::Key);
    }
    if let Some(origin) = header("origin") {
        let any =
            policy.allowed_origins.is_empty() || policy.allowed_origins.iter().any(|a| a == "*");
        if !any && !policy.allowed_origins.iter().any(|a| a == origin) {
            return Err(UpgradeError::Origin);
        }
    }
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    let accept = STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    Ok(Some((response, consumed)))
}
