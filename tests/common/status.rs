//! Reading the operator's objects' status (untyped, so a change to a
//! status struct does not break the tests' compilation), and waiting for
//! a Backfill to reach a state.

use std::time::{Duration, Instant};

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

/// Waits until the Backfill is finished (a final phase, completedAt set,
/// nothing running), checking `during` on every poll before that.
pub async fn wait_finished(
    env: &Env,
    name: &str,
    deadline: Duration,
    mut during: impl FnMut(&DynamicObject),
) -> DynamicObject {
    let start = Instant::now();
    loop {
        let bf = get(&env.backfills, name).await;
        during(&bf);
        if is_finished(&bf) {
            return bf;
        }
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting for Backfill {name} to finish; last seen: {}",
                summary(&bf)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the Backfill's phase is `want`, with the current generation
/// observed.
pub async fn wait_phase(env: &Env, name: &str, want: &str) -> DynamicObject {
    eventually(
        &format!("Backfill {name} in phase {want}"),
        DEADLINE,
        || async {
            let bf = get(&env.backfills, name).await;
            let observed = status(&bf)["observedGeneration"].as_i64();
            if phase(&bf) == want && observed == bf.metadata.generation {
                Ok(bf)
            } else {
                Err(summary(&bf))
            }
        },
    )
    .await
}

/// Waits until the Backfill `name` is `Stalled=True` with `reason`, not
/// Ready, and the Warning Event `reason` is out.
pub async fn wait_stalled(env: &Env, name: &str, reason: &str) -> DynamicObject {
    let bf = eventually(
        &format!("Backfill {name} Stalled with reason {reason}"),
        DEADLINE,
        || async {
            let bf = get(&env.backfills, name).await;
            match condition(&bf, "Stalled") {
                Some(c) if c["status"] == "True" && c["reason"] == reason => Ok(bf),
                _ => Err(summary(&bf)),
            }
        },
    )
    .await;
    assert!(!condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    wait_event(env, name, "Warning", reason).await;
    bf
}
