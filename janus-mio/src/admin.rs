//! Admin HTTP on its own thread: `/metrics` (Prometheus text), `/healthz` (the process is up),
//! `/readyz` (503 while draining). A tiny blocking responder: one request per connection, a
//! read timeout so a slow or idle client cannot hold it.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::metrics::EdgeMetrics;

/// How long a request head may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest request head read, bytes.
const MAX_HEAD: usize = 8192;

/// Serves until `stop` turns true (checked between connections; the listener is non-blocking
/// with a short poll so shutdown is prompt).
pub fn serve(
    listener: TcpListener,
    metrics: Arc<EdgeMetrics>,
    draining: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => respond(stream, &metrics, &draining),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn respond(mut stream: TcpStream, metrics: &EdgeMetrics, draining: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
        "/readyz" if draining.load(Ordering::Relaxed) => (
            "503 Service Unavailable",
            "text/plain",
            "draining\n".to_owned(),
        ),
        "/readyz" => ("200 OK", "text/plain", "ready\n".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
