//! The per-user event budget of PROTOCOL.md section 3: `RATE_LIMIT_PER_SECOND` events
//! per second (burst the same), summed over every socket and namespace of a user, and
//! in a cluster over every process.
//!
//! Both implementations are GCRA with the same quota: [`LocalBudget`] keeps the state
//! in this process (governor); [`RedisBudget`] keeps one theoretical arrival time per
//! user in the shared Redis and decides each event with one script call (one round
//! trip), on Redis's clock so that every process agrees. The handlers see one type,
//! [`UserRateLimiter`].

use std::num::NonZeroU32;
use std::time::Duration;

use futures::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use redis::Script;

use crate::cluster::NodeLink;
use crate::ids::UserId;

/// The answer to "may this user spend one event now?".
pub enum Verdict {
    /// Decided at once (in-process state).
    Now(Result<(), Duration>),
    /// Decided by a round trip (shared state); the event waits for it in its socket's
    /// queue, so the socket's events keep their order.
    Pending(BoxFuture<'static, Result<(), Duration>>),
}

/// Where a user's budget is kept.
pub trait EventBudget: Send + Sync + 'static {
    /// Takes one event from the user's budget now, or says how long until one is free
    /// (and takes nothing).
    fn try_acquire(&self, user: UserId) -> Verdict;

    /// Forgets users whose budget is full again, so idle users cost no memory.
    fn forget_idle(&self) {}
}

/// The budget of every user, in this process or cluster-wide.
pub struct UserRateLimiter {
    budget: Box<dyn EventBudget>,
}

impl UserRateLimiter {
    /// In-process budgets (a single process).
    pub fn new(per_second: u32) -> Self {
        Self {
            budget: Box::new(LocalBudget::new(per_second)),
        }
    }

    /// Budgets shared by every process of the cluster.
    pub fn shared(per_second: u32, link: NodeLink) -> Self {
        Self {
            budget: Box::new(RedisBudget::new(per_second, link)),
        }
    }

    /// See [`EventBudget::try_acquire`].
    pub fn try_acquire(&self, user: UserId) -> Verdict {
        self.budget.try_acquire(user)
    }

    /// Waits until the user's budget has room, then takes one event from it. Edits use
    /// this: they are held, never dropped.
    pub async fn acquire(&self, user: UserId) {
        loop {
            let verdict = match self.budget.try_acquire(user) {
                Verdict::Now(verdict) => verdict,
                Verdict::Pending(verdict) => verdict.await,
            };
            match verdict {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    pub fn forget_idle(&self) {
        self.budget.forget_idle();
    }
}

fn quota(per_second: u32) -> NonZeroU32 {
    NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN)
}

/// GCRA state in this process.
pub struct LocalBudget {
    limiter: DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
}

impl LocalBudget {
    pub fn new(per_second: u32) -> Self {
        let rate = quota(per_second);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate)),
            clock: DefaultClock::default(),
        }
    }
}

impl EventBudget for LocalBudget {
    fn try_acquire(&self, user: UserId) -> Verdict {
        Verdict::Now(
            self.limiter
                .check_key(&user)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        )
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// GCRA on Redis. KEYS: the user's key. ARGV: emission interval (µs), burst.
/// The key holds the theoretical arrival time (µs, Redis clock) and expires when the
/// budget is full again. Returns 0 when allowed, else the wait in µs.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

/// GCRA state in the cluster's Redis.
pub struct RedisBudget {
    link: NodeLink,
    script: Script,
    interval_us: u64,
    burst: u32,
}

impl RedisBudget {
    pub fn new(per_second: u32, link: NodeLink) -> Self {
        let rate = quota(per_second).get();
        Self {
            link,
            script: Script::new(GCRA),
            interval_us: 1_000_000 / u64::from(rate),
            burst: rate,
        }
    }
}

impl EventBudget for RedisBudget {
    fn try_acquire(&self, user: UserId) -> Verdict {
        let mut conn = self.link.conn();
        let key = self.link.key(&format!("ratelimit:{user}"));
        let script = self.script.clone();
        let (interval, burst) = (self.interval_us, self.burst);
        Verdict::Pending(Box::pin(async move {
            let wait: redis::RedisResult<u64> = script
                .key(key)
                .arg(interval)
                .arg(burst)
                .invoke_async(&mut conn)
                .await;
            match wait {
                Ok(0) => Ok(()),
                Ok(us) => Err(Duration::from_micros(us)),
                Err(e) => {
                    // Redis down: serve rather than refuse everyone (the adapter is
                    // down too, and local work still protects the database).
                    tracing::warn!(%user, error = %e, "rate limit unavailable; allowing");
                    Ok(())
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::node::{test_cleanup, test_links};

    async fn allowed(limiter: &UserRateLimiter, user: UserId, tries: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..tries {
            let verdict = match limiter.try_acquire(user) {
                Verdict::Now(v) => v,
                Verdict::Pending(v) => v.await,
            };
            if let Err(wait) = verdict {
                assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
            } else {
                allowed += 1;
            }
        }
        allowed
    }

    #[tokio::test]
    async fn the_burst_is_the_rate_in_process_and_across_nodes() {
        let user = UserId::new_random();
        assert_eq!(allowed(&UserRateLimiter::new(10), user, 15).await, 10);

        let links = test_links(2).await;
        let a = UserRateLimiter::shared(10, links[0].clone());
        let b = UserRateLimiter::shared(10, links[1].clone());
        // Both nodes draw on one budget.
        let through = allowed(&a, user, 6).await + allowed(&b, user, 9).await;
        assert!((10..=11).contains(&through), "{through} allowed of 15");
        assert_eq!(allowed(&b, UserId::new_random(), 1).await, 1);
        test_cleanup(&links[0]).await;
    }
}
