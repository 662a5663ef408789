//! `kubectl backfill sessions`, end to end: the plugin binary as a user
//! runs it, against the local control plane, over a Schedule that ran
//! sessions of its own, a Backfill with failures and the rerun child of
//! those. Every session of the range is listed once, with the status the
//! workflow seed names, the attempt that decided it and its Job.
//!
//! The operator's clock starts at 05:05 on 2026-01-01 and runs
//! 600 times faster (an hour in six seconds): the Schedule runs 06:00 and
//! 07:00 within seconds, while the Backfill runs 00:00-05:00. The
//! Schedule keeps no successful Job (`successfulJobsHistoryLimit: 0`), so
//! its sessions come from the ledger.

mod common;

use std::process::{Command, Output};

use serde_json::{Value, json};

use common::api::{Env, apply, apply_hourly_backfill, schedule_manifest, setup};
use common::instants::{at, hours};
use common::kwok::{FailStage, RUN_FOR};
use common::operator::Operator;
use common::poll::eventually;
use common::status::{RUN_DEADLINE, counters, phase, summary, wait_finished};
use common::{FIELD_MANAGER, repo_root};

const FROM: &str = "2025-12-31T22:00:00Z";
const TO: &str = "2026-01-01T08:00:00Z";

fn kubeconfig() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        repo_root()
            .join(".cluster/kubeconfig")
            .display()
            .to_string()
    })
}

/// `kubectl-backfill sessions hourly --from FROM --to TO -n NS
/// --kubeconfig ... <extra>`.
fn sessions(env: &Env, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-backfill"))
        .args(["sessions", "hourly", "--from", FROM, "--to", TO])
        .args(["-n", &env.ns.name, "--kubeconfig", &kubeconfig()])
        .args(extra)
        .output()
        .expect("kubectl-backfill runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One session's expected attempt: status, attempt name, Job, plan
/// index, retryAttemptName.
fn want(
    status: &str,
    attempt: Option<&str>,
    job: Option<String>,
    index: Option<u64>,
    retry: Option<&str>,
) -> Value {
    json!({"status": status, "attemptName": attempt, "job": job, "index": index, "retryAttemptName": retry})
}

fn got(a: &Value) -> Value {
    json!({
        "status": a["status"],
        "attemptName": a["attemptName"],
        "job": a["job"],
        "index": a["index"],
        "retryAttemptName": a["retryAttemptName"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_scheduled_runs_a_backfill_and_its_rerun_child() {
    let env = setup("plugin-sessions").await;
    let plan = hours("2026-01-01T00:00:00Z", "2026-01-01T06:00:00Z");
    // Not in the first batch: kwok needs a moment to load the Stage.
    let fail = [plan[3], plan[5]];
    let _parent_fails = FailStage::for_backfill(&env, "january", &fail).await;
    // The child fails 05:00 again.
    let _child_fails = FailStage::for_backfill(&env, "january-rerun-1", &[plan[5]]).await;
    let _op = Operator::start(
        &env.ns.name,
        &[
            "--time-origin",
            "2026-01-01T05:05:00Z",
            "--time-scale",
            "600",
        ],
    )
    .await;

    apply(
        &env.schedules,
        &schedule_manifest(
            "hourly",
            "0 * * * *",
            &[(RUN_FOR, "1s")],
            json!({"suspend": null, "successfulJobsHistoryLimit": 0}),
        ),
    )
    .await;
    apply_hourly_backfill(
        &env,
        "january",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T06:00:00Z", "maxInFlight": 2}),
    )
    .await;
    let parent = wait_finished(&env, "january", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&parent), "Failed", "{}", summary(&parent));
    assert_eq!(counters(&parent), (6, 4, 2, 0, 6), "{}", summary(&parent));
    env.backfills
        .patch(
            "january",
            &kube::api::PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            },
            &kube::api::Patch::Merge(
                &json!({"metadata": {"annotations": {"backfill.dev/rerun-failed": "1"}}}),
            ),
        )
        .await
        .expect("annotating january");
    eventually("the rerun child", common::DEADLINE, || async {
        env.backfills
            .get_opt("january-rerun-1")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not created yet".to_string())
    })
    .await;
    let child = wait_finished(&env, "january-rerun-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counters(&child), (2, 1, 1, 0, 2), "{}", summary(&child));

    let backfill_job = |owner: &str, at: i64| Some(format!("{owner}-b{at}"));
    let expected: Vec<Value> = vec![
        want("missing", None, None, None, None),
        want("missing", None, None, None, None),
        want(
            "success",
            Some("january"),
            backfill_job("january", plan[0]),
            Some(0),
            Some("january"),
        ),
        want(
            "success",
            Some("january"),
            backfill_job("january", plan[1]),
            Some(1),
            Some("january"),
        ),
        want(
            "success",
            Some("january"),
            backfill_job("january", plan[2]),
            Some(2),
            Some("january"),
        ),
        want(
            "success",
            Some("january-retry-1"),
            backfill_job("january-rerun-1", plan[3]),
            Some(0),
            Some("january-retry-1"),
        ),
        want(
            "success",
            Some("january"),
            backfill_job("january", plan[4]),
            Some(4),
            Some("january"),
        ),
        want(
            "error",
            Some("january-retry-1"),
            backfill_job("january-rerun-1", plan[5]),
            Some(1),
            Some("january-retry-1"),
        ),
        // The Schedule's own runs: their Jobs are gone (history limit
        // 0), the ledger holds their outcome.
        want("success", Some("hourly"), None, None, None),
        want("success", Some("hourly"), None, None, None),
    ];
    // The Schedule's 07:00 run may still be under way: wait for it.
    let listing: Value = eventually(
        "the sessions listing to show every session ended",
        RUN_DEADLINE,
        || async {
            let out = sessions(&env, &["-o", "json"]);
            if !out.status.success() {
                return Err(format!("exit {}: {}", out.status, text(&out.stderr)));
            }
            let listing: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("not JSON ({e}): {}", text(&out.stdout)))?;
            let rows: Vec<Value> = listing["attempts"]
                .as_array()
                .map(|a| a.iter().map(got).collect())
                .unwrap_or_default();
            if rows == expected {
                Ok(listing)
            } else {
                Err(format!("{}", Value::from(rows)))
            }
        },
    )
    .await;

    let schedule_uid = common::api::get(&env.schedules, "hourly")
        .await
        .metadata
        .uid
        .expect("a uid");
    assert_eq!(
        listing["workflow"],
        json!({"name": "hourly", "id": schedule_uid})
    );
    let attempts = listing["attempts"].as_array().expect("attempts");
    let times: Vec<i64> = attempts
        .iter()
        .map(|a| at(a["sessionTime"].as_str().expect("sessionTime")))
        .collect();
    assert_eq!(times, hours(FROM, TO), "every session once, in order");
    for (a, &t) in attempts.iter().zip(&times) {
        assert_eq!(a["workflow"]["id"], schedule_uid, "{a}");
        assert_eq!(a["cancelRequested"], false, "{a}");
        let status = a["status"].as_str().unwrap_or_default();
        assert_eq!(a["done"], status != "missing", "{a}");
        assert_eq!(a["success"], status == "success", "{a}");
        assert!(
            a["sessionUuid"].as_str().is_some_and(|u| u.len() == 36),
            "{a}"
        );
        match a["job"].as_str() {
            // A live Job: its UID, its creation and end.
            Some(job) => {
                let j = env.jobs.get(job).await.expect("the Job listed exists");
                assert_eq!(a["id"].as_str(), j.metadata.uid.as_deref(), "{a}");
                assert_eq!(
                    j.metadata.annotations.as_ref().unwrap()["backfill.dev/session-uuid"],
                    a["sessionUuid"].as_str().unwrap(),
                    "{a}"
                );
                assert!(
                    a["createdAt"].is_string() && a["finishedAt"].is_string(),
                    "{a}"
                );
            }
            None if status == "missing" => assert!(a["id"].is_null(), "{a}"),
            // Ledger only: a derived id, no times.
            None => {
                assert!(a["id"].is_string(), "{a}");
                assert!(a["createdAt"].is_null() && a["finishedAt"].is_null(), "{a}");
                assert!(t >= at("2026-01-01T06:00:00Z"), "{a}");
            }
        }
    }
    // A UUID per session, the same in every attempt.
    let uuids: std::collections::BTreeSet<&str> = attempts
        .iter()
        .filter_map(|a| a["sessionUuid"].as_str())
        .collect();
    assert_eq!(uuids.len(), attempts.len());

    // The table, as people read it; -o wide adds owner and UUID.
    let out = sessions(&env, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 11, "{table}");
    assert!(
        lines[0].starts_with("SESSION") && lines[0].ends_with("FINISHED"),
        "{table}"
    );
    let line = |session: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(session))
            .unwrap_or_else(|| panic!("no line for {session}:\n{table}"))
    };
    let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        words(line("2025-12-31T22:00:00+00:00"))[1..],
        ["missing", "-", "-", "-", "-"]
    );
    assert_eq!(
        words(line("2026-01-01T05:00:00+00:00"))[1..4],
        [
            "error".to_string(),
            "january-retry-1".to_string(),
            format!("january-rerun-1-b{}", plan[5])
        ]
    );
    assert_eq!(
        words(line("2026-01-01T07:00:00+00:00"))[1..],
        ["success", "hourly", "-", "-", "-"]
    );
    let out = sessions(&env, &["-o", "wide"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wide = text(&out.stdout);
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .ends_with("OWNER                      SESSION UUID"),
        "{wide}"
    );
    let row = wide
        .lines()
        .find(|l| l.starts_with("2026-01-01T03:00:00+00:00"))
        .expect("a row for 03:00");
    assert!(
        row.contains("Backfill/january-rerun-1")
            && row.ends_with(attempts[5]["sessionUuid"].as_str().unwrap()),
        "{wide}"
    );

    // kubectl's conventions: a usage error exits 2, a missing Schedule 1,
    // both on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-backfill"))
        .args(["sessions", "hourly", "--from", "yesterday", "--to", TO])
        .args(["-n", &env.ns.name, "--kubeconfig", &kubeconfig()])
        .output()
        .expect("kubectl-backfill runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--from \"yesterday\""),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-backfill"))
        .args(["sessions", "nightly", "--from", FROM, "--to", TO])
        .args(["-n", &env.ns.name, "--kubeconfig", &kubeconfig()])
        .output()
        .expect("kubectl-backfill runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Schedule \"nightly\" not found"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
