//! The handlers: each authenticates the caller, authorises what the call
//! does, reads or writes Backfills as `kubectl backfill` does, and
//! answers in the seed's shape. The shapes are `seed`'s pure functions.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::auth::{Access, User, bearer_token};
use super::error::{ApiError, ErrorBody};
use super::seed::{
    self, BackfillListResponse, BackfillResponse, CreateBackfillRequest, Meta, Pagination,
    PendingRerun, PendingRerunResponse, Planned, ScheduleBackfillRequest, ScheduleBackfillResponse,
};
use super::{ApiState, MAX_ATTEMPTS, MAX_BODY_BYTES, MAX_PAGE, PeerAddr};
use crate::api::{
    ANNOTATION_CREATED_BY, ANNOTATION_RERUN_FAILED, ANNOTATION_RERUN_REQUESTED_BY, Backfill,
    BackfillSpec, Reprocess, Schedule,
};
use crate::core::Plan;
use crate::core::backfill::rerun::refusal;
use crate::core::backfill::run_id;
use crate::core::job::short_hash;
use crate::core::plan::MAX_SESSIONS;
use crate::core::sessions::{AttemptStatus, Owner, SessionsInput, list_sessions};
use crate::plugin::drive::{new_request, request_outcome, wait_for};
use crate::plugin::sessions::read_schedule;

/// The field manager of the API's writes.
pub const FIELD_MANAGER: &str = "backfill-public-api";
/// The header that makes a create or a rerun idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest `Idempotency-Key` taken.
const MAX_KEY: usize = 128;

/// One call under way: who made it, since when, under which id.
pub struct Call {
    pub request_id: String,
    pub started: Instant,
    pub user: User,
}

impl Call {
    fn meta(&self, warnings: Vec<String>, pagination: Pagination) -> Meta {
        Meta {
            request_id: self.request_id.clone(),
            timings_ms: BTreeMap::from([(
                "total".to_string(),
                self.started.elapsed().as_millis() as u64,
            )]),
            pagination,
            warnings,
        }
    }
}

/// Runs `f` for an authenticated caller within the rate limit; any
/// refusal becomes its JSON error with the request's id.
async fn handle<F, Fut>(
    operation: &'static str,
    state: &ApiState,
    peer: SocketAddr,
    headers: &HeaderMap,
    f: F,
) -> Response
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let result = async {
        state
            .limiter
            .take(peer.ip(), started)
            .map_err(ApiError::too_many)?;
        let token = bearer_token(headers)?;
        let user = state.reviews.authenticate(&state.client, token).await?;
        f(Call {
            request_id: request_id.clone(),
            started,
            user,
        })
        .await
    }
    .await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(request_id, error = %e.message, "public API call failed");
            }
            e.with_request_id(&request_id).into_response()
        }
    };
    let code = response.status().as_u16();
    tracing::debug!(
        request_id,
        operation,
        code,
        ms = started.elapsed().as_millis() as u64,
        "public API call"
    );
    state.metrics.api_called(operation, code, started.elapsed());
    response
}

/// A JSON body, or a 400 naming the field (413 when too large).
fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(format!("the request body cannot be read: {e}"))
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_field("body", inner.to_string())
        } else {
            ApiError::bad_field(path, inner.to_string())
        }
    })
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_field("Idempotency-Key", "must be text"))?
        .trim();
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(ApiError::bad_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY} characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

/// A Kubernetes error with no field of the request to name.
fn kube_error(e: kube::Error) -> ApiError {
    ApiError::from_kube(e, &|_| None)
}

/// Refuses a namespace the operator does not watch (its RBAC may stop
/// there): empty, every namespace, when it watches all.
fn watched(state: &ApiState, ns: &str) -> Result<(), ApiError> {
    if state.namespaces.is_empty() || state.namespaces.iter().any(|n| n == ns) {
        return Ok(());
    }
    Err(ApiError::bad_field(
        "namespace",
        if ns.is_empty() {
            format!(
                "is required: this operator watches only {}",
                state.namespaces.join(", ")
            )
        } else {
            format!(
                "{ns:?} is not watched by this operator (it watches {})",
                state.namespaces.join(", ")
            )
        },
    ))
}

/// Where an id points: `namespace/name`, or a run id / UID to look up.
enum Id {
    Named { namespace: String, name: String },
    Opaque(String),
}

fn parse_id(id: &str) -> Result<Id, ApiError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ApiError::not_found("an empty id"));
    }
    match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Id::Named {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        Some(_) => Err(ApiError::not_found(format!(
            "{id:?} is neither namespace/name nor an id"
        ))),
        None => Ok(Id::Opaque(id.to_string())),
    }
}

/// Objects of kind `K` in the watched namespaces (or all).
async fn list_watched<K>(state: &ApiState) -> Result<Vec<K>, ApiError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if state.namespaces.is_empty() {
        return Ok(Api::<K>::all(state.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(kube_error)?
            .items);
    }
    let mut all = Vec::new();
    for ns in &state.namespaces {
        all.extend(
            Api::<K>::namespaced(state.client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(kube_error)?
                .items,
        );
    }
    Ok(all)
}

/// The Backfill an id names, once `user` may `verb` it.
async fn resolve_backfill(
    state: &ApiState,
    user: &User,
    id: &str,
    verb: &'static str,
) -> Result<Backfill, ApiError> {
    let not_found = || ApiError::not_found(format!("no backfill with id {id:?}"));
    match parse_id(id)? {
        Id::Named { namespace, name } => {
            if watched(state, &namespace).is_err() {
                return Err(not_found());
            }
            state
                .reviews
                .authorize(
                    &state.client,
                    user,
                    &Access::backfills(verb, &namespace, Some(&name)),
                )
                .await?;
            match Api::<Backfill>::namespaced(state.client.clone(), &namespace)
                .get_opt(&name)
                .await
                .map_err(kube_error)?
            {
                Some(b) => Ok(b),
                None => Err(not_found()),
            }
        }
        Id::Opaque(run) => {
            let found = list_watched::<Backfill>(state)
                .await?
                .into_iter()
                .find(|b| {
                    b.status.as_ref().and_then(|s| s.run_id.as_deref()) == Some(run.as_str())
                        || b.metadata.uid.as_deref().map(run_id).as_deref() == Some(run.as_str())
                })
                .ok_or_else(not_found)?;
            let ns = found.namespace().unwrap_or_default();
            state
                .reviews
                .authorize(
                    &state.client,
                    user,
                    &Access::backfills(verb, &ns, Some(&found.name_any())),
                )
                .await?;
            Ok(found)
        }
    }
}

/// The Schedule an id names (`namespace/name` or UID), once `user` may
/// get it.
async fn resolve_schedule(state: &ApiState, user: &User, id: &str) -> Result<Schedule, ApiError> {
    let not_found = || ApiError::not_found(format!("no schedule with id {id:?}"));
    let schedule = match parse_id(id)? {
        Id::Named { namespace, name } => {
            if watched(state, &namespace).is_err() {
                return Err(not_found());
            }
            state
                .reviews
                .authorize(
                    &state.client,
                    user,
                    &Access::schedules("get", &namespace, Some(&name)),
                )
                .await?;
            return Api::<Schedule>::namespaced(state.client.clone(), &namespace)
                .get_opt(&name)
                .await
                .map_err(kube_error)?
                .ok_or_else(not_found);
        }
        Id::Opaque(uid) => list_watched::<Schedule>(state)
            .await?
            .into_iter()
            .find(|s| s.metadata.uid.as_deref() == Some(uid.as_str()))
            .ok_or_else(not_found)?,
    };
    state
        .reviews
        .authorize(
            &state.client,
            user,
            &Access::schedules(
                "get",
                &schedule.namespace().unwrap_or_default(),
                Some(&schedule.name_any()),
            ),
        )
        .await?;
    Ok(schedule)
}

/// The zone of the Schedule `name` in `ns`, if it can be read.
async fn schedule_zone(client: &Client, ns: &str, name: &str) -> Option<String> {
    let s = Api::<Schedule>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    Some(s.spec.time_zone.unwrap_or_else(|| "UTC".into()))
}

/// A Backfill field path as the NeoAgent body names it.
fn neoagent_field(path: &str) -> Option<String> {
    let map = [
        ("metadata.name", "name"),
        ("spec.from", "from"),
        ("spec.to", "to"),
        ("spec.count", "count"),
        ("spec.sessions", "sessions"),
        ("spec.maxInFlight", "max_in_flight"),
        ("spec.attemptName", "attempt_name"),
        ("spec.executionWindows.timeZone", "timezone"),
        ("spec.executionWindows", "daily_execution_windows"),
        ("spec.filter", "filter_spec"),
        ("spec.creditsPerSession", "credits_per_entity"),
        ("spec.reprocess", "reprocess"),
        ("spec.dryRun", "dry_run"),
    ];
    map.iter()
        .find(|(k, _)| {
            path == *k || path.starts_with(&format!("{k}.")) || path.starts_with(&format!("{k}["))
        })
        .map(|(k, v)| format!("{v}{}", &path[k.len()..]))
}

/// A Backfill field path as the workflow body names it.
fn workflow_field(path: &str) -> Option<String> {
    match path {
        "metadata.name" | "spec.attemptName" => Some("attemptName".into()),
        "spec.from" => Some("fromTime".into()),
        "spec.count" => Some("count".into()),
        _ => None,
    }
}

/// Refuses a plan the operator would refuse (too many sessions, a time
/// that is not a session), naming `field`.
fn plan_for(
    schedule: &Schedule,
    spec: &BackfillSpec,
    now: i64,
    field: &str,
) -> Result<Plan, ApiError> {
    let plan = Plan::for_backfill(&schedule.spec, spec, Some(now))
        .and_then(|p| p.check_span(MAX_SESSIONS).map(|()| p))
        .map_err(|e| ApiError::bad_field(field, e.to_string()))?;
    Ok(plan)
}

fn post_params(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
    }
}

/// The Backfill's response: its view and the cost.
async fn backfill_response(
    state: &ApiState,
    call: &Call,
    backfill: &Backfill,
    status: StatusCode,
    mut warnings: Vec<String>,
) -> Response {
    let ns = backfill.namespace().unwrap_or_default();
    let zone = schedule_zone(&state.client, &ns, &backfill.spec.schedule_ref.name).await;
    warnings.extend(seed::backfill_warnings(backfill));
    let body = BackfillResponse {
        data: seed::backfill_view(backfill, zone.as_deref()),
        meta: call.meta(warnings, Pagination::default()),
    };
    json_response(status, &body)
}

// ---------------------------------------------------------------------
// The routes
// ---------------------------------------------------------------------

/// A Backfill by id.
#[utoipa::path(
    get,
    path = "/public-api/backfills/{backfill_id}",
    params(("backfill_id" = String, Path, description = "The Backfill's run id (status.runId) or namespace/name")),
    responses(
        (status = 200, description = "The backfill", body = BackfillResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_backfill(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&*state, &headers);
    handle(
        "get_backfill",
        state,
        peer.0,
        headers,
        move |call| async move {
            let backfill = resolve_backfill(state, &call.user, &id, "get").await?;
            Ok(backfill_response(state, &call, &backfill, StatusCode::OK, Vec::new()).await)
        },
    )
    .await
}

/// `GET /public-api/backfills`'s query.
#[derive(Deserialize, Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The namespace; absent: every namespace (needs list at the cluster
    /// scope).
    pub namespace: Option<String>,
    /// `meta.pagination.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Backfills per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// A page of Backfills.
#[utoipa::path(
    get,
    path = "/public-api/backfills",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of backfills", body = BackfillListResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_backfills(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let (state, headers) = (&*state, &headers);
    handle(
        "list_backfills",
        state,
        peer.0,
        headers,
        move |call| async move {
            let Query(q) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
            let limit = q.limit.unwrap_or(50);
            if !(1..=MAX_PAGE).contains(&limit) {
                return Err(ApiError::bad_field(
                    "limit",
                    format!("must be from 1 to {MAX_PAGE}"),
                ));
            }
            let ns = q.namespace.clone().unwrap_or_default();
            watched(state, &ns)?;
            state
                .reviews
                .authorize(
                    &state.client,
                    &call.user,
                    &Access::backfills("list", &ns, None),
                )
                .await?;
            let api: Api<Backfill> = if ns.is_empty() {
                Api::all(state.client.clone())
            } else {
                Api::namespaced(state.client.clone(), &ns)
            };
            let mut params = ListParams::default().limit(limit);
            if let Some(c) = q.cursor.as_deref().filter(|c| !c.is_empty()) {
                params = params.continue_token(c);
            }
            let page = api.list(&params).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 410 || s.code == 400 || s.code == 422 => {
                    ApiError::bad_field("cursor", format!("not a current cursor: {}", s.message))
                }
                other => kube_error(other),
            })?;
            let mut zones: HashMap<String, HashMap<String, String>> = HashMap::new();
            for b in &page.items {
                let bns = b.namespace().unwrap_or_default();
                if !zones.contains_key(&bns) {
                    let listed = Api::<Schedule>::namespaced(state.client.clone(), &bns)
                        .list(&ListParams::default())
                        .await
                        .map(|l| l.items)
                        .unwrap_or_default();
                    zones.insert(
                        bns.clone(),
                        listed
                            .into_iter()
                            .map(|s| {
                                (
                                    s.name_any(),
                                    s.spec.time_zone.unwrap_or_else(|| "UTC".into()),
                                )
                            })
                            .collect(),
                    );
                }
            }
            let data = page
                .items
                .iter()
                .map(|b| {
                    let zone = zones
                        .get(&b.namespace().unwrap_or_default())
                        .and_then(|z| z.get(&b.spec.schedule_ref.name));
                    seed::backfill_view(b, zone.map(String::as_str))
                })
                .collect();
            let next = page.metadata.continue_.filter(|c| !c.is_empty());
            let body = BackfillListResponse {
                data,
                meta: call.meta(
                    Vec::new(),
                    Pagination {
                        has_more: next.is_some(),
                        next_cursor: next,
                    },
                ),
            };
            Ok(json_response(StatusCode::OK, &body))
        },
    )
    .await
}

/// Creates a Backfill from the seed's body.
#[utoipa::path(
    post,
    path = "/public-api/backfills",
    request_body = CreateBackfillRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key answers with the same Backfill")),
    responses(
        (status = 201, description = "Created", body = BackfillResponse),
        (status = 200, description = "The Backfill an earlier request with this Idempotency-Key created", body = BackfillResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_backfill(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (state, headers) = (&*state, &headers);
    handle("create_backfill", state, peer.0, headers, move |call| async move {
        let body: CreateBackfillRequest = parse_body(body)?;
        let key = idempotency_key(headers)?;
        let ns = body.namespace.trim().to_string();
        if ns.is_empty() {
            return Err(ApiError::bad_field("namespace", "is required"));
        }
        watched(state, &ns)?;
        state.reviews.authorize(&state.client,
            &call.user,
            &Access::backfills("create", &ns, None),
        )
        .await?;
        let schedule_name = match (&body.target_workflow_name, &body.target_workflow_id) {
            (Some(name), _) if !name.trim().is_empty() => name.trim().to_string(),
            (_, Some(id)) if !id.trim().is_empty() => {
                let s = resolve_schedule(state, &call.user, id).await?;
                if s.namespace().as_deref() != Some(ns.as_str()) {
                    return Err(ApiError::bad_field(
                        "target_workflow_id",
                        format!("the schedule is not in the namespace {ns:?}"),
                    ));
                }
                s.name_any()
            }
            _ => {
                return Err(ApiError::bad_field(
                    "target_workflow_name",
                    "give target_workflow_name or target_workflow_id",
                ));
            }
        };
        let schedule = Api::<Schedule>::namespaced(state.client.clone(), &ns)
            .get_opt(&schedule_name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| {
                ApiError::bad_field(
                    "target_workflow_name",
                    format!("no Schedule {schedule_name:?} in the namespace {ns:?}"),
                )
            })?;
        let spec = seed::spec_of_request(&body, &schedule_name)?;
        let mut backfill = Backfill::new("", spec);
        backfill.metadata.namespace = Some(ns.clone());
        match (&body.name, &key) {
            (Some(name), _) => backfill.metadata.name = Some(name.clone()),
            (None, Some(k)) => backfill.metadata.name = Some(format!("api-{}", key_hash(k))),
            (None, None) => {
                backfill.metadata.name = None;
                backfill.metadata.generate_name = Some("api-".into());
            }
        }
        backfill.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_CREATED_BY.to_string(),
            call.user.username.clone(),
        )]));
        let api = Api::<Backfill>::namespaced(state.client.clone(), &ns);
        // The API server's admission (the CRD's rules) first, then the
        // planner's limits, before anything is created.
        let rename = |f: &str| neoagent_field(f);
        match api.create(&post_params(true), &backfill).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 && key.is_some() => {}
            Err(e) => return Err(ApiError::from_kube(e, &rename)),
        }
        if backfill.spec.from.is_some() || backfill.spec.sessions.is_some() {
            plan_for(&schedule, &backfill.spec, state.clock.now(), "from")?;
        }
        match api.create(&post_params(false), &backfill).await {
            Ok(created) => {
                Ok(
                    backfill_response(state, &call, &created, StatusCode::CREATED, Vec::new())
                        .await,
                )
            }
            Err(kube::Error::Api(s)) if s.code == 409 && key.is_some() => {
                let name = backfill.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await.map_err(kube_error)?;
                if existing.spec == backfill.spec
                    && existing.annotations().get(ANNOTATION_CREATED_BY)
                        == Some(&call.user.username)
                {
                    Ok(
                        backfill_response(state, &call, &existing, StatusCode::OK, Vec::new())
                            .await,
                    )
                } else {
                    Err(ApiError::conflict(format!(
                        "this Idempotency-Key was used for another request (Backfill {ns}/{name})"
                    )))
                }
            }
            Err(e) => Err(ApiError::from_kube(e, &rename)),
        }
    })
    .await
}

/// A key's hash, for names.
fn key_hash(key: &str) -> String {
    format!("{}{}", short_hash(key), short_hash(&format!("{key}/2")))
}

/// Reruns a finished Backfill's failed sessions as a child Backfill.
#[utoipa::path(
    post,
    path = "/public-api/backfills/{backfill_id}/rerun-failed",
    params(
        ("backfill_id" = String, Path, description = "The parent's run id (status.runId) or namespace/name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key answers with the same child"),
    ),
    responses(
        (status = 200, description = "The child backfill", body = BackfillResponse),
        (status = 202, description = "Requested; the operator has not made the child yet: retry with the same Idempotency-Key", body = PendingRerunResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The parent is still running, is a dry run, was cancelled, or has no failed session", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rerun_failed(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&*state, &headers);
    handle("rerun_failed", state, peer.0, headers, move |call| async move {
        let key = idempotency_key(headers)?;
        let parent = resolve_backfill(state, &call.user, &id, "patch").await?;
        let ns = parent.namespace().unwrap_or_default();
        let name = parent.name_any();
        let api = Api::<Backfill>::namespaced(state.client.clone(), &ns);
        let status = parent.status.clone().unwrap_or_default();
        let current = parent.annotations().get(ANNOTATION_RERUN_FAILED).cloned();
        let request = match &key {
            Some(k) => k.clone(),
            None => new_request(Timestamp::now(), current.as_deref(), &status.reruns),
        };
        let asked_before =
            status.reruns.iter().any(|r| r.request == request) || current.as_deref() == Some(request.as_str());
        if !asked_before {
            if let Some((reason, message)) = refusal(&request, &status) {
                let mut e = ApiError::conflict(message);
                e.reason = reason.as_str();
                return Err(e);
            }
            // Annotates the parent as it was read: a parent changed since
            // is read again by the client's retry.
            let patch = json!({"metadata": {
                "resourceVersion": parent.resource_version(),
                "annotations": {
                    ANNOTATION_RERUN_FAILED: request,
                    ANNOTATION_RERUN_REQUESTED_BY: call.user.username,
                },
            }});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            api.patch(&name, &params, &Patch::Merge(&patch))
                .await
                .map_err(kube_error)?;
        }
        let run = status.run_id.clone().unwrap_or_else(|| run_id(&parent.uid().unwrap_or_default()));
        let waited = tokio::time::timeout(
            state.rerun_wait,
            wait_for(
                &api,
                &name,
                &format!("the child of rerun request {request:?}"),
                state.rerun_wait + std::time::Duration::from_secs(5),
                |bf| request_outcome(bf, &request),
            ),
        )
        .await;
        match waited {
            Ok(Ok(record)) => {
                let child_name = record.name.clone().unwrap_or_default();
                let child = api.get(&child_name).await.map_err(kube_error)?;
                Ok(backfill_response(state, &call, &child, StatusCode::OK, Vec::new()).await)
            }
            Ok(Err(e)) => {
                let mut conflict = ApiError::conflict(e.to_string());
                conflict.reason = "NotCarriedOut";
                Err(conflict)
            }
            Err(_) => {
                let body = PendingRerunResponse {
                    data: PendingRerun {
                        rerun_request: request.clone(),
                        parent_backfill_run_id: run,
                        message: format!(
                            "the operator has not made the child yet; call again with the header Idempotency-Key: {request}"
                        ),
                    },
                    meta: call.meta(Vec::new(), Pagination::default()),
                };
                Ok(json_response(StatusCode::ACCEPTED, &body))
            }
        }
    })
    .await
}

/// Re-runs past sessions of a Schedule by count or from a time.
#[utoipa::path(
    post,
    path = "/api/schedules/{id}/backfill",
    request_body = ScheduleBackfillRequest,
    params(("id" = String, Path, description = "The Schedule's UID or namespace/name")),
    responses(
        (status = 200, description = "The attempts (planned ones with dryRun)", body = ScheduleBackfillResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "attemptName was used with other parameters", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn schedule_backfill(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (state, headers) = (&*state, &headers);
    handle("schedule_backfill", state, peer.0, headers, move |call| async move {
        let body: ScheduleBackfillRequest = parse_body(body)?;
        let schedule = resolve_schedule(state, &call.user, &id).await?;
        let ns = schedule.namespace().unwrap_or_default();
        let schedule_name = schedule.name_any();
        state.reviews.authorize(&state.client, &call.user, &Access::backfills("create", &ns, None)).await?;
        let from = seed::instant("fromTime", &body.from_time)?;
        let attempt = body.attempt_name.trim().to_string();
        let spec = BackfillSpec {
            from: Some(from),
            count: body.count,
            attempt_name: Some(attempt.clone()),
            // The seed re-runs every session asked for.
            reprocess: Some(Reprocess::All),
            ..BackfillSpec::of(schedule_name.clone())
        };
        let mut backfill = Backfill::new(&attempt, spec);
        backfill.metadata.namespace = Some(ns.clone());
        backfill.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_CREATED_BY.to_string(),
            call.user.username.clone(),
        )]));
        let api = Api::<Backfill>::namespaced(state.client.clone(), &ns);
        let rename = |f: &str| workflow_field(f);
        let now = state.clock.now();
        let schedule_uid = schedule.uid().unwrap_or_default();
        if body.dry_run {
            match api.create(&post_params(true), &backfill).await {
                Ok(_) => {}
                // The name is taken: judged below only when not a dry run.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(ApiError::from_kube(e, &rename)),
            }
            let plan = plan_for(&schedule, &backfill.spec, now, "fromTime")?;
            let sessions = planned_sessions(&plan)?;
            let attempts = seed::planned_attempts(
                &Planned {
                    namespace: &ns,
                    schedule: &schedule_name,
                    schedule_uid: &schedule_uid,
                    clock: plan.clock(),
                    attempt_name: &attempt,
                    backfill: None,
                    created_at: now,
                },
                &sessions,
            );
            return Ok(json_response(
                StatusCode::OK,
                &schedule_response(&schedule, plan.clock().zone().name(), attempts),
            ));
        }
        let plan = plan_for(&schedule, &backfill.spec, now, "fromTime")?;
        planned_sessions(&plan)?;
        let created = match api.create(&post_params(false), &backfill).await {
            Ok(b) => b,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&attempt).await.map_err(kube_error)?;
                let same = existing.spec.schedule_ref == backfill.spec.schedule_ref
                    && existing.spec.from == backfill.spec.from
                    && existing.spec.count == backfill.spec.count
                    && existing.spec.to.is_none()
                    && existing.spec.attempt_name == backfill.spec.attempt_name;
                if !same {
                    return Err(ApiError::conflict(format!(
                        "attemptName {attempt:?} was already used with other parameters (Backfill {ns}/{attempt}); choose another attemptName"
                    )));
                }
                existing
            }
            Err(e) => return Err(ApiError::from_kube(e, &rename)),
        };
        let attempts = attempts_of(state, &schedule, &created, now).await?;
        let zone = schedule.spec.time_zone.clone().unwrap_or_else(|| "UTC".into());
        Ok(json_response(
            StatusCode::OK,
            &schedule_response(&schedule, &zone, attempts),
        ))
    })
    .await
}

/// The planned sessions, at most [`MAX_ATTEMPTS`].
fn planned_sessions(plan: &Plan) -> Result<Vec<i64>, ApiError> {
    let sessions: Vec<i64> = plan.iter().take(MAX_ATTEMPTS + 1).map(|s| s.at).collect();
    if sessions.len() > MAX_ATTEMPTS {
        return Err(ApiError::bad_field(
            "count",
            format!(
                "this call runs at most {MAX_ATTEMPTS} sessions; split it: count {MAX_ATTEMPTS} from fromTime, then the rest from the next session"
            ),
        ));
    }
    Ok(sessions)
}

fn schedule_response(
    schedule: &Schedule,
    zone: &str,
    attempts: Vec<seed::SeedAttempt>,
) -> ScheduleBackfillResponse {
    let uid = schedule.uid().unwrap_or_default();
    ScheduleBackfillResponse {
        id: uid.clone(),
        workflow: seed::NameAndId {
            name: schedule.name_any(),
            id: uid,
        },
        time_zone: zone.to_string(),
        attempts,
    }
}

/// The attempts of `backfill`: its plan, as frozen when it started (else
/// as it would start now), each session with the state of this
/// Backfill's attempt at it (`queued` until it has one).
async fn attempts_of(
    state: &ApiState,
    schedule: &Schedule,
    backfill: &Backfill,
    now: i64,
) -> Result<Vec<seed::SeedAttempt>, ApiError> {
    let ns = backfill.namespace().unwrap_or_default();
    let cutoff = backfill
        .status
        .as_ref()
        .and_then(|s| s.planned_until.as_ref())
        .map(crate::core::zoned_cron::seconds)
        .unwrap_or(now);
    let plan = plan_for(schedule, &backfill.spec, cutoff, "fromTime")?;
    let sessions = planned_sessions(&plan)?;
    let attempt = backfill
        .spec
        .attempt_name
        .clone()
        .unwrap_or_else(|| backfill.name_any());
    let created = backfill
        .metadata
        .creation_timestamp
        .as_ref()
        .map(crate::core::zoned_cron::seconds)
        .unwrap_or(now);
    let mut attempts = seed::planned_attempts(
        &Planned {
            namespace: &ns,
            schedule: &schedule.name_any(),
            schedule_uid: &schedule.uid().unwrap_or_default(),
            clock: plan.clock(),
            attempt_name: &attempt,
            backfill: Some(&backfill.name_any()),
            created_at: created,
        },
        &sessions,
    );
    let (Some(&lo), Some(&hi)) = (sessions.iter().min(), sessions.iter().max()) else {
        return Ok(attempts);
    };
    // What happened to each: the listing `kubectl backfill sessions`
    // makes, this Backfill's attempts only.
    let (schedule, ledgers, jobs, backfills) =
        read_schedule(&state.client, &ns, &schedule.name_any())
            .await
            .map_err(kube_error)?;
    let list = list_sessions(SessionsInput {
        schedule: &schedule,
        ledgers: &ledgers,
        jobs: &jobs,
        backfills: &backfills,
        from: lo,
        to: hi + 1,
        now,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let listing = seed::Listing {
        list: &list,
        namespace: &ns,
    };
    let own = Owner::Backfill(backfill.name_any());
    for a in &mut attempts {
        let Ok(at) = a.session_id.parse::<i64>() else {
            continue;
        };
        let Some(row) = list.rows.iter().find(|r| r.at == at) else {
            continue;
        };
        let mine = row
            .attempt
            .as_ref()
            .is_some_and(|x| x.owner.as_ref() == Some(&own) || x.name == attempt);
        if mine && row.status != AttemptStatus::Missing {
            // What the listing does not know yet (an attempt planned but
            // not launched) stays as planned.
            let planned = a.clone();
            *a = seed::attempt_of_row(&listing, row);
            a.index = a.index.or(planned.index);
            a.created_at = a.created_at.take().or(planned.created_at);
            a.id = a.id.take().or(planned.id);
            a.retry_attempt_name = a.retry_attempt_name.take().or(planned.retry_attempt_name);
        }
    }
    Ok(attempts)
}

/// The OpenAPI document of this API.
pub async fn openapi_document() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    ApiError::not_found("no such path").into_response()
}

pub async fn method_not_allowed() -> Response {
    let mut e = ApiError::bad_request("this method is not served on this path");
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.reason = "MethodNotAllowed";
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_namespace_name_or_opaque() {
        assert!(
            matches!(parse_id("team-a/jan"), Ok(Id::Named { namespace, name }) if namespace == "team-a" && name == "jan")
        );
        assert!(matches!(parse_id("0b1c"), Ok(Id::Opaque(r)) if r == "0b1c"));
        for bad in ["", "/jan", "a/", "a/b/c"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_are_named_as_the_request_names_them() {
        assert_eq!(
            neoagent_field("spec.maxInFlight").as_deref(),
            Some("max_in_flight")
        );
        assert_eq!(
            neoagent_field("spec.executionWindows.monday[0].start").as_deref(),
            Some("daily_execution_windows.monday[0].start")
        );
        assert_eq!(
            neoagent_field("spec.executionWindows.timeZone").as_deref(),
            Some("timezone")
        );
        assert_eq!(neoagent_field("spec"), None);
        assert_eq!(
            workflow_field("metadata.name").as_deref(),
            Some("attemptName")
        );
        assert_eq!(workflow_field("spec.from").as_deref(), Some("fromTime"));
    }

    #[test]
    fn a_key_names_one_backfill() {
        assert_eq!(key_hash("k-1"), key_hash("k-1"));
        assert_ne!(key_hash("k-1"), key_hash("k-2"));
        assert_eq!(key_hash("k").len(), 16);
    }
}
