//! The shared log store: PostgreSQL, written by every replica. Rows go into one partition per
//! day (`requests_YYYYMMDD`, made as the first row of a day arrives), so retention drops whole
//! partitions instead of deleting rows, and the Logs page's filters have their indexes on each.

use std::borrow::Cow;
use std::collections::HashSet;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use super::{
    rollup_schema, rollup_upsert, rollups, usage_sql, LogQuery, LogReader, LogRow, LogWriter,
    UsageQuery, UsageRow, DAY_MS, DEFAULT_PAGE, LATENCY_BUCKETS, MAX_PAGE, TOTAL_COLUMNS,
};

/// The raw rows (`requests_v2`: the first layout's `requests`, with its JSON column, is left
/// as it was), partitioned by day.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests_v2 (
  id BIGSERIAL NOT NULL,
  time_ms BIGINT NOT NULL, request_id TEXT NOT NULL, key TEXT, client_ip TEXT,
  api TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
  model TEXT, provider TEXT, vendor_model TEXT, attempts TEXT NOT NULL,
  status INTEGER NOT NULL, error TEXT, stream BOOLEAN NOT NULL, cache TEXT,
  ttfb_ms DOUBLE PRECISION, ttft_ms DOUBLE PRECISION, duration_ms DOUBLE PRECISION NOT NULL,
  prompt_tokens BIGINT, cached_tokens BIGINT, cache_write_tokens BIGINT,
  completion_tokens BIGINT, reasoning_tokens BIGINT, cost DOUBLE PRECISION,
  bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, bodies TEXT
) PARTITION BY RANGE (time_ms);
CREATE INDEX IF NOT EXISTS requests_v2_id ON requests_v2 (id);
CREATE INDEX IF NOT EXISTS requests_v2_time ON requests_v2 (time_ms);
CREATE INDEX IF NOT EXISTS requests_v2_key_time ON requests_v2 (key, time_ms);
CREATE INDEX IF NOT EXISTS requests_v2_model_time ON requests_v2 (model, time_ms);
CREATE INDEX IF NOT EXISTS requests_v2_request_id ON requests_v2 (request_id);
";

/// The raw table's columns after its id, in the order the stores bind and read them.
const ROW_COLUMNS: [&str; 27] = [
    "time_ms",
    "request_id",
    "key",
    "client_ip",
    "api",
    "method",
    "path",
    "model",
    "provider",
    "vendor_model",
    "attempts",
    "status",
    "error",
    "stream",
    "cache",
    "ttfb_ms",
    "ttft_ms",
    "duration_ms",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost",
    "bytes_in",
    "bytes_out",
    "bodies",
];

/// `ROW_COLUMNS`' types, for the binary COPY.
const COLUMN_TYPES: [Type; 27] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::FLOAT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
];

/// `bodies` holds the request's and the response's bodies, when kept, as one JSON pair.
fn bodies_column(r: &LogRow) -> Option<String> {
    (r.request_body.is_some() || r.response_body.is_some())
        .then(|| serde_json::json!([r.request_body, r.response_body]).to_string())
}

fn split_bodies(column: Option<String>) -> (Option<String>, Option<String>) {
    column
        .and_then(|c| serde_json::from_str::<(Option<String>, Option<String>)>(&c).ok())
        .unwrap_or_default()
}

fn connect(url: &str) -> Result<Client, String> {
    Client::connect(url, NoTls).map_err(|e| e.to_string())
}

pub(super) fn open(url: &str) -> Result<super::sqlite::Connections, String> {
    let mut writer = connect(url)?;
    writer.batch_execute(SCHEMA).map_err(|e| e.to_string())?;
    writer
        .batch_execute(&rollup_schema("BIGINT", "DOUBLE PRECISION"))
        .map_err(|e| e.to_string())?;
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
    (
        format!("requests_v2_{date}"),
        day * DAY_MS,
        (day + 1) * DAY_MS,
    )
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
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF requests_v2 FOR VALUES FROM ({from}) TO ({to})"
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
        // One COPY for the batch: a statement per row would be a round trip per row.
        let sink = tx
            .copy_in(&format!(
                "COPY requests_v2 ({}) FROM STDIN BINARY",
                ROW_COLUMNS.join(", ")
            ))
            .map_err(|e| e.to_string())?;
        let mut copy = BinaryCopyInWriter::new(sink, &COLUMN_TYPES);
        let count = |t: Option<u64>| t.map(|t| t.min(i64::MAX as u64) as i64);
        for r in rows {
            let attempts = serde_json::to_string(&r.attempts).unwrap_or_default();
            let values: [&(dyn ToSql + Sync); 27] = [
                &r.time_ms,
                &r.request_id,
                &r.key,
                &r.client_ip,
                &&*r.api,
                &&*r.method,
                &r.path,
                &r.model,
                &r.provider,
                &r.vendor_model,
                &attempts,
                &i32::from(r.status),
                &r.error,
                &r.stream,
                &r.cache,
                &r.ttfb_ms,
                &r.ttft_ms,
                &r.duration_ms,
                &count(r.prompt_tokens),
                &count(r.cached_tokens),
                &count(r.cache_write_tokens),
                &count(r.completion_tokens),
                &count(r.reasoning_tokens),
                &r.cost,
                &count(Some(r.bytes_in)),
                &count(Some(r.bytes_out)),
                &bodies_column(r),
            ];
            copy.write(&values).map_err(|e| e.to_string())?;
        }
        copy.finish().map_err(|e| e.to_string())?;
        let upsert = tx
            .prepare(&rollup_upsert(|i| format!("${i}")))
            .map_err(|e| e.to_string())?;
        for ((day, key, model, provider), t) in rollups(rows) {
            let n = |v: u64| v.min(i64::MAX as u64) as i64;
            let ints = t.counts().map(n);
            let latency = t.latency.map(n);
            let unpriced = n(t.unpriced);
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&day, &key, &model, &provider];
            values.extend(ints.iter().map(|v| v as &(dyn ToSql + Sync)));
            values.extend([&t.cost as &(dyn ToSql + Sync), &unpriced, &t.duration_ms]);
            values.extend(latency.iter().map(|v| v as &(dyn ToSql + Sync)));
            tx.execute(&upsert, &values).map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Drops the partitions wholly older than `before_ms`: a few statements, whatever their
    /// size, so nothing remains.
    fn purge(&mut self, before_ms: i64) -> Result<bool, String> {
        self.reconnect_if_closed()?;
        let old = self
            .client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests_v2' AND c.relkind = 'r'",
                &[],
            )
            .map_err(|e| e.to_string())?;
        for row in old {
            let name: String = row.get(0);
            let Some(day) = name
                .strip_prefix("requests_v2_")
                .and_then(crate::clock::day_of_date)
            else {
                continue;
            };
            if (day + 1) * DAY_MS <= before_ms {
                self.client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .map_err(|e| e.to_string())?;
                self.days.remove(&day);
            }
        }
        Ok(false)
    }

    fn purge_rollups(&mut self, before_day: &str) -> Result<(), String> {
        self.reconnect_if_closed()?;
        self.client
            .execute("DELETE FROM rollups WHERE day < $1", &[&before_day])
            .map(drop)
            .map_err(|e| e.to_string())
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

/// A stored row back (the columns in `ROW_COLUMNS`' order after the id).
fn log_row(r: &postgres::Row) -> LogRow {
    let count = |i: usize| r.get::<_, Option<i64>>(i).map(|n| n.max(0) as u64);
    let (request_body, response_body) = split_bodies(r.get(27));
    LogRow {
        time_ms: r.get(1),
        request_id: r.get(2),
        key: r.get(3),
        client_ip: r.get(4),
        api: Cow::Owned(r.get(5)),
        method: Cow::Owned(r.get(6)),
        path: r.get(7),
        model: r.get(8),
        provider: r.get(9),
        vendor_model: r.get(10),
        attempts: serde_json::from_str(r.get::<_, &str>(11)).unwrap_or_default(),
        status: u16::try_from(r.get::<_, i32>(12)).unwrap_or(0),
        error: r.get(13),
        stream: r.get(14),
        cache: r.get(15),
        ttfb_ms: r.get(16),
        ttft_ms: r.get(17),
        duration_ms: r.get(18),
        prompt_tokens: count(19),
        cached_tokens: count(20),
        cache_write_tokens: count(21),
        completion_tokens: count(22),
        reasoning_tokens: count(23),
        cost: r.get(24),
        bytes_in: count(25).unwrap_or(0),
        bytes_out: count(26).unwrap_or(0),
        request_body,
        response_body,
    }
}

impl LogReader for Reader {
    fn logs(&self, q: &LogQuery) -> Result<Vec<(i64, LogRow)>, String> {
        let (clause, values) = filter(q);
        let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let sql = format!(
            "SELECT id, {} FROM requests_v2 {clause} ORDER BY id DESC LIMIT {limit}",
            ROW_COLUMNS.join(", ")
        );
        let rows = self.query(&sql, &values)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), log_row(r)))
            .collect())
    }

    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, String> {
        let sql = usage_sql(q, |i| format!("${i}::TEXT"), "DOUBLE PRECISION")?;
        let (from, to) = q.days();
        let values: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(from), Box::new(to)];
        let rows = self.query(&sql, &values)?;
        let sums = TOTAL_COLUMNS.len() + LATENCY_BUCKETS;
        Ok(rows
            .iter()
            .map(|r| {
                let values: Vec<f64> = (0..sums)
                    .map(|i| r.get::<_, Option<f64>>(i + 2).unwrap_or(0.0))
                    .collect();
                UsageRow::new(r.get(0), r.get(1), &values)
            })
            .collect())
    }
}
