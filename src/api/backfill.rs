use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TimeRange;

/// The spec fields that select the sessions: fixed once a Backfill has
/// started, so its counters keep describing the plan they count.
pub const SELECTION_FIELDS: [&str; 10] = [
    "scheduleRef",
    "from",
    "to",
    "count",
    "sessions",
    "sessionSet",
    "filter",
    "order",
    "reprocess",
    "attemptName",
];

/// The CEL rule that keeps [`SELECTION_FIELDS`] unchanged once
/// `status.startedAt` is set. Spelled with `has()` rather than optional
/// field selection (`?.`), whose cost the API server over-estimates.
fn selection_fixed_once_started() -> String {
    let unchanged: Vec<String> = SELECTION_FIELDS
        .iter()
        .map(|f| {
            format!(
                "has(self.spec.{f}) == has(oldSelf.spec.{f}) && (!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f})"
            )
        })
        .collect();
    format!(
        "!has(oldSelf.status) || !has(oldSelf.status.startedAt) || ({})",
        unchanged.join(" && ")
    )
}

/// A request to run a set of past sessions of one Schedule again (or for
/// the first time), with its own attempt name, concurrency, execution
/// windows and counters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "backfill.dev",
    version = "v1alpha1",
    kind = "Backfill",
    namespaced,
    status = "BackfillStatus",
    shortname = "bf",
    category = "backfill-operator",
    derive = "PartialEq",
    doc = "Runs past sessions of a Schedule as Jobs, with a concurrency limit, execution windows and counters of what happened.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.scheduleRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".status.succeededCount"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failedCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(selection_fixed_once_started())
        .message("scheduleRef, from, to, count, sessions, sessionSet, filter, order, reprocess and attemptName cannot change once the backfill has started; create a new Backfill instead"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || !has(self.spec.dryRun) || !self.spec.dryRun || (has(oldSelf.spec.dryRun) && oldSelf.spec.dryRun)")
        .message("dryRun cannot be turned back on once the backfill has started; use suspend to pause it"),
    validation = Rule::new(super::NAME_FITS_A_LABEL).message(super::NAME_FITS_A_LABEL_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.from), has(self.sessions), has(self.sessionSet)].filter(x, x).size() == 1").message("choose the sessions with exactly one of: from (alone: every session up to the start; with to; or with count), sessions, sessionSet"))]
#[x_kube(validation = Rule::new("!(has(self.to) && has(self.count))").message("to and count cannot be used together: from with to, or from with count"))]
#[x_kube(validation = Rule::new("has(self.from) || !(has(self.to) || has(self.count))").message("to and count need from"))]
#[x_kube(validation = Rule::new("!has(self.from) || !has(self.to) || self.from < self.to").message("from must be earlier than to (from is inclusive, to exclusive)"))]
pub struct BackfillSpec {
    /// The Schedule whose sessions to run, in the same namespace. Its
    /// `schedule`, `timeZone` and `jobTemplate` define the sessions and the
    /// Jobs; it may be suspended.
    pub schedule_ref: ScheduleRef,

    /// First session to consider, inclusive (RFC 3339). Alone, every
    /// session from it up to the moment the backfill starts; or with `to`
    /// or `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Time>,

    /// End of the range, exclusive (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Time>,

    /// The first `count` sessions at or after `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub count: Option<i64>,

    /// An explicit list of session times (RFC 3339), each of which must be
    /// a session of the Schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub sessions: Option<Vec<Time>>,

    /// A compact set of sessions, written by the controller for reruns of
    /// large failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_set: Option<SessionSet>,

    /// Which of the selected sessions to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<SessionFilter>,

    /// The attempt name recorded on every Job. Default: the Backfill's
    /// name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("attemptName must be lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"))]
    pub attempt_name: Option<String>,

    /// Plan and estimate only: no Job is created. Turning it off starts
    /// the backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,

    /// How many Jobs may run at once. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_in_flight: Option<i32>,

    /// Oldest or newest session first. Default Oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SessionOrder>,

    /// Stop launching Jobs; running Jobs go on. Unset to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Delete running Jobs (their sessions count as killed) and launch
    /// nothing more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,

    /// Credits one session costs. Default: the Schedule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub credits_per_session: Option<f64>,

    /// When new Jobs may start. No windows: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_windows: Option<ExecutionWindows>,

    /// Which planned sessions to run, judged against the session ledger
    /// when the backfill starts. Default Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprocess: Option<Reprocess>,

    /// Set by the controller on rerun children: the parent's `status.runId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub parent_backfill_run_id: Option<String>,

    /// Stop launching once too many sessions failed: pause (or cancel)
    /// the backfill. Rerun children inherit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<FailureBudget>,

    /// Approves the cost estimate, when the Schedule's `approval` asks for
    /// it. Setting it is allowed only to holders of the RBAC verb
    /// `approve` on `backfills` in this namespace (the chart's admission
    /// policy checks it); `status.approval.approvedBy` names who did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
}

impl BackfillSpec {
    /// A spec of the Schedule `schedule` with every other field unset:
    /// the base a spec built in code starts from
    /// (`BackfillSpec { from, count, ..BackfillSpec::of(name) }`), naming
    /// only what it sets.
    pub fn of(schedule: impl Into<String>) -> Self {
        BackfillSpec {
            schedule_ref: ScheduleRef {
                name: schedule.into(),
            },
            from: None,
            to: None,
            count: None,
            sessions: None,
            session_set: None,
            filter: None,
            attempt_name: None,
            dry_run: None,
            max_in_flight: None,
            order: None,
            suspend: None,
            cancel: None,
            credits_per_session: None,
            execution_windows: None,
            reprocess: None,
            parent_backfill_run_id: None,
            failure_budget: None,
            approved: None,
        }
    }
}

/// How many failed sessions a run tolerates before it stops launching.
/// Failed and killed sessions both count, among the sessions launched
/// since the start or the last resume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxFailed) || has(self.maxFailedRatio)").message("failureBudget needs maxFailed, maxFailedRatio or both"))]
#[x_kube(validation = Rule::new("!has(self.minProcessed) || has(self.maxFailedRatio)").message("failureBudget.minProcessed goes with maxFailedRatio"))]
pub struct FailureBudget {
    /// The budget is spent when this many sessions have failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_failed: Option<i64>,
    /// The budget is spent when this fraction of the processed sessions
    /// have failed (more than 0, at most 1), judged once `minProcessed`
    /// sessions were processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("failureBudget.maxFailedRatio must be more than 0 and at most 1"))]
    pub max_failed_ratio: Option<f64>,
    /// Sessions processed before `maxFailedRatio` is judged. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_processed: Option<i64>,
    /// What happens when the budget is spent. Default Pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<FailureBudgetAction>,
}

/// What a spent failure budget does. Either way running Jobs finish and
/// are counted, and nothing new starts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailureBudgetAction {
    /// Phase `Paused` until the `backfill.dev/resume` annotation gets a
    /// new value; the budget then counts from the resume.
    #[default]
    Pause,
    /// Phase `Cancelled`, for good.
    Cancel,
}

/// The target Schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct ScheduleRef {
    /// Name of a Schedule in the Backfill's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A compact set of sessions of one cron schedule: bit `i` of `bitmap` set
/// means the `i`-th session of `schedule` in `timeZone` at or after `from`
/// (and before `to`) is in the set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from < self.to").message("sessionSet.from must be earlier than sessionSet.to"))]
pub struct SessionSet {
    /// The cron expression the bitmap indexes.
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,
    /// The zone of `schedule`.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// First indexed session, inclusive.
    pub from: Time,
    /// End of the indexed range, exclusive.
    pub to: Time,
    /// Number of sessions in the set.
    #[schemars(range(min = 1))]
    pub count: i64,
    /// Base64 of the bitmap, least significant bit first.
    #[schemars(length(min = 1, max = 1_048_576))]
    pub bitmap: String,
}

/// Which selected sessions to keep, judged in the Schedule's time zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionFilter {
    /// Keep only sessions on these local weekdays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days_of_week: Vec<Weekday>,
    /// Keep only sessions in these local hours (0-23).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24), inner(range(min = 0, max = 23)))]
    pub hours: Vec<i32>,
    /// Drop sessions inside these ranges (from inclusive, to exclusive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub exclude: Vec<TimeRange>,
}

/// A day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// Every weekday with its lower-case name, Monday first.
    pub const NAMED: [(&'static str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
}

/// Oldest or newest session first. Default Oldest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SessionOrder {
    /// The oldest session first.
    #[default]
    Oldest,
    /// The newest session first.
    Newest,
}

/// Which planned sessions a Backfill runs, judged against the session
/// ledger when it starts. Default Failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Reprocess {
    /// Only sessions with no recorded attempt.
    Missing,
    /// Those and the sessions whose last attempt failed or was killed.
    #[default]
    Failed,
    /// Every planned session.
    All,
}

/// Local times, per weekday, when new Jobs may start.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionWindows {
    /// IANA zone of the windows. Default: the Schedule's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z][A-Za-z0-9_+\\-]*(/[A-Za-z0-9_+\\-]+)*$')").message("timeZone must be an IANA time zone name such as Europe/Paris or UTC"))]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub monday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub tuesday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub wednesday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub thursday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub friday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub saturday: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub sunday: Vec<Window>,
}

/// A daily window of local time. An `end` earlier than `start` runs past
/// midnight into the next day; `end: "24:00"` means midnight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.start != self.end").message("a window's start and end must differ; for a whole day use start 00:00 and end 24:00"))]
pub struct Window {
    /// Local start time, HH:MM (24-hour clock).
    #[schemars(length(min = 5, max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("start must be a time of day as HH:MM, from 00:00 to 23:59"))]
    pub start: String,
    /// Local end time, HH:MM (24-hour clock), or 24:00.
    #[schemars(length(min = 5, max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$')").message("end must be a time of day as HH:MM, from 00:00 to 24:00"))]
    pub end: String,
}

/// Where a Backfill is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackfillPhase {
    /// Not planned yet.
    #[default]
    Pending,
    /// A dry run, planned: no Job is created.
    Planned,
    /// Launching and running Jobs.
    Running,
    /// Not launching for now: outside every execution window (see
    /// `nextWindowStart`), or the next session's attempt runs in another
    /// Job of the Schedule (the Ready condition names it).
    Waiting,
    /// Suspended, or its failure budget is spent (reason
    /// `FailureBudgetExhausted`).
    Paused,
    /// Every session ran and succeeded.
    Succeeded,
    /// Every session ran and at least one failed.
    Failed,
    /// Cancelled: running Jobs were killed, nothing more is launched; or
    /// its failure budget with `action: Cancel` is spent (running Jobs
    /// finish).
    Cancelled,
    /// Planned, and its cost estimate is above the Schedule's approval
    /// threshold: it starts once `spec.approved` is set.
    AwaitingApproval,
}

/// The cost estimate, in the seeds' terms.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    pub credits_per_entity: f64,
    pub total_credits_estimated: f64,
    pub total_entities: i64,
}

/// A readable summary of the plan, for dry runs and progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanPreview {
    /// The boundaries the plan used, in words (from inclusive, to
    /// exclusive, and where the plan was cut at its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundaries: Option<String>,
    /// The first sessions to run, in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<Time>,
    /// The last sessions to run, in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last: Vec<Time>,
    /// Planned sessions left out because the ledger already holds an
    /// outcome that `reprocess` does not rerun.
    #[serde(default)]
    pub skipped_by_reprocess: i64,
    /// Why they were skipped, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_reason: Option<String>,
    /// The failure budget, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<String>,
    /// Whether the run needs an approval of its cost, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// When the backfill would finish, given `maxInFlight`, the windows,
    /// the slots the Schedule's `maxActiveJobs` leaves it and the median
    /// duration of the Schedule's recent Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion: Option<Time>,
    /// The Schedule's `maxActiveJobs`, when it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_jobs: Option<i64>,
    /// Of `maxActiveJobs`, how many slots the live schedule is expected
    /// to take while this backfill runs (its scheduled runs that would
    /// be active at once); Backfills share the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_slots: Option<i64>,
}

/// A compact record of a set of sessions: a count, a readable preview and
/// the full set as a bitmap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub count: i64,
    /// The first few sessions of the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Time>,
    /// The whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<SessionSet>,
}

/// One rerun request carried out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerunRecord {
    /// The value of the `backfill.dev/rerun-failed` annotation.
    pub request: String,
    /// The child Backfill, absent when there was nothing to rerun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The child's run id, once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How many sessions the child reruns.
    pub sessions: i64,
    pub created_at: Time,
    /// Why no child was made, when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the Backfill controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A UUID assigned once, when the backfill starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackfillPhase>,
    /// `processedCount/totalEstimated`, for `kubectl get bf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Sessions this backfill will run.
    #[serde(default)]
    pub total_estimated: i64,
    /// Sessions finished: succeeded + failed + killed.
    #[serde(default)]
    pub processed_count: i64,
    #[serde(default)]
    pub succeeded_count: i64,
    #[serde(default)]
    pub failed_count: i64,
    /// Sessions whose Job was deleted before it finished.
    #[serde(default)]
    pub killed_count: i64,
    /// Jobs running now.
    #[serde(default)]
    pub running_count: i64,
    /// Planned sessions left out after the start: another Job of the
    /// Schedule ran them while this backfill waited for it, and
    /// `reprocess` does not run them again. They are no longer in
    /// `totalEstimated`.
    #[serde(default)]
    pub skipped_count: i64,
    /// Sessions this backfill would start now but for its Schedule's
    /// `maxActiveJobs`: the live schedule and the other Backfills take
    /// those slots (see the Ready condition, reason `WaitingForCapacity`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waiting_for_capacity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// The `backfill.dev/created-by` annotation, else the field manager
    /// that created the Backfill; at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub created_by: Option<String>,
    /// What stopped the backfill, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_estimate: Option<CostEstimate>,
    /// The UID of the Schedule the run used (the seed's
    /// `target_workflow_id`), set at the start: a Schedule deleted and
    /// made again under the same name has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub schedule_uid: Option<String>,
    /// The plan ends here: the moment the backfill started (sessions at or
    /// after it are the Schedule's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PlanPreview>,
    /// When the next execution window opens, while `Waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_start: Option<Time>,
    /// The sessions whose Job failed or was killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_sessions: Option<SessionSummary>,
    /// Rerun children made from this backfill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<RerunRecord>,
    /// The frozen plan and how far the run got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunState>,
    /// Where the failure budget stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<FailureBudgetStatus>,
    /// The approval of the cost, when the Schedule asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where the failure budget stands. The counts come from the run's
/// bitmaps, over the sessions launched from `countedFrom` on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureBudgetStatus {
    /// The plan index from which sessions count: 0 at the start, the
    /// number launched at each resume.
    #[serde(default)]
    pub counted_from: i64,
    /// Sessions counted that failed or were killed.
    #[serde(default)]
    pub failed: i64,
    /// Sessions counted that were processed.
    #[serde(default)]
    pub processed: i64,
    /// When the budget was spent, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted_at: Option<Time>,
    /// The value of `backfill.dev/resume` already acted on (or present
    /// when the budget was spent): only a new value resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub resume_request: Option<String>,
    /// How many times the run was resumed after the budget was spent.
    #[serde(default)]
    pub resumes: i64,
}

/// The approval of a Backfill's cost.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// The Schedule's `approval.requiredAboveCredits` when it was judged.
    pub required_above_credits: f64,
    /// The credits the approval was judged on: the estimate, at the
    /// Schedule's `creditsPerSession` if the Backfill's own is lower.
    pub credits: f64,
    /// Who set `spec.approved`, as the API server authenticated them (the
    /// `backfill.dev/approved-by` annotation the chart's policy stamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub approved_by: Option<String>,
    /// When the operator saw the approval and started the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// A digest of the selection that was approved (the selection fields
    /// and `creditsPerSession`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub selection: Option<String>,
}

/// The plan as frozen when the backfill started, and its progress, in
/// constant space: bitmaps over plan indexes (positions in run order).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    /// The Schedule's cron expression at the start: the plan stays the
    /// same when the Schedule changes.
    #[schemars(length(max = 256))]
    pub schedule: String,
    /// The Schedule's zone at the start.
    #[schemars(length(max = 64))]
    pub time_zone: String,
    /// The plan's first session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Time>,
    /// Just after the plan's last session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Time>,
    /// Sessions launched, in run order.
    #[serde(default)]
    pub launched: i64,
    /// The next session to launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_session: Option<Time>,
    /// With `selected` or a `sessionSet`: the position of `nextSession`
    /// among the Schedule's sessions from `from`, where the next launch
    /// resumes its walk of the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_slot: Option<i64>,
    /// When `reprocess` left planned sessions out: base64 bitmap over the
    /// sessions of `schedule` from `from` to `to` of the ones that run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1_048_576))]
    pub selected: String,
    /// Base64 bitmap of the plan indexes whose outcome is counted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1_048_576))]
    pub done: String,
    /// Base64 bitmap of the plan indexes whose Job failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1_048_576))]
    pub failed: String,
    /// Base64 bitmap of the plan indexes whose Job was killed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1_048_576))]
    pub killed: String,
    /// Base64 bitmap of the plan indexes left out after the start
    /// (`skippedCount`); they are in `done` too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1_048_576))]
    pub skipped: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
