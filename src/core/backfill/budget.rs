//! The failure budget: a run stops launching once too many of its
//! sessions failed, pausing (or cancelling) itself; a resume counts the
//! budget again from there.
//!
//! What is counted comes from the run's bitmaps, never from counters in
//! status someone may have edited: the failed and killed sessions, and
//! the processed ones, among the plan indexes launched from
//! `status.failureBudget.countedFrom` on (0 at the start, the number
//! launched at each resume). Jobs still running when the budget is spent
//! finish and are counted, against the spent budget.

use super::FAILURE_PREVIEW;
use super::run::frozen_plan;
use super::view::{BackfillView, Pass};
use crate::api::{FailureBudget, FailureBudgetAction, FailureBudgetStatus, RunState};
use crate::core::bitmap::Bitmap;
use crate::core::observed::Note;
use crate::core::reason::Reason;
use crate::core::zoned_cron::{rfc3339_utc, time};

/// Sessions processed before `maxFailedRatio` is judged, when
/// `minProcessed` is not set.
pub const DEFAULT_MIN_PROCESSED: i64 = 10;
/// The longest `backfill.dev/resume` value kept in status.
const REQUEST_MAX: usize = 256;

/// A run's outcomes, as bitmaps over plan indexes.
pub(super) struct Counted<'a> {
    pub done: &'a Bitmap,
    pub failed: &'a Bitmap,
    pub killed: &'a Bitmap,
    pub skipped: &'a Bitmap,
}

impl Counted<'_> {
    /// Failed (or killed) and processed sessions among the plan indexes
    /// from `from` on.
    fn since(&self, from: u64) -> (u64, u64) {
        let failed = self.failed.len_from(from) + self.killed.len_from(from);
        let processed = self
            .done
            .len_from(from)
            .saturating_sub(self.skipped.len_from(from));
        (failed, processed)
    }
}

/// Whether `budget` is spent by `failed` of `processed` sessions, and
/// how, in words.
pub fn spent(budget: &FailureBudget, failed: u64, processed: u64) -> Option<String> {
    if let Some(max) = budget.max_failed
        && failed >= max.max(1) as u64
    {
        return Some(format!("{failed} sessions failed (maxFailed {max})"));
    }
    let ratio = budget.max_failed_ratio?;
    let min = budget.min_processed.unwrap_or(DEFAULT_MIN_PROCESSED).max(1) as u64;
    if processed < min || processed == 0 {
        return None;
    }
    let got = failed as f64 / processed as f64;
    (got >= ratio).then(|| {
        format!(
            "{failed} of {processed} processed sessions failed, {:.0}% (maxFailedRatio {ratio}, judged from {min} processed)",
            got * 100.0
        )
    })
}

/// The budget in words, for the dry run.
pub fn describe(budget: &FailureBudget) -> String {
    let mut limits = Vec::new();
    if let Some(max) = budget.max_failed {
        limits.push(format!("{max} failed sessions"));
    }
    if let Some(ratio) = budget.max_failed_ratio {
        limits.push(format!(
            "{:.0}% failed once {} sessions are processed",
            ratio * 100.0,
            budget.min_processed.unwrap_or(DEFAULT_MIN_PROCESSED)
        ));
    }
    let action = match budget.action.unwrap_or_default() {
        FailureBudgetAction::Pause => {
            "pauses (running Jobs finish; a new value of the backfill.dev/resume annotation resumes, counting again from there)"
        }
        FailureBudgetAction::Cancel => "is cancelled (running Jobs finish)",
    };
    format!(
        "after {} (failed or killed), the backfill {action}",
        limits.join(" or ")
    )
}

/// Judges the budget of a run that may still launch, after this pass's
/// outcomes are counted: resumes a paused run on a new
/// `backfill.dev/resume` value, and spends the budget when the counts
/// reach it while sessions are left to launch. The action when the
/// budget is spent, with the message of the conditions.
pub(super) fn judge(
    view: &BackfillView<'_>,
    d: &mut Pass,
    run: &RunState,
    counted: &Counted<'_>,
    planned: u64,
) -> Option<(FailureBudgetAction, String)> {
    let Some(budget) = &view.spec.failure_budget else {
        // No budget: nothing holds the run (a budget removed lifts its
        // pause).
        d.status.failure_budget = None;
        return None;
    };
    let launched = run.launched.max(0) as u64;
    let mut state = d.status.failure_budget.clone().unwrap_or_default();
    // Never past what was launched, whatever status says.
    state.counted_from = state.counted_from.clamp(0, launched as i64);
    let request = view
        .resume_request
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(REQUEST_MAX).collect::<String>());
    let action = budget.action.unwrap_or_default();
    if state.exhausted_at.is_some()
        && action == FailureBudgetAction::Pause
        && request.is_some()
        && request != state.resume_request
    {
        state.exhausted_at = None;
        state.resume_request = request.clone();
        state.counted_from = launched as i64;
        state.resumes += 1;
    }
    let (failed, processed) = counted.since(state.counted_from as u64);
    state.failed = failed as i64;
    state.processed = processed as i64;
    if state.exhausted_at.is_none()
        && launched < planned
        && let Some(why) = spent(budget, failed, processed)
    {
        state.exhausted_at = Some(time(view.now));
        // A value already there does not resume: only a new one does.
        state.resume_request = request;
        d.notes.push(Note {
            warning: true,
            reason: Reason::FailureBudgetExhausted,
            message: format!(
                "failure budget spent: {why}{}; {}",
                failures_named(view, run, counted, state.counted_from as u64),
                what_now(action)
            ),
        });
    }
    let exhausted = state.exhausted_at.is_some();
    let message = exhausted.then(|| held_message(budget, &state, action));
    d.status.failure_budget = Some(state);
    message.map(|m| (action, m))
}

/// Why a run whose budget was spent earlier is still held, for its
/// conditions (a cancelled run no longer passes through `judge`).
pub(super) fn held(view: &BackfillView<'_>, d: &Pass) -> Option<String> {
    let budget = view.spec.failure_budget.as_ref()?;
    let state = d.status.failure_budget.as_ref()?;
    state.exhausted_at.as_ref()?;
    Some(held_message(
        budget,
        state,
        budget.action.unwrap_or_default(),
    ))
}

fn held_message(
    budget: &FailureBudget,
    state: &FailureBudgetStatus,
    action: FailureBudgetAction,
) -> String {
    let why = spent(budget, state.failed as u64, state.processed as u64).unwrap_or_else(|| {
        format!(
            "{} of {} processed sessions failed",
            state.failed, state.processed
        )
    });
    format!("failure budget spent: {why}; {}", what_now(action))
}

fn what_now(action: FailureBudgetAction) -> &'static str {
    match action {
        FailureBudgetAction::Pause => {
            "paused: running Jobs finish, nothing new starts; set the annotation backfill.dev/resume to a new value (kubectl backfill resume) to go on, the budget counting again from there"
        }
        FailureBudgetAction::Cancel => "cancelled: running Jobs finish, nothing new starts",
    }
}

/// The failed sessions counted against the budget, by time: the first
/// few, and how many more.
fn failures_named(
    view: &BackfillView<'_>,
    run: &RunState,
    counted: &Counted<'_>,
    from: u64,
) -> String {
    let mut bad = counted.failed.clone();
    bad.union_with(counted.killed);
    let total = bad.len_from(from);
    let Ok(plan) = frozen_plan(view.spec, run) else {
        return String::new();
    };
    let mut named: Vec<i64> = plan
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 >= from && bad.contains(*i as u64))
        .take(FAILURE_PREVIEW)
        .map(|(_, s)| s.at)
        .collect();
    if named.is_empty() {
        return String::new();
    }
    named.sort_unstable();
    let list: Vec<String> = named.iter().map(|&at| rfc3339_utc(at)).collect();
    let more = total.saturating_sub(named.len() as u64);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(": the sessions at {}{more}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: Option<i64>, ratio: Option<f64>, min: Option<i64>) -> FailureBudget {
        FailureBudget {
            max_failed: max,
            max_failed_ratio: ratio,
            min_processed: min,
            action: None,
        }
    }

    #[test]
    fn max_failed_is_spent_when_reached() {
        let b = budget(Some(3), None, None);
        assert_eq!(spent(&b, 2, 100), None);
        let why = spent(&b, 3, 3).expect("spent at 3");
        assert!(why.contains("maxFailed 3"), "{why}");
        assert!(spent(&b, 4, 4).is_some());
    }

    #[test]
    fn the_ratio_waits_for_min_processed() {
        let b = budget(None, Some(0.2), Some(10));
        // 100% failed, but only 9 processed.
        assert_eq!(spent(&b, 9, 9), None);
        assert_eq!(spent(&b, 1, 10), None);
        let why = spent(&b, 2, 10).expect("20% of 10");
        assert!(why.contains("2 of 10") && why.contains("20%"), "{why}");
        // Without minProcessed: 10.
        let b = budget(None, Some(0.5), None);
        assert_eq!(spent(&b, 5, 9), None);
        assert!(spent(&b, 5, 10).is_some());
        assert_eq!(spent(&b, 0, 0), None);
    }

    #[test]
    fn either_limit_spends_it() {
        let b = budget(Some(5), Some(0.5), Some(4));
        assert!(spent(&b, 2, 4).is_some(), "ratio");
        assert!(spent(&b, 5, 100).is_some(), "count");
        assert_eq!(spent(&b, 4, 100), None);
    }

    #[test]
    fn describes_itself_for_the_dry_run() {
        let mut b = budget(Some(3), Some(0.2), None);
        let text = describe(&b);
        assert!(
            text.contains("3 failed sessions") && text.contains("20% failed once 10"),
            "{text}"
        );
        assert!(text.contains("pauses"), "{text}");
        b.action = Some(FailureBudgetAction::Cancel);
        assert!(describe(&b).contains("cancelled"));
    }
}
