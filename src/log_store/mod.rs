//! The request log store: one row per request (who called what, how it went, what it cost),
//! queried by the admin API.
//!
//! Rows leave the request path through a bounded queue and never wait on the store: a full
//! queue drops the row and counts it (`modelmux_log_rows_dropped_total`). A writer thread
//! takes them in batches and inserts each batch in one transaction, with the batch's totals
//! added to the rollups (per UTC day, key, model and provider) that usage is read from and
//! that are kept longer than rows. It also deletes what is past its retention, a small batch
//! at a time between writes, so the store stays within bounds and no write waits long.
//!
//! Everything a row holds is a column of its own (no JSON copy to encode on every insert);
//! a columnar sink (ClickHouse) would be one more `LogWriter`.
//!
//! `sqlite.rs` is the embedded store (a file, WAL, one writer and readers beside it);
//! `postgres.rs` the shared one every replica writes (a partition per day).

use std::borrow::Cow;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics;

mod msgpack;
mod postgres;
mod sqlite;

/// Rows a batch holds at most, and how long the writer waits to fill one.
const BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// How long the writer sleeps between looks at the queue while a batch fills.
const COLLECT_STEP: Duration = Duration::from_millis(20);
/// How often rows past their retention are looked for (then deleted one short statement at a
/// time, between two batches of writes, while there is more).
const PURGE_EVERY: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

/// One attempt at a target: which, how it ended, how long it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    /// `ok`, or the failure's kind.
    pub outcome: Cow<'static, str>,
    /// The vendor's HTTP status, when it answered with an error.
    pub status: Option<u16>,
    pub duration_ms: f64,
}

/// One request, as logged. The embedded store keeps it positionally (MessagePack arrays):
/// fields are only ever added, at the end, with `#[serde(default)]`, and none is skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogRow {
    pub request_id: String,
    /// Unix milliseconds when the request ended.
    pub time_ms: i64,
    pub key: Option<String>,
    pub client_ip: Option<String>,
    /// The client API's and the HTTP method's names: the gateway's own text, borrowed (read
    /// back from a store, owned).
    pub api: Cow<'static, str>,
    pub method: Cow<'static, str>,
    pub path: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub vendor_model: Option<String>,
    /// Each attempt, in order.
    pub attempts: Vec<Attempt>,
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
    pub cache_write_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// None for a model without a price: unpriced, never $0.
    pub cost: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Only where `logs.bodies` asks for them: redacted as the vendor saw them, capped.
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// Unix milliseconds' UTC day as `YYYY-MM-DD`.
pub(crate) fn day_text(ms: i64) -> String {
    let (y, m, d) = crate::clock::civil(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Upper bounds (ms) of the rollups' latency buckets; one more bucket holds the rest. A day's
/// p99 is read off them, as Prometheus reads a histogram's.
pub(crate) const LATENCY_BOUNDS_MS: [f64; 10] = [
    100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 120000.0,
];
pub(crate) const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// What a rollup adds up for one day, key, model and provider.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost: f64,
    pub unpriced: u64,
    pub duration_ms: f64,
    pub latency: [u64; LATENCY_BUCKETS],
}

impl Totals {
    /// The counts in `TOTAL_COLUMNS`' order (requests … reasoning tokens; then come cost,
    /// unpriced, duration and the latency buckets), as the stores bind them.
    pub(crate) fn counts(&self) -> [u64; 7] {
        [
            self.requests,
            self.errors,
            self.prompt_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
        ]
    }
}

/// A rollup's identity: UTC day, key, model, provider (empty for none).
pub(crate) type RollupKey = (String, String, String, String);

/// A batch's totals per rollup, in order: replicas add to shared rollups in the same order,
/// so their transactions never wait on each other in a cycle. A batch has a handful of
/// rollups, so they are looked for in a list (the day's text made once per day, not per row).
pub(crate) fn rollups(rows: &[LogRow]) -> Vec<(RollupKey, Totals)> {
    let mut out: Vec<(RollupKey, Totals)> = Vec::new();
    let mut day: Option<(i64, String)> = None;
    fn name(s: &Option<String>) -> &str {
        s.as_deref().unwrap_or("")
    }
    for r in rows {
        let d = r.time_ms.div_euclid(DAY_MS);
        if day.as_ref().is_none_or(|(n, _)| *n != d) {
            day = Some((d, day_text(r.time_ms)));
        }
        let today = day.as_ref().map_or("", |(_, t)| t.as_str());
        let (key, model, provider) = (name(&r.key), name(&r.model), name(&r.provider));
        let at = match out
            .iter()
            .position(|((dd, k, m, p), _)| dd == today && k == key && m == model && p == provider)
        {
            Some(i) => i,
            None => {
                let id = (today.into(), key.into(), model.into(), provider.into());
                out.push((id, Totals::default()));
                out.len() - 1
            }
        };
        let t = &mut out[at].1;
        t.requests += 1;
        t.errors += u64::from(r.status >= 400);
        t.prompt_tokens += r.prompt_tokens.unwrap_or(0);
        t.cached_tokens += r.cached_tokens.unwrap_or(0);
        t.cache_write_tokens += r.cache_write_tokens.unwrap_or(0);
        t.completion_tokens += r.completion_tokens.unwrap_or(0);
        t.reasoning_tokens += r.reasoning_tokens.unwrap_or(0);
        t.cost += r.cost.unwrap_or(0.0);
        t.unpriced += u64::from(r.cost.is_none() && r.status < 400);
        t.duration_ms += r.duration_ms;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| r.duration_ms <= *b)
            .unwrap_or(LATENCY_BUCKETS - 1);
        t.latency[bucket] += 1;
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The rollup table's columns that are added up, in `Totals`' order (the latency buckets are
/// `lat_0`…).
pub(crate) const TOTAL_COLUMNS: [&str; 10] = [
    "requests",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost",
    "unpriced",
    "duration_ms",
];

/// The rollup-add statement both stores run (`?`/`$n` placeholders made by `placeholder`).
pub(crate) fn rollup_upsert(placeholder: impl Fn(usize) -> String) -> String {
    let keys = ["day", "key", "model", "provider"];
    let totals: Vec<String> = TOTAL_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain((0..LATENCY_BUCKETS).map(|i| format!("lat_{i}")))
        .collect();
    let all: Vec<&str> = keys
        .iter()
        .copied()
        .chain(totals.iter().map(String::as_str))
        .collect();
    let values: Vec<String> = (1..=all.len()).map(&placeholder).collect();
    let adds: Vec<String> = totals
        .iter()
        .map(|c| format!("{c} = rollups.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO rollups ({}) VALUES ({}) ON CONFLICT (day, key, model, provider) DO UPDATE SET {}",
        all.join(", "),
        values.join(", "),
        adds.join(", ")
    )
}

/// The rollup table, in either store's SQL (`int`, `real`: its integer and float types).
pub(crate) fn rollup_schema(int: &str, real: &str) -> String {
    let mut columns: Vec<String> = TOTAL_COLUMNS
        .iter()
        .map(|c| {
            let t = if matches!(*c, "cost" | "duration_ms") {
                real
            } else {
                int
            };
            format!("{c} {t} NOT NULL DEFAULT 0")
        })
        .collect();
    columns.extend((0..LATENCY_BUCKETS).map(|i| format!("lat_{i} {int} NOT NULL DEFAULT 0")));
    format!(
        "CREATE TABLE IF NOT EXISTS rollups (
           day TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
           {},
           PRIMARY KEY (day, key, model, provider));",
        columns.join(",\n           ")
    )
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

/// Totals by a grouping (`day`, `key`, `model`, `provider`), each group split again by
/// `stack` when given (a chart's stacked series), over a range of UTC days.
#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    pub group: Option<String>,
    pub stack: Option<String>,
    /// Unix milliseconds: the days they fall on, inclusive, and the day before `until`'s.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl UsageQuery {
    fn grouping(name: Option<&str>) -> Result<&'static str, String> {
        Ok(match name {
            None | Some("day") => "day",
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

    /// The rollup columns the totals are grouped by, and split by (when asked).
    pub(crate) fn columns(&self) -> Result<(&'static str, Option<&'static str>), String> {
        let stack = match self.stack.as_deref() {
            None | Some("") => None,
            Some(s) => Some(Self::grouping(Some(s))?),
        };
        Ok((Self::grouping(self.group.as_deref())?, stack))
    }

    /// The first and last UTC day (`YYYY-MM-DD`) asked for.
    pub(crate) fn days(&self) -> (Option<String>, Option<String>) {
        (
            self.since.map(day_text),
            self.until.map(|u| day_text(u - 1)),
        )
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct UsageRow {
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// The priced requests' cost, and how many requests had no price.
    pub cost: f64,
    pub unpriced: u64,
    pub mean_ms: f64,
    /// The latency bucket bound 99% of the requests finished within (the last bound when
    /// more than 1% took longer still).
    pub p99_ms: f64,
}

impl UsageRow {
    /// A group's row from its summed rollup columns (`TOTAL_COLUMNS`, then the buckets).
    pub(crate) fn new(group: String, stack: Option<String>, sums: &[f64]) -> UsageRow {
        let n = |i: usize| sums.get(i).copied().unwrap_or(0.0).max(0.0) as u64;
        let requests = n(0);
        let latency: Vec<u64> = (0..LATENCY_BUCKETS)
            .map(|i| n(TOTAL_COLUMNS.len() + i))
            .collect();
        let want = (requests as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let mut p99_ms = LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1];
        for (bound, count) in LATENCY_BOUNDS_MS.iter().zip(&latency) {
            seen += count;
            if seen >= want {
                p99_ms = *bound;
                break;
            }
        }
        let blank = |s: String| (!s.is_empty()).then_some(s);
        UsageRow {
            group: blank(group),
            stack: stack.and_then(blank),
            requests,
            errors: n(1),
            prompt_tokens: n(2),
            cached_tokens: n(3),
            cache_write_tokens: n(4),
            completion_tokens: n(5),
            reasoning_tokens: n(6),
            cost: sums.get(7).copied().unwrap_or(0.0),
            unpriced: n(8),
            mean_ms: if requests > 0 {
                sums.get(9).copied().unwrap_or(0.0) / requests as f64
            } else {
                0.0
            },
            p99_ms: if requests > 0 { p99_ms } else { 0.0 },
        }
    }
}

/// The usage question in SQL over the rollups: `GROUP BY` the grouping (and stack), the
/// range's days as parameters 1 and 2 (`?1`/`$1` made by `placeholder`; an absent bound is
/// NULL and ignored), every total summed as a float.
pub(crate) fn usage_sql(
    q: &UsageQuery,
    placeholder: impl Fn(usize) -> String,
    real: &str,
) -> Result<String, String> {
    let (group, stack) = q.columns()?;
    let sums: Vec<String> = TOTAL_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain((0..LATENCY_BUCKETS).map(|i| format!("lat_{i}")))
        .map(|c| format!("CAST(SUM({c}) AS {real})"))
        .collect();
    let (from, to) = (placeholder(1), placeholder(2));
    Ok(format!(
        "SELECT {group}, {}, {} FROM rollups
         WHERE ({from} IS NULL OR day >= {from}) AND ({to} IS NULL OR day <= {to})
         GROUP BY 1, 2 ORDER BY 1, 2",
        stack.unwrap_or("''"),
        sums.join(", ")
    ))
}

/// Where the writer puts rows.
pub(crate) trait LogWriter: Send {
    /// The rows, and their totals added to the rollups, in one transaction.
    fn insert(&mut self, rows: &[LogRow]) -> Result<(), String>;
    /// Deletes some of the rows older than `before_ms` (a short statement); whether older rows
    /// remain.
    fn purge(&mut self, before_ms: i64) -> Result<bool, String>;
    /// Deletes the rollups of days before `before_day` (`YYYY-MM-DD`).
    fn purge_rollups(&mut self, before_day: &str) -> Result<(), String>;
}

/// What the admin API asks of the store.
pub(crate) trait LogReader: Send {
    /// Matching rows, newest first, each with its cursor.
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String>;
    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String>;
}

/// The rows' way to the writer: bounded, holding memory only for the rows that wait, and
/// costing a request no allocation: rows are pushed onto a vector under a lock the writer
/// takes once per look, swapping the vector out. (std's `sync_channel` touches every slot of
/// its bound at once, 6 MB of idle RSS for the default 10,000 rows; its unbounded `channel`
/// allocates and zeroes a block per 31 rows, ~520 instructions a row, callgrind.)
struct RowQueue {
    shared: Arc<Shared>,
    bound: usize,
}

struct Shared {
    rows: Mutex<Waiting>,
    /// Signalled when a row arrives for a writer asleep on an empty queue, or the queue closes.
    arrived: Condvar,
}

#[derive(Default)]
struct Waiting {
    rows: Vec<LogRow>,
    /// The writer waits on `arrived`: the next row wakes it (one wake-up a batch, not a row).
    writer_asleep: bool,
    /// The store is dropped (no more rows), or the writer is gone (none taken).
    closed: bool,
}

/// What the writer's wait for rows ended with.
#[derive(Debug, PartialEq)]
enum Waited {
    Rows,
    TimedOut,
    /// Closed and empty: the writer is done.
    Closed,
}

impl RowQueue {
    fn new(bound: usize) -> (RowQueue, RowsIn) {
        let shared = Arc::new(Shared {
            rows: Mutex::new(Waiting::default()),
            arrived: Condvar::new(),
        });
        let queue = RowQueue {
            shared: shared.clone(),
            bound,
        };
        (queue, RowsIn { shared })
    }

    /// False when the queue is full or the writer is gone.
    fn try_send(&self, row: LogRow) -> bool {
        let Ok(mut waiting) = self.shared.rows.lock() else {
            return false;
        };
        if waiting.closed || waiting.rows.len() >= self.bound {
            return false;
        }
        waiting.rows.push(row);
        if std::mem::take(&mut waiting.writer_asleep) {
            drop(waiting);
            self.shared.arrived.notify_one();
        }
        true
    }
}

impl Drop for RowQueue {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    fn close(&self) {
        let mut waiting = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        waiting.closed = true;
        drop(waiting);
        self.arrived.notify_one();
    }
}

/// The writer's end of the [`RowQueue`]; dropped (the writer gone), it closes the queue.
struct RowsIn {
    shared: Arc<Shared>,
}

impl RowsIn {
    /// Until a row waits, the queue closes, or `wait` passes.
    fn wait(&self, wait: Duration) -> Waited {
        let Ok(mut waiting) = self.shared.rows.lock() else {
            return Waited::Closed;
        };
        let deadline = Instant::now() + wait;
        loop {
            if !waiting.rows.is_empty() {
                return Waited::Rows;
            }
            if waiting.closed {
                return Waited::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::TimedOut;
            }
            waiting.writer_asleep = true;
            waiting = match self.shared.arrived.wait_timeout(waiting, left) {
                Ok((w, _)) => w,
                Err(_) => return Waited::Closed,
            };
            waiting.writer_asleep = false;
        }
    }

    /// What is waiting, up to `BATCH` rows in `batch`, without waiting.
    fn take_waiting(&self, batch: &mut Vec<LogRow>) {
        let Ok(mut waiting) = self.shared.rows.lock() else {
            return;
        };
        let room = BATCH.saturating_sub(batch.len());
        if batch.is_empty() && waiting.rows.len() <= room {
            // The two vectors trade places: nothing is copied, and each keeps its capacity.
            std::mem::swap(batch, &mut waiting.rows);
        } else {
            let n = room.min(waiting.rows.len());
            batch.extend(waiting.rows.drain(..n));
        }
    }
}

impl Drop for RowsIn {
    fn drop(&mut self) {
        self.shared.close();
    }
}

pub(crate) struct LogStore {
    queue: RowQueue,
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
                let path = settings.sqlite_path();
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
        let (queue, rows) = RowQueue::new(settings.queue);
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
        if !self.queue.try_send(row) {
            metrics::LOG_ROWS_DROPPED.inc();
        }
    }

    pub(crate) async fn logs(&self, q: LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        self.ask(|answer| Question::Logs(q, answer)).await
    }

    pub(crate) async fn usage(&self, q: UsageQuery) -> Result<Vec<UsageRow>, String> {
        self.ask(|answer| Question::Usage(q, answer)).await
    }
}

/// How long rows and rollups are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub raw: Duration,
    pub rollups: Duration,
}

/// The writer thread: batches of rows in, one transaction each; between batches, what is past
/// its retention out, one small statement at a time, until nothing is left to delete (then
/// again after `PURGE_EVERY`). A failing store loses the batch (counted) and is warned about
/// once until it works again.
fn write_rows(mut writer: Box<dyn LogWriter>, rows: RowsIn, retention: Retention) {
    let mut failing = false;
    // The first look for old rows is at once: a store that was down for days is cut back.
    let mut next_purge = Instant::now();
    let mut purging = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let wait = if purging {
            Duration::ZERO
        } else {
            next_purge.saturating_duration_since(Instant::now())
        };
        if rows.wait(wait) == Waited::Closed {
            return;
        }
        rows.take_waiting(&mut batch);
        if !batch.is_empty() {
            // The batch fills while the writer sleeps: a writer waiting on the queue is woken
            // by every row sent, a wake-up per request (the writer thread's CPU for 100,000
            // requests at ~25,000 a second: 0.62-0.65 s waiting, 0.13-0.21 s sleeping).
            let deadline = Instant::now() + BATCH_WAIT;
            loop {
                rows.take_waiting(&mut batch);
                let left = deadline.saturating_duration_since(Instant::now());
                if batch.len() >= BATCH || left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(COLLECT_STEP));
            }
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
            if batch.capacity() > 2 * BATCH {
                // A burst's worth of room is given back.
                batch.shrink_to(BATCH);
            }
        }
        if purging || Instant::now() >= next_purge {
            let now = crate::clock::unix_millis();
            if !purging {
                let _ = writer.purge_rollups(&day_text(now - retention.rollups.as_millis() as i64));
            }
            let before = now - retention.raw.as_millis() as i64;
            // One small statement, then writes again: no long lock on the store.
            purging = writer.purge(before).unwrap_or(false);
            if !purging {
                next_purge = Instant::now() + PURGE_EVERY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_queue_holds_its_bound_and_frees_the_slots_of_rows_taken() {
        let (queue, rows) = RowQueue::new(2);
        let row = || LogRow::default();
        assert_eq!(rows.wait(Duration::ZERO), Waited::TimedOut);
        assert!(queue.try_send(row()) && queue.try_send(row()));
        assert!(!queue.try_send(row()), "full at its bound");
        assert_eq!(rows.wait(Duration::from_secs(5)), Waited::Rows);
        let mut batch = Vec::new();
        rows.take_waiting(&mut batch);
        assert_eq!(batch.len(), 2);
        assert!(queue.try_send(row()) && queue.try_send(row()), "free again");
        assert!(!queue.try_send(row()));
    }

    #[test]
    fn a_batch_takes_at_most_its_size_and_the_rest_waits() {
        let (queue, rows) = RowQueue::new(BATCH + 10);
        for _ in 0..BATCH + 10 {
            assert!(queue.try_send(LogRow::default()));
        }
        let mut batch = vec![LogRow::default()];
        rows.take_waiting(&mut batch);
        assert_eq!(batch.len(), BATCH);
        batch.clear();
        rows.take_waiting(&mut batch);
        assert_eq!(batch.len(), 11);
    }

    #[test]
    fn a_sleeping_writer_wakes_for_a_row_and_ends_when_the_store_is_dropped() {
        let (queue, rows) = RowQueue::new(10);
        let writer = std::thread::spawn(move || {
            let mut taken = 0;
            while rows.wait(Duration::from_secs(30)) == Waited::Rows {
                let mut batch = Vec::new();
                rows.take_waiting(&mut batch);
                taken += batch.len();
            }
            taken
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(queue.try_send(LogRow::default()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(queue.try_send(LogRow::default()));
        drop(queue);
        assert_eq!(
            writer.join().unwrap(),
            2,
            "rows sent before the drop are all taken"
        );
    }

    #[test]
    fn rows_are_refused_once_the_writer_is_gone() {
        let (queue, rows) = RowQueue::new(10);
        drop(rows);
        assert!(!queue.try_send(LogRow::default()));
    }
}
