//! OpenTelemetry (feature `otel`): the gateway's spans reach a real OTLP/gRPC receiver (a small
//! collector in this test), and the backend gets the tunnel span's W3C `traceparent`, so its
//! spans would join the gateway's trace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Rig, TestClient};
use janus_tokio::telemetry::{Telemetry, TelemetryConfig, TraceExport};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;

/// Every span the collector received.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_the_backend_gets_the_tunnel_as_parent() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);

    let telemetry = Telemetry::init(&TelemetryConfig {
        level: "info".into(),
        json: false,
        export: Some(TraceExport {
            endpoint: format!("http://{addr}"),
            sampler: 1.0,
            service_name: "janus-test".into(),
        }),
    })
    .unwrap();

    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 76_001).await;
    let index = c.send(3, 1, 0, b"traced").await;
    c.reply(index).await;
    drop(c);
    // The connection and tunnel spans end with the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let traceparent = rig
        .demo
        .backend()
        .observed()
        .opened
        .iter()
        .find(|o| o.uid == 76_001)
        .and_then(|o| o.metadata.traceparent.clone())
        .expect("a traceparent in the tunnel metadata");
    // 00-<trace id>-<parent span id>-<flags>
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[3], "01", "sampled");
    let (trace_id, parent_id) = (parts[1].to_owned(), parts[2].to_owned());

    let mut found = None;
    for _ in 0..50 {
        telemetry.flush().await;
        let spans = collector.0.lock().unwrap().clone();
        let tunnel = spans.iter().find(|s| hex(&s.span_id) == parent_id).cloned();
        if let Some(tunnel) = tunnel {
            let connection = spans
                .iter()
                .find(|s| s.span_id == tunnel.parent_span_id)
                .cloned();
            if let Some(connection) = connection {
                found = Some((tunnel, connection, spans));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tunnel, connection, spans) = found.expect("the tunnel and connection spans arrived");
    assert_eq!(tunnel.name, "tunnel");
    assert_eq!(hex(&tunnel.trace_id), trace_id);
    assert_eq!(connection.name, "connection");
    assert_eq!(hex(&connection.trace_id), trace_id);
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .map(|v| format!("{:?}", v.value))
    };
    assert!(
        attribute(&connection, "uid").is_some_and(|v| v.contains("76001")),
        "{connection:?}"
    );
    assert!(attribute(&tunnel, "backend").is_some(), "{tunnel:?}");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "handshake" && s.parent_span_id == connection.span_id),
        "the handshake span is the connection's child"
    );
    telemetry.shutdown().await;
}
