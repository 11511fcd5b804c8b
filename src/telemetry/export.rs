//! Spans go to the collector from a thread of their own, in batches, through the
//! `opentelemetry-otlp` exporter (HTTP/protobuf or gRPC). A request only hands its spans to a
//! bounded queue (`try_send`): a collector that is down or slow costs requests nothing, and
//! spans that do not fit or fail to export are counted in `modelmux_trace_spans_total`.
//!
//! Why not the SDK's BatchSpanProcessor: its drops are not counted where an operator can see
//! them, and the gRPC exporter needs a Tokio runtime the processor's thread does not have.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;

use crate::config::{OtlpProtocol, Telemetry};
use crate::metrics::TRACE_SPANS;

/// Requests whose spans may wait for the exporter.
const QUEUE: usize = 4096;
/// The most spans one export carries.
const BATCH: usize = 512;
/// How long spans wait for company before they go: short, so a process that stops loses
/// little.
const LINGER: Duration = Duration::from_millis(100);
/// Between two log lines about a failing collector.
const COMPLAIN_EVERY: Duration = Duration::from_secs(60);

/// The queue to the exporter's thread.
pub(crate) struct Exporter {
    queue: mpsc::Sender<Vec<SpanData>>,
}

impl Exporter {
    /// Starts the exporter's thread for `settings`; None (logged) when it cannot start.
    pub(crate) fn start(settings: &Telemetry) -> Option<Exporter> {
        let (queue, spans) = mpsc::channel(QUEUE);
        let settings = settings.clone();
        let started = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => return log::error!("telemetry: no runtime for the exporter: {e}"),
                };
                runtime.block_on(run(settings, spans));
            });
        if let Err(e) = started {
            log::error!("telemetry: cannot start the exporter's thread: {e}");
            return None;
        }
        Some(Exporter { queue })
    }

    /// Hands a request's spans to the exporter, or counts them dropped when its queue is full.
    pub(crate) fn send(&self, spans: Vec<SpanData>) {
        let count = spans.len() as u64;
        if self.queue.try_send(spans).is_err() {
            TRACE_SPANS.with_label_values(&["queue_full"]).inc_by(count);
        }
    }
}

fn build(settings: &Telemetry) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let headers: HashMap<String, String> = settings
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    let built = match settings.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_headers(headers)
            .build(),
        OtlpProtocol::Grpc => {
            let mut map = http::HeaderMap::new();
            for (k, v) in headers {
                // Names and values were checked when the config loaded.
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    map.insert(k, v);
                }
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map),
                )
                .build()
        }
    };
    // The builder's error names the endpoint, never a header value.
    built.map_err(|e| e.to_string())
}

async fn run(settings: Telemetry, mut spans: mpsc::Receiver<Vec<SpanData>>) {
    let mut exporter = match build(&settings) {
        Ok(e) => e,
        Err(e) => return log::error!("telemetry: cannot make the OTLP exporter: {e}"),
    };
    exporter.set_resource(
        &opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .build(),
    );
    log::info!(
        "telemetry: exporting traces to {} ({:?})",
        settings.endpoint,
        settings.protocol
    );
    let mut last_complaint: Option<std::time::Instant> = None;
    while let Some(first) = spans.recv().await {
        let mut batch = first;
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(more)) => batch.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        // The exporter has its own timeout; this one holds even if it did not.
        let exported = tokio::time::timeout(
            settings.timeout + Duration::from_secs(1),
            exporter.export(batch),
        )
        .await;
        match exported {
            Ok(Ok(())) => TRACE_SPANS.with_label_values(&["exported"]).inc_by(count),
            failed => {
                TRACE_SPANS
                    .with_label_values(&["export_failed"])
                    .inc_by(count);
                if last_complaint.is_none_or(|t| t.elapsed() > COMPLAIN_EVERY) {
                    last_complaint = Some(std::time::Instant::now());
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    log::warn!(
                        "telemetry: {count} spans not exported to {}: {why}",
                        settings.endpoint
                    );
                }
            }
        }
    }
}
