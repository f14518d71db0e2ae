//! The per-user event budget of PROTOCOL.md section 3: `RATE_LIMIT_PER_SECOND` events
//! per second (burst the same), summed over every socket and namespace of a user.
//!
//! Kept behind this small type so a cluster-wide budget can replace the in-process
//! GCRA state without touching the handlers.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::ids::UserId;

pub struct UserRateLimiter {
    limiter: DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
}

impl UserRateLimiter {
    pub fn new(per_second: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one event from the user's budget now, or says how long until one is free.
    pub fn try_acquire(&self, user: UserId) -> Result<(), Duration> {
        self.limiter
            .check_key(&user)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Waits until the user's budget has room, then takes one event from it. Edits use
    /// this: they are held, never dropped.
    pub async fn acquire(&self, user: UserId) {
        self.limiter.until_key_ready(&user).await;
    }

    /// Forgets users whose budget is full again, so idle users cost no memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
