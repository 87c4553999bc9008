//! Whether ipvsd keeps the kernel up to date: the state behind `/healthz` and `/readyz`.
//!
//! A proxy that is running but no longer applying changes is worse than one that crashed:
//! traffic keeps flowing to endpoints that are gone. So health is judged by how long a seen
//! change has waited to be applied, as kube-proxy does: longer than twice the sync period means
//! something is stuck, and load balancers that check the node's `/healthz` (as cloud load
//! balancers do with kube-proxy's) should stop sending it traffic.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Health and readiness of the sync loop. Shared between the controller (writer) and the HTTP
/// server (reader) as `Arc<Health>`.
#[derive(Debug)]
pub struct Health {
    /// How long a change may wait unapplied before ipvsd counts as unhealthy.
    max_wait: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the oldest change that no sync has applied yet was seen.
    oldest_unapplied: Option<Instant>,
    /// When the newest change was seen, applied or not.
    newest_seen: Option<Instant>,
    /// Whether a sync has completed at least once.
    synced_once: bool,
}

impl Health {
    /// Health for a sync loop that runs at least every `sync_period`: a change may wait up to
    /// twice that long.
    pub fn new(sync_period: Duration) -> Health {
        Health {
            max_wait: sync_period.saturating_mul(2),
            state: Mutex::new(State::default()),
        }
    }

    /// Records that the sources reported a change at `at`. Only the first change not yet
    /// applied starts the clock: later ones wait no longer than it.
    pub fn change_seen(&self, at: Instant) {
        let mut state = self.lock();
        if state.oldest_unapplied.is_none() {
            state.oldest_unapplied = Some(at);
        }
        if state.newest_seen.is_none_or(|newest| newest < at) {
            state.newest_seen = Some(at);
        }
    }

    /// Records that a sync applied everything seen up to `at` (the moment it read its input),
    /// and marks ipvsd ready after the first one.
    ///
    /// A change seen after `at` is still unapplied. Its own time is not kept, so it counts as
    /// waiting since `at`: that errs by at most one sync's duration towards reporting
    /// unhealthy early, never towards hiding a stuck loop.
    pub fn synced(&self, at: Instant) {
        let mut state = self.lock();
        state.synced_once = true;
        state.oldest_unapplied = match state.newest_seen {
            Some(newest) if newest > at => Some(at),
            _ => None,
        };
    }

    /// False when a change has waited more than twice the sync period without being applied.
    pub fn healthy(&self, now: Instant) -> bool {
        match self.lock().oldest_unapplied {
            None => true,
            Some(since) => now.saturating_duration_since(since) <= self.max_wait,
        }
    }

    /// How long the oldest unapplied change has waited at `now`, if any is waiting.
    pub fn waiting(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .oldest_unapplied
            .map(|since| now.saturating_duration_since(since))
    }

    /// True once a sync has programmed the kernel from a complete view of the cluster.
    pub fn ready(&self) -> bool {
        self.lock().synced_once
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data updated in one step each time; a panic elsewhere while
        // holding the lock cannot leave it half-written, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(30);

    #[test]
    fn healthy_without_changes() {
        let health = Health::new(PERIOD);
        let t0 = Instant::now();
        assert!(health.healthy(t0 + PERIOD * 10));
        assert!(!health.ready());
    }

    #[test]
    fn unhealthy_when_a_change_waits_longer_than_twice_the_period() {
        let health = Health::new(PERIOD);
        let t0 = Instant::now();
        health.change_seen(t0);
        assert!(health.healthy(t0 + PERIOD * 2));
        assert!(!health.healthy(t0 + PERIOD * 2 + Duration::from_millis(1)));
        // A later change does not restart the clock.
        health.change_seen(t0 + PERIOD);
        assert!(!health.healthy(t0 + PERIOD * 3));
        assert_eq!(health.waiting(t0 + PERIOD * 3), Some(PERIOD * 3));
    }

    #[test]
    fn sync_clears_applied_changes_and_marks_ready() {
        let health = Health::new(PERIOD);
        let t0 = Instant::now();
        health.change_seen(t0);
        health.synced(t0 + PERIOD);
        assert!(health.ready());
        assert!(health.healthy(t0 + PERIOD * 10));
        assert_eq!(health.waiting(t0 + PERIOD * 10), None);
    }

    #[test]
    fn change_seen_during_a_sync_stays_unapplied() {
        let health = Health::new(PERIOD);
        let t0 = Instant::now();
        health.change_seen(t0);
        health.change_seen(t0 + Duration::from_secs(5));
        // The sync read its input at t0 + 1s: the change at t0 + 5s is not in it.
        health.synced(t0 + Duration::from_secs(1));
        assert_eq!(
            health.waiting(t0 + Duration::from_secs(11)),
            Some(Duration::from_secs(10))
        );
        assert!(!health.healthy(t0 + Duration::from_secs(1) + PERIOD * 2 + Duration::from_secs(1)));
    }
}
