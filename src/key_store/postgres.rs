//! Runtime keys and the audit trail in the replicas' shared PostgreSQL. The version comes from
//! a sequence, so two replicas writing at once never share one (a replica that read the first
//! would miss the second).

use postgres::{Client, NoTls};

use super::{AuditEntry, KeyBackend, StoredKey};

const SCHEMA: &str = "
CREATE SEQUENCE IF NOT EXISTS client_keys_version;
CREATE TABLE IF NOT EXISTS client_keys (
  name TEXT PRIMARY KEY,
  record TEXT NOT NULL,
  version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_audit (
  id BIGSERIAL PRIMARY KEY,
  time_ms BIGINT NOT NULL,
  entry TEXT NOT NULL
);
";

pub(super) fn open(url: &str) -> Result<Box<dyn KeyBackend>, String> {
    let mut client = Client::connect(url, NoTls).map_err(|e| e.to_string())?;
    client.batch_execute(SCHEMA).map_err(|e| e.to_string())?;
    Ok(Box::new(Postgres {
        client,
        url: url.to_string(),
    }))
}

struct Postgres {
    client: Client,
    url: String,
}

impl Postgres {
    /// The connection, made again when the server went away.
    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_closed() {
            self.client = Client::connect(&self.url, NoTls).map_err(|e| e.to_string())?;
        }
        Ok(&mut self.client)
    }
}

impl KeyBackend for Postgres {
    fn version(&mut self) -> Result<i64, String> {
        let row = self
            .client()?
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM client_keys",
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    fn keys(&mut self) -> Result<Vec<StoredKey>, String> {
        let rows = self
            .client()?
            .query("SELECT record FROM client_keys ORDER BY name", &[])
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect())
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), String> {
        let record = serde_json::to_string(key).map_err(|e| e.to_string())?;
        self.client()?
            .execute(
                "INSERT INTO client_keys (name, record, version)
                   VALUES ($1, $2, nextval('client_keys_version'))
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record,
                   version = excluded.version",
                &[&key.name, &record],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn audit(&mut self, entry: &AuditEntry) -> Result<(), String> {
        let text = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        self.client()?
            .execute(
                "INSERT INTO admin_audit (time_ms, entry) VALUES ($1, $2)",
                &[&entry.time_ms, &text],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        let rows = self
            .client()?
            .query(
                "SELECT entry FROM admin_audit ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect())
    }
}
