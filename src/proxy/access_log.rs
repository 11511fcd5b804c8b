//! The access log: one line per request, JSON or text, to stdout or a file. Requests append
//! their line to a shared buffer; a writer thread takes the whole buffer every 50 ms and
//! writes it at once. So no request waits for a disk, and none pays a thread wake-up or a
//! system call for its line. A buffer past its bound (a stuck disk) drops lines and counts
//! them rather than growing.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::config::{LogFormat, LogSettings};
use crate::metrics;

/// What waits for the writer at most.
const MAX_PENDING: usize = 16 * 1024 * 1024;
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// Where access-log lines go.
pub(crate) struct AccessLog {
    format: LogFormat,
    pending: Arc<Mutex<Vec<u8>>>,
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
    pub(crate) attempts: Outcomes<'a>,
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
    pub(crate) prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply: Option<String>,
}

/// The attempts as the access log gives them: their outcomes.
#[derive(Clone, Copy)]
pub(crate) struct Outcomes<'a>(pub(crate) &'a [crate::log_store::Attempt]);

impl Serialize for Outcomes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| &*a.outcome))
    }
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
        let pending = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let shared = pending.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&shared, out))?;
        Ok(AccessLog {
            format: settings.format,
            pending,
        })
    }

    pub(crate) fn write(&self, line: &Line) {
        let mut text = Vec::with_capacity(512);
        match self.format {
            LogFormat::Json => {
                let _ = serde_json::to_writer(&mut text, line);
            }
            LogFormat::Text | LogFormat::Off => text.extend_from_slice(text_line(line).as_bytes()),
        }
        text.push(b'\n');
        let mut pending = self.pending.lock().expect("log lock is never poisoned");
        if pending.len() + text.len() > MAX_PENDING {
            drop(pending);
            metrics::REJECTIONS
                .with_label_values(&["access_log_dropped"])
                .inc();
            return;
        }
        pending.extend_from_slice(&text);
    }
}

/// Takes what the requests wrote, every `WRITE_EVERY`, and writes it in one go.
fn write_lines(pending: &Mutex<Vec<u8>>, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        std::thread::sleep(WRITE_EVERY);
        {
            let mut shared = pending.lock().expect("log lock is never poisoned");
            std::mem::swap(&mut *shared, &mut batch);
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
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
        if l.attempts.0.is_empty() {
            dash.to_string()
        } else {
            let outcomes: Vec<&str> = l.attempts.0.iter().map(|a| &*a.outcome).collect();
            outcomes.join(",")
        },
        l.prompt_tokens.map_or(dash.to_string(), |t| t.to_string()),
        l.completion_tokens
            .map_or(dash.to_string(), |t| t.to_string()),
        l.bytes_in,
        l.bytes_out,
    )
}
