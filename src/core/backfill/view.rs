//! What the Backfill's decide step looks at, and what it decides.

use super::rerun::RerunChild;
use crate::api::{BackfillSpec, BackfillStatus, ScheduleSpec};
use crate::core::capacity::Budget;
use crate::core::ledger::LedgerIndex;
use crate::core::observed::Note;
use crate::core::observed::ObservedJob;
use crate::core::reason::Reason;
use crate::core::zoned_cron::Session;

/// Everything `decide` looks at.
#[derive(Clone, Debug)]
pub struct BackfillView<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub uid: &'a str,
    /// The Schedule's UID (the sessions' UUIDs derive from it).
    pub schedule_uid: &'a str,
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
    /// The `backfill.dev/resume` annotation.
    pub resume_request: Option<&'a str>,
    /// The `backfill.dev/approved-by` annotation.
    pub approved_by: Option<&'a str>,
    /// The `backfill.dev/rerun-requested-by` annotation: who asked for
    /// the rerun (the public API writes it; the chart's created-by policy
    /// stamps it for anyone else), the child's `created-by`.
    pub rerun_requested_by: Option<&'a str>,
    /// The Schedule's session ledger, with what its other Jobs know and
    /// it does not yet, for `reprocess`: read before the start, and for
    /// the sessions still to launch.
    pub ledger: &'a LedgerIndex,
    /// Sessions another Job of the Schedule (a scheduled run, another
    /// Backfill) runs now, with that Job's name: a session waits for its
    /// other attempt to end.
    pub run_elsewhere: &'a std::collections::BTreeMap<i64, String>,
    /// The Schedule's `maxActiveJobs` budget, when it sets one, with
    /// what the live schedule and the other Backfills run.
    pub budget: Option<&'a Budget>,
    /// When the Backfill was created, on the operator's clock.
    pub created: Option<i64>,
    pub now: i64,
}

/// What one pass decides, before its Jobs are built
/// (`super::decide` completes it into a `Decision`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pass {
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
    /// A rerun child to create; `status` records it already.
    pub rerun: Option<RerunChild>,
    /// Why launching is held back other than by a window (another Job
    /// of the session, a spent failure budget, an approval to wait for):
    /// the reason and message of Ready and Reconciling.
    pub hold: Option<(Reason, String)>,
}
