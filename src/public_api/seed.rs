//! The two seeds' wire shapes, field by field, and the pure mappings
//! between them and the Backfill objects: the NeoAgent backfill
//! (snake_case, `/public-api/backfills`) and the workflow schedule's
//! attempts (camelCase, `/api/schedules/{id}/backfill`). The kubectl
//! plugin prints the same attempt shape (`kubectl backfill sessions -o
//! json`), from the same function.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::{
    ANNOTATION_CREATED_BY, Backfill, BackfillSpec, ExecutionWindows, Reprocess, ScheduleRef,
    SessionFilter, TimeRange, Weekday, Window,
};
use crate::core::backfill::run_id;
use crate::core::job::session_uuid;
use crate::core::sessions::{AttemptStatus, SessionList, SessionRow};
use crate::core::zoned_cron::{ZonedCron, rfc3339_utc, seconds};

// ---------------------------------------------------------------------
// NeoAgent: /public-api/backfills
// ---------------------------------------------------------------------

/// A daily window in the NeoAgent seed's words: local `HH:MM` times.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunWindow {
    /// Local start, HH:MM.
    #[schema(example = "22:00")]
    pub run_start_time: String,
    /// Local end, HH:MM (or 24:00); earlier than the start: past midnight.
    #[schema(example = "06:00")]
    pub run_end_time: String,
}

/// The windows of each weekday in which new Jobs may start; every day
/// empty: at any time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DailyExecutionWindows {
    #[serde(default)]
    pub monday: Vec<RunWindow>,
    #[serde(default)]
    pub tuesday: Vec<RunWindow>,
    #[serde(default)]
    pub wednesday: Vec<RunWindow>,
    #[serde(default)]
    pub thursday: Vec<RunWindow>,
    #[serde(default)]
    pub friday: Vec<RunWindow>,
    #[serde(default)]
    pub saturday: Vec<RunWindow>,
    #[serde(default)]
    pub sunday: Vec<RunWindow>,
}

/// A time range of the filter: `from` inclusive, `to` exclusive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExcludedRange {
    #[schema(example = "2026-01-01T00:00:00Z")]
    pub from: String,
    #[schema(example = "2026-01-02T00:00:00Z")]
    pub to: String,
}

/// Which sessions to keep (the seed's `filter_spec`), judged in the
/// Schedule's time zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Keep only sessions on these weekdays (`monday` … `sunday`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days_of_week: Vec<String>,
    /// Keep only sessions in these local hours (0-23).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<i32>,
    /// Drop sessions in these ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<ExcludedRange>,
}

/// A Backfill in the NeoAgent seed's fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct BackfillRun {
    /// The Backfill's run id (`status.runId`, derived from its UID).
    pub id: String,
    /// Where it lives: `namespace/name` (also accepted as an id).
    pub name: String,
    pub created_at: Option<String>,
    /// Who asked for it, as the API server (or this API) authenticated them.
    pub created_by: Option<String>,
    pub daily_execution_windows: DailyExecutionWindows,
    /// What stopped the backfill, if anything did.
    pub error: Option<String>,
    pub failed_count: i64,
    pub filter_spec: FilterSpec,
    pub max_in_flight: i32,
    pub processed_count: i64,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub succeeded_count: i64,
    /// The Schedule's UID (a string: Kubernetes UIDs are not numbers).
    pub target_workflow_id: Option<String>,
    /// The Schedule's name.
    pub target_workflow_name: String,
    /// The zone of `daily_execution_windows`.
    pub timezone: String,
    pub total_estimated: i64,
    /// The parent's run id, on rerun children.
    pub parent_backfill_run_id: Option<String>,
    /// The Backfill's phase: Pending, Planned, Running, Waiting, Paused,
    /// Succeeded, Failed or Cancelled.
    pub phase: String,
}

/// The seed's cost estimate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct CostEstimateView {
    pub credits_per_entity: f64,
    pub total_credits_estimated: f64,
    pub total_entities: i64,
}

/// `data` of a backfill response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct BackfillData {
    pub backfill: BackfillRun,
    pub cost_estimate: CostEstimateView,
}

/// `meta.pagination`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
pub struct Pagination {
    pub has_more: bool,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// `meta` of every `/public-api` response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
pub struct Meta {
    #[schema(example = "3c90c3cc-0d44-4b50-8888-8dd25736052a")]
    pub request_id: String,
    /// Milliseconds spent, by step (`total`, `kubernetes`).
    pub timings_ms: BTreeMap<String, u64>,
    pub pagination: Pagination,
    pub warnings: Vec<String>,
}

/// A response about one Backfill.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct BackfillResponse {
    pub data: BackfillData,
    pub meta: Meta,
}

/// A page of Backfills.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct BackfillListResponse {
    pub data: Vec<BackfillData>,
    pub meta: Meta,
}

/// A rerun request recorded but not carried out yet (202).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct PendingRerun {
    /// The value of the parent's `backfill.dev/rerun-failed` annotation.
    pub rerun_request: String,
    pub parent_backfill_run_id: String,
    pub message: String,
}

/// `data` of a 202 answer to a rerun.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct PendingRerunResponse {
    pub data: PendingRerun,
    pub meta: Meta,
}

/// The body of `POST /public-api/backfills`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackfillRequest {
    /// The namespace of the Schedule and of the new Backfill.
    pub namespace: String,
    /// The Backfill's name; default: derived from the `Idempotency-Key`
    /// header, else generated.
    #[serde(default)]
    pub name: Option<String>,
    /// The Schedule's name (or give `target_workflow_id`).
    #[serde(default)]
    pub target_workflow_name: Option<String>,
    /// The Schedule's UID or `namespace/name`.
    #[serde(default)]
    pub target_workflow_id: Option<String>,
    /// First session, inclusive (RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339).
    #[serde(default)]
    pub to: Option<String>,
    /// The first `count` sessions at or after `from`.
    #[serde(default)]
    pub count: Option<i64>,
    /// Explicit session times (RFC 3339).
    #[serde(default)]
    pub sessions: Option<Vec<String>>,
    #[serde(default)]
    pub daily_execution_windows: Option<DailyExecutionWindows>,
    /// The zone of the windows (default: the Schedule's).
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub max_in_flight: Option<i32>,
    #[serde(default)]
    pub filter_spec: Option<FilterSpec>,
    #[serde(default)]
    pub attempt_name: Option<String>,
    /// Plan and estimate only.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Missing, Failed (default) or All.
    #[serde(default)]
    pub reprocess: Option<String>,
    #[serde(default)]
    pub credits_per_entity: Option<f64>,
}

/// A request field that cannot be turned into a Backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An RFC 3339 instant, or the field's error.
pub fn instant(
    field: &str,
    text: &str,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time, FieldError> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
        .map_err(|e| {
            FieldError::new(
                field,
                format!("{text:?} is not an RFC 3339 instant such as 2026-01-01T00:00:00Z: {e}"),
            )
        })
}

const WEEKDAYS: [(&str, Weekday); 7] = Weekday::NAMED;

fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, d)| *d == day)
        .map_or("monday", |(n, _)| n)
}

/// The spec of a new Backfill from the seed's body (the Schedule's name
/// resolved by the caller). Only what the types cannot say is checked
/// here; the API server's admission (the CRD's OpenAPI and CEL rules)
/// judges the rest.
pub fn spec_of_request(
    body: &CreateBackfillRequest,
    schedule: &str,
) -> Result<BackfillSpec, FieldError> {
    let time =
        |field: &str, v: &Option<String>| v.as_deref().map(|t| instant(field, t)).transpose();
    let sessions = match &body.sessions {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, t)| instant(&format!("sessions[{i}]"), t))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let filter = match &body.filter_spec {
        Some(f) => Some(SessionFilter {
            days_of_week: f
                .days_of_week
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let lower = d.trim().to_ascii_lowercase();
                    WEEKDAYS
                        .iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, day)| *day)
                        .ok_or_else(|| {
                            FieldError::new(
                                format!("filter_spec.days_of_week[{i}]"),
                                format!("{d:?} is not a weekday (monday … sunday)"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            hours: f.hours.clone(),
            exclude: f
                .exclude
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Ok(TimeRange {
                        from: instant(&format!("filter_spec.exclude[{i}].from"), &r.from)?,
                        to: instant(&format!("filter_spec.exclude[{i}].to"), &r.to)?,
                    })
                })
                .collect::<Result<_, FieldError>>()?,
        }),
        None => None,
    };
    let reprocess = match body.reprocess.as_deref().map(str::trim) {
        None => None,
        Some(r) if r.eq_ignore_ascii_case("missing") => Some(Reprocess::Missing),
        Some(r) if r.eq_ignore_ascii_case("failed") => Some(Reprocess::Failed),
        Some(r) if r.eq_ignore_ascii_case("all") => Some(Reprocess::All),
        Some(r) => {
            return Err(FieldError::new(
                "reprocess",
                format!("{r:?} is not one of Missing, Failed, All"),
            ));
        }
    };
    let execution_windows = match (&body.daily_execution_windows, &body.timezone) {
        (None, None) => None,
        (windows, zone) => {
            let w = windows.clone().unwrap_or_default();
            let day = |list: &[RunWindow]| {
                list.iter()
                    .map(|r| Window {
                        start: r.run_start_time.clone(),
                        end: r.run_end_time.clone(),
                    })
                    .collect()
            };
            Some(ExecutionWindows {
                time_zone: zone.clone(),
                monday: day(&w.monday),
                tuesday: day(&w.tuesday),
                wednesday: day(&w.wednesday),
                thursday: day(&w.thursday),
                friday: day(&w.friday),
                saturday: day(&w.saturday),
                sunday: day(&w.sunday),
            })
        }
    };
    Ok(BackfillSpec {
        schedule_ref: ScheduleRef {
            name: schedule.to_string(),
        },
        from: time("from", &body.from)?,
        to: time("to", &body.to)?,
        count: body.count,
        sessions,
        session_set: None,
        filter,
        attempt_name: body.attempt_name.clone(),
        dry_run: body.dry_run,
        max_in_flight: body.max_in_flight,
        order: None,
        suspend: None,
        cancel: None,
        credits_per_session: body.credits_per_entity,
        execution_windows,
        reprocess,
        parent_backfill_run_id: None,
        failure_budget: None,
        approved: None,
    })
}

/// A Backfill in the seed's fields. `schedule_zone` is its Schedule's
/// zone when known (the windows' default zone).
pub fn backfill_view(backfill: &Backfill, schedule_zone: Option<&str>) -> BackfillData {
    let status = backfill.status.clone().unwrap_or_default();
    let spec = &backfill.spec;
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| rfc3339_utc(seconds(t)))
    };
    let windows = spec.execution_windows.clone().unwrap_or_default();
    let day = |list: &[Window]| -> Vec<RunWindow> {
        list.iter()
            .map(|w| RunWindow {
                run_start_time: w.start.clone(),
                run_end_time: w.end.clone(),
            })
            .collect()
    };
    let timezone = windows
        .time_zone
        .clone()
        .or_else(|| status.run.as_ref().map(|r| r.time_zone.clone()))
        .or_else(|| schedule_zone.map(str::to_string))
        .unwrap_or_else(|| "UTC".to_string());
    let filter = spec.filter.clone().unwrap_or_default();
    let uid = backfill.metadata.uid.clone().unwrap_or_default();
    let created_by = status.created_by.clone().or_else(|| {
        backfill
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_CREATED_BY))
            .cloned()
    });
    let cost = status.cost_estimate.clone();
    BackfillData {
        backfill: BackfillRun {
            id: status.run_id.clone().unwrap_or_else(|| run_id(&uid)),
            name: format!(
                "{}/{}",
                backfill.metadata.namespace.as_deref().unwrap_or_default(),
                backfill.metadata.name.as_deref().unwrap_or_default()
            ),
            created_at: time(&backfill.metadata.creation_timestamp),
            created_by,
            daily_execution_windows: DailyExecutionWindows {
                monday: day(&windows.monday),
                tuesday: day(&windows.tuesday),
                wednesday: day(&windows.wednesday),
                thursday: day(&windows.thursday),
                friday: day(&windows.friday),
                saturday: day(&windows.saturday),
                sunday: day(&windows.sunday),
            },
            error: status.error.clone(),
            failed_count: status.failed_count,
            filter_spec: FilterSpec {
                days_of_week: filter
                    .days_of_week
                    .iter()
                    .map(|d| weekday_name(*d).to_string())
                    .collect(),
                hours: filter.hours.clone(),
                exclude: filter
                    .exclude
                    .iter()
                    .map(|r| ExcludedRange {
                        from: rfc3339_utc(seconds(&r.from)),
                        to: rfc3339_utc(seconds(&r.to)),
                    })
                    .collect(),
            },
            max_in_flight: spec.max_in_flight.unwrap_or(1),
            processed_count: status.processed_count,
            started_at: time(&status.started_at),
            completed_at: time(&status.completed_at),
            succeeded_count: status.succeeded_count,
            target_workflow_id: status.schedule_uid.clone(),
            target_workflow_name: spec.schedule_ref.name.clone(),
            timezone,
            total_estimated: status.total_estimated,
            parent_backfill_run_id: spec.parent_backfill_run_id.clone(),
            phase: format!("{:?}", status.phase.unwrap_or_default()),
        },
        cost_estimate: match cost {
            Some(c) => CostEstimateView {
                credits_per_entity: c.credits_per_entity,
                total_credits_estimated: c.total_credits_estimated,
                total_entities: c.total_entities,
            },
            None => CostEstimateView {
                credits_per_entity: 0.0,
                total_credits_estimated: 0.0,
                total_entities: status.total_estimated,
            },
        },
    }
}

/// The warnings a view of `backfill` carries.
pub fn backfill_warnings(backfill: &Backfill) -> Vec<String> {
    let status = backfill.status.as_ref();
    let mut out = Vec::new();
    if status.and_then(|s| s.cost_estimate.as_ref()).is_none() {
        out.push(
            "no cost estimate yet: the operator has not planned this backfill (or neither it nor its Schedule sets creditsPerSession)"
                .to_string(),
        );
    }
    out
}

// ---------------------------------------------------------------------
// Workflow: /api/schedules/{id}/backfill
// ---------------------------------------------------------------------

/// The body of `POST /api/schedules/{id}/backfill`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleBackfillRequest {
    /// The attempt name, also the Backfill's name.
    #[schema(example = "fix-2026-01")]
    pub attempt_name: String,
    /// Run this many sessions from `fromTime`; absent: every session from
    /// `fromTime` up to now.
    #[serde(default)]
    pub count: Option<i64>,
    /// Plan only: answer with the sessions, create nothing.
    pub dry_run: bool,
    /// The first session, inclusive (RFC 3339).
    #[schema(example = "2023-08-18T06:52:33Z")]
    pub from_time: String,
}

/// Name and ID.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct NameAndId {
    pub name: String,
    pub id: String,
}

/// One attempt in the workflow seed's fields (plus `attemptName`, `job`
/// and `owner`, which are ours).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedAttempt {
    /// The attempt's ID: its Job's UID while the Job exists, else a UUID
    /// of the session and the attempt name.
    pub id: Option<String>,
    /// The session's position in its Backfill's plan.
    pub index: Option<u64>,
    /// The namespace.
    pub project: NameAndId,
    /// The Schedule.
    pub workflow: NameAndId,
    /// The session's Unix seconds.
    pub session_id: String,
    pub session_uuid: String,
    /// In the Schedule's zone.
    pub session_time: String,
    pub retry_attempt_name: Option<String>,
    pub done: bool,
    pub success: bool,
    pub cancel_requested: bool,
    /// Passed parameters (none: a Job's parameters are its template).
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
    /// queued, running, canceling, success, error or killed (`missing`:
    /// a session with no attempt, only in listings).
    pub status: String,
    pub attempt_name: Option<String>,
    pub job: Option<String>,
    pub owner: Option<String>,
}

/// The answer of `POST /api/schedules/{id}/backfill`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleBackfillResponse {
    /// The Schedule's UID.
    pub id: String,
    pub workflow: NameAndId,
    pub time_zone: String,
    pub attempts: Vec<SeedAttempt>,
}

/// A Schedule's session listing and the namespace it is in (the seed's
/// `project`).
pub struct Listing<'a> {
    pub list: &'a SessionList,
    pub namespace: &'a str,
}

/// One listed session as a seed attempt.
pub fn attempt_of_row(listing: &Listing<'_>, row: &SessionRow) -> SeedAttempt {
    let list = listing.list;
    let a = row.attempt.as_ref();
    let time = |t: Option<i64>| t.map(rfc3339_utc);
    SeedAttempt {
        id: row.attempt_id(),
        index: a.and_then(|a| a.plan_index),
        project: NameAndId {
            name: listing.namespace.to_string(),
            id: listing.namespace.to_string(),
        },
        workflow: NameAndId {
            name: list.schedule.clone(),
            id: list.schedule_uid.clone(),
        },
        session_id: row.at.to_string(),
        session_uuid: row.uuid.to_string(),
        session_time: list.clock.zone().rfc3339(row.at),
        retry_attempt_name: a
            .filter(|a| a.is_retry(&list.schedule))
            .map(|a| a.name.clone()),
        done: row.status.done(),
        success: row.status == AttemptStatus::Success,
        cancel_requested: a.is_some_and(|a| a.cancel_requested),
        params: Map::new(),
        created_at: time(a.and_then(|a| a.created)),
        finished_at: time(a.and_then(|a| a.finished)),
        status: row.status.as_str().to_string(),
        attempt_name: a.map(|a| a.name.clone()),
        job: a.and_then(|a| a.job.clone()),
        owner: a.and_then(|a| a.owner.as_ref()).map(ToString::to_string),
    }
}

/// A listing as the workflow seed's response.
pub fn listing_response(listing: &Listing<'_>) -> ScheduleBackfillResponse {
    let list = listing.list;
    ScheduleBackfillResponse {
        id: list.schedule_uid.clone(),
        workflow: NameAndId {
            name: list.schedule.clone(),
            id: list.schedule_uid.clone(),
        },
        time_zone: list.clock.zone().name().to_string(),
        attempts: list
            .rows
            .iter()
            .map(|row| attempt_of_row(listing, row))
            .collect(),
    }
}

/// What a planned attempt is made of.
pub struct Planned<'a> {
    pub namespace: &'a str,
    pub schedule: &'a str,
    pub schedule_uid: &'a str,
    pub clock: &'a ZonedCron,
    pub attempt_name: &'a str,
    /// The Backfill that runs them, when one was created.
    pub backfill: Option<&'a str>,
    /// When it was created (a dry run: now).
    pub created_at: i64,
}

/// The attempts a Backfill is to make, one per planned session (in run
/// order), each `queued`; `index` is the session's position in the plan.
pub fn planned_attempts(p: &Planned<'_>, sessions: &[i64]) -> Vec<SeedAttempt> {
    sessions
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let uuid = session_uuid(p.schedule_uid, at);
            SeedAttempt {
                // The id a listing gives the attempt before its Job exists.
                id: Some(
                    uuid::Uuid::new_v5(&uuid, format!("attempt/{}", p.attempt_name).as_bytes())
                        .to_string(),
                ),
                index: Some(i as u64),
                project: NameAndId {
                    name: p.namespace.to_string(),
                    id: p.namespace.to_string(),
                },
                workflow: NameAndId {
                    name: p.schedule.to_string(),
                    id: p.schedule_uid.to_string(),
                },
                session_id: at.to_string(),
                session_uuid: uuid.to_string(),
                session_time: p.clock.zone().rfc3339(at),
                retry_attempt_name: Some(p.attempt_name.to_string()),
                done: false,
                success: false,
                cancel_requested: false,
                params: Map::new(),
                created_at: Some(rfc3339_utc(p.created_at)),
                finished_at: None,
                status: AttemptStatus::Queued.as_str().to_string(),
                attempt_name: Some(p.attempt_name.to_string()),
                job: None,
                owner: p.backfill.map(|b| format!("Backfill/{b}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackfillStatus, CostEstimate};
    use crate::core::zoned_cron::{at, time};
    use serde_json::json;

    fn request(body: Value) -> CreateBackfillRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_seed_body_becomes_a_spec() {
        let body = request(json!({
            "namespace": "team-a",
            "target_workflow_name": "hourly",
            "from": "2026-01-01T00:00:00+01:00",
            "count": 3,
            "max_in_flight": 2,
            "timezone": "Europe/Paris",
            "daily_execution_windows": {"monday": [{"run_start_time": "22:00", "run_end_time": "06:00"}]},
            "filter_spec": {"days_of_week": ["Monday", "friday"], "hours": [1, 2]},
            "reprocess": "all",
            "credits_per_entity": 1.5,
        }));
        let spec = spec_of_request(&body, "hourly").unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v,
            json!({
                "scheduleRef": {"name": "hourly"},
                "from": "2025-12-31T23:00:00Z",
                "count": 3,
                "maxInFlight": 2,
                "executionWindows": {"timeZone": "Europe/Paris", "monday": [{"start": "22:00", "end": "06:00"}]},
                "filter": {"daysOfWeek": ["Monday", "Friday"], "hours": [1, 2]},
                "reprocess": "All",
                "creditsPerSession": 1.5,
            })
        );
    }

    #[test]
    fn a_bad_field_is_named() {
        let bad = |body: Value| spec_of_request(&request(body), "h").unwrap_err();
        let e = bad(json!({"namespace": "a", "from": "yesterday"}));
        assert_eq!(e.field, "from");
        assert!(e.reason.contains("RFC 3339"), "{}", e.reason);
        let e = bad(json!({"namespace": "a", "sessions": ["2026-01-01T00:00:00Z", "x"]}));
        assert_eq!(e.field, "sessions[1]");
        let e = bad(json!({"namespace": "a", "filter_spec": {"days_of_week": ["funday"]}}));
        assert_eq!(e.field, "filter_spec.days_of_week[0]");
        let e = bad(json!({"namespace": "a", "reprocess": "some"}));
        assert_eq!(e.field, "reprocess");
        assert!(
            serde_json::from_value::<CreateBackfillRequest>(json!({"namespace": "a", "nope": 1}))
                .is_err()
        );
    }

    fn backfill() -> Backfill {
        let spec = spec_of_request(
            &request(json!({
                "namespace": "team-a",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "daily_execution_windows": {"friday": [{"run_start_time": "01:00", "run_end_time": "02:00"}]},
                "filter_spec": {"hours": [3]},
            })),
            "hourly",
        )
        .unwrap();
        let mut bf = Backfill::new("jan", spec);
        bf.metadata.namespace = Some("team-a".into());
        bf.metadata.uid = Some("6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f".into());
        bf.metadata.creation_timestamp = Some(time(at("2026-02-01T00:00:00Z")));
        bf
    }

    #[test]
    fn a_backfill_reads_in_the_seeds_fields() {
        let mut bf = backfill();
        let unplanned = backfill_view(&bf, Some("Europe/Paris"));
        assert_eq!(
            unplanned.backfill.id,
            run_id("6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f")
        );
        assert_eq!(unplanned.backfill.timezone, "Europe/Paris");
        assert_eq!(unplanned.backfill.phase, "Pending");
        assert_eq!(unplanned.cost_estimate.total_credits_estimated, 0.0);
        assert_eq!(backfill_warnings(&bf).len(), 1);
        bf.status = Some(BackfillStatus {
            run_id: Some("r-1".into()),
            total_estimated: 24,
            processed_count: 3,
            succeeded_count: 2,
            failed_count: 1,
            created_by: Some("alice".into()),
            schedule_uid: Some("s-uid".into()),
            started_at: Some(time(at("2026-02-01T00:00:01Z"))),
            cost_estimate: Some(CostEstimate {
                credits_per_entity: 2.0,
                total_credits_estimated: 48.0,
                total_entities: 24,
            }),
            ..BackfillStatus::default()
        });
        let v = serde_json::to_value(backfill_view(&bf, None)).unwrap();
        assert_eq!(
            v,
            json!({
                "backfill": {
                    "id": "r-1",
                    "name": "team-a/jan",
                    "created_at": "2026-02-01T00:00:00Z",
                    "created_by": "alice",
                    "daily_execution_windows": {
                        "monday": [], "tuesday": [], "wednesday": [], "thursday": [],
                        "friday": [{"run_start_time": "01:00", "run_end_time": "02:00"}],
                        "saturday": [], "sunday": [],
                    },
                    "error": null,
                    "failed_count": 1,
                    "filter_spec": {"hours": [3]},
                    "max_in_flight": 1,
                    "processed_count": 3,
                    "started_at": "2026-02-01T00:00:01Z",
                    "completed_at": null,
                    "succeeded_count": 2,
                    "target_workflow_id": "s-uid",
                    "target_workflow_name": "hourly",
                    "timezone": "UTC",
                    "total_estimated": 24,
                    "parent_backfill_run_id": null,
                    "phase": "Pending",
                },
                "cost_estimate": {"credits_per_entity": 2.0, "total_credits_estimated": 48.0, "total_entities": 24},
            })
        );
        assert!(backfill_warnings(&bf).is_empty());
    }

    #[test]
    fn planned_attempts_are_queued_with_the_listing_ids() {
        let clock = ZonedCron::new("0 * * * *", Some("Europe/Paris")).unwrap();
        let first = at("2026-01-01T00:00:00Z");
        let attempts = planned_attempts(
            &Planned {
                namespace: "team-a",
                schedule: "hourly",
                schedule_uid: "6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",
                clock: &clock,
                attempt_name: "fix",
                backfill: Some("fix"),
                created_at: first,
            },
            &[first, first + 3600],
        );
        let a = serde_json::to_value(&attempts[1]).unwrap();
        assert_eq!(a["index"], 1);
        assert_eq!(a["status"], "queued");
        assert_eq!(a["sessionTime"], "2026-01-01T02:00:00+01:00");
        assert_eq!(a["sessionId"], (first + 3600).to_string());
        assert_eq!(a["retryAttemptName"], "fix");
        assert_eq!(a["project"], json!({"name": "team-a", "id": "team-a"}));
        assert_eq!(a["params"], json!({}));
        let uuid = session_uuid("6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f", first + 3600);
        assert_eq!(a["sessionUuid"], uuid.to_string());
        // The same id as a listing gives a planned attempt without a Job.
        let expected = uuid::Uuid::new_v5(&uuid, b"attempt/fix").to_string();
        assert_eq!(a["id"], expected);
    }
}
