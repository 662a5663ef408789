//! The operator against the API server's own limit, side by side in one
//! run on the local control plane (`make bench` starts it):
//!
//! - Backfill: 2,000 sessions with `maxInFlight: 2000` and instantly
//!   succeeding pods, against a plain client creating the same 2,000 Jobs
//!   with the same concurrency. Prints Jobs created per second for both and
//!   the ratio (target >= 0.8), the operator's API requests per session
//!   (from `apiserver_request_total`, target <= 3) and its peak RSS.
//! - Schedule: a `* * * * *` Schedule on a fast clock; prints the API
//!   requests one scheduled session costs.
//!
//! `cargo test --all-targets` runs this file too: without `--bench` it
//! only says how to run it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backfill_operator::api::{Backfill, Schedule};
use backfill_operator::core::ZonedCron;
use backfill_operator::core::job::{Attempt, OwnerKind};
use common::operator::Operator;
use common::poll::eventually;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

const SESSIONS: usize = 2_000;
/// The operator creates Jobs 64 at a time; so does the plain client.
const CONCURRENCY: usize = 64;

fn job_template() -> serde_json::Value {
    json!({
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]
            }}
        }
    })
}

/// `apiserver_request_total` summed by resource and verb, for the
/// resources the operator writes.
async fn requests(client: &Client) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.expect("metrics");
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let resource = label("resource");
        let sub = label("subresource");
        let verb = label("verb");
        // What the operator does: create, patch (finalizers) and delete
        // Jobs, apply status, write the session ledger. Gets and lists of Schedules and Backfills
        // are this benchmark's own polling; Events are counted apart (the
        // job controller's are among them).
        let key = match (resource.as_str(), sub.as_str(), verb.as_str()) {
            ("jobs", "", "POST" | "PATCH" | "DELETE") => format!("jobs {verb}"),
            ("backfills" | "schedules", "status", _) => format!("{resource}/status {verb}"),
            // The ledger is the operator's alone: every request counts.
            ("sessionledgers", "", _) => format!("sessionledgers {verb}"),
            ("events", _, "POST" | "PATCH") => format!("events {verb}"),
            _ => continue,
        };
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(key).or_default() += value;
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The plain client creates the very Jobs the operator would: built by
/// the same code, with labels, annotations, environment and an owner
/// reference (to a ConfigMap here), less the finalizer.
async fn raw_client(client: &Client, ns: &str) -> Duration {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut owner = ConfigMap::default();
    owner.metadata.name = Some("owner".into());
    let owner = configmaps
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let template: JobTemplateSpec = serde_json::from_value(job_template()).unwrap();
    let clock = ZonedCron::new("* * * * *", None).unwrap();
    let jobs: Vec<Job> = clock
        .sessions_from(1_767_225_600)
        .take(SESSIONS)
        .enumerate()
        .map(|(index, session)| {
            let mut job = Attempt {
                kind: OwnerKind::Backfill,
                owner: owner.clone(),
                namespace: ns,
                schedule_name: "minutely",
                schedule_uid: "0f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",
                backfill_name: Some("raw"),
                attempt_name: "raw",
                clock: &clock,
                session,
                plan_index: Some(index as u64),
            }
            .build_job(&template);
            job.metadata.finalizers = None;
            job
        })
        .collect();
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(jobs)
        .map(|job| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &job).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = start.elapsed();
    assert!(results.iter().all(|r| r.is_ok()), "raw creates failed");
    elapsed
}

async fn operator_backfill(
    client: &Client,
    ns: &str,
) -> (Duration, BTreeMap<String, f64>, Option<u64>) {
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), ns);
    let backfills: Api<Backfill> = Api::namespaced(client.clone(), ns);
    let schedule: Schedule = serde_json::from_value(json!({
        "apiVersion": "backfill.dev/v1alpha1", "kind": "Schedule",
        "metadata": {"name": "minutely"},
        "spec": {"schedule": "* * * * *", "suspend": true, "jobTemplate": job_template()}
    }))
    .unwrap();
    schedules
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    let mut operator = Operator::start(ns, &[]).await;
    let before = requests(client).await;
    let backfill: Backfill = serde_json::from_value(json!({
        "apiVersion": "backfill.dev/v1alpha1", "kind": "Backfill",
        "metadata": {"name": "bench"},
        "spec": {
            "scheduleRef": {"name": "minutely"},
            "from": "2026-01-01T00:00:00Z", "count": SESSIONS, "maxInFlight": SESSIONS
        }
    }))
    .unwrap();
    let start = Instant::now();
    backfills
        .create(&PostParams::default(), &backfill)
        .await
        .unwrap();
    // The operator records the launch once every create has returned.
    let created = eventually("all Jobs created", Duration::from_secs(600), || async {
        let bf = backfills.get("bench").await.map_err(|e| e.to_string())?;
        match bf.status.and_then(|s| s.run) {
            Some(run) if run.launched as usize >= SESSIONS => Ok(start.elapsed()),
            run => Err(format!("run {run:?}")),
        }
    })
    .await;
    eventually(
        "the backfill to finish",
        Duration::from_secs(900),
        || async {
            let bf = backfills.get("bench").await.map_err(|e| e.to_string())?;
            let s = bf.status.ok_or("no status yet")?;
            if s.processed_count as usize == SESSIONS && s.running_count == 0 {
                Ok(())
            } else {
                Err(format!(
                    "processed {}, running {}",
                    s.processed_count, s.running_count
                ))
            }
        },
    )
    .await;
    let after = requests(client).await;
    let rss = operator.pid().and_then(peak_rss_kib);
    operator.terminate().await;
    (created, delta(&before, &after), rss)
}

async fn operator_schedule(client: &Client, ns: &str) -> (usize, BTreeMap<String, f64>) {
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), ns);
    let mut operator = Operator::start(ns, &["--time-scale", "30"]).await;
    let before = requests(client).await;
    let schedule: Schedule = serde_json::from_value(json!({
        "apiVersion": "backfill.dev/v1alpha1", "kind": "Schedule",
        "metadata": {"name": "fast"},
        "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 3, "jobTemplate": job_template()}
    }))
    .unwrap();
    schedules
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    let sessions = eventually(
        "20 scheduled sessions",
        Duration::from_secs(300),
        || async {
            let s = schedules.get("fast").await.map_err(|e| e.to_string())?;
            let s = s.status.ok_or("no status yet")?;
            if s.succeeded_sessions >= 20 {
                Ok(s.succeeded_sessions as usize)
            } else {
                Err(format!("{} sessions succeeded", s.succeeded_sessions))
            }
        },
    )
    .await;
    schedules
        .patch(
            "fast",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let after = requests(client).await;
    operator.terminate().await;
    (sessions, delta(&before, &after))
}

fn per_session(d: &BTreeMap<String, f64>, sessions: usize) -> (f64, f64) {
    let total: f64 = d
        .iter()
        .filter(|(k, _)| !k.starts_with("events"))
        .map(|(_, v)| v)
        .sum();
    let events: f64 = d
        .iter()
        .filter(|(k, _)| k.starts_with("events"))
        .map(|(_, v)| v)
        .sum();
    (total / sessions as f64, events / sessions as f64)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator benchmark: run `make bench` (it needs the local control plane)");
        return;
    }
    let client = common::client().await;
    common::install_crds(&client).await;

    // The Schedule first, on a quiet control plane.
    let sched_ns = common::TestNamespace::new(&client, "bench-sched").await;
    let (sessions, sched_requests) = operator_schedule(&client, &sched_ns.name).await;
    let raw_ns = common::TestNamespace::new(&client, "bench-raw").await;
    let raw = raw_client(&client, &raw_ns.name).await;
    let op_ns = common::TestNamespace::new(&client, "bench-op").await;
    let (op, bf_requests, rss) = operator_backfill(&client, &op_ns.name).await;

    let rate = |d: Duration| SESSIONS as f64 / d.as_secs_f64();
    println!(
        "Backfill of {SESSIONS} sessions, maxInFlight {SESSIONS}, against a plain client, {CONCURRENCY} creates in flight each:"
    );
    println!("  plain client: {:>8.1} Jobs/s ({:?})", rate(raw), raw);
    println!(
        "  operator:     {:>8.1} Jobs/s ({:?}, from apply to the last Job created)",
        rate(op),
        op
    );
    println!(
        "  ratio operator / plain client: {:.2} (target >= 0.80)",
        rate(op) / rate(raw)
    );
    let (per, ev) = per_session(&bf_requests, SESSIONS);
    println!(
        "  operator API requests per session: {per:.2} (target <= 3); Events, the job controller's among them: {ev:.2}"
    );
    println!("    by resource and verb: {bf_requests:?}");
    if let Some(kib) = rss {
        println!("  operator peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    let (per, ev) = per_session(&sched_requests, sessions);
    println!("Schedule \"* * * * *\" on a fast clock, {sessions} sessions:");
    println!(
        "  operator API requests per scheduled session: {per:.2}; Events, the job controller's among them: {ev:.2}"
    );
    println!("    by resource and verb: {sched_requests:?}");
    // The namespaces go when dropped.
    drop((raw_ns, op_ns, sched_ns));
}
