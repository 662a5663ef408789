//! Polling the control plane until something holds, or for as long as
//! something must keep holding.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`throughout`] look. Short, so that tests
/// observe brief states (a Job running for a few seconds).
const INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Ok`, or panics after `deadline` with
/// what it waited for and the last `Err` it said.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() > deadline {
                    panic!("timed out after {deadline:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Checks `check` on every poll for `span`: for what must *not* happen
/// (a Job launched while paused, a second rerun child), which no event
/// announces. `span` is a few times longer than the operator takes to do
/// it when it may.
pub async fn throughout<F, Fut>(what: &str, span: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    while start.elapsed() < span {
        if let Err(e) = check().await {
            panic!("{what} did not hold: {e}");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
