//! The session ledger end to end: outcomes outlive their Jobs in
//! `SessionLedger` objects, and a Backfill's `reprocess` is judged
//! against them. The operator runs as a real process per test against the
//! local control plane; Jobs run through the real job controller and
//! kwok, and history limits delete them.

mod common;

use std::collections::BTreeSet;

use kube::api::ListParams;
use serde_json::{Value, json};

use common::api::{
    Env, apply, apply_hourly, apply_hourly_backfill, backfill_manifest, get, ledgers, patch_spec,
    schedule_manifest, setup,
};
use common::events::wait_event;
use common::instants::{MINUTE, hours, rfc3339_utc};
use common::kwok::{FailStage, RUN_FOR};
use common::operator::{FAILPOINT, Operator};
use common::poll::eventually;
use common::status::{RUN_DEADLINE, counter, phase, status, summary, wait_finished, wait_phase};
use common::tracker::JobTracker;
use common::{DEADLINE, repo_root};

/// The ledger objects' (succeeded, failed, killed) summed over months.
async fn ledger_counts(env: &Env) -> (i64, i64, i64) {
    let list = ledgers(env)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing SessionLedgers: {e}"));
    list.items.iter().fold((0, 0, 0), |(s, f, k), l| {
        let spec = &l.data["spec"];
        (
            s + spec["succeeded"].as_i64().unwrap_or(0),
            f + spec["failed"].as_i64().unwrap_or(0),
            k + spec["killed"].as_i64().unwrap_or(0),
        )
    })
}

async fn wait_ledger(env: &Env, want: (i64, i64, i64)) {
    eventually(
        &format!("the ledger to hold (succeeded, failed, killed) {want:?}"),
        DEADLINE,
        || async {
            let got = ledger_counts(env).await;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
}

/// `kubectl get sessionledgers` as a user types it.
fn kubectl_get_ledgers(env: &Env) -> String {
    let output = std::process::Command::new(repo_root().join(".cluster/bin/kubectl"))
        .args(["get", "sessionledgers", "-n", &env.ns.name])
        .env("KUBECONFIG", repo_root().join(".cluster/kubeconfig"))
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl get sessionledgers: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn minutes(from: i64, to: i64) -> BTreeSet<i64> {
    (from..to).step_by(MINUTE as usize).collect()
}

/// The even minutes of the hour from `origin` (the 30th second of a
/// minute), whose scheduled runs fail while the returned stage lives; a
/// Backfill's runs of them succeed.
async fn even_minutes_fail(env: &Env, origin: &str) -> (Vec<i64>, FailStage) {
    let start = common::instants::at(origin);
    let even: Vec<i64> = minutes(start - 30, start + 3_600)
        .into_iter()
        .filter(|m| (m / MINUTE) % 2 == 0)
        .collect();
    let stage = FailStage::for_schedules(env, &even).await;
    (even, stage)
}

/// A Schedule runs minutely sessions, some failing, and its history limits
/// delete the Jobs; the ledger keeps every outcome. Backfills over a range
/// that also holds sessions from before the Schedule existed then run:
/// with the default `reprocess` the failed and never-run sessions, with
/// `Missing` the never-run ones, with `All` all. Their outcomes land in
/// the ledger too, so a second Backfill like the first runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_run_only_what_the_ledger_lacks() {
    let env = setup("ledger-reprocess").await;
    let tracker = JobTracker::start_all(&env.jobs).await;
    let origin = "2026-03-10T00:00:30Z";
    let (even, _stage) = even_minutes_fail(&env, origin).await;
    let _op = Operator::start(
        &env.ns.name,
        &["--time-scale", "60", "--time-origin", origin],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest(
            "minutely",
            "* * * * *",
            &[],
            json!({"suspend": false, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
        ),
    )
    .await;
    eventually("6 scheduled sessions finished", DEADLINE, || async {
        let done = tracker
            .of("")
            .iter()
            .filter(|j| j.outcome.is_some())
            .count();
        if done >= 6 {
            Ok(())
        } else {
            Err(format!("{done} finished"))
        }
    })
    .await;
    let generation = patch_spec(&env.schedules, "minutely", json!({"suspend": true})).await;
    // Settled: suspended, nothing running, every scheduled Job finished
    // and released, and the history limits applied.
    let ran = eventually("the suspended Schedule to settle", DEADLINE, || async {
        let s = get(&env.schedules, "minutely").await;
        let jobs = tracker.of("");
        let left = jobs.iter().filter(|j| !j.deleted).count();
        let settled = status(&s)["observedGeneration"].as_i64() == Some(generation)
            && counter(&s, "activeCount") == 0
            && jobs.iter().all(|j| j.outcome.is_some() && !j.finalizer)
            && left <= 2;
        if settled {
            Ok(tracker.sessions("").into_iter().collect::<BTreeSet<i64>>())
        } else {
            Err(format!("{} Jobs left; {}", left, status(&s)))
        }
    })
    .await;
    let failed: BTreeSet<i64> = ran.iter().copied().filter(|m| even.contains(m)).collect();
    let succeeded: BTreeSet<i64> = ran.difference(&failed).copied().collect();
    assert!(!failed.is_empty() && succeeded.len() >= 2, "ran {ran:?}");
    wait_ledger(&env, (succeeded.len() as i64, failed.len() as i64, 0)).await;
    let table = kubectl_get_ledgers(&env);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header[..4],
        ["NAME", "SCHEDULE", "PERIOD", "SUCCEEDED"],
        "{table}"
    );
    assert!(table.contains("minutely-2026-03"), "{table}");
    println!("{table}");

    // A range from 5 minutes before the Schedule's first session to just
    // after its last: never-run, failed and succeeded sessions.
    let (first, last) = (*ran.first().unwrap(), *ran.last().unwrap());
    let planned = minutes(first - 5 * MINUTE, last + MINUTE);
    let never_run: BTreeSet<i64> = planned.difference(&ran).copied().collect();
    assert!(never_run.len() >= 5, "{never_run:?}");
    let range = json!({
        "from": rfc3339_utc(first - 5 * MINUTE),
        "to": rfc3339_utc(last + MINUTE),
        "maxInFlight": 50,
    });
    // Jobs that take a while, so the three Backfills all start from the
    // ledger as it is now, before any of their outcomes lands.
    patch_spec(
        &env.schedules,
        "minutely",
        json!({"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {RUN_FOR: "5s"}}}}}}),
    )
    .await;
    let cases: [(&str, Value, BTreeSet<i64>); 3] = [
        (
            "by-default",
            Value::Null,
            never_run.union(&failed).copied().collect(),
        ),
        ("by-missing", json!("Missing"), never_run.clone()),
        ("by-all", json!("All"), planned.clone()),
    ];
    // Applied suspended: each starts (judges `reprocess` and freezes its
    // plan) and pauses, so none judges while another's Jobs run, which
    // would leave their sessions out as under way.
    for (name, reprocess, _) in &cases {
        let mut spec = range.clone();
        spec["suspend"] = json!(true);
        if !reprocess.is_null() {
            spec["reprocess"] = reprocess.clone();
        }
        apply(&env.backfills, &backfill_manifest(name, "minutely", spec)).await;
    }
    for (name, _, _) in &cases {
        wait_phase(&env, name, "Paused").await;
    }
    for (name, _, _) in &cases {
        patch_spec(&env.backfills, name, json!({"suspend": null})).await;
    }
    // They overlap, and one Job per session runs at a time: a Backfill
    // reaching a session another one runs waits for it, then leaves it
    // out if its `reprocess` would not run it again (`skippedCount`).
    // Which one gets a session first depends on timing; what each judged
    // at its start, and what it may run, does not.
    for (name, reprocess, want) in &cases {
        let bf = wait_finished(&env, name, RUN_DEADLINE, |_| {}).await;
        assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
        assert_eq!(
            status(&bf)["preview"]["skippedByReprocess"]
                .as_i64()
                .unwrap_or(0),
            (planned.len() - want.len()) as i64,
            "{name}: {}",
            status(&bf)["preview"]
        );
        let ran = tracker.sessions(name);
        let skipped = counter(&bf, "skippedCount");
        assert!(ran.is_subset(want), "{name} ran other sessions: {ran:?}");
        assert_eq!(counter(&bf, "totalEstimated"), ran.len() as i64, "{name}");
        assert_eq!(ran.len() as i64 + skipped, want.len() as i64, "{name}");
        if reprocess == "All" {
            assert_eq!(&ran, want, "{name}: All leaves nothing out");
        }
    }
    assert_eq!(
        tracker.sessions_run_twice_at_once(),
        Vec::<Vec<String>>::new(),
        "a session ran twice at once"
    );
    // Every planned session has now succeeded in the ledger; the
    // Schedule's recent sessions no longer count failures.
    wait_ledger(&env, (planned.len() as i64, 0, 0)).await;
    eventually(
        "the Schedule's recent sessions updated",
        DEADLINE,
        || async {
            let s = get(&env.schedules, "minutely").await;
            let recent = &status(&s)["recentSessions"];
            let count = |field: &str| recent[field].as_i64().unwrap_or(-1);
            // Every session since the Schedule was created has succeeded
            // (scheduled or backfilled) or, once suspended, is missing. On
            // the fast clock "since" may start a session before the first
            // scheduled run: that one was backfilled.
            let settled = count("failed") == 0
                && count("succeeded") >= ran.len() as i64
                && count("succeeded") + count("missing") == count("sessions");
            if settled {
                Ok(())
            } else {
                Err(recent.to_string())
            }
        },
    )
    .await;

    // The same Backfill again: nothing to run, and it says why.
    apply(
        &env.backfills,
        &backfill_manifest("again", "minutely", range),
    )
    .await;
    let again = wait_finished(&env, "again", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&again), "Succeeded", "{}", summary(&again));
    assert_eq!(counter(&again, "totalEstimated"), 0);
    assert!(tracker.sessions("again").is_empty());
    let message = wait_event(&env, "again", "Normal", "NothingToRun").await;
    assert!(
        message.contains(&format!("{} already succeeded", planned.len())),
        "{message}"
    );
}

/// A Schedule's own outcomes wait in its `status.unfiledOutcomes` (no
/// SessionLedger write per session) and count as the ledger's: a
/// Backfill's `reprocess` is judged against them. Once the Schedule is
/// quiet (suspended, nothing running) they reach the SessionLedger in one
/// write, and a session the Backfill ran again after the Schedule keeps
/// the Backfill's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedules_outcomes_wait_in_its_status_and_reach_the_ledger_together() {
    let env = setup("ledger-unfiled").await;
    let tracker = JobTracker::start_all(&env.jobs).await;
    // Ten operator seconds per real second: a session every 6 s, so the
    // default batch of 64 is not reached during the test.
    let origin = "2026-03-10T00:00:30Z";
    let (even, _stage) = even_minutes_fail(&env, origin).await;
    let _op = Operator::start(
        &env.ns.name,
        &["--time-scale", "10", "--time-origin", origin],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({"suspend": false})),
    )
    .await;
    // Two sessions ended and released: their outcomes are counted in the
    // status, and no SessionLedger exists.
    let released = |jobs: &[common::tracker::Seen]| -> BTreeSet<i64> {
        jobs.iter()
            .filter(|j| j.outcome.is_some() && !j.finalizer)
            .filter_map(|j| j.session)
            .collect()
    };
    let first_two: Vec<i64> = tracker
        .wait("two scheduled sessions released", "", |jobs| {
            released(jobs).len() >= 2
        })
        .await
        .iter()
        .filter(|j| j.outcome.is_some() && !j.finalizer)
        .filter_map(|j| j.session)
        .take(2)
        .collect();
    let (first, second) = (first_two[0], first_two[1]);
    assert_eq!(second - first, MINUTE, "{first_two:?}");
    let s = get(&env.schedules, "minutely").await;
    let unfiled: BTreeSet<(String, String)> = status(&s)["unfiledOutcomes"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|u| {
                    (
                        u["session"].as_str().unwrap_or("").to_string(),
                        u["outcome"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let outcome_of = |at: i64| {
        if even.contains(&at) {
            "Failed"
        } else {
            "Succeeded"
        }
    };
    for at in [first, second] {
        let want = (rfc3339_utc(at), outcome_of(at).to_string());
        assert!(unfiled.contains(&want), "{want:?} not in {}", status(&s));
    }
    assert_eq!(
        ledger_counts(&env).await,
        (0, 0, 0),
        "no SessionLedger written per session"
    );

    // A Backfill of the two minutes before and the two sessions: the
    // default `reprocess` runs the never-run and the failed ones.
    let planned = minutes(first - 2 * MINUTE, second + MINUTE);
    let failed: BTreeSet<i64> = [first, second]
        .into_iter()
        .filter(|at| even.contains(at))
        .collect();
    let want: BTreeSet<i64> = planned
        .iter()
        .copied()
        .filter(|at| *at < first || failed.contains(at))
        .collect();
    apply(
        &env.backfills,
        &backfill_manifest(
            "fix",
            "minutely",
            json!({"from": rfc3339_utc(first - 2 * MINUTE), "to": rfc3339_utc(second + MINUTE), "maxInFlight": 4}),
        ),
    )
    .await;
    let bf = wait_finished(&env, "fix", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(tracker.sessions("fix"), want, "{}", summary(&bf));
    assert_eq!(
        status(&bf)["preview"]["skippedByReprocess"].as_i64(),
        Some((planned.len() - want.len()) as i64),
        "{}",
        status(&bf)["preview"]
    );

    // Quiet: the unfiled outcomes reach the SessionLedger in one write.
    let generation = patch_spec(&env.schedules, "minutely", json!({"suspend": true})).await;
    let ran = eventually(
        "the suspended Schedule to file its outcomes",
        DEADLINE,
        || async {
            let s = get(&env.schedules, "minutely").await;
            let jobs = tracker.of("");
            let settled = status(&s)["observedGeneration"].as_i64() == Some(generation)
                && counter(&s, "activeCount") == 0
                && jobs.iter().all(|j| j.outcome.is_some() && !j.finalizer)
                && status(&s)["unfiledOutcomes"].is_null();
            if settled {
                Ok(tracker.sessions(""))
            } else {
                Err(status(&s).to_string())
            }
        },
    )
    .await;
    // Each session's latest attempt: the Backfill's where it ran one
    // (recorded after the Schedule's), else the Schedule's.
    let backfilled = tracker.sessions("fix");
    let all: BTreeSet<i64> = ran.union(&backfilled).copied().collect();
    let failed_now = all
        .iter()
        .filter(|at| !backfilled.contains(at) && even.contains(at))
        .count() as i64;
    wait_ledger(&env, (all.len() as i64 - failed_now, failed_now, 0)).await;
}

/// A Backfill started while another one's Jobs run some of its sessions
/// leaves those out (default `reprocess`): no session runs twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_running_elsewhere_are_not_run_again() {
    let env = setup("ledger-running").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    // Long enough for the second Backfill to start while they run.
    apply_hourly(&env, Some("6s")).await;
    let first = hours("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z");
    apply_hourly_backfill(
        &env,
        "first",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T03:00:00Z", "maxInFlight": 3}),
    )
    .await;
    tracker
        .wait("the first Backfill's 3 Jobs to run", "first", |jobs| {
            jobs.len() == 3 && jobs.iter().all(|j| j.started && j.outcome.is_none())
        })
        .await;
    apply_hourly_backfill(
        &env,
        "second",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T05:00:00Z", "maxInFlight": 5}),
    )
    .await;
    let second = wait_finished(&env, "second", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&second), "Succeeded", "{}", summary(&second));
    assert_eq!(
        counter(&second, "totalEstimated"),
        2,
        "{}",
        summary(&second)
    );
    let reason = status(&second)["preview"]["skippedReason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("3 run now by another Job of the Schedule"),
        "{reason}"
    );
    assert_eq!(
        tracker.sessions("second"),
        hours("2026-01-01T03:00:00Z", "2026-01-01T05:00:00Z")
            .into_iter()
            .collect::<BTreeSet<i64>>(),
        "the second Backfill ran only the sessions nobody ran"
    );
    let done = wait_finished(&env, "first", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counter(&done, "succeededCount"), 3, "{}", summary(&done));
    assert_eq!(
        tracker.sessions("first"),
        first.into_iter().collect::<BTreeSet<i64>>()
    );
}

/// The operator dies after the ledger took a Backfill's outcomes and
/// before its status counted them: the Jobs keep their finalizer, and
/// after a restart the outcomes are counted once and stay in the ledger
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_reaches_the_ledger_once_across_a_crash() {
    let env = setup("ledger-crash").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut op =
        Operator::start_with_env(&env.ns.name, &[], &[(FAILPOINT, "after-ledger-write")]).await;
    apply_hourly(&env, None).await;
    let from = "2026-01-01T00:00:00Z";
    let to = "2026-01-01T03:00:00Z";
    apply_hourly_backfill(
        &env,
        "three",
        json!({"from": from, "to": to, "maxInFlight": 3}),
    )
    .await;
    let status_code = op.wait_exit(DEADLINE).await;
    assert!(!status_code.success(), "the failpoint aborts the operator");
    let bf = get(&env.backfills, "three").await;
    assert_eq!(
        counter(&bf, "succeededCount"),
        0,
        "the status counted nothing before the crash: {}",
        summary(&bf)
    );
    let (in_ledger, _, _) = ledger_counts(&env).await;
    assert!(in_ledger >= 1, "the ledger took the first outcomes");
    assert!(
        tracker.of("three").iter().all(|j| j.finalizer),
        "a Job was released before its outcome was counted"
    );

    op.restart_with_env(&[]).await;
    let bf = wait_finished(&env, "three", RUN_DEADLINE, |_| {}).await;
    assert_eq!(
        (
            counter(&bf, "processedCount"),
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount")
        ),
        (3, 3, 0),
        "{}",
        summary(&bf)
    );
    wait_ledger(&env, (3, 0, 0)).await;
    eventually("every finalizer released", DEADLINE, || async {
        let jobs = tracker.of("three");
        if jobs.len() == 3 && jobs.iter().all(|j| !j.finalizer) {
            Ok(())
        } else {
            Err(format!("{jobs:?}"))
        }
    })
    .await;
    assert_eq!(
        tracker.sessions("three"),
        hours(from, to).into_iter().collect()
    );
    assert_eq!(ledger_counts(&env).await, (3, 0, 0));
}

/// Ledger months that ended longer ago than the retention (400 days by
/// default) are deleted by the operator; the rest go with their Schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_months_expire_and_the_ledger_goes_with_its_schedule() {
    let env = setup("ledger-retention").await;
    let _op = Operator::start(&env.ns.name, &["--ledger-retention-days", "400"]).await;
    apply_hourly(&env, None).await;
    // One Backfill of sessions long past the retention, one of recent
    // sessions (the last three full hours before now).
    let now = jiff::Timestamp::now().as_second();
    let recent_to = now - now.rem_euclid(3_600);
    let recent_from = recent_to - 3 * 3_600;
    for (name, from, to) in [
        (
            "old",
            "2024-01-01T00:00:00Z".to_string(),
            "2024-01-01T03:00:00Z".to_string(),
        ),
        ("recent", rfc3339_utc(recent_from), rfc3339_utc(recent_to)),
    ] {
        apply_hourly_backfill(
            &env,
            name,
            json!({"from": from, "to": to, "maxInFlight": 3}),
        )
        .await;
    }
    for name in ["old", "recent"] {
        let bf = wait_finished(&env, name, RUN_DEADLINE, |_| {}).await;
        assert_eq!(
            (phase(&bf), counter(&bf, "succeededCount")),
            ("Succeeded", 3),
            "{}",
            summary(&bf)
        );
    }
    let months: BTreeSet<String> = (recent_from..recent_to)
        .step_by(3_600)
        .map(|t| format!("hourly-{}", &rfc3339_utc(t)[..7]))
        .collect();
    eventually("only the recent months kept", DEADLINE, || async {
        let names: BTreeSet<String> = ledgers(&env)
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing SessionLedgers: {e}"))
            .items
            .into_iter()
            .filter_map(|l| l.metadata.name)
            .collect();
        if names == months {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;

    env.schedules
        .delete("hourly", &kube::api::DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting the Schedule: {e}"));
    eventually("the ledger deleted with its Schedule", DEADLINE, || async {
        let left = ledgers(&env)
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing SessionLedgers: {e}"))
            .items
            .len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await;
}
