//! The Schedule controller end to end: the operator runs as a real
//! process (one per test, scoped to the test's namespace) against the
//! local control plane, and its Jobs run through the real job controller
//! and kwok.
//!
//! Most tests speed the operator's clock up (`--time-scale 60`: a
//! `* * * * *` Schedule fires about every real second). Session times and
//! Job names are virtual instants; Kubernetes timestamps stay real.
//!
//! A `JobTracker` watches the namespace's Jobs from before the Schedule
//! exists, so a test knows every Job that ever existed and how it ended,
//! even after the operator deleted it (history limits) — the truth the
//! counters are checked against.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};

use common::api::{apply, get, patch_spec, schedule_manifest, setup};
use common::events::{assert_event_about, events_about, wait_event_about};
use common::instants::{MINUTE, rfc3339_utc};
use common::jobs::{
    ANNOTATION_ATTEMPT_NAME, ANNOTATION_SESSION_TIME, ANNOTATION_SESSION_UUID, JOB_FINALIZER,
    LABEL_SCHEDULE, LABEL_SESSION, Outcome, annotation, holds_outcome, label, outcome,
};
use common::kwok::{OUTCOME, RUN_FOR};
use common::operator::Operator;
use common::poll::eventually;
use common::status::{condition, condition_is, counter, status, status_time};
use common::tracker::{JobTracker, Seen, describe};
use common::{DEADLINE, merge};

// ---------------------------------------------------------------------
// Setup and the Schedule API (untyped, so the tests read the API as a
// user's kubectl does).
// ---------------------------------------------------------------------

/// A Schedule running `cron` (not suspended) whose pods carry
/// `pod_annotations` (the kwok knobs), with `spec_patch` merged onto its
/// spec (RFC 7386).
fn manifest(name: &str, cron: &str, pod_annotations: &[(&str, &str)], spec_patch: Value) -> Value {
    let mut patch = json!({"suspend": null});
    merge(&mut patch, &spec_patch);
    schedule_manifest(name, cron, pod_annotations, patch)
}

/// The status counters, for messages.
fn counters(schedule: &DynamicObject) -> String {
    let s = status(schedule);
    format!(
        "succeeded={} failed={} killed={} missed={} activeCount={} lastScheduleTime={} \
         lastMissedTime={} observedGeneration={} (generation {:?})",
        s["succeededSessions"],
        s["failedSessions"],
        s["killedSessions"],
        s["missedSessions"],
        s["activeCount"],
        s["lastScheduleTime"],
        s["lastMissedTime"],
        s["observedGeneration"],
        schedule.metadata.generation,
    )
}

/// Asserts a status counter, showing them all when it is off.
#[track_caller]
fn assert_counter(schedule: &DynamicObject, field: &str, want: i64) {
    assert_eq!(
        counter(schedule, field),
        want,
        "{field}: {}",
        counters(schedule)
    );
}

/// Waits until the operator has seen the Schedule's current generation.
async fn wait_observed(schedules: &Api<DynamicObject>, name: &str) -> DynamicObject {
    eventually(
        &format!("Schedule {name} to be observed"),
        DEADLINE,
        || async {
            let s = get(schedules, name).await;
            let generation = s.metadata.generation;
            if generation.is_some() && status(&s)["observedGeneration"].as_i64() == generation {
                Ok(s)
            } else {
                Err(counters(&s))
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------

async fn jobs_of(jobs: &Api<Job>, schedule: &str) -> Vec<Job> {
    jobs.list(&ListParams::default().labels(&format!("{LABEL_SCHEDULE}={schedule}")))
        .await
        .unwrap_or_else(|e| panic!("listing the Jobs of {schedule}: {e}"))
        .items
}

/// The session of a Job, from its label.
fn session_of(job: &Job) -> i64 {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    label(job, LABEL_SESSION)
        .unwrap_or_else(|| panic!("Job {name} has no {LABEL_SESSION} label"))
        .parse()
        .unwrap_or_else(|e| panic!("Job {name}: {LABEL_SESSION} is not Unix seconds: {e}"))
}

fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect()
}

/// RFC 3339 of `at` in `zone`, as the operator writes session times.
fn local_rfc3339(at: i64, zone: &str) -> String {
    Timestamp::from_second(at)
        .expect("an instant in range")
        .in_tz(zone)
        .expect("a known zone")
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn floor_to(at: f64, period: i64) -> i64 {
    (at as i64).div_euclid(period) * period
}

/// The sessions of `* * * * *` in `[from, to)`.
fn minutes_between(from: i64, to: i64) -> i64 {
    let first = from.div_euclid(MINUTE) * MINUTE + if from % MINUTE == 0 { 0 } else { MINUTE };
    if to <= first {
        0
    } else {
        (to - first + MINUTE - 1) / MINUTE
    }
}

// ---------------------------------------------------------------------
// 1. Allow
// ---------------------------------------------------------------------

/// Sessions whose Jobs overlap run side by side, each under its own name,
/// and once they finish the counters say exactly what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_runs_overlapping_sessions_side_by_side() {
    let env = setup("sched-allow").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;

    // Pods run 3 real seconds = 3 virtual minutes: sessions overlap.
    let end = floor_to(op.virtual_now(), MINUTE) + 5 * MINUTE + 30;
    apply(
        &env.schedules,
        &manifest(
            "overlap",
            "* * * * *",
            &[(RUN_FOR, "3s")],
            json!({
                "concurrencyPolicy": "Allow",
                "endTime": rfc3339_utc(end),
                "successfulJobsHistoryLimit": 10,
            }),
        ),
    )
    .await;

    eventually("two Jobs running at once", DEADLINE, || async {
        let jobs = jobs_of(&env.jobs, "overlap").await;
        let running: Vec<&Job> = jobs.iter().filter(|j| outcome(j).is_none()).collect();
        if running.len() >= 2 {
            let names: BTreeSet<_> = running.iter().map(|j| j.metadata.name.clone()).collect();
            assert_eq!(names.len(), running.len(), "Job names repeat");
            Ok(())
        } else {
            Err(format!("Jobs: {:?}", names(&jobs)))
        }
    })
    .await;

    // After endTime no session is due; wait for the last Jobs to finish
    // and the counters to catch up with them.
    op.wait_until_virtual(end as f64 + 5.0).await;
    let schedule = eventually("every Job finished and counted", DEADLINE, || async {
        let seen = tracker.of("overlap");
        let s = get(&env.schedules, "overlap").await;
        let done = seen.iter().all(|j| j.outcome.is_some());
        if done
            && counter(&s, "activeCount") == 0
            && counter(&s, "succeededSessions") == seen.len() as i64
        {
            Ok(s)
        } else {
            Err(format!("{} / Jobs {}", counters(&s), describe(&seen)))
        }
    })
    .await;

    let seen = tracker.of("overlap");
    assert!(
        tracker.max_unfinished("overlap") >= 2,
        "never saw two Jobs running at once: {}",
        describe(&seen)
    );
    assert!(tracker.duplicates("overlap").is_empty(), "{seen:?}");
    let sessions: Vec<i64> = seen.iter().map(|s| s.session.expect("session")).collect();
    for s in &seen {
        let session = s.session.expect("session");
        assert_eq!(s.name, format!("overlap-{session}"));
        assert_eq!(session % MINUTE, 0, "{} is not on a minute", s.name);
        assert!(session < end, "{} is at or after endTime {end}", s.name);
        assert_eq!(s.outcome, Some(Outcome::Succeeded), "{}", s.name);
    }
    let first = sessions[0];
    let last = *sessions.last().expect("a session");
    // Every session from the first to endTime ran, once.
    assert_eq!(
        sessions.len() as i64,
        minutes_between(first, end),
        "sessions {sessions:?} up to endTime {end}"
    );
    assert!(sessions.len() >= 3, "too few sessions ran: {sessions:?}");
    assert_counter(&schedule, "failedSessions", 0);
    assert_counter(&schedule, "killedSessions", 0);
    assert_counter(&schedule, "missedSessions", 0);
    assert!(
        status(&schedule)["active"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "status.active should be empty: {}",
        status(&schedule)
    );
    assert_eq!(status_time(&schedule, "lastScheduleTime"), Some(last));
    assert_eq!(status_time(&schedule, "lastSuccessfulTime"), Some(last));
    assert_event_about(&env, "Schedule", "overlap", "Normal", "JobCreated").await;
}

// ---------------------------------------------------------------------
// 2. Forbid
// ---------------------------------------------------------------------

/// While a Job runs, due sessions are missed: no second Job, the counter
/// grows, and a Warning Event says how to backfill them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_misses_sessions_while_a_job_runs() {
    let env = setup("sched-forbid").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;

    apply(
        &env.schedules,
        &manifest(
            "solo",
            "* * * * *",
            &[(RUN_FOR, "8s")],
            json!({"concurrencyPolicy": "Forbid"}),
        ),
    )
    .await;

    let first = tracker
        .wait_job("the first Job", "solo", |_| true)
        .await
        .name;
    eventually(
        "missedSessions >= 3 while the first Job runs",
        DEADLINE,
        || async {
            let jobs = jobs_of(&env.jobs, "solo").await;
            let s = get(&env.schedules, "solo").await;
            let first_job = jobs
                .iter()
                .find(|j| j.metadata.name.as_deref() == Some(first.as_str()));
            let first_running = first_job.is_some_and(|j| outcome(j).is_none());
            if first_running {
                assert_eq!(
                    names(&jobs),
                    vec![first.clone()],
                    "a second Job while {first} runs under Forbid"
                );
            } else {
                panic!(
                    "{first} finished before three sessions were missed: {}",
                    counters(&s)
                );
            }
            if counter(&s, "missedSessions") >= 3 {
                Ok(())
            } else {
                Err(counters(&s))
            }
        },
    )
    .await;

    let s = get(&env.schedules, "solo").await;
    assert!(
        status_time(&s, "lastMissedTime").is_some(),
        "no lastMissedTime: {}",
        counters(&s)
    );
    let message = wait_event_about(&env, "Schedule", "solo", "Warning", "SessionMissed").await;
    assert!(
        message.to_lowercase().contains("backfill"),
        "the SessionMissed message should say how to backfill: {message:?}"
    );

    // Once the first Job is done, sessions run again — one Job at a time.
    tracker
        .wait_job("a second Job after the first finished", "solo", |s| {
            s.name != first
        })
        .await;
    assert_eq!(
        tracker.max_unfinished("solo"),
        1,
        "two Jobs ran at once under Forbid: {}\nhistory: {}",
        describe(&tracker.of("solo")),
        tracker.history("solo")
    );
}

// ---------------------------------------------------------------------
// 3. Replace
// ---------------------------------------------------------------------

/// A due session replaces the running Job: it is deleted (its session
/// counts as killed) and the new one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job_and_starts_the_new_one() {
    let env = setup("sched-replace").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;

    apply(
        &env.schedules,
        &manifest(
            "swap",
            "* * * * *",
            &[(RUN_FOR, "30s")],
            json!({"concurrencyPolicy": "Replace"}),
        ),
    )
    .await;

    let first = tracker.wait_job("the first Job", "swap", |_| true).await;
    let first_session = first.session.expect("a session");
    tracker
        .wait_job("a Job of a later session", "swap", |s| {
            s.session > Some(first_session)
        })
        .await;
    eventually(
        &format!("{} deleted and its session counted as killed", first.name),
        DEADLINE,
        || async {
            let s = get(&env.schedules, "swap").await;
            let gone = env.jobs.get_opt(&first.name).await.ok().flatten().is_none();
            if gone && counter(&s, "killedSessions") >= 1 {
                Ok(())
            } else {
                Err(format!(
                    "{} exists: {} / {}",
                    first.name,
                    !gone,
                    counters(&s)
                ))
            }
        },
    )
    .await;
    let seen = tracker.of("swap");
    let first_seen = seen.iter().find(|s| s.uid == first.uid).expect("tracked");
    assert_eq!(
        first_seen.outcome, None,
        "{} finished by itself: not a replacement",
        first.name
    );
    assert_eq!(
        tracker.max_active("swap"),
        1,
        "two Jobs ran (not being deleted) at once under Replace: {}\nhistory: {}",
        describe(&seen),
        tracker.history("swap")
    );
    let s = get(&env.schedules, "swap").await;
    assert_counter(&s, "succeededSessions", 0);
    assert!(counter(&s, "activeCount") <= 1, "{}", counters(&s));
}

// ---------------------------------------------------------------------
// 4. startingDeadlineSeconds
// ---------------------------------------------------------------------

/// Sessions that passed while the operator was down, further back than
/// the starting deadline, are missed, not run late; the next on-time
/// session runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_starting_deadline_are_missed() {
    let env = setup("sched-deadline").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    // 1 real second = 10 virtual seconds: a session every 6 s, a 30 s
    // (3 real s) starting deadline.
    let mut op = Operator::start(&env.ns.name, &["--time-scale", "10"]).await;
    apply(
        &env.schedules,
        &manifest(
            "late",
            "* * * * *",
            &[],
            json!({"startingDeadlineSeconds": 30}),
        ),
    )
    .await;

    tracker.wait_job("the first Job", "late", |_| true).await;
    op.terminate().await;
    let missed_before = counter(&get(&env.schedules, "late").await, "missedSessions");
    let last_before = tracker
        .of("late")
        .iter()
        .filter_map(|s| s.session)
        .max()
        .expect("a session");

    // Down for three sessions and then 40 s more: the third is past the
    // 30 s deadline too, and the next is 20 s ahead.
    let restart_at = last_before + 3 * MINUTE + 40;
    op.wait_until_virtual(restart_at as f64).await;
    op.restart().await;

    let next = tracker
        .wait_job("a Job after the restart", "late", |s| {
            s.session > Some(last_before)
        })
        .await;
    let next_session = next.session.expect("a session");
    let skipped = (next_session - last_before) / MINUTE - 1;
    assert!(
        next_session > restart_at - 30,
        "{} is for a session more than 30 s older than the restart (virtual {}): \
         it was past its starting deadline",
        next.name,
        rfc3339_utc(restart_at)
    );
    assert_eq!(
        next_session,
        last_before + 4 * MINUTE,
        "expected the first on-time session after the restart"
    );
    assert!(skipped >= 3, "only {skipped} sessions fell in the downtime");
    let s = eventually(
        &format!("missedSessions = {missed_before} + {skipped}"),
        DEADLINE,
        || async {
            let s = get(&env.schedules, "late").await;
            if counter(&s, "missedSessions") == missed_before + skipped {
                Ok(s)
            } else {
                Err(counters(&s))
            }
        },
    )
    .await;
    assert_eq!(
        status_time(&s, "lastMissedTime"),
        Some(next_session - MINUTE),
        "{}",
        counters(&s)
    );
    let during: Vec<Seen> = tracker
        .of("late")
        .into_iter()
        .filter(|j| j.session > Some(last_before) && j.session < Some(next_session))
        .collect();
    assert!(during.is_empty(), "Jobs for missed sessions: {during:?}");
}

// ---------------------------------------------------------------------
// 5. suspend, then unsuspend (RunLatest)
// ---------------------------------------------------------------------

/// No Jobs while suspended; on unsuspend the default missed-session
/// policy runs the latest missed session only and counts the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuspend_runs_the_latest_missed_session_only() {
    let env = setup("sched-suspend").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    // A session every 2 real seconds.
    let op = Operator::start(&env.ns.name, &["--time-scale", "30"]).await;
    apply(
        &env.schedules,
        &manifest("pause", "* * * * *", &[], json!({})),
    )
    .await;
    tracker.wait_job("the first Job", "pause", |_| true).await;

    patch_spec(&env.schedules, "pause", json!({"suspend": true})).await;
    let suspended = wait_observed(&env.schedules, "pause").await;
    let missed_before = counter(&suspended, "missedSessions");
    let last_before = tracker
        .of("pause")
        .iter()
        .filter_map(|s| s.session)
        .max()
        .expect("a session");

    // Four sessions pass suspended; unsuspend half-way to the fifth.
    let unsuspend_at = last_before + 4 * MINUTE + 30;
    op.wait_until_virtual(unsuspend_at as f64).await;
    let while_suspended: Vec<Seen> = tracker
        .of("pause")
        .into_iter()
        .filter(|s| s.session > Some(last_before))
        .collect();
    assert!(
        while_suspended.is_empty(),
        "Jobs created while suspended: {}",
        describe(&while_suspended)
    );
    patch_spec(&env.schedules, "pause", json!({"suspend": false})).await;

    let latest_missed = last_before + 4 * MINUTE;
    tracker
        .wait_job("the next on-time session's Job", "pause", |s| {
            s.session > Some(latest_missed)
        })
        .await;
    let after: Vec<i64> = tracker
        .of("pause")
        .iter()
        .filter_map(|s| s.session)
        .filter(|&s| s > last_before && s <= latest_missed)
        .collect();
    assert_eq!(
        after,
        vec![latest_missed],
        "expected exactly one Job for the missed sessions {}..={}, the latest",
        rfc3339_utc(last_before + MINUTE),
        rfc3339_utc(latest_missed)
    );
    eventually(
        &format!("missedSessions = {missed_before} + 3"),
        DEADLINE,
        || async {
            let s = get(&env.schedules, "pause").await;
            if counter(&s, "missedSessions") == missed_before + 3 {
                Ok(())
            } else {
                Err(counters(&s))
            }
        },
    )
    .await;
    assert!(tracker.duplicates("pause").is_empty());
}

// ---------------------------------------------------------------------
// 6. History limits
// ---------------------------------------------------------------------

/// Finished Jobs beyond the history limits are deleted, oldest first,
/// and every session is still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_keep_the_newest_finished_jobs() {
    let env = setup("sched-history").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    let limits = json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1});
    apply(
        &env.schedules,
        &manifest("good", "* * * * *", &[], limits.clone()),
    )
    .await;
    apply(
        &env.schedules,
        &manifest("bad", "* * * * *", &[(OUTCOME, "fail")], limits),
    )
    .await;

    eventually("5 succeeded and 4 failed sessions", DEADLINE, || async {
        let good = tracker.sessions_with("good", Outcome::Succeeded).len();
        let bad = tracker.sessions_with("bad", Outcome::Failed).len();
        if good >= 5 && bad >= 4 {
            Ok(())
        } else {
            Err(format!("{good} succeeded, {bad} failed"))
        }
    })
    .await;
    for name in ["good", "bad"] {
        patch_spec(&env.schedules, name, json!({"suspend": true})).await;
    }
    for name in ["good", "bad"] {
        wait_observed(&env.schedules, name).await;
    }

    for (name, outcome, kept) in [("good", Outcome::Succeeded, 2), ("bad", Outcome::Failed, 1)] {
        let (field, other) = match outcome {
            Outcome::Succeeded => ("succeededSessions", "failedSessions"),
            Outcome::Failed => ("failedSessions", "succeededSessions"),
        };
        eventually(
            &format!("{name}: counters right and the newest {kept} finished Jobs kept"),
            DEADLINE,
            || async {
                let seen = tracker.of(name);
                let s = get(&env.schedules, name).await;
                let truth = tracker.sessions_with(name, outcome);
                let newest: BTreeSet<i64> = truth.iter().rev().take(kept).copied().collect();
                let left: BTreeSet<i64> = jobs_of(&env.jobs, name)
                    .await
                    .iter()
                    .filter(|j| j.metadata.deletion_timestamp.is_none())
                    .map(session_of)
                    .collect();
                let settled = seen.iter().all(|j| j.outcome.is_some());
                if settled
                    && counter(&s, field) == truth.len() as i64
                    && counter(&s, other) == 0
                    && left == newest
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{}; {} sessions ended {outcome:?}; Jobs left {left:?}, newest {newest:?}; \
                         seen {}",
                        counters(&s),
                        truth.len(),
                        describe(&seen)
                    ))
                }
            },
        )
        .await;
        assert!(
            tracker.duplicates(name).is_empty(),
            "{name} ran a session twice"
        );
    }
    assert_event_about(&env, "Schedule", "bad", "Warning", "SessionFailed").await;
}

// ---------------------------------------------------------------------
// 7. Time zone and the session environment
// ---------------------------------------------------------------------

/// A Job carries its session everywhere, in the schedule's zone: name,
/// labels (Job and pods), annotations and the environment of every
/// container agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_carry_the_session_in_the_schedules_zone() {
    const ZONE: &str = "America/New_York";
    let env = setup("sched-zone").await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    let containers = json!([
        {
            "name": "main",
            "image": "busybox:1.37",
            "command": ["sh", "-c", "echo \"$SESSION_TIME\""],
            "env": [{"name": "SCHEDULE_NAME", "value": "set-by-the-user"}],
        },
    ]);
    let init = json!([{"name": "init", "image": "busybox:1.37", "command": ["true"]}]);
    let created = apply(
        &env.schedules,
        &manifest(
            "ny",
            "* * * * *",
            &[(RUN_FOR, "20s")],
            json!({
                "timeZone": ZONE,
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": containers,
                    "initContainers": init,
                }}}},
            }),
        ),
    )
    .await;
    let schedule_uid = created.metadata.uid.expect("a uid");

    let job = eventually("a Job of ny", DEADLINE, || async {
        jobs_of(&env.jobs, "ny")
            .await
            .into_iter()
            .next()
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    let name = job.metadata.name.clone().expect("a name");
    let session = session_of(&job);
    let local = local_rfc3339(session, ZONE);

    assert_eq!(name, format!("ny-{session}"));
    assert_eq!(session % MINUTE, 0, "{name} is not on a minute");
    assert_eq!(label(&job, LABEL_SCHEDULE), Some("ny"));
    assert_eq!(
        annotation(&job, ANNOTATION_SESSION_TIME),
        Some(local.as_str())
    );
    assert!(
        local.ends_with("-05:00") || local.ends_with("-04:00"),
        "{local} is not in New York's offsets"
    );
    assert_eq!(annotation(&job, ANNOTATION_ATTEMPT_NAME), Some("ny"));
    let uuid = annotation(&job, ANNOTATION_SESSION_UUID).expect("a session-uuid annotation");
    let parsed = uuid::Uuid::parse_str(uuid).expect("session-uuid is a UUID");
    assert_eq!(parsed.get_version_num(), 5, "session-uuid {uuid} is not v5");

    // Ownership: controlled by the Schedule, held by the outcome
    // finalizer while it runs.
    let owners = job.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "Schedule");
    assert_eq!(owners[0].name, "ny");
    assert_eq!(owners[0].uid, schedule_uid);
    assert_eq!(owners[0].controller, Some(true));
    if outcome(&job).is_none() {
        assert!(
            holds_outcome(&job),
            "running Job {name} lacks the {JOB_FINALIZER} finalizer"
        );
    }

    let spec = job.spec.clone().expect("a Job spec");
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        pod_labels.get(LABEL_SCHEDULE).map(String::as_str),
        Some("ny")
    );
    assert_eq!(
        pod_labels.get(LABEL_SESSION).map(String::as_str),
        Some(session.to_string().as_str())
    );

    let pod = spec.template.spec.expect("a pod spec");
    let env_of = |c: &Container| -> BTreeMap<String, Option<String>> {
        let vars: Vec<_> = c.env.iter().flatten().collect();
        let distinct: BTreeSet<_> = vars.iter().map(|v| v.name.clone()).collect();
        assert_eq!(
            distinct.len(),
            vars.len(),
            "container {} has a variable twice",
            c.name
        );
        vars.into_iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    };
    let expected = [
        ("SESSION_TIME", local.clone()),
        ("SESSION_UNIXTIME", session.to_string()),
        ("SESSION_DATE", local[..10].to_string()),
        ("SESSION_DATE_COMPACT", local[..10].replace('-', "")),
        ("SESSION_UUID", uuid.to_string()),
        ("LAST_SESSION_TIME", local_rfc3339(session - MINUTE, ZONE)),
        ("NEXT_SESSION_TIME", local_rfc3339(session + MINUTE, ZONE)),
        ("ATTEMPT_NAME", "ny".to_string()),
    ];
    let containers: Vec<&Container> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .collect();
    assert_eq!(containers.len(), 2);
    for container in containers {
        let vars = env_of(container);
        for (var, value) in &expected {
            assert_eq!(
                vars.get(*var).cloned().flatten().as_deref(),
                Some(value.as_str()),
                "{var} in container {} of {name}",
                container.name
            );
        }
        // An empty value is stored as no value.
        assert_eq!(
            vars.get("BACKFILL_NAME")
                .map(|v| v.clone().unwrap_or_default()),
            Some(String::new()),
            "BACKFILL_NAME in container {} of {name}",
            container.name
        );
        let schedule_name = if container.name == "main" {
            "set-by-the-user"
        } else {
            "ny"
        };
        assert_eq!(
            vars.get("SCHEDULE_NAME").cloned().flatten().as_deref(),
            Some(schedule_name),
            "SCHEDULE_NAME in container {}: the user's value wins",
            container.name
        );
    }
}

// ---------------------------------------------------------------------
// 8. Owner references
// ---------------------------------------------------------------------

/// Deleting a Schedule deletes its Jobs, through the garbage collector,
/// the operator letting go of their finalizers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_schedule_deletes_its_jobs() {
    let env = setup("sched-owner").await;
    let _op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    apply(
        &env.schedules,
        &manifest(
            "doomed",
            "* * * * *",
            &[(RUN_FOR, "10s")],
            json!({"successfulJobsHistoryLimit": 10}),
        ),
    )
    .await;
    let jobs = eventually("two Jobs of doomed", DEADLINE, || async {
        let jobs = jobs_of(&env.jobs, "doomed").await;
        if jobs.len() >= 2 {
            Ok(jobs)
        } else {
            Err(format!("Jobs: {:?}", names(&jobs)))
        }
    })
    .await;
    let uid = get(&env.schedules, "doomed").await.metadata.uid;
    for job in &jobs {
        let owner = job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .unwrap_or_else(|| panic!("{:?} has no controller owner", job.metadata.name));
        assert_eq!(owner.kind, "Schedule");
        assert_eq!(Some(&owner.uid), uid.as_ref());
    }

    env.schedules
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("deleting the Schedule");
    eventually(
        "the Schedule and all its Jobs gone",
        Duration::from_secs(90),
        || async {
            let jobs = jobs_of(&env.jobs, "doomed").await;
            let schedule = env.schedules.get_opt("doomed").await.ok().flatten();
            if jobs.is_empty() && schedule.is_none() {
                Ok(())
            } else {
                let held: Vec<String> = jobs
                    .iter()
                    .map(|j| {
                        format!(
                            "{}(finalizers {:?}, deleting {})",
                            j.metadata.name.clone().unwrap_or_default(),
                            j.metadata.finalizers,
                            j.metadata.deletion_timestamp.is_some()
                        )
                    })
                    .collect();
                Err(format!(
                    "Schedule exists: {}; Jobs left: {held:?}",
                    schedule.is_some()
                ))
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------
// 9. Crashes
// ---------------------------------------------------------------------

/// SIGKILL at awkward moments (just after a Job is created, just after one
/// finishes, just after one is deleted by the history limit), three
/// times: no session ever gets a second Job, and the counters match what
/// really happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_neither_duplicate_jobs_nor_bend_counters() {
    let env = setup("sched-crash").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let mut op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    let end = floor_to(op.virtual_now(), MINUTE) + 16 * MINUTE + 30;
    apply(
        &env.schedules,
        &manifest(
            "sturdy",
            "* * * * *",
            &[],
            json!({"endTime": rfc3339_utc(end)}),
        ),
    )
    .await;

    type Moment = (&'static str, fn(&Seen) -> bool);
    let moments: [Moment; 3] = [
        ("a new Job appears", |_| true),
        ("a Job finishes", |s| s.outcome.is_some()),
        ("a Job is deleted", |s| s.deleted),
    ];
    for (what, pred) in moments {
        let before: BTreeSet<String> = tracker
            .of("sturdy")
            .into_iter()
            .filter(pred)
            .map(|s| s.uid)
            .collect();
        tracker
            .wait_job(&format!("the moment {what}"), "sturdy", |s| {
                pred(s) && !before.contains(&s.uid)
            })
            .await;
        op.kill();
        eprintln!("killed the operator when {what}");
        op.restart().await;
    }

    op.wait_until_virtual(end as f64 + 5.0).await;
    let schedule = eventually(
        "every Job finished and counted, and finalizers gone",
        DEADLINE,
        || async {
            let seen = tracker.of("sturdy");
            let s = get(&env.schedules, "sturdy").await;
            let succeeded = tracker.sessions_with("sturdy", Outcome::Succeeded).len() as i64;
            let held: Vec<String> = jobs_of(&env.jobs, "sturdy")
                .await
                .iter()
                .filter(|j| holds_outcome(j))
                .flat_map(|j| j.metadata.name.clone())
                .collect();
            if seen.iter().all(|j| j.outcome.is_some())
                && counter(&s, "activeCount") == 0
                && counter(&s, "succeededSessions") == succeeded
                && held.is_empty()
            {
                Ok(s)
            } else {
                Err(format!(
                    "{}; {succeeded} Jobs succeeded; finalizers on {held:?}; seen {}",
                    counters(&s),
                    describe(&seen)
                ))
            }
        },
    )
    .await;

    let seen = tracker.of("sturdy");
    let duplicates = tracker.duplicates("sturdy");
    assert!(duplicates.is_empty(), "sessions run twice: {duplicates:?}");
    let sessions: BTreeSet<i64> = seen.iter().filter_map(|s| s.session).collect();
    assert_eq!(sessions.len(), seen.len(), "{}", describe(&seen));
    for s in &seen {
        assert_eq!(s.name, format!("sturdy-{}", s.session.expect("session")));
    }
    let succeeded = tracker.sessions_with("sturdy", Outcome::Succeeded);
    assert_eq!(succeeded.len(), seen.len(), "{}", describe(&seen));
    assert_counter(&schedule, "succeededSessions", succeeded.len() as i64);
    assert_counter(&schedule, "failedSessions", 0);
    assert_counter(&schedule, "killedSessions", 0);
    // Every session from the first one to endTime either ran or was missed
    // (while the operator was down), never both.
    let first = *sessions.first().expect("a session");
    let due = minutes_between(first, end);
    assert_eq!(
        counter(&schedule, "succeededSessions") + counter(&schedule, "missedSessions"),
        due,
        "{due} sessions were due from {} to endTime {}: {}",
        rfc3339_utc(first),
        rfc3339_utc(end),
        counters(&schedule)
    );
    let jobs_created = events_about(&env, "Schedule", "sturdy")
        .await
        .iter()
        .filter(|(_, r, _)| r == "JobCreated")
        .count();
    eprintln!(
        "{} Jobs, {jobs_created} JobCreated Events, {}",
        seen.len(),
        counters(&schedule)
    );
}

// ---------------------------------------------------------------------
// 10. Bad input
// ---------------------------------------------------------------------

/// An unknown zone and a cron that never fires stall the Schedule with a
/// reason and a Warning Event, run nothing, and clear once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schedules_stall_until_fixed() {
    let env = setup("sched-invalid").await;
    let op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    apply(
        &env.schedules,
        &manifest(
            "mars",
            "* * * * *",
            &[],
            json!({"timeZone": "Mars/Olympus"}),
        ),
    )
    .await;
    apply(
        &env.schedules,
        &manifest("never", "0 0 30 2 *", &[], json!({})),
    )
    .await;

    for name in ["mars", "never"] {
        eventually(
            &format!("{name} Stalled with reason InvalidSchedule"),
            DEADLINE,
            || async {
                let s = get(&env.schedules, name).await;
                let stalled = condition(&s, "Stalled").cloned();
                match &stalled {
                    Some(c)
                        if c["status"] == "True"
                            && c["reason"] == "InvalidSchedule"
                            && c["observedGeneration"].as_i64() == s.metadata.generation =>
                    {
                        assert!(
                            !condition_is(&s, "Ready", "True"),
                            "{name} is Ready and Stalled"
                        );
                        Ok(())
                    }
                    _ => Err(format!("conditions: {}", status(&s)["conditions"])),
                }
            },
        )
        .await;
        wait_event_about(&env, "Schedule", name, "Warning", "InvalidSchedule").await;
    }
    // Three virtual minutes later, still nothing ran.
    op.wait_until_virtual(op.virtual_now() + 3.0 * MINUTE as f64)
        .await;
    for name in ["mars", "never"] {
        let jobs = jobs_of(&env.jobs, name).await;
        assert!(jobs.is_empty(), "{name} ran Jobs: {:?}", names(&jobs));
    }

    let fixes = [
        ("mars", json!({"timeZone": "UTC"})),
        ("never", json!({"schedule": "* * * * *"})),
    ];
    for (name, fix) in fixes {
        let generation = patch_spec(&env.schedules, name, fix).await;
        eventually(
            &format!("{name} Ready and no longer Stalled"),
            DEADLINE,
            || async {
                let s = get(&env.schedules, name).await;
                let ready = condition(&s, "Ready").is_some_and(|c| {
                    c["status"] == "True" && c["observedGeneration"] == generation
                });
                if ready && !condition_is(&s, "Stalled", "True") {
                    Ok(())
                } else {
                    Err(format!("conditions: {}", status(&s)["conditions"]))
                }
            },
        )
        .await;
    }
    for name in ["mars", "never"] {
        eventually(&format!("a Job of {name}"), DEADLINE, || async {
            let jobs = jobs_of(&env.jobs, name).await;
            if jobs.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(())
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------
// 11. Daylight saving
// ---------------------------------------------------------------------

/// `30 2 * * *` in New York runs once a day across the spring-forward
/// day: 02:30 does not exist on 2026-03-08, so it runs at 03:00 EDT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_schedule_runs_once_on_the_spring_forward_day() {
    const ZONE: &str = "America/New_York";
    let env = setup("sched-dst").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    // The Schedule exists before the operator starts, so the operator
    // first sees it at its virtual origin.
    apply(
        &env.schedules,
        &manifest(
            "nightly",
            "30 2 * * *",
            &[],
            json!({"timeZone": ZONE, "successfulJobsHistoryLimit": 5}),
        ),
    )
    .await;
    // One real second is one virtual hour.
    let op = Operator::start(
        &env.ns.name,
        &[
            "--time-scale",
            "3600",
            "--time-origin",
            "2026-03-07T06:00:00Z",
        ],
    )
    .await;

    let expected: [(&str, &str); 3] = [
        ("2026-03-07T07:30:00Z", "2026-03-07T02:30:00-05:00"),
        ("2026-03-08T07:00:00Z", "2026-03-08T03:00:00-04:00"),
        ("2026-03-09T06:30:00Z", "2026-03-09T02:30:00-04:00"),
    ];
    let sessions: Vec<i64> = expected
        .iter()
        .map(|(utc, _)| utc.parse::<Timestamp>().expect("RFC 3339").as_second())
        .collect();
    // Two virtual hours past the third session (and long before the
    // fourth, 2026-03-10T06:30Z).
    op.wait_until_virtual((sessions[2] + 2 * 3600) as f64).await;
    let jobs = eventually("the three Jobs", DEADLINE, || async {
        let jobs = jobs_of(&env.jobs, "nightly").await;
        let got: Vec<i64> = jobs.iter().map(session_of).collect();
        if sessions.iter().all(|s| got.contains(s)) {
            Ok(jobs)
        } else {
            Err(format!("Jobs: {:?}", names(&jobs)))
        }
    })
    .await;

    let mut got: Vec<(i64, String)> = jobs
        .iter()
        .map(|j| {
            (
                session_of(j),
                annotation(j, ANNOTATION_SESSION_TIME)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .filter(|(s, _)| *s <= sessions[2] + 2 * 3600)
        .collect();
    got.sort();
    let want: Vec<(i64, String)> = sessions
        .iter()
        .zip(expected)
        .map(|(s, (_, local))| (*s, local.to_string()))
        .collect();
    assert_eq!(got, want, "Jobs and their session-time annotations");
    for (s, local) in &want {
        assert_eq!(&local_rfc3339(*s, ZONE), local, "the test's own arithmetic");
    }
    assert!(
        tracker.duplicates("nightly").is_empty(),
        "a session ran twice: {}",
        describe(&tracker.of("nightly"))
    );
    let all: Vec<i64> = tracker
        .of("nightly")
        .iter()
        .filter_map(|s| s.session)
        .filter(|s| *s <= sessions[2] + 2 * 3600)
        .collect();
    assert_eq!(all, sessions, "every Job ever made up to then");
}

// ---------------------------------------------------------------------
// 12. The first session
// ---------------------------------------------------------------------

/// A Schedule's first session is the first one after the operator first
/// sees it, on the operator's clock: nothing before is due, nothing is
/// missed — even when that clock runs ahead of the Schedule's (real)
/// creationTimestamp, as a sped-up test clock does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_session_is_the_first_after_the_schedule_is_seen() {
    let env = setup("sched-first").await;
    let tracker = JobTracker::start_by_schedule(&env.jobs).await;
    let op = Operator::start(&env.ns.name, &["--time-scale", "60"]).await;
    // Let the virtual clock get five minutes ahead of real time.
    op.wait_until_virtual(op.virtual_now() + 5.0 * MINUTE as f64)
        .await;
    let created_at = op.virtual_now();
    apply(
        &env.schedules,
        &manifest("fresh", "* * * * *", &[], json!({})),
    )
    .await;

    let first = tracker.wait_job("the first Job", "fresh", |_| true).await;
    let session = first.session.expect("a session");
    let s = eventually("the first Job in status", DEADLINE, || async {
        let s = get(&env.schedules, "fresh").await;
        if status_time(&s, "lastScheduleTime").is_some() {
            Ok(s)
        } else {
            Err(counters(&s))
        }
    })
    .await;
    let events = events_about(&env, "Schedule", "fresh").await;
    let missed_events: Vec<_> = events
        .iter()
        .filter(|(_, r, _)| r == "SessionMissed")
        .collect();
    let evidence = format!(
        "Schedule created at virtual {}; first Job {}; status {}; SessionMissed Events {missed_events:?}",
        rfc3339_utc(created_at as i64),
        first.name,
        counters(&s)
    );
    assert!(
        session as f64 > created_at,
        "the first Job is for a session before the Schedule was created: {evidence}"
    );
    assert_eq!(
        counter(&s, "missedSessions"),
        0,
        "sessions before the Schedule existed counted as missed: {evidence}"
    );
    assert!(
        missed_events.is_empty(),
        "SessionMissed for a new Schedule: {evidence}"
    );
}
