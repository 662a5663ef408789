//! Before the start: the plan survey (which sessions `reprocess` runs,
//! counted in one pass), the cost and the preview; a dry run stops there,
//! otherwise the plan is frozen and the run starts.

use super::run::run_id;
use super::status::Stall;
use super::view::{BackfillView, Pass};
use super::{ESTIMATE_STEPS, PREVIEW};
use super::{approval, budget};
use crate::api::{BackfillPhase, CostEstimate, PlanPreview, Reprocess, RunState};
use crate::core::capacity::{forecast, max_in_flight, run_lengths};
use crate::core::observed::{Note, Outcome};
use crate::core::plan::{MAX_SESSIONS, Plan, session_set};
use crate::core::reason::Reason;
use crate::core::windows::Windows;
use crate::core::zoned_cron::{rfc3339_utc, time};

/// Before the start: plan (a dry run stops here) or freeze the plan and
/// start.
pub(super) fn plan_or_start(view: &BackfillView<'_>, d: &mut Pass) -> Result<(), Stall> {
    let schedule = view.schedule.ok_or_else(|| Stall {
        reason: Reason::ScheduleNotFound,
        message: format!(
            "Schedule {:?} not found in this namespace",
            view.spec.schedule_ref.name
        ),
    })?;
    let plan = Plan::for_backfill(schedule, view.spec, Some(view.now))?;
    plan.check_span(MAX_SESSIONS)?;
    let survey = Survey::of(view, &plan);
    let credits = view
        .spec
        .credits_per_session
        .or(schedule.credits_per_session)
        .unwrap_or(0.0);
    let total = survey.total;
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
        reason: Reason::InvalidWindows,
        message: e.to_string(),
    })?;
    let approval = approval::judge(view, schedule, total);
    let mut shown = preview(view, d, &plan, &survey, windows.as_ref());
    shown.failure_budget = view.spec.failure_budget.as_ref().map(budget::describe);
    shown.approval = approval.preview();
    d.status.preview = Some(shown);
    d.status.approval = approval.status();
    d.status.progress = Some(format!("0/{total}"));
    // Who asked is decided once, and kept short: an annotation may hold
    // up to 256 KiB.
    d.status.created_by = view
        .status
        .created_by
        .clone()
        .or_else(|| view.created_by.clone())
        .map(|who| at_most(who.trim(), CREATED_BY_MAX));

    // Why `reprocess` left sessions out, for the Events.
    let skipped_note = d
        .status
        .preview
        .as_ref()
        .and_then(|p| p.skipped_reason.as_ref())
        .map(|r| format!("; {r}"))
        .unwrap_or_default();
    if view.spec.dry_run == Some(true) {
        if view.status.phase != Some(BackfillPhase::Planned) {
            d.notes.push(Note {
                warning: false,
                reason: Reason::Planned,
                message: format!(
                    "dry run: {total} sessions would run ({}){skipped_note}; no Job is created",
                    plan.describe_boundaries()
                ),
            });
        }
        d.status.phase = Some(BackfillPhase::Planned);
        return Ok(());
    }
    if let Some(message) = approval.waiting_message() {
        if view.status.phase != Some(BackfillPhase::AwaitingApproval) {
            d.notes.push(Note {
                warning: false,
                reason: Reason::AwaitingApproval,
                message: message.clone(),
            });
        }
        d.status.phase = Some(BackfillPhase::AwaitingApproval);
        d.hold = Some((Reason::AwaitingApproval, message));
        return Ok(());
    }
    if let approval::Verdict::Approved { status } = &approval {
        // When the run starts on it: a dry run, approved, does not put the
        // time into its status on every pass.
        if let Some(recorded) = d.status.approval.as_mut() {
            recorded.approved_at = Some(time(view.now));
        }
        d.notes.push(Note {
            warning: false,
            reason: Reason::Approved,
            message: format!(
                "approved by {}: {} credits, above the Schedule's approval threshold of {}",
                status.approved_by.as_deref().unwrap_or(
                    "an unknown user (no backfill.dev/approved-by annotation: is the chart's approval policy installed?)"
                ),
                status.credits,
                status.required_above_credits
            ),
        });
    }
    start(view, d, &plan, &survey);
    d.notes.push(Note {
        warning: false,
        reason: Reason::Started,
        message: format!(
            "run {}: {total} sessions ({}){skipped_note}",
            d.status.run_id.as_deref().unwrap_or_default(),
            plan.describe_boundaries()
        ),
    });
    Ok(())
}

/// The longest `status.createdBy` (characters), as its schema says.
pub const CREATED_BY_MAX: usize = 256;

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn at_most(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) => {
            let cut: String = text.chars().take(max - 1).collect();
            format!("{cut}…")
        }
    }
}

/// One pass over the plan, in run order: what `reprocess` leaves out and
/// why, the count and both ends of the rest.
struct Survey {
    reprocess: Reprocess,
    total: u64,
    skipped: Skipped,
    first: Vec<i64>,
    last: std::collections::VecDeque<i64>,
    lo: i64,
    hi: i64,
}

impl Survey {
    fn of(view: &BackfillView<'_>, plan: &Plan) -> Self {
        let mut survey = Survey {
            reprocess: view.spec.reprocess.unwrap_or_default(),
            total: 0,
            skipped: Skipped::default(),
            first: Vec::new(),
            last: std::collections::VecDeque::new(),
            lo: i64::MAX,
            hi: i64::MIN,
        };
        for s in plan.iter() {
            match skip(view, survey.reprocess, s.at) {
                Some(Skip::Succeeded) => survey.skipped.succeeded += 1,
                Some(Skip::Failed) => survey.skipped.failed += 1,
                Some(Skip::Running) => survey.skipped.running += 1,
                None => survey.count(s.at),
            }
        }
        survey
    }

    fn count(&mut self, at: i64) {
        self.total += 1;
        if self.first.len() < PREVIEW {
            self.first.push(at);
        }
        if self.last.len() == PREVIEW {
            self.last.pop_front();
        }
        self.last.push_back(at);
        self.lo = self.lo.min(at);
        self.hi = self.hi.max(at);
    }
}

/// Whether `reprocess` leaves the session at `at` out, judged against the
/// ledger. A session a Job of the Schedule (a scheduled run, another
/// Backfill) runs now has an attempt under way: only `All` runs it again.
fn skip(view: &BackfillView<'_>, reprocess: Reprocess, at: i64) -> Option<Skip> {
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
}

/// What the dry run shows: both ends, the boundaries in words, what
/// `reprocess` skipped and when it would finish.
fn preview(
    view: &BackfillView<'_>,
    d: &mut Pass,
    plan: &Plan,
    survey: &Survey,
    windows: Option<&Windows>,
) -> PlanPreview {
    let skipped = &survey.skipped;
    let mut preview = PlanPreview {
        boundaries: Some(plan.describe_boundaries()),
        first: survey.first.iter().map(|&t| time(t)).collect(),
        last: survey.last.iter().map(|&t| time(t)).collect(),
        skipped_by_reprocess: skipped.total() as i64,
        skipped_reason: skipped_reason(survey.reprocess, survey.total + skipped.total(), skipped),
        failure_budget: None,
        approval: None,
        estimated_completion: None,
        max_active_jobs: None,
        live_slots: None,
    };
    if let Some((asked, got)) = plan.count_cut_short() {
        let message = format!(
            "count asks for {asked} sessions but only {got} have passed by {}: the plan is shorter",
            rfc3339_utc(view.now)
        );
        if !view.status.conditions.iter().any(|c| c.message == message) {
            d.notes.push(Note {
                warning: true,
                reason: Reason::PlanCutShort,
                message: message.clone(),
            });
        }
        preview.boundaries = Some(format!("{}; {message}", plan.describe_boundaries()));
    }
    let in_flight = max_in_flight(view.spec);
    let estimate = |parallel| {
        estimate_completion(
            survey.total,
            parallel,
            windows,
            view.recent_durations,
            view.now,
        )
    };
    let mut parallel = in_flight;
    if let Some(schedule) = view.schedule
        && let Some(max_active) = schedule.max_active_jobs
    {
        // The live schedule's slots while the backfill would run: as
        // long as its estimate, or one Job's run.
        let max_active = max_active.max(1) as u64;
        let lengths = run_lengths(view.recent_durations, view.budget.and_then(|b| b.run_bound));
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let span = estimate(in_flight).map_or(0, |t| t - view.now);
        let running = view.budget.map_or(0, |b| b.live_running);
        let live = forecast(schedule, running, &lengths, view.now, span.max(longest));
        preview.max_active_jobs = Some(max_active as i64);
        preview.live_slots = Some(live as i64);
        parallel = in_flight.min(max_active.saturating_sub(live));
    }
    preview.estimated_completion = (parallel > 0)
        .then(|| estimate(parallel))
        .flatten()
        .map(time);
    preview
}

/// Freezes the plan: the cron and zone as they are now, the first and
/// last session and, when the ledger left sessions out, the set of those
/// that run (so later outcomes do not move the plan).
fn start(view: &BackfillView<'_>, d: &mut Pass, plan: &Plan, survey: &Survey) {
    let clock = plan.clock();
    let total = survey.total;
    let selected = if survey.skipped.total() > 0 && total > 0 {
        let mut kept: Vec<i64> = plan
            .iter()
            .map(|s| s.at)
            .filter(|&at| skip(view, survey.reprocess, at).is_none())
            .collect();
        kept.sort_unstable();
        session_set(clock, &kept).map(|set| set.bitmap)
    } else {
        None
    };
    d.status.run_id = Some(run_id(view.uid));
    d.status.started_at = Some(time(view.now));
    d.status.planned_until = Some(time(view.now));
    d.status.schedule_uid = Some(view.schedule_uid.to_string()).filter(|u| !u.is_empty());
    d.status.run = Some(RunState {
        schedule: clock.expr().to_string(),
        time_zone: clock.zone().name().to_string(),
        from: (total > 0).then(|| time(survey.lo)),
        to: (total > 0).then(|| time(survey.hi + 1)),
        launched: 0,
        next_session: survey.first.first().map(|&t| time(t)),
        selected: selected.unwrap_or_default(),
        ..RunState::default()
    });
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
