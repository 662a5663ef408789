//! Reading the operator's objects in end-to-end tests: untyped, so a
//! change to a status struct does not break the tests' compilation.

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

pub fn rfc3339_utc(at: i64) -> String {
    Timestamp::from_second(at)
        .expect("an instant in range")
        .to_string()
}
