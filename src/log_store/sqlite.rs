//! The embedded log store: one SQLite file in WAL mode, so the admin API reads while the
//! writer thread writes. Rows are indexed for the Logs page's filters (time, key, model,
//! request id).

use std::path::Path;

use rusqlite::{params, params_from_iter, Connection};

use super::{LogQuery, LogReader, LogRow, LogWriter, UsageQuery, UsageRow, DEFAULT_PAGE, MAX_PAGE};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  key TEXT, model TEXT, provider TEXT, status INTEGER NOT NULL, error TEXT,
  prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
  reasoning_tokens INTEGER, cost REAL,
  row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time_ms);
CREATE INDEX IF NOT EXISTS requests_key_time ON requests (key, time_ms);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests (model, time_ms);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
";

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
    let writer = connect(path).map_err(|e| e.to_string())?;
    writer.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
    let reader = connect(path).map_err(|e| e.to_string())?;
    Ok((Box::new(Writer(writer)), Box::new(Reader(reader))))
}

struct Writer(Connection);
struct Reader(Connection);

impl LogWriter for Writer {
    fn insert(&mut self, rows: &[LogRow]) -> Result<(), String> {
        let tx = self.0.transaction().map_err(|e| e.to_string())?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO requests (time_ms, request_id, key, model, provider, status, error,
                       prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost, row)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(|e| e.to_string())?;
            for r in rows {
                let json = serde_json::to_string(r).expect("a row serializes");
                insert
                    .execute(params![
                        r.time_ms,
                        r.request_id,
                        r.key,
                        r.model,
                        r.provider,
                        r.status,
                        r.error,
                        r.prompt_tokens,
                        r.cached_tokens,
                        r.completion_tokens,
                        r.reasoning_tokens,
                        r.cost,
                        json
                    ])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn purge(&mut self, before_ms: i64, max: usize) -> Result<usize, String> {
        self.0
            .execute(
                "DELETE FROM requests WHERE id IN
                   (SELECT id FROM requests WHERE time_ms < ?1 ORDER BY id LIMIT ?2)",
                params![before_ms, max as i64],
            )
            .map_err(|e| e.to_string())
    }
}

/// A filter's `WHERE` clause and its values.
fn filter(q: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut eq = |column: &str, value: &Option<String>| {
        if let Some(v) = value {
            clauses.push(format!("{column} = ?"));
            values.push(V::Text(v.clone()));
        }
    };
    eq("key", &q.key);
    eq("model", &q.model);
    eq("provider", &q.provider);
    eq("error", &q.error);
    eq("request_id", &q.request_id);
    if let Some(class) = q.status.as_deref().and_then(|s| s.strip_suffix("xx")) {
        if let Ok(c) = class.parse::<i64>() {
            clauses.push("status >= ? AND status < ?".into());
            values.push(V::Integer(c * 100));
            values.push(V::Integer(c * 100 + 100));
        }
    }
    for (column, op, value) in [
        ("time_ms", ">=", q.since),
        ("time_ms", "<", q.until),
        ("id", "<", q.before),
    ] {
        if let Some(v) = value {
            clauses.push(format!("{column} {op} ?"));
            values.push(V::Integer(v));
        }
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, values)
}

impl LogReader for Reader {
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        let (clause, values) = filter(q);
        let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let sql = format!("SELECT id, row FROM requests {clause} ORDER BY id DESC LIMIT {limit}");
        let mut stmt = self.0.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| e.to_string())?;
            if let Ok(r) = serde_json::from_str(&json) {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String> {
        let group = q.column("strftime('%Y-%m-%d', time_ms / 1000, 'unixepoch')")?;
        let (clause, values) = filter(&q.range());
        let sql = format!(
            "SELECT {group}, COUNT(*), SUM(status >= 400),
               COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(cached_tokens), 0),
               COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(reasoning_tokens), 0),
               COALESCE(SUM(cost), 0), SUM(cost IS NULL AND status < 400)
             FROM requests {clause} GROUP BY 1 ORDER BY 1"
        );
        let mut stmt = self.0.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| {
                Ok(UsageRow {
                    group: r.get(0)?,
                    requests: r.get::<_, i64>(1)? as u64,
                    errors: r.get::<_, i64>(2)? as u64,
                    prompt_tokens: r.get::<_, i64>(3)? as u64,
                    cached_tokens: r.get::<_, i64>(4)? as u64,
                    completion_tokens: r.get::<_, i64>(5)? as u64,
                    reasoning_tokens: r.get::<_, i64>(6)? as u64,
                    cost: r.get(7)?,
                    unpriced: r.get::<_, i64>(8)? as u64,
                })
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
            attempts: vec!["ok".into()],
            status,
            error: (status >= 500).then(|| "upstream_error".into()),
            stream: false,
            cache: None,
            ttfb_ms: None,
            ttft_ms: None,
            duration_ms: 5.0,
            prompt_tokens: Some(10),
            cached_tokens: Some(2),
            completion_tokens: Some(5),
            reasoning_tokens: Some(1),
            cost,
            bytes_in: 1,
            bytes_out: 2,
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
        w.insert(&rows).unwrap();
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
        assert!(r
            .usage(&UsageQuery {
                group: Some("x; DROP".into()),
                ..Default::default()
            })
            .is_err());
        // Rows older than the cut go, a few at a time.
        assert_eq!(w.purge(1_000_000 + 5 * 1000, 3).unwrap(), 3);
        assert_eq!(w.purge(1_000_000 + 5 * 1000, 3).unwrap(), 2);
        assert_eq!(q(LogQuery::default()).len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
