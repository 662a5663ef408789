//! Live runs first, end to end: a Schedule's `maxActiveJobs` is one budget
//! shared by its scheduled runs and its Backfills. Scheduled sessions start
//! on time; Backfills share what is left. The operator runs as a real
//! process on a clock three times faster than real time; Jobs run through
//! the real job controller and kwok.

mod common;

use std::collections::BTreeSet;

use serde_json::json;

use common::DEADLINE;
use common::api::{apply, backfill_manifest, get, schedule_manifest, setup};
use common::events::events_about;
use common::instants::{MINUTE, at, rfc3339_utc};
use common::kwok::RUN_FOR;
use common::operator::Operator;
use common::poll::eventually;
use common::status::{RUN_DEADLINE, condition, counter, phase, status, summary, wait_finished};
use common::tracker::{JobTracker, describe};

/// A minutely Schedule with `maxActiveJobs: 3` whose Jobs run 4 s (12 s of
/// the operator's clock, a minute being 20 s real): its live runs take
/// one slot, and two Backfills of `maxInFlight: 3` share the other two.
/// Never more than 3 of its Jobs are active, every scheduled session
/// starts within its deadline, and both Backfills run all their sessions.
///
/// The runs are short beside the minute on purpose: on a busy test
/// machine a run may take far longer than its 4 s, and a live run that
/// outlasts the estimate still starts on time (the total may then pass
/// `maxActiveJobs`; Backfills never push it past).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_share_what_the_live_schedule_leaves() {
    let env = setup("live-first").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let origin = "2026-03-10T00:00:50Z";
    let op = Operator::start(
        &env.ns.name,
        &["--time-scale", "3", "--time-origin", origin],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest(
            "minutely",
            "* * * * *",
            &[(RUN_FOR, "4s")],
            json!({"suspend": false, "maxActiveJobs": 3, "startingDeadlineSeconds": 30}),
        ),
    )
    .await;
    // Once a run has finished, the operator knows how long runs take.
    eventually("a scheduled run to finish", DEADLINE, || async {
        let s = get(&env.schedules, "minutely").await;
        if status(&s)["lastSuccessfulTime"].is_string() {
            Ok(())
        } else {
            Err(status(&s).to_string())
        }
    })
    .await;

    // Two Backfills of five sessions each, on days the Schedule never
    // ran, each free to run 3 at once: they run across live sessions.
    let day = at("2026-03-01T00:00:00Z");
    for (name, first) in [("first", day), ("second", day + 60 * MINUTE)] {
        apply(
            &env.backfills,
            &backfill_manifest(
                name,
                "minutely",
                json!({
                    "from": rfc3339_utc(first),
                    "count": 5,
                    "maxInFlight": 3,
                }),
            ),
        )
        .await;
    }
    // Held back, each says why and how many wait.
    let mut held = BTreeSet::new();
    let mut preview = None;
    for name in ["first", "second"] {
        let bf = wait_finished(&env, name, RUN_DEADLINE, |bf| {
            let reason = condition(bf, "Ready").map(|c| c["reason"].clone());
            if counter(bf, "waitingForCapacity") > 0 && reason == Some(json!("WaitingForCapacity"))
            {
                held.insert(bf.metadata.name.clone().unwrap_or_default());
            }
            preview = Some(status(bf)["preview"].clone());
        })
        .await;
        assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
        assert_eq!(counter(&bf, "succeededCount"), 5, "{}", summary(&bf));
    }
    let jobs = tracker.of("minutely");
    assert!(
        tracker.max_active("minutely") <= 3,
        "{} Jobs of minutely active at once, maxActiveJobs is 3: {:?}\n{}",
        tracker.max_active("minutely"),
        tracker.max_active_names("minutely"),
        describe(&jobs)
    );
    // Both progressed, each in a slot of the two, and said what waited.
    for name in ["first", "second"] {
        let ran = jobs.iter().filter(|j| j.backfill == name).count();
        assert_eq!(ran, 5, "{name}:\n{}", describe(&jobs));
    }
    assert!(!held.is_empty(), "no Backfill said it waited for capacity");
    let events = events_about(&env, "Backfill", "first").await;
    let events: Vec<_> = events
        .into_iter()
        .chain(events_about(&env, "Backfill", "second").await)
        .filter(|(_, reason, _)| reason == "WaitingForCapacity")
        .collect();
    assert!(!events.is_empty(), "no WaitingForCapacity Event");
    assert!(
        events[0].2.contains("maxActiveJobs is 3"),
        "{:?}",
        events[0]
    );
    // The dry-run figures: the budget, and the live schedule's slot (none
    // when no live session would start while the backfill runs).
    let preview = preview.expect("a preview");
    assert_eq!(preview["maxActiveJobs"], json!(3), "{preview}");
    assert!(
        matches!(preview["liveSlots"].as_i64(), Some(0 | 1)),
        "{preview}"
    );

    // Every scheduled session from the first to the last ran, none
    // missed its deadline.
    let scheduled: BTreeSet<i64> = jobs
        .iter()
        .filter(|j| j.backfill.is_empty())
        .filter_map(|j| j.session)
        .collect();
    let (first, last) = (
        *scheduled.first().expect("scheduled runs"),
        *scheduled.last().expect("scheduled runs"),
    );
    let every: BTreeSet<i64> = (first..=last).step_by(MINUTE as usize).collect();
    assert_eq!(scheduled, every, "scheduled sessions ran with gaps");
    // At least one of them started while Backfill Jobs held their slots.
    let history = tracker.history("minutely");
    assert!(
        live_started_beside_backfills(&history),
        "no scheduled run started while a Backfill Job was active: {history}"
    );
    let missed: Vec<_> = events_about(&env, "Schedule", "minutely")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "SessionMissed")
        .collect();
    assert!(missed.is_empty(), "{missed:?}");
    drop(op);
}

/// Whether, in the tracker's story of the Schedule's Jobs ("+name"
/// created, "name=Outcome" finished, "name~" being deleted, "-name"
/// gone), a scheduled run (`minutely-…`) was created while a Backfill's
/// Job was active.
fn live_started_beside_backfills(history: &str) -> bool {
    let mut active = BTreeSet::new();
    for event in history.split_whitespace() {
        if let Some(name) = event.strip_prefix('+') {
            if name.starts_with("minutely-") {
                if !active.is_empty() {
                    return true;
                }
            } else {
                active.insert(name.to_string());
            }
        } else {
            let name = event.split(['=', '~']).next().unwrap_or(event);
            active.remove(name.trim_start_matches('-'));
        }
    }
    false
}
