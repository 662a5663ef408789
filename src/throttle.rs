//! A client-side rate limit on the operator's requests to the API server:
//! a token bucket, as client-go's (`--kube-api-qps`, `--kube-api-burst`
//! of the controller-manager). A burst of thousands of sessions then
//! reaches the API server at a steady pace instead of all at once, where
//! API Priority and Fairness would start refusing it. The Lease is renewed
//! through a client of its own, outside the bucket, so a long queue of
//! creates never delays a renewal.
//!
//! The limit sits in `poll_ready`: kube's client drives its service from
//! one buffer worker, which waits there for a token before it sends the
//! next request, so requests leave in the order they were made.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_layer::Layer;
use tower_service::Service;

/// Tokens refill at `qps` per second up to `burst`; each request takes
/// one. Pure: the time is passed in.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `qps` of 0 (or less) means no limit.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.qps <= 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// Tokio's clock (the real one, except in tests that pause it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the operator says it is, in every request (the API server's
/// audit log and metrics tell its requests apart by it).
pub const USER_AGENT: &str = concat!("backfill-operator/", env!("CARGO_PKG_VERSION"));

/// A client of `config` that names itself [`USER_AGENT`], through the
/// rate limit `limit` when given.
pub fn client(
    mut config: kube::Config,
    limit: Option<ThrottleLayer>,
) -> kube::Result<kube::Client> {
    config.headers.push((
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(USER_AGENT),
    ));
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match limit {
        Some(limit) => builder.with_layer(&limit).build(),
        None => builder.build(),
    })
}

/// The rate limit as a tower layer for kube's `ClientBuilder`.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleLayer {
    pub qps: f64,
    pub burst: u32,
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;
    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            bucket: TokenBucket::new(self.qps, self.burst, now()),
            wait: None,
            reserved: false,
        }
    }
}

pub struct Throttle<S> {
    inner: S,
    bucket: TokenBucket,
    /// Until the next token.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A token taken for the next call.
    reserved: bool,
}

impl<S, R> Service<R> for Throttle<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.reserved {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            match self.bucket.take(now()) {
                Ok(()) => self.reserved = true,
                Err(until) => self.wait = Some(Box::pin(tokio::time::sleep(until))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.reserved = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(b.take(t0 + Duration::from_millis(150)).is_err());
        // Idle time refills up to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, t0);
        for _ in 0..1_000 {
            assert_eq!(b.take(t0), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_their_turn() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let inner = tower_service_fn(move |()| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut svc = ThrottleLayer { qps: 5.0, burst: 2 }.layer(inner);
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            svc.call(()).await.unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), 4);
        // Two from the burst, two more at 5 per second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(399), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    /// A service that runs `f` and answers at once.
    fn tower_service_fn<F: FnMut(())>(f: F) -> Fn_<F> {
        Fn_(f)
    }

    struct Fn_<F>(F);

    impl<F: FnMut(())> Service<()> for Fn_<F> {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, r: ()) -> Self::Future {
            (self.0)(r);
            std::future::ready(Ok(()))
        }
    }
}
