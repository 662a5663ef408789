//! The OpenAPI 3 document of the public API, generated from the Rust
//! types and the handlers' annotations (utoipa), served at
//! `/public-api/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail, ErrorMeta, FieldCause};
use super::handlers;
use super::seed::{
    BackfillData, BackfillListResponse, BackfillResponse, BackfillRun, CostEstimateView,
    CreateBackfillRequest, DailyExecutionWindows, ExcludedRange, FilterSpec, Meta, NameAndId,
    Pagination, PendingRerun, PendingRerunResponse, RunWindow, ScheduleBackfillRequest,
    ScheduleBackfillResponse, SeedAttempt,
};

/// The bearer token every operation takes.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token the Kubernetes API server accepts (a ServiceAccount token from `kubectl create token`, an OIDC token), checked with a TokenReview; each call is authorised with a SubjectAccessReview.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "backfill-operator public API",
        description = "The NeoAgent backfill API and the workflow scheduler's schedule backfill call, served by backfill-operator over Backfill and Schedule objects (backfill.dev/v1alpha1)."
    ),
    paths(
        handlers::get_backfill,
        handlers::list_backfills,
        handlers::create_backfill,
        handlers::rerun_failed,
        handlers::schedule_backfill,
    ),
    components(schemas(
        BackfillData, BackfillListResponse, BackfillResponse, BackfillRun, CostEstimateView,
        CreateBackfillRequest, DailyExecutionWindows, ExcludedRange, FilterSpec, Meta, NameAndId,
        Pagination, PendingRerun, PendingRerunResponse, RunWindow, ScheduleBackfillRequest,
        ScheduleBackfillResponse, SeedAttempt, ErrorBody, ErrorDetail, ErrorMeta, FieldCause,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, made once.
pub fn document_json() -> &'static [u8] {
    static JSON: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    JSON.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_shapes() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/public-api/backfills",
            "/public-api/backfills/{backfill_id}",
            "/public-api/backfills/{backfill_id}/rerun-failed",
            "/api/schedules/{id}/backfill",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        let run = &doc["components"]["schemas"]["BackfillRun"]["properties"];
        for field in [
            "id",
            "created_at",
            "created_by",
            "daily_execution_windows",
            "error",
            "failed_count",
            "filter_spec",
            "max_in_flight",
            "processed_count",
            "started_at",
            "completed_at",
            "succeeded_count",
            "target_workflow_id",
            "target_workflow_name",
            "timezone",
            "total_estimated",
            "parent_backfill_run_id",
        ] {
            assert!(run.get(field).is_some(), "BackfillRun.{field}");
        }
        let attempt = &doc["components"]["schemas"]["SeedAttempt"]["properties"];
        for field in [
            "id",
            "index",
            "project",
            "workflow",
            "sessionId",
            "sessionUuid",
            "sessionTime",
            "retryAttemptName",
            "done",
            "success",
            "cancelRequested",
            "params",
            "createdAt",
            "finishedAt",
            "status",
        ] {
            assert!(attempt.get(field).is_some(), "SeedAttempt.{field}");
        }
    }
}
