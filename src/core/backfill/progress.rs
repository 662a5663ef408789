//! A started run: outcomes counted once per plan index, then launches,
//! pauses, waits for a window or cancels.

use super::FAILURE_PREVIEW;
use super::budget;
use super::run::{failed_sessions, frozen_plan};
use super::status::Stall;
use super::view::{BackfillView, Pass};
use crate::api::{
    BackfillPhase, BackfillStatus, FailureBudgetAction, Reprocess, RunState, SessionSummary,
    condition,
};
use crate::core::bitmap::Bitmap;
use crate::core::capacity::{self, Budget, Claimant, max_in_flight};
use crate::core::observed::{Note, ObservedJob, Outcome, find_condition};
use crate::core::plan::{Order, Plan, PlanError, session_set};
use crate::core::reason::Reason;
use crate::core::windows::Windows;
use crate::core::zoned_cron::{Session, ZonedCron, rfc3339_utc, seconds, time};

/// The outcomes of a run so far: bitmaps over plan indexes. `done`
/// holds every index settled: counted, or `skipped` after the start.
struct Outcomes {
    done: Bitmap,
    failed: Bitmap,
    killed: Bitmap,
    skipped: Bitmap,
}

impl Outcomes {
    /// Sessions processed: counted with an outcome (not skipped).
    fn processed(&self) -> u64 {
        self.done.len() - self.skipped.len()
    }
}

/// Records outcomes, then launches, pauses, waits or cancels.
pub(super) fn advance(view: &BackfillView<'_>, d: &mut Pass) -> Result<(), Stall> {
    let mut run = d.status.run.clone().unwrap_or_default();
    let mut outcomes = Outcomes {
        done: Bitmap::decode(&run.done).unwrap_or_default(),
        failed: Bitmap::decode(&run.failed).unwrap_or_default(),
        killed: Bitmap::decode(&run.killed).unwrap_or_default(),
        skipped: Bitmap::decode(&run.skipped).unwrap_or_default(),
    };
    // The skipped are settled in `done`; a bitmap someone edited is
    // made to agree.
    outcomes.done.union_with(&outcomes.skipped);
    // The plan's length: what is left to run, and what was left out.
    let planned = (d.status.total_estimated.max(0) as u64) + outcomes.skipped.len();
    take_back_lost_launches(view, &mut run, &mut outcomes, planned);
    count_outcomes(view, d, &run, &mut outcomes, planned);

    let running: Vec<&ObservedJob> = view.jobs.iter().filter(|j| j.running()).collect();
    // In flight: launched and not yet counted. That includes Jobs the
    // cache does not show yet, so a pass right after a launch never
    // launches past `maxInFlight`.
    let in_flight = (run.launched.max(0) as u64)
        .saturating_sub(outcomes.done.len())
        .max(running.len() as u64);
    d.status.running_count = in_flight as i64;
    let phase = d.status.phase.unwrap_or_default();
    let ended = matches!(phase, BackfillPhase::Succeeded | BackfillPhase::Failed);
    d.status.waiting_for_capacity = 0;

    // A launch that cannot happen must not lose the outcomes counted
    // above: its error is returned after the run state is saved.
    let mut launched = Ok(());
    if view.spec.cancel == Some(true) && !ended {
        // Every pass deletes what runs, also Jobs the cache showed late.
        d.delete = running.iter().map(|j| j.name.clone()).collect();
        d.status.phase = Some(BackfillPhase::Cancelled);
        d.status.error =
            Some("cancelled: running Jobs were deleted, nothing more is launched".into());
    } else if ended || phase == BackfillPhase::Cancelled {
        // Nothing more to launch; stragglers are counted above.
        if phase == BackfillPhase::Cancelled
            && let Some(message) = budget::held(view, d)
        {
            d.hold = Some((Reason::FailureBudgetExhausted, message));
        }
    } else if let Some((action, message)) = budget::judge(
        view,
        d,
        &run,
        &budget::Counted {
            done: &outcomes.done,
            failed: &outcomes.failed,
            killed: &outcomes.killed,
            skipped: &outcomes.skipped,
        },
        planned,
    ) {
        // Checked before any launch, on the outcomes this pass counted:
        // no Job starts once the budget is spent.
        d.status.phase = Some(match action {
            FailureBudgetAction::Pause => BackfillPhase::Paused,
            FailureBudgetAction::Cancel => BackfillPhase::Cancelled,
        });
        d.status.next_window_start = None;
        d.hold = Some((Reason::FailureBudgetExhausted, message));
    } else if view.spec.suspend == Some(true) {
        d.status.phase = Some(BackfillPhase::Paused);
        d.status.next_window_start = None;
    } else {
        d.status.phase = Some(BackfillPhase::Running);
        launched = launch(view, d, &mut run, &mut outcomes, in_flight, planned);
    }
    d.status.skipped_count = outcomes.skipped.len() as i64;
    d.status.total_estimated = (planned - outcomes.skipped.len()) as i64;

    let settled =
        (run.launched.max(0) as u64).saturating_sub(outcomes.done.len()) == 0 && running.is_empty();
    finish_run(view, d, &mut run, &outcomes, planned, settled);
    run.done = outcomes.done.encode();
    run.failed = outcomes.failed.encode();
    run.killed = outcomes.killed.encode();
    run.skipped = outcomes.skipped.encode();
    d.status.run = Some(run);
    launched
}

/// Counts each ended Job once per plan index, and releases the ended Jobs
/// it counted (or had counted) that still hold the finalizer. A Job past
/// what the status says was launched (a pass whose status write was lost
/// made it) keeps its finalizer until a launch records it.
///
/// A Job's plan index and session label are read back from the cluster,
/// where anyone may have edited them: they count only when they are what
/// this Backfill wrote (an index it launched, the session its name was
/// made from). A Job that does not match is counted by the session of its
/// name instead, found in the frozen plan with a Warning, or not at all
/// when its name is no session of the plan.
fn count_outcomes(
    view: &BackfillView<'_>,
    d: &mut Pass,
    run: &RunState,
    outcomes: &mut Outcomes,
    planned: u64,
) {
    let launched = run.launched.max(0) as u64;
    let cancelled =
        view.spec.cancel == Some(true) || d.status.phase == Some(BackfillPhase::Cancelled);
    let mut newly_failed = Vec::new();
    let mut unmatched = Vec::new();
    for job in view.jobs {
        let Some(outcome) = job.outcome() else {
            continue;
        };
        if !job.has_finalizer {
            continue;
        }
        match (trusted_index(job, launched), job.plan_index) {
            (Some(index), _) => {
                d.release.push(job.name.clone());
                if count(d, outcomes, index, outcome) {
                    newly_failed.push(job);
                }
            }
            // As written, past what the status says was launched but in
            // the plan: made by a pass whose status write was lost, past a
            // session with no Job (or `take_back_lost_launches` would have
            // taken it back). It keeps its finalizer until a launch
            // records it again (its create finds it), and is counted then;
            // a cancelled run launches no more, so it lets it go.
            (None, Some(index)) if index < planned => {
                if cancelled {
                    d.release.push(job.name.clone());
                    d.notes.push(Note {
                        warning: true,
                        reason: Reason::LaunchNotRecorded,
                        message: format!(
                            "Job {} was launched by a pass whose status write was lost, and the backfill was cancelled before a launch recorded it: its outcome is not counted",
                            job.name
                        ),
                    });
                }
            }
            _ => unmatched.push((job, outcome)),
        }
    }
    if !unmatched.is_empty() {
        for (job, outcome, index) in indexes_by_name(view, d, launched, unmatched) {
            if count(d, outcomes, index, outcome) {
                newly_failed.push(job);
            }
        }
    }
    if newly_failed.is_empty() {
        return;
    }
    let summary = d
        .status
        .failed_sessions
        .get_or_insert_with(SessionSummary::default);
    summary.count = outcomes.failed.len() as i64 + outcomes.killed.len() as i64;
    for job in &newly_failed {
        if summary.preview.len() < FAILURE_PREVIEW
            && let Some(at) = job.session
        {
            summary.preview.push(time(at));
        }
    }
    summary.preview.sort_by_key(seconds);
    let names: Vec<&str> = newly_failed.iter().map(|j| j.name.as_str()).collect();
    d.notes.push(Note {
        warning: true,
        reason: Reason::SessionFailed,
        message: format!("Job {} did not succeed", names.join(", ")),
    });
}

/// A launched session whose Job could not be created (its name is taken
/// by another owner's Job) counts as failed, so the run never waits for
/// it; its rerun can follow once that Job is gone.
pub(super) fn count_not_launched(status: &mut BackfillStatus, index: u64, session: i64) {
    let Some(run) = status.run.as_mut() else {
        return;
    };
    let mut done = Bitmap::decode(&run.done).unwrap_or_default();
    if done.contains(index) {
        return;
    }
    let mut failed = Bitmap::decode(&run.failed).unwrap_or_default();
    done.insert(index);
    failed.insert(index);
    run.done = done.encode();
    run.failed = failed.encode();
    status.failed_count += 1;
    let skipped = Bitmap::decode(&run.skipped).unwrap_or_default();
    let processed = done.len().saturating_sub(skipped.len());
    status.processed_count = processed as i64;
    status.running_count = (status.running_count - 1).max(0);
    status.progress = Some(format!("{processed}/{}", status.total_estimated));
    let summary = status
        .failed_sessions
        .get_or_insert_with(SessionSummary::default);
    summary.count += 1;
    if summary.preview.len() < FAILURE_PREVIEW {
        summary.preview.push(time(session));
        summary.preview.sort_by_key(seconds);
    }
}

/// Counts `outcome` at `index` unless counted already; true for a new
/// failure.
fn count(d: &mut Pass, outcomes: &mut Outcomes, index: u64, outcome: Outcome) -> bool {
    if outcomes.done.contains(index) {
        return false;
    }
    outcomes.done.insert(index);
    let s = &mut d.status;
    match outcome {
        Outcome::Succeeded => {
            s.succeeded_count += 1;
            false
        }
        Outcome::Failed => {
            s.failed_count += 1;
            outcomes.failed.insert(index);
            true
        }
        Outcome::Killed => {
            s.killed_count += 1;
            outcomes.killed.insert(index);
            true
        }
    }
}

/// The plan index of `job` as its annotation says, if that is what this
/// Backfill wrote: an index it launched, on a Job whose labels agree with
/// its name (`ObservedJob::of` checked that).
fn trusted_index(job: &ObservedJob, launched: u64) -> Option<u64> {
    job.plan_index.filter(|&i| i < launched)
}

/// The plan indexes of Jobs whose annotations cannot be trusted, by the
/// session of their names: one walk of the frozen plan, only when such a
/// Job ends. One of a launched session is counted and released; one of a
/// session still to launch keeps its finalizer until it is launched (a
/// pass whose status write was lost made it); one of no session of the
/// plan is released uncounted. Each counted or released gets a Warning.
fn indexes_by_name<'j>(
    view: &BackfillView<'_>,
    d: &mut Pass,
    launched: u64,
    unmatched: Vec<(&'j ObservedJob, Outcome)>,
) -> Vec<(&'j ObservedJob, Outcome, u64)> {
    let mut wanted: std::collections::HashMap<i64, (&ObservedJob, Outcome)> = unmatched
        .iter()
        .filter_map(|&(job, outcome)| Some((job.session?, (job, outcome))))
        .collect();
    let mut found = Vec::new();
    let mut later = std::collections::HashSet::new();
    if let (false, Some(run)) = (wanted.is_empty(), &d.status.run)
        && let Ok(plan) = frozen_plan(view.spec, run)
    {
        for (index, session) in plan.iter().enumerate() {
            if let Some((job, outcome)) = wanted.remove(&session.at) {
                if (index as u64) < launched {
                    found.push((job, outcome, index as u64));
                } else {
                    later.insert(job.name.as_str());
                }
                if wanted.is_empty() {
                    break;
                }
            }
        }
    }
    for (job, _) in &unmatched {
        if later.contains(job.name.as_str()) {
            continue;
        }
        let counted = found.iter().any(|(j, _, _)| j.name == job.name);
        d.release.push(job.name.clone());
        d.notes.push(Note {
            warning: true,
            reason: Reason::JobNotAsWritten,
            message: if counted {
                format!(
                    "Job {}: its backfill.dev/plan-index annotation or backfill.dev/session label is not what the operator wrote; it was ignored and the Job counted by the session of its name",
                    job.name
                )
            } else {
                format!(
                    "Job {} is not a Job this backfill launched (its name is no session of the plan); its outcome is not counted",
                    job.name
                )
            },
        });
    }
    found
}

/// Progress, the final phase once every session is processed, and, once
/// nothing runs any more, the completion time and the whole set of failed
/// sessions (rerun children copy it).
fn finish_run(
    view: &BackfillView<'_>,
    d: &mut Pass,
    run: &mut RunState,
    outcomes: &Outcomes,
    planned: u64,
    settled: bool,
) {
    let total = d.status.total_estimated.max(0) as u64;
    let processed = outcomes.processed();
    d.status.processed_count = processed as i64;
    d.status.progress = Some(format!("{processed}/{total}"));
    let launched = run.launched.max(0) as u64;
    let all_done = launched >= planned && outcomes.done.len() >= launched;
    let bad = outcomes.failed.len() + outcomes.killed.len();
    if let Some(BackfillPhase::Running | BackfillPhase::Waiting) = d.status.phase
        && all_done
    {
        d.status.phase = Some(if bad == 0 {
            BackfillPhase::Succeeded
        } else {
            d.status.error = Some(format!("{bad} of {total} sessions did not succeed"));
            BackfillPhase::Failed
        });
        d.status.next_window_start = None;
    }
    let terminal = matches!(
        d.status.phase,
        Some(BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled)
    );
    if terminal && d.status.completed_at.is_none() && settled {
        d.status.completed_at = Some(time(view.now));
        if bad > 0 {
            run.failed = outcomes.failed.encode();
            run.killed = outcomes.killed.encode();
            let clock = ZonedCron::new(&run.schedule, Some(&run.time_zone));
            let set = match (failed_sessions(view.spec, run), clock) {
                (Ok(sessions), Ok(clock)) => session_set(&clock, &sessions),
                _ => None,
            };
            if let Some(summary) = d.status.failed_sessions.as_mut() {
                summary.set = set;
            }
        }
    }
}

/// Launches up to `maxInFlight` Jobs in plan order, inside the windows.
///
/// One Job per session at a time per Schedule: launching stops at a
/// session another Job of the Schedule runs now, until that Job ends.
/// A session decided by another attempt since the start is then left
/// out when `reprocess` would not run it again.
fn launch(
    view: &BackfillView<'_>,
    d: &mut Pass,
    run: &mut RunState,
    outcomes: &mut Outcomes,
    running: u64,
    planned: u64,
) -> Result<(), Stall> {
    let launched = run.launched.max(0) as u64;
    if launched >= planned {
        d.status.next_window_start = None;
        return Ok(());
    }
    if view.schedule.is_none() {
        return Err(Stall {
            reason: Reason::ScheduleNotFound,
            message: format!(
                "Schedule {:?} not found: its Job template is needed to launch the remaining sessions",
                view.spec.schedule_ref.name
            ),
        });
    }
    let windows = Windows::from_spec(
        view.spec.execution_windows.as_ref(),
        Some(run.time_zone.as_str()),
    )
    .map_err(|e| Stall {
        reason: Reason::InvalidWindows,
        message: e.to_string(),
    })?;
    if let Some(w) = &windows
        && !w.is_open(view.now)
    {
        let next = w.next_open(view.now);
        if view.status.phase != Some(BackfillPhase::Waiting) {
            d.notes.push(Note {
                warning: false,
                reason: Reason::Waiting,
                message: match next {
                    Some(t) => format!(
                        "outside the execution windows; the next opens at {}",
                        rfc3339_utc(t)
                    ),
                    None => "outside the execution windows, and none opens".into(),
                },
            });
        }
        d.status.phase = Some(BackfillPhase::Waiting);
        d.status.next_window_start = next.map(time);
        d.wake_at = next;
        return Ok(());
    }
    d.status.next_window_start = None;
    let by_flight = max_in_flight(view.spec).saturating_sub(running);
    if by_flight == 0 {
        return Ok(());
    }
    let slots = match (view.budget, view.schedule) {
        (Some(budget), Some(schedule)) => {
            let me = Claimant {
                uid: view.uid.to_string(),
                running,
                wants: max_in_flight(view.spec).min(running + (planned - launched)),
                processed: d.status.processed_count.max(0) as u64,
            };
            let (may, live) =
                capacity::allowance(budget, schedule, view.recent_durations, &me, view.now);
            let held = by_flight.min(planned - launched).saturating_sub(may);
            if held > 0 {
                hold_for_capacity(view, d, budget, live, held, may == 0);
            }
            by_flight.min(may)
        }
        _ => by_flight,
    };
    if slots == 0 {
        return Ok(());
    }
    let Some(rest) = Rest::of(view, run)? else {
        return Ok(());
    };
    let reprocess = view.spec.reprocess.unwrap_or_default();
    let mut index = launched;
    let mut next = None;
    let mut left_out = Vec::new();
    for s in rest.plan.iter() {
        if index >= planned {
            break;
        }
        if d.create.len() as u64 == slots {
            next = Some(s);
            break;
        }
        if let Some(job) = view.run_elsewhere.get(&s.at) {
            hold_for(view, d, s.at, job);
            next = Some(s);
            break;
        }
        if decided_elsewhere(view, reprocess, s.at) {
            outcomes.done.insert(index);
            outcomes.skipped.insert(index);
            left_out.push(s.at);
        } else {
            d.create.push((index, s));
        }
        index += 1;
    }
    if !left_out.is_empty() {
        d.notes.push(Note {
            warning: false,
            reason: Reason::SessionDecidedElsewhere,
            message: format!(
                "{} session(s) left out, from {}: another Job of the Schedule decided them while this backfill waited, and reprocess {reprocess:?} does not run them again",
                left_out.len(),
                rfc3339_utc(left_out[0])
            ),
        });
    }
    rest.stop_at(run, index, next);
    Ok(())
}

/// The sessions still to launch: the frozen plan from where the last
/// launch stopped (a set is walked from there, not from its start).
struct Rest {
    plan: Plan,
    /// Where the last launch stopped: its session and set slot.
    known: Option<(i64, u64)>,
}

impl Rest {
    /// `None` once every session was launched.
    fn of(view: &BackfillView<'_>, run: &RunState) -> Result<Option<Self>, PlanError> {
        let mut plan = frozen_plan(view.spec, run)?;
        let resume = run.next_session.as_ref().map(seconds);
        let known = resume.zip(run.next_slot.and_then(|s| u64::try_from(s).ok()));
        if let Some((at, slot)) = known {
            plan = plan.resuming(at, slot);
        }
        let plan = match (resume, plan.order()) {
            (Some(at), Order::Ascending) => plan.not_before(Some(at)),
            (Some(at), Order::Descending) => plan.before(Some(at + 1)),
            (None, _) => return Ok(None),
        };
        Ok(Some(Self { plan, known }))
    }

    /// Records that launching got to plan index `index`, and that `next`
    /// (none when the plan is walked through) is the session to launch
    /// next.
    fn stop_at(&self, run: &mut RunState, index: u64, next: Option<Session>) {
        run.launched = index as i64;
        run.next_session = next.map(|s| time(s.at));
        run.next_slot = next
            .and_then(|s| self.plan.set_slot(s.at, self.known))
            .map(|slot| slot as i64);
    }
}

/// Takes back the launches of a pass whose status write was lost (it
/// conflicted with an edit of the spec, or the operator stopped): its Jobs
/// are in the cache past what the status says was launched. Launches go in
/// plan order, so the walk goes on from `launched` while each session has
/// its Job, at the plan index that Job was written with, or was left out
/// as decided elsewhere (as the lost pass did), and stops after the last
/// Job so taken back. A Job past a session with neither is taken back by
/// the next launch, whose create finds it.
///
/// Done on every pass, whatever the phase: a suspended, budget-paused or
/// cancelled Backfill launches nothing, and its lost launches would
/// otherwise never be counted nor released.
fn take_back_lost_launches(
    view: &BackfillView<'_>,
    run: &mut RunState,
    outcomes: &mut Outcomes,
    planned: u64,
) {
    let launched = run.launched.max(0) as u64;
    let mut ahead: std::collections::HashMap<i64, u64> = view
        .jobs
        .iter()
        .filter_map(|j| Some((j.session?, j.plan_index?)))
        .filter(|&(_, index)| index >= launched && index < planned)
        .collect();
    if ahead.is_empty() {
        return;
    }
    let Ok(Some(rest)) = Rest::of(view, run) else {
        return;
    };
    let reprocess = view.spec.reprocess.unwrap_or_default();
    let mut index = launched;
    // Where the walk stops: just past the last Job taken back, and the
    // session there (the next to launch).
    let mut end = None;
    let mut after_job = false;
    let mut left_out = Vec::new();
    for s in rest.plan.iter() {
        if after_job {
            end = Some((index, (index < planned).then_some(s)));
            after_job = false;
        }
        if index >= planned || ahead.is_empty() {
            break;
        }
        match ahead.remove(&s.at) {
            Some(written) if written == index => after_job = true,
            None if decided_elsewhere(view, reprocess, s.at) => left_out.push(index),
            _ => break,
        }
        index += 1;
    }
    if after_job {
        end = Some((index, None));
    }
    let Some((index, next)) = end else {
        return;
    };
    for i in left_out.into_iter().filter(|&i| i < index) {
        outcomes.done.insert(i);
        outcomes.skipped.insert(i);
    }
    rest.stop_at(run, index, next);
}

/// Whether a session still to launch was decided since the start by
/// another attempt, in a way `reprocess` does not run again: `Missing`
/// leaves out any outcome, `Failed` a success, `All` nothing.
fn decided_elsewhere(view: &BackfillView<'_>, reprocess: Reprocess, at: i64) -> bool {
    match (reprocess, view.ledger.outcome(at)) {
        (Reprocess::All, _) | (_, None) => false,
        (Reprocess::Missing, Some(_)) => true,
        (Reprocess::Failed, Some(outcome)) => outcome == Outcome::Succeeded,
    }
}

/// Launching waits for `job`, another Job of the Schedule, which runs
/// the session at `at`: the phase is `Waiting`, with an Event when the
/// wait begins.
fn hold_for(view: &BackfillView<'_>, d: &mut Pass, at: i64, job: &str) {
    let message = format!(
        "the session at {} runs in Job {job}, another attempt of it: this backfill launches it, or leaves it out as reprocess says, once that Job ends",
        rfc3339_utc(at)
    );
    let was = view.status.phase == Some(BackfillPhase::Waiting)
        && find_condition(&view.status.conditions, condition::READY).is_some_and(|c| {
            Reason::SessionRunElsewhere == c.reason.as_str() && c.message == message
        });
    if !was {
        d.notes.push(Note {
            warning: false,
            reason: Reason::SessionRunElsewhere,
            message: message.clone(),
        });
    }
    d.status.phase = Some(BackfillPhase::Waiting);
    d.hold = Some((Reason::SessionRunElsewhere, message));
    // That Job's end wakes this backfill (the controller maps it here);
    // a look now and then covers an end seen before this status was.
    d.wake_at = Some(view.now + HOLD_RECHECK);
}

/// Launching is held back by the Schedule's `maxActiveJobs`: `held`
/// sessions would start now but for it. With none started the phase is
/// `Waiting`; either way Ready says why, with an Event when it begins.
fn hold_for_capacity(
    view: &BackfillView<'_>,
    d: &mut Pass,
    budget: &Budget,
    live: u64,
    held: u64,
    none_start: bool,
) {
    let others: u64 = budget.others.iter().map(|c| c.running).sum();
    let message = format!(
        "{held} session(s) wait for capacity: the Schedule's maxActiveJobs is {}, its live runs take {live} and other backfills run {others}",
        budget.max_active
    );
    let was = find_condition(&view.status.conditions, condition::READY)
        .is_some_and(|c| Reason::WaitingForCapacity == c.reason.as_str());
    if !was {
        d.notes.push(Note {
            warning: false,
            reason: Reason::WaitingForCapacity,
            message: message.clone(),
        });
    }
    if none_start {
        d.status.phase = Some(BackfillPhase::Waiting);
    }
    d.status.waiting_for_capacity = held as i64;
    d.hold = Some((Reason::WaitingForCapacity, message));
    // A Job of the Schedule that ends wakes this backfill (the controller
    // maps it here); a look now and then covers the rest.
    d.wake_at = Some(view.now + HOLD_RECHECK);
}

/// How often a backfill waiting for another Job of its Schedule looks
/// again without being woken (seconds).
const HOLD_RECHECK: i64 = 30;
