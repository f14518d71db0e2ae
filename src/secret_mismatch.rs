//! A token whose signature does not verify with this server's secret is nearly always
//! a setup mistake (the token was minted with another `JWT_SECRET`), which the client
//! only sees as `AUTH_ERROR: invalid token`. The log says so at INFO, at most once a
//! minute per peer address, and never shows the token.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Peers remembered at once; past that, stale ones are dropped first, and if the
/// table is still full the line is skipped rather than the table grown.
const MAX_PEERS: usize = 10_000;

pub struct SecretMismatchLog {
    once_a_minute: DefaultKeyedRateLimiter<IpAddr>,
}

impl SecretMismatchLog {
    pub fn new() -> Self {
        Self {
            once_a_minute: RateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN)),
        }
    }

    /// Records a refusal from `peer` (unknown peers share one slot).
    pub fn refused(&self, peer: Option<IpAddr>) {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if self.once_a_minute.len() >= MAX_PEERS {
            self.once_a_minute.retain_recent();
            if self.once_a_minute.len() >= MAX_PEERS {
                return;
            }
        }
        if self.once_a_minute.check_key(&peer).is_ok() {
            tracing::info!(
                %peer,
                "token refused: its signature does not verify with this server's secret. \
                 It was signed with another secret: give this server the JWT_SECRET the \
                 tokens are minted with (said once a minute per peer)"
            );
        }
    }
}

impl Default for SecretMismatchLog {
    fn default() -> Self {
        Self::new()
    }
}
