//! Cost approval: a Backfill whose cost estimate is above its Schedule's
//! `approval.requiredAboveCredits` waits in phase `AwaitingApproval` until
//! `spec.approved` is set, and starts then.
//!
//! Who may set it is the API server's business (the chart's admission
//! policy allows it only to holders of the RBAC verb `approve` on
//! `backfills`, refuses a change of the selection of an approved Backfill
//! to anyone else, and stamps the approver into `backfill.dev/approved-by`).
//! Here the approval is judged when the run would start: once started,
//! the selection can no longer change (the CRD's rule), so what was
//! approved is what runs.

use sha2::{Digest, Sha256};

use super::view::BackfillView;
use crate::api::{ApprovalStatus, BackfillSpec, SELECTION_FIELDS, ScheduleSpec};

/// What the approval rule says of a plan about to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The Schedule asks for no approval.
    NotAsked,
    /// The estimate is within the threshold.
    NotNeeded { credits: f64, threshold: f64 },
    /// Above the threshold and not approved: wait.
    Awaiting { status: ApprovalStatus },
    /// Above the threshold and approved.
    Approved { status: ApprovalStatus },
}

/// The credits the approval is judged on: `sessions` at the Backfill's
/// `creditsPerSession`, or the Schedule's when that is higher, so a
/// Backfill cannot lower its own price below the approval.
pub fn credits_judged(spec: &BackfillSpec, schedule: &ScheduleSpec, sessions: u64) -> f64 {
    let own = spec.credits_per_session.unwrap_or(0.0);
    let schedule = schedule.credits_per_session.unwrap_or(0.0);
    own.max(schedule) * sessions as f64
}

/// The approval rule for `sessions` about to start.
pub fn judge(view: &BackfillView<'_>, schedule: &ScheduleSpec, sessions: u64) -> Verdict {
    let Some(approval) = &schedule.approval else {
        return Verdict::NotAsked;
    };
    let threshold = approval.required_above_credits;
    let credits = credits_judged(view.spec, schedule, sessions);
    if credits <= threshold {
        return Verdict::NotNeeded { credits, threshold };
    }
    let mut status = ApprovalStatus {
        required_above_credits: threshold,
        credits,
        ..ApprovalStatus::default()
    };
    if view.spec.approved != Some(true) {
        return Verdict::Awaiting { status };
    }
    status.approved_by = view
        .approved_by
        .map(str::trim)
        .filter(|who| !who.is_empty())
        .map(|who| who.chars().take(256).collect());
    status.selection = Some(selection_digest(view.spec));
    Verdict::Approved { status }
}

impl Verdict {
    /// What the dry run shows.
    pub fn preview(&self) -> Option<String> {
        match self {
            Verdict::NotAsked => None,
            Verdict::NotNeeded { credits, threshold } => Some(format!(
                "not needed: the estimate of {credits} credits is not above the Schedule's approval threshold of {threshold}"
            )),
            Verdict::Awaiting { status } => Some(format!(
                "needed: the estimate of {} credits is above the Schedule's approval threshold of {}; the backfill waits in AwaitingApproval until spec.approved is set by a holder of the RBAC verb approve on backfills",
                status.credits, status.required_above_credits
            )),
            Verdict::Approved { status } => Some(format!(
                "needed and given by {}: the estimate of {} credits is above the Schedule's approval threshold of {}",
                status.approved_by.as_deref().unwrap_or("an unknown user"),
                status.credits,
                status.required_above_credits
            )),
        }
    }

    /// Why the backfill waits, for its conditions and its Event.
    pub fn waiting_message(&self) -> Option<String> {
        let Verdict::Awaiting { status } = self else {
            return None;
        };
        Some(format!(
            "the cost estimate of {} credits is above the Schedule's approval threshold of {}: the backfill starts once spec.approved is true, which only holders of the RBAC verb approve on backfills in this namespace may set",
            status.credits, status.required_above_credits
        ))
    }

    /// What status records.
    pub fn status(&self) -> Option<ApprovalStatus> {
        match self {
            Verdict::Awaiting { status } | Verdict::Approved { status } => Some(status.clone()),
            _ => None,
        }
    }
}

/// A digest of the selection (the fields fixed once started) and the
/// price, as the spec holds them.
pub fn selection_digest(spec: &BackfillSpec) -> String {
    let value = serde_json::to_value(spec).unwrap_or_default();
    let mut picked = serde_json::Map::new();
    for field in SELECTION_FIELDS.iter().chain(&["creditsPerSession"]) {
        if let Some(v) = value.get(*field) {
            picked.insert((*field).to_string(), v.clone());
        }
    }
    let text = serde_json::Value::Object(picked).to_string();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's admission policy tells a change of the selection by
    /// the same fields as the digest (and the CRD's rule) do.
    #[test]
    fn the_chart_policy_watches_the_selection_fields() {
        let policy =
            include_str!("../../../charts/backfill-operator/templates/approval-policy.yaml");
        let fields: Vec<String> = SELECTION_FIELDS
            .iter()
            .chain(&["creditsPerSession"])
            .map(|f| format!("{f:?}"))
            .collect();
        let list = format!("{{{{- $fields := list {} }}}}", fields.join(" "));
        assert!(
            policy.contains(&list),
            "approval-policy.yaml should hold: {list}"
        );
    }
}
