//! Runtime keys and the audit trail in the log store's SQLite file (tables of their own).

use std::path::Path;

use rusqlite::{params, Connection};

use super::{AuditEntry, KeyBackend, StoredKey};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS client_keys (
  name TEXT PRIMARY KEY,
  record TEXT NOT NULL,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_audit (
  id INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  entry TEXT NOT NULL
);
";

pub(super) fn open(path: &Path) -> Result<Box<dyn KeyBackend>, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let conn = Connection::open(path).map_err(e)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(e)?;
    conn.execute_batch(SCHEMA).map_err(e)?;
    Ok(Box::new(Sqlite(conn)))
}

struct Sqlite(Connection);

impl KeyBackend for Sqlite {
    fn version(&mut self) -> Result<i64, String> {
        self.0
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM client_keys",
                [],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())
    }

    fn keys(&mut self) -> Result<Vec<StoredKey>, String> {
        let mut stmt = self
            .0
            .prepare("SELECT record FROM client_keys ORDER BY name")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?;
        Ok(rows
            .filter_map(|r| serde_json::from_str(&r.ok()?).ok())
            .collect())
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), String> {
        let record = serde_json::to_string(key).map_err(|e| e.to_string())?;
        // One statement: the version is read and raised under the write lock.
        self.0
            .execute(
                "INSERT INTO client_keys (name, record, version)
                   VALUES (?1, ?2, (SELECT COALESCE(MAX(version), 0) + 1 FROM client_keys))
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record,
                   version = excluded.version",
                params![key.name, record],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn audit(&mut self, entry: &AuditEntry) -> Result<(), String> {
        let text = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        self.0
            .execute(
                "INSERT INTO admin_audit (time_ms, entry) VALUES (?1, ?2)",
                params![entry.time_ms, text],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        let mut stmt = self
            .0
            .prepare("SELECT entry FROM admin_audit ORDER BY id DESC LIMIT ?1")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([limit as i64], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?;
        Ok(rows
            .filter_map(|r| serde_json::from_str(&r.ok()?).ok())
            .collect())
    }
}
