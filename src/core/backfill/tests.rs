//! The Backfill decide step, driven through whole runs.

use super::*;
use crate::api::Reprocess;
use crate::api::{BackfillPhase, BackfillSpec, BackfillStatus, ScheduleSpec};
use crate::api::{ExecutionWindows, Window};
use crate::core::Plan;
use crate::core::capacity::{Budget, Claimant};
use crate::core::decision::{Decision, Status};
use crate::core::job::OwnerKind;
use crate::core::ledger::LedgerIndex;
use crate::core::observed::JobState;
use crate::core::observed::{ObservedJob, Outcome};
use crate::core::zoned_cron::at;
use crate::core::zoned_cron::seconds;
use crate::core::zoned_cron::{rfc3339_utc, time};

fn schedule(cron: &str) -> ScheduleSpec {
    ScheduleSpec {
        schedule: cron.into(),
        credits_per_session: Some(2.5),
        ..ScheduleSpec::default()
    }
}

fn spec() -> BackfillSpec {
    BackfillSpec {
        from: Some(time(at("2026-01-01T00:00:00Z"))),
        to: Some(time(at("2026-01-02T06:00:00Z"))),
        max_in_flight: Some(4),
        ..BackfillSpec::of("hourly")
    }
}

/// A Backfill driven through its life as the controller would drive
/// it, with Jobs that finish as `outcome` says.
struct Sim {
    spec: BackfillSpec,
    schedule: ScheduleSpec,
    status: BackfillStatus,
    jobs: Vec<ObservedJob>,
    created: Vec<i64>,
    now: i64,
    /// The `backfill.dev/rerun-failed` annotation.
    rerun: Option<String>,
    /// The `backfill.dev/rerun-requested-by` annotation.
    rerun_requested_by: Option<String>,
    ledger: LedgerIndex,
    /// Sessions other Jobs of the Schedule run now.
    elsewhere: std::collections::BTreeMap<i64, String>,
    /// Who asked, as the controller reads it.
    created_by: Option<String>,
    /// The Schedule's `maxActiveJobs` budget, as the controller reads it.
    budget: Option<Budget>,
    /// The `backfill.dev/resume` annotation.
    resume: Option<String>,
    /// The `backfill.dev/approved-by` annotation.
    approved_by: Option<String>,
}

impl Sim {
    fn new(spec: BackfillSpec) -> Self {
        Self {
            spec,
            schedule: schedule("0 * * * *"),
            status: BackfillStatus::default(),
            jobs: vec![],
            created: vec![],
            now: at("2026-06-01T00:00:00Z"),
            rerun: None,
            rerun_requested_by: None,
            ledger: LedgerIndex::default(),
            elsewhere: Default::default(),
            created_by: Some("kubectl".into()),
            budget: None,
            resume: None,
            approved_by: None,
        }
    }

    /// `decide` on this Backfill as it stands, with or without its
    /// Schedule, created at `created`, at `now`; nothing is kept.
    fn decide_with(
        &self,
        schedule: Option<&ScheduleSpec>,
        created: Option<i64>,
        now: i64,
    ) -> Decision<BackfillStatus> {
        decide(&BackfillView {
            name: "bf",
            namespace: Some("ns"),
            uid: "uid-1",
            schedule_uid: "schedule-uid",
            generation: Some(1),
            spec: &self.spec,
            status: &self.status,
            created_by: self.created_by.clone(),
            schedule,
            jobs: &self.jobs,
            recent_durations: &[120, 60, 90],
            rerun_request: self.rerun.as_deref(),
            resume_request: self.resume.as_deref(),
            approved_by: self.approved_by.as_deref(),
            rerun_requested_by: self.rerun_requested_by.as_deref(),
            ledger: &self.ledger,
            run_elsewhere: &self.elsewhere,
            budget: self.budget.as_ref(),
            created,
            now,
        })
    }

    fn step(&mut self) -> Decision<BackfillStatus> {
        let d = self.decide_with(Some(&self.schedule), None, self.now);
        self.status = d.status.clone();
        for new in &d.create {
            self.created.push(new.session.at);
            // The Job as the controller reads it back.
            let mut job = ObservedJob::of(&new.job, OwnerKind::Backfill, "bf");
            assert_eq!(
                (job.session, job.plan_index, job.has_finalizer),
                (Some(new.session.at), new.plan_index, true)
            );
            job.uid = format!("u{}", new.plan_index.unwrap());
            self.jobs.push(job);
        }
        for j in &mut self.jobs {
            if d.release.contains(&j.name) {
                j.has_finalizer = false;
            }
            if d.delete.contains(&j.name) {
                j.deleting = true;
            }
        }
        d
    }

    /// Finishes every running Job; sessions in `fail` fail.
    fn finish_all(&mut self, fail: &[i64]) {
        for j in self.jobs.iter_mut().filter(|j| j.running()) {
            j.state = if fail.contains(&j.session.unwrap()) {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
        }
    }

    fn run_to_end(&mut self, fail: &[i64]) {
        for _ in 0..1_000 {
            let d = self.step();
            if matches!(
                d.status.phase,
                Some(BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled)
            ) && d.status.running_count == 0
            {
                return;
            }
            self.finish_all(fail);
            self.now += 60;
        }
        panic!("did not finish");
    }
}

#[test]
fn a_dry_run_plans_estimates_and_creates_nothing() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        ..spec()
    });
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(BackfillPhase::Planned));
    assert_eq!(d.status.total_estimated, 30);
    let cost = d.status.cost_estimate.clone().unwrap();
    assert_eq!(
        (cost.total_entities, cost.total_credits_estimated),
        (30, 75.0)
    );
    let preview = d.status.preview.clone().unwrap();
    assert_eq!(preview.first.len(), PREVIEW);
    assert_eq!(preview.last.last(), Some(&time(at("2026-01-02T05:00:00Z"))));
    assert!(preview.boundaries.unwrap().contains("(exclusive)"));
    // 30 sessions, 4 at a time, 90 s each (the median): 8 batches.
    assert_eq!(preview.estimated_completion, Some(time(s.now + 8 * 90)));
    assert!(d.status.run_id.is_none());
    assert!(d.notes.iter().any(|n| n.reason == "Planned"));
    let ready = find_condition(&d.status.conditions, "Ready").unwrap();
    assert_eq!(ready.status, "True");
    // Turning dryRun off starts it.
    s.spec.dry_run = None;
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Running));
    assert_eq!(d.create.len(), 4);
    assert_eq!(d.status.run_id.as_deref(), Some(run_id("uid-1").as_str()));
    assert_eq!(d.status.schedule_uid.as_deref(), Some("schedule-uid"));
}

#[test]
fn never_more_than_max_in_flight_and_counters_add_up() {
    let mut s = Sim::new(spec());
    let fail: Vec<i64> = [1, 7, 8, 20, 29]
        .iter()
        .map(|h| at("2026-01-01T00:00:00Z") + h * 3_600)
        .collect();
    for _ in 0..100 {
        let d = s.step();
        assert!(s.jobs.iter().filter(|j| j.running()).count() <= 4);
        if d.status.completed_at.is_some() {
            break;
        }
        s.finish_all(&fail);
        s.now += 60;
    }
    let st = &s.status;
    assert_eq!(st.phase, Some(BackfillPhase::Failed));
    assert_eq!(
        (
            st.succeeded_count,
            st.failed_count,
            st.processed_count,
            st.total_estimated
        ),
        (25, 5, 30, 30)
    );
    assert_eq!(st.progress.as_deref(), Some("30/30"));
    assert_eq!(s.created.len(), 30);
    let failures = st.failed_sessions.clone().unwrap();
    assert_eq!(failures.count, 5);
    assert_eq!(
        failures.preview.iter().map(seconds).collect::<Vec<_>>(),
        fail
    );
    assert!(st.completed_at.is_some());
    // In plan order, oldest first.
    let mut sorted = s.created.clone();
    sorted.sort();
    assert_eq!(s.created, sorted);
}

#[test]
fn jobs_the_cache_does_not_show_yet_are_in_flight() {
    let mut s = Sim::new(spec());
    assert_eq!(s.step().create.len(), 4);
    // The next pass comes before the watch shows the four Jobs.
    let seen = std::mem::take(&mut s.jobs);
    let d = s.step();
    assert!(d.create.is_empty(), "launched past maxInFlight");
    assert_eq!(d.status.running_count, 4);
    s.jobs = seen;
    s.finish_all(&[]);
    assert_eq!(s.step().create.len(), 4);
}

#[test]
fn outcomes_count_once_when_finalizer_removal_is_lost() {
    let mut s = Sim::new(spec());
    s.step();
    s.finish_all(&[]);
    let d = s.step();
    assert_eq!(d.status.succeeded_count, 4);
    // The finalizers did not come off (a crash): seen again, not
    // counted again.
    for j in &mut s.jobs {
        j.has_finalizer = true;
    }
    let d = s.step();
    assert_eq!(d.status.succeeded_count, 4);
    assert_eq!(d.release.len(), 4);
}

#[test]
fn a_lost_status_write_launches_the_same_sessions_again_by_name() {
    let mut s = Sim::new(spec());
    let before = s.status.clone();
    let first = s.step();
    // The status write was lost and the Job cache has not caught up:
    // the same decision again, the same sessions (so the same Job
    // names, and the creates find the Jobs made before).
    s.status = before;
    s.jobs.clear();
    let again = s.step();
    assert_eq!(first.create, again.create);
    assert_eq!(first.status.run_id, again.status.run_id);
}

#[test]
fn a_job_launched_by_a_pass_whose_status_was_lost_is_counted_once_it_ends() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        ..spec()
    });
    s.step();
    s.finish_all(&[]);
    // This pass counts the first Job and launches the second; its Job is
    // made, then the status write fails (the Job's finalizer stays: the
    // applier releases only after the status is written).
    let lost = s.decide_with(Some(&s.schedule), None, s.now);
    assert_eq!(lost.create.len(), 1);
    let mut job = ObservedJob::of(&lost.create[0].job, OwnerKind::Backfill, "bf");
    job.uid = "u1".into();
    s.jobs.push(job);
    // That Job ends before the next pass, which still sees `launched: 1`:
    // it takes the launch back, counts the Job once and releases it, and
    // launches the session after it.
    s.finish_all(&[]);
    let d = s.step();
    let run = d.status.run.clone().unwrap();
    assert_eq!(run.launched, 3);
    assert_eq!(d.status.succeeded_count, 2);
    assert!(d.release.contains(&s.jobs[1].name), "{:?}", d.release);
    assert_eq!(plan_indexes(&d), [2]);
    s.run_to_end(&[]);
    assert_eq!(
        (s.status.processed_count, s.status.succeeded_count),
        (30, 30),
        "{:?}",
        s.status.progress
    );
    assert_eq!(s.status.phase, Some(BackfillPhase::Succeeded));
}

/// The launch of a pass whose status write was lost, as the next pass
/// sees it, with `maxInFlight: n`: the first `n` Jobs ended, and the lost
/// pass counted them and made the Jobs of the next `n` sessions, which run
/// now. `s.status` is as before that pass.
fn lost_launch(n: i32) -> Sim {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(n),
        ..spec()
    });
    s.step();
    s.finish_all(&[]);
    let lost = s.decide_with(Some(&s.schedule), None, s.now);
    assert_eq!(lost.create.len(), n as usize);
    for new in &lost.create {
        let mut job = ObservedJob::of(&new.job, OwnerKind::Backfill, "bf");
        job.uid = format!("u{}", new.plan_index.unwrap());
        s.jobs.push(job);
    }
    s
}

/// The plan indexes a decision launches.
fn plan_indexes(d: &Decision<BackfillStatus>) -> Vec<u64> {
    d.create.iter().filter_map(|new| new.plan_index).collect()
}

#[test]
fn a_lost_launch_is_counted_while_suspended() {
    // The status write lost to the edit that suspends the Backfill: the
    // paused passes count the lost pass's Job and release it.
    let mut s = lost_launch(1);
    s.spec.suspend = Some(true);
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
    assert!(d.create.is_empty());
    assert_eq!(d.status.running_count, 1);
    s.finish_all(&[]);
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(
        (
            d.status.processed_count,
            d.status.succeeded_count,
            d.status.running_count
        ),
        (2, 2, 0)
    );
    assert_eq!(d.status.run.as_ref().unwrap().launched, 2);
    assert!(s.jobs.iter().all(|j| !j.has_finalizer), "{:?}", d.release);
    // Resumed, it goes on after that session.
    s.spec.suspend = None;
    let d = s.step();
    assert_eq!(plan_indexes(&d), [2]);
    s.run_to_end(&[]);
    // Every session once: the lost pass made one Job, the others 29.
    assert_eq!((s.status.succeeded_count, s.created.len()), (30, 29));
    assert!(!s.created.contains(&s.jobs[1].session.unwrap()));
}

#[test]
fn a_lost_launch_is_deleted_and_counted_when_cancelled() {
    let mut s = lost_launch(2);
    s.spec.cancel = Some(true);
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Cancelled));
    assert_eq!(d.delete.len(), 2, "{:?}", d.delete);
    // Deleted, the Jobs end killed; each is counted once and released.
    for j in s.jobs.iter_mut().filter(|j| j.deleting) {
        j.state = JobState::Failed;
    }
    s.step();
    let d = s.step();
    assert_eq!(
        (
            d.status.succeeded_count,
            d.status.killed_count + d.status.failed_count,
            d.status.running_count
        ),
        (2, 2, 0)
    );
    assert!(s.jobs.iter().all(|j| !j.has_finalizer));
}

#[test]
fn a_lost_launch_is_taken_back_only_up_to_a_session_the_cache_does_not_show() {
    let mut s = lost_launch(3);
    // The cache shows the Jobs of plan indexes 3 and 5, not 4 yet.
    let hidden = s.jobs.remove(4);
    assert_eq!(hidden.plan_index, Some(4));
    s.spec.suspend = Some(true);
    s.finish_all(&[]);
    let d = s.step();
    assert_eq!(d.status.run.as_ref().unwrap().launched, 4);
    assert_eq!(d.status.succeeded_count, 4);
    let last = s.jobs.iter().find(|j| j.plan_index == Some(5)).unwrap();
    assert!(last.has_finalizer, "released uncounted");
    // Once the cache shows it, all three are counted.
    s.jobs.push(hidden);
    s.finish_all(&[]);
    let d = s.step();
    assert_eq!(d.status.run.as_ref().unwrap().launched, 6);
    assert_eq!((d.status.succeeded_count, d.status.running_count), (6, 0));
    assert!(s.jobs.iter().all(|j| !j.has_finalizer));
}

#[test]
fn a_cancelled_run_lets_go_of_a_lost_launch_it_cannot_take_back() {
    let mut s = lost_launch(3);
    // The Job of plan index 3 is gone (deleted by hand, its finalizer
    // taken off), so 4 and 5 cannot be taken back; then a cancel.
    s.jobs.remove(3);
    s.spec.cancel = Some(true);
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Cancelled));
    assert_eq!(d.delete.len(), 2, "{:?}", d.delete);
    for j in s.jobs.iter_mut().filter(|j| j.deleting) {
        j.state = JobState::Failed;
    }
    let d = s.step();
    assert_eq!(d.status.run.as_ref().unwrap().launched, 3);
    assert_eq!(
        (
            d.status.processed_count,
            d.status.killed_count + d.status.failed_count
        ),
        (3, 0)
    );
    assert!(s.jobs.iter().all(|j| !j.has_finalizer), "{:?}", d.release);
    assert_eq!(
        d.notes
            .iter()
            .filter(|n| n.reason == "LaunchNotRecorded")
            .count(),
        2
    );
}

#[test]
fn a_lost_launch_past_sessions_decided_elsewhere_leaves_out_only_those_before_it() {
    let start = at("2026-01-01T00:00:00Z");
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        reprocess: Some(Reprocess::Missing),
        ..spec()
    });
    s.step();
    s.finish_all(&[]);
    // Decided by another Job of the Schedule since the start: sessions
    // 1, 3 and 4.
    for h in [1, 3, 4] {
        s.ledger
            .add_unrecorded(start + h * 3_600, Outcome::Succeeded);
    }
    let lost = s.decide_with(Some(&s.schedule), None, s.now);
    assert_eq!(
        lost.create
            .iter()
            .map(|new| (new.plan_index, new.session.at))
            .collect::<Vec<_>>(),
        [(Some(2), start + 2 * 3_600)]
    );
    let mut job = ObservedJob::of(&lost.create[0].job, OwnerKind::Backfill, "bf");
    job.uid = "u2".into();
    s.jobs.push(job);
    s.spec.suspend = Some(true);
    s.finish_all(&[]);
    let d = s.step();
    let run = d.status.run.clone().unwrap();
    assert_eq!(run.launched, 3);
    assert_eq!(run.next_session, Some(time(start + 3 * 3_600)));
    assert_eq!(
        (
            d.status.succeeded_count,
            d.status.skipped_count,
            d.status.total_estimated
        ),
        (2, 1, 29)
    );
    // Resumed, the launch leaves out 3 and 4 as ever.
    s.spec.suspend = None;
    let d = s.step();
    assert_eq!(
        d.create
            .iter()
            .map(|new| new.session.at)
            .collect::<Vec<_>>(),
        [start + 5 * 3_600]
    );
    assert_eq!(d.status.skipped_count, 3);
}

#[test]
fn newest_first_and_a_deleted_job_is_counted_once() {
    let mut s = Sim::new(BackfillSpec {
        order: Some(crate::api::SessionOrder::Newest),
        max_in_flight: Some(2),
        ..spec()
    });
    let d = s.step();
    assert_eq!(
        d.create
            .iter()
            .map(|new| rfc3339_utc(new.session.at))
            .collect::<Vec<_>>(),
        ["2026-01-02T05:00:00Z", "2026-01-02T04:00:00Z"]
    );
    // A person deletes the first Job while it runs.
    s.jobs[0].deleting = true;
    let d = s.step();
    assert_eq!(d.status.killed_count, 1);
    let d = s.step();
    assert_eq!(d.status.killed_count, 1);
    s.run_to_end(&[]);
    assert_eq!(s.status.processed_count, 30);
    assert_eq!(s.status.phase, Some(BackfillPhase::Failed));
}

#[test]
fn windows_make_it_wait_until_they_open() {
    let mut s = Sim::new(BackfillSpec {
        execution_windows: Some(ExecutionWindows {
            time_zone: Some("UTC".into()),
            // 2026-06-01 is a Monday.
            monday: vec![Window {
                start: "22:00".into(),
                end: "02:00".into(),
            }],
            ..ExecutionWindows::default()
        }),
        ..spec()
    });
    s.now = at("2026-06-01T12:00:00Z");
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(BackfillPhase::Waiting));
    assert_eq!(
        d.status.next_window_start,
        Some(time(at("2026-06-01T22:00:00Z")))
    );
    assert_eq!(d.wake_at, Some(at("2026-06-01T22:00:00Z")));
    assert!(d.notes.iter().any(|n| n.reason == "Waiting"));
    s.now = at("2026-06-01T22:00:00Z");
    let d = s.step();
    assert_eq!(d.create.len(), 4);
    assert_eq!(d.status.phase, Some(BackfillPhase::Running));
    assert_eq!(d.status.next_window_start, None);
}

#[test]
fn suspend_pauses_and_cancel_kills() {
    let mut s = Sim::new(spec());
    s.step();
    s.spec.suspend = Some(true);
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
    s.spec.suspend = None;
    s.finish_all(&[]);
    let d = s.step();
    assert_eq!(d.create.len(), 4);
    s.spec.cancel = Some(true);
    let d = s.step();
    assert_eq!(d.delete.len(), 4);
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(BackfillPhase::Cancelled));
    assert!(
        d.status.completed_at.is_none(),
        "Jobs are still being killed"
    );
    let d = s.step();
    assert_eq!(d.status.killed_count, 4);
    assert_eq!(d.status.running_count, 0);
    assert!(d.status.completed_at.is_some());
    assert_eq!(d.status.succeeded_count, 4);
}

#[test]
fn missing_schedule_and_bad_zone_stall_and_recover() {
    let mut s = Sim::new(spec());
    let d = s.decide_with(None, None, s.now);
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ScheduleNotFound")
    );
    s.schedule.time_zone = Some("Nowhere/Land".into());
    let d = s.step();
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidSchedule");
    assert!(d.create.is_empty());
    s.schedule.time_zone = None;
    let d = s.step();
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.status, "False");
    assert_eq!(d.create.len(), 4);
}

#[test]
fn a_new_backfill_waits_for_its_schedule_before_it_stalls() {
    let s = Sim::new(spec());
    let created = s.now;
    let view =
        |now: i64, schedule: Option<&ScheduleSpec>| s.decide_with(schedule, Some(created), now);
    let cond = |d: &Decision<BackfillStatus>, t: &str| {
        let c = find_condition(&d.status.conditions, t).unwrap();
        (c.status.clone(), c.reason.clone())
    };
    // Applied together with its Schedule, which is not there yet.
    let d = view(created + 5, None);
    assert_eq!(cond(&d, "Stalled").0, "False");
    assert_eq!(
        cond(&d, "Reconciling"),
        ("True".into(), "WaitingForSchedule".into())
    );
    assert_eq!(cond(&d, "Ready").0, "False");
    assert_eq!(d.status.phase, Some(BackfillPhase::Pending));
    assert_eq!(d.wake_at, Some(created + SCHEDULE_GRACE));
    assert!(d.notes.is_empty(), "no Warning while it waits");
    assert!(d.create.is_empty());
    // The Schedule appears: the Backfill starts at once.
    let d = view(created + 6, Some(&s.schedule));
    assert_eq!(cond(&d, "Stalled").0, "False");
    assert_eq!(d.create.len(), 4);
    // It never does: Stalled once the wait is over, with an Event.
    let d = view(created + SCHEDULE_GRACE, None);
    assert_eq!(
        cond(&d, "Stalled"),
        ("True".into(), "ScheduleNotFound".into())
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.warning && n.reason == "ScheduleNotFound")
    );
}
#[test]
fn a_schedule_changed_under_a_run_is_reported_once_and_ignored() {
    let mut s = Sim::new(spec());
    s.step();
    s.schedule.schedule = "30 * * * *".into();
    let d = s.step();
    let changed = find_condition(&d.status.conditions, SCHEDULE_CHANGED).unwrap();
    assert_eq!(changed.status, "True");
    assert_eq!(
        d.notes
            .iter()
            .filter(|n| n.reason == SCHEDULE_CHANGED)
            .count(),
        1
    );
    assert!(s.step().notes.iter().all(|n| n.reason != SCHEDULE_CHANGED));
    s.run_to_end(&[]);
    // The plan it started with: every session on the hour.
    assert_eq!(s.created.len(), 30);
    assert!(s.created.iter().all(|t| t % 3_600 == 0));
}

#[test]
fn an_empty_plan_succeeds_at_once_and_says_so() {
    let mut s = Sim::new(BackfillSpec {
        from: Some(time(at("2026-01-01T00:10:00Z"))),
        to: Some(time(at("2026-01-01T00:20:00Z"))),
        ..spec()
    });
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Succeeded));
    assert_eq!(d.status.total_estimated, 0);
    assert!(d.notes.iter().any(|n| n.reason == "NothingToRun"));
}

#[test]
fn count_is_frozen_and_a_changed_schedule_does_not_move_the_plan() {
    let mut s = Sim::new(BackfillSpec {
        to: None,
        count: Some(10),
        max_in_flight: Some(3),
        ..spec()
    });
    s.step();
    s.schedule.schedule = "*/5 * * * *".into();
    s.run_to_end(&[]);
    assert_eq!(s.created.len(), 10);
    assert_eq!(s.created[9], at("2026-01-01T09:00:00Z"));
    assert_eq!(s.status.phase, Some(BackfillPhase::Succeeded));
}

#[test]
fn a_hundred_thousand_sessions_half_failed_stay_small() {
    let mut s = Sim::new(BackfillSpec {
        to: None,
        count: Some(100_000),
        max_in_flight: Some(10_000),
        ..spec()
    });
    s.schedule = schedule("* * * * *");
    let fail: std::collections::HashSet<i64> = (0..100_000)
        .step_by(2)
        .map(|i| at("2026-01-01T00:00:00Z") + i * 60)
        .collect();
    for _ in 0..50 {
        let d = s.step();
        if d.status.completed_at.is_some() {
            break;
        }
        for j in s.jobs.iter_mut().filter(|j| j.running()) {
            j.state = if fail.contains(&j.session.unwrap()) {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
        }
        // Released Jobs go away, as history or TTL would take them.
        s.jobs.retain(|j| j.has_finalizer || j.running());
    }
    assert_eq!(s.status.processed_count, 100_000);
    assert_eq!(s.status.failed_count, 50_000);
    let bytes = serde_json::to_vec(&s.status).unwrap().len();
    println!("status of a 100,000-session backfill, half failed: {bytes} bytes");
    assert!(bytes < 256 * 1024, "{bytes} bytes");
    let set = s.status.failed_sessions.clone().unwrap().set.unwrap();
    assert_eq!(set.count, 50_000);

    // Its rerun child carries exactly those sessions, compactly.
    s.rerun = Some("1".into());
    let d = s.step();
    let child = d.rerun.expect("a child").child;
    assert_eq!(child.spec.sessions, None);
    assert_eq!(child.spec.session_set.as_ref(), Some(&set));
    let child_bytes = serde_json::to_vec(&child).unwrap().len();
    println!("its rerun child: {child_bytes} bytes");
    assert!(bytes + child_bytes < 256 * 1024);
    let plan = Plan::for_backfill(&s.schedule, &child.spec, None).unwrap();
    let mut want: Vec<i64> = fail.into_iter().collect();
    want.sort_unstable();
    assert_eq!(plan.iter().map(|s| s.at).collect::<Vec<_>>(), want);
}

fn failed_run(fail: &[i64], rerun: Option<&str>) -> Sim {
    let mut s = Sim::new(spec());
    s.rerun = rerun.map(str::to_string);
    s.run_to_end(fail);
    s
}

#[test]
fn a_rerun_request_waits_for_the_end_then_makes_one_child_of_the_failures() {
    let fail = [
        at("2026-01-01T03:00:00Z"),
        at("2026-01-01T07:00:00Z"),
        at("2026-01-02T05:00:00Z"),
    ];
    let mut s = Sim::new(spec());
    s.rerun = Some("1".into());
    let d = s.step();
    assert!(d.rerun.is_none(), "the parent still runs");
    let waiting = find_condition(&d.status.conditions, super::rerun::RERUN_REQUESTED).unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.reason.as_str()),
        ("True", "Waiting")
    );
    assert!(d.notes.iter().any(|n| n.reason == "RerunWaiting"));
    // Said once, not on every pass.
    s.finish_all(&fail);
    assert!(!s.step().notes.iter().any(|n| n.reason == "RerunWaiting"));

    s.run_to_end(&fail);
    let d = s.step();
    let rerun = d.rerun.clone().expect("a child once the parent finished");
    let child = &rerun.child;
    assert_eq!(child.metadata.name.as_deref(), Some("bf-rerun-1"));
    assert_eq!(child.metadata.namespace.as_deref(), Some("ns"));
    let owner = &child.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Backfill", "uid-1")
    );
    assert_eq!(
        child.metadata.labels.as_ref().unwrap()[crate::api::LABEL_PARENT],
        "bf"
    );
    assert_eq!(
        child.spec.sessions.clone().unwrap(),
        fail.iter().map(|&t| time(t)).collect::<Vec<_>>()
    );
    assert_eq!(child.spec.parent_backfill_run_id, Some(run_id("uid-1")));
    assert_eq!(child.spec.attempt_name.as_deref(), Some("bf-retry-1"));
    assert_eq!(child.spec.max_in_flight, Some(4));
    assert_eq!(rerun.sessions, 3);
    // The parent's own counters do not move.
    assert_eq!(d.status.failed_count, 3);
    assert_eq!(d.status.succeeded_count, 27);

    // Recorded: the same value again makes nothing.
    let mut d = d;
    d.status.child_created(&rerun, "child-uid");
    assert_eq!(d.status.reruns.len(), 1);
    assert_eq!(d.status.reruns[0].run_id, Some(run_id("child-uid")));
    s.status = d.status;
    assert!(s.step().rerun.is_none());
    // A new value makes a second child, under another name.
    s.rerun = Some("2".into());
    let again = s.step().rerun.unwrap();
    assert_eq!(again.child.metadata.name.as_deref(), Some("bf-rerun-2"));
    let created_by = |c: &Backfill| {
        c.metadata.annotations.as_ref().unwrap()[crate::api::ANNOTATION_CREATED_BY].clone()
    };
    assert_eq!(
        created_by(&again.child),
        "backfill-operator (rerun-failed \"2\" of bf)"
    );
    // Who asked, when the parent says: the child's author.
    s.rerun_requested_by = Some("system:serviceaccount:team-a:ci-bot".into());
    let asked = s.step().rerun.unwrap();
    assert_eq!(
        created_by(&asked.child),
        "system:serviceaccount:team-a:ci-bot"
    );
}

#[test]
fn nothing_to_rerun_is_recorded_once_without_a_child() {
    let mut s = failed_run(&[], Some("x"));
    let d = s.step();
    assert!(d.rerun.is_none());
    assert_eq!(s.status.reruns.len(), 1);
    let record = &s.status.reruns[0];
    assert_eq!((record.request.as_str(), record.name.as_ref()), ("x", None));
    assert!(
        record
            .message
            .as_deref()
            .unwrap()
            .contains("nothing to rerun")
    );
    assert!(!d.notes.iter().any(|n| n.reason == "NothingToRerun"));
}

#[test]
fn a_dry_run_or_cancelled_backfill_says_why_it_makes_no_child() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        ..spec()
    });
    s.rerun = Some("1".into());
    let d = s.step();
    assert!(d.rerun.is_none());
    let c = find_condition(&d.status.conditions, super::rerun::RERUN_REQUESTED).unwrap();
    assert_eq!(c.reason, "DryRun");
    assert!(d.notes.iter().any(|n| n.message.contains("dry run")));

    let mut s = Sim::new(spec());
    s.rerun = Some("1".into());
    s.step();
    s.spec.cancel = Some(true);
    let d = s.step();
    assert!(d.rerun.is_none());
    let c = find_condition(&d.status.conditions, super::rerun::RERUN_REQUESTED).unwrap();
    assert_eq!(c.reason, "Cancelled");
    assert!(
        d.notes
            .iter()
            .any(|n| n.warning && n.message.contains("cancelled"))
    );
}

#[test]
fn a_child_fails_partly_and_its_own_rerun_names_its_run() {
    let fail = [at("2026-01-01T03:00:00Z"), at("2026-01-01T07:00:00Z")];
    let mut parent = failed_run(&fail, Some("1"));
    let child = parent.step().rerun.unwrap().child;
    let mut c = Sim::new(child.spec.clone());
    c.rerun = Some("again".into());
    c.run_to_end(&fail[..1]);
    assert_eq!(
        (
            c.status.succeeded_count,
            c.status.failed_count,
            c.status.total_estimated
        ),
        (1, 1, 2)
    );
    let grandchild = c.step().rerun.unwrap().child;
    assert_eq!(grandchild.spec.parent_backfill_run_id, c.status.run_id);
    assert_eq!(grandchild.spec.sessions.unwrap(), vec![time(fail[0])]);
    assert_eq!(
        grandchild.spec.attempt_name.as_deref(),
        Some("bf-retry-1-retry-again")
    );
}
/// A ledger of the hourly test schedule: the first `ok` sessions of
/// spec() succeeded, the next `bad` failed.
fn ledger(ok: i64, bad: i64) -> LedgerIndex {
    use crate::core::ledger::{Ledger, Period};
    let start = at("2026-01-01T00:00:00Z");
    let mut l = Ledger::new(Period::of(start));
    for i in 0..ok + bad {
        let outcome = if i < ok {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        l.record(start + i * 3_600, outcome, "hourly", "Schedule/hourly", 0);
    }
    let mut index = LedgerIndex::default();
    index.insert(l);
    index
}

#[test]
fn reprocess_skips_what_the_ledger_says_is_done() {
    let start = at("2026-01-01T00:00:00Z");
    for (reprocess, first, total) in [
        (None, 5, 25),
        (Some(Reprocess::Failed), 5, 25),
        (Some(Reprocess::Missing), 10, 20),
        (Some(Reprocess::All), 0, 30),
    ] {
        let mut s = Sim::new(BackfillSpec {
            reprocess,
            ..spec()
        });
        s.ledger = ledger(5, 5);
        let d = s.step();
        assert_eq!(d.status.total_estimated, total, "{reprocess:?}");
        let preview = d.status.preview.clone().unwrap();
        assert_eq!(preview.skipped_by_reprocess, 30 - total);
        assert_eq!(preview.first[0], time(start + first * 3_600));
        // After the start, only what another attempt decided since
        // leaves a session out; an emptied ledger decides nothing.
        s.ledger = LedgerIndex::default();
        s.run_to_end(&[]);
        let want: Vec<i64> = (first..30).map(|i| start + i * 3_600).collect();
        let got: Vec<i64> = s.created.clone();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, want, "{reprocess:?}");
        assert_eq!(got, sorted, "oldest first");
        assert_eq!(s.status.processed_count, total);
        assert_eq!(s.status.phase, Some(BackfillPhase::Succeeded));
    }
}

#[test]
fn sessions_a_job_runs_now_are_left_out_except_by_all() {
    let start = at("2026-01-01T00:00:00Z");
    // Sessions 0-4 succeeded, 5-9 failed; 7 and 20 run now (a retry
    // by the Schedule, another Backfill's Job).
    let running = [start + 7 * 3_600, start + 20 * 3_600];
    for (reprocess, total, reason) in [
        (
            Some(Reprocess::Missing),
            19,
            "11 of 30 planned sessions skipped (5 already succeeded, 4 failed or were killed before, 2 run now by another Job of the Schedule)",
        ),
        (
            Some(Reprocess::Failed),
            23,
            "7 of 30 planned sessions skipped (5 already succeeded, 2 run now by another Job of the Schedule)",
        ),
        (Some(Reprocess::All), 30, ""),
    ] {
        let mut s = Sim::new(BackfillSpec {
            reprocess,
            ..spec()
        });
        s.ledger = ledger(5, 5);
        s.ledger.add_running(running);
        let d = s.step();
        assert_eq!(d.status.total_estimated, total, "{reprocess:?}");
        let why = d.status.preview.clone().unwrap().skipped_reason;
        assert_eq!(why.is_some(), !reason.is_empty(), "{why:?}");
        assert!(why.unwrap_or_default().contains(reason), "{reprocess:?}");
        // Those Jobs have ended by the time the run gets there.
        s.ledger = LedgerIndex::default();
        s.run_to_end(&[]);
        assert_eq!(
            running.iter().any(|r| s.created.contains(r)),
            reprocess == Some(Reprocess::All),
            "{reprocess:?}"
        );
        assert_eq!(s.status.succeeded_count, total);
    }
}

#[test]
fn outcomes_of_ended_jobs_not_recorded_yet_count_as_recorded() {
    let start = at("2026-01-01T00:00:00Z");
    for (reprocess, total) in [
        (Reprocess::Failed, 25),
        (Reprocess::Missing, 18),
        (Reprocess::All, 30),
    ] {
        let mut s = Sim::new(BackfillSpec {
            reprocess: Some(reprocess),
            ..spec()
        });
        s.ledger = ledger(5, 5);
        // Newer than the ledger: session 2 failed since; 12 failed and
        // 13 succeeded, none recorded yet.
        s.ledger.add_unrecorded(start + 2 * 3_600, Outcome::Failed);
        s.ledger.add_unrecorded(start + 12 * 3_600, Outcome::Failed);
        s.ledger
            .add_unrecorded(start + 13 * 3_600, Outcome::Succeeded);
        let d = s.step();
        assert_eq!(d.status.total_estimated, total, "{reprocess:?}");
        s.run_to_end(&[]);
        let ran = |i: i64| s.created.contains(&(start + i * 3_600));
        assert_eq!(ran(2), reprocess != Reprocess::Missing, "{reprocess:?}");
        assert_eq!(ran(12), reprocess != Reprocess::Missing, "{reprocess:?}");
        assert_eq!(ran(13), reprocess == Reprocess::All, "{reprocess:?}");
    }
}

#[test]
fn reprocess_in_a_dry_run_and_newest_first_says_why_it_skips() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        order: Some(crate::api::SessionOrder::Newest),
        reprocess: Some(Reprocess::Missing),
        ..spec()
    });
    s.ledger = ledger(3, 2);
    let d = s.step();
    let reason = d.status.preview.unwrap().skipped_reason.unwrap();
    assert!(
        reason.contains("5 of 30 planned sessions skipped (3 already succeeded, 2 failed"),
        "{reason}"
    );
    assert!(d.notes.iter().any(|n| n.message.contains(&reason)));
    s.spec.dry_run = None;
    s.run_to_end(&[]);
    let start = at("2026-01-01T00:00:00Z");
    let want: Vec<i64> = (5..30).rev().map(|i| start + i * 3_600).collect();
    assert_eq!(s.created, want, "newest first, skipped ones left out");
}

#[test]
fn a_backfill_of_sessions_that_all_succeeded_runs_nothing_and_says_so() {
    let mut s = Sim::new(spec());
    s.ledger = ledger(30, 0);
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(d.status.total_estimated, 0);
    assert_eq!(d.status.phase, Some(BackfillPhase::Succeeded));
    let note = d.notes.iter().find(|n| n.reason == "NothingToRun").unwrap();
    assert!(
        note.message.contains("30 already succeeded"),
        "{}",
        note.message
    );
}

#[test]
fn an_explicit_list_out_of_order_and_with_repeats_runs_each_session_once() {
    let t = |s: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap());
    let mut s = Sim::new(BackfillSpec {
        from: None,
        to: None,
        // 02:00, 00:00, 01:00, and 01:00 again written with another offset.
        sessions: Some(vec![
            t("2026-01-01T02:00:00Z"),
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T01:00:00Z"),
            t("2026-01-01T02:00:00+01:00"),
        ]),
        max_in_flight: Some(1),
        ..spec()
    });
    s.run_to_end(&[]);
    let st = &s.status;
    assert_eq!(st.phase, Some(BackfillPhase::Succeeded));
    assert_eq!(
        (st.total_estimated, st.processed_count, st.succeeded_count),
        (3, 3, 3)
    );
    assert_eq!(
        s.created,
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:00:00Z"
        ]
        .map(at)
    );
}

/// The Job the Backfill "bf" makes for the session at `at`, with its
/// metadata edited by `edit`, as the controller reads it back.
fn read_back(
    at: i64,
    index: u64,
    edit: impl FnOnce(&mut k8s_openapi::api::batch::v1::Job),
) -> ObservedJob {
    let clock = crate::core::ZonedCron::new("0 * * * *", None).unwrap();
    let mut job = crate::core::job::Attempt {
        kind: OwnerKind::Backfill,
        owner: crate::core::job::controller_reference::<crate::api::Backfill>("bf", "uid-1"),
        namespace: "ns",
        schedule_name: "hourly",
        schedule_uid: "schedule-uid",
        backfill_name: Some("bf"),
        attempt_name: "bf",
        clock: &clock,
        session: clock.sessions_from(at).next().unwrap(),
        plan_index: Some(index),
    }
    .build_job(&Default::default());
    edit(&mut job);
    ObservedJob::of(&job, OwnerKind::Backfill, "bf")
}

#[test]
fn labels_and_annotations_count_only_as_the_operator_wrote_them() {
    let at = at("2026-01-01T03:00:00Z");
    let as_built = read_back(at, 3, |_| {});
    assert!(as_built.as_written);
    assert_eq!((as_built.session, as_built.plan_index), (Some(at), Some(3)));
    let relabelled = read_back(at, 3, |job| {
        job.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(crate::api::LABEL_SESSION.into(), "0".into());
    });
    assert!(!relabelled.as_written);
    assert_eq!(
        (relabelled.session, relabelled.plan_index),
        (Some(at), None)
    );
    let unindexed = read_back(at, 3, |job| {
        job.metadata.annotations.as_mut().unwrap().insert(
            crate::api::ANNOTATION_PLAN_INDEX.into(),
            "not a number".into(),
        );
    });
    assert!(!unindexed.as_written);
    // Another index the Backfill did launch: its check tells.
    let moved = read_back(at, 3, |job| {
        job.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(crate::api::ANNOTATION_PLAN_INDEX.into(), "1".into());
    });
    assert!(!moved.as_written);
    assert_eq!((moved.session, moved.plan_index), (Some(at), None));
    // A Job made before the check existed is read as before.
    let older = read_back(at, 3, |job| {
        job.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(crate::api::ANNOTATION_PLAN_CHECK);
    });
    assert_eq!((older.as_written, older.plan_index), (true, Some(3)));
    // A Job named for no session of this Backfill has none.
    let renamed = read_back(at, 3, |job| job.metadata.name = Some("bf-x".into()));
    assert_eq!(renamed.session, None);
}

#[test]
fn a_job_whose_plan_index_was_edited_is_counted_by_its_name_once() {
    let mut s = Sim::new(spec());
    s.step();
    // Someone annotates a running Job with an index far past the plan (the
    // operator once tried to allocate a bitmap that long, and crashed),
    // and relabels another.
    s.jobs[0].plan_index = Some(9_000_000_000_000_000_000);
    s.jobs[1] = ObservedJob {
        uid: s.jobs[1].uid.clone(),
        ..read_back(s.jobs[1].session.unwrap(), 1, |job| {
            job.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(crate::api::LABEL_SESSION.into(), "12".into());
        })
    };
    s.finish_all(&[]);
    let d = s.step();
    let warned: Vec<_> = d
        .notes
        .iter()
        .filter(|n| n.reason == "JobNotAsWritten")
        .collect();
    assert_eq!(warned.len(), 2, "{:?}", d.notes);
    assert_eq!(d.status.processed_count, 4);
    s.run_to_end(&[]);
    let st = &s.status;
    assert_eq!(st.phase, Some(BackfillPhase::Succeeded));
    assert_eq!(
        (st.processed_count, st.succeeded_count, st.total_estimated),
        (30, 30, 30)
    );
}

#[test]
fn a_plan_past_the_session_limit_stalls_at_once_and_says_how_to_split() {
    // Minutely since 1970: 29.9 million sessions; refused after walking
    // the limit, not the whole plan.
    let mut s = Sim::new(BackfillSpec {
        from: Some(time(0)),
        to: Some(time(at("2026-11-30T00:00:00Z"))),
        ..spec()
    });
    s.schedule = schedule("* * * * *");
    s.now = at("2026-11-30T00:00:00Z");
    let started = std::time::Instant::now();
    let d = s.step();
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "PlanTooLarge")
    );
    for words in [
        "more than 600000 sessions",
        "from 1970-01-01T00:00:00Z",
        "split it",
        "ending at 1971-02-21T16:00:00Z",
    ] {
        assert!(
            stalled.message.contains(words),
            "{words}: {}",
            stalled.message
        );
    }
    assert!(d.create.is_empty() && d.status.run.is_none());
    assert!(d.notes.iter().any(|n| n.reason == "PlanTooLarge"));
    println!("refused in {:?}", started.elapsed());

    // A year of minutely sessions fits.
    s.spec.from = Some(time(at("2025-01-01T00:00:00Z")));
    s.spec.to = Some(time(at("2026-01-01T00:00:00Z")));
    s.spec.dry_run = Some(true);
    s.status = BackfillStatus::default();
    let d = s.step();
    assert_eq!(d.status.total_estimated, 525_600);
    assert_eq!(d.status.phase, Some(BackfillPhase::Planned));

    // Two listed sessions 50 years apart span too much as well: their
    // failed set would be a bitmap over every session between.
    s.spec.from = None;
    s.spec.to = None;
    s.spec.sessions = Some(vec![time(0), time(at("2020-01-01T00:00:00Z"))]);
    s.status = BackfillStatus::default();
    let d = s.step();
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.reason, "PlanTooLarge");
}

#[test]
fn the_worst_status_at_the_session_limit_stays_well_under_a_mebibyte() {
    use crate::core::bitmap::Bitmap;
    let limit = crate::core::plan::MAX_SESSIONS;
    let clock = crate::core::ZonedCron::new("* * * * *", None).unwrap();
    let from = at("2026-01-01T00:00:00Z");
    // Every session processed, alternately failed and killed; `reprocess`
    // selected every other clock session over the whole span.
    let (mut done, mut failed, mut killed, mut selected) =
        (Bitmap::new(), Bitmap::new(), Bitmap::new(), Bitmap::new());
    for i in 0..limit {
        done.insert(i);
        if i % 2 == 0 {
            failed.insert(i);
        } else {
            killed.insert(i);
        }
        selected.insert(i);
    }
    let all: Vec<i64> = clock
        .sessions_from(from)
        .take(limit as usize)
        .map(|s| s.at)
        .collect();
    let status = BackfillStatus {
        run: Some(crate::api::RunState {
            schedule: "* * * * *".into(),
            time_zone: "UTC".into(),
            from: Some(time(from)),
            to: Some(time(from + limit as i64 * 60)),
            launched: limit as i64,
            selected: selected.encode(),
            done: done.encode(),
            failed: failed.encode(),
            killed: killed.encode(),
            ..Default::default()
        }),
        failed_sessions: Some(crate::api::SessionSummary {
            count: limit as i64,
            preview: all.iter().take(10).map(|&t| time(t)).collect(),
            set: crate::core::plan::session_set(&clock, &all),
        }),
        ..Default::default()
    };
    let bytes = serde_json::to_vec(&status).unwrap().len();
    println!("worst status at {limit} sessions: {bytes} bytes");
    assert!(bytes < 600 * 1024, "{bytes} bytes");
}

mod hostile_jobs {
    //! Any Jobs at all, with any labels and annotations, into `decide`.

    use super::*;
    use proptest::prelude::*;

    /// A Job as anyone could have left it: any name (one of ours or not),
    /// session label, plan index, state and finalizer.
    fn any_job() -> impl Strategy<Value = ObservedJob> {
        (
            0i64..40,
            any::<bool>(),
            proptest::option::of(prop_oneof![0u64..40, any::<u64>()]),
            0u8..3,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(hour, named_for_us, index, state, deleting, finalizer)| {
                let at = at("2026-01-01T00:00:00Z") + hour * 3_600;
                let name = if named_for_us {
                    format!("bf-b{at}")
                } else {
                    format!("other-{hour}")
                };
                let mut job = read_back(at, 0, |job| {
                    job.metadata.name = Some(name);
                    let annotations = job.metadata.annotations.as_mut().unwrap();
                    match index {
                        Some(i) => annotations
                            .insert(crate::api::ANNOTATION_PLAN_INDEX.into(), i.to_string()),
                        None => annotations.remove(crate::api::ANNOTATION_PLAN_INDEX),
                    };
                });
                job.state =
                    [JobState::Active, JobState::Succeeded, JobState::Failed][state as usize];
                job.deleting = deleting;
                job.has_finalizer = finalizer;
                job
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Never a panic, bitmaps no longer than the plan, quickly, and the
        /// counters still add up.
        #[test]
        fn any_jobs_are_decided_safely(
            max_in_flight in 1i32..6,
            steps in 0usize..4,
            jobs in proptest::collection::vec(any_job(), 0..30),
        ) {
            let mut s = Sim::new(BackfillSpec {
                max_in_flight: Some(max_in_flight),
                ..spec()
            });
            for _ in 0..steps {
                s.step();
                s.finish_all(&[]);
            }
            s.jobs.extend(jobs);
            let started = std::time::Instant::now();
            let d = s.step();
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(2));
            let st = &d.status;
            prop_assert_eq!(
                st.processed_count,
                st.succeeded_count + st.failed_count + st.killed_count
            );
            prop_assert!(st.processed_count <= st.total_estimated);
            let run = st.run.clone().unwrap_or_default();
            // 30 sessions: four bytes of bits, in base64.
            for bits in [&run.done, &run.failed, &run.killed] {
                prop_assert!(bits.len() <= 8, "{}", bits);
            }
        }
    }
}

/// The hourly Sim with session `k` (of spec()) run by another Job now.
fn held_at(reprocess: Reprocess, k: i64) -> (Sim, i64) {
    let at = at("2026-01-01T00:00:00Z") + k * 3_600;
    let mut s = Sim::new(BackfillSpec {
        reprocess: Some(reprocess),
        ..spec()
    });
    s.elsewhere.insert(at, "hourly-other".into());
    (s, at)
}

#[test]
fn a_session_another_job_runs_waits_for_it_then_runs_or_is_left_out() {
    let start = at("2026-01-01T00:00:00Z");
    for (reprocess, other, runs_again) in [
        (Reprocess::All, Outcome::Succeeded, true),
        (Reprocess::Failed, Outcome::Succeeded, false),
        (Reprocess::Failed, Outcome::Failed, true),
        (Reprocess::Missing, Outcome::Failed, false),
    ] {
        let case = format!("{reprocess:?} after {other:?}");
        let (mut s, held) = held_at(reprocess, 2);
        let d = s.step();
        // Sessions 0 and 1 launch; 2 waits, and so does all after it.
        assert_eq!(d.create.len(), 2, "{case}");
        assert_eq!(s.status.phase, Some(BackfillPhase::Waiting), "{case}");
        let ready = find_condition(&s.status.conditions, "Ready").unwrap();
        assert_eq!(ready.reason, "SessionRunElsewhere", "{case}");
        assert!(ready.message.contains("hourly-other"), "{}", ready.message);
        let waits = |d: &Decision<BackfillStatus>| {
            d.notes
                .iter()
                .filter(|n| n.reason == Reason::SessionRunElsewhere)
                .count()
        };
        assert_eq!(waits(&d), 1, "{case}");
        assert!(d.wake_at.is_some(), "{case}");
        // Still running elsewhere: no launch, no second Event, even with
        // its own Jobs done.
        s.finish_all(&[]);
        let d = s.step();
        assert_eq!((d.create.len(), waits(&d)), (0, 0), "{case}");
        assert_eq!(s.status.phase, Some(BackfillPhase::Waiting));
        assert_eq!(s.status.processed_count, 2);
        // The other attempt ends and its outcome is known.
        s.elsewhere.clear();
        s.ledger.add_unrecorded(held, other);
        let d = s.step();
        assert_eq!(s.status.phase, Some(BackfillPhase::Running), "{case}");
        assert_eq!(
            d.create.first().map(|j| j.session.at) == Some(held),
            runs_again,
            "{case}"
        );
        let left_out = d
            .notes
            .iter()
            .any(|n| n.reason == Reason::SessionDecidedElsewhere);
        assert_eq!(left_out, !runs_again, "{case}");
        assert_eq!(d.create.len(), 4, "{case}: the slots are filled past it");
        s.run_to_end(&[]);
        let skipped = i64::from(!runs_again);
        assert_eq!(s.status.skipped_count, skipped, "{case}");
        assert_eq!(s.status.total_estimated, 30 - skipped, "{case}");
        assert_eq!(s.status.processed_count, 30 - skipped, "{case}");
        assert_eq!(s.status.succeeded_count, 30 - skipped, "{case}");
        assert_eq!(
            s.status.progress.as_deref(),
            Some(format!("{0}/{0}", 30 - skipped).as_str())
        );
        assert_eq!(s.status.phase, Some(BackfillPhase::Succeeded), "{case}");
        assert_eq!(s.created.contains(&held), runs_again, "{case}");
        let mut created = s.created.clone();
        created.dedup();
        assert_eq!(created.len(), s.created.len(), "{case}: each session once");
        let want: Vec<i64> = (0..30)
            .map(|i| start + i * 3_600)
            .filter(|&t| runs_again || t != held)
            .collect();
        assert_eq!(s.created, want, "{case}");
    }
}

#[test]
fn sessions_left_out_after_the_start_end_the_run_when_they_are_the_last() {
    // Newest first, and the last session (the oldest) is decided
    // elsewhere while this waits: the run still ends, with the counters
    // adding up.
    let (mut s, held) = held_at(Reprocess::Missing, 0);
    s.spec.order = Some(crate::api::SessionOrder::Newest);
    s.spec.max_in_flight = Some(30);
    let d = s.step();
    assert_eq!(d.create.len(), 29);
    s.finish_all(&[]);
    s.step();
    assert_eq!(s.status.phase, Some(BackfillPhase::Waiting));
    s.elsewhere.clear();
    s.ledger.add_unrecorded(held, Outcome::Succeeded);
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(s.status.phase, Some(BackfillPhase::Succeeded));
    assert_eq!(
        (
            s.status.processed_count,
            s.status.total_estimated,
            s.status.skipped_count
        ),
        (29, 29, 1)
    );
    assert!(s.status.completed_at.is_some());
}

#[test]
fn a_job_name_taken_fails_its_session_and_sets_a_condition() {
    let mut s = Sim::new(spec());
    let d = s.step();
    let mut status = d.status.clone();
    status.job_name_taken(&d.create[1], s.now + 5);
    assert_eq!((status.failed_count, status.processed_count), (1, 1));
    let c = find_condition(&status.conditions, JOB_NAME_TAKEN).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "JobNameTaken")
    );
    let name = d.create[1].job.metadata.name.clone().unwrap();
    assert!(c.message.contains(&name), "{}", c.message);
    assert_eq!(c.last_transition_time, time(s.now + 5));
}

#[test]
fn who_asked_is_kept_short() {
    let mut s = Sim::new(spec());
    s.created_by = Some(format!("  {}  ", "é".repeat(300_000)));
    s.step();
    let who = s.status.created_by.clone().unwrap();
    assert_eq!(who.chars().count(), super::start::CREATED_BY_MAX);
    assert!(who.starts_with('é') && who.ends_with('…'), "{who}");
    // Decided once.
    s.created_by = Some("someone".into());
    s.step();
    assert_eq!(s.status.created_by.as_deref(), Some(who.as_str()));
}

#[test]
fn from_alone_runs_every_session_up_to_its_start() {
    let mut s = Sim::new(BackfillSpec { to: None, ..spec() });
    // It starts on 2026-01-03 at 10:30: 58 hourly sessions from
    // 2026-01-01T00:00 run, up to 10:00; later ones are the Schedule's.
    s.now = at("2026-01-03T10:30:00Z");
    let d = s.step();
    assert_eq!(d.status.total_estimated, 59);
    assert_eq!(d.status.planned_until, Some(time(s.now)));
    s.run_to_end(&[]);
    assert_eq!(s.status.succeeded_count, 59);
    assert_eq!(s.created.last(), Some(&at("2026-01-03T10:00:00Z")));
    // Later passes keep the plan frozen at the start.
    assert_eq!(s.status.total_estimated, 59);
}

#[test]
fn a_session_shifted_by_a_spring_forward_change_is_counted() {
    let mut s = Sim::new(BackfillSpec {
        from: Some(time(at("2026-03-07T00:00:00Z"))),
        to: None,
        count: Some(3),
        max_in_flight: Some(1),
        ..spec()
    });
    s.schedule = ScheduleSpec {
        time_zone: Some("America/New_York".into()),
        ..schedule("30 2 * * *")
    };
    let all: Vec<i64> = [
        "2026-03-07T07:30:00Z",
        // 02:30 does not exist on March 8th: the session runs at 03:00 EDT.
        "2026-03-08T07:00:00Z",
        "2026-03-09T06:30:00Z",
    ]
    .map(at)
    .to_vec();
    s.run_to_end(&all);
    assert_eq!(s.created, all);
    assert_eq!(
        (s.status.processed_count, s.status.failed_count),
        (3, 3),
        "{:?}",
        s.status
    );
}

fn capacity(max_active: u64, others: &[(u64, u64)]) -> Budget {
    Budget {
        max_active,
        live_running: 0,
        others: others
            .iter()
            .enumerate()
            .map(|(i, &(running, wants))| Claimant {
                uid: format!("other-{i}"),
                running,
                wants,
                processed: 0,
            })
            .collect(),
        run_bound: None,
    }
}

#[test]
fn a_schedule_budget_leaves_the_live_schedule_its_slots_and_says_what_waits() {
    let mut s = Sim::new(spec());
    s.schedule.max_active_jobs = Some(3);
    // The hourly live run takes 1 of 3 (120 s at most, a session now);
    // another Backfill wanting 3 runs 1: the two share 2, one each.
    s.budget = Some(capacity(3, &[(1, 3)]));
    let d = s.step();
    assert_eq!(d.create.len(), 1);
    assert_eq!(s.status.phase, Some(BackfillPhase::Running));
    assert_eq!(s.status.waiting_for_capacity, 3);
    let ready = find_condition(&s.status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "WaitingForCapacity");
    assert!(
        ready
            .message
            .contains("3 session(s) wait for capacity: the Schedule's maxActiveJobs is 3, its live runs take 1 and other backfills run 1"),
        "{}",
        ready.message
    );
    let waits = |d: &Decision<BackfillStatus>| {
        d.notes
            .iter()
            .filter(|n| n.reason == Reason::WaitingForCapacity)
            .count()
    };
    assert_eq!(waits(&d), 1);
    assert!(d.wake_at.is_some());

    // The other Backfill took the free slot: nothing starts, it waits,
    // and says so once.
    s.budget = Some(capacity(3, &[(2, 3)]));
    let d = s.step();
    assert_eq!((d.create.len(), waits(&d)), (0, 0));
    assert_eq!(s.status.phase, Some(BackfillPhase::Waiting));
    assert_eq!(s.status.waiting_for_capacity, 3);
    assert_eq!(s.status.running_count, 1);

    // The other finished and so did its own Job: both slots are its.
    s.finish_all(&[]);
    s.budget = Some(capacity(3, &[(0, 0)]));
    let d = s.step();
    assert_eq!(d.create.len(), 2);
    assert_eq!(s.status.phase, Some(BackfillPhase::Running));
    assert_eq!(s.status.waiting_for_capacity, 2, "maxInFlight 4 > 2 slots");

    // No budget (maxActiveJobs removed): maxInFlight alone.
    s.budget = None;
    let d = s.step();
    assert_eq!(d.create.len(), 2);
    assert_eq!(s.status.waiting_for_capacity, 0);
    let ready = find_condition(&s.status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "Running");
    s.run_to_end(&[]);
    assert_eq!(s.status.processed_count, 30);
}

#[test]
fn the_dry_run_shows_the_budget_and_the_live_schedule_slots() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        ..spec()
    });
    s.schedule.max_active_jobs = Some(3);
    let d = s.step();
    let preview = d.status.preview.clone().unwrap();
    assert_eq!(
        (preview.max_active_jobs, preview.live_slots),
        (Some(3), Some(1))
    );
    // 30 sessions, 2 at a time (3 less the live run's), 90 s each.
    assert_eq!(preview.estimated_completion, Some(time(s.now + 15 * 90)));
    // Without it, nothing about it.
    s.schedule.max_active_jobs = None;
    let preview = s.step().status.preview.unwrap();
    assert_eq!((preview.max_active_jobs, preview.live_slots), (None, None));
    assert_eq!(preview.estimated_completion, Some(time(s.now + 8 * 90)));
}

// ---------------------------------------------------------------------
// Failure budget and cost approval
// ---------------------------------------------------------------------

use crate::api::{Approval, FailureBudget, FailureBudgetAction};

fn budget(max_failed: i64, action: FailureBudgetAction) -> Option<FailureBudget> {
    Some(FailureBudget {
        max_failed: Some(max_failed),
        action: Some(action),
        ..FailureBudget::default()
    })
}

/// The hourly sessions of the base spec from the `from`-th on.
fn sessions_from(from: i64) -> Vec<i64> {
    (from..30)
        .map(|h| at("2026-01-01T00:00:00Z") + h * 3_600)
        .collect()
}

fn reason_of(status: &BackfillStatus, type_: &str) -> String {
    find_condition(&status.conditions, type_)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[test]
fn a_spent_budget_pauses_before_the_next_launch_and_a_resume_counts_again() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        failure_budget: budget(3, FailureBudgetAction::Pause),
        ..spec()
    });
    // Every session fails from the third on.
    let fail = sessions_from(2);
    let mut spent = None;
    for _ in 0..20 {
        let d = s.step();
        if d.status.phase == Some(BackfillPhase::Paused) {
            spent = Some(d);
            break;
        }
        s.finish_all(&fail);
        s.now += 60;
    }
    let d = spent.expect("paused by the budget");
    // The pass that counted the third failure launched nothing.
    assert!(d.create.is_empty());
    assert_eq!(s.created.len(), 5, "2 succeeded, 3 failed, nothing more");
    assert_eq!((d.status.failed_count, d.status.succeeded_count), (3, 2));
    assert_eq!(reason_of(&d.status, "Ready"), "FailureBudgetExhausted");
    assert_eq!(reason_of(&d.status, "Stalled"), "Reconciled");
    let event = d
        .notes
        .iter()
        .find(|n| n.reason == "FailureBudgetExhausted")
        .expect("an Event");
    assert!(event.warning);
    for at in &fail[..3] {
        assert!(
            event.message.contains(&rfc3339_utc(*at)),
            "{}",
            event.message
        );
    }
    assert!(!d.notes.iter().any(|n| n.reason == "Paused"), "one Event");
    let state = d.status.failure_budget.clone().unwrap();
    assert_eq!(
        (state.failed, state.processed, state.counted_from),
        (3, 5, 0)
    );
    assert!(state.exhausted_at.is_some());

    // Paused: nothing starts, and no second Event.
    for _ in 0..3 {
        s.now += 60;
        let d = s.step();
        assert!(d.create.is_empty());
        assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    // A resume: launching goes on, the budget counting from here.
    s.resume = Some("1".into());
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Running));
    assert_eq!(d.create.len(), 1);
    assert!(d.notes.iter().any(|n| n.reason == "Resumed"));
    let state = d.status.failure_budget.clone().unwrap();
    assert_eq!((state.failed, state.counted_from, state.resumes), (0, 5, 1));
    // Three more failures spend it again; the same value does not resume.
    for _ in 0..10 {
        s.finish_all(&fail);
        s.now += 60;
        if s.step().status.phase == Some(BackfillPhase::Paused) {
            break;
        }
    }
    assert_eq!(s.status.phase, Some(BackfillPhase::Paused));
    assert_eq!(s.created.len(), 8);
    assert_eq!(s.status.failed_count, 6);
    s.now += 60;
    assert!(s.step().create.is_empty(), "the old value resumed it");
}

#[test]
fn jobs_running_when_the_budget_is_spent_finish_and_count() {
    let mut s = Sim::new(BackfillSpec {
        failure_budget: budget(2, FailureBudgetAction::Pause),
        ..spec()
    });
    assert_eq!(s.step().create.len(), 4);
    // Two end failed, two go on.
    let first: Vec<i64> = s.jobs.iter().map(|j| j.session.unwrap()).collect();
    for j in s.jobs.iter_mut().take(2) {
        j.state = JobState::Failed;
    }
    let d = s.step();
    assert!(d.create.is_empty());
    assert!(d.delete.is_empty(), "running Jobs finish");
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
    assert_eq!(d.status.running_count, 2);
    s.finish_all(&first);
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(
        (d.status.failed_count, d.status.running_count),
        (4, 0),
        "counted against the spent budget"
    );
    assert_eq!(d.status.failure_budget.unwrap().failed, 4);
}

#[test]
fn a_budget_with_cancel_cancels_without_killing() {
    let mut s = Sim::new(BackfillSpec {
        failure_budget: budget(1, FailureBudgetAction::Cancel),
        ..spec()
    });
    s.step();
    s.jobs[0].state = JobState::Failed;
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Cancelled));
    assert!(d.delete.is_empty() && d.create.is_empty());
    assert_eq!(reason_of(&d.status, "Ready"), "FailureBudgetExhausted");
    assert_eq!(
        reason_of(&d.status, "Reconciling"),
        "FailureBudgetExhausted"
    );
    assert!(d.status.completed_at.is_none(), "three Jobs still run");
    // A resume does not undo a cancel.
    s.resume = Some("1".into());
    s.finish_all(&[]);
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Cancelled));
    assert!(d.create.is_empty());
    assert!(d.status.completed_at.is_some());
    assert_eq!(reason_of(&d.status, "Ready"), "FailureBudgetExhausted");
    let ready = find_condition(&d.status.conditions, "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(d.status.processed_count, 4);
}

#[test]
fn a_resume_value_there_before_the_budget_was_spent_does_not_resume() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        failure_budget: budget(1, FailureBudgetAction::Pause),
        ..spec()
    });
    s.resume = Some("from-git".into());
    s.step();
    s.finish_all(&sessions_from(0));
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
    assert!(s.step().create.is_empty());
    s.resume = Some("again".into());
    assert_eq!(s.step().create.len(), 1);
}

#[test]
fn the_ratio_is_judged_once_min_processed_and_from_the_resume() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        failure_budget: Some(FailureBudget {
            max_failed_ratio: Some(0.5),
            min_processed: Some(4),
            ..FailureBudget::default()
        }),
        ..spec()
    });
    // The first two fail, the rest succeed: 2 of 4 is 50%.
    let fail = sessions_from(0)[..2].to_vec();
    for _ in 0..3 {
        s.step();
        s.finish_all(&fail);
    }
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Running), "3 processed");
    s.finish_all(&fail);
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
    assert_eq!(s.created.len(), 4);
    s.resume = Some("1".into());
    s.run_to_end(&fail);
    assert_eq!(s.status.phase, Some(BackfillPhase::Failed));
    assert_eq!(s.created.len(), 30, "no failure counted after the resume");
}

#[test]
fn the_last_failure_ends_the_run_instead_of_pausing_it() {
    let mut s = Sim::new(BackfillSpec {
        failure_budget: budget(1, FailureBudgetAction::Pause),
        ..spec()
    });
    let last = at("2026-01-02T05:00:00Z");
    s.run_to_end(&[last]);
    assert_eq!(s.status.phase, Some(BackfillPhase::Failed));
    assert!(
        s.status
            .failure_budget
            .clone()
            .unwrap()
            .exhausted_at
            .is_none()
    );
}

#[test]
fn the_budget_counts_from_the_bitmaps_not_from_edited_counters() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        failure_budget: budget(2, FailureBudgetAction::Pause),
        ..spec()
    });
    s.step();
    s.finish_all(&sessions_from(0));
    s.step();
    // Someone edits the budget's counts and points its start past the run.
    let state = s.status.failure_budget.as_mut().unwrap();
    state.failed = 0;
    state.counted_from = 1_000;
    s.status.failed_count = 0;
    s.finish_all(&sessions_from(0));
    let d = s.step();
    let state = d.status.failure_budget.clone().unwrap();
    // countedFrom is clamped to what was launched (2): the second failure
    // is after it.
    assert_eq!(state.counted_from, 2);
    s.finish_all(&sessions_from(0));
    s.step();
    s.finish_all(&sessions_from(0));
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Paused));
}

#[test]
fn removing_the_budget_lifts_its_pause() {
    let mut s = Sim::new(BackfillSpec {
        max_in_flight: Some(1),
        failure_budget: budget(1, FailureBudgetAction::Pause),
        ..spec()
    });
    s.step();
    s.finish_all(&sessions_from(0));
    assert_eq!(s.step().status.phase, Some(BackfillPhase::Paused));
    s.spec.failure_budget = None;
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Running));
    assert_eq!(d.create.len(), 1);
    assert!(d.status.failure_budget.is_none());
}

#[test]
fn a_rerun_child_inherits_the_budget_but_not_the_approval() {
    let fail = sessions_from(28);
    let mut s = Sim::new(BackfillSpec {
        failure_budget: budget(5, FailureBudgetAction::Cancel),
        approved: Some(true),
        ..spec()
    });
    s.rerun = Some("1".into());
    s.run_to_end(&fail);
    let child = s.step().rerun.expect("a child").child;
    assert_eq!(child.spec.failure_budget, s.spec.failure_budget);
    assert_eq!(child.spec.approved, None);
}

#[test]
fn the_dry_run_shows_the_budget_and_whether_approval_is_needed() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        failure_budget: budget(3, FailureBudgetAction::Pause),
        ..spec()
    });
    let preview = s.step().status.preview.unwrap();
    assert!(
        preview
            .failure_budget
            .unwrap()
            .contains("3 failed sessions"),
        "the budget"
    );
    assert_eq!(preview.approval, None, "the Schedule asks for none");
    s.schedule.approval = Some(Approval {
        required_above_credits: 50.0,
    });
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Planned));
    let approval = d.status.preview.unwrap().approval.unwrap();
    assert!(approval.starts_with("needed"), "{approval}");
    assert!(
        approval.contains("75 credits") && approval.contains("50"),
        "{approval}"
    );
    s.schedule.approval = Some(Approval {
        required_above_credits: 75.0,
    });
    let approval = s.step().status.preview.unwrap().approval.unwrap();
    assert!(approval.starts_with("not needed"), "{approval}");
}

#[test]
fn a_backfill_above_the_threshold_awaits_approval_then_starts() {
    let mut s = Sim::new(spec());
    s.schedule.approval = Some(Approval {
        required_above_credits: 50.0,
    });
    let d = s.step();
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(BackfillPhase::AwaitingApproval));
    assert!(d.status.run_id.is_none());
    assert_eq!(
        d.status.cost_estimate.unwrap().total_credits_estimated,
        75.0
    );
    // kstatus: in progress, not stalled.
    let reconciling = find_condition(&d.status.conditions, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "AwaitingApproval")
    );
    assert!(reconciling.message.contains("spec.approved"));
    let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.status, "False");
    assert_eq!(
        d.notes
            .iter()
            .filter(|n| n.reason == "AwaitingApproval")
            .count(),
        1
    );
    assert!(s.step().notes.is_empty(), "one Event");
    let waiting = s.status.approval.clone().unwrap();
    assert_eq!(waiting.approved_by, None);
    assert_eq!(waiting.credits, 75.0);

    s.spec.approved = Some(true);
    s.approved_by = Some("system:serviceaccount:ns:approver".into());
    let d = s.step();
    assert_eq!(d.status.phase, Some(BackfillPhase::Running));
    assert_eq!(d.create.len(), 4);
    let approval = d.status.approval.clone().unwrap();
    assert_eq!(
        approval.approved_by.as_deref(),
        Some("system:serviceaccount:ns:approver")
    );
    assert_eq!(approval.approved_at, Some(time(s.now)));
    assert_eq!(
        approval.selection.as_deref(),
        Some(super::approval::selection_digest(&s.spec).as_str())
    );
    assert!(d.notes.iter().any(|n| n.reason == "Approved"));
    // Once started, the approval is what it was.
    s.finish_all(&[]);
    s.now += 60;
    assert_eq!(s.step().status.approval, Some(approval));
}

#[test]
fn a_backfill_cannot_price_itself_below_the_approval() {
    let mut s = Sim::new(BackfillSpec {
        credits_per_session: Some(0.0),
        ..spec()
    });
    s.schedule.approval = Some(Approval {
        required_above_credits: 50.0,
    });
    let d = s.step();
    assert_eq!(d.status.cost_estimate.unwrap().total_credits_estimated, 0.0);
    assert_eq!(d.status.phase, Some(BackfillPhase::AwaitingApproval));
    // Below the threshold, or without approval asked: it starts.
    s.schedule.approval = Some(Approval {
        required_above_credits: 75.0,
    });
    assert_eq!(s.step().status.phase, Some(BackfillPhase::Running));
}

#[test]
fn the_selection_digest_covers_the_selection_and_the_price_only() {
    use super::approval::selection_digest;
    let base = selection_digest(&spec());
    assert_eq!(base.len(), 64);
    let wider = BackfillSpec {
        to: Some(time(at("2026-03-01T00:00:00Z"))),
        ..spec()
    };
    assert_ne!(selection_digest(&wider), base);
    let cheaper = BackfillSpec {
        credits_per_session: Some(0.1),
        ..spec()
    };
    assert_ne!(selection_digest(&cheaper), base);
    let faster = BackfillSpec {
        max_in_flight: Some(9),
        approved: Some(true),
        ..spec()
    };
    assert_eq!(selection_digest(&faster), base);
}

#[test]
fn an_approved_dry_run_keeps_the_same_approval_from_pass_to_pass() {
    let mut s = Sim::new(BackfillSpec {
        dry_run: Some(true),
        approved: Some(true),
        ..spec()
    });
    s.schedule.approval = Some(Approval {
        required_above_credits: 50.0,
    });
    s.approved_by = Some("alice".into());
    let first = s.step().status;
    assert_eq!(first.phase, Some(BackfillPhase::Planned));
    let approval = first.approval.clone().unwrap();
    assert_eq!(
        (approval.approved_by.as_deref(), approval.approved_at),
        (Some("alice"), None),
        "approvedAt is when the run starts"
    );
    s.now += 10;
    assert_eq!(
        s.step().status.approval,
        first.approval,
        "a pass later, the same approval"
    );
    s.spec.dry_run = None;
    s.now += 10;
    let d = s.step();
    assert_eq!(d.status.approval.unwrap().approved_at, Some(time(s.now)));
}
