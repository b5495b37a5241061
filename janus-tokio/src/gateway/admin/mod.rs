//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz` (taking
//! connections: listeners bound and not shutting down).

use std::{convert::Infallible, sync::Arc, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tracing::debug;

use super::Shared;

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if shared.draining.load(Ordering::Relaxed) => {
            respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
        }
        "/readyz" => respond(StatusCode::OK, "text/plain", "ready\n"),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
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
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "admin accept failed"); continue; }
            },
            () = super::until_true(&mut shutdown) => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = route(&shared, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut http = http1::Builder::new();
            if !timeout.is_zero() {
                http.timer(TokioTimer::new()).header_read_timeout(timeout);
            }
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
