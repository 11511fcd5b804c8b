//! The shared log store: PostgreSQL, written by every replica. Rows go into one partition per
//! day (`requests_YYYYMMDD`, made as the first row of a day arrives), so retention drops whole
//! partitions instead of deleting rows, and the Logs page's filters have their indexes on each.

use std::collections::HashSet;

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{LogQuery, LogReader, LogRow, LogWriter, UsageQuery, UsageRow, DEFAULT_PAGE, MAX_PAGE};

const DAY_MS: i64 = 86_400_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
  id BIGSERIAL NOT NULL,
  time_ms BIGINT NOT NULL,
  request_id TEXT NOT NULL,
  key TEXT, model TEXT, provider TEXT, status INTEGER NOT NULL, error TEXT,
  prompt_tokens BIGINT, cached_tokens BIGINT, completion_tokens BIGINT,
  reasoning_tokens BIGINT, cost DOUBLE PRECISION,
  row_json TEXT NOT NULL
) PARTITION BY RANGE (time_ms);
CREATE INDEX IF NOT EXISTS requests_id ON requests (id);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time_ms);
CREATE INDEX IF NOT EXISTS requests_key_time ON requests (key, time_ms);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests (model, time_ms);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
";

fn connect(url: &str) -> Result<Client, String> {
    Client::connect(url, NoTls).map_err(|e| e.to_string())
}

pub(super) fn open(url: &str) -> Result<super::sqlite::Connections, String> {
    let mut writer = connect(url)?;
    writer.batch_execute(SCHEMA).map_err(|e| e.to_string())?;
    let reader = connect(url)?;
    Ok((
        Box::new(Writer {
            client: writer,
            url: url.to_string(),
            days: HashSet::new(),
        }),
        Box::new(Reader {
            client: std::sync::Mutex::new(reader),
            url: url.to_string(),
        }),
    ))
}

struct Writer {
    client: Client,
    url: String,
    /// Days whose partition exists.
    days: HashSet<i64>,
}

/// A day's partition: its name and its range in Unix milliseconds.
fn partition(day: i64) -> (String, i64, i64) {
    let date = crate::clock::civil_date(day);
    (format!("requests_{date}"), day * DAY_MS, (day + 1) * DAY_MS)
}

impl Writer {
    /// A new connection when the old one broke (the server restarted): the next batch works.
    fn reconnect_if_closed(&mut self) -> Result<(), String> {
        if self.client.is_closed() {
            self.client = connect(&self.url)?;
        }
        Ok(())
    }

    fn ensure_partition(&mut self, day: i64) -> Result<(), String> {
        if self.days.contains(&day) {
            return Ok(());
        }
        let (name, from, to) = partition(day);
        self.client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF requests FOR VALUES FROM ({from}) TO ({to})"
            ))
            .map_err(|e| e.to_string())?;
        self.days.insert(day);
        Ok(())
    }
}

impl LogWriter for Writer {
    fn insert(&mut self, rows: &[LogRow]) -> Result<(), String> {
        self.reconnect_if_closed()?;
        for day in rows
            .iter()
            .map(|r| r.time_ms.div_euclid(DAY_MS))
            .collect::<HashSet<_>>()
        {
            self.ensure_partition(day)?;
        }
        let mut tx = self.client.transaction().map_err(|e| e.to_string())?;
        let insert = tx
            .prepare(
                "INSERT INTO requests (time_ms, request_id, key, model, provider, status, error,
                   prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost, row_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .map_err(|e| e.to_string())?;
        let tokens = |t: Option<u64>| t.map(|t| t.min(i64::MAX as u64) as i64);
        for r in rows {
            let json = serde_json::to_string(r).expect("a row serializes");
            tx.execute(
                &insert,
                &[
                    &r.time_ms,
                    &r.request_id,
                    &r.key,
                    &r.model,
                    &r.provider,
                    &i32::from(r.status),
                    &r.error,
                    &tokens(r.prompt_tokens),
                    &tokens(r.cached_tokens),
                    &tokens(r.completion_tokens),
                    &tokens(r.reasoning_tokens),
                    &r.cost,
                    &json,
                ],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Drops the partitions wholly older than `before_ms` (a day at a time; `max` is for the
    /// embedded store's row batches).
    fn purge(&mut self, before_ms: i64, _max: usize) -> Result<usize, String> {
        self.reconnect_if_closed()?;
        let old = self
            .client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests' AND c.relkind = 'r'",
                &[],
            )
            .map_err(|e| e.to_string())?;
        let mut dropped = 0;
        for row in old {
            let name: String = row.get(0);
            let Some(day) = name
                .strip_prefix("requests_")
                .and_then(crate::clock::day_of_date)
            else {
                continue;
            };
            if (day + 1) * DAY_MS <= before_ms {
                self.client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .map_err(|e| e.to_string())?;
                self.days.remove(&day);
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

struct Reader {
    client: std::sync::Mutex<Client>,
    url: String,
}

/// A filter's `WHERE` clause (with `$n` placeholders from `first`) and its values.
fn filter(q: &LogQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut clauses = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut eq =
        |column: &str, value: &Option<String>, values: &mut Vec<Box<dyn ToSql + Sync + Send>>| {
            if let Some(v) = value {
                values.push(Box::new(v.clone()));
                clauses.push(format!("{column} = ${}", values.len()));
            }
        };
    eq("key", &q.key, &mut values);
    eq("model", &q.model, &mut values);
    eq("provider", &q.provider, &mut values);
    eq("error", &q.error, &mut values);
    eq("request_id", &q.request_id, &mut values);
    if let Some(class) = q.status.as_deref().and_then(|s| s.strip_suffix("xx")) {
        if let Ok(c) = class.parse::<i32>() {
            values.push(Box::new(c * 100));
            values.push(Box::new(c * 100 + 100));
            clauses.push(format!(
                "status >= ${} AND status < ${}",
                values.len() - 1,
                values.len()
            ));
        }
    }
    for (column, op, value) in [
        ("time_ms", ">=", q.since),
        ("time_ms", "<", q.until),
        ("id", "<", q.before),
    ] {
        if let Some(v) = value {
            values.push(Box::new(v));
            clauses.push(format!("{column} {op} ${}", values.len()));
        }
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, values)
}

impl Reader {
    fn query(
        &self,
        sql: &str,
        values: &[Box<dyn ToSql + Sync + Send>],
    ) -> Result<Vec<postgres::Row>, String> {
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        self.client()?
            .query(sql, &params)
            .map_err(|e| e.to_string())
    }

    /// The connection, made again when the server went away.
    fn client(&self) -> Result<std::sync::MutexGuard<'_, Client>, String> {
        let mut client = self.client.lock().map_err(|_| "poisoned".to_string())?;
        if client.is_closed() {
            *client = connect(&self.url)?;
        }
        Ok(client)
    }
}

impl LogReader for Reader {
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        let (clause, values) = filter(q);
        let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let sql =
            format!("SELECT id, row_json FROM requests {clause} ORDER BY id DESC LIMIT {limit}");
        let rows = self.query(&sql, &values)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let json: String = r.get(1);
                Some((r.get::<_, i64>(0), serde_json::from_str(&json).ok()?))
            })
            .collect())
    }

    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String> {
        let group =
            q.column("to_char(to_timestamp(time_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")?;
        let (clause, values) = filter(&q.range());
        let sql = format!(
            "SELECT {group}, COUNT(*), COUNT(*) FILTER (WHERE status >= 400),
               COALESCE(SUM(prompt_tokens), 0)::BIGINT, COALESCE(SUM(cached_tokens), 0)::BIGINT,
               COALESCE(SUM(completion_tokens), 0)::BIGINT, COALESCE(SUM(reasoning_tokens), 0)::BIGINT,
               COALESCE(SUM(cost), 0)::DOUBLE PRECISION, COUNT(*) FILTER (WHERE cost IS NULL AND status < 400)
             FROM requests {clause} GROUP BY 1 ORDER BY 1"
        );
        let rows = self.query(&sql, &values)?;
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                group: r.get(0),
                requests: r.get::<_, i64>(1) as u64,
                errors: r.get::<_, i64>(2) as u64,
                prompt_tokens: r.get::<_, i64>(3) as u64,
                cached_tokens: r.get::<_, i64>(4) as u64,
                completion_tokens: r.get::<_, i64>(5) as u64,
                reasoning_tokens: r.get::<_, i64>(6) as u64,
                cost: r.get(7),
                unpriced: r.get::<_, i64>(8) as u64,
            })
            .collect())
    }
}
