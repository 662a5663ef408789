//! Two replicas under leader election, end to end: exactly one works
//! while the other stands by (and says so on `/metrics` and `/readyz`),
//! and when the leader is killed the standby takes the Lease over within
//! the lease duration and finishes the work, with no session run twice.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::api::{apply_hourly, apply_hourly_backfill, setup};
use common::instants::hours;
use common::operator::Operator;
use common::poll::eventually;
use common::status::{RUN_DEADLINE, counter, phase, summary, wait_backfill, wait_finished};
use common::tracker::{JobTracker, assert_one_job_per_session};
use common::{DEADLINE, http};

/// The lease duration the replicas use here (15 s by default).
const LEASE_SECONDS: u64 = 4;

/// The address a replica serves its metrics on (it picks a free port and
/// logs it).
fn http_address(op: &Operator) -> String {
    op.log_lines_containing("serving /metrics")
        .iter()
        .find_map(|l| l.split("address=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap_or(a).to_string())
        .unwrap_or_else(|| panic!("no metrics address logged:\n{}", op.log_tail(20)))
}

/// GET `path` from a replica: (status line, body).
async fn http_get(op: &Operator, path: &str) -> (String, String) {
    http::get(&http_address(op), path)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(20)))
}

/// A sample's value in a replica's metrics (0 when absent).
async fn metric(op: &Operator, name: &str) -> f64 {
    let (_, body) = http_get(op, "/metrics").await;
    http::sample(&body, name)
}

/// Replica a, leading, then replica b, standing by.
async fn replicas(ns: &str, args: &[&str]) -> (Operator, Operator) {
    let a = Operator::start_with_env(ns, args, &[("POD_NAME", "replica-a")]).await;
    wait_leading(&a, "replica-a").await;
    let b = Operator::start_with_env(ns, args, &[("POD_NAME", "replica-b")]).await;
    (a, b)
}

/// Applies the hourly Schedule, its pods running `run_for`, and a
/// Backfill `name` over `[from, to)`, 2 at a time; waits until the leader
/// processed `processed` sessions.
async fn start_backfill(
    env: &common::api::Env,
    name: &str,
    (from, to): (&str, &str),
    run_for: &str,
    processed: i64,
) {
    apply_hourly(env, Some(run_for)).await;
    apply_hourly_backfill(env, name, json!({"from": from, "to": to, "maxInFlight": 2})).await;
    wait_backfill(
        env,
        name,
        "some sessions processed by the leader",
        DEADLINE,
        |bf| counter(bf, "processedCount") >= processed,
    )
    .await;
}

/// Waits until `op` runs its controllers: it leads.
async fn wait_leading(op: &Operator, who: &str) {
    eventually(&format!("{who} to lead"), DEADLINE, || async {
        if op.log_lines_containing("controllers started").is_empty() {
            Err(op.log_tail(5))
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_works_and_the_standby_takes_over_when_it_dies() {
    let env = setup("leader").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let ns = env.ns.name.clone();
    let lease = LEASE_SECONDS.to_string();
    let args = [
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--lease-duration-seconds",
        &lease,
        "--listen-address",
        "127.0.0.1:0",
    ];
    let (mut a, b) = replicas(&ns, &args).await;

    let (from, to) = ("2026-01-01T00:00:00Z", "2026-01-01T20:00:00Z");
    start_backfill(&env, "twenty", (from, to), "1s", 4).await;

    // The standby does nothing, and says so; both are ready.
    assert_eq!(metric(&a, "backfill_operator_leader").await, 1.0);
    assert_eq!(metric(&b, "backfill_operator_leader").await, 0.0);
    let standby_reconciles = metric(
        &b,
        "backfill_operator_reconciles_total{controller=\"backfill\"}",
    )
    .await;
    assert_eq!(standby_reconciles, 0.0, "the standby reconciled");
    assert!(
        metric(
            &a,
            "backfill_operator_jobs_created_total{controller=\"backfill\"}"
        )
        .await
            >= 4.0
    );
    for op in [&a, &b] {
        let (status, _) = http_get(op, "/readyz").await;
        assert!(status.contains("200"), "/readyz: {status}");
        let (status, _) = http_get(op, "/healthz").await;
        assert!(status.contains("200"), "/healthz: {status}");
    }

    // The leader dies without giving the Lease up.
    a.kill();
    let killed = Instant::now();
    let took = eventually("replica-b to take over", DEADLINE, || async {
        if b.log_lines_containing("controllers started").is_empty() {
            Err(b.log_tail(5))
        } else {
            Ok(killed.elapsed())
        }
    })
    .await;
    println!("replica-b led {took:?} after replica-a was killed (lease {LEASE_SECONDS}s)");
    // Within the lease duration, give or take a renewal period and the
    // time to start the controllers on a busy machine.
    assert!(
        took < Duration::from_secs(LEASE_SECONDS + 4),
        "the takeover took {took:?}"
    );

    let bf = wait_finished(&env, "twenty", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 20, "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "twenty", &hours(from, to));
    assert_eq!(metric(&b, "backfill_operator_leader").await, 1.0);
    assert!(
        metric(
            &b,
            "backfill_operator_reconciles_total{controller=\"backfill\"}"
        )
        .await
            > 0.0
    );
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(op: &Operator, signal: &str) {
    let pid = op.pid().expect("a running replica").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -{signal} {pid}: {sent}");
}

/// A leader paused for twice the lease duration (SIGSTOP: a frozen node,
/// a starved runtime) wakes up past its renew deadline: it starts no write
/// after the standby took over (its log, at debug level, says "writing"
/// before each one), it exits, and the standby finishes the work with no
/// session run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_writes_nothing_once_the_standby_took_over() {
    let env = setup("leader-paused").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let ns = env.ns.name.clone();
    let lease = LEASE_SECONDS.to_string();
    let args = [
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--lease-duration-seconds",
        &lease,
    ];
    let (mut a, b) = replicas(&ns, &args).await;
    let (from, to) = ("2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z");
    start_backfill(&env, "twelve", (from, to), "2s", 2).await;

    signal(&a, "STOP");
    let stopped = Instant::now();
    wait_leading(&b, "replica-b").await;
    // Paused for twice the lease duration in all.
    let pause = Duration::from_secs(2 * LEASE_SECONDS);
    eventually("the pause to last", pause + DEADLINE, || async {
        if stopped.elapsed() >= pause {
            Ok(())
        } else {
            Err(format!("{:?} of {pause:?}", stopped.elapsed()))
        }
    })
    .await;
    let before = a.all_logs().lines().count();
    signal(&a, "CONT");
    let status = a.wait_exit(DEADLINE).await;
    assert!(!status.success(), "the old leader exited with {status}");
    let after: Vec<String> = a
        .all_logs()
        .lines()
        .skip(before)
        .map(String::from)
        .collect();
    let writes: Vec<&String> = after.iter().filter(|l| l.contains("writing")).collect();
    assert!(
        writes.is_empty(),
        "the old leader started writes after it woke up:\n{}",
        writes
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        after.iter().any(|l| l.contains("leader Lease lost")),
        "the old leader did not say it lost the Lease:\n{}",
        after.join("\n")
    );

    let bf = wait_finished(&env, "twelve", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 12, "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "twelve", &hours(from, to));
}
