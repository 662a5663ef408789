//! Rerun failed, end to end: a new value of the `backfill.dev/rerun-failed`
//! annotation on a finished Backfill makes exactly one child Backfill of
//! its failed sessions, owned by it and recorded in its status. The
//! operator runs as a real process (one per test, scoped to the test's
//! namespace) against the local control plane; Jobs run through the real
//! job controller and kwok, and the real garbage collector deletes
//! children with their parent.
//!
//! Sessions fail on purpose through kwok Stages scoped to one Backfill
//! (`FailStage::for_backfill`): a child runs the same sessions in Jobs of
//! its own, which succeed unless a Stage of the child's fails them too.

mod common;

use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};

use common::DEADLINE;
use common::api::{Env, annotate, apply_hourly, apply_hourly_backfill, get, setup};
use common::events::wait_event;
use common::instants::{hours, instants};
use common::kwok::FailStage;
use common::operator::{FAILPOINT, Operator};
use common::poll::{eventually, throughout};
use common::status::{
    RUN_DEADLINE, condition, condition_message, counter, counters, is_finished, phase, status,
    summary, wait_backfill, wait_finished,
};
use common::tracker::{JobTracker, assert_one_job_per_session};

const ANNOTATION_RERUN_FAILED: &str = "backfill.dev/rerun-failed";
const LABEL_PARENT: &str = "backfill.dev/parent";
const RERUN_REQUESTED: &str = "RerunRequested";
const AFTER_CHILD_CREATED: &str = "after-rerun-child-created";

const FROM: &str = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------------
// Requests, children and records
// ---------------------------------------------------------------------

/// The Backfills labelled as children of `parent`, by name.
async fn children_of(env: &Env, parent: &str) -> Vec<DynamicObject> {
    let params = ListParams::default().labels(&format!("{LABEL_PARENT}={parent}"));
    let mut children = env
        .backfills
        .list(&params)
        .await
        .unwrap_or_else(|e| panic!("listing the children of {parent}: {e}"))
        .items;
    children.sort_by_key(|c| c.metadata.name.clone());
    children
}

fn names(objects: &[DynamicObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn name(object: &DynamicObject) -> &str {
    object.metadata.name.as_deref().unwrap_or_default()
}

fn uid(object: &DynamicObject) -> &str {
    object.metadata.uid.as_deref().unwrap_or_default()
}

/// Waits for the first child of `parent` and checks it is the only one.
async fn wait_child(env: &Env, parent: &str) -> DynamicObject {
    let mut children = eventually(
        &format!("a rerun child of Backfill {parent}"),
        DEADLINE,
        || async {
            let children = children_of(env, parent).await;
            if children.is_empty() {
                Err(summary(&get(&env.backfills, parent).await))
            } else {
                Ok(children)
            }
        },
    )
    .await;
    assert_eq!(
        children.len(),
        1,
        "one request made several children: {:?}",
        names(&children)
    );
    children.remove(0)
}

/// The parent's `status.reruns`.
fn reruns(bf: &DynamicObject) -> Vec<Value> {
    status(bf)["reruns"].as_array().cloned().unwrap_or_default()
}

/// The `RerunRequested` condition's status and reason ("" when absent).
fn rerun_condition(bf: &DynamicObject) -> (&str, &str) {
    condition(bf, RERUN_REQUESTED)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
            )
        })
        .unwrap_or_default()
}

/// Waits until the parent records `count` reruns.
async fn wait_reruns(env: &Env, parent: &str, count: usize) -> DynamicObject {
    eventually(
        &format!("{count} rerun record(s) on Backfill {parent}"),
        DEADLINE,
        || async {
            let bf = get(&env.backfills, parent).await;
            if reruns(&bf).len() == count {
                Ok(bf)
            } else {
                Err(format!(
                    "reruns {}; {}",
                    status(&bf)["reruns"],
                    summary(&bf)
                ))
            }
        },
    )
    .await
}

/// What a finished run leaves that a rerun must not change.
fn outcome(bf: &DynamicObject) -> Value {
    let s = status(bf);
    json!({
        "phase": s["phase"],
        "runId": s["runId"],
        "completedAt": s["completedAt"],
        "processed": counter(bf, "processedCount"),
        "succeeded": counter(bf, "succeededCount"),
        "failed": counter(bf, "failedCount"),
        "killed": counter(bf, "killedCount"),
        "total": counter(bf, "totalEstimated"),
        "failedSessions": s["failedSessions"],
    })
}

/// The child a request `token` (its name part) of `parent` must be:
/// named after both, over exactly `sessions` listed one by one, pointing
/// back at the parent's run, labelled with and owned by the parent, with
/// the parent's Schedule and settings.
fn assert_rerun_child(
    child: &DynamicObject,
    parent: &DynamicObject,
    token: &str,
    sessions: &[i64],
) {
    let parent_name = name(parent);
    let spec = &child.data["spec"];
    let parent_spec = &parent.data["spec"];
    let context = format!("child {}: {spec}", name(child));
    assert_eq!(
        name(child),
        format!("{parent_name}-rerun-{token}"),
        "{context}"
    );
    assert_eq!(instants(&spec["sessions"]), sessions, "{context}");
    for absent in ["sessionSet", "from", "to", "count", "dryRun", "cancel"] {
        assert!(spec[absent].is_null(), "{absent} set on the {context}");
    }
    assert!(status(parent)["runId"].is_string(), "{}", summary(parent));
    assert_eq!(
        spec["parentBackfillRunId"],
        status(parent)["runId"],
        "{context}"
    );
    let parent_attempt = parent_spec["attemptName"].as_str().unwrap_or(parent_name);
    assert_eq!(
        spec["attemptName"],
        format!("{parent_attempt}-retry-{token}"),
        "{context}"
    );
    assert_eq!(spec["scheduleRef"], parent_spec["scheduleRef"], "{context}");
    assert_eq!(spec["maxInFlight"], parent_spec["maxInFlight"], "{context}");
    assert_eq!(
        child
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_PARENT))
            .map(String::as_str),
        Some(parent_name),
        "labels of {}",
        name(child)
    );
    let owners = child.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "owners of {}: {owners:?}", name(child));
    let owner = &owners[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller,
        ),
        (
            "backfill.dev/v1alpha1",
            "Backfill",
            parent_name,
            uid(parent),
            Some(true)
        ),
        "owner of {}",
        name(child)
    );
}

/// The parent's one record of `request`, naming `child` with its run id.
fn assert_recorded(parent: &DynamicObject, request: &str, child: &DynamicObject, sessions: usize) {
    let records = reruns(parent);
    let matching: Vec<&Value> = records.iter().filter(|r| r["request"] == request).collect();
    assert_eq!(
        matching.len(),
        1,
        "records of request {request:?} on {}: {records:?}",
        name(parent)
    );
    let record = matching[0];
    assert_eq!(record["name"], name(child), "{record}");
    assert!(status(child)["runId"].is_string(), "{}", summary(child));
    assert_eq!(record["runId"], status(child)["runId"], "{record}");
    assert_eq!(record["sessions"], sessions, "{record}");
    assert!(record["createdAt"].is_string(), "{record}");
    assert!(record["message"].is_null(), "{record}");
}

/// Applies the hourly Schedule, whose pods run for `run_for`, and a
/// Backfill `name` of its sessions in `[FROM, to)`, `max_in_flight` at a
/// time.
async fn start_backfill(env: &Env, name: &str, to: &str, run_for: &str, max_in_flight: i64) {
    apply_hourly(env, Some(run_for)).await;
    apply_hourly_backfill(
        env,
        name,
        json!({"from": FROM, "to": to, "maxInFlight": max_in_flight}),
    )
    .await;
}

/// Waits until the Backfill `name` over `[FROM, to)` finishes, and checks
/// it failed exactly the sessions `fail` and recorded no rerun.
async fn wait_failed(env: &Env, name: &str, to: &str, fail: &[i64]) -> DynamicObject {
    let bf = wait_finished(env, name, RUN_DEADLINE, |_| {}).await;
    let total = hours(FROM, to).len() as i64;
    let failed = fail.len() as i64;
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(
        counters(&bf),
        (total, total - failed, failed, 0, total),
        "{}",
        summary(&bf)
    );
    assert_eq!(
        instants(&status(&bf)["failedSessions"]["preview"]),
        fail,
        "{}",
        status(&bf)["failedSessions"]
    );
    assert!(reruns(&bf).is_empty(), "{}", status(&bf)["reruns"]);
    bf
}

/// Annotates the finished `parent` with `request`, a value used as is in
/// names, and returns its one child, checked to rerun exactly `fail`.
async fn request_rerun(
    env: &Env,
    parent: &DynamicObject,
    request: &str,
    fail: &[i64],
) -> DynamicObject {
    annotate(env, name(parent), ANNOTATION_RERUN_FAILED, request).await;
    let child = wait_child(env, name(parent)).await;
    assert_rerun_child(&child, parent, request, fail);
    child
}

// ---------------------------------------------------------------------
// 1. A child of the failed sessions
// ---------------------------------------------------------------------

/// 30 sessions, 5 failing: a request makes one child of exactly those 5,
/// which succeed there; the parent records it and keeps its counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reruns_the_failed_sessions_in_one_child() {
    let env = setup("rr-child").await;
    let to = "2026-01-02T06:00:00Z";
    let plan = hours(FROM, to);
    assert_eq!(plan.len(), 30);
    // Not in the first batch of 5: kwok needs a moment to load the Stage.
    let fail: Vec<i64> = [6, 9, 10, 21, 29].iter().map(|&i| plan[i]).collect();
    let _stage = FailStage::for_backfill(&env, "january", &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    start_backfill(&env, "january", to, "1s", 5).await;
    let parent = wait_failed(&env, "january", to, &fail).await;
    let before = outcome(&parent);
    request_rerun(&env, &parent, "1", &fail).await;

    let child = wait_finished(&env, "january-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&child), "Succeeded", "{}", summary(&child));
    assert_eq!(counters(&child), (5, 5, 0, 0, 5), "{}", summary(&child));
    assert!(
        status(&child)["createdBy"]
            .as_str()
            .is_some_and(|c| c.contains("rerun-failed") && c.contains("january")),
        "createdBy should say the child comes from a rerun of january: {}",
        status(&child)
    );
    assert_one_job_per_session(&tracker, "january-rerun-1", &fail);

    let parent = wait_reruns(&env, "january", 1).await;
    assert_recorded(&parent, "1", &child, fail.len());
    assert_eq!(
        outcome(&parent),
        before,
        "the rerun changed the parent's run"
    );
    assert_eq!(
        rerun_condition(&parent),
        ("False", "ChildCreated"),
        "{}",
        summary(&parent)
    );
    let message = wait_event(&env, "january", "Normal", "RerunCreated").await;
    assert!(
        message.contains("january-rerun-1"),
        "the Event should name the child: {message:?}"
    );
    assert_eq!(
        names(&children_of(&env, "january").await),
        ["january-rerun-1"]
    );
    // The parent launched nothing more.
    assert_one_job_per_session(&tracker, "january", &plan);
}

// ---------------------------------------------------------------------
// 2. A crash between the child and its record
// ---------------------------------------------------------------------

/// The operator aborts right after creating the child, before recording
/// it; restarted, it finds the child instead of making another, records
/// it once, and neither a re-applied request nor a touch of the parent
/// makes a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_record_makes_no_second_child() {
    let env = setup("rr-crash").await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(FROM, to);
    let fail = vec![plan[3], plan[5]];
    let _stage = FailStage::for_backfill(&env, "fragile", &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut op =
        Operator::start_with_env(&env.ns.name, &[], &[(FAILPOINT, AFTER_CHILD_CREATED)]).await;

    start_backfill(&env, "fragile", to, "200ms", 3).await;
    let parent = wait_failed(&env, "fragile", to, &fail).await;
    let child = request_rerun(&env, &parent, "1", &fail).await;
    let exit = op.wait_exit(DEADLINE).await;
    assert!(!exit.success(), "the failpoint should abort: {exit}");
    assert!(
        !op.log_lines_containing(&format!("failpoint {AFTER_CHILD_CREATED}"))
            .is_empty(),
        "the operator exited ({exit}) but not at the failpoint\n{}",
        op.log_tail(20)
    );
    // Nobody wrote the record: the operator died first.
    let parent = get(&env.backfills, "fragile").await;
    assert!(
        reruns(&parent).is_empty(),
        "recorded before the crash: {}",
        status(&parent)["reruns"]
    );

    op.restart_with_env(&[]).await;
    let parent = wait_reruns(&env, "fragile", 1).await;
    let found = get(&env.backfills, "fragile-rerun-1").await;
    assert_eq!(uid(&found), uid(&child), "the child was made again");
    let child = wait_finished(&env, "fragile-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&child), "Succeeded", "{}", summary(&child));
    assert_eq!(counters(&child), (2, 2, 0, 0, 2), "{}", summary(&child));
    assert_recorded(&parent, "1", &child, 2);

    // A GitOps re-sync applies the same value again; other annotations
    // change the parent, so it is reconciled again.
    annotate(&env, "fragile", ANNOTATION_RERUN_FAILED, "1").await;
    annotate(&env, "fragile", "example.com/touched", "once").await;
    annotate(&env, "fragile", "example.com/touched", "twice").await;
    throughout(
        "one child and one record",
        Duration::from_secs(5),
        || async {
            let children = children_of(&env, "fragile").await;
            let parent = get(&env.backfills, "fragile").await;
            let records = reruns(&parent);
            if names(&children) == ["fragile-rerun-1"] && records.len() == 1 {
                Ok(())
            } else {
                Err(format!(
                    "children {:?}, records {records:?}",
                    names(&children)
                ))
            }
        },
    )
    .await;
    assert!(op.is_running(), "the operator stopped\n{}", op.log_tail(20));
    let child = get(&env.backfills, "fragile-rerun-1").await;
    assert_eq!(uid(&child), uid(&found));
    assert_one_job_per_session(&tracker, "fragile-rerun-1", &fail);
}

// ---------------------------------------------------------------------
// 3. A rerun of a rerun
// ---------------------------------------------------------------------

/// A child that fails again is a parent in turn: a request on it makes a
/// grandchild of what failed in the child, pointing at the child's run.
/// A request value that cannot be part of a name is hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_a_rerun_reruns_what_failed_again() {
    let env = setup("rr-grandchild").await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(FROM, to);
    let fail = vec![plan[3], plan[5]];
    let fail_again = vec![plan[5]];
    let _parent_stage = FailStage::for_backfill(&env, "six", &fail).await;
    let _child_stage = FailStage::for_backfill(&env, "six-rerun-1", &fail_again).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    start_backfill(&env, "six", to, "200ms", 3).await;
    let parent = wait_failed(&env, "six", to, &fail).await;
    request_rerun(&env, &parent, "1", &fail).await;
    let child = wait_finished(&env, "six-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&child), "Failed", "{}", summary(&child));
    assert_eq!(counters(&child), (2, 1, 1, 0, 2), "{}", summary(&child));

    let request = "After the fix, again!";
    annotate(&env, "six-rerun-1", ANNOTATION_RERUN_FAILED, request).await;
    let grandchild = wait_child(&env, "six-rerun-1").await;
    let token = name(&grandchild)
        .strip_prefix("six-rerun-1-rerun-")
        .unwrap_or_else(|| panic!("grandchild {}", name(&grandchild)))
        .to_string();
    assert!(
        token.len() == 8
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{request:?} should become an 8-hex hash in the name: {}",
        name(&grandchild)
    );
    assert_rerun_child(&grandchild, &child, &token, &fail_again);
    assert_eq!(
        grandchild.data["spec"]["attemptName"],
        format!("six-retry-1-retry-{token}")
    );

    let grandchild = wait_finished(&env, name(&grandchild), RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&grandchild), "Succeeded", "{}", summary(&grandchild));
    assert_eq!(
        counters(&grandchild),
        (1, 1, 0, 0, 1),
        "{}",
        summary(&grandchild)
    );
    assert_one_job_per_session(&tracker, name(&grandchild), &fail_again);

    let child = wait_reruns(&env, "six-rerun-1", 1).await;
    assert_recorded(&child, request, &grandchild, 1);
    // The grandchild is the child's, not the parent's.
    let parent = get(&env.backfills, "six").await;
    assert_eq!(reruns(&parent).len(), 1, "{}", status(&parent)["reruns"]);
    assert_recorded(&parent, "1", &child, 2);
    assert_eq!(names(&children_of(&env, "six").await), ["six-rerun-1"]);
}

// ---------------------------------------------------------------------
// 4. A request while the backfill runs
// ---------------------------------------------------------------------

/// A request on a running backfill waits, says so, and is carried out
/// once it finishes, with the sessions that failed after the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_the_run_waits_until_it_finishes() {
    let env = setup("rr-waiting").await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(FROM, to);
    // The last session fails last, well after the request.
    let fail = vec![plan[3], plan[5]];
    let _stage = FailStage::for_backfill(&env, "busy", &fail).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    // Two at a time, 3s each: three rounds, the request during the first.
    start_backfill(&env, "busy", to, "3s", 2).await;
    wait_backfill(&env, "busy", "Backfill busy running", DEADLINE, |bf| {
        phase(bf) == "Running"
    })
    .await;

    annotate(&env, "busy", ANNOTATION_RERUN_FAILED, "1").await;
    let waiting = wait_backfill(
        &env,
        "busy",
        "RerunRequested True with reason Waiting",
        DEADLINE,
        |bf| rerun_condition(bf) == ("True", "Waiting"),
    )
    .await;
    let message = condition_message(&waiting, RERUN_REQUESTED);
    assert!(
        message.contains("waits until the backfill finishes"),
        "{message:?}"
    );
    let children = children_of(&env, "busy").await;
    let now = get(&env.backfills, "busy").await;
    assert!(
        children.is_empty(),
        "a child of a running backfill: {:?}",
        names(&children)
    );
    assert!(
        !is_finished(&now) && counter(&now, "processedCount") < plan.len() as i64,
        "the backfill should still run (it has 3 rounds of 3s): {}",
        summary(&now)
    );
    assert!(reruns(&now).is_empty(), "{}", status(&now)["reruns"]);
    let event = wait_event(&env, "busy", "Normal", "RerunWaiting").await;
    assert!(
        event.contains("\"1\""),
        "the Event should quote the request: {event:?}"
    );

    let parent = wait_finished(&env, "busy", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counters(&parent), (6, 4, 2, 0, 6), "{}", summary(&parent));
    let child = wait_child(&env, "busy").await;
    assert_rerun_child(&child, &parent, "1", &fail);
    let parent = wait_reruns(&env, "busy", 1).await;
    assert_eq!(
        rerun_condition(&parent),
        ("False", "ChildCreated"),
        "{}",
        summary(&parent)
    );
    let child = wait_finished(&env, "busy-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counters(&child), (2, 2, 0, 0, 2), "{}", summary(&child));
    assert_recorded(&parent, "1", &child, 2);
    assert_eq!(names(&children_of(&env, "busy").await), ["busy-rerun-1"]);
}

// ---------------------------------------------------------------------
// 5. Garbage collection
// ---------------------------------------------------------------------

/// Deleting a parent deletes its children and their Jobs, through the
/// owner references and the real garbage collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_parent_deletes_its_children() {
    let env = setup("rr-gc").await;
    let to = "2026-01-01T03:00:00Z";
    let plan = hours(FROM, to);
    let fail = vec![plan[2]];
    let _stage = FailStage::for_backfill(&env, "owner", &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    start_backfill(&env, "owner", to, "200ms", 1).await;
    let parent = wait_failed(&env, "owner", to, &fail).await;
    request_rerun(&env, &parent, "1", &fail).await;
    let child = wait_finished(&env, "owner-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counters(&child), (1, 1, 0, 0, 1), "{}", summary(&child));
    assert_eq!(tracker.of("owner-rerun-1").len(), 1);

    env.backfills
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting Backfill owner: {e}"));
    eventually("the parent and its child gone", DEADLINE, || async {
        let left: Vec<String> = env
            .backfills
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|b| format!("{}({})", name(b), uid(b)))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("Backfills left: {left:?}"))
        }
    })
    .await;
    for backfill in ["owner", "owner-rerun-1"] {
        tracker
            .wait(&format!("the Jobs of {backfill} gone"), backfill, |jobs| {
                jobs.iter().all(|j| j.deleted)
            })
            .await;
    }
}
