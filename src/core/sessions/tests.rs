//! The joining of Jobs, ledger and plans into one row per session.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::api::{BackfillSpec, BackfillStatus, RunState, ScheduleSpec};
use crate::core::job::{Attempt as JobAttempt, controller_reference};
use crate::core::ledger::Period;
use crate::core::observed::Outcome;
use crate::core::zoned_cron::{at, time};

const SCHEDULE_UID: &str = "6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f";
const NOW: &str = "2026-06-01T00:00:00Z";

fn schedule(cron: &str, zone: &str) -> Schedule {
    let mut s = Schedule::new(
        "hourly",
        ScheduleSpec {
            schedule: cron.into(),
            time_zone: Some(zone.into()),
            ..ScheduleSpec::default()
        },
    );
    s.metadata.namespace = Some("data".into());
    s.metadata.uid = Some(SCHEDULE_UID.into());
    s
}

fn backfill(name: &str, attempt: Option<&str>, from: &str, to: &str) -> Backfill {
    let mut b = Backfill::new(
        name,
        BackfillSpec {
            from: Some(time(at(from))),
            to: Some(time(at(to))),
            attempt_name: attempt.map(String::from),
            ..BackfillSpec::of("hourly")
        },
    );
    b.metadata.namespace = Some("data".into());
    b.metadata.uid = Some(format!("uid-{name}"));
    b.metadata.creation_timestamp = Some(time(at("2026-05-01T00:00:00Z")));
    b
}

/// `b` started: its plan frozen over `[from, to)` of its spec, `launched`
/// sessions launched and the plan indexes `done` counted.
fn started(mut b: Backfill, launched: i64, done: &[u64]) -> Backfill {
    let mut bits = Bitmap::new();
    done.iter().for_each(|&i| bits.insert(i));
    b.status = Some(BackfillStatus {
        phase: Some(BackfillPhase::Running),
        started_at: Some(time(at("2026-05-01T00:00:00Z"))),
        run: Some(RunState {
            schedule: "0 * * * *".into(),
            time_zone: "UTC".into(),
            from: b.spec.from.clone(),
            to: b.spec.to.clone(),
            launched,
            done: bits.encode(),
            ..RunState::default()
        }),
        ..BackfillStatus::default()
    });
    b
}

#[derive(Clone, Copy)]
enum Ends {
    Running,
    Succeeded,
    Failed,
}

/// The Job the operator makes for `owner` (the Schedule when `None`) at
/// `session`, created at `created`, ended as `ends`; its outcome
/// recorded (finalizer off) unless `ends` is Running.
fn job(
    sched: &Schedule,
    owner: Option<&Backfill>,
    session: i64,
    index: Option<u64>,
    created: i64,
    ends: Ends,
) -> Job {
    let clock = ZonedCron::new(&sched.spec.schedule, sched.spec.time_zone.as_deref()).unwrap();
    let s = clock.sessions_from(session).next().unwrap();
    assert_eq!(s.at, session, "not a session");
    let (kind, reference, attempt) = match owner {
        None => (
            OwnerKind::Schedule,
            controller_reference::<Schedule>("hourly", SCHEDULE_UID),
            "hourly".to_string(),
        ),
        Some(b) => (
            OwnerKind::Backfill,
            controller_reference::<Backfill>(&b.name_any(), &b.uid().unwrap()),
            attempt_name(b),
        ),
    };
    let a = JobAttempt {
        kind,
        owner: reference,
        namespace: "data",
        schedule_name: "hourly",
        schedule_uid: SCHEDULE_UID,
        backfill_name: owner.map(|b| b.metadata.name.as_deref().unwrap()),
        attempt_name: &attempt,
        clock: &clock,
        session: s,
        plan_index: index,
    };
    let mut job = a.build_job(&JobTemplateSpec::default());
    job.metadata.uid = Some(format!("job-uid-{}", a.job_name()));
    job.metadata.creation_timestamp = Some(time(created));
    let condition = |type_: &str| JobCondition {
        type_: type_.into(),
        status: "True".into(),
        last_transition_time: Some(time(created + 30)),
        ..JobCondition::default()
    };
    job.status = Some(match ends {
        Ends::Running => JobStatus::default(),
        Ends::Succeeded => JobStatus {
            completion_time: Some(time(created + 30)),
            conditions: Some(vec![condition("Complete")]),
            ..JobStatus::default()
        },
        Ends::Failed => JobStatus {
            conditions: Some(vec![condition("Failed")]),
            ..JobStatus::default()
        },
    });
    if !matches!(ends, Ends::Running) {
        job.metadata.finalizers = None;
    }
    job
}

/// A ledger object of `hourly` with `(session, outcome, attempt)`.
fn ledger(records: &[(i64, Outcome, &str)]) -> Vec<SessionLedger> {
    let mut months: BTreeMap<i64, Ledger> = BTreeMap::new();
    for (i, &(at, outcome, attempt)) in records.iter().enumerate() {
        let period = Period::of(at);
        months
            .entry(period.from)
            .or_insert_with(|| Ledger::new(period))
            .record(at, outcome, attempt, "", i as i64);
    }
    months
        .values()
        .map(|l| SessionLedger {
            metadata: ObjectMeta {
                name: Some(format!("hourly-{}", l.period.label())),
                ..ObjectMeta::default()
            },
            spec: l.to_spec("hourly"),
        })
        .collect()
}

struct Case {
    schedule: Schedule,
    ledgers: Vec<SessionLedger>,
    jobs: Vec<Job>,
    backfills: Vec<Backfill>,
}

impl Case {
    fn new() -> Self {
        Self {
            schedule: schedule("0 * * * *", "UTC"),
            ledgers: vec![],
            jobs: vec![],
            backfills: vec![],
        }
    }

    fn list(&self, from: &str, to: &str) -> SessionList {
        list_sessions(SessionsInput {
            schedule: &self.schedule,
            ledgers: &self.ledgers,
            jobs: &self.jobs,
            backfills: &self.backfills,
            from: at(from),
            to: at(to),
            now: at(NOW),
        })
        .unwrap()
    }
}

fn statuses(list: &SessionList) -> Vec<&'static str> {
    list.rows.iter().map(|r| r.status.as_str()).collect()
}

fn attempt_names(list: &SessionList) -> Vec<&str> {
    list.rows
        .iter()
        .map(|r| r.attempt.as_ref().map_or("-", |a| a.name.as_str()))
        .collect()
}

fn h(hour: u32) -> i64 {
    at("2026-01-01T00:00:00Z") + i64::from(hour) * 3600
}

#[test]
fn every_session_once_with_the_status_the_seed_names() {
    let mut c = Case::new();
    let bf = backfill(
        "january",
        None,
        "2026-01-01T00:00:00Z",
        "2026-01-01T08:00:00Z",
    );
    // Launched 0..=3 (hours 0-3), counted 0 and 1; 4..8 queued.
    let mut bf = started(bf, 4, &[0, 1]);
    let created = at("2026-05-01T00:01:00Z");
    c.jobs = vec![
        job(
            &c.schedule,
            Some(&bf),
            h(0),
            Some(0),
            created,
            Ends::Succeeded,
        ),
        job(&c.schedule, Some(&bf), h(1), Some(1), created, Ends::Failed),
        job(
            &c.schedule,
            Some(&bf),
            h(2),
            Some(2),
            created,
            Ends::Running,
        ),
        job(
            &c.schedule,
            Some(&bf),
            h(3),
            Some(3),
            created,
            Ends::Running,
        ),
    ];
    // Hour 3's Job is being deleted: canceling.
    c.jobs[3].metadata.deletion_timestamp = Some(time(created + 60));
    // Hours 8 and 9: the ledger only (their Jobs are gone), one killed.
    c.ledgers = ledger(&[
        (h(8), Outcome::Killed, "hourly"),
        (h(9), Outcome::Succeeded, "hourly"),
    ]);
    // Hours 4-7 queued in the Backfill's plan; 10 and 11 nothing.
    bf.metadata.creation_timestamp = Some(time(at("2026-05-01T00:00:00Z")));
    c.backfills = vec![bf];
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z");
    assert_eq!(
        list.rows.iter().map(|r| r.at).collect::<Vec<_>>(),
        (0..12).map(h).collect::<Vec<_>>()
    );
    assert_eq!(
        statuses(&list),
        [
            "success",
            "error",
            "running",
            "canceling",
            "queued",
            "queued",
            "queued",
            "queued",
            "killed",
            "success",
            "missing",
            "missing"
        ]
    );
    let row = &list.rows[1];
    let a = row.attempt.as_ref().unwrap();
    assert_eq!(a.job.as_deref(), Some("january-b1767229200"));
    assert_eq!(a.plan_index, Some(1));
    assert_eq!(a.owner, Some(Owner::Backfill("january".into())));
    assert_eq!((a.created, a.finished), (Some(created), Some(created + 30)));
    assert!(a.is_retry("hourly"));
    assert_eq!(
        row.attempt_id().as_deref(),
        Some("job-uid-january-b1767229200")
    );
    assert!(list.rows[3].attempt.as_ref().unwrap().cancel_requested);
    assert_eq!(list.rows[2].attempt.as_ref().unwrap().finished, None);
    let queued = list.rows[5].attempt.as_ref().unwrap();
    assert_eq!((queued.plan_index, queued.source), (Some(5), Source::Plan));
    let killed = list.rows[8].attempt.as_ref().unwrap();
    assert_eq!(killed.owner, Some(Owner::Schedule("hourly".into())));
    assert!(!killed.is_retry("hourly"));
    assert_eq!(list.rows[10].attempt_id(), None);
    // Derived ids are stable and distinct.
    assert_eq!(
        list.rows[8].attempt_id(),
        c.list("2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z").rows[0].attempt_id()
    );
    assert_ne!(list.rows[8].attempt_id(), list.rows[9].attempt_id());
    assert_eq!(list.rows[0].uuid, session_uuid(SCHEDULE_UID, h(0)));
    assert!(list.notes.is_empty(), "{:?}", list.notes);
}

#[test]
fn a_cancelled_backfill_cancels_its_running_jobs_and_queues_nothing() {
    let mut c = Case::new();
    let mut bf = started(
        backfill("jan", None, "2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z"),
        1,
        &[],
    );
    bf.spec.cancel = Some(true);
    c.jobs = vec![job(
        &c.schedule,
        Some(&bf),
        h(0),
        Some(0),
        h(100),
        Ends::Running,
    )];
    c.backfills = vec![bf];
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z");
    assert_eq!(
        statuses(&list),
        ["canceling", "missing", "missing", "missing"]
    );
}

#[test]
fn a_rerun_childs_attempt_overrides_its_parents_failure() {
    let mut c = Case::new();
    let parent = backfill("jan", None, "2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    let mut child = backfill(
        "jan-rerun-1",
        Some("jan-retry-1"),
        "2026-01-01T00:00:00Z",
        "2026-01-01T03:00:00Z",
    );
    child.metadata.creation_timestamp = Some(time(at("2026-05-02T00:00:00Z")));
    let t = at("2026-05-01T00:00:00Z");
    c.jobs = vec![
        job(
            &c.schedule,
            Some(&parent),
            h(0),
            Some(0),
            t,
            Ends::Succeeded,
        ),
        job(&c.schedule, Some(&parent), h(1), Some(1), t, Ends::Failed),
        job(&c.schedule, Some(&parent), h(2), Some(2), t, Ends::Failed),
        // The child reran hour 1 (succeeded) and hour 2 (failed again),
        // listed first: the order of the list does not matter.
        job(
            &c.schedule,
            Some(&child),
            h(1),
            Some(0),
            t + 3600,
            Ends::Succeeded,
        ),
        job(
            &c.schedule,
            Some(&child),
            h(2),
            Some(1),
            t + 3600,
            Ends::Failed,
        ),
    ];
    c.jobs.rotate_left(3);
    c.backfills = vec![parent, child];
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    assert_eq!(statuses(&list), ["success", "success", "error"]);
    assert_eq!(attempt_names(&list), ["jan", "jan-retry-1", "jan-retry-1"]);
    assert_eq!(
        list.rows[1].attempt.as_ref().unwrap().job.as_deref(),
        Some("jan-rerun-1-b1767229200")
    );
}

#[test]
fn ledger_outcomes_stand_in_for_jobs_that_were_garbage_collected() {
    let mut c = Case::new();
    let parent = backfill("jan", None, "2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    let child = backfill(
        "jan-rerun-1",
        Some("jan-retry-1"),
        "2026-01-01T00:00:00Z",
        "2026-01-01T03:00:00Z",
    );
    let t = at("2026-05-01T00:00:00Z");
    // The parent's failed Job of hour 1 is kept; the child's successful
    // rerun of it is gone (history), as is everything of hours 0 and 2.
    c.jobs = vec![job(
        &c.schedule,
        Some(&parent),
        h(1),
        Some(1),
        t,
        Ends::Failed,
    )];
    c.ledgers = ledger(&[
        (h(0), Outcome::Succeeded, "hourly"),
        (h(1), Outcome::Failed, "jan"),
        (h(2), Outcome::Failed, "jan"),
        (h(1), Outcome::Succeeded, "jan-retry-1"),
    ]);
    c.backfills = vec![parent, child];
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    assert_eq!(statuses(&list), ["success", "success", "error"]);
    assert_eq!(attempt_names(&list), ["hourly", "jan-retry-1", "jan"]);
    let rerun = list.rows[1].attempt.as_ref().unwrap();
    assert_eq!(
        (rerun.source, rerun.owner.clone(), rerun.job.clone()),
        (
            Source::Ledger,
            Some(Owner::Backfill("jan-rerun-1".into())),
            None
        )
    );

    // A Job whose outcome is not recorded yet (finalizer on) is newer
    // than the ledger.
    c.jobs[0].metadata.finalizers = Some(vec![crate::api::JOB_FINALIZER.into()]);
    let list = c.list("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z");
    assert_eq!(statuses(&list), ["error"]);
    assert_eq!(attempt_names(&list), ["jan"]);
}

#[test]
fn a_queued_session_is_newer_than_an_ended_attempt_but_waits_for_a_running_one() {
    let mut c = Case::new();
    let bf = started(
        backfill("fix", None, "2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z"),
        0,
        &[],
    );
    let t = at("2026-05-01T00:00:00Z");
    c.jobs = vec![
        job(&c.schedule, None, h(0), None, t, Ends::Failed),
        job(&c.schedule, None, h(1), None, t, Ends::Running),
    ];
    c.backfills = vec![bf];
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z");
    assert_eq!(statuses(&list), ["queued", "running"]);
    assert_eq!(attempt_names(&list), ["fix", "hourly"]);
}

#[test]
fn jobs_of_other_owners_and_unreadable_ledgers_are_left_out_with_a_note() {
    let mut c = Case::new();
    let stranger = backfill(
        "other",
        None,
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
    );
    // A Backfill of another Schedule (not in the list) made it.
    c.jobs = vec![job(
        &c.schedule,
        Some(&stranger),
        h(0),
        Some(0),
        h(10),
        Ends::Succeeded,
    )];
    let mut ledgers = ledger(&[(h(0), Outcome::Succeeded, "hourly")]);
    ledgers[0].spec.period = "2026-02".into();
    c.ledgers = ledgers;
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
    assert_eq!(statuses(&list), ["missing"]);
    assert_eq!(list.notes.len(), 2, "{:?}", list.notes);
    assert!(list.notes[0].contains("1 Job(s)"), "{:?}", list.notes);
    assert!(list.notes[1].contains("hourly-2026-01"), "{:?}", list.notes);
}

#[test]
fn sessions_over_daylight_saving_follow_the_schedules_zone() {
    // Wildcard hour: 01:30 exists twice on 2026-11-01 in New York and
    // 02:30 not at all on 2026-03-08.
    let mut c = Case::new();
    c.schedule = schedule("30 * * * *", "America/New_York");
    let fall = c.list("2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z");
    let local: Vec<String> = fall
        .rows
        .iter()
        .map(|r| fall.clock.zone().rfc3339(r.at))
        .collect();
    assert_eq!(
        local,
        [
            "2026-11-01T00:30:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:30:00-05:00",
        ]
    );
    let spring = c.list("2026-03-08T05:00:00Z", "2026-03-08T08:00:00Z");
    let local: Vec<String> = spring
        .rows
        .iter()
        .map(|r| spring.clock.zone().rfc3339(r.at))
        .collect();
    assert_eq!(
        local,
        [
            "2026-03-08T00:30:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:30:00-04:00"
        ]
    );
    // The two 01:30s are two sessions, each with its own Job and UUID.
    let first = at("2026-11-01T05:30:00Z");
    let second = at("2026-11-01T06:30:00Z");
    c.jobs = vec![
        job(&c.schedule, None, first, None, first, Ends::Succeeded),
        job(&c.schedule, None, second, None, second, Ends::Failed),
    ];
    let fall = c.list("2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z");
    assert_eq!(statuses(&fall), ["missing", "success", "error", "missing"]);
    assert_ne!(fall.rows[1].uuid, fall.rows[2].uuid);

    // Fixed time: 02:30 daily runs once on both days.
    c.schedule = schedule("30 2 * * *", "America/New_York");
    c.jobs.clear();
    let days = c.list("2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z");
    let local: Vec<String> = days
        .rows
        .iter()
        .map(|r| days.clock.zone().rfc3339(r.at))
        .collect();
    assert_eq!(
        local,
        [
            "2026-03-07T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00"
        ]
    );
}

#[test]
fn a_range_is_bounded_and_ordered() {
    let mut c = Case::new();
    c.schedule = schedule("* * * * *", "UTC");
    let err = list_sessions(SessionsInput {
        schedule: &c.schedule,
        ledgers: &[],
        jobs: &[],
        backfills: &[],
        from: at("2026-01-01T00:00:00Z"),
        to: at("2027-01-01T00:00:00Z"),
        now: at(NOW),
    })
    .unwrap_err();
    // 100,000 minutes after the start.
    assert_eq!(
        err,
        SessionsError::TooMany {
            limit: MAX_SESSIONS,
            expr: "* * * * *".into(),
            from: "2026-01-01T00:00:00Z".into(),
            to: "2027-01-01T00:00:00Z".into(),
            split: "2026-03-11T10:40:00Z".into(),
        }
    );
    assert!(
        err.to_string()
            .contains("narrow the range, e.g. --to 2026-03-11T10:40:00Z")
    );
    // Exactly the limit is fine.
    let list = c.list("2026-01-01T00:00:00Z", "2026-03-11T10:40:00Z");
    assert_eq!(list.rows.len() as u64, MAX_SESSIONS);
    let backwards = list_sessions(SessionsInput {
        schedule: &c.schedule,
        ledgers: &[],
        jobs: &[],
        backfills: &[],
        from: at("2026-01-02T00:00:00Z"),
        to: at("2026-01-01T00:00:00Z"),
        now: at(NOW),
    });
    assert!(matches!(backwards, Err(SessionsError::Range { .. })));
    // Sessions not due yet are noted.
    let future = c.list("2026-05-31T23:58:00Z", "2026-06-01T00:02:00Z");
    assert_eq!(future.rows.len(), 4);
    assert!(
        future.notes[0].starts_with("2 missing session(s) are at or after now"),
        "{:?}",
        future.notes
    );
}

#[test]
fn outcomes_the_schedule_keeps_in_its_status_are_the_ledgers_too() {
    let mut c = Case::new();
    let jan = backfill("jan", None, "2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    // The Schedule ran hours 0 and 1; its Jobs are gone and neither
    // outcome is in a SessionLedger yet. The Backfill ran hour 0 again
    // since, and its outcome is.
    c.ledgers = ledger(&[(h(0), Outcome::Failed, "jan")]);
    c.backfills = vec![jan];
    let kept = [(h(0), Outcome::Succeeded), (h(1), Outcome::Failed)]
        .map(|(at, outcome)| crate::core::ledger::Unfiled { at, outcome }.to_api());
    c.schedule.status = Some(crate::api::ScheduleStatus {
        unfiled_outcomes: kept.to_vec(),
        ..Default::default()
    });
    let list = c.list("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    assert_eq!(statuses(&list), ["error", "error", "missing"]);
    assert_eq!(attempt_names(&list), ["jan", "hourly", "-"]);
    let scheduled = list.rows[1].attempt.as_ref().unwrap();
    assert_eq!(
        (scheduled.source, scheduled.owner.clone()),
        (Source::Ledger, Some(Owner::Schedule("hourly".into())))
    );
}
