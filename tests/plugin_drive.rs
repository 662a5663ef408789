//! `kubectl backfill create | rerun-failed | pause | resume | cancel`, run
//! as users run them (the plugin binary with `--kubeconfig` and `-n`)
//! against the local control plane, with the operator as a real process
//! scoped to each test's namespace.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kube::api::ListParams;
use serde_json::{Value, json};

use common::api::{Env, apply_hourly, apply_hourly_with, get, setup};
use common::instants::{at, hours, rfc3339_utc};
use common::kwok::FailStage;
use common::operator::Operator;
use common::repo_root;
use common::status::{RUN_DEADLINE, counters, phase, status, summary, wait_finished, wait_phase};

const FROM: &str = "2026-01-01T00:00:00Z";

fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster/kubeconfig"))
}

/// Runs `kubectl-backfill --kubeconfig K -n NS args...` off the runtime's
/// threads, and returns what it did.
async fn plugin(env: &Env, args: &[&str]) -> Output {
    let mut argv: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig().display().to_string(),
        "-n".into(),
        env.ns.name.clone(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubectl-backfill"))
            .args(&argv)
            .output()
            .expect("kubectl-backfill runs")
    })
    .await
    .expect("the plugin's thread")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the plugin and checks it succeeded; returns its stdout.
async fn ok(env: &Env, args: &[&str]) -> String {
    let o = plugin(env, args).await;
    assert!(
        o.status.success(),
        "kubectl-backfill {args:?} exited {:?}: {}{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// `kubectl apply -f -` of `manifest` in the test's namespace.
async fn kubectl_apply(env: &Env, manifest: String) -> String {
    let ns = env.ns.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("kubectl")
            .args(["--kubeconfig"])
            .arg(kubeconfig())
            .args(["-n", &ns, "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (PATH holds .cluster/bin)");
        child
            .stdin
            .take()
            .expect("a stdin")
            .write_all(manifest.as_bytes())
            .expect("writing the manifest");
        let o = child.wait_with_output().expect("kubectl ends");
        assert!(o.status.success(), "kubectl apply: {}", stderr(&o));
        stdout(&o)
    })
    .await
    .expect("kubectl's thread")
}

async fn backfill_names(env: &Env) -> Vec<String> {
    env.backfills
        .list(&ListParams::default())
        .await
        .expect("listing Backfills")
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .collect()
}

/// The field managers that wrote an object.
fn managers(obj: &kube::api::DynamicObject) -> Vec<String> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// `create --from --to` makes a Backfill, written by `kubectl-backfill`,
/// that runs to Succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_to_runs_to_succeeded() {
    let env = setup("pd-create").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, None).await;
    let to = "2026-01-01T04:00:00Z";
    let out = ok(
        &env,
        &[
            "create",
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--to",
            to,
            "--max-in-flight",
            "2",
        ],
    )
    .await;
    assert_eq!(out, "backfill.backfill.dev/jan created\n");
    let bf = get(&env.backfills, "jan").await;
    assert!(
        managers(&bf).contains(&"kubectl-backfill".to_string()),
        "{:?}",
        managers(&bf)
    );
    let bf = wait_finished(&env, "jan", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (4, 4, 0, 0, 4), "{}", summary(&bf));

    // An explicit list runs exactly its sessions.
    let listed = "2026-01-02T05:00:00Z,2026-01-02T09:00:00Z";
    ok(
        &env,
        &[
            "create",
            "listed",
            "--schedule",
            "hourly",
            "--sessions",
            listed,
        ],
    )
    .await;
    let bf = wait_finished(&env, "listed", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counters(&bf), (2, 2, 0, 0, 2), "{}", summary(&bf));
    assert_eq!(
        bf.data["spec"]["sessions"],
        json!(["2026-01-02T05:00:00Z", "2026-01-02T09:00:00Z"])
    );
}

/// The manifest of `create -o yaml`, applied with kubectl, is the object
/// `create` makes: the same spec, every flag included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_o_yaml_applied_is_the_same_object_as_create() {
    let env = setup("pd-yaml").await;
    apply_hourly(&env, None).await;
    let flags = [
        "--schedule",
        "hourly",
        "--from",
        "2026-01-01T00:00:00-05:00",
        "--count",
        "7",
        "--max-in-flight",
        "3",
        "--order",
        "newest",
        "--reprocess",
        "All",
        "--attempt-name",
        "fix-1",
        "--suspend",
        "--credits-per-session",
        "0.5",
        "--filter-days",
        "mon,wed",
        "--filter-hours",
        "9-11,22",
    ];
    let with = |name: &'static str, extra: &[&'static str]| {
        let mut args = vec!["create", name];
        args.extend_from_slice(&flags);
        args.extend_from_slice(extra);
        args
    };
    ok(&env, &with("direct", &[])).await;
    let yaml = ok(&env, &with("gitops", &["-o", "yaml"])).await;
    assert!(
        backfill_names(&env).await == ["direct"],
        "-o yaml created something"
    );
    let applied = kubectl_apply(&env, yaml).await;
    assert!(applied.contains("gitops created"), "{applied}");

    let direct = get(&env.backfills, "direct").await;
    let gitops = get(&env.backfills, "gitops").await;
    assert_eq!(direct.data["spec"], gitops.data["spec"]);
    assert_eq!(
        direct.data["spec"],
        json!({
            "scheduleRef": {"name": "hourly"},
            "from": "2026-01-01T05:00:00Z",
            "count": 7,
            "maxInFlight": 3,
            "order": "Newest",
            "reprocess": "All",
            "attemptName": "fix-1",
            "suspend": true,
            "creditsPerSession": 0.5,
            "filter": {"daysOfWeek": ["Monday", "Wednesday"], "hours": [9, 10, 11, 22]},
        })
    );
    assert_eq!(direct.metadata.labels, gitops.metadata.labels);
    // kubectl's client-side apply adds its own bookkeeping annotation.
    let annotations = |bf: &kube::api::DynamicObject| {
        let mut a = bf.metadata.annotations.clone().unwrap_or_default();
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        a
    };
    assert_eq!(annotations(&direct), annotations(&gitops));

    // `-o json` is the same manifest, also fit for kubectl.
    let json: Value = serde_json::from_str(&ok(&env, &with("gitops", &["-o", "json"])).await)
        .expect("-o json prints JSON");
    assert_eq!(json["spec"], gitops.data["spec"]);
    assert_eq!(json["kind"], "Backfill");
    assert_eq!(json["apiVersion"], "backfill.dev/v1alpha1");
}

/// `--from` alone: the manifest carries `from` and no end, which the
/// operator reads as "up to the moment it starts". Checked at the
/// manifest: the API server accepts such a spec only with the CRD change
/// being made beside this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_alone_emits_from_without_an_end() {
    let env = setup("pd-from").await;
    let out = ok(
        &env,
        &[
            "create",
            "since",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "-o",
            "json",
        ],
    )
    .await;
    let manifest: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        manifest,
        json!({
            "apiVersion": "backfill.dev/v1alpha1",
            "kind": "Backfill",
            "metadata": {"name": "since", "namespace": env.ns.name},
            "spec": {"scheduleRef": {"name": "hourly"}, "from": FROM},
        })
    );
    // Planned offline against the Schedule in the cluster, it runs to now.
    apply_hourly(&env, None).await;
    let recent = rfc3339_utc(jiff::Timestamp::now().as_second() / 3_600 * 3_600 - 2 * 3_600);
    let plan = ok(
        &env,
        &[
            "create",
            "since",
            "--schedule",
            "hourly",
            "--from",
            &recent,
            "--dry-run",
        ],
    )
    .await;
    // The sessions at `recent`, an hour later and the last full hour (and
    // the next, when the hour turned since `recent` was read).
    assert!(
        plan.contains("sessions:  3\n") || plan.contains("sessions:  4\n"),
        "{plan}"
    );
    assert!(plan.contains(&format!("first:     {recent}\n")), "{plan}");
    assert!(backfill_names(&env).await.is_empty());
}

/// `--dry-run` (client) prints the plan and its cost and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_cost_and_creates_nothing() {
    let env = setup("pd-dry").await;
    apply_hourly_with(&env, json!({"creditsPerSession": 2})).await;
    let out = ok(
        &env,
        &[
            "create",
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--to",
            "2026-01-02T00:00:00Z",
            "--dry-run",
        ],
    )
    .await;
    let plan = hours(FROM, "2026-01-02T00:00:00Z");
    assert!(out.contains("nothing created"), "{out}");
    assert!(
        out.contains(&format!(
            "plan:      sessions from {FROM} (inclusive) to 2026-01-02T00:00:00Z (exclusive)"
        )),
        "{out}"
    );
    assert!(out.contains("sessions:  24\n"), "{out}");
    assert!(
        out.contains(&format!("first:     {}\n", rfc3339_utc(plan[0]))),
        "{out}"
    );
    assert!(
        out.contains(&format!("last:      {}\n", rfc3339_utc(plan[23]))),
        "{out}"
    );
    assert!(
        out.contains("cost:      24 sessions x 2 credits = 48 credits"),
        "{out}"
    );
    assert!(backfill_names(&env).await.is_empty(), "a dry run created");
}

/// `--dry-run=server` creates a dry-run Backfill, waits for the
/// operator's plan and prints it; no Job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_gives_a_planned_backfill() {
    let env = setup("pd-srv").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly_with(&env, json!({"creditsPerSession": 1.5})).await;
    let out = ok(
        &env,
        &[
            "create",
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--count",
            "12",
            "--dry-run=server",
        ],
    )
    .await;
    assert!(out.contains("phase:     Planned\n"), "{out}");
    assert!(out.contains("sessions:  12\n"), "{out}");
    assert!(out.contains(&format!("first:     {FROM}\n")), "{out}");
    assert!(out.contains("last:      2026-01-01T11:00:00Z\n"), "{out}");
    assert!(
        out.contains("cost:      12 sessions x 1.5 credits = 18 credits"),
        "{out}"
    );
    let bf = get(&env.backfills, "jan").await;
    assert_eq!(bf.data["spec"]["dryRun"], true);
    assert_eq!(phase(&bf), "Planned", "{}", summary(&bf));
    let jobs = env.jobs.list(&ListParams::default()).await.expect("jobs");
    assert!(jobs.items.is_empty(), "a dry run made Jobs");
}

/// pause → Paused, resume → Running, cancel → Cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel() {
    let env = setup("pd-toggle").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("5s")).await;
    ok(
        &env,
        &[
            "create",
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--count",
            "20",
        ],
    )
    .await;
    wait_phase(&env, "jan", "Running").await;

    let out = ok(&env, &["pause", "jan"]).await;
    assert!(out.starts_with("backfill.backfill.dev/jan paused"), "{out}");
    let bf = wait_phase(&env, "jan", "Paused").await;
    assert_eq!(bf.data["spec"]["suspend"], true);

    let out = ok(&env, &["resume", "jan"]).await;
    assert!(
        out.starts_with("backfill.backfill.dev/jan resumed"),
        "{out}"
    );
    wait_phase(&env, "jan", "Running").await;

    let out = ok(&env, &["cancel", "jan"]).await;
    assert!(
        out.starts_with("backfill.backfill.dev/jan cancelled"),
        "{out}"
    );
    assert!(out.contains("running Jobs are deleted"), "{out}");
    let bf = wait_finished(&env, "jan", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Cancelled", "{}", summary(&bf));
    let bf = get(&env.backfills, "jan").await;
    assert!(
        managers(&bf).contains(&"kubectl-backfill".to_string()),
        "{:?}",
        managers(&bf)
    );
}

/// `rerun-failed --wait` on a Backfill with failures prints the child and
/// its plan, and the child runs; on a Backfill with none it says so and
/// exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_failed_wait_returns_the_child() {
    let env = setup("pd-rerun").await;
    let to = "2026-01-01T08:00:00Z";
    let plan = hours(FROM, to);
    // Not in the first batch: kwok needs a moment to load the Stage.
    let fail = vec![plan[4], plan[6]];
    let _stage = FailStage::for_backfill(&env, "jan", &fail).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, None).await;
    ok(
        &env,
        &[
            "create",
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--to",
            to,
            "--max-in-flight",
            "2",
        ],
    )
    .await;
    let parent = wait_finished(&env, "jan", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&parent), "Failed", "{}", summary(&parent));

    let out = ok(
        &env,
        &["rerun-failed", "jan", "--wait", "--timeout", "120s"],
    )
    .await;
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    let request = first
        .strip_prefix("backfill.backfill.dev/jan annotated backfill.dev/rerun-failed=")
        .unwrap_or_else(|| panic!("{out}"));
    let child = format!("jan-rerun-{request}");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            format!("backfill.backfill.dev/{child}: rerun child, 2 session(s)"),
            format!("first:     {}", rfc3339_utc(fail[0])),
            format!("last:      {}", rfc3339_utc(fail[1])),
        ],
        "{out}"
    );
    let parent = get(&env.backfills, "jan").await;
    assert_eq!(
        parent.metadata.annotations.as_ref().unwrap()["backfill.dev/rerun-failed"],
        request
    );
    let done = wait_finished(&env, &child, RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&done), "Succeeded", "{}", summary(&done));
    assert_eq!(counters(&done), (2, 2, 0, 0, 2), "{}", summary(&done));
    assert_eq!(
        status(&done)["preview"]["first"][0].as_str().map(at),
        Some(fail[0])
    );

    // Nothing failed in the child: the request is refused, exit 1.
    let o = plugin(
        &env,
        &["rerun-failed", &child, "--wait", "--timeout", "60s"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("nothing to rerun"), "{}", stderr(&o));
}

/// Errors go to stderr, with kubectl's wording, and exit 1; usage
/// errors exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_on_stderr_with_exit_1() {
    let env = setup("pd-err").await;
    let cases: [&[&str]; 5] = [
        &[
            "create",
            "jan",
            "--schedule",
            "nope",
            "--from",
            FROM,
            "--count",
            "1",
        ],
        &[
            "create",
            "jan",
            "--schedule",
            "nope",
            "--from",
            FROM,
            "--count",
            "1",
            "--dry-run",
        ],
        &["pause", "nope"],
        &["cancel", "nope"],
        &["rerun-failed", "nope", "--wait"],
    ];
    for args in cases {
        let o = plugin(&env, args).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("error: Error from server (NotFound): ")
                && err.contains("\"nope\" not found"),
            "{args:?}: {err}"
        );
    }
    let o = plugin(&env, &["create", "jan", "--schedule", "s"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(backfill_names(&env).await.is_empty());
}

/// `plugins/backfill.yaml` is a krew Plugin manifest for this version, as
/// krew validates one: every platform's `uri` is the GitHub release asset
/// of this version (no template placeholder), with a sha256 and the bin.
#[test]
fn the_krew_manifest_points_at_this_versions_release() {
    let path = repo_root().join("plugins/backfill.yaml");
    let text = std::fs::read_to_string(&path).expect("plugins/backfill.yaml");
    let manifest: Value = serde_yaml::from_str(&text).expect("YAML");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "backfill");
    let spec = &manifest["spec"];
    assert_eq!(spec["version"], version.as_str());
    assert_eq!(
        spec["homepage"],
        "https://github.com/backfill-dev/backfill-operator"
    );
    let short = spec["shortDescription"].as_str().expect("shortDescription");
    assert!(!short.is_empty() && !short.contains('\n'), "{short:?}");
    let platforms = spec["platforms"].as_array().expect("platforms");
    assert!(!platforms.is_empty());
    for p in platforms {
        let labels = p["selector"]["matchLabels"]
            .as_object()
            .expect("a selector by labels");
        assert!(
            labels.keys().all(|k| k == "os" || k == "arch"),
            "krew selects by os and arch only: {labels:?}"
        );
        let (os, arch) = (
            labels["os"].as_str().unwrap(),
            labels["arch"].as_str().unwrap(),
        );
        assert_eq!(
            p["uri"],
            format!(
                "https://github.com/backfill-dev/backfill-operator/releases/download/{version}/kubectl-backfill_{version}_{os}_{arch}.tar.gz"
            )
        );
        let sha = p["sha256"].as_str().expect("sha256");
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && sha.bytes().any(|b| b != b'0'),
            "sha256 {sha:?}: run hack/krew-archive.sh --manifest"
        );
        assert_eq!(p["bin"], "kubectl-backfill");
    }
}
