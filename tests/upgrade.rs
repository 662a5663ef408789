//! `helm upgrade` from the released chart (`tests/fixtures/charts`) to the
//! working tree's keeps a running Backfill going: the Deployment rolls
//! out a new pod, the old one stops on SIGTERM and gives the Lease up, the
//! new one takes the Lease over and finishes the Backfill, and no session
//! runs twice.
//!
//! Nothing runs inside pods on the test control plane:
//! `common::pods::PodRunner` plays the kubelet for the operator's pods,
//! running the binary built by cargo with each pod's args, environment and
//! ServiceAccount token.
//!
//! The CRDs are the working tree's throughout: CRDs are cluster-wide and
//! shared with the tests running alongside, so the released chart's cannot
//! be put back for this test. The README's upgrade step (apply the new
//! CRDs, then `helm upgrade`) is thus done before the install, and this
//! test says nothing about a change of the CRDs between the versions.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use common::api::{apply_hourly, apply_hourly_backfill, get, setup};
use common::helm::{Release, chart, chart_yaml, released_chart, run_ok};
use common::instants::hours;
use common::operator::JobFinalizerSweep;
use common::pods::{PodRun, PodRunner};
use common::poll::eventually;
use common::status::{
    RUN_DEADLINE, counter, counters, is_finished, phase, summary, wait_backfill, wait_finished,
};
use common::tracker::{JobTracker, assert_one_job_per_session};
use common::{DEADLINE, TestNamespace, http};

/// The chart version users upgrade from.
const RELEASED: &str = "0.1.0";
const IMAGE: &str = "ghcr.io/backfill-dev/backfill-operator";
/// The operator's leader Lease (`--leader-election-id`'s default).
const LEASE: &str = "backfill-operator";
const BACKFILL: &str = "catch-up";
/// How long a kubelet lets a container stop before SIGKILL (the pod's
/// default terminationGracePeriodSeconds).
const GRACE: Duration = Duration::from_secs(30);

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("reading Lease {LEASE}: {e}"))?;
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

async fn wait_lease_holder(leases: &Api<Lease>, pod: &str) {
    eventually(
        &format!("{pod} to hold the Lease {LEASE}"),
        DEADLINE,
        || async {
            match lease_holder(leases).await {
                Some(holder) if holder == pod => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
}

/// A holder of the Lease (`None`: free) and when the test saw it take it.
type Holding = (Option<String>, Instant);

/// Every holder the Lease had, in order: a watch, so no holder is missed.
struct LeaseHistory {
    seen: Arc<Mutex<Vec<Holding>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseHistory {
    fn start(leases: &Api<Lease>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stream = watcher(
            leases.clone(),
            watcher::Config::default().fields(&format!("metadata.name={LEASE}")),
        )
        .default_backoff()
        .applied_objects();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(lease) = stream.next().await {
                    let Ok(lease) = lease else { continue };
                    let holder = lease
                        .spec
                        .and_then(|s| s.holder_identity)
                        .filter(|h| !h.is_empty());
                    let mut seen = seen.lock().expect("a lock");
                    if seen.last().map(|(h, _)| h) != Some(&holder) {
                        seen.push((holder, Instant::now()));
                    }
                }
            }
        });
        LeaseHistory { seen, task }
    }

    fn changes(&self) -> Vec<Holding> {
        self.seen.lock().expect("a lock").clone()
    }

    /// The holders in order, free spells left out.
    fn holders(&self) -> Vec<String> {
        self.changes().into_iter().filter_map(|(h, _)| h).collect()
    }

    /// When `holder` (`None`: nobody) first held the Lease after `after`.
    fn first(&self, holder: Option<&str>, after: Instant) -> Option<Instant> {
        self.changes()
            .into_iter()
            .find(|(h, at)| h.as_deref() == holder && *at >= after)
            .map(|(_, at)| at)
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(run: &PodRun) -> &str {
    run.address
        .as_deref()
        .unwrap_or_else(|| panic!("{} has no --listen-address", run.pod))
}

/// Waits until the pod's process answers `/readyz` with 200.
async fn wait_ready(run: &PodRun) {
    eventually(
        &format!("/readyz of {} to answer 200", run.pod),
        DEADLINE,
        || async {
            let (status, body) = http::get(address(run), "/readyz").await?;
            if status.contains(" 200 ") {
                Ok(())
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    )
    .await;
}

/// The pod's `/metrics`.
async fn metrics(run: &PodRun) -> String {
    let (status, body) = http::get(address(run), "/metrics")
        .await
        .unwrap_or_else(|e| panic!("/metrics of {}: {e}", run.pod));
    assert!(
        status.contains(" 200 "),
        "/metrics of {}: {status}",
        run.pod
    );
    body
}

/// `helm <args>` on a blocking thread, so the pod stand-in and the Job
/// tracker keep running meanwhile.
async fn helm(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok("helm", &args, None)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn since(start: Instant, at: Option<Instant>) -> String {
    at.map(|t| format!("{:.1?}", t.saturating_duration_since(start)))
        .unwrap_or_else(|| "-".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_from_the_released_chart_keeps_a_running_backfill_going() {
    let began = Instant::now();
    let env = setup("upgrade").await;
    let workload = env.ns.name.clone();
    let release_ns = TestNamespace::new(&env.client, "upgrade-release").await;
    let r = release_ns.name.clone();
    // Dropped after the pod stand-in has killed the operators.
    let _sweep = JobFinalizerSweep {
        namespace: workload.clone(),
    };
    let name = format!("up-{}", &r[r.len() - 8..]);
    let version = chart_yaml()["appVersion"]
        .as_str()
        .expect("an appVersion")
        .to_string();
    assert_ne!(
        version, RELEASED,
        "the working tree's chart is still the released one: nothing to upgrade"
    );
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &r);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &r);
    let tracker = JobTracker::start(&env.jobs).await;
    let lease_history = LeaseHistory::start(&leases);
    let runner = PodRunner::start(
        &env.client,
        &r,
        &format!("app.kubernetes.io/name=backfill-operator,app.kubernetes.io/instance={name}"),
    )
    .await;

    // The released chart, as a user installed it.
    let watch = format!("watchNamespace={workload}");
    let release = {
        let (name, r, watch) = (name.clone(), r.clone(), watch.clone());
        tokio::task::spawn_blocking(move || {
            Release::install(
                &name,
                &r,
                &released_chart(RELEASED),
                &["--set", &watch, "--wait", "--timeout", "2m"],
            )
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    let old = runner
        .wait_run(&format!("the {RELEASED} pod to run"), |r| {
            r.image == format!("{IMAGE}:{RELEASED}")
        })
        .await;
    wait_ready(&old).await;
    wait_lease_holder(&leases, &old.pod).await;

    // A Backfill of 12 sessions, 2 at a time, 2 s each: it runs for a while.
    apply_hourly(&env, Some("2s")).await;
    let (from, to) = ("2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z");
    let plan = hours(from, to);
    apply_hourly_backfill(
        &env,
        BACKFILL,
        json!({"from": from, "to": to, "maxInFlight": 2}),
    )
    .await;
    wait_backfill(
        &env,
        BACKFILL,
        "2 sessions to succeed, the Backfill still Running",
        DEADLINE,
        |bf| {
            assert!(
                !is_finished(bf),
                "the Backfill finished before the upgrade: {}",
                summary(bf)
            );
            counter(bf, "succeededCount") >= 2 && phase(bf) == "Running"
        },
    )
    .await;
    assert_eq!(
        http::sample(&metrics(&old).await, "backfill_operator_leader"),
        1.0
    );

    // The upgrade, as a user runs it.
    let upgrade_began = Instant::now();
    let chart = chart();
    helm(
        [
            "upgrade",
            &name,
            chart.to_str().expect("a UTF-8 path"),
            "-n",
            &r,
            "--set",
            &watch,
            "--wait",
            "--timeout",
            "2m",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let helm_returned = Instant::now();
    let old_pod_left = pods
        .get_opt(&old.pod)
        .await
        .unwrap_or_else(|e| panic!("reading pod {}: {e}", old.pod))
        .is_none();
    let at_return = runner.runs();
    let holder_at_return = lease_holder(&leases).await;

    // The rollout: a new pod (standing by), the old one stopped, the
    // Lease handed over.
    let new = runner
        .wait_run(&format!("the {version} pod to run"), |r| {
            r.image == format!("{IMAGE}:{version}")
        })
        .await;
    wait_ready(&new).await;
    wait_lease_holder(&leases, &new.pod).await;
    let old_exit = runner.wait_exit(&old.pod, GRACE).await;
    let at_old_exit = get(&env.backfills, BACKFILL).await;
    let old = runner.run_of(&old.pod);

    let bf = wait_finished(&env, BACKFILL, RUN_DEADLINE, |_| {}).await;
    let new_metrics = metrics(&new).await;
    let finished = Instant::now();

    eprintln!(
        "upgrade timeline (since `helm upgrade` began): helm returned {}, new pod's process \
         started {}, old pod's process got SIGTERM {}, Lease free {}, new pod took the Lease {}, \
         old process exited {}, Backfill finished {}. When helm returned: old pod {} the API, \
         processes {}, Lease holder {holder_at_return:?}. Jobs created by the new pod: {}. \
         Whole test so far: {:.1?}",
        since(upgrade_began, Some(helm_returned)),
        since(upgrade_began, Some(new.started)),
        since(upgrade_began, old.terminated),
        since(upgrade_began, lease_history.first(None, upgrade_began)),
        since(
            upgrade_began,
            lease_history.first(Some(&new.pod), upgrade_began)
        ),
        since(upgrade_began, old.exited.map(|(_, at)| at)),
        since(upgrade_began, Some(finished)),
        if old_pod_left {
            "gone from"
        } else {
            "still in"
        },
        common::pods::describe(&at_return),
        http::sample(
            &new_metrics,
            "backfill_operator_jobs_created_total{controller=\"backfill\"}"
        ),
        began.elapsed(),
    );

    // The Backfill went on across the upgrade and ended as if nothing
    // happened: every session once, counters exact.
    assert!(
        !is_finished(&at_old_exit),
        "the Backfill finished before the old operator stopped, so the upgrade proved nothing: {}",
        summary(&at_old_exit)
    );
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (12, 12, 0, 0, 12), "{}", summary(&bf));
    assert_one_job_per_session(&tracker, BACKFILL, &plan);

    // The old operator stopped cleanly on SIGTERM, the new one leads.
    assert!(
        old.terminated.is_some(),
        "the old pod's process was never sent SIGTERM"
    );
    assert!(
        old_exit.success(),
        "the {RELEASED} operator exited with {old_exit} after SIGTERM, expected 0"
    );
    assert_eq!(
        lease_holder(&leases).await.as_deref(),
        Some(new.pod.as_str())
    );
    assert_eq!(
        lease_history.holders(),
        [old.pod.clone(), new.pod.clone()],
        "the Lease went from the old pod to the new one, once"
    );
    assert_eq!(
        runner.runs().len(),
        2,
        "one pod per chart version: {}",
        common::pods::describe(&runner.runs())
    );
    assert_eq!(http::sample(&new_metrics, "backfill_operator_leader"), 1.0);
    assert!(
        http::sample(
            &new_metrics,
            "backfill_operator_reconciles_total{controller=\"backfill\"}"
        ) > 0.0,
        "the new pod never reconciled a Backfill:\n{new_metrics}"
    );
    let (status, _) = http::get(address(&new), "/readyz")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.contains(" 200 "), "/readyz of the new pod: {status}");

    // What Kubernetes and Helm say about the release.
    let deployment = Api::<Deployment>::namespaced(env.client.clone(), &r)
        .get(&release.fullname())
        .await
        .unwrap_or_else(|e| panic!("reading the Deployment: {e}"));
    let image = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(image, Some(format!("{IMAGE}:{version}")));
    let history: Value = serde_json::from_str(&run_ok(
        "helm",
        &["history", &name, "-n", &r, "-o", "json"],
        None,
    ))
    .expect("helm history -o json");
    let revisions: Vec<(String, String)> = history
        .as_array()
        .expect("a list of revisions")
        .iter()
        .map(|rev| {
            (
                rev["chart"].as_str().unwrap_or_default().to_string(),
                rev["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        [
            (
                format!("backfill-operator-{RELEASED}"),
                "superseded".to_string()
            ),
            (
                format!("backfill-operator-{version}"),
                "deployed".to_string()
            ),
        ],
        "helm history"
    );
    // Both operators ran with the chart's ServiceAccount token only, and
    // were refused nothing.
    for run in runner.runs() {
        let log = std::fs::read_to_string(&run.log).unwrap_or_default();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(
            refused.is_empty(),
            "{} was refused something:\n{}",
            run.pod,
            refused.join("\n")
        );
    }
    runner.assert_no_problems();
}
