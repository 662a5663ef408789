//! No Job keeps the operator's finalizer (`backfill.dev/outcome`) once the
//! operator leaves: `backfill-operator release-finalizers` removes it from
//! the Jobs of chosen namespaces (a namespace dropped from the operator's
//! watch keeps the others' finalizers), and `helm uninstall` runs it from
//! the chart's pre-delete hook, so a namespace of running Jobs deleted
//! after the uninstall goes away.
//!
//! Nothing runs inside pods on the test control plane:
//! `common::pods::PodRunner` plays the kubelet for the operator's pods and
//! for the hook's, running the binary built by cargo with each pod's args
//! and ServiceAccount token. The hook's pod carries a kwok run-for far
//! longer than the test, so it ends when its process does, not on kwok's
//! timer: the uninstall waits for the release to have happened.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use common::accounts::service_account_kubeconfig;
use common::api::{Env, apply_hourly, apply_hourly_backfill, setup};
use common::helm::{Release, chart, kubeconfig, run_ok};
use common::jobs::holds_outcome;
use common::kwok::RUN_FOR;
use common::operator::{JobFinalizerSweep, Operator, tail};
use common::pods::PodRunner;
use common::poll::{eventually, throughout};
use common::{DEADLINE, TestNamespace};

/// How long a Job's pod runs: longer than any test, so the Jobs are
/// running, and holding the finalizer, throughout.
const LONG: &str = "10m";

/// How long a namespace of the operator's Jobs may take to go, once the
/// operator has left it.
const NAMESPACE_GONE: Duration = Duration::from_secs(120);

/// `backfill-operator release-finalizers <args>` with `kubeconfig`, on a
/// blocking thread.
async fn release_finalizers(args: &[&str], kubeconfig: &std::path::Path) -> Output {
    let mut argv = vec!["release-finalizers".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let kubeconfig = kubeconfig.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backfill-operator"))
            .args(&argv)
            .env("KUBECONFIG", kubeconfig)
            .output()
    })
    .await
    .expect("a blocking task")
    .expect("running backfill-operator release-finalizers")
}

/// The Backfill `held` of `sessions` hourly sessions, all at once, each
/// running [`LONG`]: its Jobs hold the finalizer while the test runs.
async fn start_long_backfill(env: &Env, sessions: usize) {
    apply_hourly(env, Some(LONG)).await;
    apply_hourly_backfill(
        env,
        "held",
        json!({
            "from": "2026-01-01T00:00:00Z",
            "count": sessions,
            "maxInFlight": sessions,
        }),
    )
    .await;
}

/// The Jobs of `jobs`' namespace, as (name, holds the finalizer).
async fn finalizers(jobs: &Api<Job>) -> Result<Vec<(String, bool)>, String> {
    let list = jobs
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .map(|j| {
            (
                j.metadata.name.clone().unwrap_or_default(),
                holds_outcome(j),
            )
        })
        .collect())
}

/// Waits until the namespace has `count` Jobs, each holding the finalizer.
async fn wait_held(env: &Env, count: usize) {
    eventually(
        &format!("{count} Jobs holding the finalizer in {}", env.ns.name),
        DEADLINE,
        || async {
            let jobs = finalizers(&env.jobs).await?;
            if jobs.len() == count && jobs.iter().all(|(_, held)| *held) {
                Ok(())
            } else {
                Err(format!("{jobs:?}"))
            }
        },
    )
    .await;
}

/// Every Job of the namespace holds the finalizer (`want`) or none does,
/// and there are `count` of them.
async fn all_hold(jobs: &Api<Job>, count: usize, want: bool) -> Result<(), String> {
    let list = finalizers(jobs).await?;
    if list.len() == count && list.iter().all(|(_, held)| *held == want) {
        Ok(())
    } else {
        Err(format!(
            "expected {count} Jobs, finalizer held: {want}; got {list:?}"
        ))
    }
}

/// The operator watches namespaces a and b; b leaves its watch. Releasing
/// b takes the finalizer off b's Jobs (and says how many), keeps a's, and
/// the operator, still running, puts none back. Again, it releases
/// nothing and succeeds; an account that may not list Jobs gets an error
/// naming the namespace and a failing exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_finalizers_in_a_namespace_leaving_the_watch() {
    let a = setup("leave-a").await;
    let b = setup("leave-b").await;
    let (na, nb) = (a.ns.name.clone(), b.ns.name.clone());
    // The operator's drop sweeps a; b is swept after it too.
    let _sweep_b = JobFinalizerSweep {
        namespace: nb.clone(),
    };
    let op = Operator::start(&na, &[&format!("--namespace={na},{nb}")]).await;
    for env in [&a, &b] {
        start_long_backfill(env, 2).await;
    }
    wait_held(&a, 2).await;
    wait_held(&b, 2).await;

    let out = release_finalizers(&["-n", &nb], &kubeconfig()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("namespace {nb}: released 2 Jobs\n"));
    all_hold(&b.jobs, 2, false)
        .await
        .expect("b's Jobs released");
    all_hold(&a.jobs, 2, true).await.expect("a's Jobs kept");

    // The operator adds its finalizer only when it creates a Job: it puts
    // none back on b's, and keeps a's.
    throughout(
        "b's Jobs without the finalizer, a's with it",
        Duration::from_secs(3),
        || async {
            all_hold(&b.jobs, 2, false).await?;
            all_hold(&a.jobs, 2, true).await
        },
    )
    .await;

    let again = release_finalizers(&["--namespace", &nb], &kubeconfig()).await;
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        format!("namespace {nb}: released 0 Jobs\n")
    );

    // An account without RBAC on Jobs: refused, said, and a failing exit.
    let accounts: Api<ServiceAccount> = Api::namespaced(b.client.clone(), &nb);
    let account = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("nobody".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("creating ServiceAccount nobody");
    let nobody =
        service_account_kubeconfig(&b.client, &nb, "nobody", &format!("{nb}-nobody")).await;
    let refused = release_finalizers(&["-n", &nb], &nobody).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot list jobs.batch in namespace {nb}"))
            && stderr.contains("(403)"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());

    all_hold(&a.jobs, 2, true).await.expect("a's Jobs kept");
    drop(op);
}

/// The chart installed for one namespace, a Backfill's Jobs running there
/// and holding the finalizer: `helm uninstall` runs the pre-delete hook,
/// whose process releases them (and only then does its pod end), then
/// removes the operator. Deleting the namespace then completes, and no Job
/// in it kept the finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_uninstall_releases_the_finalizers_and_the_namespace_goes() {
    let env = setup("uninstall").await;
    let workload = env.ns.name.clone();
    let release_ns = TestNamespace::new(&env.client, "uninstall-release").await;
    let r = release_ns.name.clone();
    // Dropped after the pod stand-ins: a failed test leaves no finalizer.
    let _sweep = JobFinalizerSweep {
        namespace: workload.clone(),
    };
    let name = format!("un-{}", &r[r.len() - 8..]);
    let (operator, hook) = stand_ins(&env.client, &r, &name).await;

    let release = {
        let (name, r) = (name.clone(), r.clone());
        let sets = [
            format!("watchNamespaces={{{workload}}}"),
            format!(
                "uninstall.podAnnotations.{}={LONG}",
                RUN_FOR.replace('.', "\\.")
            ),
        ];
        tokio::task::spawn_blocking(move || {
            Release::install(
                &name,
                &r,
                &chart(),
                &[
                    "--set",
                    &sets[0],
                    "--set",
                    &sets[1],
                    "--wait",
                    "--timeout",
                    "2m",
                ],
            )
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    let op = operator
        .wait_run("the operator's pod to run", |_| true)
        .await;

    start_long_backfill(&env, 3).await;
    wait_held(&env, 3).await;

    {
        let (name, r) = (release.name.clone(), r.clone());
        tokio::task::spawn_blocking(move || {
            run_ok(
                "helm",
                &["uninstall", &name, "-n", &r, "--wait", "--timeout", "2m"],
                None,
            )
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    // The hook ran the command, which succeeded and said what it did.
    let log = hook_log(&hook);
    assert!(
        log.contains(&format!("namespace {workload}: released 3 Jobs")),
        "{log}"
    );
    all_hold(&env.jobs, 3, false)
        .await
        .expect("no Job keeps the finalizer after helm uninstall");

    // The operator is gone too: its pod deleted, its process stopped.
    operator.wait_exit(&op.pod, DEADLINE).await;

    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .delete(&workload, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting namespace {workload}: {e}"));
    eventually(
        &format!("namespace {workload} to be gone"),
        NAMESPACE_GONE,
        || namespace_gone(&env.client, &workload),
    )
    .await;
}

/// The kubelet stand-ins of release `name` in namespace `r`: for the
/// operator's pods, and for the release-finalizers hooks' pods.
async fn stand_ins(client: &Client, r: &str, name: &str) -> (PodRunner, PodRunner) {
    let operator = PodRunner::start(
        client,
        r,
        &format!("app.kubernetes.io/name=backfill-operator,app.kubernetes.io/instance={name}"),
    )
    .await;
    let hook = PodRunner::start(
        client,
        r,
        &format!(
            "app.kubernetes.io/component=release-finalizers,app.kubernetes.io/instance={name}"
        ),
    )
    .await;
    (operator, hook)
}

/// The log of the one run of a hook's pod, which helm waited for and
/// which succeeded.
fn hook_log(hook: &PodRunner) -> String {
    let runs = hook.runs();
    let [run] = runs.as_slice() else {
        panic!("expected one run of the hook's pod: {runs:?}");
    };
    let (status, _) = run
        .exited
        .expect("helm returned before the hook's process ended");
    let log = tail(&run.log, 20);
    assert!(status.success(), "the hook failed ({status}):\n{log}");
    log
}

/// Ok once the namespace no longer exists; else what holds it up.
async fn namespace_gone(client: &Client, ns: &str) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(ns).await.map_err(|e| e.to_string())? {
        None => Ok(()),
        Some(namespace) => {
            let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
            let held = finalizers(&jobs).await.unwrap_or_default();
            assert!(
                held.iter().all(|(_, held)| !held),
                "a Job in {ns} kept the finalizer: {held:?}"
            );
            Err(format!(
                "{:?}; Jobs left: {held:?}",
                namespace.status.and_then(|s| s.conditions)
            ))
        }
    }
}

/// The chart installed for namespaces a and b, a Backfill's Jobs running
/// in each and holding the finalizer: `helm upgrade` to watch a only runs
/// the pre-upgrade hook, which releases b's Jobs (the namespace the
/// operator leaves) and keeps a's; deleting b then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_leaving_a_namespace_releases_its_jobs() {
    let a = setup("narrow-a").await;
    let b = setup("narrow-b").await;
    let (na, nb) = (a.ns.name.clone(), b.ns.name.clone());
    let release_ns = TestNamespace::new(&a.client, "narrow-release").await;
    let r = release_ns.name.clone();
    let _sweeps = [na.clone(), nb.clone()].map(|namespace| JobFinalizerSweep { namespace });
    let name = format!("nw-{}", &r[r.len() - 8..]);
    let (operator, hook) = stand_ins(&a.client, &r, &name).await;
    let helm = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_ok("helm", &args, None)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    let chart = chart().to_string_lossy().into_owned();
    let hook_runs_long = format!(
        "uninstall.podAnnotations.{}={LONG}",
        RUN_FOR.replace('.', "\\.")
    );
    helm(
        [
            "install",
            &name,
            &chart,
            "-n",
            &r,
            "--wait",
            "--timeout",
            "2m",
            "--set",
            &format!("watchNamespaces={{{na},{nb}}}"),
            "--set",
            &hook_runs_long,
            "--set",
            "createdByPolicy.enabled=false",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    operator
        .wait_run("the operator's pod to run", |_| true)
        .await;
    for env in [&a, &b] {
        start_long_backfill(env, 2).await;
    }
    wait_held(&a, 2).await;
    wait_held(&b, 2).await;

    helm(
        [
            "upgrade",
            &name,
            &chart,
            "-n",
            &r,
            "--reuse-values",
            "--wait",
            "--timeout",
            "2m",
            "--set",
            &format!("watchNamespaces={{{na}}}"),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let log = hook_log(&hook);
    assert!(
        log.contains(&format!("namespace {nb}: released 2 Jobs")),
        "{log}"
    );
    assert!(!log.contains(&na), "{log}");
    all_hold(&b.jobs, 2, false)
        .await
        .expect("b's Jobs released");
    all_hold(&a.jobs, 2, true).await.expect("a's Jobs kept");

    let namespaces: Api<Namespace> = Api::all(a.client.clone());
    namespaces
        .delete(&nb, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting namespace {nb}: {e}"));
    eventually(
        &format!("namespace {nb} to be gone"),
        NAMESPACE_GONE,
        || namespace_gone(&a.client, &nb),
    )
    .await;
    helm(
        ["uninstall", &name, "-n", &r, "--wait"]
            .map(String::from)
            .to_vec(),
    )
    .await;
}
