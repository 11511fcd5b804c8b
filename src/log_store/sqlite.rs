//! The embedded log store: one SQLite file in WAL mode, so the admin API reads while the
//! writer thread writes.
//!
//! Rows are kept in blocks: each batch the writer takes is one table row holding its log rows
//! as a MessagePack array, with the batch's time span and a list of the keys, models,
//! providers and request ids in it. Measured with `cargo bench --bench harness --
//! --instructions` (callgrind, instructions per request, pass-through, log store on vs off):
//! a table row per request with the Logs page's four indexes and a JSON copy of the row cost
//! 34,700 instructions (128,800 vs 94,000), a quarter of the request itself, mostly SQLite's
//! B-tree inserts; blocks cost 6,500 (101,200 vs 94,600): one insert per batch, the rows'
//! encoding, and the rollups. Reads scan blocks newest first, skipping those whose span or list
//! rules them out, and filter the rows in them. Usage is read from the rollups, never the rows.
//!
//! A row's id (the Logs page's cursor) is its block's id plus its place in the block; a
//! block's id is its first row's time in microseconds-ish (`time_ms * 1000`, moved past the
//! last id given), so ids are in time order and blocks go in the order they are purged.

use std::path::Path;

use rusqlite::types::Value as V;
use rusqlite::{params, params_from_iter, Connection};

use super::{
    rollup_schema, rollup_upsert, rollups, usage_sql, LogQuery, LogReader, LogRow, LogWriter,
    UsageQuery, UsageRow, DEFAULT_PAGE, LATENCY_BUCKETS, MAX_PAGE, TOTAL_COLUMNS,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_blocks (
  id INTEGER PRIMARY KEY,
  last_id INTEGER NOT NULL,
  first_ms INTEGER NOT NULL,
  last_ms INTEGER NOT NULL,
  names TEXT NOT NULL,
  rows BLOB NOT NULL
);
";

/// Blocks deleted per purge statement.
const PURGE_BLOCKS: usize = 20;

/// Separates the names in a block's list (never in a key, model or id the gateway accepts).
const SEP: char = '\u{1f}';

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A reader never waits long on the writer's lock, nor the writer on a reader.
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(conn)
}

/// The writer's connection and the readers'.
pub(super) type Connections = (Box<dyn LogWriter>, Box<dyn LogReader>);

pub(super) fn open(path: &Path) -> Result<Connections, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let writer = connect(path).map_err(e)?;
    writer.execute_batch(SCHEMA).map_err(e)?;
    writer
        .execute_batch(&rollup_schema("INTEGER", "REAL"))
        .map_err(e)?;
    let last_id = writer
        .query_row(
            "SELECT COALESCE(MAX(last_id), 0) FROM log_blocks",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    let reader = connect(path).map_err(e)?;
    Ok((
        Box::new(Writer {
            conn: writer,
            last_id,
            upsert: rollup_upsert(|i| format!("?{i}")),
        }),
        Box::new(Reader(reader)),
    ))
}

struct Writer {
    conn: Connection,
    /// The id given last: the next is past it, even when the clock steps back.
    last_id: i64,
    upsert: String,
}

/// A name as it is found in a block's list: kind, `=`, name, between separators.
fn needle(kind: char, name: &str) -> String {
    format!("{SEP}{kind}={name}{SEP}")
}

/// The block's list: each key, model and provider once, and every request id.
fn names(rows: &[LogRow]) -> String {
    // A batch has few keys, models and providers: a list finds them again.
    let mut seen: Vec<(char, &str)> = Vec::new();
    for r in rows {
        for (kind, name) in [('k', &r.key), ('m', &r.model), ('p', &r.provider)] {
            if let Some(n) = name.as_deref() {
                if !seen.contains(&(kind, n)) {
                    seen.push((kind, n));
                }
            }
        }
    }
    let ids = rows.iter().map(|r| ('r', r.request_id.as_str()));
    let mut out = String::with_capacity(16 + rows.len() * (rows[0].request_id.len() + 3));
    out.push(SEP);
    for (kind, name) in seen.into_iter().chain(ids) {
        out.push(kind);
        out.push('=');
        out.push_str(name);
        out.push(SEP);
    }
    out
}

fn int(n: u64) -> V {
    V::Integer(n.min(i64::MAX as u64) as i64)
}

impl LogWriter for Writer {
    fn insert(&mut self, rows: &[LogRow]) -> Result<(), String> {
        let e = |e: rusqlite::Error| e.to_string();
        let (Some(first), Some(last_ms), Some(first_ms)) = (
            rows.first(),
            rows.iter().map(|r| r.time_ms).max(),
            rows.iter().map(|r| r.time_ms).min(),
        ) else {
            return Ok(());
        };
        let id = (first.time_ms * 1000).max(self.last_id + 1);
        let last_id = id + rows.len() as i64 - 1;
        let mut block = Vec::with_capacity(rows.len() * 512);
        super::msgpack::write_rows(rows, &mut block);
        let tx = self.conn.transaction().map_err(e)?;
        tx.prepare_cached(
            "INSERT INTO log_blocks (id, last_id, first_ms, last_ms, names, rows)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.execute(params![id, last_id, first_ms, last_ms, names(rows), block]))
        .map_err(e)?;
        {
            let mut upsert = tx.prepare_cached(&self.upsert).map_err(e)?;
            for ((day, key, model, provider), t) in rollups(rows) {
                let mut values = vec![
                    V::Text(day),
                    V::Text(key),
                    V::Text(model),
                    V::Text(provider),
                ];
                values.extend(t.counts().map(int));
                values.extend([V::Real(t.cost), int(t.unpriced), V::Real(t.duration_ms)]);
                values.extend(t.latency.map(int));
                upsert.execute(params_from_iter(values)).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        self.last_id = last_id;
        Ok(())
    }

    fn purge(&mut self, before_ms: i64) -> Result<bool, String> {
        let e = |e: rusqlite::Error| e.to_string();
        // Blocks are in time order: the oldest are the first ids.
        let n = self
            .conn
            .execute(
                "DELETE FROM log_blocks WHERE id IN
                   (SELECT id FROM log_blocks WHERE last_ms < ?1 ORDER BY id LIMIT ?2)",
                params![before_ms, PURGE_BLOCKS as i64],
            )
            .map_err(e)?;
        // The file keeps the pages the blocks held and new blocks are written into them: at
        // a steady rate, it stops growing once retention starts deleting.
        Ok(n >= PURGE_BLOCKS)
    }

    fn purge_rollups(&mut self, before_day: &str) -> Result<(), String> {
        self.conn
            .execute("DELETE FROM rollups WHERE day < ?1", [before_day])
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Whether a row passes the filter (the blocks it is in having been chosen by `blocks`).
fn wanted(q: &LogQuery, id: i64, r: &LogRow) -> bool {
    let is =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
    let class = q
        .status
        .as_deref()
        .and_then(|s| s.strip_suffix("xx"))
        .and_then(|c| c.parse::<u16>().ok());
    is(&q.key, r.key.as_deref())
        && is(&q.model, r.model.as_deref())
        && is(&q.provider, r.provider.as_deref())
        && is(&q.error, r.error.as_deref())
        && is(&q.request_id, Some(&r.request_id))
        && class.is_none_or(|c| r.status / 100 == c)
        && q.since.is_none_or(|t| r.time_ms >= t)
        && q.until.is_none_or(|t| r.time_ms < t)
        && q.before.is_none_or(|b| id < b)
}

/// The blocks that may hold matching rows, newest first: their span and list decide.
fn blocks(q: &LogQuery) -> (String, Vec<V>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (kind, name) in [
        ('k', &q.key),
        ('m', &q.model),
        ('p', &q.provider),
        ('r', &q.request_id),
    ] {
        if let Some(n) = name {
            clauses.push("instr(names, ?) > 0");
            values.push(V::Text(needle(kind, n)));
        }
    }
    for (clause, value) in [
        ("last_ms >= ?", q.since),
        ("first_ms < ?", q.until),
        ("id < ?", q.before),
    ] {
        if let Some(v) = value {
            clauses.push(clause);
            values.push(V::Integer(v));
        }
    }
    let mut sql = String::from("SELECT id, rows FROM log_blocks");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC");
    (sql, values)
}

struct Reader(Connection);

impl LogReader for Reader {
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let (sql, values) = blocks(q);
        let mut stmt = self.0.prepare(&sql).map_err(|e| e.to_string())?;
        let mut found = stmt
            .query(params_from_iter(values))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(block) = found.next().map_err(|e| e.to_string())? {
            let first: i64 = block.get(0).map_err(|e| e.to_string())?;
            let bytes = block.get_ref(1).map_err(|e| e.to_string())?;
            let rows: Vec<LogRow> = match bytes.as_blob() {
                Ok(b) => rmp_serde::from_slice(b).unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            for (i, row) in rows.into_iter().enumerate().rev() {
                let id = first + i as i64;
                if wanted(q, id, &row) {
                    out.push((id, row));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String> {
        let sql = usage_sql(q, |i| format!("?{i}"), "REAL")?;
        let (from, to) = q.days();
        let mut stmt = self.0.prepare(&sql).map_err(|e| e.to_string())?;
        let sums = TOTAL_COLUMNS.len() + LATENCY_BUCKETS;
        let rows = stmt
            .query_map(params![from, to], |r| {
                let values: Vec<f64> = (0..sums)
                    .map(|i| r.get::<_, Option<f64>>(i + 2).map(|v| v.unwrap_or(0.0)))
                    .collect::<rusqlite::Result<_>>()?;
                Ok(UsageRow::new(r.get(0)?, r.get(1)?, &values))
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64, key: &str, model: &str, status: u16, cost: Option<f64>) -> LogRow {
        LogRow {
            request_id: format!("req_{i}"),
            time_ms: 1_000_000 + i * 1000,
            key: Some(key.into()),
            client_ip: None,
            api: "openai".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: Some(model.into()),
            provider: Some("p".into()),
            vendor_model: None,
            attempts: vec![super::super::Attempt {
                provider: "p".into(),
                model: "v".into(),
                outcome: "ok".into(),
                status: None,
                duration_ms: 4.5,
            }],
            status,
            error: (status >= 500).then(|| "upstream_error".into()),
            stream: false,
            cache: None,
            ttfb_ms: None,
            ttft_ms: None,
            duration_ms: 5.0,
            prompt_tokens: Some(10),
            cached_tokens: Some(2),
            cache_write_tokens: Some(3),
            completion_tokens: Some(5),
            reasoning_tokens: Some(1),
            cost,
            bytes_in: 1,
            bytes_out: 2,
            request_body: (i == 3).then(|| "{\"q\":1}".into()),
            response_body: None,
        }
    }

    #[test]
    fn rows_are_filtered_paged_summed_and_purged() {
        let dir = std::env::temp_dir().join(format!("mm-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("logs.db");
        let _ = std::fs::remove_file(&path);
        let (mut w, r) = open(&path).unwrap();
        let rows: Vec<LogRow> = (0..10)
            .map(|i| {
                let key = if i % 2 == 0 { "a" } else { "b" };
                row(
                    i,
                    key,
                    "m",
                    if i == 9 { 502 } else { 200 },
                    (i < 8).then_some(0.5),
                )
            })
            .collect();
        // Two batches: two blocks, the older purged whole.
        w.insert(&rows[..5]).unwrap();
        w.insert(&rows[5..]).unwrap();
        let q = |f: LogQuery| r.logs(&f).unwrap();
        let a = q(LogQuery {
            key: Some("a".into()),
            ..Default::default()
        });
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].1.request_id, "req_8", "newest first");
        let page = q(LogQuery {
            limit: Some(3),
            ..Default::default()
        });
        let next = q(LogQuery {
            before: Some(page[2].0),
            limit: Some(3),
            ..Default::default()
        });
        assert_eq!(next[0].1.request_id, "req_6");
        assert_eq!(
            q(LogQuery {
                status: Some("5xx".into()),
                ..Default::default()
            })[0]
                .1,
            rows[9]
        );
        let found = q(LogQuery {
            request_id: Some("req_3".into()),
            ..Default::default()
        });
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, rows[3], "a row comes back as it went in");
        let by_key = r
            .usage(&UsageQuery {
                group: Some("key".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_key.len(), 2);
        let total: u64 = by_key.iter().map(|u| u.requests).sum();
        assert_eq!(total, 10);
        let b = &by_key[1];
        assert_eq!(
            (b.errors, b.prompt_tokens, b.cached_tokens, b.unpriced),
            (1, 50, 10, 0)
        );
        assert_eq!(
            by_key[0].unpriced, 1,
            "a success without a price is unpriced, not $0"
        );
        assert!((by_key[0].cost + b.cost - 4.0).abs() < 1e-9);
        assert_eq!(
            (b.cache_write_tokens, b.mean_ms, b.p99_ms),
            (15, 5.0, 100.0)
        );
        let stacked = r
            .usage(&UsageQuery {
                group: Some("day".into()),
                stack: Some("key".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(stacked.len(), 2);
        assert_eq!(stacked[0].group.as_deref(), Some("1970-01-01"));
        assert_eq!(stacked[1].stack.as_deref(), Some("b"));
        assert!(r
            .usage(&UsageQuery {
                group: Some("x; DROP".into()),
                ..Default::default()
            })
            .is_err());
        // Blocks wholly older than the cut go.
        assert!(!w.purge(1_000_000 + 5 * 1000).unwrap());
        assert!(!w.purge(1_000_000 + 5 * 1000).unwrap());
        assert_eq!(q(LogQuery::default()).len(), 5);
        assert_eq!(
            r.usage(&UsageQuery::default()).unwrap()[0].requests,
            10,
            "rollups outlive the rows"
        );
        w.purge_rollups("1970-01-02").unwrap();
        assert!(r.usage(&UsageQuery::default()).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_million_old_rows_are_purged_in_short_steps_while_rows_go_on_arriving() {
        let dir = std::env::temp_dir().join(format!("mm-purge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("logs.db");
        let (mut w, r) = open(&path).unwrap();
        // 2,000 blocks of 500 rows, a month old, written as the writer would (one encoding,
        // copied: encoding a million rows is not what is tested here).
        let old: Vec<LogRow> = (0..500).map(|i| row(i, "a", "m", 200, Some(0.1))).collect();
        let mut blob = Vec::new();
        rmp_serde::encode::write(&mut blob, &old).unwrap();
        let month_ago = 1_700_000_000_000_i64;
        {
            let conn = Connection::open(&path).unwrap();
            let tx = conn.unchecked_transaction().unwrap();
            for b in 0..2000_i64 {
                let id = (month_ago + b) * 1000;
                tx.execute(
                    "INSERT INTO log_blocks VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                    params![id, id + 499, month_ago + b, "\u{1f}", blob],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        // Pages holding data: the file's, less those free for new blocks.
        let pages = |path: &Path| {
            let c = Connection::open(path).unwrap();
            let count = |p: &str| c.query_row(p, [], |r| r.get::<_, i64>(0)).unwrap();
            count("PRAGMA page_count") - count("PRAGMA freelist_count")
        };
        let full = pages(&path);
        let now = 1_702_592_000_000_i64; // a month later
        let mut steps = 0;
        let mut new_rows = 0;
        loop {
            // Requests go on: a batch of new rows between two purge statements.
            let batch: Vec<LogRow> = (0..5)
                .map(|i| {
                    let mut r = row(new_rows + i, "b", "m", 200, None);
                    r.time_ms = now + new_rows + i;
                    r
                })
                .collect();
            w.insert(&batch).unwrap();
            new_rows += 5;
            steps += 1;
            if !w.purge(now - 7 * 86_400_000).unwrap() {
                break;
            }
        }
        // (the last full step cannot know it was the last: one more finds nothing)
        assert_eq!(
            steps,
            2000 / PURGE_BLOCKS + 1,
            "each step deletes a few blocks, no more"
        );
        let left = r
            .logs(&LogQuery {
                limit: Some(MAX_PAGE),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(left.len() as i64, new_rows, "only the new rows are left");
        assert!(left.iter().all(|(_, row)| row.key.as_deref() == Some("b")));
        assert!(
            pages(&path) < full / 10,
            "the old rows' pages are free for new ones: {} of {full} in use",
            pages(&path)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
