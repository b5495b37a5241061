//! Logs and traces: the `tracing` subscriber every binary installs.
//!
//! ```text
//! tracing spans and events ─► EnvFilter (log.level, or RUST_LOG; reloadable)
//!                              ├─► fmt: human-readable lines, or JSON with the span fields
//!                              └─► OpenTelemetry (feature `otel`): spans over OTLP/gRPC to
//!                                  trace.endpoint, sampled by trace.sampler (reloadable)
//! ```
//!
//! The gateway's spans: `connection` (listener, peer, conn; uid, sid, color once authenticated;
//! close_reason at the end), its child `handshake` (result), and `tunnel` (kind, oid, backend)
//! under the connection. With `otel`, a tunnel's W3C `traceparent` goes to the backend in the
//! stream metadata, so the backend's spans join the gateway's trace.

#[cfg(feature = "otel")]
mod otel;

use std::sync::Arc;

use anyhow::Context as _;
use tonic::metadata::MetadataMap;
use tracing_subscriber::{
    EnvFilter, Layer as _, Registry, layer::SubscriberExt as _, reload,
    util::SubscriberInitExt as _,
};

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// A `tracing` filter (`log.level`); `RUST_LOG`, when set, wins (also over reloads).
    pub level: String,
    /// JSON lines instead of human-readable ones (`log.format: json`, `--log-json`).
    pub json: bool,
    /// Span export; `None` exports nothing.
    pub export: Option<TraceExport>,
}

/// OTLP span export (`trace`).
#[derive(Debug, Clone)]
pub struct TraceExport {
    /// `http://host:port` of an OTLP/gRPC collector.
    pub endpoint: String,
    /// Fraction of new traces recorded, 0..=1.
    pub sampler: f64,
    /// `service.name`.
    pub service_name: String,
}

struct Inner {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over `log.level`, also on reload.
    env_override: bool,
    #[cfg(feature = "otel")]
    export: Option<otel::Export>,
}

/// The installed subscriber's live controls (cheap to clone).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("env_override", &self.inner.env_override)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Installs the global subscriber. With an export configured (and the `otel` feature) it
    /// must run inside the tokio runtime: the OTLP client lives there.
    pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
        let from_env = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.is_empty())
            .and_then(|v| EnvFilter::try_new(v).ok());
        let env_override = from_env.is_some();
        let filter = match from_env {
            Some(f) => f,
            None => EnvFilter::try_new(&config.level)
                .with_context(|| format!("log.level {:?}", config.level))?,
        };
        let (filter, handle) = reload::Layer::new(filter);
        type Base =
            tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;
        let mut layers: Vec<Box<dyn tracing_subscriber::Layer<Base> + Send + Sync>> = Vec::new();
        if config.json {
            layers.push(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .boxed(),
            );
        } else {
            layers.push(tracing_subscriber::fmt::layer().with_target(false).boxed());
        }
        #[cfg(feature = "otel")]
        let export = match &config.export {
            Some(export) => {
                let (layer, export) = otel::layer::<Base>(export)?;
                layers.push(layer.boxed());
                Some(export)
            }
            None => None,
        };
        tracing_subscriber::registry()
            .with(filter)
            .with(layers)
            .try_init()
            .context("installing the tracing subscriber")?;
        #[cfg(not(feature = "otel"))]
        if config.export.is_some() {
            tracing::warn!(
                "trace.endpoint is set, but this janus was built without the `otel` feature: no spans are exported"
            );
        }
        Ok(Telemetry {
            inner: Arc::new(Inner {
                filter: handle,
                env_override,
                #[cfg(feature = "otel")]
                export,
            }),
        })
    }

    /// Applies a new `log.level`. `Ok(false)`: `RUST_LOG` is set and stays in force.
    pub fn set_level(&self, level: &str) -> Result<bool, String> {
        if self.inner.env_override {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.inner
            .filter
            .reload(filter)
            .map(|()| true)
            .map_err(|e| e.to_string())
    }

    /// Applies a new `trace.sampler` (no-op without an export).
    pub fn set_sampler(&self, ratio: f64) {
        #[cfg(feature = "otel")]
        if let Some(export) = &self.inner.export {
            export.set_ratio(ratio);
        }
        #[cfg(not(feature = "otel"))]
        let _ = ratio;
    }

    /// Sends every finished span now (tests, shutdown).
    pub async fn flush(&self) {
        #[cfg(feature = "otel")]
        if let Some(export) = &self.inner.export {
            export.flush().await;
        }
    }

    /// Flushes and stops the export.
    pub async fn shutdown(&self) {
        #[cfg(feature = "otel")]
        if let Some(export) = &self.inner.export {
            export.shutdown().await;
        }
    }
}

/// Adds the W3C trace context of `span` (`traceparent`, `tracestate`) to a backend stream's
/// metadata, so the backend's spans are children of the tunnel's. Nothing without `otel` or
/// when the span is not recorded.
pub fn inject_trace_context(span: &tracing::Span, metadata: &mut MetadataMap) {
    #[cfg(feature = "otel")]
    otel::inject(span, metadata);
    #[cfg(not(feature = "otel"))]
    let _ = (span, metadata);
}
