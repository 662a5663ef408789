//! The Schedule's `decide` step: from the Schedule, the Jobs observed and
//! `now`, the Jobs to create and delete, the finalizers to release, the
//! status to write and when to look again. CronJob's rules, plus the
//! missed-session policy and counters that survive Job deletion.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;

use super::decision::{Decision, LedgerRecord, NewJob, Status};
use super::job::{Attempt, OwnerKind, controller_reference, job_name};
use super::ledger::{LedgerIndex, Period, Unfiled, backfill_hint, report};
use super::observed::{JobState, Kstatus, Note, ObservedJob, Outcome, find_condition};
use super::reason::Reason;
use super::zoned_cron::seconds;
use super::zoned_cron::{Session, ZonedCron, rfc3339_utc, time};
use crate::api::{
    ConcurrencyPolicy, MissedSessionPolicy, RecentSessions, Schedule, ScheduleSpec, ScheduleStatus,
    condition,
};

/// Default `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`, as
/// CronJob's.
pub const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
pub const DEFAULT_FAILED_HISTORY: i32 = 1;
/// `RunAll` looks back this far unless `windowSeconds` says otherwise.
pub const DEFAULT_RUN_ALL_WINDOW: i64 = 86_400;
/// With `Skip`, the latest due session still runs when it is at most this
/// late: it is the regular run, not a missed one.
pub const ON_TIME_SECONDS: i64 = 60;
/// `status.recentSessions` looks back this far.
pub const RECENT_HORIZON: i64 = 7 * 86_400;
/// `RunAll` starts at most this many Jobs per pass; the rest follow.
pub const MAX_STARTS_PER_PASS: usize = 100;
/// Unfiled outcomes a Schedule's status holds at most (its schema's
/// limit), and the default `--ledger-batch`.
pub const MAX_UNFILED: usize = 64;

/// Everything `decide` looks at.
#[derive(Clone, Debug)]
pub struct ScheduleView<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    /// When the Schedule was created: its first session is the first after.
    pub created_at: i64,
    /// The earliest instant `created_at` may stand for (creation times
    /// have whole seconds, which a fast test clock stretches): sessions
    /// before it are not the Schedule's to report missing.
    pub created_from: i64,
    pub spec: &'a ScheduleSpec,
    pub status: &'a ScheduleStatus,
    pub jobs: &'a [ObservedJob],
    /// The session ledger over the last [`RECENT_HORIZON`].
    pub ledger: &'a LedgerIndex,
    /// Sessions another owner's Job of this Schedule (a Backfill's) runs
    /// now, with that Job's name: a session is never run twice at once.
    pub run_elsewhere: &'a std::collections::BTreeMap<i64, String>,
    /// Unfiled outcomes that make a ledger write (`--ledger-batch`,
    /// 1..=[`MAX_UNFILED`]).
    pub ledger_batch: usize,
    pub now: i64,
}

/// What one pass decides, before its Jobs are built (`decide` completes
/// it into a `Decision`).
#[derive(Clone, Debug, Default, PartialEq)]
struct Pass {
    /// Sessions to create a Job for (none of them has one).
    pub create: Vec<Session>,
    /// Running Jobs to delete before the new one starts (`Replace`).
    pub replace: Vec<String>,
    /// Finished Jobs past the history limits, oldest first; their outcome
    /// is counted.
    pub prune: Vec<String>,
    /// Jobs whose finalizer comes off once `status` is written.
    pub release: Vec<String>,
    /// Outcomes counted by this pass, for `status.unfiledOutcomes`.
    pub counted: Vec<Unfiled>,
    /// Unfiled outcomes to write to the ledger now (`status` then holds
    /// none).
    pub file: Vec<Unfiled>,
    pub status: ScheduleStatus,
    pub notes: Vec<Note>,
    /// When to reconcile again (on the operator's clock), if nothing
    /// changes before.
    pub wake_at: Option<i64>,
}

/// The decide step of the Schedule controller.
pub fn decide(view: &ScheduleView<'_>) -> Decision<ScheduleStatus> {
    complete(view, pass(view))
}

fn pass(view: &ScheduleView<'_>) -> Pass {
    let mut d = Pass {
        status: view.status.clone(),
        ..Pass::default()
    };
    d.status.observed_generation = view.generation;
    record_outcomes(view, &mut d);
    let ks = Kstatus {
        before: &view.status.conditions,
        generation: view.generation,
        now: view.now,
    };

    match ZonedCron::new(&view.spec.schedule, view.spec.time_zone.as_deref()) {
        Ok(clock) => {
            schedule_sessions(view, &clock, &mut d);
            recent_sessions(view, &clock, &mut d);
            let (reason, message) = if view.spec.suspend == Some(true) {
                (
                    Reason::Suspended,
                    "suspended: no new Jobs start".to_string(),
                )
            } else {
                (
                    Reason::Scheduled,
                    format!("{} session(s) running", d.status.active_count),
                )
            };
            ks.set(
                &mut d.status.conditions,
                condition::STALLED,
                false,
                reason,
                &message,
            );
            ks.set(
                &mut d.status.conditions,
                condition::READY,
                true,
                reason,
                &message,
            );
        }
        Err(e) => stalled(view, &mut d, &ks, &e.to_string()),
    }
    ks.set(
        &mut d.status.conditions,
        condition::RECONCILING,
        false,
        Reason::Idle,
        "",
    );
    prune_history(view, &mut d);
    unfiled_outcomes(view, &mut d);
    // Names whose finalizer is gone may stay in countedJobs (they are never
    // counted again): dropping them is not worth a write of its own.
    let shrunk_only = d
        .status
        .counted_jobs
        .iter()
        .all(|n| view.status.counted_jobs.contains(n))
        && ScheduleStatus {
            counted_jobs: view.status.counted_jobs.clone(),
            ..d.status.clone()
        } == *view.status;
    if shrunk_only {
        d.status.counted_jobs = view.status.counted_jobs.clone();
    }
    d
}

/// A cron or zone that cannot be evaluated: Stalled, with an Event when
/// the message is new.
fn stalled(view: &ScheduleView<'_>, d: &mut Pass, ks: &Kstatus<'_>, message: &str) {
    let was = find_condition(&view.status.conditions, condition::STALLED)
        .is_some_and(|c| c.status == "True" && c.message == message);
    if !was {
        d.notes.push(Note {
            warning: true,
            reason: Reason::InvalidSchedule,
            message: message.to_string(),
        });
    }
    d.status.next_schedule_time = None;
    ks.set(
        &mut d.status.conditions,
        condition::STALLED,
        true,
        Reason::InvalidSchedule,
        message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::READY,
        false,
        Reason::InvalidSchedule,
        message,
    );
}

/// The pass as a decision: its Jobs built from the template, each with
/// the Event that says it was created, and its outcomes as the ledger's
/// record.
fn complete(view: &ScheduleView<'_>, pass: Pass) -> Decision<ScheduleStatus> {
    let mut create = Vec::with_capacity(pass.create.len());
    // Sessions come only from a valid cron and zone.
    if let Ok(clock) = ZonedCron::new(&view.spec.schedule, view.spec.time_zone.as_deref()) {
        let owner = controller_reference::<Schedule>(view.name, view.uid);
        for &session in &pass.create {
            let attempt = Attempt {
                kind: OwnerKind::Schedule,
                owner: owner.clone(),
                namespace: view.namespace,
                schedule_name: view.name,
                schedule_uid: view.uid,
                backfill_name: None,
                attempt_name: view.name,
                clock: &clock,
                session,
                plan_index: None,
            };
            create.push(NewJob {
                session,
                plan_index: None,
                job: attempt.build_job(&view.spec.job_template),
                created: Some(Note {
                    warning: false,
                    reason: Reason::JobCreated,
                    message: format!(
                        "created Job {} for the session at {}",
                        attempt.job_name(),
                        clock.zone().rfc3339(session.at)
                    ),
                }),
            });
        }
    }
    Decision {
        delete: pass.replace,
        create,
        rerun: None,
        ledger: LedgerRecord {
            attempt: view.name.to_string(),
            owner: format!("Schedule/{}", view.name),
            outcomes: Vec::new(),
            unfiled: pass.file,
        },
        status: pass.status,
        release: pass.release,
        prune: pass.prune,
        notes: pass.notes,
        wake_at: pass.wake_at,
    }
}

impl Status for ScheduleStatus {}

/// `status.recentSessions` from the ledger, and an Event suggesting a
/// Backfill when more sessions went missing.
fn recent_sessions(view: &ScheduleView<'_>, clock: &ZonedCron, d: &mut Pass) {
    let hour_ago = (view.now - RECENT_HORIZON).div_euclid(3_600) * 3_600;
    let since = [
        Some(hour_ago),
        Some(view.created_from.min(view.created_at) + 1),
        view.spec.start_time.as_ref().map(seconds),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(hour_ago);
    let until = view
        .spec
        .end_time
        .as_ref()
        .map_or(view.now + 1, |e| seconds(e).min(view.now + 1));
    let jobs: std::collections::BTreeMap<i64, Option<Outcome>> = view
        .jobs
        .iter()
        .filter_map(|j| Some((j.session?, j.outcome())))
        .chain(d.create.iter().map(|s| (s.at, None)))
        .collect();
    let r = report(clock, since, until, view.ledger, &jobs);
    let before = view
        .status
        .recent_sessions
        .as_ref()
        .map_or(0, |r| r.missing);
    if r.missing as i64 > before
        && view.spec.suspend != Some(true)
        && let Some(hint) = backfill_hint(view.name, &r)
    {
        d.notes.push(Note {
            warning: true,
            reason: Reason::SessionsMissing,
            message: hint,
        });
    }
    d.status.recent_sessions = Some(RecentSessions {
        since: time(since),
        sessions: r.sessions as i64,
        succeeded: r.succeeded as i64,
        failed: r.failed as i64,
        missing: r.missing as i64,
        first_missing: r.first_missing.map(time),
        last_missing: r.last_missing.map(time),
        first_failed: r.first_failed.map(time),
    });
}

/// Counts each finished (or killed) Job once, however often it is seen:
/// a Job is counted when it still carries the finalizer and is not in
/// `countedJobs`, and stays in `countedJobs` until its finalizer is gone.
fn record_outcomes(view: &ScheduleView<'_>, d: &mut Pass) {
    let already: BTreeSet<&str> = view
        .status
        .counted_jobs
        .iter()
        .map(String::as_str)
        .collect();
    let mut counted = Vec::new();
    let mut failed = Vec::new();
    for job in view.jobs {
        let Some(outcome) = job.outcome() else {
            continue;
        };
        if !job.has_finalizer {
            continue;
        }
        counted.push(job.name.clone());
        d.release.push(job.name.clone());
        if already.contains(job.name.as_str()) {
            continue;
        }
        if !job.as_written {
            d.notes.push(Note {
                warning: true,
                reason: Reason::JobNotAsWritten,
                message: format!(
                    "Job {}: its backfill.dev/session label is not what the operator wrote; it was ignored and the Job counted by the session of its name",
                    job.name
                ),
            });
        }
        if let Some(at) = job.session {
            d.counted.push(Unfiled { at, outcome });
        }
        let s = &mut d.status;
        match outcome {
            Outcome::Succeeded => {
                s.succeeded_sessions += 1;
                if let Some(at) = job.session
                    && s.last_successful_time
                        .as_ref()
                        .is_none_or(|t| seconds(t) < at)
                {
                    s.last_successful_time = Some(time(at));
                }
            }
            Outcome::Failed => {
                s.failed_sessions += 1;
                failed.push(job.name.clone());
            }
            Outcome::Killed => s.killed_sessions += 1,
        }
    }
    counted.sort();
    d.status.counted_jobs = counted;
    if !failed.is_empty() {
        d.notes.push(Note {
            warning: true,
            reason: Reason::SessionFailed,
            message: format!("Job {} failed", failed.join(", ")),
        });
    }
}

fn schedule_sessions(view: &ScheduleView<'_>, clock: &ZonedCron, d: &mut Pass) {
    let spec = view.spec;
    let now = view.now;
    let start = spec.start_time.as_ref().map(seconds);
    let end = spec.end_time.as_ref().map(seconds);
    // Sessions at or before the watermark are settled; a new Schedule's
    // first session is the first after its creation (or after now, on a
    // clock that starts earlier).
    let watermark = view
        .status
        .evaluated_through
        .as_ref()
        .map(seconds)
        .unwrap_or(view.created_at.min(now));
    d.status.evaluated_through = Some(time(watermark));

    let running: Vec<&ObservedJob> = view.jobs.iter().filter(|j| j.running()).collect();
    set_active(view, d, &running);

    let from = start.map_or(watermark + 1, |s| s.max(watermark + 1));

    let next_after = |at: i64| {
        clock
            .next_after(at.max(start.map_or(i64::MIN, |s| s - 1)))
            .filter(|s| end.is_none_or(|e| s.at < e))
    };

    if spec.suspend == Some(true) {
        // Sessions passing now are settled on resume, by the policy.
        d.status.next_schedule_time = None;
        d.wake_at = None;
        return;
    }

    let mut due = Due::of(view, clock, from);
    let forbidden = limit_concurrency(view, clock, d, &running, &mut due);
    if let Some(through) = due.settled_through {
        settle(view, clock, d, from, through, &due.candidates, forbidden);
    }
    let (candidates, latest) = (due.candidates, due.latest);

    let existing: BTreeSet<i64> = view.jobs.iter().filter_map(|j| j.session).collect();
    for s in &candidates {
        if let Some(job) = view.run_elsewhere.get(&s.at) {
            // That Job is this session's attempt: its outcome reaches the
            // ledger like a scheduled run's would.
            d.notes.push(Note {
                warning: false,
                reason: Reason::SessionRunElsewhere,
                message: format!(
                    "the session at {} is not started: Job {job} runs it now",
                    clock.zone().rfc3339(s.at)
                ),
            });
            continue;
        }
        if !existing.contains(&s.at) {
            d.create.push(*s);
        }
        d.status.last_schedule_time = Some(time(s.at));
    }
    set_active(view, d, &running);

    let settled = d
        .status
        .evaluated_through
        .as_ref()
        .map(seconds)
        .unwrap_or(watermark);
    let next = next_after(settled.max(now));
    d.status.next_schedule_time = next.map(|s| time(s.at));
    // More RunAll sessions are due right away; else the next session.
    d.wake_at = if settled < now && latest.is_some_and(|l| l.at > settled) {
        Some(now)
    } else {
        next.map(|s| s.at)
    };
}

/// The sessions due since the watermark, as the missed-session policy
/// reads them.
struct Due {
    /// The newest due session.
    latest: Option<Session>,
    /// The sessions to start, oldest first.
    candidates: Vec<Session>,
    /// Due sessions up to this one are settled by this pass.
    settled_through: Option<i64>,
}

impl Due {
    /// One pass over the due sessions from `from`, keeping only what the
    /// policy needs.
    fn of(view: &ScheduleView<'_>, clock: &ZonedCron, from: i64) -> Self {
        let (spec, now) = (view.spec, view.now);
        let end = spec.end_time.as_ref().map(seconds);
        let policy = spec.missed_sessions.clone().unwrap_or_default();
        let deadline = spec.starting_deadline_seconds;
        let in_deadline = |s: &Session| deadline.is_none_or(|dl| now - s.at <= dl);
        let window = policy.window_seconds.unwrap_or(DEFAULT_RUN_ALL_WINDOW);
        let mut latest: Option<Session> = None;
        let mut run_all: Vec<Session> = Vec::new();
        let due = clock
            .sessions_from(from)
            .take_while(|s| s.at <= now && end.is_none_or(|e| s.at < e));
        for s in due {
            latest = Some(s);
            if policy.policy == MissedSessionPolicy::RunAll
                && now - s.at <= window
                && in_deadline(&s)
                && run_all.len() < MAX_STARTS_PER_PASS
            {
                run_all.push(s);
            }
        }
        let candidates: Vec<Session> = match policy.policy {
            MissedSessionPolicy::RunLatest => latest.filter(in_deadline).into_iter().collect(),
            MissedSessionPolicy::RunAll => run_all,
            MissedSessionPolicy::Skip => latest
                .filter(|s| now - s.at <= ON_TIME_SECONDS && in_deadline(s))
                .into_iter()
                .collect(),
        };
        // With RunAll capped, sessions after the last candidate stay due.
        let mut settled_through = latest.map(|s| s.at);
        if policy.policy == MissedSessionPolicy::RunAll
            && candidates.len() == MAX_STARTS_PER_PASS
            && let Some(last) = candidates.last()
        {
            settled_through = Some(last.at);
        }
        Due {
            latest,
            candidates,
            settled_through,
        }
    }
}

/// `concurrencyPolicy` against the Jobs running now: `Forbid` starts
/// nothing while one runs (true when that held a session back) and one
/// at a time otherwise; `Replace` deletes the running Jobs for the newest
/// session.
fn limit_concurrency(
    view: &ScheduleView<'_>,
    clock: &ZonedCron,
    d: &mut Pass,
    running: &[&ObservedJob],
    due: &mut Due,
) -> bool {
    let candidates = &mut due.candidates;
    match view.spec.concurrency_policy.unwrap_or_default() {
        ConcurrencyPolicy::Allow => false,
        ConcurrencyPolicy::Forbid => {
            if !running.is_empty() {
                let forbidden = !candidates.is_empty();
                candidates.clear();
                forbidden
            } else {
                if candidates.len() > 1 {
                    // One at a time: the oldest now, the others when it is done.
                    due.settled_through = Some(candidates[0].at);
                    candidates.truncate(1);
                }
                false
            }
        }
        ConcurrencyPolicy::Replace => {
            if let Some(last) = candidates.pop() {
                *candidates = vec![last];
                if !running.is_empty() {
                    d.replace = running.iter().map(|j| j.name.clone()).collect();
                    d.notes.push(Note {
                        warning: false,
                        reason: Reason::JobReplaced,
                        message: format!(
                            "deleting {} for the session at {}",
                            d.replace.join(", "),
                            clock.zone().rfc3339(last.at)
                        ),
                    });
                }
            }
            false
        }
    }
}

/// Moves the watermark to `through`, recording the settled sessions that
/// do not run as missed. A session that has a Job of this Schedule ran:
/// it is not missed, even when the status write that moved the watermark
/// past it was lost (the next pass, suspended say, settles it again).
fn settle(
    view: &ScheduleView<'_>,
    clock: &ZonedCron,
    d: &mut Pass,
    from: i64,
    through: i64,
    candidates: &[Session],
    forbidden: bool,
) {
    let end = view.spec.end_time.as_ref().map(seconds);
    let ran = |at: i64| {
        view.jobs.iter().any(|j| j.session == Some(at)) && !candidates.iter().any(|c| c.at == at)
    };
    let settled = clock
        .sessions_from(from)
        .take_while(|s| s.at <= through)
        .filter(|s| end.is_none_or(|e| s.at < e))
        .filter(|s| !ran(s.at))
        .count();
    let missed = settled.saturating_sub(candidates.len()) as u64;
    if missed > 0 {
        // Candidates are the newest settled sessions; the missed ones
        // come before them.
        let last_missed = match candidates.first() {
            Some(c) => clock.previous_before(c.at).map_or(through, |s| s.at),
            None => through,
        };
        record_missed(view, clock, d, from, last_missed, missed, forbidden);
    }
    d.status.evaluated_through = Some(time(through));
}

/// The running Jobs, less those being replaced, plus those about to be
/// created: what runs once this pass is acted on. Named without UIDs, so
/// the status does not change again when the cache shows the new Jobs.
fn set_active(view: &ScheduleView<'_>, d: &mut Pass, running: &[&ObservedJob]) {
    let mut names: Vec<String> = running
        .iter()
        .map(|j| j.name.clone())
        .filter(|n| !d.replace.contains(n))
        .chain(
            d.create
                .iter()
                .map(|s| job_name(OwnerKind::Schedule, view.name, s.at)),
        )
        .collect();
    names.sort();
    names.dedup();
    d.status.active_count = names.len() as i32;
    d.status.active = names
        .into_iter()
        .map(|name| ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: Some(name),
            namespace: Some(view.namespace.to_string()),
            ..ObjectReference::default()
        })
        .collect();
}

fn record_missed(
    view: &ScheduleView<'_>,
    clock: &ZonedCron,
    d: &mut Pass,
    from: i64,
    last_missed: i64,
    missed: u64,
    forbidden: bool,
) {
    d.status.missed_sessions += missed as i64;
    d.status.last_missed_time = Some(time(last_missed));
    let first = clock.sessions_from(from).next().map_or(from, |s| s.at);
    let why = if forbidden {
        "concurrencyPolicy Forbid: a Job is still running"
    } else if view
        .spec
        .missed_sessions
        .as_ref()
        .is_some_and(|m| m.policy == MissedSessionPolicy::Skip)
    {
        "missedSessions policy Skip"
    } else {
        "not started in time: suspended, operator down, or past startingDeadlineSeconds"
    };
    let zone = clock.zone();
    d.notes.push(Note {
        warning: true,
        reason: Reason::SessionMissed,
        message: format!(
            "{missed} session(s) missed between {} and {} ({why}); to run them, apply a Backfill with scheduleRef.name: {}, from: {}, to: {}",
            zone.rfc3339(first),
            zone.rfc3339(last_missed),
            view.name,
            rfc3339_utc(first),
            rfc3339_utc(last_missed + 1),
        ),
    });
}

/// The outcomes this pass counted join `status.unfiledOutcomes`; all of
/// them go to the ledger in one write (and the status keeps none) once
/// there are `--ledger-batch` of them, they span two months, or nothing
/// runs and no session is due (suspended, past `endTime`, a cron that
/// cannot be read): the Schedule is quiet, and its ledger objects say
/// everything.
fn unfiled_outcomes(view: &ScheduleView<'_>, d: &mut Pass) {
    let mut unfiled = Unfiled::read(&view.status.unfiled_outcomes);
    unfiled.extend(d.counted.iter().map(|u| (u.at, *u)));
    let months = |u: Option<(&i64, &Unfiled)>| u.map(|(&at, _)| Period::of(at));
    let spans_months = months(unfiled.first_key_value()) != months(unfiled.last_key_value());
    let quiet = d.status.active_count == 0 && d.status.next_schedule_time.is_none();
    let file = unfiled.len() >= view.ledger_batch.clamp(1, MAX_UNFILED) || spans_months || quiet;
    if file {
        d.file = unfiled.into_values().collect();
        d.status.unfiled_outcomes = Vec::new();
    } else {
        d.status.unfiled_outcomes = unfiled.into_values().map(Unfiled::to_api).collect();
    }
}

/// Keeps the newest finished Jobs within the history limits; older ones go,
/// oldest first, once their outcome is counted.
fn prune_history(view: &ScheduleView<'_>, d: &mut Pass) {
    let counted: BTreeSet<&str> = d.status.counted_jobs.iter().map(String::as_str).collect();
    let limit = |l: Option<i32>, default: i32| l.unwrap_or(default).max(0) as usize;
    for (state, keep) in [
        (
            JobState::Succeeded,
            limit(
                view.spec.successful_jobs_history_limit,
                DEFAULT_SUCCESSFUL_HISTORY,
            ),
        ),
        (
            JobState::Failed,
            limit(view.spec.failed_jobs_history_limit, DEFAULT_FAILED_HISTORY),
        ),
    ] {
        let mut finished: Vec<&ObservedJob> = view
            .jobs
            .iter()
            .filter(|j| j.state == state && !j.deleting)
            .filter(|j| !j.has_finalizer || counted.contains(j.name.as_str()))
            .collect();
        finished.sort_by_key(|j| (j.session, j.name.clone()));
        let excess = finished.len().saturating_sub(keep);
        d.prune
            .extend(finished[..excess].iter().map(|j| j.name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MissedSessions;
    use crate::core::zoned_cron::at;

    fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            schedule: cron.into(),
            ..ScheduleSpec::default()
        }
    }

    fn job(name: &str, session: i64, state: JobState) -> ObservedJob {
        ObservedJob {
            name: name.into(),
            uid: format!("uid-{name}"),
            session: Some(session),
            state,
            deleting: false,
            has_finalizer: true,
            plan_index: None,
            as_written: true,
        }
    }

    struct Case {
        spec: ScheduleSpec,
        status: ScheduleStatus,
        jobs: Vec<ObservedJob>,
        created: i64,
        ledger: LedgerIndex,
        ledger_batch: usize,
    }

    impl Case {
        fn new(cron: &str, created: &str) -> Self {
            Self {
                spec: spec(cron),
                status: ScheduleStatus::default(),
                jobs: vec![],
                created: at(created),
                ledger: LedgerIndex::default(),
                ledger_batch: MAX_UNFILED,
            }
        }

        fn decide(&self, now: &str) -> Decision<ScheduleStatus> {
            // The months, and the outcomes the status keeps, as the
            // controller reads them.
            let mut ledger = self.ledger.clone();
            ledger.add_unfiled("nightly", &self.status.unfiled_outcomes);
            decide(&ScheduleView {
                name: "nightly",
                namespace: "ns",
                uid: "uid-1",
                generation: Some(1),
                created_at: self.created,
                created_from: self.created,
                spec: &self.spec,
                status: &self.status,
                jobs: &self.jobs,
                ledger: &ledger,
                run_elsewhere: &Default::default(),
                ledger_batch: self.ledger_batch,
                now: at(now),
            })
        }

        /// Applies a decision as the controller would: status written,
        /// Jobs created (still running), finalizers released.
        fn apply(&mut self, d: &Decision<ScheduleStatus>) {
            self.status = d.status.clone();
            for new in &d.create {
                let s = new.session;
                assert_eq!(
                    ObservedJob::of(&new.job, OwnerKind::Schedule, "nightly").name,
                    format!("nightly-{}", s.at)
                );
                self.jobs
                    .push(job(&format!("nightly-{}", s.at), s.at, JobState::Active));
            }
            for j in &mut self.jobs {
                if d.release.contains(&j.name) {
                    j.has_finalizer = false;
                }
                if d.delete.contains(&j.name) {
                    j.deleting = true;
                }
            }
            self.jobs.retain(|j| !d.prune.contains(&j.name));
        }
    }

    fn created(d: &Decision<ScheduleStatus>) -> Vec<String> {
        d.create.iter().map(|n| rfc3339_utc(n.session.at)).collect()
    }

    #[test]
    fn the_first_session_is_the_first_after_creation() {
        let c = Case::new("*/5 * * * *", "2026-01-01T00:02:00Z");
        let d = c.decide("2026-01-01T00:03:00Z");
        assert!(d.create.is_empty());
        assert_eq!(d.wake_at, Some(at("2026-01-01T00:05:00Z")));
        assert_eq!(
            d.status.next_schedule_time,
            Some(time(at("2026-01-01T00:05:00Z")))
        );
        let d = c.decide("2026-01-01T00:05:01Z");
        assert_eq!(created(&d), ["2026-01-01T00:05:00Z"]);
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(at("2026-01-01T00:05:00Z")))
        );
        assert_eq!(d.wake_at, Some(at("2026-01-01T00:10:00Z")));
        let ready = find_condition(&d.status.conditions, "Ready").unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn a_session_is_started_once_even_when_seen_again() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        let d = c.decide("2026-01-01T00:01:00Z");
        assert_eq!(d.create.len(), 1);
        // The status write was lost (a crash): the Job exists, the
        // watermark did not move. No second create.
        c.jobs.push(job(
            "nightly-1767225660",
            at("2026-01-01T00:01:00Z"),
            JobState::Active,
        ));
        let d = c.decide("2026-01-01T00:01:02Z");
        assert!(d.create.is_empty());
        assert_eq!(d.status.active_count, 1);
    }

    #[test]
    fn outcomes_count_once_across_a_lost_finalizer_removal() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.jobs = vec![
            job("a", at("2026-01-01T00:01:00Z"), JobState::Succeeded),
            job("b", at("2026-01-01T00:02:00Z"), JobState::Failed),
            ObservedJob {
                deleting: true,
                ..job("c", at("2026-01-01T00:03:00Z"), JobState::Active)
            },
        ];
        c.status.evaluated_through = Some(time(at("2026-01-01T00:03:00Z")));
        let d = c.decide("2026-01-01T00:03:30Z");
        assert_eq!(
            (
                d.status.succeeded_sessions,
                d.status.failed_sessions,
                d.status.killed_sessions
            ),
            (1, 1, 1)
        );
        assert_eq!(d.status.counted_jobs, ["a", "b", "c"]);
        assert_eq!(d.release, ["a", "b", "c"]);
        assert_eq!(
            d.status.last_successful_time,
            Some(time(at("2026-01-01T00:01:00Z")))
        );
        assert!(d.notes.iter().any(|n| n.reason == "SessionFailed"));
        // The status was written, the finalizers were not removed (crash).
        c.status = d.status.clone();
        let again = c.decide("2026-01-01T00:03:40Z");
        assert_eq!(
            (
                again.status.succeeded_sessions,
                again.status.failed_sessions,
                again.status.killed_sessions
            ),
            (1, 1, 1)
        );
        assert_eq!(again.release, ["a", "b", "c"]);
        // Finalizers gone: nothing is recounted, and the stale names do
        // not cost a status write of their own...
        for j in &mut c.jobs {
            j.has_finalizer = false;
        }
        let later = c.decide("2026-01-01T00:03:50Z");
        assert_eq!(later.status, c.status);
        assert_eq!(later.status.succeeded_sessions, 1);
        // ...they go with the next write that is due anyway.
        c.jobs
            .push(job("d", at("2026-01-01T00:04:00Z"), JobState::Succeeded));
        let next = c.decide("2026-01-01T00:04:10Z");
        assert_eq!(next.status.counted_jobs, ["d"]);
        assert_eq!(next.status.succeeded_sessions, 2);
    }

    #[test]
    fn forbid_misses_a_session_while_a_job_runs() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.concurrency_policy = Some(ConcurrencyPolicy::Forbid);
        let d = c.decide("2026-01-01T00:01:00Z");
        c.apply(&d);
        let d = c.decide("2026-01-01T00:02:00Z");
        assert!(d.create.is_empty());
        assert_eq!(d.status.missed_sessions, 1);
        assert_eq!(
            d.status.last_missed_time,
            Some(time(at("2026-01-01T00:02:00Z")))
        );
        let note = d
            .notes
            .iter()
            .find(|n| n.reason == "SessionMissed")
            .unwrap();
        assert!(note.message.contains("Forbid"), "{}", note.message);
        assert!(
            note.message.contains("from: 2026-01-01T00:02:00Z"),
            "{}",
            note.message
        );
        c.apply(&d);
        assert_eq!(c.decide("2026-01-01T00:02:10Z").status.missed_sessions, 1);
    }

    #[test]
    fn replace_deletes_the_running_job_and_starts_the_new_one() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.concurrency_policy = Some(ConcurrencyPolicy::Replace);
        let d = c.decide("2026-01-01T00:01:00Z");
        c.apply(&d);
        let d = c.decide("2026-01-01T00:02:00Z");
        assert_eq!(d.delete, ["nightly-1767225660"]);
        assert_eq!(created(&d), ["2026-01-01T00:02:00Z"]);
        c.apply(&d);
        let d = c.decide("2026-01-01T00:02:05Z");
        assert_eq!(d.status.killed_sessions, 1);
        assert_eq!(d.status.active_count, 1);
    }

    #[test]
    fn the_starting_deadline_turns_late_sessions_into_missed_ones() {
        let mut c = Case::new("*/10 * * * *", "2026-01-01T00:00:30Z");
        c.spec.starting_deadline_seconds = Some(60);
        let d = c.decide("2026-01-01T00:10:30Z");
        assert_eq!(d.create.len(), 1);
        let d = c.decide("2026-01-01T00:32:00Z");
        assert!(d.create.is_empty());
        assert_eq!(d.status.missed_sessions, 3);
        assert_eq!(
            d.status.evaluated_through,
            Some(time(at("2026-01-01T00:30:00Z")))
        );
    }

    #[test]
    fn after_downtime_the_policy_picks_what_runs() {
        let base = |policy| {
            let mut c = Case::new("0 * * * *", "2026-01-01T00:30:00Z");
            c.spec.missed_sessions = Some(MissedSessions {
                policy,
                window_seconds: Some(3 * 3_600),
            });
            c
        };
        // Down from 00:30 to 10:20: sessions 01:00 .. 10:00 are due.
        let now = "2026-01-01T10:20:00Z";
        let latest = base(MissedSessionPolicy::RunLatest).decide(now);
        assert_eq!(created(&latest), ["2026-01-01T10:00:00Z"]);
        assert_eq!(latest.status.missed_sessions, 9);
        assert_eq!(
            latest.status.last_missed_time,
            Some(time(at("2026-01-01T09:00:00Z")))
        );
        let all = base(MissedSessionPolicy::RunAll).decide(now);
        assert_eq!(
            created(&all),
            [
                "2026-01-01T08:00:00Z",
                "2026-01-01T09:00:00Z",
                "2026-01-01T10:00:00Z"
            ]
        );
        assert_eq!(all.status.missed_sessions, 7);
        let skip = base(MissedSessionPolicy::Skip).decide(now);
        assert!(skip.create.is_empty());
        assert_eq!(skip.status.missed_sessions, 10);
        assert_eq!(skip.wake_at, Some(at("2026-01-01T11:00:00Z")));
        // Skip still runs the regular, on-time session.
        let on_time = base(MissedSessionPolicy::Skip).decide("2026-01-01T01:00:05Z");
        assert_eq!(created(&on_time), ["2026-01-01T01:00:00Z"]);
    }

    #[test]
    fn suspend_holds_sessions_until_resumed() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.suspend = Some(true);
        let d = c.decide("2026-01-01T00:05:10Z");
        assert!(d.create.is_empty());
        assert_eq!(d.wake_at, None);
        assert_eq!(d.status.next_schedule_time, None);
        c.apply(&d);
        c.spec.suspend = None;
        let d = c.decide("2026-01-01T00:05:20Z");
        assert_eq!(created(&d), ["2026-01-01T00:05:00Z"]);
        assert_eq!(d.status.missed_sessions, 4);
    }

    #[test]
    fn a_session_whose_job_exists_is_not_missed_when_its_status_write_was_lost() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        let d = c.decide("2026-01-01T00:01:00Z");
        assert_eq!(created(&d), ["2026-01-01T00:01:00Z"]);
        // The Job was made, but the status write that recorded it was
        // lost (a 409): the status is still the one before.
        let before = c.status.clone();
        c.apply(&d);
        c.status = before;
        // Suspended meanwhile: the retry settles 00:01 again; it ran.
        c.spec.suspend = Some(true);
        let d = c.decide("2026-01-01T00:01:01Z");
        assert_eq!(d.status.missed_sessions, 0);
        c.apply(&d);
        // Resumed after four more: those four are missed, the latest runs.
        c.spec.suspend = None;
        let d = c.decide("2026-01-01T00:05:20Z");
        assert_eq!(created(&d), ["2026-01-01T00:05:00Z"]);
        assert_eq!(d.status.missed_sessions, 3);
    }

    #[test]
    fn history_limits_delete_the_oldest_counted_jobs() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.successful_jobs_history_limit = Some(2);
        c.status.evaluated_through = Some(time(at("2026-01-01T00:06:00Z")));
        for i in 1..=4 {
            c.jobs.push(job(
                &format!("s{i}"),
                at("2026-01-01T00:00:00Z") + i * 60,
                JobState::Succeeded,
            ));
        }
        c.jobs
            .push(job("f5", at("2026-01-01T00:05:00Z"), JobState::Failed));
        c.jobs
            .push(job("f6", at("2026-01-01T00:06:00Z"), JobState::Failed));
        let d = c.decide("2026-01-01T00:06:30Z");
        assert_eq!(d.prune, ["s1", "s2", "f5"]);
        assert_eq!(d.status.succeeded_sessions, 4);
        assert_eq!(d.status.failed_sessions, 2);
    }

    #[test]
    fn bounds_stop_the_schedule() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.start_time = Some(time(at("2026-01-01T00:03:00Z")));
        c.spec.end_time = Some(time(at("2026-01-01T00:05:00Z")));
        let d = c.decide("2026-01-01T00:01:10Z");
        assert!(d.create.is_empty());
        assert_eq!(d.wake_at, Some(at("2026-01-01T00:03:00Z")));
        let d = c.decide("2026-01-01T00:04:05Z");
        assert_eq!(created(&d), ["2026-01-01T00:04:00Z"]);
        c.apply(&d);
        let d = c.decide("2026-01-01T00:05:05Z");
        assert!(d.create.is_empty());
        assert_eq!(d.wake_at, None);
        assert_eq!(d.status.next_schedule_time, None);
    }

    #[test]
    fn the_daylight_saving_rule_holds_for_scheduled_runs() {
        let mut c = Case::new("30 2 * * *", "2026-03-07T00:00:00Z");
        c.spec.time_zone = Some("America/New_York".into());
        let mut runs = vec![];
        let mut now = at("2026-03-07T00:00:00Z");
        while now < at("2026-03-10T00:00:00Z") {
            let d = decide(&ScheduleView {
                name: "nightly",
                namespace: "ns",
                uid: "uid-1",
                generation: Some(1),
                created_at: c.created,
                created_from: c.created,
                spec: &c.spec,
                status: &c.status,
                jobs: &c.jobs,
                ledger: &c.ledger,
                run_elsewhere: &Default::default(),
                ledger_batch: MAX_UNFILED,
                now,
            });
            runs.extend(created(&d));
            c.apply(&d);
            now = d.wake_at.unwrap();
        }
        assert_eq!(
            runs,
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
    }

    #[test]
    fn bad_input_stalls_and_recovers() {
        let mut c = Case::new("* * * * *", "2026-01-01T00:00:30Z");
        c.spec.time_zone = Some("Mars/Olympus".into());
        let d = c.decide("2026-01-01T00:01:00Z");
        assert!(d.create.is_empty());
        let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidSchedule")
        );
        assert!(stalled.message.contains("Mars/Olympus"));
        assert_eq!(d.notes[0].reason, "InvalidSchedule");
        assert_eq!(d.wake_at, None);
        c.apply(&d);
        // Seen again: no second Event.
        assert!(c.decide("2026-01-01T00:01:05Z").notes.is_empty());
        c.spec.time_zone = Some("Europe/Paris".into());
        let d = c.decide("2026-01-01T00:01:10Z");
        let stalled = find_condition(&d.status.conditions, "Stalled").unwrap();
        assert_eq!(stalled.status, "False");
        assert_eq!(created(&d), ["2026-01-01T00:01:00Z"]);
    }
    #[test]
    fn recent_sessions_come_from_the_ledger_and_missing_ones_suggest_a_backfill() {
        use crate::core::ledger::{Ledger, Period};
        let mut c = Case::new("0 * * * *", "2026-03-01T00:30:00Z");
        let mut l = Ledger::new(Period::of(at("2026-03-01T00:00:00Z")));
        l.record(
            at("2026-03-01T01:00:00Z"),
            Outcome::Succeeded,
            "nightly",
            "",
            0,
        );
        l.record(
            at("2026-03-01T02:00:00Z"),
            Outcome::Failed,
            "nightly",
            "",
            0,
        );
        c.ledger.insert(l);
        let d = c.decide("2026-03-01T05:10:00Z");
        // 05:00 runs now (RunLatest); 03:00 and 04:00 never ran.
        assert_eq!(created(&d), ["2026-03-01T05:00:00Z"]);
        let r = d.status.recent_sessions.clone().unwrap();
        assert_eq!(r.since, time(at("2026-03-01T00:30:01Z")));
        assert_eq!((r.sessions, r.succeeded, r.failed, r.missing), (5, 1, 1, 2));
        assert_eq!(r.first_missing, Some(time(at("2026-03-01T03:00:00Z"))));
        assert_eq!(r.first_failed, Some(time(at("2026-03-01T02:00:00Z"))));
        let hint = d
            .notes
            .iter()
            .find(|n| n.reason == "SessionsMissing")
            .unwrap();
        assert!(
            hint.message.contains("reprocess Missing"),
            "{}",
            hint.message
        );
        c.apply(&d);
        // Said once.
        let again = c.decide("2026-03-01T05:20:00Z");
        assert!(!again.notes.iter().any(|n| n.reason == "SessionsMissing"));
        assert_eq!(again.status.recent_sessions, d.status.recent_sessions);
    }

    /// The hourly sessions from `from` (inclusive) to `to`, each with a
    /// finished Job that still holds its finalizer, and the watermark
    /// past them.
    fn finished(c: &mut Case, sessions: &[(&str, JobState)]) {
        for &(session, state) in sessions {
            c.jobs
                .push(job(&format!("nightly-{session}"), at(session), state));
            c.status.evaluated_through = Some(time(at(session)));
        }
    }

    fn unfiled(list: &[Unfiled]) -> Vec<(String, Outcome)> {
        list.iter()
            .map(|u| (rfc3339_utc(u.at), u.outcome))
            .collect()
    }

    fn kept(d: &Decision<ScheduleStatus>) -> Vec<(String, Outcome)> {
        unfiled(
            &Unfiled::read(&d.status.unfiled_outcomes)
                .into_values()
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn outcomes_wait_in_the_status_and_go_to_the_ledger_in_a_batch() {
        let mut c = Case::new("0 * * * *", "2026-03-01T00:30:00Z");
        c.ledger_batch = 3;
        finished(&mut c, &[("2026-03-01T01:00:00Z", JobState::Succeeded)]);
        let d = c.decide("2026-03-01T01:30:00Z");
        // Counted and kept in the status, which is written before the
        // finalizer comes off; no ledger write.
        assert!(d.ledger.is_empty(), "{:?}", d.ledger);
        assert_eq!(
            kept(&d),
            [("2026-03-01T01:00:00Z".into(), Outcome::Succeeded)]
        );
        assert_eq!(d.release, ["nightly-2026-03-01T01:00:00Z"]);
        c.apply(&d);
        // Seen again (the finalizer is gone): nothing changes.
        assert_eq!(c.decide("2026-03-01T01:40:00Z").status, c.status);

        finished(&mut c, &[("2026-03-01T02:00:00Z", JobState::Failed)]);
        let d = c.decide("2026-03-01T02:30:00Z");
        assert!(d.ledger.is_empty());
        assert_eq!(kept(&d).len(), 2);
        // The report reads the kept outcomes as the ledger's.
        let r = d.status.recent_sessions.clone().unwrap();
        assert_eq!((r.sessions, r.succeeded, r.failed, r.missing), (2, 1, 1, 0));
        c.apply(&d);

        // The third makes the batch: all three go to the ledger, as the
        // Schedule's attempt, and the status keeps none.
        finished(&mut c, &[("2026-03-01T03:00:00Z", JobState::Succeeded)]);
        let d = c.decide("2026-03-01T03:30:00Z");
        assert_eq!(
            unfiled(&d.ledger.unfiled),
            [
                ("2026-03-01T01:00:00Z".into(), Outcome::Succeeded),
                ("2026-03-01T02:00:00Z".into(), Outcome::Failed),
                ("2026-03-01T03:00:00Z".into(), Outcome::Succeeded),
            ]
        );
        assert_eq!(
            (d.ledger.attempt.as_str(), d.ledger.owner.as_str()),
            ("nightly", "Schedule/nightly")
        );
        assert!(d.ledger.outcomes.is_empty());
        assert!(d.status.unfiled_outcomes.is_empty());
        assert_eq!(d.status.recent_sessions.clone().unwrap().succeeded, 2);
    }

    #[test]
    fn a_new_month_or_a_quiet_schedule_files_what_the_status_keeps() {
        // The first outcome of March files February's with it.
        let mut c = Case::new("0 * * * *", "2026-02-28T21:30:00Z");
        finished(
            &mut c,
            &[
                ("2026-02-28T22:00:00Z", JobState::Succeeded),
                ("2026-02-28T23:00:00Z", JobState::Failed),
            ],
        );
        let d = c.decide("2026-02-28T23:30:00Z");
        assert!(d.ledger.is_empty());
        c.apply(&d);
        finished(&mut c, &[("2026-03-01T00:00:00Z", JobState::Succeeded)]);
        let d = c.decide("2026-03-01T00:30:00Z");
        assert_eq!(d.ledger.unfiled.len(), 3);
        assert!(d.status.unfiled_outcomes.is_empty());

        // Suspended while a Job runs: kept until that Job ends too.
        let mut c = Case::new("0 * * * *", "2026-03-01T00:30:00Z");
        finished(
            &mut c,
            &[
                ("2026-03-01T01:00:00Z", JobState::Succeeded),
                ("2026-03-01T02:00:00Z", JobState::Active),
            ],
        );
        c.spec.suspend = Some(true);
        let d = c.decide("2026-03-01T02:30:00Z");
        assert!(d.ledger.is_empty());
        assert_eq!(kept(&d).len(), 1);
        c.apply(&d);
        c.jobs[1].state = JobState::Succeeded;
        let d = c.decide("2026-03-01T02:40:00Z");
        assert_eq!(d.ledger.unfiled.len(), 2);
        assert!(d.status.unfiled_outcomes.is_empty());

        // A batch of one writes each outcome at once.
        let mut c = Case::new("0 * * * *", "2026-03-01T00:30:00Z");
        c.ledger_batch = 1;
        finished(&mut c, &[("2026-03-01T01:00:00Z", JobState::Succeeded)]);
        let d = c.decide("2026-03-01T01:30:00Z");
        assert_eq!(d.ledger.unfiled.len(), 1);
        assert!(d.status.unfiled_outcomes.is_empty());
    }
}
