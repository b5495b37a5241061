//! Admin HTTP, on `server.http.addr` only (never on a client port).
//!
//! | method and path | what | token |
//! | --- | --- | --- |
//! | `GET /metrics` | Prometheus text | no |
//! | `GET /healthz` | 200 while the process runs | no |
//! | `GET /readyz` | 200 while taking connections, 503 from the start of a drain | no |
//! | `GET /admin/sessions/{uid}[?color=c]` | the session of `uid` here (JSON), else which gateway holds it per the Redis gate table (cluster mode; colour default `label.color`) | if configured |
//! | `POST /admin/sessions/{uid}/kick[?code=admin_kick_out\|banned]` | closes the session after `SCServerLogout{code}` | yes |
//! | `POST /admin/drain` | starts the drain (as SIGTERM); the process exits when it ends | yes |
//! | `GET /admin/config` | the effective configuration, secrets redacted (YAML) | if configured |
//! | `GET /admin/backends` | every backend with its breaker state and open tunnels (JSON) | if configured |
//! | `POST /admin/reload` | re-reads the configuration file (as SIGHUP); JSON report or every problem | yes |
//!
//! The token is `server.http.admin_token` (or `JANUS_ADMIN_TOKEN`), sent as
//! `Authorization: Bearer <token>`. Without one configured the changing endpoints are refused
//! (403) and the read endpoints are open. Every refusal is logged and counted
//! (`janus_admin_refusals_total{cause}`).

mod api;
pub mod client;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

use super::{Shared, metrics::AdminRefusal};

type Reply = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    respond(status, "text/plain; charset=utf-8", body)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(mut body) => {
            body.push('\n');
            respond(status, "application/json", body)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Equal lengths compared without an early exit, so the time taken does not tell how much of
/// a guess was right.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Checks the bearer token; `changes` for endpoints that change something. `Some`: the refusal
/// to send.
fn refusal(
    shared: &Shared,
    req: &Request<Incoming>,
    remote: SocketAddr,
    changes: bool,
) -> Option<Reply> {
    let expected = shared
        .ops
        .admin_token
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let refusal = if expected.is_empty() {
        if !changes {
            return None;
        }
        AdminRefusal::NoTokenConfigured
    } else {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(token) if same_token(token.trim().as_bytes(), expected.as_bytes()) => {
                return None;
            }
            Some(_) => AdminRefusal::BadToken,
            None => AdminRefusal::MissingToken,
        }
    };
    shared.metrics.admin_refused(refusal);
    warn!(
        %remote,
        method = %req.method(),
        path = req.uri().path(),
        cause = refusal.as_str(),
        "admin request refused"
    );
    Some(match refusal {
        AdminRefusal::NoTokenConfigured => text(
            StatusCode::FORBIDDEN,
            "no admin token is configured (server.http.admin_token or JANUS_ADMIN_TOKEN): \
             changing endpoints are off",
        ),
        _ => {
            let mut reply = text(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            if let Ok(v) = "Bearer".parse() {
                reply
                    .headers_mut()
                    .insert(hyper::header::WWW_AUTHENTICATE, v);
            }
            reply
        }
    })
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>, remote: SocketAddr) -> Reply {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut text = shared.metrics.render();
            janus_core::filter::render_metrics(&shared.core().filters.stats(), &mut text);
            return respond(StatusCode::OK, "text/plain; version=0.0.4", text);
        }
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            return if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else {
                text(StatusCode::OK, "ready")
            };
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/admin/") else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let changes = method == Method::POST;
    match (&method, segments.as_slice()) {
        (&Method::GET, ["sessions", _])
        | (&Method::POST, ["sessions", _, "kick"])
        | (&Method::POST, ["drain"])
        | (&Method::GET, ["config"])
        | (&Method::GET, ["backends"])
        | (&Method::POST, ["reload"]) => {}
        (
            _,
            ["sessions", _]
            | ["sessions", _, "kick"]
            | ["drain"]
            | ["config"]
            | ["backends"]
            | ["reload"],
        ) => return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    }
    if let Some(refused) = refusal(&shared, &req, remote, changes) {
        return refused;
    }
    match segments.as_slice() {
        ["sessions", uid] => api::session(&shared, uid, &query).await,
        ["sessions", uid, "kick"] => api::kick(&shared, uid, &query, remote),
        ["drain"] => api::drain(&shared, remote),
        ["config"] => api::config(&shared),
        ["backends"] => api::backends(&shared),
        ["reload"] => api::reload(&shared, remote).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Serves admin HTTP on `listener` until `shutdown` turns true. A request whose head takes
/// longer than `timeout` to arrive (`server.http.timeout`; zero: no limit) is dropped, so idle or
/// trickling admin connections cannot pile up.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "admin accept failed"); continue; }
            },
            () = super::until_true(&mut shutdown) => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(shared, req, remote).await) }
            });
            let mut http = http1::Builder::new();
            if !timeout.is_zero() {
                http.timer(TokioTimer::new()).header_read_timeout(timeout);
            }
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cres", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
        assert!(!same_token(b"", b"s3cret"));
    }
}
