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
    /// Backfill: Jobs are running or being launched; Event: the run started.
    Running,
    /// Backfill: the run started (Event).
    Started,
    /// Backfill: outside its execution windows; waiting for the next one.
    Waiting,
    /// Backfill: `suspend` is set; running Jobs go on, nothing new starts.
    Paused,
    /// Backfill: `suspend` was cleared (Event).
    Resumed,
    /// Backfill: every session succeeded.
    Succeeded,
    /// Backfill: every session was processed and some did not succeed.
    Failed,
    /// Backfill: `cancel` is set; running Jobs were deleted.
    Cancelled,
    /// Backfill: the plan holds no session to run (Event).
    NothingToRun,
    /// Backfill: `count` asked for more sessions than have passed (Event).
    PlanCutShort,
    /// Backfill: Jobs were launched (Event).
    JobsCreated,
    /// Backfill or Schedule: a Job ended without succeeding (Event).
    SessionFailed,
    /// Backfill: waiting for a Schedule that does not exist yet, before it stalls.
    WaitingForSchedule,
    /// Stalled: the Schedule named by `scheduleRef` does not exist.
    ScheduleNotFound,
    /// Stalled: the cron expression or time zone cannot be evaluated.
    InvalidSchedule,
    /// Stalled: the session selection cannot be planned.
    InvalidPlan,
    /// Stalled: the execution windows cannot be read.
    InvalidWindows,
    /// Stalled is False: nothing blocks the object.
    Reconciled,
    /// ScheduleChanged: the Schedule's cron or zone changed under a started run, which keeps its plan.
    ScheduleChanged,
    /// ScheduleChanged is False: the Schedule is as the run started with it.
    Unchanged,
    /// RerunRequested: the request waits until the Backfill finishes.
    RerunWaiting,
    /// RerunRequested: a dry run reruns nothing.
    DryRun,
    /// RerunRequested: the child Backfill was created (also an Event: RerunCreated).
    ChildCreated,
    /// A rerun child was created (Event).
    RerunCreated,
    /// RerunRequested: no session failed, so no child is made.
    NothingToRerun,
    /// RerunRequested is False: no request is pending.
    Done,
    /// Schedule: sessions run on time.
    Scheduled,
    /// Schedule: `suspend` is set; no new Jobs start.
    Suspended,
    /// Schedule: Reconciling is False; a Schedule is never in progress.
    Idle,
    /// Schedule: a Job was created for a session (Event).
    JobCreated,
    /// Schedule: `Replace` deleted the running Job before its successor (Event).
    JobReplaced,
    /// Schedule: sessions were missed and not run, per the missed-session policy (Event).
    SessionMissed,
    /// Schedule: recent sessions have no outcome; a Backfill would run them (Event).
    SessionsMissing,
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
