//! The Backfill's conditions and the Events of its transitions: stalled,
//! waiting for its Schedule, and the kstatus conditions after a pass.

use super::SCHEDULE_GRACE;
use super::view::{BackfillView, Pass};
use crate::api::{BackfillPhase, condition};
use crate::core::observed::{Kstatus, Note, find_condition};
use crate::core::plan::PlanError;
use crate::core::reason::Reason;
use crate::core::zoned_cron::time;

/// Why a Backfill cannot go on; it becomes a `Stalled` condition.
pub(super) struct Stall {
    pub(super) reason: Reason,
    pub(super) message: String,
}

impl From<PlanError> for Stall {
    fn from(e: PlanError) -> Self {
        let reason = match e {
            PlanError::ZonedCron(_) => Reason::InvalidSchedule,
            PlanError::TooLarge { .. } => Reason::PlanTooLarge,
            _ => Reason::InvalidPlan,
        };
        Stall {
            reason,
            message: e.to_string(),
        }
    }
}

pub(super) fn stalled(view: &BackfillView<'_>, d: &mut Pass, ks: &Kstatus<'_>, stall: Stall) {
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

/// When a new Backfill's wait for its Schedule ends, if it has not yet.
pub(super) fn in_grace(view: &BackfillView<'_>) -> Option<i64> {
    view.created
        .map(|c| c + SCHEDULE_GRACE)
        .filter(|&until| view.now < until)
}

/// A new Backfill whose Schedule does not exist yet: in progress, not
/// Stalled, until `until`; no Event.
pub(super) fn waiting_for_schedule(d: &mut Pass, ks: &Kstatus<'_>, until: i64, stall: &Stall) {
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
        Reason::WaitingForSchedule,
        &message,
    );
    ks.set(
        &mut d.status.conditions,
        condition::RECONCILING,
        true,
        Reason::WaitingForSchedule,
        &message,
    );
}

pub(super) fn clear_stall(d: &mut Pass, ks: &Kstatus<'_>) {
    ks.set(
        &mut d.status.conditions,
        condition::STALLED,
        false,
        Reason::Reconciled,
        "",
    );
}

/// Conditions and the printer column after a pass.
pub(super) fn finish_status(d: &mut Pass, ks: &Kstatus<'_>, before: BackfillPhase) {
    let phase = d.status.phase.unwrap_or_default();
    let (ready, reconciling, reason) = match phase {
        BackfillPhase::Planned => (true, false, Reason::Planned),
        BackfillPhase::Succeeded => (true, false, Reason::Succeeded),
        BackfillPhase::Failed => (true, false, Reason::Failed),
        BackfillPhase::Cancelled => (
            d.status.running_count == 0,
            d.status.running_count > 0,
            Reason::Cancelled,
        ),
        BackfillPhase::Pending => (false, true, Reason::Pending),
        BackfillPhase::Running => (false, true, Reason::Running),
        BackfillPhase::Waiting => (false, true, Reason::Waiting),
        BackfillPhase::Paused => (false, false, Reason::Paused),
        BackfillPhase::AwaitingApproval => (false, true, Reason::AwaitingApproval),
    };
    let mut message = format!(
        "{} of {} sessions processed: {} succeeded, {} failed, {} killed, {} running",
        d.status.processed_count,
        d.status.total_estimated,
        d.status.succeeded_count,
        d.status.failed_count,
        d.status.killed_count,
        d.status.running_count
    );
    let mut reason = reason;
    if let Some((why, what)) = &d.hold {
        reason = *why;
        message = what.clone();
    }
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
            BackfillPhase::Succeeded => Some((false, Reason::Succeeded)),
            BackfillPhase::Failed => Some((true, Reason::Failed)),
            BackfillPhase::Cancelled => Some((false, Reason::Cancelled)),
            BackfillPhase::Paused => Some((false, Reason::Paused)),
            BackfillPhase::Running if before == BackfillPhase::Paused => {
                Some((false, Reason::Resumed))
            }
            _ => None,
        };
        // The budget and the approval have Events of their own.
        let own_event = matches!(
            reason,
            Reason::FailureBudgetExhausted | Reason::AwaitingApproval
        );
        if let (Some((warning, reason)), false) = (note, own_event) {
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
                reason: Reason::NothingToRun,
                message,
            });
        }
    }
}
