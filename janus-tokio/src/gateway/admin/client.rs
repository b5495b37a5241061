//! `janus drain`: the client half of `POST /admin/drain`, for a Kubernetes `preStop` hook in an
//! image without a shell or curl.
//!
//! It asks the gateway to drain, then waits until the gateway has gone (its admin port stops
//! answering) or `wait` has passed. Waiting matters: the kubelet sends `SIGTERM` as soon as the
//! hook returns, and the gateway must not be cut short by it (the binary treats a `SIGTERM`
//! after an API drain as the drain's own, not as a second, impatient signal).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// How the drain request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// The gateway accepted the drain and had exited (its admin port closed) after this long.
    Exited(Duration),
    /// The gateway accepted the drain and was still running when `wait` ran out (or `wait` was
    /// zero).
    Draining,
}

/// Why the drain could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum DrainRequestError {
    #[error("admin API at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin API at {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("admin API at {addr} answered {status}: {body}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("admin API at {addr}: not an HTTP response")]
    Malformed { addr: SocketAddr },
}

/// Bound on each request of the drain client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the client checks whether the gateway has exited.
const POLL: Duration = Duration::from_millis(250);

/// `POST /admin/drain` on `addr` with `token` (empty: none), then waits up to `wait` for the
/// gateway to go away. Refusals (403 without a configured token, 401 for a wrong one) are errors.
pub async fn request_drain(
    addr: SocketAddr,
    token: &str,
    wait: Duration,
) -> Result<DrainOutcome, DrainRequestError> {
    let started = Instant::now();
    let (status, body) = request(addr, "POST", "/admin/drain", token).await?;
    if status != 202 {
        return Err(DrainRequestError::Refused { addr, status, body });
    }
    let deadline = started + wait;
    while Instant::now() < deadline {
        // Connection refused (or reset) means the process has gone; anything else, keep waiting.
        if let Err(DrainRequestError::Io { .. }) = request(addr, "GET", "/healthz", "").await {
            return Ok(DrainOutcome::Exited(started.elapsed()));
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Ok(DrainOutcome::Draining)
}

/// One HTTP/1.1 request (`Connection: close`); the status code and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> Result<(u16, String), DrainRequestError> {
    let io = |source| DrainRequestError::Io { addr, source };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let auth = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        parse_response(&raw).ok_or(DrainRequestError::Malformed { addr })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| DrainRequestError::Timeout {
            addr,
            timeout: REQUEST_TIMEOUT,
        })?
}

/// The status code and body of a complete HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, body.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn parses_status_and_body_and_refuses_garbage() {
        assert_eq!(
            parse_response(b"HTTP/1.1 202 Accepted\r\ncontent-length: 8\r\n\r\ndraining"),
            Some((202, "draining".into()))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 202"), None);
        assert_eq!(parse_response(b""), None);
    }
}
