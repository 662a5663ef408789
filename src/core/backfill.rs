//! The Backfill's `decide` step: from the Backfill, its Schedule, the Jobs
//! observed and `now`, the Jobs to create and delete, the finalizers to
//! release, the status to write and when to look again.
//!
//! Progress is kept in constant space per session: the plan is frozen at
//! the start (the Schedule's cron and zone, the first and last session),
//! Jobs are launched in plan order so "launched" is one number, and the
//! outcomes are bitmaps over plan indexes. A Job carries its plan index,
//! so its outcome is counted exactly once however often it is seen.

use uuid::Uuid;

use super::bitmap::Bitmap;
use super::clock::{Clock, Session, rfc3339_utc, time};
use super::ledger::LedgerIndex;
use super::observed::{Kstatus, Note, ObservedJob, Outcome, find_condition};
use super::plan::{Order, Plan, PlanError, Selection, seconds, session_set};
use super::rerun::{RerunChild, failed_sessions};
use super::windows::Windows;
use crate::api::{
    BackfillPhase, BackfillSpec, BackfillStatus, CostEstimate, PlanPreview, Reprocess, RunState,
    ScheduleSpec, SessionSummary, condition,
};

/// A condition: the Schedule's cron or zone changed under a started run.
pub const SCHEDULE_CHANGED: &str = "ScheduleChanged";
/// Sessions shown at each end of a preview, and failures listed by time.
pub const PREVIEW: usize = 5;
pub const FAILURE_PREVIEW: usize = 10;
/// The completion estimate walks at most this many batches.
const ESTIMATE_STEPS: u64 = 200_000;

/// Everything `decide` looks at.
#[derive(Clone, Debug)]
pub struct BackfillView<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a BackfillSpec,
    pub status: &'a BackfillStatus,
    /// `backfill.dev/created-by`, else the field manager that created it.
    pub created_by: Option<String>,
    /// The Schedule, when it exists.
    pub schedule: Option<&'a ScheduleSpec>,
    pub jobs: &'a [ObservedJob],
    /// Durations (seconds) of the Schedule's recent finished Jobs.
    pub recent_durations: &'a [i64],
    /// The `backfill.dev/rerun-failed` annotation.
    pub rerun_request: Option<&'a str>,
    /// The Schedule's session ledger, read before the start for
    /// `reprocess`.
    pub ledger: &'a LedgerIndex,
    /// When the Backfill was created, on the operator's clock.
    pub created: Option<i64>,
    pub now: i64,
}

/// How long a new Backfill waits for its Schedule before it is Stalled:
/// manifests applied together (`kubectl apply -f dir/`, a GitOps sync)
/// may create the Backfill first, and a Stalled condition, even for a
/// moment, fails a Flux Kustomization that waits for health.
pub const SCHEDULE_GRACE: i64 = 30;

/// What to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackfillDecision {
    /// Sessions to launch, with their plan index.
    pub create: Vec<(u64, Session)>,
    /// Running Jobs to delete (cancel).
    pub delete: Vec<String>,
    /// Jobs whose finalizer comes off once `status` is written.
    pub release: Vec<String>,
    pub status: BackfillStatus,
    pub notes: Vec<Note>,
    /// When to reconcile again (on the operator's clock) if nothing
    /// changes before: when a window opens.
    pub wake_at: Option<i64>,
    /// A rerun child to create, then record with `rerun::record_child`.
    pub rerun: Option<RerunChild>,
}

/// The run id: a UUID derived from the Backfill's UID, so a start retried
/// after a crash assigns the same one.
pub fn run_id(uid: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("backfill.dev/run/{uid}").as_bytes(),
    )
    .to_string()
}

pub fn decide(view: &BackfillView<'_>) -> BackfillDecision {
    let mut d = BackfillDecision {
        status: view.status.clone(),
        ..BackfillDecision::default()
    };
    d.status.observed_generation = view.generation;
    let ks = Kstatus {
        before: &view.status.conditions,
        generation: view.generation,
        now: view.now,
    };
    let before = view.status.phase.unwrap_or_default();

    let outcome = if view.status.run.is_none() {
        plan_or_start(view, &mut d)
    } else {
        Ok(())
    };
    match (outcome, in_grace(view)) {
        (Err(stall), Some(until)) if stall.reason == SCHEDULE_NOT_FOUND => {
            waiting_for_schedule(&mut d, &ks, until, &stall);
            return d;
        }
        (Err(stall), _) => {
            stalled(view, &mut d, &ks, stall);
            return d;
        }
        (Ok(()), _) => clear_stall(&mut d, &ks),
    }
    if let (Some(run), Some(schedule)) = (&view.status.run, view.schedule) {
        let now_zone = schedule.time_zone.as_deref().unwrap_or("UTC");
        let changed = run.schedule != schedule.schedule.trim() || run.time_zone != now_zone;
        let was = find_condition(&view.status.conditions, SCHEDULE_CHANGED)
            .is_some_and(|c| c.status == "True");
        let message = if changed {
            format!(
                "the Schedule is now {:?} in {now_zone}; this backfill keeps the plan it started with ({:?} in {})",
                schedule.schedule, run.schedule, run.time_zone
            )
        } else {
            String::new()
        };
        if changed && !was {
            d.notes.push(Note {
                warning: true,
                reason: SCHEDULE_CHANGED,
                message: message.clone(),
            });
        }
        ks.set(
            &mut d.status.conditions,
            SCHEDULE_CHANGED,
            changed,
            if changed {
                SCHEDULE_CHANGED
            } else {
                "Unchanged"
            },
            &message,
        );
    }
    if d.status.run.is_some()
        && let Err(stall) = advance(view, &mut d)
    {
        stalled(view, &mut d, &ks, stall);
        return d;
    }
    finish_status(&mut d, &ks, before);
    super::rerun::step(view, &mut d, &ks);
    d
}

/// Why a Backfill cannot go on; it becomes a `Stalled` condition.
struct Stall {
    reason: &'static str,
    message: String,
}

impl From<PlanError> for Stall {
    fn from(e: PlanError) -> Self {
        let reason = match e {
            PlanError::Clock(_) => "InvalidSchedule",
            _ => "InvalidPlan",
        };
        Stall {
            reason,
            message: e.to_string(),
        }
    }
}

fn stalled(view: &BackfillView<'_>, d: &mut BackfillDecision, ks: &Kstatus<'_>, stall: Stall) {
    let was = find_condition(&view.status.conditions, condition::STALLED)
        .is_some_and(|c| c.status == "True" && c.message == stall.message);
    if !was {
        d.notes.push(Note {
            warning: true,
            reason: stall.reason,
            message: stall.message.clone(),
        });
    }
    d.create.clear();
    d.wake_at = None;
    if d.status.phase.is_none() {
        d.status.phase = Some(BackfillPhase::Pending);
    }
    ks.set(
        &mut d.status.conditions,
        condition::STALLED,
        true,
        stall.reason,
        &stall.message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::READY,
        false,
        stall.reason,
        &stall.message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::RECONCILING,
        false,
        stall.reason,
        "",
    );
}

const SCHEDULE_NOT_FOUND: &str = "ScheduleNotFound";

/// When a new Backfill's wait for its Schedule ends, if it has not yet.
fn in_grace(view: &BackfillView<'_>) -> Option<i64> {
    view.created
        .map(|c| c + SCHEDULE_GRACE)
        .filter(|&until| view.now < until)
}

/// A new Backfill whose Schedule does not exist yet: in progress, not
/// Stalled, until `until`; no Event.
fn waiting_for_schedule(d: &mut BackfillDecision, ks: &Kstatus<'_>, until: i64, stall: &Stall) {
    d.create.clear();
    d.wake_at = Some(until);
    if d.status.phase.is_none() {
        d.status.phase = Some(BackfillPhase::Pending);
    }
    let message = format!(
        "{}; waiting for it until {} (Stalled after that)",
        stall.message,
        time(until).0
    );
    clear_stall(d, ks);
    ks.set(
        &mut d.status.conditions,
        condition::READY,
        false,
        "WaitingForSchedule",
        &message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::RECONCILING,
        true,
        "WaitingForSchedule",
        &message,
    );
}

fn clear_stall(d: &mut BackfillDecision, ks: &Kstatus<'_>) {
    ks.set(
        &mut d.status.conditions,
        condition::STALLED,
        false,
        "Reconciled",
        "",
    );
}

/// Before the start: plan (a dry run stops here) or freeze the plan and
/// start.
fn plan_or_start(view: &BackfillView<'_>, d: &mut BackfillDecision) -> Result<(), Stall> {
    let schedule = view.schedule.ok_or_else(|| Stall {
        reason: SCHEDULE_NOT_FOUND,
        message: format!(
            "Schedule {:?} not found in this namespace",
            view.spec.schedule_ref.name
        ),
    })?;
    let dry_run = view.spec.dry_run == Some(true);
    let cutoff = view.now;
    let plan = Plan::for_backfill(schedule, view.spec, Some(cutoff))?;

    // One pass for the count and both ends, in run order, leaving out
    // what the ledger says `reprocess` does not run. A session a Job of
    // the Schedule (a scheduled run, another Backfill) runs now has an
    // attempt under way: only `All` runs it again.
    let reprocess = view.spec.reprocess.unwrap_or_default();
    let skip = |at: i64| -> Option<Skip> {
        if reprocess == Reprocess::All {
            return None;
        }
        if view.ledger.running(at) {
            return Some(Skip::Running);
        }
        match (reprocess, view.ledger.outcome(at)) {
            (Reprocess::All, _) | (_, None) => None,
            (_, Some(Outcome::Succeeded)) => Some(Skip::Succeeded),
            (Reprocess::Missing, Some(_)) => Some(Skip::Failed),
            (Reprocess::Failed, Some(_)) => None,
        }
    };
    let mut skipped = Skipped::default();
    let mut total = 0u64;
    let mut first: Vec<i64> = Vec::new();
    let mut last: std::collections::VecDeque<i64> = std::collections::VecDeque::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in plan.iter() {
        match skip(s.at) {
            Some(Skip::Succeeded) => {
                skipped.succeeded += 1;
                continue;
            }
            Some(Skip::Failed) => {
                skipped.failed += 1;
                continue;
            }
            Some(Skip::Running) => {
                skipped.running += 1;
                continue;
            }
            None => total += 1,
        }
        if first.len() < PREVIEW {
            first.push(s.at);
        }
        if last.len() == PREVIEW {
            last.pop_front();
        }
        last.push_back(s.at);
        lo = lo.min(s.at);
        hi = hi.max(s.at);
    }
    let credits = view
        .spec
        .credits_per_session
        .or(schedule.credits_per_session)
        .unwrap_or(0.0);
    d.status.total_estimated = total as i64;
    d.status.cost_estimate = Some(CostEstimate {
        credits_per_entity: credits,
        total_credits_estimated: credits * total as f64,
        total_entities: total as i64,
    });
    let windows = Windows::from_spec(
        view.spec.execution_windows.as_ref(),
        schedule.time_zone.as_deref(),
    )
    .map_err(|e| Stall {
        reason: "InvalidWindows",
        message: e.to_string(),
    })?;
    let mut preview = PlanPreview {
        boundaries: Some(plan.describe_boundaries()),
        first: first.iter().map(|&t| time(t)).collect(),
        last: last.iter().map(|&t| time(t)).collect(),
        skipped_by_reprocess: skipped.total() as i64,
        skipped_reason: skipped_reason(reprocess, total + skipped.total(), &skipped),
        estimated_completion: None,
    };
    if let Some((asked, got)) = plan.count_cut_short() {
        let message = format!(
            "count asks for {asked} sessions but only {got} have passed by {}: the plan is shorter",
            rfc3339_utc(cutoff)
        );
        if !view.status.conditions.iter().any(|c| c.message == message) {
            d.notes.push(Note {
                warning: true,
                reason: "PlanCutShort",
                message: message.clone(),
            });
        }
        preview.boundaries = Some(format!("{}; {message}", plan.describe_boundaries()));
    }
    preview.estimated_completion = estimate_completion(
        total,
        view.spec.max_in_flight.unwrap_or(1).max(1) as u64,
        windows.as_ref(),
        view.recent_durations,
        view.now,
    )
    .map(time);
    d.status.preview = Some(preview);
    d.status.progress = Some(format!("0/{total}"));
    // Who asked is decided once.
    d.status.created_by = view
        .status
        .created_by
        .clone()
        .or_else(|| view.created_by.clone());

    // Why `reprocess` left sessions out, for the Events.
    let skipped_note = d
        .status
        .preview
        .as_ref()
        .and_then(|p| p.skipped_reason.as_ref())
        .map(|r| format!("; {r}"))
        .unwrap_or_default();
    if dry_run {
        if view.status.phase != Some(BackfillPhase::Planned) {
            d.notes.push(Note {
                warning: false,
                reason: "Planned",
                message: format!(
                    "dry run: {total} sessions would run ({}){skipped_note}; no Job is created",
                    plan.describe_boundaries()
                ),
            });
        }
        d.status.phase = Some(BackfillPhase::Planned);
        return Ok(());
    }

    let clock = plan.clock();
    // The sessions that run, when the ledger left some out: frozen as a
    // set, so later outcomes do not move the plan.
    let selected = if skipped.total() > 0 && total > 0 {
        let mut kept: Vec<i64> = plan
            .iter()
            .map(|s| s.at)
            .filter(|&at| skip(at).is_none())
            .collect();
        kept.sort_unstable();
        session_set(clock, &kept).map(|set| set.bitmap)
    } else {
        None
    };
    d.status.run_id = Some(run_id(view.uid));
    d.status.started_at = Some(time(view.now));
    d.status.planned_until = Some(time(cutoff));
    d.status.run = Some(RunState {
        schedule: clock.expr().to_string(),
        time_zone: clock.zone().name().to_string(),
        from: (total > 0).then(|| time(lo)),
        to: (total > 0).then(|| time(hi + 1)),
        launched: 0,
        next_session: first.first().map(|&t| time(t)),
        selected: selected.unwrap_or_default(),
        ..RunState::default()
    });
    d.notes.push(Note {
        warning: false,
        reason: "Started",
        message: format!(
            "run {}: {total} sessions ({}){skipped_note}",
            d.status.run_id.as_deref().unwrap_or_default(),
            plan.describe_boundaries()
        ),
    });
    Ok(())
}

/// Why `reprocess` leaves a planned session out.
enum Skip {
    Succeeded,
    /// Failed or killed.
    Failed,
    /// A Job of the Schedule runs it now.
    Running,
}

/// How many planned sessions `reprocess` left out, by why.
#[derive(Default)]
struct Skipped {
    succeeded: u64,
    failed: u64,
    running: u64,
}

impl Skipped {
    fn total(&self) -> u64 {
        self.succeeded + self.failed + self.running
    }
}

/// Why `reprocess` left planned sessions out, in words.
fn skipped_reason(reprocess: Reprocess, planned: u64, skipped: &Skipped) -> Option<String> {
    if skipped.total() == 0 {
        return None;
    }
    let mut why = Vec::new();
    if skipped.succeeded > 0 {
        why.push(format!("{} already succeeded", skipped.succeeded));
    }
    if skipped.failed > 0 {
        why.push(format!("{} failed or were killed before", skipped.failed));
    }
    if skipped.running > 0 {
        why.push(format!(
            "{} run now by another Job of the Schedule",
            skipped.running
        ));
    }
    let rule = match reprocess {
        Reprocess::Missing => {
            "runs only sessions the ledger has no outcome for and no Job runs now"
        }
        Reprocess::Failed => "skips sessions whose last attempt succeeded or runs now",
        Reprocess::All => "runs every session",
    };
    Some(format!(
        "reprocess {reprocess:?} {rule}: {} of {planned} planned sessions skipped ({})",
        skipped.total(),
        why.join(", ")
    ))
}

/// The frozen plan of a started Backfill: its Schedule's cron and zone as
/// they were, its own selection, filter and order, between the frozen
/// first and last sessions.
pub fn frozen_plan(spec: &BackfillSpec, run: &RunState) -> Result<Plan, PlanError> {
    let clock = Clock::new(&run.schedule, Some(&run.time_zone))?;
    let (from, to) = (run.from.as_ref().map(seconds), run.to.as_ref().map(seconds));
    let schedule = ScheduleSpec {
        schedule: run.schedule.clone(),
        time_zone: Some(run.time_zone.clone()),
        ..ScheduleSpec::default()
    };
    let plan = match (from, to, spec.count) {
        // `reprocess` left sessions out: the set of the ones that run.
        (Some(from), Some(to), _) if !run.selected.is_empty() => Plan::new(
            clock,
            Selection::Set {
                clock: Box::new(Clock::new(&run.schedule, Some(&run.time_zone))?),
                from,
                to,
                bits: Bitmap::decode(&run.selected)?,
            },
        )
        .with_order(spec.order.unwrap_or_default().into()),
        // Counted plans become the range they covered at the start.
        (Some(from), Some(to), Some(_)) => Plan::new(clock, Selection::Range { from, to })
            .with_filter(
                spec.filter
                    .as_ref()
                    .map(super::plan::Filter::from_spec)
                    .unwrap_or_default(),
            )
            .with_order(spec.order.unwrap_or_default().into()),
        _ => Plan::for_backfill(&schedule, spec, None)?,
    };
    Ok(match (from, to) {
        (Some(from), Some(to)) => plan.not_before(Some(from)).before(Some(to)),
        // An empty plan stays empty.
        _ => plan.before(Some(i64::MIN)),
    })
}

/// Records outcomes, then launches, pauses, waits or cancels.
fn advance(view: &BackfillView<'_>, d: &mut BackfillDecision) -> Result<(), Stall> {
    let mut run = d.status.run.clone().unwrap_or_default();
    let mut done = Bitmap::decode(&run.done).unwrap_or_default();
    let mut failed = Bitmap::decode(&run.failed).unwrap_or_default();
    let mut killed = Bitmap::decode(&run.killed).unwrap_or_default();

    // Outcomes: each plan index once.
    let mut newly_failed = Vec::new();
    for job in view.jobs {
        let (Some(outcome), Some(index)) = (job.outcome(), job.plan_index) else {
            continue;
        };
        if !job.has_finalizer {
            continue;
        }
        d.release.push(job.name.clone());
        if done.contains(index) {
            continue;
        }
        done.insert(index);
        let s = &mut d.status;
        match outcome {
            Outcome::Succeeded => s.succeeded_count += 1,
            Outcome::Failed => {
                s.failed_count += 1;
                failed.insert(index);
                newly_failed.push(job);
            }
            Outcome::Killed => {
                s.killed_count += 1;
                killed.insert(index);
                newly_failed.push(job);
            }
        }
    }
    if !newly_failed.is_empty() {
        let summary = d
            .status
            .failed_sessions
            .get_or_insert_with(SessionSummary::default);
        summary.count = failed.len() as i64 + killed.len() as i64;
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
            reason: "SessionFailed",
            message: format!("Job {} did not succeed", names.join(", ")),
        });
    }

    let running: Vec<&ObservedJob> = view.jobs.iter().filter(|j| j.running()).collect();
    // In flight: launched and not yet counted. That includes Jobs the
    // cache does not show yet, so a pass right after a launch never
    // launches past `maxInFlight`.
    let in_flight = (run.launched.max(0) as u64)
        .saturating_sub(done.len())
        .max(running.len() as u64);
    d.status.running_count = in_flight as i64;
    let total = d.status.total_estimated.max(0) as u64;
    let phase = d.status.phase.unwrap_or_default();
    let ended = matches!(phase, BackfillPhase::Succeeded | BackfillPhase::Failed);

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
    } else if view.spec.suspend == Some(true) {
        d.status.phase = Some(BackfillPhase::Paused);
        d.status.next_window_start = None;
    } else {
        d.status.phase = Some(BackfillPhase::Running);
        launched = launch(view, d, &mut run, in_flight, total);
    }

    let processed = done.len();
    d.status.processed_count = processed as i64;
    d.status.progress = Some(format!("{processed}/{total}"));
    let all_done = run.launched as u64 >= total && processed >= run.launched as u64;
    if let Some(BackfillPhase::Running | BackfillPhase::Waiting) = d.status.phase
        && all_done
    {
        let bad = failed.len() + killed.len();
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
    let settled =
        (run.launched.max(0) as u64).saturating_sub(done.len()) == 0 && running.is_empty();
    if terminal && d.status.completed_at.is_none() && settled {
        d.status.completed_at = Some(time(view.now));
        if !failed.is_empty() || !killed.is_empty() {
            // The whole set once, at the end: rerun children copy it.
            run.failed = failed.encode();
            run.killed = killed.encode();
            let clock = Clock::new(&run.schedule, Some(&run.time_zone));
            let set = match (failed_sessions(view.spec, &run), clock) {
                (Ok(sessions), Ok(clock)) => session_set(&clock, &sessions),
                _ => None,
            };
            if let Some(summary) = d.status.failed_sessions.as_mut() {
                summary.set = set;
            }
        }
    }

    run.done = done.encode();
    run.failed = failed.encode();
    run.killed = killed.encode();
    d.status.run = Some(run);
    launched
}

/// Launches up to `maxInFlight` Jobs in plan order, inside the windows.
fn launch(
    view: &BackfillView<'_>,
    d: &mut BackfillDecision,
    run: &mut RunState,
    running: u64,
    total: u64,
) -> Result<(), Stall> {
    let launched = run.launched.max(0) as u64;
    if launched >= total {
        d.status.next_window_start = None;
        return Ok(());
    }
    if view.schedule.is_none() {
        return Err(Stall {
            reason: SCHEDULE_NOT_FOUND,
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
        reason: "InvalidWindows",
        message: e.to_string(),
    })?;
    if let Some(w) = &windows
        && !w.is_open(view.now)
    {
        let next = w.next_open(view.now);
        if view.status.phase != Some(BackfillPhase::Waiting) {
            d.notes.push(Note {
                warning: false,
                reason: "Waiting",
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
    let max = view.spec.max_in_flight.unwrap_or(1).max(1) as u64;
    let slots = max.saturating_sub(running).min(total - launched);
    if slots == 0 {
        return Ok(());
    }
    let plan = frozen_plan(view.spec, run)?;
    let resume = run.next_session.as_ref().map(seconds);
    let mut sessions = match (resume, plan.order()) {
        (Some(at), Order::Ascending) => plan.not_before(Some(at)),
        (Some(at), Order::Descending) => plan.before(Some(at + 1)),
        (None, _) => return Ok(()),
    }
    .iter()
    .take(slots as usize + 1)
    .collect::<Vec<_>>();
    let next = if sessions.len() > slots as usize {
        sessions.pop()
    } else {
        None
    };
    for (k, s) in sessions.into_iter().enumerate() {
        d.create.push((launched + k as u64, s));
    }
    run.launched = (launched + d.create.len() as u64) as i64;
    run.next_session = next.map(|s| time(s.at));
    Ok(())
}

/// Conditions and the printer column after a pass.
fn finish_status(d: &mut BackfillDecision, ks: &Kstatus<'_>, before: BackfillPhase) {
    let phase = d.status.phase.unwrap_or_default();
    let (ready, reconciling, reason) = match phase {
        BackfillPhase::Planned => (true, false, "Planned"),
        BackfillPhase::Succeeded => (true, false, "Succeeded"),
        BackfillPhase::Failed => (true, false, "Failed"),
        BackfillPhase::Cancelled => (
            d.status.running_count == 0,
            d.status.running_count > 0,
            "Cancelled",
        ),
        BackfillPhase::Pending => (false, true, "Pending"),
        BackfillPhase::Running => (false, true, "Running"),
        BackfillPhase::Waiting => (false, true, "Waiting"),
        BackfillPhase::Paused => (false, false, "Paused"),
    };
    let message = format!(
        "{} of {} sessions processed: {} succeeded, {} failed, {} killed, {} running",
        d.status.processed_count,
        d.status.total_estimated,
        d.status.succeeded_count,
        d.status.failed_count,
        d.status.killed_count,
        d.status.running_count
    );
    ks.set(
        &mut d.status.conditions,
        condition::READY,
        ready,
        reason,
        &message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::RECONCILING,
        reconciling,
        reason,
        &message,
    );
    if phase != before {
        let note = match phase {
            BackfillPhase::Succeeded => Some((false, "Succeeded")),
            BackfillPhase::Failed => Some((true, "Failed")),
            BackfillPhase::Cancelled => Some((false, "Cancelled")),
            BackfillPhase::Paused => Some((false, "Paused")),
            BackfillPhase::Running if before == BackfillPhase::Paused => Some((false, "Resumed")),
            _ => None,
        };
        if let Some((warning, reason)) = note {
            d.notes.push(Note {
                warning,
                reason,
                message: message.clone(),
            });
        }
        if phase == BackfillPhase::Succeeded && d.status.total_estimated == 0 {
            let message = match d
                .status
                .preview
                .as_ref()
                .and_then(|p| p.skipped_reason.clone())
            {
                Some(reason) => format!("nothing to run: {reason}"),
                None => "the plan holds no session: nothing to run".into(),
            };
            d.notes.push(Note {
                warning: false,
                reason: "NothingToRun",
                message,
            });
        }
    }
}

/// When the backfill would finish: batches of `maxInFlight` Jobs taking
/// the median recent duration each, started only inside the windows.
pub fn estimate_completion(
    total: u64,
    max_in_flight: u64,
    windows: Option<&Windows>,
    durations: &[i64],
    now: i64,
) -> Option<i64> {
    if total == 0 {
        return Some(now);
    }
    let mut sorted: Vec<i64> = durations.iter().copied().filter(|d| *d >= 0).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2].max(1);
    let batches = total.div_ceil(max_in_flight);
    let Some(w) = windows else {
        return Some(now + median * batches as i64);
    };
    let mut t = now;
    for _ in 0..batches.min(ESTIMATE_STEPS) {
        t = w.next_open(t)? + median;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExecutionWindows, ScheduleRef, Window};
    use crate::core::clock::at;
    use crate::core::observed::JobState;

    fn schedule(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            schedule: cron.into(),
            credits_per_session: Some(2.5),
            ..ScheduleSpec::default()
        }
    }

    fn spec() -> BackfillSpec {
        BackfillSpec {
            schedule_ref: ScheduleRef {
                name: "hourly".into(),
            },
            from: Some(time(at("2026-01-01T00:00:00Z"))),
            to: Some(time(at("2026-01-02T06:00:00Z"))),
            count: None,
            sessions: None,
            session_set: None,
            filter: None,
            attempt_name: None,
            dry_run: None,
            max_in_flight: Some(4),
            order: None,
            suspend: None,
            cancel: None,
            credits_per_session: None,
            execution_windows: None,
            reprocess: None,
            parent_backfill_run_id: None,
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
        ledger: LedgerIndex,
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
                ledger: LedgerIndex::default(),
            }
        }

        /// `decide` on this Backfill as it stands, with or without its
        /// Schedule, created at `created`, at `now`; nothing is kept.
        fn decide_with(
            &self,
            schedule: Option<&ScheduleSpec>,
            created: Option<i64>,
            now: i64,
        ) -> BackfillDecision {
            decide(&BackfillView {
                name: "bf",
                namespace: Some("ns"),
                uid: "uid-1",
                generation: Some(1),
                spec: &self.spec,
                status: &self.status,
                created_by: Some("kubectl".into()),
                schedule,
                jobs: &self.jobs,
                recent_durations: &[120, 60, 90],
                rerun_request: self.rerun.as_deref(),
                ledger: &self.ledger,
                created,
                now,
            })
        }

        fn step(&mut self) -> BackfillDecision {
            let d = self.decide_with(Some(&self.schedule), None, self.now);
            self.status = d.status.clone();
            for (index, s) in &d.create {
                self.created.push(s.at);
                self.jobs.push(ObservedJob {
                    name: format!("bf-b{}", s.at),
                    uid: format!("u{index}"),
                    session: Some(s.at),
                    state: JobState::Active,
                    deleting: false,
                    has_finalizer: true,
                    plan_index: Some(*index),
                });
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
                    Some(
                        BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled
                    )
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
                .map(|(_, s)| rfc3339_utc(s.at))
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
        let cond = |d: &BackfillDecision, t: &str| {
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
        let waiting =
            find_condition(&d.status.conditions, crate::core::rerun::RERUN_REQUESTED).unwrap();
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
        let ks = Kstatus {
            before: &s.status.conditions,
            generation: Some(1),
            now: s.now,
        };
        crate::core::rerun::record_child(&mut d, &ks, &rerun, "child-uid", s.now);
        assert_eq!(d.status.reruns.len(), 1);
        assert_eq!(d.status.reruns[0].run_id, Some(run_id("child-uid")));
        s.status = d.status;
        assert!(s.step().rerun.is_none());
        // A new value makes a second child, under another name.
        s.rerun = Some("2".into());
        let again = s.step().rerun.unwrap();
        assert_eq!(again.child.metadata.name.as_deref(), Some("bf-rerun-2"));
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
        let c = find_condition(&d.status.conditions, crate::core::rerun::RERUN_REQUESTED).unwrap();
        assert_eq!(c.reason, "DryRun");
        assert!(d.notes.iter().any(|n| n.message.contains("dry run")));

        let mut s = Sim::new(spec());
        s.rerun = Some("1".into());
        s.step();
        s.spec.cancel = Some(true);
        let d = s.step();
        assert!(d.rerun.is_none());
        let c = find_condition(&d.status.conditions, crate::core::rerun::RERUN_REQUESTED).unwrap();
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
            // Frozen: a ledger that changes after the start moves nothing.
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
}
