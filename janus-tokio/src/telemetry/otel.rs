//! OTLP/gRPC span export (feature `otel`) with a sampler ratio that a reload can change, and the
//! W3C trace-context propagation into tunnel metadata.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    Context, KeyValue,
    propagation::{Injector, TextMapPropagator as _},
    trace::{Link, SamplingResult, SpanKind, TraceId, TracerProvider as _},
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider, ShouldSample},
};
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::registry::LookupSpan;

use super::TraceExport;

/// How long one export call may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parent-based, then a trace-id ratio read at each decision (so a reload applies at once).
#[derive(Debug, Clone)]
struct LiveRatio(Arc<AtomicU64>);

impl ShouldSample for LiveRatio {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let ratio = f64::from_bits(self.0.load(Ordering::Relaxed));
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))).should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        )
    }
}

/// The running export.
pub(super) struct Export {
    provider: SdkTracerProvider,
    ratio: Arc<AtomicU64>,
}

impl Export {
    pub(super) fn set_ratio(&self, ratio: f64) {
        self.ratio
            .store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub(super) async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    pub(super) async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The `tracing` layer that turns spans into OTLP spans, and its export.
pub(super) fn layer<S>(
    config: &TraceExport,
) -> anyhow::Result<(impl tracing_subscriber::Layer<S> + Send + Sync, Export)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let ratio = Arc::new(AtomicU64::new(config.sampler.clamp(0.0, 1.0).to_bits()));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(LiveRatio(Arc::clone(&ratio)))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("janus");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((layer, Export { provider, ratio }))
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

pub(super) fn inject(span: &tracing::Span, metadata: &mut MetadataMap) {
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}
