//! Reading the operator's objects in end-to-end tests: untyped, so a
//! change to a status struct does not break the tests' compilation.

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::DynamicObject;
use serde_json::Value;

pub fn status(obj: &DynamicObject) -> &Value {
    &obj.data["status"]
}

/// A status counter; absent means 0.
pub fn counter(obj: &DynamicObject, field: &str) -> i64 {
    status(obj)[field].as_i64().unwrap_or(0)
}

pub fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    status(obj)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn condition_is(obj: &DynamicObject, type_: &str, value: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == value)
}

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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn rfc3339_utc(at: i64) -> String {
    Timestamp::from_second(at)
        .expect("an instant in range")
        .to_string()
}
