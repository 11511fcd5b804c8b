//! Idle vendor connections kept for reuse, per destination.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http1::Connection;
use super::transport::Dial;

/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// The most idle connections kept per destination; more are closed when they come back.
const IDLE_PER_DIAL: usize = 256;

#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<Dial, Vec<(Connection, Instant)>>>,
}

impl Pool {
    /// The most recently used idle connection to `dial` that is still open.
    pub(super) fn take(&self, dial: &Dial) -> Option<Connection> {
        loop {
            // Checked (a syscall) and dropped outside the lock.
            let (mut connection, since) = self.lock().get_mut(dial)?.pop()?;
            if since.elapsed() < IDLE_FOR && !connection.is_stale() {
                return Some(connection);
            }
        }
    }

    /// Keeps a connection whose last response was read to the end.
    pub(super) fn put(&self, dial: Dial, mut connection: Connection) {
        connection.shed();
        let oldest = {
            let mut idle = self.lock();
            let list = idle.entry(dial).or_default();
            list.push((connection, Instant::now()));
            (list.len() > IDLE_PER_DIAL).then(|| list.remove(0))
        };
        drop(oldest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Dial, Vec<(Connection, Instant)>>> {
        self.idle
            .lock()
            .expect("pool lock is never poisoned: no panics while held")
    }
}
