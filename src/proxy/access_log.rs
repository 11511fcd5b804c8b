//! The access log: one line per request, JSON or text, to stdout or a file. Requests append
//! their line to a shared buffer; a writer thread takes the whole buffer every 50 ms and
//! writes it at once. So no request waits for a disk, and none pays a thread wake-up or a
//! system call for its line. A buffer past its bound (a stuck disk) drops lines and counts
//! them rather than growing.

use std::cell::RefCell;
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
    /// Unix milliseconds when the request ended; written as RFC 3339.
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub(crate) time_ms: i64,
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
fn rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(std::str::from_utf8(&crate::clock::rfc3339_millis(*ms)).unwrap_or_default())
}

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
        thread_local! {
            /// The line is made here, out of the lock, in a buffer each thread keeps.
            static TEXT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            match self.format {
                LogFormat::Json => json_line(line, text),
                LogFormat::Text | LogFormat::Off => {
                    text.extend_from_slice(text_line(line).as_bytes())
                }
            }
            text.push(b'\n');
            self.append(text);
            if text.capacity() > 64 * 1024 {
                // A line with bodies gives its room back.
                *text = Vec::with_capacity(1024);
            }
        });
    }

    fn append(&self, text: &[u8]) {
        let mut pending = self.pending.lock().expect("log lock is never poisoned");
        if pending.len() + text.len() > MAX_PENDING {
            drop(pending);
            metrics::REJECTIONS
                .with_label_values(&["access_log_dropped"])
                .inc();
            return;
        }
        pending.extend_from_slice(text);
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

/// The line as JSON, as `serde_json` would write it (the tests compare), with the field names
/// written as they are rather than escaped a byte at a time: serde's escaping of some thirty
/// names and values cost a pass-through request 5,800 instructions under callgrind, 6% of it.
/// Text the gateway makes (the time, its API name, an address, a cache status) is written
/// without looking for what to escape, and numbers without serde's machinery around them.
fn json_line(l: &Line, out: &mut Vec<u8>) {
    use crate::providers::openai::wire::write_json_str as string_into;
    fn string(out: &mut Vec<u8>, s: &str) {
        string_into(s, out);
    }
    fn opt(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => string(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }
    /// Text that never holds a quote, backslash or control character.
    fn plain(out: &mut Vec<u8>, s: &[u8]) {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
    fn uint(out: &mut Vec<u8>, n: u64) {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    fn opt_uint(out: &mut Vec<u8>, n: Option<u64>) {
        match n {
            Some(n) => uint(out, n),
            None => out.extend_from_slice(b"null"),
        }
    }
    fn float(out: &mut Vec<u8>, x: Option<f64>) {
        match x.filter(|x| x.is_finite()) {
            Some(x) => out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"{\"time\":");
    plain(out, &crate::clock::rfc3339_millis(l.time_ms));
    out.extend_from_slice(b",\"request_id\":");
    string(out, l.request_id);
    out.extend_from_slice(b",\"key\":");
    opt(out, l.key);
    out.extend_from_slice(b",\"client_ip\":");
    match &l.client_ip {
        Some(ip) => plain(out, ip.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"api\":");
    plain(out, l.api.as_bytes());
    out.extend_from_slice(b",\"method\":");
    string(out, l.method);
    out.extend_from_slice(b",\"path\":");
    string(out, l.path);
    out.extend_from_slice(b",\"model\":");
    opt(out, l.model);
    out.extend_from_slice(b",\"provider\":");
    opt(out, l.provider);
    out.extend_from_slice(b",\"vendor_model\":");
    opt(out, l.vendor_model);
    out.extend_from_slice(b",\"attempts\":[");
    for (i, a) in l.attempts.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, &a.outcome);
    }
    out.extend_from_slice(b"],\"status\":");
    uint(out, u64::from(l.status));
    out.extend_from_slice(if l.stream {
        b",\"stream\":true"
    } else {
        b",\"stream\":false"
    });
    out.extend_from_slice(b",\"ttfb_ms\":");
    float(out, l.ttfb_ms);
    out.extend_from_slice(b",\"ttft_ms\":");
    float(out, l.ttft_ms);
    out.extend_from_slice(b",\"duration_ms\":");
    float(out, Some(l.duration_ms));
    out.extend_from_slice(b",\"prompt_tokens\":");
    opt_uint(out, l.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    opt_uint(out, l.completion_tokens);
    out.extend_from_slice(b",\"cost\":");
    float(out, l.cost);
    out.extend_from_slice(b",\"bytes_in\":");
    uint(out, l.bytes_in as u64);
    out.extend_from_slice(b",\"bytes_out\":");
    uint(out, l.bytes_out as u64);
    out.extend_from_slice(b",\"cache\":");
    match l.cache {
        Some(cache) => plain(out, cache.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(prompt) = &l.prompt {
        out.extend_from_slice(b",\"prompt\":");
        string(out, prompt);
    }
    if let Some(reply) = &l.reply {
        out.extend_from_slice(b",\"reply\":");
        string(out, reply);
    }
    out.push(b'}');
}

fn text_line(l: &Line) -> String {
    let dash = "-";
    format!(
        "{} {} {} {} \"{} {}\" {} {} {}/{} {:.1}ms ttft={} attempts={} tokens={}/{} in={} out={}",
        String::from_utf8_lossy(&crate::clock::rfc3339_millis(l.time_ms)),
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

/// An address as text. IPv4 by hand: `Ipv4Addr`'s `Display` cost every logged request some
/// 1,300 instructions (it formats into a buffer to pad).
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::Attempt;

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn the_json_line_is_what_serde_writes() {
        let attempts = [
            Attempt {
                provider: "a".into(),
                model: "m".into(),
                outcome: "upstream_timeout".into(),
                status: None,
                duration_ms: 1.5,
            },
            Attempt {
                provider: "b".into(),
                model: "m".into(),
                outcome: "ok".into(),
                status: Some(200),
                duration_ms: 2.0,
            },
        ];
        let mut line = Line {
            time_ms: 1_764_669_600_123,
            request_id: "req_\"quoted\"\\",
            key: Some("team-a"),
            client_ip: None,
            api: "openai",
            method: "POST",
            path: "/v1/chat/completions",
            model: Some("gpt-4o-mini"),
            provider: None,
            vendor_model: Some("m\u{1}ü"),
            attempts: Outcomes(&attempts),
            status: 200,
            stream: true,
            ttfb_ms: Some(0.1234),
            ttft_ms: None,
            duration_ms: 12.5,
            prompt_tokens: Some(3),
            completion_tokens: None,
            cost: Some(1e-7),
            bytes_in: 10,
            bytes_out: 20,
            cache: Some("miss"),
            prompt: None,
            reply: Some("line\nbreak".into()),
        };
        for _ in 0..2 {
            let mut ours = Vec::new();
            json_line(&line, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&line).unwrap()
            );
            line.prompt = Some("{\"messages\":[]}".into());
            line.attempts = Outcomes(&[]);
            line.duration_ms = f64::INFINITY;
            line.prompt_tokens = Some(u64::MAX);
            line.client_ip = Some("2001:db8::1".into());
            line.cache = None;
        }
    }
}
