//! The access log: one line per request, JSON or text, to stdout or a file. Lines go through a
//! bounded channel to a writer thread, so a slow disk never holds a request; when the channel
//! is full a line is dropped and counted rather than waited for.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use serde::Serialize;

use crate::config::{LogFormat, LogSettings};
use crate::metrics;

const QUEUE: usize = 16 * 1024;

/// Where access-log lines go.
pub(crate) struct AccessLog {
    format: LogFormat,
    lines: SyncSender<String>,
}

/// One request, as logged. Never the key itself: its configured name.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    pub(crate) time: String,
    pub(crate) request_id: &'a str,
    pub(crate) key: Option<&'a str>,
    pub(crate) client_ip: Option<String>,
    pub(crate) api: &'static str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) vendor_model: Option<&'a str>,
    /// Each attempt's outcome, in order: `ok`, or the failure's kind.
    pub(crate) attempts: &'a [&'static str],
    pub(crate) status: u16,
    pub(crate) stream: bool,
    pub(crate) ttfb_ms: Option<f64>,
    pub(crate) ttft_ms: Option<f64>,
    pub(crate) duration_ms: f64,
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) cost: Option<f64>,
    pub(crate) bytes_in: usize,
    pub(crate) bytes_out: usize,
    /// hit, miss or bypass, for models with a cache.
    pub(crate) cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply: Option<&'a str>,
}

impl AccessLog {
    /// Starts the writer thread for the configured destination.
    pub(crate) fn open(settings: &LogSettings) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &settings.path {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (lines, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AccessLog {
            format: settings.format,
            lines,
        })
    }

    pub(crate) fn write(&self, line: &Line) {
        let text = match self.format {
            LogFormat::Json => serde_json::to_string(line).unwrap_or_default(),
            LogFormat::Text => text_line(line),
        };
        if let Err(TrySendError::Full(_)) = self.lines.try_send(text) {
            metrics::REJECTIONS
                .with_label_values(&["access_log_dropped"])
                .inc();
        }
    }
}

/// Writes lines as they come, flushing whenever the queue is empty.
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = writeln!(out, "{line}");
        while let Ok(more) = rx.try_recv() {
            let _ = writeln!(out, "{more}");
        }
        let _ = out.flush();
    }
}

fn text_line(l: &Line) -> String {
    let dash = "-";
    format!(
        "{} {} {} {} \"{} {}\" {} {} {}/{} {:.1}ms ttft={} attempts={} tokens={}/{} in={} out={}",
        l.time,
        l.request_id,
        l.client_ip.as_deref().unwrap_or(dash),
        l.key.unwrap_or(dash),
        l.method,
        l.path,
        l.status,
        l.model.unwrap_or(dash),
        l.provider.unwrap_or(dash),
        l.vendor_model.unwrap_or(dash),
        l.duration_ms,
        l.ttft_ms.map_or(dash.to_string(), |t| format!("{t:.1}ms")),
        if l.attempts.is_empty() {
            dash.to_string()
        } else {
            l.attempts.join(",")
        },
        l.prompt_tokens.map_or(dash.to_string(), |t| t.to_string()),
        l.completion_tokens
            .map_or(dash.to_string(), |t| t.to_string()),
        l.bytes_in,
        l.bytes_out,
    )
}
