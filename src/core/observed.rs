//! What the controllers observe of their Jobs, and what they tell users:
//! shared by the Schedule's and the Backfill's decide steps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::clock::timestamp;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    Failed,
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Deleted before it finished.
    Killed,
}

impl ObservedJob {
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
    pub reason: &'static str,
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
        reason: &str,
        message: &str,
    ) {
        let value = if value { "True" } else { "False" };
        let since = find_condition(self.before, type_)
            .filter(|c| c.status == value)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(timestamp(self.now)));
        let cond = Condition {
            type_: type_.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: self.generation,
            last_transition_time: since,
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = cond,
            None => conditions.push(cond),
        }
    }
}
