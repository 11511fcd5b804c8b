//! The process's way out, shared by the listeners, the request path and the signal watch: on
//! `SIGTERM`, or once a graceful upgrade has handed the sockets over, the gateway stops
//! accepting, takes no further request on a kept-alive connection (an idle one answers a
//! request already on its way, within a last short look, and closes; a reply in flight is the
//! connection's last) and waits for the requests it is serving, up to
//! the grace period. Streams still open then are ended with the client API's in-band error
//! event, never cut silently, and the process exits as soon as nothing is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use once_cell::sync::Lazy;
use tokio::sync::{watch, Notify};

/// Where the process is on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    /// No new request; those in flight finish.
    Draining,
    /// The grace period is over: open streams end now, with an error event.
    Ending,
}

struct State {
    phase: watch::Sender<Phase>,
    busy: AtomicUsize,
    idle: Notify,
}

static STATE: Lazy<State> = Lazy::new(|| State {
    phase: watch::channel(Phase::Serving).0,
    busy: AtomicUsize::new(0),
    idle: Notify::new(),
});

pub(crate) fn phase() -> Phase {
    *STATE.phase.borrow()
}

/// Whether the gateway takes new requests.
pub(crate) fn draining() -> bool {
    phase() >= Phase::Draining
}

/// Resolves once the process is at `phase` or past it.
pub(crate) async fn reached(phase: Phase) {
    // An error means the sender is gone, which a static never is.
    let _ = STATE.phase.subscribe().wait_for(|p| *p >= phase).await;
}

/// Wakes the streams' waits for the grace period's end, in shards (as tokio's watch does), so
/// that streams polling their wait at every chunk on many threads do not queue on one lock.
static ENDING_WAKE: [Notify; 8] = [const { Notify::const_new() }; 8];

/// A stream's wait for the grace period's end, to keep (boxed) for the whole stream and poll
/// at every chunk: registered once. A watch wait made and dropped at every chunk cost ~370
/// instructions a chunk more under callgrind; kept unboxed, it grew every request's future.
pub(crate) async fn ending() {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let shard = NEXT.fetch_add(1, Ordering::Relaxed) % ENDING_WAKE.len();
    // Woken by any `notify_waiters` from its creation on: a phase read after it misses nothing.
    let notified = ENDING_WAKE[shard].notified();
    if phase() >= Phase::Ending {
        return;
    }
    notified.await;
}

fn advance(to: Phase) {
    STATE.phase.send_if_modified(|p| {
        let later = *p < to;
        if later {
            *p = to;
        }
        later
    });
    if to == Phase::Ending {
        for wake in &ENDING_WAKE {
            wake.notify_waiters();
        }
    }
}

/// A request being served: counted until dropped.
pub(crate) struct Busy;

pub(crate) fn busy() -> Busy {
    STATE.busy.fetch_add(1, Ordering::AcqRel);
    Busy
}

impl Drop for Busy {
    fn drop(&mut self) {
        if STATE.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            STATE.idle.notify_waiters();
        }
    }
}

/// Requests being served now.
pub(crate) fn in_flight() -> usize {
    STATE.busy.load(Ordering::Acquire)
}

/// Waits until no request is served, for at most `limit`; whether none is left.
async fn idle_within(limit: Duration) -> bool {
    let wait = async {
        loop {
            let notified = STATE.idle.notified();
            if in_flight() == 0 {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}

/// How long ended streams get to write their last event and the process its access lines.
const ENDING: Duration = Duration::from_secs(2);

/// Drains: no new request; those in flight get `grace`, then open streams are ended with an
/// error event. Returns when nothing is left to serve (or the ending has had its time).
pub(crate) async fn drain(grace: Duration) {
    advance(Phase::Draining);
    let left = in_flight();
    if left > 0 {
        log::info!(
            "draining: {left} request(s) in flight, {} s at most",
            grace.as_secs()
        );
    }
    if idle_within(grace).await {
        log::info!("drained: no request in flight");
        return;
    }
    log::warn!(
        "grace period over: ending {} request(s) still in flight with an error event",
        in_flight()
    );
    advance(Phase::Ending);
    if !idle_within(ENDING).await {
        log::warn!("{} request(s) did not end in time", in_flight());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_waits_for_requests_then_ends_what_is_left() {
        let first = busy();
        let waiter = tokio::spawn(async {
            reached(Phase::Ending).await;
        });
        let streams: Vec<_> = (0..10).map(|_| tokio::spawn(ending())).collect();
        let drained = tokio::spawn(drain(Duration::from_millis(100)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(draining() && phase() == Phase::Draining);
        // The grace period passes with the request still open: streams are told to end.
        waiter.await.unwrap();
        for stream in streams {
            stream.await.unwrap();
        }
        // A stream whose wait begins later ends at once.
        tokio::time::timeout(Duration::from_secs(1), ending())
            .await
            .expect("the grace period is over");
        drop(first);
        drained.await.unwrap();
        assert_eq!(in_flight(), 0);
    }
}
