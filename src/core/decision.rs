//! What a decide step returns, for either kind: complete, so the one
//! applier (`controller::apply`) carries it out without adding to it.
//! Jobs come fully built, outcomes come with the ledger record they go
//! into, and Events come with their reasons.

use k8s_openapi::api::batch::v1::Job;

use super::backfill::rerun::RerunChild;
use super::ledger::Unfiled;
use super::observed::{Note, ObservedJob, Outcome};
use super::zoned_cron::Session;

/// A Job to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub session: Session,
    /// A Backfill's Job: the session's index in the frozen plan.
    pub plan_index: Option<u64>,
    pub job: Job,
    /// Published once the create made the Job (not when it existed).
    pub created: Option<Note>,
}

/// Outcomes for the Schedule's session ledger, written before the
/// finalizers of their Jobs come off.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerRecord {
    /// The attempt name that decided them.
    pub attempt: String,
    /// Who ran them: `Schedule/<name>` or `Backfill/<name>`.
    pub owner: String,
    /// Outcomes decided now: they replace what any attempt recorded
    /// before.
    pub outcomes: Vec<(i64, Outcome)>,
    /// A Schedule's outcomes kept in its status until now: each is filed
    /// unless another attempt recorded its session since
    /// ([`Ledger::file`](super::ledger::Ledger::file)).
    pub unfiled: Vec<Unfiled>,
}

impl LedgerRecord {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.unfiled.is_empty()
    }
}

/// What to do, in the order the applier does it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision<S> {
    /// Running Jobs to delete before anything starts (`Replace`, cancel).
    pub delete: Vec<String>,
    pub create: Vec<NewJob>,
    /// A rerun child to create; once it exists, [`Status::child_created`]
    /// records it in `status` and its Event joins `notes`.
    pub rerun: Option<RerunChild>,
    pub status: S,
    pub ledger: LedgerRecord,
    /// Jobs whose finalizer comes off once `status` and `ledger` are
    /// written.
    pub release: Vec<String>,
    /// Finished Jobs past the history limits, oldest first; their outcome
    /// is counted.
    pub prune: Vec<String>,
    pub notes: Vec<Note>,
    /// When to reconcile again (on the operator's clock) if nothing
    /// changes before.
    pub wake_at: Option<i64>,
}

/// The status half of a decision.
pub trait Status: Clone + PartialEq + serde::Serialize {
    /// The rerun child this decision asked for was created (or found)
    /// with this UID. Only Backfills make children.
    fn child_created(&mut self, _child: &RerunChild, _child_uid: &str) {}

    /// The Job for `job`'s session could not be created at `now`: its
    /// name is taken by another owner's Job. A Backfill counts the
    /// session as failed and says so in a condition; a Schedule's session
    /// is not run (it is settled already).
    fn job_name_taken(&mut self, _job: &NewJob, _now: i64) {}
}

impl<S> Decision<S> {
    /// An owner being deleted: its Jobs go with it, their outcomes with
    /// nobody to count them, so every finalizer comes off and nothing
    /// else happens (`status` is the owner's own, unchanged).
    pub fn release_all(status: S, jobs: &[ObservedJob]) -> Self {
        Self {
            delete: Vec::new(),
            create: Vec::new(),
            rerun: None,
            status,
            ledger: LedgerRecord::default(),
            release: jobs
                .iter()
                .filter(|j| j.has_finalizer)
                .map(|j| j.name.clone())
                .collect(),
            prune: Vec::new(),
            notes: Vec::new(),
            wake_at: None,
        }
    }
}

/// The session and outcome of each Job in `release`: what the ledger
/// records before the Jobs may go.
pub fn released_outcomes(jobs: &[ObservedJob], release: &[String]) -> Vec<(i64, Outcome)> {
    // A set: a pass may release thousands of a large Backfill's Jobs.
    let release: std::collections::HashSet<&str> = release.iter().map(String::as_str).collect();
    jobs.iter()
        .filter(|j| release.contains(j.name.as_str()))
        .filter_map(|j| Some((j.session?, j.outcome()?)))
        .collect()
}
