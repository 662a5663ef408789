//! kwok, which plays the kubelet for the Jobs' pods: the pod annotations
//! that say how long a pod runs and how it ends, and a Stage failing the
//! pods of chosen sessions.

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::Env;
use super::jobs::{LABEL_BACKFILL, LABEL_SESSION};
use super::{FIELD_MANAGER, client, repo_root, run_detached};

/// How long a pod runs (a Go duration; kwok's default when absent).
pub const RUN_FOR: &str = "testenv.backfill.dev/run-for";
/// How a pod ends: `fail` fails it.
pub const OUTCOME: &str = "testenv.backfill.dev/outcome";

/// A kwok Stage failing the pods of chosen sessions in one namespace: the
/// `pod-fail` Stage of `hack/kwok/stages.yaml`, selected by namespace and
/// session label (and, for [`FailStage::for_backfill`], Backfill label)
/// instead of the annotation, with a positive weight so kwok prefers it
/// over `pod-complete`. Deleted when dropped.
pub struct FailStage {
    name: String,
}

pub fn stages_api(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage"),
        "stages",
    );
    Api::all_with(client.clone(), &resource)
}

impl FailStage {
    /// Fails `sessions` of every Backfill of the namespace.
    pub async fn apply(env: &Env, sessions: &[i64]) -> Self {
        Self::create(env, None, sessions).await
    }

    /// Fails `sessions` of the Backfill `backfill` only: the same sessions
    /// succeed in its rerun children (other Backfills, with Jobs of their
    /// own). Several may exist in a namespace, one per Backfill.
    pub async fn for_backfill(env: &Env, backfill: &str, sessions: &[i64]) -> Self {
        Self::create(env, Some(backfill), sessions).await
    }

    /// Fails `sessions` of the Schedules' own runs only: Backfills of the
    /// same sessions succeed.
    pub async fn for_schedules(env: &Env, sessions: &[i64]) -> Self {
        Self::create(env, Some(""), sessions).await
    }

    /// `backfill`: `None` for every pod of the namespace, `Some("")` for
    /// the pods of no Backfill (scheduled runs), else one Backfill's.
    async fn create(env: &Env, backfill: Option<&str>, sessions: &[i64]) -> Self {
        let path = repo_root().join("hack/kwok/stages.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut stage = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("a YAML document"))
            .find(|doc| doc["metadata"]["name"] == "pod-fail")
            .expect("a pod-fail Stage in hack/kwok/stages.yaml");
        let name = match backfill {
            Some("") => format!("fail-{}-scheduled", env.ns.name),
            Some(backfill) => format!("fail-{}-{backfill}", env.ns.name),
            None => format!("fail-{}", env.ns.name),
        };
        stage["metadata"] = json!({"name": name});
        stage["spec"]["weight"] = json!(1);
        let expressions = stage["spec"]["selector"]["matchExpressions"]
            .as_array_mut()
            .expect("pod-fail has matchExpressions");
        expressions.retain(|e| {
            !e["key"]
                .as_str()
                .unwrap_or_default()
                .contains("testenv.backfill.dev/outcome")
        });
        expressions.push(json!({
            "key": ".metadata.namespace",
            "operator": "In",
            "values": [env.ns.name],
        }));
        expressions.push(json!({
            "key": format!(".metadata.labels[\"{LABEL_SESSION}\"]"),
            "operator": "In",
            "values": sessions.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        }));
        match backfill {
            Some("") => expressions.push(json!({
                "key": format!(".metadata.labels[\"{LABEL_BACKFILL}\"]"),
                "operator": "DoesNotExist",
            })),
            Some(backfill) => expressions.push(json!({
                "key": format!(".metadata.labels[\"{LABEL_BACKFILL}\"]"),
                "operator": "In",
                "values": [backfill],
            })),
            None => {}
        }
        stages_api(&env.client)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&stage),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Stage {name}: {e}"));
        FailStage { name }
    }
}

impl Drop for FailStage {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(&format!("delete Stage {name}"), async move {
            let api = stages_api(&client().await);
            if let Err(e) = api.delete(&name, &DeleteParams::background()).await {
                eprintln!("cannot delete Stage {name}: {e}");
            }
        });
    }
}
