//! OpenTelemetry traces: a span for each request the gateway answers and a child span for each
//! vendor attempt (so failover and retries show), named and attributed by the GenAI semantic
//! conventions, and exported to an OTLP collector off the hot path (`export`).
//!
//! A request's trace context is decided when it starts (`RequestTrace::begin`): the client's
//! W3C `traceparent` is continued (its sampled flag decides), or a trace is started and kept
//! with `sample_ratio`. Each attempt gets its span id before it is sent, so the vendor request
//! carries a `traceparent` naming it. The spans themselves are built once the request is over,
//! from what the access log knows (`spans`): nothing is allocated for a request not sampled.

mod export;
mod reply;
mod spans;

use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};

pub(crate) use export::Exporter;
pub(crate) use reply::ReplyFacts;
pub(crate) use spans::{request_spans, Finished};

use crate::config::{hex_into, Telemetry};

/// The longest `tracestate` passed on (W3C allows 32 members of up to 256 bytes; 512 covers
/// what real systems send and bounds what a client can make the gateway repeat).
const MAX_TRACESTATE: usize = 512;

/// A request's place in a trace: its own span, its parent's, and each attempt's.
pub(crate) struct RequestTrace {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    /// The client's span, when it sent a `traceparent`.
    pub(crate) parent: Option<SpanId>,
    pub(crate) sampled: bool,
    pub(crate) state: Option<String>,
    pub(crate) start: SystemTime,
    /// Each attempt's span id and when it began, in the order of the request's attempts.
    pub(crate) attempts: Vec<(SpanId, SystemTime)>,
    /// The reply's id, finish reasons and (with `capture`) text, read as it goes out.
    pub(crate) reply: ReplyFacts,
}

impl RequestTrace {
    /// The trace context for a request with these `traceparent` / `tracestate` headers.
    pub(crate) fn begin(
        settings: &Telemetry,
        traceparent: Option<&[u8]>,
        tracestate: Option<&[u8]>,
    ) -> RequestTrace {
        let parent = traceparent.and_then(parse_traceparent);
        let (trace_id, parent_span, sampled) = match parent {
            Some((trace, span, sampled)) => (trace, Some(span), sampled),
            None => {
                let trace = TraceId::from_bytes(nonzero_u128().to_be_bytes());
                (trace, None, keep(trace, settings.sample_ratio))
            }
        };
        // A tracestate is only meaningful beside the traceparent it came with.
        let state = tracestate
            .filter(|_| parent_span.is_some())
            .filter(|s| s.len() <= MAX_TRACESTATE)
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_string);
        RequestTrace {
            trace_id,
            span_id: new_span_id(),
            parent: parent_span,
            sampled,
            state,
            start: SystemTime::now(),
            attempts: Vec::new(),
            reply: ReplyFacts::new(sampled && settings.capture_content),
        }
    }

    /// Prompts and replies go into the spans (`capture_content`): the reply's text is kept.
    pub(crate) fn captures_content(&self) -> bool {
        self.reply.text.is_some()
    }

    /// A new attempt's span begins.
    pub(crate) fn begin_attempt(&mut self) {
        self.attempts.push((new_span_id(), SystemTime::now()));
    }

    /// What the current attempt's vendor request carries: a `traceparent` naming the
    /// attempt's span, and the client's `tracestate`.
    pub(crate) fn vendor_headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let span = self.attempts.last().map_or(self.span_id, |a| a.0);
        // Written by hand: `format!` of the two ids cost every traced request ~1,000
        // instructions, twice what this does.
        let mut parent = String::with_capacity(55);
        parent.push_str("00-");
        hex_into(&mut parent, &self.trace_id.to_bytes());
        parent.push('-');
        hex_into(&mut parent, &span.to_bytes());
        parent.push_str(if self.sampled { "-01" } else { "-00" });
        std::iter::once(("traceparent", parent))
            .chain(self.state.iter().map(|s| ("tracestate", s.clone())))
    }
}

/// `00-<trace id>-<parent id>-<flags>`: the trace, the client's span and whether it is sampled.
/// Versions above 00 are read the same way (their first four fields keep this shape); an
/// invalid header starts a new trace, as W3C asks.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut fields = text.splitn(5, '-');
    let version = fields.next()?;
    let (trace, span, flags) = (fields.next()?, fields.next()?, fields.next()?);
    let rest = fields.next();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && rest.is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((trace, span, sampled))
}

/// Whether a trace started here is kept: as the SDK's TraceIdRatioBased sampler decides, from
/// the trace id's low 63 bits, so every replica decides the same for the same trace.
fn keep(trace: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bytes = trace.to_bytes();
    let low = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) >> 1;
    (low as f64) < ratio * (1u64 << 63) as f64
}

fn nonzero_u128() -> u128 {
    fastrand::u128(1..)
}

fn new_span_id() -> SpanId {
    SpanId::from_bytes(fastrand::u64(1..).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64) -> Telemetry {
        Telemetry {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            protocol: crate::config::OtlpProtocol::HttpProtobuf,
            headers: vec![],
            sample_ratio: ratio,
            capture_content: false,
            service_name: "modelmux".into(),
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn a_clients_traceparent_is_continued() {
        let parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut t = RequestTrace::begin(&settings(0.0), Some(parent), Some(b"congo=t61rcWkgMzE"));
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent.unwrap().to_string(), "00f067aa0ba902b7");
        assert!(t.sampled, "the client's sampled flag wins over the ratio");
        assert_eq!(t.state.as_deref(), Some("congo=t61rcWkgMzE"));
        t.begin_attempt();
        let headers: Vec<_> = t.vendor_headers().collect();
        assert_eq!(headers[1], ("tracestate", "congo=t61rcWkgMzE".to_string()));
        let header = &headers[0].1;
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with("-01"));
        assert_eq!(&header[36..52], t.attempts[0].0.to_string());
        assert_ne!(t.attempts[0].0, t.span_id);
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!RequestTrace::begin(&settings(1.0), Some(unsampled), None).sampled);
    }

    #[test]
    fn a_bad_traceparent_starts_a_new_trace() {
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"garbage",
        ] {
            let t = RequestTrace::begin(&settings(1.0), Some(bad), Some(b"a=b"));
            assert!(t.parent.is_none(), "{}", String::from_utf8_lossy(bad));
            assert!(t.state.is_none());
        }
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(RequestTrace::begin(&settings(1.0), Some(future), None)
            .parent
            .is_some());
    }

    #[test]
    fn the_ratio_keeps_about_its_share() {
        let kept = (0..10_000)
            .filter(|_| RequestTrace::begin(&settings(0.25), None, None).sampled)
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
        assert!(!RequestTrace::begin(&settings(0.0), None, None).sampled);
    }
}
