//! The operator's Jobs as the tests read them: the labels, annotations and
//! finalizer it puts on them, and how they ended.

use k8s_openapi::api::batch::v1::Job;

pub const LABEL_BACKFILL: &str = "backfill.dev/backfill";
pub const LABEL_SCHEDULE: &str = "backfill.dev/schedule";
pub const LABEL_SESSION: &str = "backfill.dev/session";
pub const ANNOTATION_PLAN_INDEX: &str = "backfill.dev/plan-index";
pub const ANNOTATION_SESSION_TIME: &str = "backfill.dev/session-time";
pub const ANNOTATION_SESSION_UUID: &str = "backfill.dev/session-uuid";
pub const ANNOTATION_ATTEMPT_NAME: &str = "backfill.dev/attempt-name";
/// Held by the operator on its Jobs until it has counted their outcome.
pub const JOB_FINALIZER: &str = "backfill.dev/outcome";

/// Whether the Job still carries the operator's outcome finalizer.
pub fn holds_outcome(job: &Job) -> bool {
    job.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == JOB_FINALIZER)
}

/// How a Job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// How a Job ended, as the operator judges it (`controller::observe`):
/// by the job controller's final conditions, Complete or Failed. The
/// SuccessCriteriaMet and FailureTarget it sets a moment earlier, while
/// pods still terminate, do not count: until Complete or Failed the
/// operator counts the Job as running and keeps its finalizer. (A Job
/// deleted before it ended, which the operator counts as killed, has no
/// outcome here.)
pub fn outcome(job: &Job) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete") {
        Some(Outcome::Succeeded)
    } else if is("Failed") {
        Some(Outcome::Failed)
    } else {
        None
    }
}

/// The status of the Job's condition of type `type_`, if it has one.
pub fn job_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

pub fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}
