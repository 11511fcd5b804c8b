//! Idle vendor connections kept for reuse, per destination.

use crate::config::FastMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::http1::Connection;
use super::transport::Dial;

/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// The most idle connections kept per destination; more are closed when they come back.
const IDLE_PER_DIAL: usize = 256;
/// How often every destination is swept of connections idle for too long, so that one no longer
/// used (an address DNS moved away from, a provider whose CA a reload replaced) lets its
/// connections go.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

type Idle = Vec<(Connection, Instant)>;

pub(super) struct Pool {
    idle: Mutex<(FastMap<Dial, Idle>, Instant)>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle: Mutex::new((FastMap::default(), Instant::now())),
        }
    }
}

impl Pool {
    /// The most recently used idle connection to `dial` that is still open.
    pub(super) fn take(&self, dial: &Dial) -> Option<Connection> {
        loop {
            // Checked for a close (a syscall only when its socket shows readiness) and dropped
            // outside the lock.
            let (mut connection, since) = self.lock().0.get_mut(dial)?.pop()?;
            if since.elapsed() < IDLE_FOR && !connection.is_stale() {
                return Some(connection);
            }
        }
    }

    /// Keeps a connection whose last response was read to the end.
    pub(super) fn put(&self, dial: Dial, mut connection: Connection) {
        connection.shed();
        // Connections let go are closed after the lock is released.
        let mut closing = Vec::new();
        {
            let mut guard = self.lock();
            let (idle, last_sweep) = &mut *guard;
            if last_sweep.elapsed() >= SWEEP_EVERY {
                *last_sweep = Instant::now();
                for list in idle.values_mut() {
                    let fresh = list.partition_point(|(_, since)| since.elapsed() >= IDLE_FOR);
                    closing.extend(list.drain(..fresh));
                }
                idle.retain(|_, list| !list.is_empty());
            }
            let list = idle.entry(dial).or_default();
            list.push((connection, Instant::now()));
            if list.len() > IDLE_PER_DIAL {
                closing.push(list.remove(0));
            }
        }
        drop(closing);
    }

    fn lock(&self) -> MutexGuard<'_, (FastMap<Dial, Idle>, Instant)> {
        self.idle
            .lock()
            .expect("pool lock is never poisoned: no panics while held")
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::Transport;
    use super::*;

    fn connection() -> (Connection, tokio::net::UnixStream) {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        (Connection::new(Transport::Unix(ours)), theirs)
    }

    #[tokio::test]
    async fn gives_back_open_connections_and_drops_closed_ones() {
        let pool = Pool::default();
        let dial = Dial::Unix("/test".into());
        let (open, _peer) = connection();
        pool.put(dial.clone(), open);
        assert!(pool.take(&dial).is_some());
        assert!(pool.take(&dial).is_none());
        let (closed, peer) = connection();
        pool.put(dial.clone(), closed);
        drop(peer);
        // The close reaches the connection through the runtime's event loop, as it would while
        // a connection sits idle.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            pool.take(&dial).is_none(),
            "the peer closed it while it was idle"
        );
        assert!(pool.take(&Dial::Unix("/other".into())).is_none());
    }

    #[tokio::test]
    async fn keeps_at_most_its_cap_per_destination() {
        let pool = Pool::default();
        let dial = Dial::Unix("/test".into());
        let mut peers = Vec::new();
        for _ in 0..IDLE_PER_DIAL + 5 {
            let (c, peer) = connection();
            peers.push(peer);
            pool.put(dial.clone(), c);
        }
        assert_eq!(pool.lock().0[&dial].len(), IDLE_PER_DIAL);
    }
}
