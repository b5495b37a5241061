//! Learning a backend's `SETTINGS_MAX_CONCURRENT_STREAMS` from its own HTTP/2 connection.
//!
//! Neither tonic nor hyper tells a client what the server advertised. The pool needs it (a
//! stream over the limit is queued by the HTTP/2 client without a word, RFC 9113 §5.1.2), so
//! the connector wraps each backend socket in a [`SniffStream`], which follows the frame
//! boundaries of what the server sends (a 9-byte header, then `length` bytes) and reads the
//! `MAX_CONCURRENT_STREAMS` entry (id 3) of every non-ACK `SETTINGS` frame on stream 0 into the
//! pool slot's [`AdvertisedLimit`]. Other frames are skipped without looking at their payload,
//! so the cost is a few comparisons per frame.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::codegen::http::Uri;

/// `SETTINGS` frame type.
const FRAME_SETTINGS: u8 = 0x4;
/// `ACK` flag of a `SETTINGS` frame (an ACK carries no settings).
const FLAG_ACK: u8 = 0x1;
/// `SETTINGS_MAX_CONCURRENT_STREAMS`.
const SETTING_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the backend advertised on the current connection; `0` until its `SETTINGS` arrive (a
/// server that advertises 0 streams is taken as 1, so `0` keeps meaning "not known").
#[derive(Debug, Default)]
pub struct AdvertisedLimit(AtomicU32);

impl AdvertisedLimit {
    /// The advertised limit, if known.
    pub fn get(&self) -> Option<u32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    fn set(&self, n: u32) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn set_for_test(&self, n: u32) {
        self.set(n);
    }

    fn forget(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Follows server-to-client HTTP/2 frames, reporting `MAX_CONCURRENT_STREAMS`.
#[derive(Debug, Default)]
pub struct FrameScanner {
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// Whether the current payload is a `SETTINGS` list.
    settings: bool,
    entry: [u8; 6],
    entry_len: usize,
}

impl FrameScanner {
    /// Consumes `bytes`, calling `limit` for every `MAX_CONCURRENT_STREAMS` value seen.
    pub fn scan(&mut self, mut bytes: &[u8], mut limit: impl FnMut(u32)) {
        while !bytes.is_empty() {
            if self.payload_left == 0 {
                let take = (9 - self.header_len).min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                    dst.copy_from_slice(head);
                }
                self.header_len += take;
                bytes = rest;
                if self.header_len == 9 {
                    self.header_len = 0;
                    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.header;
                    let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                    self.payload_left = len;
                    self.settings = kind == FRAME_SETTINGS && flags & FLAG_ACK == 0 && stream == 0;
                    self.entry_len = 0;
                }
                continue;
            }
            let take = self.payload_left.min(bytes.len());
            let (payload, rest) = bytes.split_at(take);
            bytes = rest;
            self.payload_left -= take;
            if !self.settings {
                continue;
            }
            for &b in payload {
                if let Some(slot) = self.entry.get_mut(self.entry_len) {
                    *slot = b;
                }
                self.entry_len += 1;
                if self.entry_len == 6 {
                    self.entry_len = 0;
                    let [i0, i1, v0, v1, v2, v3] = self.entry;
                    if u16::from_be_bytes([i0, i1]) == SETTING_MAX_CONCURRENT_STREAMS {
                        limit(u32::from_be_bytes([v0, v1, v2, v3]));
                    }
                }
            }
        }
    }
}

/// A backend socket that reports the advertised stream limit as it reads.
#[derive(Debug)]
pub struct SniffStream {
    inner: TcpStream,
    scanner: FrameScanner,
    limit: Arc<AdvertisedLimit>,
}

impl AsyncRead for SniffStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let limit = &this.limit;
            if let Some(new) = buf.filled().get(before..) {
                this.scanner.scan(new, |n| limit.set(n));
            }
        }
        polled
    }
}

impl AsyncWrite for SniffStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connector of one pool slot: dials the backend (TCP_NODELAY) and wraps the socket so the
/// slot learns the limit of each new connection.
#[derive(Debug, Clone)]
pub struct SniffConnector {
    pub limit: Arc<AdvertisedLimit>,
}

impl tonic::codegen::Service<Uri> for SniffConnector {
    type Response = TokioIo<SniffStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = Arc::clone(&self.limit);
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(inner) => {
                        inner.set_nodelay(true)?;
                        // A new connection: what the old one advertised no longer holds.
                        limit.forget();
                        return Ok(TokioIo::new(SniffStream {
                            inner,
                            scanner: FrameScanner::default(),
                            limit,
                        }));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::FrameScanner;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = entries
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        frame(4, 0, 0, &payload)
    }

    #[test]
    fn finds_the_limit_across_frames_and_any_split() {
        let mut wire = frame(0, 1, 1, &[0xaa; 300]); // DATA that looks like nothing
        wire.extend(settings(&[(1, 4096), (3, 100), (4, 65535)]));
        wire.extend(frame(4, 1, 0, &[])); // a SETTINGS ACK
        wire.extend(frame(1, 4, 3, &[4, 0, 0, 0, 0, 3, 0, 0, 0, 7])); // HEADERS with a lookalike
        wire.extend(settings(&[(3, 250)]));
        for chunk in [1, 2, 5, 9, 13, 64, wire.len()] {
            let mut scanner = FrameScanner::default();
            let mut seen = Vec::new();
            for piece in wire.chunks(chunk) {
                scanner.scan(piece, |n| seen.push(n));
            }
            assert_eq!(seen, [100, 250], "chunks of {chunk}");
        }
    }

    #[test]
    fn ignores_settings_on_a_stream_and_acks() {
        let mut scanner = FrameScanner::default();
        let mut seen = Vec::new();
        let mut wire = frame(4, 0, 5, &[0, 3, 0, 0, 0, 9]);
        wire.extend(frame(4, 1, 0, &[0, 3, 0, 0, 0, 9]));
        scanner.scan(&wire, |n| seen.push(n));
        assert!(seen.is_empty());
    }
}
