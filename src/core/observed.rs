//! What the controllers observe of their Jobs, and what they tell users:
//! shared by the Schedule's and the Backfill's decide steps.

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use super::job::{OwnerKind, plan_check, session_of_job};
use super::reason::Reason;
use super::zoned_cron::timestamp;
use crate::api::{ANNOTATION_PLAN_CHECK, ANNOTATION_PLAN_INDEX, JOB_FINALIZER, LABEL_SESSION};

/// A Job of a Schedule or a Backfill, as the watch cache shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedJob {
    pub name: String,
    pub uid: String,
    /// From the `backfill.dev/session` label.
    pub session: Option<i64>,
    pub state: JobState,
    /// A deletion was requested (by a person, TTL, history or Replace).
    pub deleting: bool,
    /// Still carries `backfill.dev/outcome`: its outcome may be uncounted.
    pub has_finalizer: bool,
    /// A Backfill's Job: the session's index in the plan.
    pub plan_index: Option<u64>,
    /// Its session label (and plan index, if any) are what the operator
    /// wrote; when not, they are ignored: `session` is the session of its
    /// name and `plan_index` is `None`.
    pub as_written: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobState {
    #[default]
    Active,
    Succeeded,
    Failed,
}

impl JobState {
    /// What a Job's status says: ended when its `Complete` or `Failed`
    /// condition is `True` (the Job controller's terminal conditions).
    pub fn of(status: Option<&JobStatus>) -> Self {
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let is = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        if is("Complete") {
            JobState::Succeeded
        } else if is("Failed") {
            JobState::Failed
        } else {
            JobState::Active
        }
    }
}

/// How a session ended: the API's type, which a Schedule's
/// `status.unfiledOutcomes` holds.
pub use crate::api::SessionOutcome as Outcome;

/// Where a Job's labels and annotations are read from: its metadata, or
/// the watch cache's compact copy of the ones decisions read.
pub trait JobKeys {
    fn label(&self, key: &str) -> Option<&str>;
    fn annotation(&self, key: &str) -> Option<&str>;
}

impl JobKeys for ObjectMeta {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

impl ObservedJob {
    /// A Schedule's Job created a moment ago that the Job cache does not
    /// show yet: running, with the outcome finalizer it was created with.
    pub fn launched(name: String, session: i64) -> Self {
        Self {
            name,
            uid: String::new(),
            session: Some(session),
            state: JobState::Active,
            deleting: false,
            has_finalizer: true,
            plan_index: None,
            as_written: true,
        }
    }

    /// What the decide steps need to know of a Job of `owner` (a
    /// Schedule's or a Backfill's name, as `kind` says). The session is
    /// the one the Job's name was made from: a name cannot change, while
    /// the session label and the plan-index annotation may have been
    /// edited by anyone. They count only when they agree with the name.
    pub fn of(job: &Job, kind: OwnerKind, owner: &str) -> Self {
        Self::from_parts(
            &job.metadata,
            &job.metadata,
            JobState::of(job.status.as_ref()),
            kind,
            owner,
        )
    }

    /// [`ObservedJob::of`] a Job's metadata, labels and annotations (from
    /// `keys`), and the state its status says: all it reads.
    pub fn from_parts(
        meta: &ObjectMeta,
        keys: &dyn JobKeys,
        state: JobState,
        kind: OwnerKind,
        owner: &str,
    ) -> Self {
        let label = |key: &str| keys.label(key);
        let annotation = |key: &str| keys.annotation(key);
        let name = meta.name.clone().unwrap_or_default();
        let session = session_of_job(kind, owner, &name);
        let labelled: Option<i64> = label(LABEL_SESSION).and_then(|s| s.parse().ok());
        let plan_index: Option<u64> =
            annotation(ANNOTATION_PLAN_INDEX).and_then(|s| s.parse().ok());
        // Jobs made before the check existed (0.2.0) carry none.
        let checked = |index: u64| {
            annotation(ANNOTATION_PLAN_CHECK).is_none_or(|c| c == plan_check(&name, index))
        };
        let as_written = session.is_some()
            && labelled == session
            && match kind {
                OwnerKind::Schedule => annotation(ANNOTATION_PLAN_INDEX).is_none(),
                OwnerKind::Backfill => plan_index.is_some_and(checked),
            };
        ObservedJob {
            name,
            uid: meta.uid.clone().unwrap_or_default(),
            session,
            state,
            deleting: meta.deletion_timestamp.is_some(),
            has_finalizer: meta.finalizers.iter().flatten().any(|f| f == JOB_FINALIZER),
            plan_index: plan_index.filter(|_| as_written),
            as_written,
        }
    }

    pub fn outcome(&self) -> Option<Outcome> {
        match (self.state, self.deleting) {
            (JobState::Succeeded, _) => Some(Outcome::Succeeded),
            (JobState::Failed, _) => Some(Outcome::Failed),
            (JobState::Active, true) => Some(Outcome::Killed),
            (JobState::Active, false) => None,
        }
    }

    pub fn running(&self) -> bool {
        self.state == JobState::Active && !self.deleting
    }
}

/// A Kubernetes Event to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: Reason,
    pub message: String,
}

pub fn find_condition<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets kstatus conditions against the ones the object had, keeping a
/// condition's transition time while its status does not change (so an
/// unchanged object is not rewritten).
pub struct Kstatus<'a> {
    pub before: &'a [Condition],
    pub generation: Option<i64>,
    pub now: i64,
}

impl Kstatus<'_> {
    pub fn set(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        value: bool,
        reason: Reason,
        message: &str,
    ) {
        Self::put(conditions, self.condition(type_, value, reason, message));
    }

    /// The condition `set` would put.
    pub fn condition(&self, type_: &str, value: bool, reason: Reason, message: &str) -> Condition {
        let value = if value { "True" } else { "False" };
        let since = find_condition(self.before, type_)
            .filter(|c| c.status == value)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(timestamp(self.now)));
        Condition {
            type_: type_.to_string(),
            status: value.to_string(),
            reason: reason.as_str().to_string(),
            message: message.to_string(),
            observed_generation: self.generation,
            last_transition_time: since,
        }
    }

    /// Puts `cond` in place of the condition of its type.
    pub fn put(conditions: &mut Vec<Condition>, cond: Condition) {
        match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
            Some(c) => *c = cond,
            None => conditions.push(cond),
        }
    }
}
