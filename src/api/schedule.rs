use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cron expression in a time zone plus a Job template: a superset of
/// `batch/v1` CronJob, so a CronJob becomes a Schedule by changing `kind`
/// and `apiVersion`.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy mistakes for
// a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "backfill.dev",
    version = "v1alpha1",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    shortname = "sched",
    category = "backfill-operator",
    derive = "PartialEq",
    doc = "A cron schedule in a time zone that runs one Job per session, like a CronJob, and keeps a durable record of every session's outcome.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeCount"),
    printcolumn(
        name = "Last Schedule",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new(super::NAME_FITS_A_LABEL).message(super::NAME_FITS_A_LABEL_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.startTime) || !has(self.endTime) || self.startTime < self.endTime").message("startTime must be earlier than endTime"))]
#[x_kube(validation = Rule::new("!has(self.jobTemplate.spec) || !has(self.jobTemplate.spec.template.spec) || !has(self.jobTemplate.spec.template.spec.restartPolicy) || self.jobTemplate.spec.template.spec.restartPolicy in ['OnFailure', 'Never']").message("a Job's pods must have restartPolicy OnFailure or Never (Never is used when it is not set)"))]
pub struct ScheduleSpec {
    /// The cron expression, as CronJob takes it: five fields (minute, hour,
    /// day of month, month, day of week) or one of @yearly, @annually,
    /// @monthly, @weekly, @daily, @midnight, @hourly. Evaluated in local
    /// time of `timeZone`.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(r"!self.matches('^\\s*(CRON_)?TZ=')").message("set the time zone in spec.timeZone, not with TZ= in spec.schedule"))]
    #[x_kube(validation = Rule::new(r"!self.matches('^\\s*@') || self.matches('^\\s*@(yearly|annually|monthly|weekly|daily|midnight|hourly)\\s*$')").message("schedule macro must be one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\s*@') || self.matches('^\\s*\\S+\\s+\\S+\\s+\\S+\\s+\\S+\\s+\\S+\\s*$')").message("schedule must have exactly 5 fields: minute hour day-of-month month day-of-week"))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\s*@') || self.matches('^[0-9A-Za-z*?/,\\-\\s]+$')").message("schedule fields may contain only numbers, month or weekday names, and * ? / , -"))]
    pub schedule: String,

    /// IANA time zone the cron fields are evaluated in, e.g.
    /// `America/New_York`. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z][A-Za-z0-9_+\\-]*(/[A-Za-z0-9_+\\-]+)*$')").message("timeZone must be an IANA time zone name such as America/New_York or UTC"))]
    pub time_zone: Option<String>,

    /// Stop starting new sessions. Running Jobs go on; sessions that pass
    /// while suspended are missed (see `missedSessions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// What to do when a session is due while an earlier Job still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,

    /// A session that cannot start within this many seconds of its time is
    /// missed instead of started late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// How many finished successful Jobs to keep. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_jobs_history_limit: Option<i32>,

    /// How many finished failed Jobs to keep. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failed_jobs_history_limit: Option<i32>,

    /// The Job each session runs.
    pub job_template: JobTemplateSpec,

    /// No session before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// No session at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,

    /// What happens to sessions missed while suspended or while the
    /// operator was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_sessions: Option<MissedSessions>,

    /// Credits one session costs, for the cost estimates of Backfills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub credits_per_session: Option<f64>,

    /// At most this many Jobs of the Schedule active at once, one budget
    /// shared by its scheduled runs and all its Backfills (rerun children
    /// too). Live runs first: scheduled sessions always start on time,
    /// and Backfills start Jobs only in the slots the live schedule is not
    /// expected to need, shared fairly between them, each still within
    /// its own `maxInFlight`. Unset: no shared budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_active_jobs: Option<i32>,

    /// Backfills of this Schedule whose cost is above a threshold wait
    /// for an approval before they start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// When a Backfill needs an approval before it starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// A Backfill whose cost estimate is above this many credits waits in
    /// phase `AwaitingApproval` until `spec.approved` is set by a holder
    /// of the RBAC verb `approve` on `backfills`.
    #[schemars(range(min = 0.0))]
    pub required_above_credits: f64,
}

/// What to do when a session is due while an earlier Job still runs, as
/// CronJob does. Default Allow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new Job beside the running ones.
    #[default]
    Allow,
    /// Skip the new session while a Job runs.
    Forbid,
    /// Delete the running Job and start the new one.
    Replace,
}

/// The policy for sessions missed while suspended or while the operator
/// was down.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissedSessions {
    /// `RunLatest` (CronJob's behaviour): run only the latest missed
    /// session. `RunAll`: run every missed session within `windowSeconds`.
    /// `Skip`: run none. Missed sessions are counted in status either way,
    /// so they can be backfilled.
    #[serde(default)]
    pub policy: MissedSessionPolicy,

    /// With `RunAll`, how far back (seconds before now) missed sessions
    /// are still run. Default 86400 (one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_622_400))]
    pub window_seconds: Option<i64>,
}

/// What happens to missed sessions. Default RunLatest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MissedSessionPolicy {
    /// Run only the latest missed session, as CronJob does.
    #[default]
    RunLatest,
    /// Run every missed session within `windowSeconds`.
    RunAll,
    /// Run none.
    Skip,
}

/// What the Schedule controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The latest session a Job was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// The latest session whose Job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,

    /// The next session, when the schedule is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,

    /// Jobs running now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ObjectReference>,

    /// How many Jobs run now (the length of `active`).
    #[serde(default)]
    pub active_count: i32,

    /// Sessions whose Job succeeded, since the Schedule was created.
    #[serde(default)]
    pub succeeded_sessions: i64,

    /// Sessions whose Job failed.
    #[serde(default)]
    pub failed_sessions: i64,

    /// Sessions whose Job was deleted before it finished (Replace, or by
    /// hand).
    #[serde(default)]
    pub killed_sessions: i64,

    /// Sessions that were due but not run: while suspended, past the
    /// starting deadline, forbidden by the concurrency policy, or skipped
    /// by the missed-session policy. Backfill them with a Backfill.
    #[serde(default)]
    pub missed_sessions: i64,

    /// The latest missed session, for a Backfill's `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_time: Option<Time>,

    /// Every session at or before this instant has been started or
    /// counted as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_through: Option<Time>,

    /// Jobs whose outcome is already in the counters but which still carry
    /// the operator's finalizer: a restart between the two writes must not
    /// count them again. Bounded by the Jobs finishing at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted_jobs: Vec<String>,

    /// Outcomes of this Schedule's own sessions kept here until they are
    /// written to their month's SessionLedger, oldest first: together with
    /// the SessionLedgers they are the session ledger. The operator writes
    /// them there in one request once `--ledger-batch` of them are here, a
    /// new month begins, or nothing runs and no session is due (suspended,
    /// past `endTime`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub unfiled_outcomes: Vec<UnfiledOutcome>,

    /// What the session ledger says of the recent sessions: how many
    /// succeeded, failed or are missing (no outcome and no Job). Missing
    /// and failed sessions are what a Backfill is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_sessions: Option<RecentSessions>,

    /// kstatus conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The outcome of one of the Schedule's own sessions, not yet in its
/// month's SessionLedger. Where a SessionLedger holds another attempt's
/// outcome of the session (a Backfill's, which runs a past session after
/// the Schedule did), that one is the latest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnfiledOutcome {
    /// The session.
    pub session: Time,
    pub outcome: SessionOutcome,
}

/// How a session's latest attempt ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SessionOutcome {
    Succeeded,
    Failed,
    /// Deleted before it finished.
    Killed,
}

/// The Schedule's sessions since `since` (the last 7 days, or since the
/// Schedule was created or its `startTime`), judged against the ledger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentSessions {
    pub since: Time,
    /// Sessions due since then.
    pub sessions: i64,
    pub succeeded: i64,
    /// Whose latest attempt failed or was killed.
    pub failed: i64,
    /// With no recorded outcome and no Job: never run.
    pub missing: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_missing: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missing: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed: Option<Time>,
}
