//! The request log store: one row per request (who called what, how it went, what it cost),
//! queried by the admin API.
//!
//! Rows leave the request path through a bounded queue and never wait on the store: a full
//! queue drops the row and counts it (`modelmux_log_rows_dropped_total`). A writer thread
//! takes them in batches and inserts each batch in one transaction; it also deletes rows past
//! their retention, a small batch at a time, so the store stays within bounds.
//!
//! `sqlite.rs` is the embedded store (a file, WAL, one writer and readers beside it);
//! `postgres.rs` the shared one every replica writes (a partition per day).

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics;

mod postgres;
mod sqlite;

/// Rows a batch holds at most, and how long the writer waits to fill one.
const BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// How often rows past their retention are looked for, and how many go per statement.
const PURGE_EVERY: Duration = Duration::from_secs(60);
pub(crate) const PURGE_BATCH: usize = 5_000;

/// One request, as logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRow {
    pub request_id: String,
    /// Unix milliseconds when the request ended.
    pub time_ms: i64,
    pub key: Option<String>,
    pub client_ip: Option<String>,
    pub api: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub vendor_model: Option<String>,
    /// Each attempt's outcome, in order.
    pub attempts: Vec<String>,
    pub status: u16,
    /// The upstream error kind, when one ended the request or an attempt.
    pub error: Option<String>,
    pub stream: bool,
    pub cache: Option<String>,
    pub ttfb_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub duration_ms: f64,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// None for a model without a price: unpriced, never $0.
    pub cost: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What `GET /admin/logs` filters by. `before` is the cursor: a row's position in the store.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    pub key: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// `2xx`, `4xx`, `5xx`…
    pub status: Option<String>,
    pub error: Option<String>,
    pub request_id: Option<String>,
    /// Unix milliseconds, inclusive, and exclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

/// Totals by a grouping (`day`, `key`, `model`, `provider`) over a time range.
#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    pub group: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl UsageQuery {
    /// The column (SQL) the totals are grouped by; `day` is the store's own expression for a
    /// row's UTC date.
    pub(crate) fn column(&self, day: &'static str) -> Result<&'static str, String> {
        Ok(match self.group.as_deref() {
            None | Some("day") => day,
            Some("key") => "key",
            Some("model") => "model",
            Some("provider") => "provider",
            Some(other) => {
                return Err(format!(
                    "cannot group by `{other}`: day, key, model or provider"
                ))
            }
        })
    }

    /// The rows it totals, as a log filter.
    pub(crate) fn range(&self) -> LogQuery {
        LogQuery {
            since: self.since,
            until: self.until,
            ..LogQuery::default()
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct UsageRow {
    pub group: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// The priced requests' cost, and how many requests had no price.
    pub cost: f64,
    pub unpriced: u64,
}

/// Where the writer puts rows.
pub(crate) trait LogWriter: Send {
    fn insert(&mut self, rows: &[LogRow]) -> Result<(), String>;
    /// Deletes at most `max` rows older than `before_ms`; how many went.
    fn purge(&mut self, before_ms: i64, max: usize) -> Result<usize, String>;
}

/// What the admin API asks of the store.
pub(crate) trait LogReader: Send {
    /// Matching rows, newest first, each with its cursor.
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String>;
    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String>;
}

pub(crate) struct LogStore {
    queue: SyncSender<LogRow>,
    /// Questions for the reader thread, each with where its answer goes.
    questions: Mutex<SyncSender<Question>>,
}

/// A question for the reader thread. The stores' clients block, so they are asked from a
/// thread of their own, never from the async runtime (PostgreSQL's client runs a runtime of its
/// own inside, which may not start within another).
enum Question {
    Logs(
        LogQuery,
        tokio::sync::oneshot::Sender<Result<Vec<(i64, LogRow)>, String>>,
    ),
    Usage(
        UsageQuery,
        tokio::sync::oneshot::Sender<Result<Vec<UsageRow>, String>>,
    ),
}

/// Questions waiting for the reader at most; more are answered "busy" at once.
const QUESTIONS: usize = 64;

fn answer_questions(reader: Box<dyn LogReader>, questions: Receiver<Question>) {
    for q in questions {
        match q {
            Question::Logs(q, answer) => {
                let _ = answer.send(reader.logs(&q));
            }
            Question::Usage(q, answer) => {
                let _ = answer.send(reader.usage(&q));
            }
        }
    }
}

/// The most rows a page returns, and how many unless asked.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;

impl LogStore {
    /// The store the settings ask for, or None (logged) when it cannot be opened: the gateway
    /// serves on without it.
    pub(crate) fn open(settings: &crate::config::LogStoreSettings) -> Option<LogStore> {
        let opened = match &settings.postgres {
            Some(url) => postgres::open(url.expose()).map_err(|e| (e, "PostgreSQL".to_string())),
            None => {
                let path = match settings.path.as_os_str().is_empty() {
                    true => std::path::Path::new("modelmux.logs.db"),
                    false => settings.path.as_path(),
                };
                sqlite::open(path).map_err(|e| (e, path.display().to_string()))
            }
        };
        let (writer, reader) = match opened {
            Ok(pair) => pair,
            Err((e, at)) => {
                // The URL is never printed: it can hold a password.
                log::warn!(
                    "the log store ({at}) cannot be opened ({e}); requests are not logged to it"
                );
                return None;
            }
        };
        let (queue, rows) = sync_channel(settings.queue);
        let retention = settings.retention;
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_rows(writer, rows, retention))
            .ok()?;
        let (questions, asked) = sync_channel(QUESTIONS);
        std::thread::Builder::new()
            .name("log-reader".into())
            .spawn(move || answer_questions(reader, asked))
            .ok()?;
        Some(LogStore {
            queue,
            questions: Mutex::new(questions),
        })
    }

    /// Asks the reader thread; "busy" when too many questions wait.
    async fn ask<T>(
        &self,
        question: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, String>>) -> Question,
    ) -> Result<T, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let sent = self
            .questions
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .try_send(question(answer));
        if sent.is_err() {
            return Err("the log store is busy; try again".into());
        }
        answered
            .await
            .map_err(|_| "the log store's reader stopped".to_string())?
    }

    /// Hands a row to the writer without waiting; a full queue drops it (counted).
    pub(crate) fn push(&self, row: LogRow) {
        match self.queue.try_send(row) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::LOG_ROWS_DROPPED.inc();
            }
        }
    }

    pub(crate) async fn logs(&self, q: LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        self.ask(|answer| Question::Logs(q, answer)).await
    }

    pub(crate) async fn usage(&self, q: UsageQuery) -> Result<Vec<UsageRow>, String> {
        self.ask(|answer| Question::Usage(q, answer)).await
    }
}

/// The writer thread: batches of rows in, one transaction each; old rows out now and then.
/// A failing store loses the batch (counted) and is warned about once until it works again.
fn write_rows(mut writer: Box<dyn LogWriter>, rows: Receiver<LogRow>, retention: Duration) {
    let mut failing = false;
    let mut last_purge = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = match rows.recv_timeout(PURGE_EVERY) {
            Ok(row) => Some(row),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.extend(first);
        let deadline = Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            match rows.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(row) => batch.push(row),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match writer.insert(&batch) {
                Ok(()) if failing => {
                    failing = false;
                    log::warn!("the log store is writable again");
                }
                Ok(()) => {}
                Err(e) => {
                    metrics::LOG_ROWS_DROPPED.inc_by(batch.len() as u64);
                    if !failing {
                        failing = true;
                        log::warn!("the log store failed a write ({e}); rows are dropped until it works again");
                    }
                }
            }
            batch.clear();
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let before = crate::clock::unix_millis() - retention.as_millis() as i64;
            // Small statements, one after another: no long lock on the store.
            while let Ok(n) = writer.purge(before, PURGE_BATCH) {
                if n < PURGE_BATCH {
                    break;
                }
            }
        }
    }
}
