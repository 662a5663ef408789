//! The policies that protect what a backfill shares with the live
//! schedule, end to end: the failure budget (a Backfill whose sessions
//! keep failing pauses itself, and a resume goes on), and cost approval
//! (a Backfill above its Schedule's approval threshold waits until a
//! holder of the RBAC verb `approve` approves it, which admission
//! enforces).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use common::DEADLINE;
use common::accounts::{backfill_account, kubectl_as, service_account_kubeconfig};
use common::api::{annotate, apply, apply_hourly_backfill, get, schedule_manifest, setup};
use common::events::wait_event;
use common::helm::Applied;
use common::instants::{hours, rfc3339_utc};
use common::kwok::{FailStage, RUN_FOR};
use common::operator::Operator;
use common::poll::{eventually, throughout};
use common::status::{
    RUN_DEADLINE, condition, condition_is, counter, phase, status, summary, wait_backfill,
    wait_finished,
};
use common::tracker::{JobTracker, assert_one_job_per_session, describe};

const APPROVED_BY: &str = "backfill.dev/approved-by";
const RESUME: &str = "backfill.dev/resume";

fn reason(bf: &kube::api::DynamicObject, type_: &str) -> String {
    condition(bf, type_)
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------
// Failure budget
// ---------------------------------------------------------------------

/// Eight sessions, one at a time, failing from the third on, with
/// `maxFailed: 3, action: Pause`: the Backfill pauses after exactly three
/// failures, no Job starts after the third failure was observed, a Warning
/// names them; a new `backfill.dev/resume` value goes on, the budget
/// counting from there (the last three fail too, and the run ends Failed
/// since nothing is left to launch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_failure_budget_pauses_and_a_resume_goes_on() {
    let env = setup("protect-budget").await;
    let plan = hours("2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z");
    assert_eq!(plan.len(), 8);
    let failing = &plan[2..];
    let _stage = FailStage::for_backfill(&env, "fragile", failing).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "1s")], json!({})),
    )
    .await;
    apply_hourly_backfill(
        &env,
        "fragile",
        json!({
            "from": rfc3339_utc(plan[0]),
            "to": "2026-01-01T08:00:00Z",
            "maxInFlight": 1,
            "failureBudget": {"maxFailed": 3, "action": "Pause"},
        }),
    )
    .await;

    let paused = wait_backfill(
        &env,
        "fragile",
        "Backfill fragile paused by its failure budget",
        RUN_DEADLINE,
        |bf| phase(bf) == "Paused" && counter(bf, "runningCount") == 0,
    )
    .await;
    assert_eq!(
        reason(&paused, "Ready"),
        "FailureBudgetExhausted",
        "{}",
        summary(&paused)
    );
    assert!(
        condition_is(&paused, "Stalled", "False"),
        "{}",
        summary(&paused)
    );
    assert_eq!(
        (
            counter(&paused, "succeededCount"),
            counter(&paused, "failedCount")
        ),
        (2, 3),
        "{}",
        summary(&paused)
    );
    let budget = &status(&paused)["failureBudget"];
    assert_eq!(
        (
            &budget["failed"],
            &budget["processed"],
            &budget["countedFrom"]
        ),
        (&json!(3), &json!(5), &json!(0)),
        "{budget}"
    );
    // Exactly the five sessions up to the third failure ran: one at a
    // time, none started once it was seen.
    let at_pause: BTreeSet<i64> = tracker.sessions("fragile");
    assert_eq!(
        at_pause,
        plan[..5].iter().copied().collect(),
        "{}",
        describe(&tracker.of("fragile"))
    );
    throughout(
        "no Job started while paused by the budget",
        Duration::from_secs(5),
        || async {
            let now = tracker.sessions("fragile");
            if now == at_pause {
                Ok(())
            } else {
                Err(format!("sessions at the pause {at_pause:?}, now {now:?}"))
            }
        },
    )
    .await;
    let message = wait_event(&env, "fragile", "Warning", "FailureBudgetExhausted").await;
    for at in &failing[..3] {
        assert!(message.contains(&rfc3339_utc(*at)), "{message}");
    }
    assert!(message.contains("maxFailed 3"), "{message}");

    annotate(&env, "fragile", RESUME, "1").await;
    wait_event(&env, "fragile", "Normal", "Resumed").await;
    let done = wait_finished(&env, "fragile", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&done), "Failed", "{}", summary(&done));
    assert_eq!(
        (
            counter(&done, "succeededCount"),
            counter(&done, "failedCount"),
            counter(&done, "processedCount")
        ),
        (2, 6, 8),
        "{}",
        summary(&done)
    );
    let budget = &status(&done)["failureBudget"];
    assert_eq!(
        (
            &budget["countedFrom"],
            &budget["failed"],
            &budget["resumes"]
        ),
        (&json!(5), &json!(3), &json!(1)),
        "{budget}"
    );
    assert_one_job_per_session(&tracker, "fragile", &plan);
    assert_eq!(tracker.max_active("fragile"), 1);
}

// ---------------------------------------------------------------------
// Cost approval
// ---------------------------------------------------------------------

/// A merge patch of a Backfill's spec (and metadata) as `kubeconfig`'s
/// account.
fn patch_as(kubeconfig: &std::path::Path, name: &str, patch: Value) -> Result<Value, String> {
    kubectl_as(
        kubeconfig,
        &[
            "patch",
            "backfill",
            name,
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
}

/// Without `approve`, an account that may create and patch Backfills
/// cannot approve one (admission names the verb), nor write the approver
/// annotation; with it, it can, and the Backfill, which waited in
/// `AwaitingApproval` (Reconciling, not Stalled) without a Job, starts
/// then, with the approver in status. Changing the sessions of an
/// approved Backfill is a new approval too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_approve_can_approve_and_the_backfill_waits_for_them() {
    let env = setup("protect-approval").await;
    let ns = env.ns.name.clone();
    // The chart's policies, bound to this namespace only: the test
    // cluster is shared.
    let _policy = Applied::chart_policy("approval-policy.yaml", "approvalPolicy", &ns);
    let editing = ["create", "get", "list", "patch", "update"];
    backfill_account(&env.client, &ns, "author", &editing).await;
    let mut approving = editing.to_vec();
    approving.push("approve");
    backfill_account(&env.client, &ns, "approver", &approving).await;
    let author =
        service_account_kubeconfig(&env.client, &ns, "author", &format!("{ns}-author")).await;
    let approver =
        service_account_kubeconfig(&env.client, &ns, "approver", &format!("{ns}-approver")).await;
    let approver_name = format!("system:serviceaccount:{ns}:approver");

    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&ns, &[]).await;
    // 10 credits a session, approval above 20: three sessions need it.
    apply(
        &env.schedules,
        &schedule_manifest(
            "hourly",
            "0 * * * *",
            &[(RUN_FOR, "1s")],
            json!({"creditsPerSession": 10, "approval": {"requiredAboveCredits": 20}}),
        ),
    )
    .await;
    let manifest = |name: &str, extra: Value| {
        let mut spec = json!({
            "scheduleRef": {"name": "hourly"},
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-01T03:00:00Z",
        });
        common::merge(&mut spec, &extra);
        json!({
            "apiVersion": "backfill.dev/v1alpha1",
            "kind": "Backfill",
            "metadata": {"name": name},
            "spec": spec,
        })
        .to_string()
    };

    // A policy takes effect a moment after it is created: a server-side
    // dry run shows when admission applies both.
    let probe = manifest("probe", json!({"approved": true}));
    let probe_file =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{ns}-probe.json"));
    std::fs::write(&probe_file, &probe).expect("writing the probe");
    let probe_path = probe_file.to_str().expect("a UTF-8 path");
    eventually("the approval policies to apply", DEADLINE, || async {
        let refused = kubectl_as(
            &author,
            &["create", "--dry-run=server", "-f", probe_path],
            None,
        );
        let stamped = kubectl_as(
            &approver,
            &["create", "--dry-run=server", "-f", probe_path],
            None,
        );
        match (refused, stamped) {
            (Err(_), Ok(obj))
                if obj["metadata"]["annotations"][APPROVED_BY] == json!(approver_name) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The author's Backfill plans, shows its estimate and waits.
    let file =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{ns}-costly.json"));
    std::fs::write(&file, manifest("costly", json!({}))).expect("writing the manifest");
    kubectl_as(
        &author,
        &["create", "-f", file.to_str().expect("a UTF-8 path")],
        None,
    )
    .expect("the author creates a Backfill");
    let waiting = wait_backfill(
        &env,
        "costly",
        "Backfill costly awaiting approval",
        DEADLINE,
        |bf| phase(bf) == "AwaitingApproval",
    )
    .await;
    let s = status(&waiting);
    assert_eq!(
        s["costEstimate"]["totalCreditsEstimated"].as_f64(),
        Some(30.0),
        "{s}"
    );
    assert!(
        s["preview"]["approval"]
            .as_str()
            .is_some_and(|a| a.starts_with("needed")),
        "{s}"
    );
    assert!(
        condition_is(&waiting, "Reconciling", "True"),
        "{}",
        summary(&waiting)
    );
    assert_eq!(reason(&waiting, "Reconciling"), "AwaitingApproval");
    assert!(
        condition_is(&waiting, "Stalled", "False"),
        "{}",
        summary(&waiting)
    );
    wait_event(&env, "costly", "Normal", "AwaitingApproval").await;

    // The author cannot approve, nor write the approver's name.
    let refused = patch_as(&author, "costly", json!({"spec": {"approved": true}}))
        .expect_err("the author approved");
    assert!(
        refused.contains("the RBAC verb approve on backfills.backfill.dev"),
        "{refused}"
    );
    let forged = patch_as(
        &author,
        "costly",
        json!({"metadata": {"annotations": {APPROVED_BY: approver_name}}}),
    )
    .expect_err("the author wrote the approver annotation");
    assert!(forged.contains(APPROVED_BY), "{forged}");
    throughout(
        "no Job while awaiting approval",
        Duration::from_secs(3),
        || async {
            let jobs = tracker.of("costly");
            let bf = get(&env.backfills, "costly").await;
            if jobs.is_empty() && phase(&bf) == "AwaitingApproval" {
                Ok(())
            } else {
                Err(format!("{} / {}", summary(&bf), describe(&jobs)))
            }
        },
    )
    .await;

    // The approver can; the run starts and names them.
    let approved = patch_as(&approver, "costly", json!({"spec": {"approved": true}}))
        .expect("the approver approves");
    assert_eq!(
        approved["metadata"]["annotations"][APPROVED_BY],
        json!(approver_name)
    );
    let done = wait_finished(&env, "costly", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&done), "Succeeded", "{}", summary(&done));
    let approval = &status(&done)["approval"];
    assert_eq!(approval["approvedBy"], json!(approver_name), "{approval}");
    assert!(approval["approvedAt"].is_string(), "{approval}");
    assert_eq!(tracker.of("costly").len(), 3);
    let message = wait_event(&env, "costly", "Normal", "Approved").await;
    assert!(message.contains(&approver_name), "{message}");

    // An approved Backfill not started yet (a dry run): changing its
    // sessions is a new approval, which the author cannot give; with
    // `approved` turned off in the same change, it can.
    std::fs::write(&file, manifest("later", json!({"dryRun": true}))).expect("writing");
    kubectl_as(
        &author,
        &["create", "-f", file.to_str().expect("a UTF-8 path")],
        None,
    )
    .expect("the author creates a dry run");
    patch_as(&approver, "later", json!({"spec": {"approved": true}})).expect("approved");
    let wider = json!({"spec": {"to": "2026-01-02T00:00:00Z"}});
    let refused = patch_as(&author, "later", wider.clone()).expect_err("the author widened it");
    assert!(refused.contains("a new approval"), "{refused}");
    patch_as(
        &author,
        "later",
        json!({"spec": {"to": "2026-01-02T00:00:00Z", "approved": false}}),
    )
    .expect("widened, unapproved");
    // Not approved, it does not start when the dry run is turned off.
    patch_as(&author, "later", json!({"spec": {"dryRun": false}})).expect("dry run off");
    wait_backfill(
        &env,
        "later",
        "Backfill later awaiting approval",
        DEADLINE,
        |bf| phase(bf) == "AwaitingApproval",
    )
    .await;
    assert!(tracker.of("later").is_empty());
}
