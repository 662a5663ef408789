//! The `backfill.dev/v1alpha1` API: CRD types and their admission rules.
//!
//! Nothing here does I/O or evaluates a schedule; the rules the API server
//! can check (OpenAPI bounds, enums, formats, CEL) are declared on the types
//! so that `crdgen` carries them into the CRDs.

mod backfill;
mod ledger;
mod schedule;

pub use backfill::*;
pub use ledger::*;
pub use schedule::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The longest label value Kubernetes takes, and so the longest name of
/// a Schedule, Backfill, attempt or Job (each is a label value on Jobs or
/// their pods). The CEL rule and the schema bound below spell it out, as
/// CEL and schemars take literals; a unit test holds them to it.
pub const LABEL_VALUE_MAX: usize = 63;

/// A Schedule's or Backfill's name is a label value on each of its Jobs
/// (`backfill.dev/schedule`, `backfill.dev/backfill`), which Kubernetes
/// limits to 63 characters: a longer name is refused when applied, not
/// when its first Job fails to be created.
pub const NAME_FITS_A_LABEL: &str = "self.metadata.name.size() <= 63";
pub const NAME_FITS_A_LABEL_MESSAGE: &str = "metadata.name must be at most 63 characters: it is a label value on every Job this object creates";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_rules_say_the_label_limit() {
        let limit = LABEL_VALUE_MAX.to_string();
        assert!(NAME_FITS_A_LABEL.ends_with(&format!("<= {limit}")));
        assert!(NAME_FITS_A_LABEL_MESSAGE.contains(&format!("at most {limit} characters")));
        let attempt = &crate::crds::all()[1].1.spec.versions[0];
        let schema = serde_json::to_value(attempt.schema.as_ref().unwrap()).unwrap();
        let max = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["attemptName"]["maxLength"];
        assert_eq!(max.as_u64(), Some(LABEL_VALUE_MAX as u64));
    }
}

/// Label on a Job (and its pod template) naming the Schedule it runs.
pub const LABEL_SCHEDULE: &str = "backfill.dev/schedule";
/// Label on a Job (and its pod template) naming the Backfill that made it;
/// absent for scheduled runs.
pub const LABEL_BACKFILL: &str = "backfill.dev/backfill";
/// Label on a rerun child Backfill naming its parent.
pub const LABEL_PARENT: &str = "backfill.dev/parent";
/// Label on a Job (and its pod template): the session's Unix seconds.
pub const LABEL_SESSION: &str = "backfill.dev/session";
/// Annotation on a Job: the session time, RFC 3339 in the schedule's zone.
pub const ANNOTATION_SESSION_TIME: &str = "backfill.dev/session-time";
/// Annotation on a Job: the session's UUID (the same in every attempt).
pub const ANNOTATION_SESSION_UUID: &str = "backfill.dev/session-uuid";
/// Annotation on a Backfill's Job: the session's index in the plan.
pub const ANNOTATION_PLAN_INDEX: &str = "backfill.dev/plan-index";
/// Annotation on a Backfill's Job: a check of its name and plan index
/// together (`core::job::plan_check`), so an index edited to another one
/// is told from the one the operator wrote.
pub const ANNOTATION_PLAN_CHECK: &str = "backfill.dev/plan-check";
/// Annotation on a Job: the attempt name that made it.
pub const ANNOTATION_ATTEMPT_NAME: &str = "backfill.dev/attempt-name";
/// Annotation on a Backfill: a new value asks for a rerun of its failures.
pub const ANNOTATION_RERUN_FAILED: &str = "backfill.dev/rerun-failed";
/// Annotation on a Backfill: who asked for the rerun its
/// `backfill.dev/rerun-failed` requests; the rerun child's
/// `backfill.dev/created-by`.
pub const ANNOTATION_RERUN_REQUESTED_BY: &str = "backfill.dev/rerun-requested-by";
/// Annotation on a Backfill: who asked for it, shown as `status.createdBy`.
pub const ANNOTATION_CREATED_BY: &str = "backfill.dev/created-by";
/// Annotation on a Backfill: who set `spec.approved`, stamped by the
/// chart's admission policy from the authenticated user.
pub const ANNOTATION_APPROVED_BY: &str = "backfill.dev/approved-by";
/// Annotation on a Backfill: a new value resumes a run paused by its
/// failure budget.
pub const ANNOTATION_RESUME: &str = "backfill.dev/resume";
/// Finalizer on every Job the operator creates, removed once its outcome
/// is recorded.
pub const JOB_FINALIZER: &str = "backfill.dev/outcome";

/// The cron macros CronJob accepts (`@every` is not one a Schedule takes).
pub const CRON_MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// A half-open span of time, `from` inclusive and `to` exclusive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.from < self.to").message("from must be earlier than to"))]
pub struct TimeRange {
    /// Start of the range, inclusive (RFC 3339).
    pub from: Time,
    /// End of the range, exclusive (RFC 3339).
    pub to: Time,
}

/// Condition types, after the kstatus convention Flux and Argo CD read.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    /// A Backfill's rerun request waits, was refused, or was carried out.
    pub const RERUN_REQUESTED: &str = "RerunRequested";
    /// The Schedule's cron or zone changed under a started Backfill.
    pub const SCHEDULE_CHANGED: &str = "ScheduleChanged";
    /// A Backfill's session could not be launched: its Job's name is
    /// taken by another owner's Job. True from then on, for the run.
    pub const JOB_NAME_TAKEN: &str = "JobNameTaken";
}
