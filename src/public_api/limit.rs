//! A per-client request rate limit: a token bucket per peer address, in
//! memory, with a bounded number of clients (the idlest are forgotten
//! first: a forgotten client starts again with a full bucket).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients remembered at most.
pub const MAX_CLIENTS: usize = 10_000;

/// Requests per second per client, and the burst above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every client.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    max_clients: usize,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self::bounded(rate, MAX_CLIENTS)
    }

    pub fn bounded(rate: Rate, max_clients: usize) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
            max_clients: max_clients.max(1),
        }
    }

    /// Takes a token of `client` at `now`: `Ok`, or the whole seconds
    /// until one is there.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let rate = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&client) && buckets.len() >= self.max_clients {
            // Full buckets cost nothing to forget; else the idlest client.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * rate.per_second < rate.burst
            });
            if buckets.len() >= self.max_clients
                && let Some(idlest) = buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k)
            {
                buckets.remove(&idlest);
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: rate.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Err(wait.ceil().max(1.0) as u64)
        }
    }

    pub fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(ip(1), t), Ok(()));
        }
        assert_eq!(limiter.take(ip(1), t), Err(1));
        // Another client has its own bucket.
        assert_eq!(limiter.take(ip(2), t), Ok(()));
        // Half a second later: one more.
        let later = t + Duration::from_millis(500);
        assert_eq!(limiter.take(ip(1), later), Ok(()));
        assert!(limiter.take(ip(1), later).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::bounded(
            Rate {
                per_second: 0.001,
                burst: 1.0,
            },
            4,
        );
        let t = Instant::now();
        for n in 0..50u8 {
            let _ = limiter.take(ip(n), t + Duration::from_millis(u64::from(n)));
            assert!(limiter.clients() <= 4);
        }
        // The newest client is remembered: its bucket is empty.
        assert!(limiter.take(ip(49), t + Duration::from_millis(60)).is_err());
    }
}
