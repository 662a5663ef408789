//! The operator's API in a test's own namespace (untyped, so the tests
//! read it as a user's kubectl does): the `Env` a test works in, the
//! manifests of Schedules and Backfills, and applying, patching and
//! reading them.
//!
//! Most tests back up a suspended hourly Schedule in UTC: a Backfill runs
//! past sessions whether or not the Schedule runs.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::kwok::RUN_FOR;
use super::{FIELD_MANAGER, TestNamespace, client, install_crds, merge};

pub const ANNOTATION_CREATED_BY: &str = "backfill.dev/created-by";

pub struct Env {
    pub client: Client,
    pub ns: TestNamespace,
    pub schedules: Api<DynamicObject>,
    pub backfills: Api<DynamicObject>,
    pub jobs: Api<Job>,
}

pub async fn setup(prefix: &str) -> Env {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("backfill.dev", "v1alpha1", kind),
            plural,
        )
    };
    Env {
        schedules: Api::namespaced_with(
            client.clone(),
            &ns.name,
            &resource("Schedule", "schedules"),
        ),
        backfills: Api::namespaced_with(
            client.clone(),
            &ns.name,
            &resource("Backfill", "backfills"),
        ),
        jobs: Api::namespaced(client.clone(), &ns.name),
        client,
        ns,
    }
}

/// The SessionLedgers of the test's namespace (the operator writes them;
/// a test reads them, or creates them to have some).
pub fn ledgers(env: &Env) -> Api<DynamicObject> {
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("backfill.dev", "v1alpha1", "SessionLedger"),
        "sessionledgers",
    );
    Api::namespaced_with(env.client.clone(), &env.ns.name, &resource)
}

/// A suspended Schedule in UTC running `cron`, whose pods carry
/// `pod_annotations` (the kwok knobs), with `spec_patch` merged onto its
/// spec (RFC 7386).
pub fn schedule_manifest(
    name: &str,
    cron: &str,
    pod_annotations: &[(&str, &str)],
    spec_patch: Value,
) -> Value {
    let annotations: serde_json::Map<String, Value> = pod_annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let mut manifest = json!({
        "apiVersion": "backfill.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {
            "schedule": cron,
            "timeZone": "UTC",
            "suspend": true,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "main",
                            "image": "busybox:1.37",
                            "command": ["sh", "-c", "echo \"$SESSION_TIME\""],
                        }],
                    },
                },
            }},
        },
    });
    merge(&mut manifest["spec"], &spec_patch);
    manifest
}

/// A Backfill of `schedule` with `spec` (scheduleRef added).
pub fn backfill_manifest(name: &str, schedule: &str, mut spec: Value) -> Value {
    spec["scheduleRef"] = json!({"name": schedule});
    json!({
        "apiVersion": "backfill.dev/v1alpha1",
        "kind": "Backfill",
        "metadata": {"name": name},
        "spec": spec,
    })
}

pub async fn apply(api: &Api<DynamicObject>, manifest: &Value) -> DynamicObject {
    let name = manifest["metadata"]["name"].as_str().expect("a name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", manifest["kind"]))
}

/// Applies the Schedule most tests back up: `hourly`, suspended, at
/// minute 0 in UTC, its pods running `run_for` (a Go duration; kwok's
/// default when `None`).
pub async fn apply_hourly(env: &Env, run_for: Option<&str>) -> DynamicObject {
    let annotations: Vec<(&str, &str)> = run_for.map(|d| (RUN_FOR, d)).into_iter().collect();
    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &annotations, json!({})),
    )
    .await
}

/// Applies `hourly` as [`apply_hourly`] does, its pods running kwok's
/// default time, with `spec_patch` merged onto its spec.
pub async fn apply_hourly_with(env: &Env, spec_patch: Value) -> DynamicObject {
    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[], spec_patch),
    )
    .await
}

/// Applies the Backfill `name` of `hourly` with `spec`.
pub async fn apply_hourly_backfill(env: &Env, name: &str, spec: Value) -> DynamicObject {
    apply(&env.backfills, &backfill_manifest(name, "hourly", spec)).await
}

/// Merge-patches an object's spec (`null` removes a field) and returns
/// its new generation.
pub async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) -> i64 {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let patched = api
        .patch(name, &params, &Patch::Merge(&json!({ "spec": spec })))
        .await
        .unwrap_or_else(|e| panic!("patching {name}: {e}"));
    patched.metadata.generation.expect("a generation")
}

pub async fn get(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// `kubectl annotate --overwrite` of a Backfill: a merge patch of one
/// annotation.
pub async fn annotate(env: &Env, name: &str, key: &str, value: &str) {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let patch = json!({"metadata": {"annotations": {key: value}}});
    env.backfills
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotating Backfill {name} {key}={value:?}: {e}"));
}
