//! Instants as Unix seconds, read from and written as RFC 3339, and the
//! sessions of an hourly schedule.

use jiff::Timestamp;
use serde_json::Value;

pub const HOUR: i64 = 3_600;
pub const MINUTE: i64 = 60;

/// An RFC 3339 value as Unix seconds.
pub fn instant(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    Some(
        text.parse::<Timestamp>()
            .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
            .as_second(),
    )
}

/// A list of RFC 3339 values as Unix seconds.
pub fn instants(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| instant(v).expect("a time")).collect())
        .unwrap_or_default()
}

pub fn at(text: &str) -> i64 {
    text.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .as_second()
}

pub fn rfc3339_utc(at: i64) -> String {
    Timestamp::from_second(at)
        .expect("an instant in range")
        .to_string()
}

/// The sessions of an hourly schedule in `[from, to)`.
pub fn hours(from: &str, to: &str) -> Vec<i64> {
    (at(from)..at(to)).step_by(HOUR as usize).collect()
}
