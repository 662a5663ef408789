//! The Backfill controller end to end: the operator runs as a real
//! process (one per test, scoped to the test's namespace) against the
//! local control plane, and its Jobs run through the real job controller
//! and kwok.
//!
//! The target is a suspended hourly Schedule in UTC: a Backfill runs past
//! sessions whether or not the Schedule runs. The operator's clock is the
//! real one, so "now" (the end of every plan, the execution windows) is
//! today, and the January 2026 sessions are all in the past.
//!
//! A `JobTracker` watches the namespace's Backfill Jobs from before the
//! Backfill exists, so a test knows every Job that ever existed, how many
//! ran at once and how each ended, even after it was deleted — the truth
//! the counters are checked against. Sessions are failed on purpose by a
//! kwok Stage of the test's own (`FailStage`), selected by namespace and
//! `backfill.dev/session` label.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject};
use serde_json::{Value, json};

use common::api::{
    ANNOTATION_CREATED_BY, Env, apply, apply_hourly, apply_hourly_backfill, apply_hourly_with,
    backfill_manifest, get, patch_spec, schedule_manifest, setup,
};
use common::events::{events_about, wait_event};
use common::instants::{HOUR, MINUTE, at, hours, instant, instants, rfc3339_utc};
use common::jobs::Outcome;
use common::kwok::FailStage;
use common::operator::{FAILPOINT, Operator};
use common::poll::{eventually, throughout};
use common::status::{
    RUN_DEADLINE, condition, condition_is, condition_message, counter, counters, is_finished,
    phase, status, status_time, summary, wait_backfill, wait_finished, wait_phase, wait_stalled,
};
use common::tracker::{JobTracker, assert_one_job_per_session, describe};
use common::{DEADLINE, FIELD_MANAGER};

/// Where the operator aborts right after creating Jobs, before the status
/// that records them is written.
const AFTER_JOBS_CREATED: &str = "after-jobs-created";

/// The largest status object the design allows.
const SIZE_LIMIT: usize = 256 * 1024;

/// The whole stored object, as the API server serves it: its size is
/// what etcd holds.
async fn stored_json(env: &Env, name: &str) -> String {
    let path = format!(
        "/apis/backfill.dev/v1alpha1/namespaces/{}/backfills/{name}",
        env.ns.name
    );
    let request = http::Request::get(&path)
        .body(Vec::new())
        .expect("a GET request");
    env.client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// ---------------------------------------------------------------------
// 1. maxInFlight, failures, counters
// ---------------------------------------------------------------------

const JAN_FROM: &str = "2026-01-01T00:00:00Z";
const JAN_TO: &str = "2026-01-02T06:00:00Z";

/// How a run of `plan` with the sessions `fail` failing ends: Failed with
/// counters that add up, the failures listed, one Job per session, the
/// failed ones exactly those chosen, and every finalizer released.
async fn assert_ended_with_failures(
    tracker: &JobTracker,
    name: &str,
    bf: &DynamicObject,
    plan: &[i64],
    fail: &[i64],
) {
    let (total, bad) = (plan.len() as i64, fail.len() as i64);
    assert_eq!(phase(bf), "Failed", "{}", summary(bf));
    assert_eq!(
        counters(bf),
        (total, total - bad, bad, 0, total),
        "{}",
        summary(bf)
    );
    let failed = &status(bf)["failedSessions"];
    assert_eq!(failed["count"], bad, "{failed}");
    assert_eq!(
        instants(&failed["preview"]),
        fail,
        "failedSessions: {failed}"
    );
    assert_one_job_per_session(tracker, name, plan);
    assert_eq!(
        tracker
            .sessions_with(name, Outcome::Failed)
            .into_iter()
            .collect::<Vec<_>>(),
        fail,
        "the Stage failed other sessions than chosen"
    );
    tracker
        .wait("every finalizer released", name, |jobs| {
            jobs.iter().all(|j| !j.finalizer)
        })
        .await;
}

/// 30 hourly sessions, 4 at a time, 5 of them failing: never more than 4
/// Jobs at once, one Job per session, and counters that add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_session_once_within_max_in_flight_and_counts_failures() {
    let env = setup("bf-inflight").await;
    let plan = hours(JAN_FROM, JAN_TO);
    assert_eq!(plan.len(), 30);
    // Not in the first batch of 4: kwok needs a moment to load the Stage.
    let fail: Vec<i64> = [5, 9, 10, 21, 29].iter().map(|&i| plan[i]).collect();
    let _stage = FailStage::apply(&env, &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    apply_hourly(&env, Some("1s")).await;
    let mut manifest = backfill_manifest(
        "january",
        "hourly",
        json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 4}),
    );
    manifest["metadata"]["annotations"] = json!({ANNOTATION_CREATED_BY: "alice@example.com"});
    apply(&env.backfills, &manifest).await;

    let mut max_running_count = 0;
    let bf = wait_finished(&env, "january", RUN_DEADLINE, |bf| {
        tracker.assert_within_max_in_flight("january", 4, &summary(bf));
        max_running_count = max_running_count.max(counter(bf, "runningCount"));
        assert!(max_running_count <= 4, "status says: {}", summary(bf));
    })
    .await;

    assert_eq!(
        tracker.max_active("january"),
        4,
        "4 Jobs should run at once (pods run 1s): {}",
        describe(&tracker.of("january"))
    );
    assert_ended_with_failures(&tracker, "january", &bf, &plan, &fail).await;
    let s = status(&bf);
    assert_eq!(s["progress"], "30/30");
    assert!(s["startedAt"].is_string() && s["runId"].is_string(), "{s}");
    assert!(
        instant(&s["completedAt"]) >= instant(&s["startedAt"]),
        "{s}"
    );
    assert_eq!(s["createdBy"], "alice@example.com");
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    assert!(
        condition_is(&bf, "Reconciling", "False"),
        "{}",
        summary(&bf)
    );

    for s in tracker.of("january") {
        assert_eq!(s.schedule, "hourly", "{}: schedule label", s.name);
    }
}

// ---------------------------------------------------------------------
// 2. Crashes
// ---------------------------------------------------------------------

/// The same run with the operator SIGKILLed and restarted three times:
/// the same counters, and still one Job per session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_neither_duplicate_jobs_nor_bend_counters() {
    let env = setup("bf-crash").await;
    let plan = hours(JAN_FROM, JAN_TO);
    let fail: Vec<i64> = [4, 11, 12, 19, 28].iter().map(|&i| plan[i]).collect();
    let _stage = FailStage::apply(&env, &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut op = Operator::start(&env.ns.name, &[]).await;

    apply_hourly(&env, Some("1s")).await;
    apply_hourly_backfill(
        &env,
        "sturdy",
        json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 4}),
    )
    .await;

    // Counters only ever grow.
    let mut last = (0, 0, 0);
    let mut check_counters = |bf: &DynamicObject| {
        let now = (
            counter(bf, "processedCount"),
            counter(bf, "succeededCount"),
            counter(bf, "failedCount"),
        );
        assert!(
            now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2,
            "a counter went back from {last:?} to {now:?}: {}",
            summary(bf)
        );
        assert!(now.0 <= 30 && now.1 <= 25 && now.2 <= 5, "{}", summary(bf));
        last = now;
    };
    for threshold in [5, 12, 20] {
        let bf = wait_backfill(
            &env,
            "sturdy",
            &format!("{threshold} sessions processed"),
            RUN_DEADLINE,
            |bf| counter(bf, "processedCount") >= threshold,
        )
        .await;
        check_counters(&bf);
        assert!(
            !is_finished(&bf),
            "finished before the crash at {threshold}: {}",
            summary(&bf)
        );
        op.kill();
        eprintln!(
            "killed the operator at {} processed; {}; max active so far {} {:?}",
            counter(&bf, "processedCount"),
            describe(&tracker.of("sturdy")),
            tracker.max_active("sturdy"),
            tracker.max_active_names("sturdy"),
        );
        op.restart().await;
    }
    let bf = wait_finished(&env, "sturdy", RUN_DEADLINE, |bf| check_counters(bf)).await;

    assert_ended_with_failures(&tracker, "sturdy", &bf, &plan, &fail).await;
    tracker.assert_within_max_in_flight("sturdy", 4, "across restarts");
}

// ---------------------------------------------------------------------
// 3. A Job deleted by hand
// ---------------------------------------------------------------------

/// A person deletes a running Job: its session counts once, as killed,
/// and the backfill goes on with the next sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_while_running_counts_once_as_killed() {
    let env = setup("bf-deleted").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let plan = hours(JAN_FROM, "2026-01-01T04:00:00Z");

    apply_hourly(&env, Some("3s")).await;
    apply_hourly_backfill(
        &env,
        "oops",
        json!({"from": JAN_FROM, "to": "2026-01-01T04:00:00Z", "maxInFlight": 1}),
    )
    .await;

    let first = format!("oops-b{}", plan[0]);
    tracker
        .wait(
            &format!("{first} to have its pod running"),
            "oops",
            |jobs| {
                jobs.iter()
                    .any(|j| j.name == first && j.started && j.outcome.is_none())
            },
        )
        .await;
    env.jobs
        .delete(&first, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting Job {first}: {e}"));

    let bf = wait_finished(&env, "oops", RUN_DEADLINE, |_| {}).await;
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "killedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (3, 0, 1, 4, 4),
        "{}",
        summary(&bf)
    );
    assert_eq!(phase(&bf), "Failed", "a killed session is not a success");
    assert_eq!(status(&bf)["failedSessions"]["count"], 1);
    assert_eq!(
        instants(&status(&bf)["failedSessions"]["preview"]),
        vec![plan[0]]
    );
    assert_one_job_per_session(&tracker, "oops", &plan);
    let killed = tracker
        .of("oops")
        .into_iter()
        .find(|j| j.name == first)
        .expect("tracked");
    assert_eq!(
        killed.outcome, None,
        "{first} finished before it was deleted"
    );
    // The operator let it go once it was counted.
    tracker
        .wait(&format!("{first} gone"), "oops", |jobs| {
            jobs.iter().any(|j| j.name == first && j.deleted)
        })
        .await;
    assert_eq!(tracker.max_active("oops"), 1);
}

// ---------------------------------------------------------------------
// 4. Execution windows
// ---------------------------------------------------------------------

/// A one-minute execution window twelve hours from now, in UTC: when it
/// opens (Unix seconds), its weekday and its `[{start, end}]`.
fn window_in_twelve_hours() -> (i64, String, Value) {
    let opens = (Timestamp::now().as_second() + 12 * HOUR).div_euclid(MINUTE) * MINUTE;
    let start = Timestamp::from_second(opens)
        .expect("in range")
        .in_tz("UTC")
        .expect("UTC");
    let end = if (start.hour(), start.minute()) == (23, 59) {
        "24:00".to_string()
    } else {
        start
            .checked_add(jiff::SignedDuration::from_secs(MINUTE))
            .expect("in range")
            .strftime("%H:%M")
            .to_string()
    };
    let day = format!("{:?}", start.weekday()).to_lowercase();
    let window = json!([{"start": start.strftime("%H:%M").to_string(), "end": end}]);
    (opens, day, window)
}

/// Outside its only window a Backfill waits and says when the window
/// opens; a window open now lets it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_execution_window() {
    let env = setup("bf-windows").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    let (opens, day, window) = window_in_twelve_hours();
    apply_hourly(&env, None).await;
    let plan = hours(JAN_FROM, "2026-01-01T03:00:00Z");
    apply_hourly_backfill(
        &env,
        "nightly",
        json!({
            "from": JAN_FROM,
            "to": "2026-01-01T03:00:00Z",
            "maxInFlight": 3,
            "executionWindows": {"timeZone": "UTC", day.clone(): window},
        }),
    )
    .await;

    let bf = wait_phase(&env, "nightly", "Waiting").await;
    assert_eq!(
        status_time(&bf, "nextWindowStart"),
        Some(opens),
        "nextWindowStart should be {} ({day} {window}): {}",
        rfc3339_utc(opens),
        status(&bf)
    );
    assert_eq!(counter(&bf, "runningCount"), 0, "{}", summary(&bf));
    assert_eq!(status(&bf)["run"]["launched"].as_i64().unwrap_or(0), 0);
    assert_eq!(counter(&bf, "totalEstimated"), 3, "{}", summary(&bf));
    assert!(condition_is(&bf, "Reconciling", "True"), "{}", summary(&bf));
    // The status is written after the Jobs are made: none were.
    assert!(tracker.of("nightly").is_empty(), "Jobs outside the window");
    let message = wait_event(&env, "nightly", "Normal", "Waiting").await;
    assert!(
        message.contains(&rfc3339_utc(opens)),
        "the Waiting Event should say when the window opens: {message:?}"
    );

    let whole_day = json!([{"start": "00:00", "end": "24:00"}]);
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let windows: serde_json::Map<String, Value> = days
        .iter()
        .map(|d| (d.to_string(), whole_day.clone()))
        .collect();
    patch_spec(
        &env.backfills,
        "nightly",
        json!({"executionWindows": windows}),
    )
    .await;
    let bf = wait_finished(&env, "nightly", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    assert!(status(&bf)["nextWindowStart"].is_null(), "{}", status(&bf));
    assert_one_job_per_session(&tracker, "nightly", &plan);
}

// ---------------------------------------------------------------------
// 5. Dry run
// ---------------------------------------------------------------------

/// A dry run plans, estimates and shows its boundaries without a Job;
/// turning it off runs the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_estimates_then_runs_when_turned_off() {
    let env = setup("bf-dryrun").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let plan = hours(JAN_FROM, JAN_TO);

    apply_hourly_with(&env, json!({"creditsPerSession": 2.5})).await;
    apply_hourly_backfill(
        &env,
        "preview",
        json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 10, "dryRun": true}),
    )
    .await;

    let bf = wait_phase(&env, "preview", "Planned").await;
    let s = status(&bf);
    assert_eq!(s["totalEstimated"], 30, "{s}");
    assert_eq!(s["progress"], "0/30", "{s}");
    let cost = &s["costEstimate"];
    assert_eq!(cost["creditsPerEntity"].as_f64(), Some(2.5), "{cost}");
    assert_eq!(cost["totalCreditsEstimated"].as_f64(), Some(75.0), "{cost}");
    assert_eq!(cost["totalEntities"], 30, "{cost}");
    assert_eq!(instants(&s["preview"]["first"]), plan[..5].to_vec(), "{s}");
    assert_eq!(instants(&s["preview"]["last"]), plan[25..].to_vec(), "{s}");
    let boundaries = s["preview"]["boundaries"].as_str().unwrap_or_default();
    assert!(
        boundaries.contains("inclusive") && boundaries.contains("exclusive"),
        "the boundaries should say what is inclusive and exclusive: {boundaries:?}"
    );
    assert!(s["runId"].is_null() && s["startedAt"].is_null(), "{s}");
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    assert!(tracker.of("preview").is_empty(), "a dry run made Jobs");
    wait_event(&env, "preview", "Normal", "Planned").await;

    patch_spec(&env.backfills, "preview", json!({"dryRun": false})).await;
    let bf = wait_finished(&env, "preview", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (30, 30, 30),
        "{}",
        summary(&bf)
    );
    let s = status(&bf);
    assert!(
        s["runId"].is_string() && s["startedAt"].is_string() && s["plannedUntil"].is_string(),
        "{s}"
    );
    // No annotation: the field manager that created it, not the operator
    // that wrote the dry run's status.
    assert_eq!(s["createdBy"], FIELD_MANAGER, "{s}");
    assert_one_job_per_session(&tracker, "preview", &plan);
    tracker.assert_within_max_in_flight("preview", 10, "");
}

// ---------------------------------------------------------------------
// 6. Suspend and cancel
// ---------------------------------------------------------------------

/// Suspended, a Backfill launches nothing and lets its running Job finish
/// and be counted; resumed, it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_launching_and_resume_completes() {
    let env = setup("bf-suspend").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(JAN_FROM, to);

    apply_hourly(&env, Some("2s")).await;
    apply_hourly_backfill(
        &env,
        "pausable",
        json!({"from": JAN_FROM, "to": to, "maxInFlight": 1}),
    )
    .await;

    // Suspend while the second session runs.
    let second = format!("pausable-b{}", plan[1]);
    tracker
        .wait(&format!("{second} running"), "pausable", |jobs| {
            jobs.iter().any(|j| j.name == second && j.outcome.is_none())
        })
        .await;
    patch_spec(&env.backfills, "pausable", json!({"suspend": true})).await;
    let paused = wait_phase(&env, "pausable", "Paused").await;
    let at_pause: BTreeSet<String> = tracker.of("pausable").into_iter().map(|j| j.name).collect();
    assert!(
        at_pause.len() < plan.len(),
        "everything launched before the pause: {}",
        summary(&paused)
    );

    // The running Job goes on, and its outcome is counted.
    let bf = eventually(
        "the Jobs launched before the pause finished and counted",
        DEADLINE,
        || async {
            let bf = get(&env.backfills, "pausable").await;
            if counter(&bf, "processedCount") == at_pause.len() as i64
                && counter(&bf, "runningCount") == 0
            {
                Ok(bf)
            } else {
                Err(format!(
                    "{} / {}",
                    summary(&bf),
                    describe(&tracker.of("pausable"))
                ))
            }
        },
    )
    .await;
    assert_eq!(phase(&bf), "Paused", "{}", summary(&bf));
    assert_eq!(
        counter(&bf, "succeededCount"),
        at_pause.len() as i64,
        "{}",
        summary(&bf)
    );
    // Unpaused, the next Job would start within moments of a slot freeing.
    throughout(
        "no Job launched while paused",
        Duration::from_secs(4),
        || async {
            let now: BTreeSet<String> =
                tracker.of("pausable").into_iter().map(|j| j.name).collect();
            if now == at_pause {
                Ok(())
            } else {
                Err(format!("Jobs at the pause {at_pause:?}, now {now:?}"))
            }
        },
    )
    .await;
    assert_eq!(phase(&get(&env.backfills, "pausable").await), "Paused");
    wait_event(&env, "pausable", "Normal", "Paused").await;

    patch_spec(&env.backfills, "pausable", json!({"suspend": null})).await;
    let bf = wait_finished(&env, "pausable", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (6, 6, 6),
        "{}",
        summary(&bf)
    );
    assert_one_job_per_session(&tracker, "pausable", &plan);
    assert_eq!(tracker.max_active("pausable"), 1);
    wait_event(&env, "pausable", "Normal", "Resumed").await;
}

/// The status write that records a launch is lost (the operator stops
/// between the Job's create and that write; an edit of the spec at that
/// moment makes the write conflict the same way), and the Backfill is
/// suspended meanwhile: the paused Backfill still counts that Job once it
/// ends, releases it, and launches nothing; resumed, it runs the rest once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_record_was_lost_is_counted_while_suspended() {
    let env = setup("bf-lost-launch").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T03:00:00Z";
    let plan = hours(JAN_FROM, to);

    // Pods run 3 s: the first Job still runs when the operator is
    // restarted below, so the restarted one makes the next launch.
    apply_hourly(&env, Some("3s")).await;
    apply_hourly_backfill(
        &env,
        "interrupted",
        json!({"from": JAN_FROM, "to": to, "maxInFlight": 1}),
    )
    .await;
    wait_backfill(
        &env,
        "interrupted",
        "the first launch recorded",
        DEADLINE,
        |bf| status(bf)["run"]["launched"] == 1,
    )
    .await;
    // The next launch is the last thing this operator does.
    op.restart_with_env(&[(FAILPOINT, AFTER_JOBS_CREATED)])
        .await;
    let exit = op.wait_exit(DEADLINE).await;
    assert!(
        !op.log_lines_containing(&format!("failpoint {AFTER_JOBS_CREATED}"))
            .is_empty(),
        "the operator exited ({exit}) but not at the failpoint\n{}",
        op.log_tail(20)
    );
    let second = format!("interrupted-b{}", plan[1]);
    let bf = get(&env.backfills, "interrupted").await;
    assert_eq!(
        (
            status(&bf)["run"]["launched"].as_i64(),
            counter(&bf, "processedCount")
        ),
        // The lost pass counted the first Job and launched the second.
        (Some(1), 0),
        "the launch of {second} was recorded before the crash: {}",
        summary(&bf)
    );
    patch_spec(&env.backfills, "interrupted", json!({"suspend": true})).await;
    tracker
        .wait(&format!("{second} ended"), "interrupted", |jobs| {
            jobs.iter().any(|j| j.name == second && j.outcome.is_some())
        })
        .await;

    op.restart_with_env(&[]).await;
    let bf = wait_backfill(
        &env,
        "interrupted",
        "the lost launch counted while paused",
        DEADLINE,
        |bf| counter(bf, "processedCount") == 2,
    )
    .await;
    assert_eq!(phase(&bf), "Paused", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "runningCount"),
            status(&bf)["run"]["launched"].as_i64()
        ),
        (2, 0, Some(2)),
        "{}",
        summary(&bf)
    );
    tracker
        .wait(&format!("{second} released"), "interrupted", |jobs| {
            jobs.iter().any(|j| j.name == second && !j.finalizer)
        })
        .await;
    assert_eq!(tracker.of("interrupted").len(), 2, "launched while paused");

    patch_spec(&env.backfills, "interrupted", json!({"suspend": null})).await;
    let bf = wait_finished(&env, "interrupted", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount")
        ),
        (3, 3),
        "{}",
        summary(&bf)
    );
    assert_one_job_per_session(&tracker, "interrupted", &plan);
}

/// Cancelled, a Backfill deletes its running Jobs (counted as killed) and
/// launches nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_running_jobs_and_launches_nothing_more() {
    let env = setup("bf-cancel").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T10:00:00Z";

    apply_hourly(&env, Some("60s")).await;
    apply_hourly_backfill(
        &env,
        "doomed",
        json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
    )
    .await;

    let running = tracker
        .wait("3 Jobs with running pods", "doomed", |jobs| {
            jobs.iter().filter(|j| j.started && j.active()).count() == 3
        })
        .await;
    patch_spec(&env.backfills, "doomed", json!({"cancel": true})).await;
    let bf = wait_finished(&env, "doomed", DEADLINE, |_| {}).await;

    assert_eq!(phase(&bf), "Cancelled", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "killedCount"),
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (running.len() as i64, 0, 0, running.len() as i64, 10),
        "{}",
        summary(&bf)
    );
    assert!(status(&bf)["completedAt"].is_string(), "{}", status(&bf));
    assert!(
        status(&bf)["error"]
            .as_str()
            .is_some_and(|e| e.contains("cancel")),
        "{}",
        status(&bf)
    );
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    tracker
        .wait("the cancelled Jobs gone", "doomed", |jobs| {
            jobs.iter().all(|j| j.deleted)
        })
        .await;
    let names: BTreeSet<String> = running.iter().map(|j| j.name.clone()).collect();
    throughout(
        "no Job launched after the cancel",
        Duration::from_secs(3),
        || async {
            let now: BTreeSet<String> = tracker.of("doomed").into_iter().map(|j| j.name).collect();
            if now == names {
                Ok(())
            } else {
                Err(format!("running at the cancel {names:?}, ever {now:?}"))
            }
        },
    )
    .await;
    assert!(tracker.duplicates("doomed").is_empty());
    wait_event(&env, "doomed", "Normal", "Cancelled").await;
}

// ---------------------------------------------------------------------
// 7. Size
// ---------------------------------------------------------------------

/// A 100,000-session dry run is a small object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_session_dry_run_stays_small() {
    let env = setup("bf-size-plan").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "huge",
            "minutely",
            json!({"from": "2025-01-01T00:00:00Z", "count": 100_000, "dryRun": true}),
        ),
    )
    .await;

    let bf = wait_phase(&env, "huge", "Planned").await;
    assert_eq!(counter(&bf, "totalEstimated"), 100_000, "{}", summary(&bf));
    let first = at("2025-01-01T00:00:00Z");
    assert_eq!(
        instants(&status(&bf)["preview"]["last"]).last(),
        Some(&(first + 99_999 * MINUTE)),
        "{}",
        status(&bf)["preview"]
    );
    let json = stored_json(&env, "huge").await;
    println!(
        "stored Backfill of a 100,000-session dry run: {} bytes",
        json.len()
    );
    assert!(json.len() < SIZE_LIMIT, "{} bytes", json.len());
    assert!(tracker.of("huge").is_empty(), "a dry run made Jobs");
}

/// 2,000 minutely sessions, 200 at a time, run in reasonable time and
/// leave a small object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_run_and_stay_small() {
    let env = setup("bf-size-run").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({})),
    )
    .await;
    let from = at("2026-01-01T00:00:00Z");
    let plan: Vec<i64> = (0..2_000).map(|i| from + i * MINUTE).collect();
    let started = Instant::now();
    apply(
        &env.backfills,
        &backfill_manifest(
            "big",
            "minutely",
            json!({"from": rfc3339_utc(from), "count": 2_000, "maxInFlight": 200}),
        ),
    )
    .await;

    // maxInFlight is checked at the end, so that a failure still reports
    // the run's time and size.
    let bf = wait_finished(&env, "big", Duration::from_secs(600), |_| {}).await;
    let took = started.elapsed();
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (2_000, 2_000, 2_000),
        "{}",
        summary(&bf)
    );
    let json = stored_json(&env, "big").await;
    println!(
        "2,000-session run: {took:.1?}, most Jobs at once {}, stored Backfill {} bytes",
        tracker.max_active("big"),
        json.len()
    );
    assert!(json.len() < SIZE_LIMIT, "{} bytes", json.len());
    assert_one_job_per_session(&tracker, "big", &plan);
    tracker.assert_within_max_in_flight("big", 200, "");
}

// ---------------------------------------------------------------------
// 8. Bad input
// ---------------------------------------------------------------------

/// A Backfill of a Schedule that does not exist stalls, runs nothing, and
/// runs once the Schedule appears. (A new Backfill waits 30 s of the
/// operator's clock for its Schedule before it stalls: 3 s here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schedule_stalls_until_it_exists() {
    let env = setup("bf-noschedule").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "10"]).await;
    let to = "2026-01-01T03:00:00Z";
    apply(
        &env.backfills,
        &backfill_manifest(
            "early",
            "later",
            json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
        ),
    )
    .await;

    let bf = wait_stalled(&env, "early", "ScheduleNotFound").await;
    assert!(status(&bf)["runId"].is_null(), "{}", status(&bf));
    assert!(tracker.of("early").is_empty());

    apply(
        &env.schedules,
        &schedule_manifest("later", "0 * * * *", &[], json!({})),
    )
    .await;
    let bf = wait_finished(&env, "early", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    assert!(condition_is(&bf, "Stalled", "False"), "{}", summary(&bf));
    // No annotation: the field manager that created it.
    assert_eq!(status(&bf)["createdBy"], FIELD_MANAGER, "{}", status(&bf));
    assert_one_job_per_session(&tracker, "early", &hours(JAN_FROM, to));
}

/// A Backfill waiting hours for its window hears at once that its
/// Schedule was deleted: it stalls instead of looking healthy until the
/// window opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_backfill_stalls_when_its_schedule_is_deleted() {
    let env = setup("bf-schedule-gone").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let (_, day, window) = window_in_twelve_hours();
    apply_hourly(&env, None).await;
    apply_hourly_backfill(
        &env,
        "patient",
        json!({
            "from": JAN_FROM,
            "count": 3,
            "executionWindows": {"timeZone": "UTC", day: window},
        }),
    )
    .await;
    wait_phase(&env, "patient", "Waiting").await;
    env.schedules
        .delete("hourly", &Default::default())
        .await
        .expect("deleting the Schedule");
    let bf = wait_stalled(&env, "patient", "ScheduleNotFound").await;
    assert_eq!(status(&bf)["run"]["launched"].as_i64().unwrap_or(0), 0);
}

/// A Backfill applied just before its Schedule (as `kubectl apply -f
/// dir/` does, backfill.yaml sorting first) waits for it instead of
/// stalling: no Stalled condition and no Warning, which would fail a Flux
/// Kustomization waiting for health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_applied_before_its_schedule_does_not_stall() {
    let env = setup("bf-together").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly_backfill(&env, "together", json!({"from": JAN_FROM, "count": 3})).await;
    let bf = wait_backfill(
        &env,
        "together",
        "the Backfill to wait for its Schedule",
        DEADLINE,
        |bf| condition(bf, "Reconciling").is_some_and(|c| c["reason"] == "WaitingForSchedule"),
    )
    .await;
    assert!(condition_is(&bf, "Stalled", "False"), "{}", summary(&bf));
    apply_hourly(&env, None).await;
    let bf = wait_finished(&env, "together", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    let warnings: Vec<_> = events_about(&env, "Backfill", "together")
        .await
        .into_iter()
        .filter(|(type_, _, _)| type_ == "Warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// A Schedule in an unknown time zone stalls its Backfill; fixing the
/// zone lets it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_time_zone_stalls_until_fixed() {
    let env = setup("bf-badzone").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T03:00:00Z";
    apply_hourly_with(&env, json!({"timeZone": "Mars/Olympus_Mons"})).await;
    apply_hourly_backfill(
        &env,
        "martian",
        json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
    )
    .await;

    let bf = wait_stalled(&env, "martian", "InvalidSchedule").await;
    let message = condition_message(&bf, "Stalled");
    assert!(
        message.contains("Mars/Olympus_Mons"),
        "the message should name the zone: {message:?}"
    );
    assert!(tracker.of("martian").is_empty());

    patch_spec(&env.schedules, "hourly", json!({"timeZone": "UTC"})).await;
    let bf = wait_finished(&env, "martian", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert!(condition_is(&bf, "Stalled", "False"), "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "martian", &hours(JAN_FROM, to));
}

/// `from` alone (the workflow seed's request without a count) runs every
/// session from it up to the moment the Backfill starts, and records the
/// Schedule the run used by UID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_alone_runs_every_session_up_to_the_start() {
    let env = setup("bf-from-alone").await;
    let tracker = JobTracker::start(&env.jobs).await;
    // The operator's clock: 05:30 on January 1st, hardly moving.
    let _op = Operator::start(
        &env.ns.name,
        &[
            "--time-origin",
            "2026-01-01T05:30:00Z",
            "--time-scale",
            "0.001",
        ],
    )
    .await;
    let schedule = apply_hourly(&env, None).await;
    apply_hourly_backfill(&env, "since", json!({"from": JAN_FROM, "maxInFlight": 6})).await;
    let bf = wait_finished(&env, "since", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (6, 6, 0, 0, 6), "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "since", &hours(JAN_FROM, "2026-01-01T06:00:00Z"));
    assert_eq!(
        status(&bf)["scheduleUid"].as_str(),
        schedule.metadata.uid.as_deref(),
        "{}",
        status(&bf)
    );
}

/// A session a spring-forward change shifts (02:30 does not exist in New
/// York on 2026-03-08: it runs at 03:00 EDT) is launched, and its Job's
/// outcome counted, like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_shifted_by_daylight_saving_is_counted() {
    let env = setup("bf-dst").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest(
            "nightly",
            "30 2 * * *",
            &[],
            json!({"timeZone": "America/New_York"}),
        ),
    )
    .await;
    let sessions: Vec<i64> = [
        "2026-03-07T07:30:00Z",
        "2026-03-08T07:00:00Z",
        "2026-03-09T06:30:00Z",
    ]
    .map(at)
    .to_vec();
    let _fail = FailStage::apply(&env, &sessions).await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "dst",
            "nightly",
            json!({"from": "2026-03-07T00:00:00Z", "count": 3}),
        ),
    )
    .await;
    let bf = wait_finished(&env, "dst", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(counters(&bf), (3, 0, 3, 0, 3), "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "dst", &sessions);
}
