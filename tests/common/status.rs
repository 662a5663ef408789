//! Reading the operator's objects' status (untyped, so a change to a
//! status struct does not break the tests' compilation), and waiting for
//! a Backfill to reach a state.

use std::cell::RefCell;
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use super::DEADLINE;
use super::api::{Env, get};
use super::events::wait_event;
use super::instants::instant;
use super::poll::eventually;

/// How long a small backfill (a few dozen short Jobs) may take to finish.
/// Generous: the tests of a binary run side by side on a small machine.
pub const RUN_DEADLINE: Duration = Duration::from_secs(240);

pub const FINISHED: [&str; 3] = ["Succeeded", "Failed", "Cancelled"];

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

/// The message of the condition `type_`; panics when there is none.
pub fn condition_message(obj: &DynamicObject, type_: &str) -> String {
    let condition = condition(obj, type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {}", status(obj)["conditions"]));
    condition["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn condition_is(obj: &DynamicObject, type_: &str, value: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == value)
}

/// A status timestamp as Unix seconds.
pub fn status_time(obj: &DynamicObject, field: &str) -> Option<i64> {
    instant(&status(obj)[field])
}

pub fn phase(obj: &DynamicObject) -> &str {
    status(obj)["phase"].as_str().unwrap_or("")
}

/// The Backfill's status in one line, for messages.
pub fn summary(bf: &DynamicObject) -> String {
    let s = status(bf);
    let conditions: Vec<String> = s["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| format!("{}={}({})", c["type"], c["status"], c["reason"]))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "phase={} progress={} total={} processed={} succeeded={} failed={} killed={} \
         running={} launched={} completedAt={} error={} conditions=[{}]",
        s["phase"],
        s["progress"],
        s["totalEstimated"],
        s["processedCount"],
        s["succeededCount"],
        s["failedCount"],
        s["killedCount"],
        s["runningCount"],
        s["run"]["launched"],
        s["completedAt"],
        s["error"],
        conditions.join(" "),
    )
}

/// (processed, succeeded, failed, killed, total).
pub fn counters(bf: &DynamicObject) -> (i64, i64, i64, i64, i64) {
    (
        counter(bf, "processedCount"),
        counter(bf, "succeededCount"),
        counter(bf, "failedCount"),
        counter(bf, "killedCount"),
        counter(bf, "totalEstimated"),
    )
}

pub fn is_finished(bf: &DynamicObject) -> bool {
    FINISHED.contains(&phase(bf))
        && status(bf)["completedAt"].is_string()
        && counter(bf, "runningCount") == 0
}

/// Waits until the Backfill `name` satisfies `pred`, and returns it; on
/// timeout says `what` it waited for and the Backfill's last summary.
pub async fn wait_backfill(
    env: &Env,
    name: &str,
    what: &str,
    deadline: Duration,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    eventually(what, deadline, || async {
        let bf = get(&env.backfills, name).await;
        if pred(&bf) { Ok(bf) } else { Err(summary(&bf)) }
    })
    .await
}

/// Waits until the Backfill is finished (a final phase, completedAt set,
/// nothing running), checking `during` on every poll before that.
pub async fn wait_finished(
    env: &Env,
    name: &str,
    deadline: Duration,
    during: impl FnMut(&DynamicObject),
) -> DynamicObject {
    // The polls run one after the other: `during` is never borrowed twice.
    let during = RefCell::new(during);
    wait_backfill(
        env,
        name,
        &format!("Backfill {name} to finish"),
        deadline,
        |bf| {
            (during.borrow_mut())(bf);
            is_finished(bf)
        },
    )
    .await
}

/// Waits until the Backfill's phase is `want`, with the current generation
/// observed.
pub async fn wait_phase(env: &Env, name: &str, want: &str) -> DynamicObject {
    wait_backfill(
        env,
        name,
        &format!("Backfill {name} in phase {want}"),
        DEADLINE,
        |bf| {
            let observed = status(bf)["observedGeneration"].as_i64();
            phase(bf) == want && observed == bf.metadata.generation
        },
    )
    .await
}

/// Waits until the Backfill `name` is `Stalled=True` with `reason`, not
/// Ready, and the Warning Event `reason` is out.
pub async fn wait_stalled(env: &Env, name: &str, reason: &str) -> DynamicObject {
    let bf = wait_backfill(
        env,
        name,
        &format!("Backfill {name} Stalled with reason {reason}"),
        DEADLINE,
        |bf| {
            condition(bf, "Stalled").is_some_and(|c| c["status"] == "True" && c["reason"] == reason)
        },
    )
    .await;
    assert!(!condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    wait_event(env, name, "Warning", reason).await;
    bf
}
