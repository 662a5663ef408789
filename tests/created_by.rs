//! Who asked for a Backfill, as the API server authenticated them: the
//! chart's MutatingAdmissionPolicy stamps the requesting user into a new
//! Backfill's `backfill.dev/created-by` annotation, over any value the
//! manifest wrote, and an update cannot change it; the operator shows it
//! as `status.createdBy`.

mod common;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};

use common::DEADLINE;
use common::accounts::service_account_kubeconfig;
use common::api::{apply_hourly, backfill_manifest, setup};
use common::helm::{chart, run, run_ok};
use common::operator::Operator;
use common::poll::eventually;
use common::status::{status, wait_phase};

const CREATED_BY: &str = "backfill.dev/created-by";
const REQUESTED_BY: &str = "backfill.dev/rerun-requested-by";

/// Cluster-scoped objects applied for one test, deleted when dropped.
struct Applied(String);

impl Applied {
    fn new(manifests: String) -> Self {
        run_ok(
            "kubectl",
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "created-by-test",
                "-f",
                "-",
            ],
            Some(&manifests),
        );
        Applied(manifests)
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        run(
            "kubectl",
            &["delete", "--ignore-not-found", "-f", "-"],
            Some(&self.0),
        );
    }
}

/// Lets the ServiceAccount `name` of `ns` create, read and change
/// Backfills there, and nothing else.
async fn backfill_author(client: &kube::Client, ns: &str, name: &str) {
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        ..ObjectMeta::default()
    };
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(name),
                ..Default::default()
            },
        )
        .await
        .expect("a ServiceAccount");
    Api::<Role>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &Role {
                metadata: meta(name),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["backfill.dev".into()]),
                    resources: Some(vec!["backfills".into()]),
                    verbs: ["create", "get", "list", "patch", "update"]
                        .map(String::from)
                        .to_vec(),
                    ..PolicyRule::default()
                }]),
            },
        )
        .await
        .expect("a Role");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &RoleBinding {
                metadata: meta(name),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .expect("a RoleBinding");
}

/// `kubectl` as the account of `kubeconfig`, with `stdin`; its output as
/// JSON.
fn kubectl_as(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Value {
    let config = kubeconfig.to_str().expect("a UTF-8 path");
    let mut all = vec!["--kubeconfig", config];
    all.extend(args);
    all.extend(["-o", "json"]);
    let out = run_ok("kubectl", &all, stdin);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_by_is_the_user_the_api_server_authenticated() {
    let env = setup("created-by").await;
    let ns = env.ns.name.clone();
    // The policy as the chart renders it, bound to this namespace only:
    // the test cluster is shared.
    let chart = chart();
    let selector = format!(
        "createdByPolicy.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={ns}"
    );
    let release = format!("cb-{}", &ns[ns.len() - 8..]);
    let policy = run_ok(
        "helm",
        &[
            "template",
            &release,
            chart.to_str().expect("a UTF-8 path"),
            "-n",
            &ns,
            "--show-only",
            "templates/created-by-policy.yaml",
            "--set",
            &selector,
        ],
        None,
    );
    let _policy = Applied::new(policy);
    backfill_author(&env.client, &ns, "alice").await;
    let alice = service_account_kubeconfig(&env.client, &ns, "alice", &format!("{ns}-alice")).await;
    let who = format!("system:serviceaccount:{ns}:alice");
    let _operator = Operator::start(&ns, &[]).await;
    apply_hourly(&env, None).await;

    let mut manifest = backfill_manifest(
        "asked",
        "hourly",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T03:00:00Z", "dryRun": true}),
    );
    manifest["metadata"]["annotations"] = json!({CREATED_BY: "someone-else"});
    let text = manifest.to_string();
    // A policy takes effect a moment after it is created: a server-side
    // dry run shows when admission applies it.
    eventually("the policy to stamp a dry-run create", DEADLINE, || async {
        let out = kubectl_as(
            &alice,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&text),
        );
        match out["metadata"]["annotations"][CREATED_BY].as_str() {
            Some(w) if w == who => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let created = kubectl_as(&alice, &["create", "-f", "-"], Some(&text));
    assert_eq!(created["metadata"]["annotations"][CREATED_BY], json!(who));
    let planned = wait_phase(&env, "asked", "Planned").await;
    assert_eq!(
        status(&planned)["createdBy"],
        json!(who),
        "{}",
        status(&planned)
    );

    // An update cannot change it either.
    let annotated = kubectl_as(
        &alice,
        &[
            "annotate",
            "backfill",
            "asked",
            &format!("{CREATED_BY}=mallory"),
            "--overwrite",
        ],
        None,
    );
    assert_eq!(annotated["metadata"]["annotations"][CREATED_BY], json!(who));

    // Who asks for a rerun is stamped too (the rerun child's created-by),
    // whatever the request wrote; changing it alone changes nothing.
    let requested = kubectl_as(
        &alice,
        &[
            "annotate",
            "backfill",
            "asked",
            "backfill.dev/rerun-failed=r1",
            &format!("{REQUESTED_BY}=mallory"),
            "--overwrite",
        ],
        None,
    );
    assert_eq!(
        requested["metadata"]["annotations"][REQUESTED_BY],
        json!(who)
    );
    let edited = kubectl_as(
        &alice,
        &[
            "annotate",
            "backfill",
            "asked",
            &format!("{REQUESTED_BY}=mallory"),
            "--overwrite",
        ],
        None,
    );
    assert_eq!(edited["metadata"]["annotations"][REQUESTED_BY], json!(who));
}
