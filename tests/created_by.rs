//! Who asked for a Backfill, as the API server authenticated them: the
//! chart's MutatingAdmissionPolicy stamps the requesting user into a new
//! Backfill's `backfill.dev/created-by` annotation, over any value the
//! manifest wrote, and an update cannot change it; the operator shows it
//! as `status.createdBy`.

mod common;

use serde_json::{Value, json};

use common::DEADLINE;
use common::accounts::{self, backfill_account, service_account_kubeconfig};
use common::api::{apply_hourly, backfill_manifest, setup};
use common::helm::Applied;
use common::operator::Operator;
use common::poll::eventually;
use common::status::{status, wait_phase};

const CREATED_BY: &str = "backfill.dev/created-by";
const REQUESTED_BY: &str = "backfill.dev/rerun-requested-by";

/// `kubectl` as the account of `kubeconfig`, with `stdin`; its output as
/// JSON.
fn kubectl_as(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Value {
    accounts::kubectl_as(kubeconfig, args, stdin)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_by_is_the_user_the_api_server_authenticated() {
    let env = setup("created-by").await;
    let ns = env.ns.name.clone();
    // The policy as the chart renders it, bound to this namespace only:
    // the test cluster is shared.
    let _policy = Applied::chart_policy("created-by-policy.yaml", "createdByPolicy", &ns);
    backfill_account(
        &env.client,
        &ns,
        "alice",
        &["create", "get", "list", "patch", "update"],
    )
    .await;
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
