//! Is this process past capacity? A watcher measures the event loop's lag (a task
//! that sleeps 100 ms and measures by how much it overslept) and reads the depth of
//! the queues work waits in; `/ready` answers `503 {status:'overloaded'}` while any of
//! them is at its threshold, so a balancer sends new clients elsewhere
//! (docs/behaviour.md, "Past capacity").
//!
//! Hysteresis: the process becomes overloaded as soon as one signal reaches its
//! threshold (the lag only when [`LAG_SAMPLES`] samples in a row do, so one scheduling
//! hiccup of a busy machine does not count), and is ready again only once every signal
//! has stayed below half of its threshold for [`RECOVERY`], so `/ready` does not flap.
//!
//! Metrics: `diary_event_loop_lag_seconds`, `diary_socket_queued_events`,
//! `diary_commit_backlog_updates`, `diary_overloaded` (gauges).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::OverloadThresholds;

/// How often the watcher samples (and the sleep whose overshoot is the lag).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long every signal must stay below half its threshold before `/ready` recovers.
pub const RECOVERY: Duration = Duration::from_secs(2);
/// Consecutive samples the lag must reach its threshold in.
pub const LAG_SAMPLES: usize = 3;

/// The process's load signals and verdict; cheap to clone.
#[derive(Clone)]
pub struct Capacity(Arc<Inner>);

struct Inner {
    thresholds: OverloadThresholds,
    /// Events waiting in sockets' ordered queues (held edits included).
    queued_events: AtomicUsize,
    lag_us: AtomicU64,
    overloaded: AtomicBool,
}

/// One sample of the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub lag: Duration,
    pub queued_events: usize,
    pub commit_backlog: usize,
}

/// A socket event's place in its queue: counted while it exists, so an event that is
/// dropped unrun (its socket closed) stops counting too.
pub struct QueueSlot(Capacity);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0 .0.queued_events.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Capacity {
    pub fn new(thresholds: OverloadThresholds) -> Self {
        Capacity(Arc::new(Inner {
            thresholds,
            queued_events: AtomicUsize::new(0),
            lag_us: AtomicU64::new(0),
            overloaded: AtomicBool::new(false),
        }))
    }

    /// Counts one more queued socket event until the slot is dropped.
    pub fn queue_slot(&self) -> QueueSlot {
        self.0.queued_events.fetch_add(1, Ordering::Relaxed);
        QueueSlot(self.clone())
    }

    /// True while past capacity (see the module's hysteresis).
    pub fn overloaded(&self) -> bool {
        self.0.overloaded.load(Ordering::Relaxed)
    }

    /// The last measured event-loop lag.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.0.lag_us.load(Ordering::Relaxed))
    }

    /// Samples every [`SAMPLE_EVERY`] until `shutdown`; `commit_backlog` reads the group
    /// committer's queue.
    pub async fn watch(self, commit_backlog: impl Fn() -> usize, shutdown: CancellationToken) {
        let mut verdict = Verdict::new(self.0.thresholds);
        loop {
            let asleep = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
            let now = Instant::now();
            let signals = Signals {
                lag: (now - asleep).saturating_sub(SAMPLE_EVERY),
                queued_events: self.0.queued_events.load(Ordering::Relaxed),
                commit_backlog: commit_backlog(),
            };
            self.record(signals, verdict.update(signals, now));
        }
    }

    fn record(&self, s: Signals, overloaded: bool) {
        let lag_us = u64::try_from(s.lag.as_micros()).unwrap_or(u64::MAX);
        self.0.lag_us.store(lag_us, Ordering::Relaxed);
        metrics::gauge!("diary_event_loop_lag_seconds").set(s.lag.as_secs_f64());
        metrics::gauge!("diary_socket_queued_events").set(s.queued_events as f64);
        metrics::gauge!("diary_commit_backlog_updates").set(s.commit_backlog as f64);
        metrics::gauge!("diary_overloaded").set(if overloaded { 1.0 } else { 0.0 });
        let was = self.0.overloaded.swap(overloaded, Ordering::Relaxed);
        if was != overloaded {
            tracing::warn!(
                overloaded,
                lag_ms = s.lag.as_millis() as u64,
                queued_events = s.queued_events,
                commit_backlog = s.commit_backlog,
                "capacity state changed"
            );
        }
    }
}

/// The overload decision over successive samples.
struct Verdict {
    thresholds: OverloadThresholds,
    overloaded: bool,
    /// Since when every signal has been below half its threshold.
    calm_since: Option<Instant>,
    /// The last samples' lag, newest at `next_lag - 1`.
    lags: [Duration; LAG_SAMPLES],
    next_lag: usize,
}

impl Verdict {
    fn new(thresholds: OverloadThresholds) -> Self {
        Verdict {
            thresholds,
            overloaded: false,
            calm_since: None,
            lags: [Duration::ZERO; LAG_SAMPLES],
            next_lag: 0,
        }
    }

    fn update(&mut self, s: Signals, now: Instant) -> bool {
        self.lags[self.next_lag] = s.lag;
        self.next_lag = (self.next_lag + 1) % LAG_SAMPLES;
        let sustained_lag = self.lags.iter().copied().min().unwrap_or_default();
        let t = &self.thresholds;
        let over = sustained_lag >= t.lag
            || s.queued_events >= t.queued_events
            || s.commit_backlog >= t.commit_backlog;
        let calm = s.lag < t.lag / 2
            && s.queued_events < t.queued_events.div_ceil(2)
            && s.commit_backlog < t.commit_backlog.div_ceil(2);
        self.calm_since = match (calm, self.calm_since) {
            (false, _) => None,
            (true, since) => since.or(Some(now)),
        };
        if over {
            self.overloaded = true;
        } else if self.overloaded
            && self
                .calm_since
                .is_some_and(|since| now.duration_since(since) >= RECOVERY)
        {
            self.overloaded = false;
        }
        self.overloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> OverloadThresholds {
        OverloadThresholds {
            lag: Duration::from_millis(200),
            queued_events: 100,
            commit_backlog: 1000,
        }
    }

    fn signals(lag_ms: u64, queued_events: usize, commit_backlog: usize) -> Signals {
        Signals {
            lag: Duration::from_millis(lag_ms),
            queued_events,
            commit_backlog,
        }
    }

    #[test]
    fn overloaded_at_any_threshold_and_ready_only_after_a_calm_spell() {
        let mut v = Verdict::new(thresholds());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!v.update(signals(10, 10, 10), at(0)));
        // One long lag is a hiccup; three in a row are not.
        assert!(!v.update(signals(900, 10, 10), at(50)));
        assert!(!v.update(signals(900, 10, 10), at(60)));
        assert!(v.update(signals(900, 10, 10), at(70)));
        assert!(v.update(signals(10, 10, 1000), at(100)));
        // Below the threshold but not below half of it: still overloaded.
        assert!(v.update(signals(150, 10, 10), at(200)));
        // Calm from 300 ms on; ready again only 2 s later.
        assert!(v.update(signals(10, 10, 10), at(300)));
        assert!(v.update(signals(10, 49, 499), at(2200)));
        assert!(!v.update(signals(10, 10, 10), at(2300)));
        assert!(v.update(signals(10, 100, 10), at(2400)));
    }
}
