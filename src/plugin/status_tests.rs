//! Snapshot tests of the status screen and the list: fixed Backfills
//! rendered without a cluster, with and without colour, against the
//! expected text in `tests/fixtures/plugin/`. `BLESS=1 cargo test --lib
//! plugin` rewrites those files after an intended change (review the
//! diff).

use std::path::PathBuf;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::api::{BackfillStatus, PlanPreview};
use crate::core::job::{OwnerKind, job_name};
use crate::core::plan::session_set;
use crate::core::zoned_cron::{ZonedCron, time};

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/plugin/{name}"))
}

/// Compares `actual` with the fixture `name`, or writes it with `BLESS`.
fn check(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", path.display()));
    assert_eq!(actual, expected, "{name} differs; BLESS=1 rewrites it");
}

/// Without ANSI escapes.
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Both styles: the snapshots, at most 80 columns, and the coloured one
/// the plain one with colour added (same text, same cells).
fn check_both(name: &str, bf: &Backfill, jobs: &[Job], pods: &[Pod], now: i64) {
    let plain = render(bf, jobs, pods, now, Style::PLAIN);
    let color = render(bf, jobs, pods, now, Style::COLOR);
    assert!(!plain.contains('\x1b'), "{plain}");
    assert!(color.contains('\x1b'), "{color}");
    assert_eq!(strip(&color), plain);
    for line in plain.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
    }
    check(&format!("{name}.txt"), &plain);
    check(&format!("{name}.color.txt"), &color);
}

fn backfill(name: &str, spec: serde_json::Value, status: BackfillStatus) -> Backfill {
    let spec: BackfillSpec = serde_json::from_value(spec).unwrap();
    let mut bf = Backfill::new(name, spec);
    bf.metadata.namespace = Some("demo".into());
    bf.metadata.creation_timestamp = Some(time(at("2026-01-05T00:00:00Z")));
    bf.status = Some(status);
    bf
}

fn bits(indexes: impl IntoIterator<Item = u64>) -> String {
    indexes.into_iter().collect::<Bitmap>().encode()
}

fn run_state(schedule: &str, zone: &str, from: i64, to: i64) -> RunState {
    RunState {
        schedule: schedule.into(),
        time_zone: zone.into(),
        from: Some(time(from)),
        to: Some(time(to)),
        ..RunState::default()
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: time(at("2026-01-05T00:00:00Z")),
        observed_generation: Some(1),
    }
}

/// A failed Job of `owner` for `session`, and its pod that exited 1.
fn failed_job(owner: &str, session: i64) -> (Job, Pod) {
    let name = job_name(OwnerKind::Backfill, owner, session);
    let job = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "demo"},
        "status": {"conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }]},
    }))
    .unwrap();
    let pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-x7k2p"), "namespace": "demo",
                     "labels": {"batch.kubernetes.io/job-name": name}},
        "status": {"containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }]},
    }))
    .unwrap();
    (job, pod)
}

const JAN_FROM: &str = "2026-01-01T00:00:00Z";
/// 30 hourly sessions.
const JAN_TO: &str = "2026-01-02T06:00:00Z";

fn january_spec() -> serde_json::Value {
    json!({"scheduleRef": {"name": "hourly"}, "from": JAN_FROM, "to": JAN_TO, "maxInFlight": 4})
}

fn finished_status(phase: BackfillPhase, done: u64, failed: &[u64]) -> BackfillStatus {
    let failed_count = failed.len() as i64;
    BackfillStatus {
        run_id: Some("5b7e4a8e-3f52-5b8c-9d6a-0c1e2f3a4b5c".into()),
        phase: Some(phase),
        progress: Some(format!("{done}/{done}")),
        total_estimated: done as i64,
        processed_count: done as i64,
        succeeded_count: done as i64 - failed_count,
        failed_count,
        started_at: Some(time(at("2026-01-05T00:00:05Z"))),
        completed_at: Some(time(at("2026-01-05T00:04:35Z"))),
        created_by: Some("alice@example.com".into()),
        run: Some(RunState {
            launched: done as i64,
            done: bits(0..done),
            failed: bits(failed.iter().copied()),
            ..run_state("0 * * * *", "UTC", at(JAN_FROM), at("2026-01-02T05:00:01Z"))
        }),
        ..BackfillStatus::default()
    }
}

#[test]
fn all_succeeded() {
    let bf = backfill(
        "january",
        january_spec(),
        finished_status(BackfillPhase::Succeeded, 30, &[]),
    );
    check_both("all-succeeded", &bf, &[], &[], at("2026-01-05T01:00:00Z"));
}

#[test]
fn half_failed() {
    let failed: Vec<u64> = (0..30).filter(|i| i % 2 == 1).collect();
    let bf = backfill(
        "january",
        january_spec(),
        finished_status(BackfillPhase::Failed, 30, &failed),
    );
    // The first two failed Jobs still exist (one without its pod); the
    // others were deleted.
    let (job1, pod1) = failed_job("january", at("2026-01-01T01:00:00Z"));
    let (job3, _) = failed_job("january", at("2026-01-01T03:00:00Z"));
    check_both(
        "half-failed",
        &bf,
        &[job1, job3],
        &[pod1],
        at("2026-01-05T01:00:00Z"),
    );
}

#[test]
fn running_with_windows_closed() {
    let spec = json!({
        "scheduleRef": {"name": "hourly"},
        "from": JAN_FROM, "to": "2026-01-03T00:00:00Z", "maxInFlight": 2,
        "executionWindows": {"timeZone": "UTC",
            "monday": [{"start": "22:00", "end": "06:00"}],
            "tuesday": [{"start": "22:00", "end": "06:00"}]},
    });
    let status = BackfillStatus {
        run_id: Some("run-1".into()),
        phase: Some(BackfillPhase::Waiting),
        total_estimated: 48,
        processed_count: 10,
        succeeded_count: 9,
        failed_count: 1,
        running_count: 2,
        started_at: Some(time(at("2026-01-05T22:00:00Z"))),
        next_window_start: Some(time(at("2026-01-06T22:00:00Z"))),
        run: Some(RunState {
            launched: 12,
            done: bits(0..10),
            failed: bits([4]),
            next_session: Some(time(at("2026-01-01T12:00:00Z"))),
            ..run_state("0 * * * *", "UTC", at(JAN_FROM), at("2026-01-02T23:00:01Z"))
        }),
        ..BackfillStatus::default()
    };
    let bf = backfill("windows", spec, status);
    check_both(
        "running-windows-closed",
        &bf,
        &[],
        &[],
        at("2026-01-06T08:00:00Z"),
    );
}

/// Waiting for another Job of the Schedule, with sessions `reprocess`
/// left out at the start and one decided elsewhere after it.
#[test]
fn waiting_for_another_job_with_reprocess_skips() {
    let from = at(JAN_FROM);
    let clock = ZonedCron::new("0 * * * *", Some("UTC")).unwrap();
    // 24 sessions; 3, 4 and 10 already succeeded before the start.
    let kept: Vec<i64> = (0..24)
        .filter(|i| ![3, 4, 10].contains(i))
        .map(|i| from + i * 3_600)
        .collect();
    let selected = session_set(&clock, &kept).unwrap().bitmap;
    let spec = json!({"scheduleRef": {"name": "hourly"}, "from": JAN_FROM,
                      "to": "2026-01-02T00:00:00Z"});
    let message = "session 2026-01-01T07:00:00Z runs in Job hourly-1767250800 of the Schedule; waiting for it to end";
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Waiting),
        total_estimated: 20,
        processed_count: 5,
        succeeded_count: 5,
        skipped_count: 1,
        started_at: Some(time(at("2026-01-05T00:00:00Z"))),
        preview: Some(PlanPreview {
            skipped_by_reprocess: 3,
            ..PlanPreview::default()
        }),
        run: Some(RunState {
            launched: 6,
            // Plan index 5 (session 07:00 is index 5: 3 and 4 are out) is
            // next; index 2 was decided elsewhere.
            done: bits(0..6),
            skipped: bits([2]),
            next_session: Some(time(at("2026-01-01T07:00:00Z"))),
            selected,
            ..run_state("0 * * * *", "UTC", from, at("2026-01-01T23:00:01Z"))
        }),
        conditions: vec![condition("Ready", "False", "SessionRunElsewhere", message)],
        ..BackfillStatus::default()
    };
    let mut bf = backfill("catch-up", spec, status);
    // Index 5 is still to launch: the run waits before it.
    bf.status.as_mut().unwrap().run.as_mut().unwrap().launched = 5;
    bf.status.as_mut().unwrap().run.as_mut().unwrap().done = bits(0..5);
    check_both(
        "waiting-elsewhere",
        &bf,
        &[],
        &[],
        at("2026-01-05T00:10:00Z"),
    );
}

/// Running, with sessions held back by the Schedule's `maxActiveJobs`.
#[test]
fn held_back_by_the_schedule_budget() {
    let from = at(JAN_FROM);
    let spec = json!({"scheduleRef": {"name": "hourly"}, "from": JAN_FROM,
                      "count": 12, "maxInFlight": 4});
    let message = "3 session(s) wait for capacity: the Schedule's maxActiveJobs is 3, its live runs take 1 and other backfills run 1";
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Running),
        total_estimated: 12,
        processed_count: 4,
        succeeded_count: 4,
        running_count: 1,
        waiting_for_capacity: 3,
        started_at: Some(time(at("2026-01-05T00:00:00Z"))),
        run: Some(RunState {
            launched: 5,
            done: bits(0..4),
            next_session: Some(time(from + 5 * 3_600)),
            ..run_state("0 * * * *", "UTC", from, from + 11 * 3_600 + 1)
        }),
        conditions: vec![condition("Ready", "False", "WaitingForCapacity", message)],
        ..BackfillStatus::default()
    };
    let bf = backfill("held", spec, status);
    check_both("held-back", &bf, &[], &[], at("2026-01-05T00:10:00Z"));
}

/// A hundred thousand minutely sessions (69 days): weeks × days, each
/// cell the worst of its day's 1,440 sessions.
#[test]
fn a_hundred_thousand_sessions() {
    let from = at(JAN_FROM);
    let to = from + 100_000 * 60;
    let spec = json!({"scheduleRef": {"name": "minutely"}, "from": JAN_FROM,
                      "count": 100_000, "maxInFlight": 8});
    let done = 50_000u64;
    let failed: Vec<u64> = (0..done).filter(|i| i % 5_000 == 17).collect();
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Running),
        total_estimated: 100_000,
        processed_count: done as i64,
        succeeded_count: done as i64 - failed.len() as i64,
        failed_count: failed.len() as i64,
        running_count: 8,
        started_at: Some(time(at("2026-04-01T00:00:00Z"))),
        run: Some(RunState {
            launched: done as i64 + 8,
            done: bits(0..done),
            failed: bits(failed.iter().copied()),
            ..run_state("* * * * *", "UTC", from, to)
        }),
        ..BackfillStatus::default()
    };
    let bf = backfill("big", spec, status);
    let started = std::time::Instant::now();
    check_both(
        "hundred-thousand",
        &bf,
        &[],
        &[],
        at("2026-04-01T02:00:00Z"),
    );
    eprintln!("rendered 100,000 sessions twice in {:?}", started.elapsed());
}

/// Hourly sessions in New York over the spring-forward night: 8 March
/// 2026 has no 02:00, so its cell stays empty.
#[test]
fn over_a_daylight_saving_change() {
    let from = at("2026-03-07T00:00:00-05:00");
    let last = at("2026-03-09T23:00:00-04:00");
    let spec = json!({"scheduleRef": {"name": "hourly-ny"},
                      "from": "2026-03-07T00:00:00-05:00", "to": "2026-03-10T00:00:00-04:00"});
    // 24 + 23 + 24 sessions.
    let total = 71u64;
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Running),
        total_estimated: total as i64,
        processed_count: 40,
        succeeded_count: 38,
        failed_count: 1,
        killed_count: 1,
        running_count: 1,
        started_at: Some(time(at("2026-03-10T12:00:00Z"))),
        preview: Some(PlanPreview {
            estimated_completion: Some(time(at("2026-03-10T13:30:00Z"))),
            ..PlanPreview::default()
        }),
        run: Some(RunState {
            launched: 41,
            done: bits(0..40),
            failed: bits([25]),
            killed: bits([26]),
            ..run_state("0 * * * *", "America/New_York", from, last + 1)
        }),
        ..BackfillStatus::default()
    };
    let bf = backfill("dst", spec, status);
    let plan = crate::core::backfill::frozen_plan(
        &bf.spec,
        bf.status.as_ref().unwrap().run.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(plan.count(), total);
    check_both(
        "dst-spring-forward",
        &bf,
        &[],
        &[],
        at("2026-03-10T12:30:00Z"),
    );
}

/// The largest plan allowed (600,000 minutely sessions, over 416 days)
/// still fits 80 columns: several weeks per column.
#[test]
fn the_largest_plan_fits_eighty_columns() {
    let from = at(JAN_FROM);
    let to = from + 600_000 * 60;
    let spec = json!({"scheduleRef": {"name": "minutely"}, "from": JAN_FROM, "count": 600_000});
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Running),
        total_estimated: 600_000,
        run: Some(run_state("* * * * *", "UTC", from, to)),
        ..BackfillStatus::default()
    };
    let bf = backfill("year", spec, status);
    let screen = render(&bf, &[], &[], from, Style::PLAIN);
    assert!(screen.contains("600000 sessions"), "{screen}");
    assert!(
        screen.contains("a row per weekday, a column per week"),
        "{screen}"
    );
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
    }
}

#[test]
fn a_dry_run_has_no_heatmap_yet() {
    let status = BackfillStatus {
        phase: Some(BackfillPhase::Planned),
        total_estimated: 30,
        ..BackfillStatus::default()
    };
    let bf = backfill("plan-only", january_spec(), status);
    let screen = render(&bf, &[], &[], at("2026-01-05T00:00:00Z"), Style::PLAIN);
    assert_eq!(
        screen,
        "Backfill demo/plan-only of Schedule hourly\n\
         Phase     Planned\n\
         Progress  [........................................] 0/30 (0%)\n          \
         0 succeeded, 0 failed, 0 killed, 0 running, 30 queued, 0 skipped\n\
         ETA       unknown (no session finished yet)\n\
         Window    always open (no execution windows)\n\
         \n\
         No sessions to draw: the plan is frozen when the run starts (this is a dry run; see status.preview).\n"
    );
}

#[test]
fn list_shows_progress_and_wide_columns() {
    let mut done = backfill(
        "january",
        january_spec(),
        finished_status(BackfillPhase::Failed, 30, &[1, 3]),
    );
    done.metadata.creation_timestamp = Some(time(at("2026-01-05T00:00:00Z")));
    let mut running = backfill(
        "february",
        january_spec(),
        BackfillStatus {
            phase: Some(BackfillPhase::Running),
            total_estimated: 40,
            processed_count: 10,
            succeeded_count: 10,
            ..BackfillStatus::default()
        },
    );
    running.metadata.creation_timestamp = Some(time(at("2026-01-05T00:55:00Z")));
    let now = at("2026-01-05T01:00:00Z");
    assert_eq!(
        crate::plugin::list::render_list(&[done.clone(), running.clone()], now, false, false),
        "NAME       SCHEDULE   PHASE     PROGRESS             SUCCEEDED   FAILED   AGE\n\
         january    hourly     Failed    [##########] 30/30   28          2        60m\n\
         february   hourly     Running   [##........] 10/40   10          0        5m\n"
    );
    assert_eq!(
        crate::plugin::list::render_list(&[done], now, true, true),
        "NAMESPACE   NAME      SCHEDULE   PHASE    PROGRESS             SUCCEEDED   FAILED   AGE   RUN ID                                 STARTED                COMPLETED\n\
         demo        january   hourly     Failed   [##########] 30/30   28          2        60m   5b7e4a8e-3f52-5b8c-9d6a-0c1e2f3a4b5c   2026-01-05T00:00:05Z   2026-01-05T00:04:35Z\n"
    );
}

/// Paused by its failure budget, after an approval: who approved, the
/// budget and what spent it.
#[test]
fn paused_by_its_failure_budget_after_an_approval() {
    let spec = json!({
        "scheduleRef": {"name": "hourly"},
        "from": JAN_FROM, "to": "2026-01-01T10:00:00Z", "maxInFlight": 1,
        "failureBudget": {"maxFailed": 3, "action": "Pause"},
        "approved": true,
    });
    let status = BackfillStatus {
        run_id: Some("run-1".into()),
        phase: Some(BackfillPhase::Paused),
        total_estimated: 10,
        processed_count: 5,
        succeeded_count: 2,
        failed_count: 3,
        started_at: Some(time(at("2026-01-05T10:00:00Z"))),
        approval: Some(crate::api::ApprovalStatus {
            required_above_credits: 20.0,
            credits: 100.0,
            approved_by: Some("system:serviceaccount:team:approver".into()),
            approved_at: Some(time(at("2026-01-05T10:00:00Z"))),
            selection: None,
        }),
        failure_budget: Some(crate::api::FailureBudgetStatus {
            counted_from: 0,
            failed: 3,
            processed: 5,
            exhausted_at: Some(time(at("2026-01-05T10:05:00Z"))),
            resume_request: None,
            resumes: 0,
        }),
        run: Some(RunState {
            launched: 5,
            done: bits(0..5),
            failed: bits([2, 3, 4]),
            next_session: Some(time(at("2026-01-01T05:00:00Z"))),
            ..run_state("0 * * * *", "UTC", at(JAN_FROM), at("2026-01-01T09:00:01Z"))
        }),
        ..BackfillStatus::default()
    };
    let bf = backfill("fragile", spec, status);
    check_both(
        "paused-failure-budget",
        &bf,
        &[],
        &[],
        at("2026-01-05T10:10:00Z"),
    );
}
