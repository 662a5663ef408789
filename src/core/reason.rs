//! Condition and Event reasons. They are an API: `kubectl describe`,
//! Flux and Argo CD show them, and users and alerts match on them. Each
//! reason's string is its variant's name; the README's status section
//! lists every one (a test holds it to that).

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// Why a condition is what it is, or why an Event was emitted.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// Every reason, in the order of the README's table.
            pub const ALL: &[Reason] = &[$(Reason::$name,)+];

            /// The string Kubernetes shows.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }

            /// What it means, for the README's table.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Reason::$name => concat!($($doc),+).trim_start(),)+
                }
            }
        }
    };
}

reasons! {
    // Backfill phases: the reason of Ready and Reconciling, and the
    // Events of the transitions.
    /// Backfill: a dry run planned its sessions and created nothing.
    Planned,
    /// Backfill: waiting to start.
    Pending,
    /// Backfill: Jobs are running or being launched.
    Running,
    /// Backfill: the run started (Event).
    Started,
    /// Backfill: outside its execution windows, waiting for the next one; RerunRequested: the request waits until the Backfill finishes.
    Waiting,
    /// Backfill: `suspend` is set; running Jobs go on, nothing new starts.
    Paused,
    /// Backfill: `suspend` was cleared, or a new `backfill.dev/resume` value resumed a run paused by its failure budget (Event).
    Resumed,
    /// Backfill (phase `Paused` or `Cancelled`, and Warning Event naming the failed sessions): its failure budget is spent; running Jobs finish, nothing new starts.
    FailureBudgetExhausted,
    /// Backfill (phase `AwaitingApproval`, Reconciling, and Event): its cost estimate is above the Schedule's `approval.requiredAboveCredits`; it starts once `spec.approved` is set.
    AwaitingApproval,
    /// Backfill: its cost was approved, by whom, and it starts (Event).
    Approved,
    /// Backfill: every session succeeded.
    Succeeded,
    /// Backfill: every session was processed and some did not succeed.
    Failed,
    /// Backfill: `cancel` is set and running Jobs were deleted; RerunRequested: a cancelled Backfill makes no child.
    Cancelled,
    /// Backfill: the plan holds no session to run (Event).
    NothingToRun,
    /// Backfill: `count` asked for more sessions than have passed (Event).
    PlanCutShort,
    /// Backfill: Jobs were launched (Event).
    JobsCreated,
    /// Backfill or Schedule: a Job ended without succeeding (Event).
    SessionFailed,
    /// A Job's name is taken by another owner's Job; a Backfill counts the session as failed (Warning Event, and the Backfill's `JobNameTaken` condition).
    JobNameTaken,
    /// A Job's labels or annotations are not what the operator wrote: they are ignored, and the Job is counted by its name (Warning Event).
    JobNotAsWritten,
    /// Backfill: a Job launched by a pass whose status write was lost ended after the Backfill was cancelled, past a session with no Job: no launch will record it, so it is released and its outcome not counted (Warning Event).
    LaunchNotRecorded,
    /// Backfill: waiting for a Schedule that does not exist yet, before it stalls.
    WaitingForSchedule,
    /// Stalled: the Schedule named by `scheduleRef` does not exist.
    ScheduleNotFound,
    /// Stalled: the cron expression or time zone cannot be evaluated.
    InvalidSchedule,
    /// Stalled: the session selection cannot be planned.
    InvalidPlan,
    /// Stalled: the plan spans more sessions than a Backfill may (600,000); split it.
    PlanTooLarge,
    /// Stalled: the execution windows cannot be read.
    InvalidWindows,
    /// Stalled is False: nothing blocks the object.
    Reconciled,
    /// ScheduleChanged: the Schedule's cron or zone changed under a started run, which keeps its plan.
    ScheduleChanged,
    /// ScheduleChanged is False: the Schedule is as the run started with it.
    Unchanged,
    /// A rerun request waits or is refused, and why (Event).
    RerunWaiting,
    /// RerunRequested: a dry run reruns nothing.
    DryRun,
    /// RerunRequested: the child Backfill was created.
    ChildCreated,
    /// A rerun child was created (Event).
    RerunCreated,
    /// RerunRequested and Event: no session failed, so no child is made.
    NothingToRerun,
    /// RerunRequested is False: no request is pending.
    Done,
    /// Outcomes of sessions older than the ledger's retention were counted in status, not written to the ledger (Event).
    PastLedgerRetention,
    /// A SessionLedger object cannot be read; its month was not written, and the Schedule goes on (Warning Event).
    UnreadableLedger,
    /// Schedule: sessions run on time.
    Scheduled,
    /// Schedule: `suspend` is set; no new Jobs start.
    Suspended,
    /// Schedule: Reconciling is False; a Schedule is never in progress.
    Idle,
    /// Schedule: a due session is not started because another Job of the Schedule (a Backfill's) runs it now (Event). Backfill (phase `Waiting`, and Event): its next session runs in another Job of the Schedule; it launches nothing more until that Job ends.
    SessionRunElsewhere,
    /// Backfill: a session it waited for was decided by another Job of the Schedule, and `reprocess` does not run it again: it is left out (`skippedCount`) (Event).
    SessionDecidedElsewhere,
    /// Backfill: its Schedule's `maxActiveJobs` is taken by the live schedule and the other Backfills; `waitingForCapacity` counts the sessions it would start now but for it (phase `Waiting` when it starts none, with an Event).
    WaitingForCapacity,
    /// Schedule: a Job was created for a session (Event).
    JobCreated,
    /// Schedule: `Replace` deleted the running Job before its successor (Event).
    JobReplaced,
    /// Schedule: sessions were missed and not run, per the missed-session policy (Event).
    SessionMissed,
    /// Schedule: recent sessions have no outcome; a Backfill would run them (Event).
    SessionsMissing,
}

impl Reason {
    /// The README's table of reasons.
    pub fn markdown_table() -> String {
        let mut table = String::from("| reason | meaning |\n|---|---|\n");
        for reason in Reason::ALL {
            table.push_str(&format!("| `{reason}` | {} |\n", reason.meaning()));
        }
        table
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_reason() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- reasons:begin -->\n";
        let table = readme
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once("<!-- reasons:end -->"))
            .map(|(table, _)| table)
            .expect("README.md has the reasons markers");
        assert_eq!(
            table,
            Reason::markdown_table(),
            "README.md's table of reasons is out of date; put this between the markers:\n{}",
            Reason::markdown_table()
        );
    }

    #[test]
    fn names_are_distinct_pascal_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.starts_with(|c: char| c.is_ascii_uppercase()));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        }
    }
}
