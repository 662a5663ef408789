//! Careless or hostile input, end to end: objects and edits that once
//! stalled a Backfill or crashed the operator for every namespace. Each
//! test runs the operator as a real process against the local control
//! plane and checks what a user expects instead: the Backfill finishes
//! with true counters, or is refused with a message that says why, and
//! the operator keeps running.

mod common;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use common::api::{Env, apply, apply_hourly, apply_hourly_backfill, schedule_manifest, setup};
use common::events::{wait_event, wait_event_about};
use common::instants::{at, rfc3339_utc};
use common::jobs::{JOB_FINALIZER, holds_outcome};
use common::kwok::RUN_FOR;
use common::operator::{JobFinalizerSweep, Operator};
use common::poll::eventually;
use common::status::{
    RUN_DEADLINE, condition, condition_message, counters, phase, summary, wait_finished,
    wait_phase, wait_stalled,
};
use common::tracker::{JobTracker, assert_one_job_per_session};
use common::{DEADLINE, FIELD_MANAGER};

/// An explicit list out of order, with one instant twice (written with
/// two offsets), runs each session once and finishes; it once ran the
/// first entry and stayed Running at 1/3 forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_list_out_of_order_with_repeats_runs_each_session_once() {
    let env = setup("hostile-list").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _operator = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, None).await;
    apply_hourly_backfill(
        &env,
        "shuffled",
        json!({
            "sessions": [
                "2026-01-01T02:00:00Z",
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T02:00:00+01:00",
            ],
            "maxInFlight": 1,
        }),
    )
    .await;
    let bf = wait_finished(&env, "shuffled", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (3, 3, 0, 0, 3), "{}", summary(&bf));
    let plan = [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
    ]
    .map(at);
    assert_one_job_per_session(&tracker, "shuffled", &plan);
}

/// `kubectl annotate job … backfill.dev/plan-index=9000000000000000000`
/// on a running Backfill Job once made the operator abort when the Job
/// finished, and again at every restart; an index edited to another one
/// the Backfill launched once made it wait forever for the session it
/// displaced. The annotation is now checked against what the operator
/// wrote: each such Job is counted by its name, with a Warning, the
/// Backfill finishes, and the operator never restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_plan_index_is_ignored_and_the_job_counted_once() {
    let env = setup("hostile-index").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut operator = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("4s")).await;
    apply_hourly_backfill(
        &env,
        "edited",
        json!({
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-01T04:00:00Z",
            "maxInFlight": 2,
        }),
    )
    .await;
    // Both running Jobs, while they run: one gets an index far past the
    // plan, the other the first one's index (one it did launch).
    let running = eventually("two running Jobs", DEADLINE, || async {
        let jobs = env
            .jobs
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<Job> = jobs
            .items
            .into_iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .is_none()
            })
            .collect();
        if running.len() == 2 {
            Ok(running)
        } else {
            Err(format!("{} running", running.len()))
        }
    })
    .await;
    let names: Vec<String> = running
        .iter()
        .map(|j| j.metadata.name.clone().unwrap())
        .collect();
    let index_of_first =
        running[0].metadata.annotations.as_ref().unwrap()["backfill.dev/plan-index"].clone();
    for (name, index) in names
        .iter()
        .zip(["9000000000000000000", index_of_first.as_str()])
    {
        env.jobs
            .patch(
                name,
                &PatchParams {
                    field_manager: Some("someone-else".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "backfill.dev/plan-index": index,
                }}})),
            )
            .await
            .unwrap_or_else(|e| panic!("annotating {name}: {e}"));
    }

    let bf = wait_finished(&env, "edited", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (4, 4, 0, 0, 4), "{}", summary(&bf));
    let warning = wait_event(&env, "edited", "Warning", "JobNotAsWritten").await;
    assert!(names.iter().any(|n| warning.contains(n)), "{warning}");
    assert!(operator.is_running(), "{}", operator.log_tail(40));
    assert!(
        operator
            .log_lines_containing("memory allocation")
            .is_empty(),
        "{}",
        operator.log_tail(40)
    );
    let plan: Vec<i64> = (0..4)
        .map(|h| at("2026-01-01T00:00:00Z") + h * 3_600)
        .collect();
    assert_one_job_per_session(&tracker, "edited", &plan);
}

/// A minutely Backfill from 1970 once planned 29.9 million sessions and
/// grew its status towards etcd's limit. It is refused before it starts,
/// with a message that names the limit and where to split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_past_the_session_limit_is_refused_with_where_to_split() {
    let env = setup("hostile-huge").await;
    let _operator = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &common::api::backfill_manifest(
            "since-1970",
            "minutely",
            json!({"from": "1970-01-01T00:00:00Z", "to": rfc3339_utc(at("2030-01-01T00:00:00Z"))}),
        ),
    )
    .await;
    let bf = wait_stalled(&env, "since-1970", "PlanTooLarge").await;
    let message = condition_message(&bf, "Stalled");
    for words in [
        "more than 600000 sessions",
        "split it",
        "1971-02-21T16:00:00Z",
    ] {
        assert!(message.contains(words), "{words}: {message}");
    }
    assert!(bf.data["status"]["run"].is_null(), "{}", summary(&bf));
    let jobs = env.jobs.list(&Default::default()).await.unwrap();
    assert!(jobs.items.is_empty(), "a refused plan launched Jobs");
    let size = serde_json::to_vec(&bf.data["status"]).unwrap().len();
    assert!(size < 16 * 1024, "status of a refused plan: {size} bytes");
}

/// An owner reference is honoured in its own namespace only. A Job in
/// namespace B that names a Schedule of namespace A as its owner (under
/// the name of one of A's Jobs) is not A's: A's Schedule does not count
/// it, and A's Job of that name keeps its outcome finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_reference_across_namespaces_acts_on_nothing() {
    let a = setup("hostile-owner-a").await;
    let b = setup("hostile-owner-b").await;
    // The operator below watches both namespaces; its own sweep knows
    // neither by that name.
    let _sweeps = [&a, &b].map(|env| JobFinalizerSweep {
        namespace: env.ns.name.clone(),
    });
    let _operator = Operator::start(&format!("{},{}", a.ns.name, b.ns.name), &[]).await;
    let schedule = apply(
        &a.schedules,
        &schedule_manifest("nightly", "0 0 * * *", &[], json!({})),
    )
    .await;
    let uid = schedule.metadata.uid.clone().unwrap();
    let name = "nightly-1767225600";
    // A's Job of that name, its outcome not recorded yet by anyone.
    let victim = finished_job(&a, name, &[JOB_FINALIZER]).await;
    // The hostile Job in B. A second owner in B, which exists, keeps the
    // garbage collector from deleting it (the first owner is not in its
    // namespace, so Kubernetes counts it as absent).
    let anchor: ConfigMap = Api::namespaced(b.client.clone(), &b.ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "anchor"}})).unwrap(),
        )
        .await
        .expect("a ConfigMap in B");
    let owner = json!([
        {
            "apiVersion": "backfill.dev/v1alpha1",
            "kind": "Schedule",
            "name": "nightly",
            "uid": uid,
            "controller": true,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "anchor",
            "uid": anchor.metadata.uid,
        },
    ]);
    // It claims its owners once complete.
    finished_job(&b, name, &[JOB_FINALIZER]).await;
    b.jobs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": owner}})),
        )
        .await
        .unwrap_or_else(|e| panic!("giving B's Job an owner: {e}"));
    // A's Schedule reconciles a few times with B's Job in the cache.
    for deadline in 0..3 {
        let generation = common::api::patch_spec(
            &a.schedules,
            "nightly",
            json!({"startingDeadlineSeconds": 100 + deadline}),
        )
        .await;
        eventually(
            "the Schedule to observe its generation",
            DEADLINE,
            || async {
                let s = common::api::get(&a.schedules, "nightly").await;
                let observed = s.data["status"]["observedGeneration"].as_i64();
                if observed == Some(generation) {
                    Ok(s)
                } else {
                    Err(format!("observedGeneration {observed:?}"))
                }
            },
        )
        .await;
    }
    let counted =
        common::api::get(&a.schedules, "nightly").await.data["status"]["succeededSessions"]
            .as_i64();
    let still = a.jobs.get_opt(name).await.unwrap();
    let theirs = b.jobs.get(name).await.unwrap();

    assert_eq!(counted.unwrap_or(0), 0, "A's Schedule counted B's Job");
    let still = still.expect("A's Job of that name is gone");
    assert_eq!(still.metadata.uid, victim.metadata.uid);
    assert!(still.metadata.deletion_timestamp.is_none());
    assert_eq!(
        still.metadata.finalizers,
        Some(vec![JOB_FINALIZER.to_string()]),
        "A's Job lost its outcome finalizer through B's owner reference"
    );
    assert!(
        theirs.metadata.deletion_timestamp.is_none(),
        "B's Job was deleted"
    );
}

/// A Job labelled as a Schedule's (so the operator watches it), with
/// `finalizers` and no owner, once it completed.
async fn finished_job(env: &Env, name: &str, finalizers: &[&str]) -> Job {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"backfill.dev/schedule": "nightly", "backfill.dev/session": "1767225600"},
            "finalizers": finalizers,
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {RUN_FOR: "1s"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.37"}],
                },
            },
        },
    }))
    .unwrap();
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    env.jobs
        .create(&pp, &job)
        .await
        .unwrap_or_else(|e| panic!("creating Job {name}: {e}"));
    eventually(&format!("Job {name} to complete"), DEADLINE, || async {
        let job = env.jobs.get(name).await.map_err(|e| e.to_string())?;
        let complete = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        if complete {
            Ok(job)
        } else {
            Err(format!("{:?}", job.status))
        }
    })
    .await
}

/// A Backfill deleted with `--cascade=orphan` leaves its Jobs; applied
/// again under the same name, its Jobs' names are taken by Jobs it does
/// not own. It once took them for its own and waited for them forever;
/// now each such session counts as failed, with a Warning that says why,
/// and the Backfill finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_names_taken_by_orphaned_jobs_fail_their_sessions_instead_of_hanging() {
    let env = setup("hostile-taken").await;
    let _operator = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, None).await;
    let spec = json!({
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-01T02:00:00Z",
        "reprocess": "All",
    });
    apply_hourly_backfill(&env, "again", spec.clone()).await;
    let bf = wait_finished(&env, "again", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    env.backfills
        .delete("again", &kube::api::DeleteParams::orphan())
        .await
        .expect("deleting the Backfill, orphaning its Jobs");
    eventually("the Backfill to be gone", DEADLINE, || async {
        match env.backfills.get_opt("again").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let jobs = env.jobs.list(&Default::default()).await.unwrap();
    assert_eq!(jobs.items.len(), 2, "the orphaned Jobs");

    apply_hourly_backfill(&env, "again", spec).await;
    let bf = wait_finished(&env, "again", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(counters(&bf), (2, 0, 2, 0, 2), "{}", summary(&bf));
    let warning = wait_event(&env, "again", "Warning", "JobNameTaken").await;
    assert!(warning.contains("again-b1767225600"), "{warning}");
    let taken = condition(&bf, "JobNameTaken").expect("a JobNameTaken condition");
    assert_eq!(
        (&taken["status"], &taken["reason"]),
        (&json!("True"), &json!("JobNameTaken")),
        "{taken}"
    );
    assert!(
        taken["message"]
            .as_str()
            .unwrap_or_default()
            .contains("again-b"),
        "{taken}"
    );
    // The orphaned Jobs are left as they were.
    let after = env.jobs.list(&Default::default()).await.unwrap();
    let uids = |list: &kube::core::ObjectList<Job>| {
        let mut uids: Vec<_> = list.items.iter().map(|j| j.metadata.uid.clone()).collect();
        uids.sort();
        uids
    };
    assert_eq!(uids(&after), uids(&jobs));
}

/// A Schedule resuming after suspend once started the latest missed
/// session while a Backfill's Job ran that very session: the same session
/// twice at once. It now leaves a session another Job of it runs alone,
/// and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_schedule_does_not_start_a_session_a_backfill_runs() {
    let env = setup("hostile-twice").await;
    // The operator's clock starts just before the session: the Schedule
    // exists before it is due, and once it has passed, it stays the latest
    // due session for most of a minute of real time. The Backfill is
    // applied 20 s past it, however late the operator's clock started.
    let operator = Operator::start(
        &env.ns.name,
        &["--time-origin", "2025-12-31T23:59:45Z", "--time-scale", "1"],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[(RUN_FOR, "120s")], json!({})),
    )
    .await;
    let session = "2026-01-01T00:00:00Z";
    operator.wait_until_virtual(at(session) as f64 + 20.0).await;
    apply(
        &env.backfills,
        &common::api::backfill_manifest("first", "minutely", json!({"sessions": [session]})),
    )
    .await;
    let backfill_job = "first-b1767225600";
    eventually("the Backfill's Job to run", DEADLINE, || async {
        match env.jobs.get_opt(backfill_job).await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!(
                "{other:?}; {}",
                summary(&common::api::get(&env.backfills, "first").await)
            )),
        }
    })
    .await;

    common::api::patch_spec(&env.schedules, "minutely", json!({"suspend": false})).await;
    let note = wait_event_about(
        &env,
        "Schedule",
        "minutely",
        "Normal",
        "SessionRunElsewhere",
    )
    .await;
    assert!(note.contains(backfill_job), "{note}");
    let jobs = env.jobs.list(&Default::default()).await.unwrap();
    let names: Vec<_> = jobs
        .items
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, [backfill_job], "the session ran twice at once");
}

/// Deleting a namespace while its Backfill runs and its Schedule has Jobs
/// completes while the operator runs: every outcome finalizer comes off
/// (the owners' own when they go, then the orphans'), none holds the
/// namespace up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_running_jobs_is_deleted_within_two_minutes() {
    let env = setup("hostile-nsdelete").await;
    let _operator = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("300s")).await;
    apply_hourly_backfill(
        &env,
        "long",
        json!({
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-01T06:00:00Z",
            "maxInFlight": 3,
        }),
    )
    .await;
    eventually(
        "three running Jobs with the outcome finalizer",
        DEADLINE,
        || async {
            let jobs = env
                .jobs
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let held = jobs.items.iter().filter(|j| holds_outcome(j)).count();
            if held == 3 {
                Ok(())
            } else {
                Err(format!("{held} held"))
            }
        },
    )
    .await;

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    namespaces
        .delete(&env.ns.name, &kube::api::DeleteParams::background())
        .await
        .expect("deleting the namespace");
    let deleted = std::time::Instant::now();
    eventually(
        "the namespace to be gone",
        std::time::Duration::from_secs(120),
        || async {
            match namespaces.get_opt(&env.ns.name).await {
                Ok(None) => Ok(()),
                Ok(Some(ns)) => Err(format!("{:?}", ns.status)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    println!("namespace gone {:?} after its deletion", deleted.elapsed());
}

/// Two Backfills over the same sessions, with `reprocess: All`, once ran
/// the shared sessions twice at once. The second now waits (phase
/// `Waiting`, reason `SessionRunElsewhere`, with an Event naming the Job)
/// until the first's Job of that session ends, is woken by that end, and
/// then runs its sessions; no session ever has two active Jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_waits_for_a_session_another_backfill_runs() {
    let env = setup("hostile-exclusive").await;
    let tracker = JobTracker::start_all(&env.jobs).await;
    let _operator = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("20s")).await;
    let all = |from: &str, to: &str| json!({"from": from, "to": to, "maxInFlight": 4, "reprocess": "All"});
    apply_hourly_backfill(
        &env,
        "first",
        all("2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z"),
    )
    .await;
    tracker
        .wait("both of first's Jobs running", "first", |jobs| {
            jobs.iter().filter(|j| j.active()).count() == 2
        })
        .await;

    // Its first session is first's: it waits for it, launching nothing.
    apply_hourly_backfill(
        &env,
        "second",
        all("2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z"),
    )
    .await;
    let waiting = wait_phase(&env, "second", "Waiting").await;
    let ready = condition(&waiting, "Ready").expect("a Ready condition");
    assert_eq!(ready["reason"], "SessionRunElsewhere", "{ready}");
    let note = wait_event(&env, "second", "Normal", "SessionRunElsewhere").await;
    assert!(note.contains("first-b1767225600"), "{note}");
    assert!(
        tracker.of("second").is_empty(),
        "{}",
        tracker.history("second")
    );

    let bf = wait_finished(&env, "second", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (4, 4, 0, 0, 4), "{}", summary(&bf));
    let first = wait_finished(&env, "first", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&first), "Succeeded", "{}", summary(&first));
    // Every session of second ran once, none while first's ran it.
    let hour = |h: i64| at("2026-01-01T00:00:00Z") + h * 3_600;
    assert_one_job_per_session(&tracker, "second", &[hour(0), hour(1), hour(2), hour(3)]);
    assert_eq!(
        tracker.sessions_run_twice_at_once(),
        Vec::<Vec<String>>::new()
    );
    let first_ended = tracker
        .of("first")
        .iter()
        .filter(|j| j.session == Some(hour(0)))
        .count();
    assert_eq!(first_ended, 1);
}

/// Every SessionLedger the namespace ever held, by (name, uid), from a
/// watch started before the operator: what a list at the end cannot
/// tell (one made and deleted in between).
struct LedgersSeen {
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LedgersSeen {
    async fn start(env: &Env) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let listed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stream =
            watcher(common::api::ledgers(env), watcher::Config::default()).default_backoff();
        let task = tokio::spawn({
            let (seen, listed) = (seen.clone(), listed.clone());
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let Ok(event) = event else { continue };
                    match event {
                        watcher::Event::InitDone => {
                            listed.store(true, std::sync::atomic::Ordering::SeqCst)
                        }
                        watcher::Event::Init => {}
                        watcher::Event::InitApply(l)
                        | watcher::Event::Apply(l)
                        | watcher::Event::Delete(l) => {
                            seen.lock().unwrap().insert((
                                l.metadata.name.unwrap_or_default(),
                                l.metadata.uid.unwrap_or_default(),
                            ));
                        }
                    }
                }
            }
        });
        eventually("the SessionLedger watch to list", DEADLINE, || async {
            if listed.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("not listed yet".to_string())
            }
        })
        .await;
        LedgersSeen { seen, task }
    }

    /// The uids seen under `name`.
    fn uids(&self, name: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, u)| u.clone())
            .collect()
    }
}

impl Drop for LedgersSeen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live SessionLedgers of the namespace: name to spec.
async fn live_ledgers(env: &Env) -> std::collections::BTreeMap<String, serde_json::Value> {
    common::api::ledgers(env)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("listing SessionLedgers: {e}"))
        .items
        .into_iter()
        .map(|l| (l.metadata.name.unwrap_or_default(), l.data["spec"].clone()))
        .collect()
}

/// Waits until no Job of the namespace carries the outcome finalizer.
async fn wait_all_released(env: &Env) {
    eventually("every Job's outcome finalizer off", DEADLINE, || async {
        let jobs = env
            .jobs
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let held: Vec<_> = jobs
            .items
            .iter()
            .filter(|j| holds_outcome(j))
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        if held.is_empty() {
            Ok(())
        } else {
            Err(format!("held by {held:?}"))
        }
    })
    .await;
}

/// What the operator's log must not show after a ledger it could not
/// write: a reconcile failing again and again.
fn assert_no_retry_loop(operator: &mut Operator) {
    assert!(operator.is_running(), "{}", operator.log_tail(40));
    for needle in ["will retry", "not found", "panicked"] {
        let lines = operator.log_lines_containing(needle);
        assert!(
            lines.is_empty(),
            "the log says {needle:?}:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(
        operator.log_lines_containing("controllers started").len(),
        1,
        "the operator started more than once\n{}",
        operator.all_logs()
    );
}

/// A Backfill of sessions older than `--ledger-retention-days`: writing
/// their months would only have the retention pass delete them again.
/// Their outcomes are counted in the Backfill's status, said in a
/// `PastLedgerRetention` Event, and never written: no SessionLedger of
/// those months is made (one left from before is deleted), the recent
/// month is written, every Job loses its finalizer, and nothing is
/// retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_past_ledger_retention_are_counted_not_written() {
    let env = setup("hostile-retention").await;
    let seen = LedgersSeen::start(&env).await;
    // On the operator's clock it is 2026-03-10: with 30 days of
    // retention, January 2026 and older are past it (January ended
    // 2026-02-01, before 2026-02-08), February is not.
    apply_hourly(&env, None).await;
    let stale = common::api::ledgers(&env)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "backfill.dev/v1alpha1",
                "kind": "SessionLedger",
                "metadata": {"name": "hourly-2026-01"},
                "spec": {
                    "scheduleRef": {"name": "hourly"},
                    "period": "2026-01",
                    "from": "2026-01-01T00:00:00Z",
                    "to": "2026-02-01T00:00:00Z",
                },
            }))
            .unwrap(),
        )
        .await
        .expect("a SessionLedger of January 2026");
    let mut operator = Operator::start(
        &env.ns.name,
        &[
            "--ledger-retention-days",
            "30",
            "--time-origin",
            "2026-03-10T00:00:30Z",
            "--time-scale",
            "1",
        ],
    )
    .await;
    let failing = at("2026-01-15T12:00:00Z");
    let _fail = common::kwok::FailStage::for_backfill(&env, "old", &[failing]).await;
    apply_hourly_backfill(
        &env,
        "old",
        json!({
            "sessions": [
                "2025-12-31T23:00:00Z",
                "2026-01-15T12:00:00Z",
                "2026-01-31T23:00:00Z",
                "2026-02-01T00:00:00Z",
                "2026-02-07T00:00:00Z",
            ],
            "maxInFlight": 2,
        }),
    )
    .await;

    let bf = wait_finished(&env, "old", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(counters(&bf), (5, 4, 1, 0, 5), "{}", summary(&bf));
    let note = wait_event(&env, "old", "Normal", "PastLedgerRetention").await;
    assert!(note.contains("--ledger-retention-days"), "{note}");
    wait_all_released(&env).await;
    // February is written, with its two sessions; nothing older remains.
    let kept = eventually("only February's ledger", DEADLINE, || async {
        let live = live_ledgers(&env).await;
        if live.keys().eq(["hourly-2026-02"]) {
            Ok(live)
        } else {
            Err(format!("{:?}", live.keys().collect::<Vec<_>>()))
        }
    })
    .await;
    let february = &kept["hourly-2026-02"];
    assert_eq!(
        (february["succeeded"].as_i64(), february["failed"].as_i64()),
        (Some(2), Some(0)),
        "{february}"
    );
    // The old months were never written: December never existed, and
    // January only as the stale object the retention deleted.
    assert!(seen.uids("hourly-2025-12").is_empty());
    assert_eq!(seen.uids("hourly-2026-01"), [stale.metadata.uid.unwrap()]);
    assert_no_retry_loop(&mut operator);
}

/// A SessionLedger someone edited into nonsense (sets that are not
/// base64, which the schema cannot tell) once failed every write of its
/// month. Now each write to it is skipped with an `UnreadableLedger`
/// Warning: the Schedule keeps firing on time and counting, its Jobs
/// lose their finalizers, a Backfill of the same month runs, and the
/// operator never restarts. Deleted, as the Warning advises, the month
/// is written anew. (`--ledger-batch 1`: the Schedule writes each
/// outcome to the ledger at once, not 64 at a time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ledger_warns_and_the_schedule_keeps_its_timer() {
    let env = setup("hostile-ledger").await;
    let tracker = JobTracker::start_all(&env.jobs).await;
    // Ten operator seconds per real second: a session every 6 s.
    let origin = "2026-03-10T00:00:30Z";
    let mut operator = Operator::start(
        &env.ns.name,
        &[
            "--time-origin",
            origin,
            "--time-scale",
            "10",
            "--ledger-batch",
            "1",
        ],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest(
            "minutely",
            "* * * * *",
            &[],
            // A session started a minute late is missed, and counted.
            json!({"suspend": false, "startingDeadlineSeconds": 60}),
        ),
    )
    .await;
    let ledger = "minutely-2026-03";
    let ledgers = common::api::ledgers(&env);
    eventually("the first outcome in the ledger", DEADLINE, || async {
        let live = live_ledgers(&env).await;
        match live.get(ledger).and_then(|l| l["succeeded"].as_i64()) {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(format!("{live:?}")),
        }
    })
    .await;

    // Someone "fixes" the ledger by hand: valid for the schema, not
    // readable.
    let corrupt = json!({"spec": {"attempts": [{
        "name": "minutely",
        "owner": "Schedule/minutely",
        "updatedAt": origin,
        "succeeded": "r:not base64!",
        "failed": "b:%%%%",
    }]}});
    ledgers
        .patch(
            ledger,
            &PatchParams {
                field_manager: Some("someone-else".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&corrupt),
        )
        .await
        .unwrap_or_else(|e| panic!("corrupting {ledger}: {e}"));
    let corrupted_at = operator.virtual_now() as i64;
    let warning =
        wait_event_about(&env, "Schedule", "minutely", "Warning", "UnreadableLedger").await;
    assert!(warning.contains(ledger), "{warning}");

    // The Schedule keeps its timer: the next sessions run, each a minute
    // after the last, end, are released and counted.
    let after = |jobs: &[common::tracker::Seen]| {
        jobs.iter()
            .filter(|j| j.session.is_some_and(|s| s > corrupted_at))
            .filter(|j| j.outcome.is_some() && !j.finalizer)
            .count()
    };
    tracker
        .wait(
            "three sessions after the corruption, released",
            "",
            |jobs| after(jobs) >= 3,
        )
        .await;
    let sessions: Vec<i64> = tracker.sessions("").into_iter().collect();
    assert!(
        sessions.windows(2).all(|w| w[1] - w[0] == 60),
        "sessions skipped: {sessions:?}"
    );
    // A released Job is counted (the count is written first).
    let released = tracker
        .of("")
        .iter()
        .filter(|j| j.outcome == Some(common::jobs::Outcome::Succeeded) && !j.finalizer)
        .count() as i64;
    let s = common::api::get(&env.schedules, "minutely").await;
    let status = &s.data["status"];
    assert_eq!(
        status["missedSessions"].as_i64().unwrap_or(0),
        0,
        "{status}"
    );
    assert!(
        status["succeededSessions"].as_i64().unwrap_or(0) >= released,
        "{released} released: {status}"
    );

    // A Backfill of sessions of the same month runs all of them (the
    // unreadable month tells nothing of them) and warns too.
    apply(
        &env.backfills,
        &common::api::backfill_manifest(
            "fix",
            "minutely",
            json!({"from": "2026-03-09T23:50:00Z", "to": "2026-03-09T23:53:00Z", "maxInFlight": 3}),
        ),
    )
    .await;
    let bf = wait_finished(&env, "fix", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (3, 3, 0, 0, 3), "{}", summary(&bf));
    let warning = wait_event(&env, "fix", "Warning", "UnreadableLedger").await;
    assert!(warning.contains(ledger), "{warning}");
    tracker
        .wait("the Backfill's Jobs released", "fix", |jobs| {
            jobs.len() == 3 && jobs.iter().all(|j| !j.finalizer)
        })
        .await;

    // Deleted, as the Warning says, the month is written anew from the
    // next outcomes, and the Schedule's Jobs go on being released.
    let old_uid = ledgers.get(ledger).await.unwrap().metadata.uid;
    ledgers
        .delete(ledger, &kube::api::DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {ledger}: {e}"));
    let deleted_at = operator.virtual_now() as i64;
    eventually("the month written anew", DEADLINE, || async {
        let l = ledgers.get_opt(ledger).await.map_err(|e| e.to_string())?;
        match l {
            Some(l)
                if l.metadata.uid != old_uid && l.data["spec"]["succeeded"].as_i64() >= Some(1) =>
            {
                Ok(())
            }
            other => Err(format!("{:?}", other.map(|l| l.data))),
        }
    })
    .await;
    tracker
        .wait("two sessions after the deletion, released", "", |jobs| {
            jobs.iter()
                .filter(|j| j.session.is_some_and(|s| s > deleted_at))
                .filter(|j| j.outcome.is_some() && !j.finalizer)
                .count()
                >= 2
        })
        .await;
    assert_no_retry_loop(&mut operator);
}
