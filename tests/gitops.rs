//! The health checks README.md gives for Argo CD and Flux, proven: the
//! snippets are read from the README itself, and evaluated by the tools'
//! own code (`hack/gitops`, built by `hack/build-gitops.sh`: Argo CD's
//! settings manager, Lua VM and resource health; Flux's CEL status
//! reader) against Backfills the operator really brought into each state.
//!
//! What the README promises: a Backfill that has not been seen by the
//! operator (no status, or a spec change not observed yet) or is running
//! is in progress; one that succeeded (or only planned, in a dry run) is
//! healthy; one that failed, was cancelled or is stalled on bad input is
//! a failure; a paused one is suspended for Argo CD and done for Flux.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use kube::api::DynamicObject;
use serde_json::{Value, json};

use common::api::{
    apply, apply_hourly, apply_hourly_backfill, apply_hourly_with, backfill_manifest, get,
    patch_spec, setup,
};
use common::instants::hours;
use common::kwok::FailStage;
use common::operator::Operator;
use common::status::{
    RUN_DEADLINE, condition_message, counter, phase, status, summary, wait_backfill, wait_finished,
    wait_phase, wait_stalled,
};
use common::{DEADLINE, repo_root};

const SECTION: &str = "### With Argo CD and Flux";
const ARGOCD_KEY: &str = "resource.customizations.health.backfill.dev_Backfill";
const JAN_FROM: &str = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------------
// The snippets, from README.md
// ---------------------------------------------------------------------

/// The README's two snippets, each as its ```yaml block says it, written
/// to files for the tool.
struct Snippets {
    /// The Flux Kustomization carrying `healthCheckExprs`.
    kustomization: PathBuf,
    /// The `argocd-cm` data.
    argocd_cm: PathBuf,
    _dir: tempfile::TempDir,
}

/// The ```yaml blocks of the README section `heading`, up to the next
/// heading of the same or a higher level.
fn yaml_blocks(readme: &str, heading: &str) -> Vec<String> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no section {heading:?}"
    );
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in lines {
        match &mut block {
            Some(text) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(text));
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
            None if line.trim_start().starts_with("```yaml") => block = Some(String::new()),
            None => {
                let hashes = line.chars().take_while(|&c| c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    break;
                }
            }
        }
    }
    assert!(
        block.is_none(),
        "an unclosed ```yaml block under {heading:?}"
    );
    blocks
}

fn snippets() -> &'static Snippets {
    static SNIPPETS: OnceLock<Snippets> = OnceLock::new();
    SNIPPETS.get_or_init(|| {
        let path = repo_root().join("README.md");
        let readme = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let blocks = yaml_blocks(&readme, SECTION);
        let parsed: Vec<(String, Value)> = blocks
            .into_iter()
            .map(|text| {
                let value: Value = serde_yaml::from_str(&text)
                    .unwrap_or_else(|e| panic!("a yaml block under {SECTION:?}: {e}\n{text}"));
                (text, value)
            })
            .collect();
        let find = |what: &str, matches: &dyn Fn(&Value) -> bool| {
            let found: Vec<&String> = parsed
                .iter()
                .filter(|(_, v)| matches(v))
                .map(|(text, _)| text)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "README.md {SECTION:?} should have exactly one ```yaml block with {what}"
            );
            found[0].clone()
        };
        let kustomization = find(
            "a Flux Kustomization with healthCheckExprs for Backfill",
            &|v| {
                v["kind"] == "Kustomization"
                    && v["spec"]["healthCheckExprs"]
                        .as_array()
                        .is_some_and(|exprs| {
                            exprs.iter().any(|e| {
                                e["apiVersion"] == "backfill.dev/v1alpha1"
                                    && e["kind"] == "Backfill"
                                    && e["current"].is_string()
                            })
                        })
            },
        );
        let argocd_cm = find(&format!("the argocd-cm data {ARGOCD_KEY}"), &|v| {
            v["data"][ARGOCD_KEY].is_string()
        });

        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path
        };
        Snippets {
            kustomization: write("kustomization.yaml", &kustomization),
            argocd_cm: write("argocd-cm.yaml", &argocd_cm),
            _dir: dir,
        }
    })
}

// ---------------------------------------------------------------------
// The evaluator
// ---------------------------------------------------------------------

/// `gitops-health`, built once per test run (the first build takes a few
/// minutes, later ones find it in the cache). A test that cannot build it
/// fails: it never passes without having run the tools.
fn gitops_health() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let script = repo_root().join("hack/build-gitops.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}): it needs Go and the Go module proxy",
            script.display(),
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            path.is_file(),
            "{} did not print the path of a binary on its last line: {stdout:?}",
            script.display()
        );
        path
    })
}

/// A health as one tool reports it.
#[derive(Debug)]
struct Health {
    status: String,
    message: String,
    /// The error of the health check itself (Flux reports it apart).
    error: String,
}

/// Runs `gitops-health <tool> <config> -` with the object on stdin.
fn evaluate(tool: &str, config: &Path, obj: &DynamicObject) -> Health {
    let object = serde_json::to_vec(obj).expect("a Backfill serializes");
    let mut child = Command::new(gitops_health())
        .args([tool, &config.to_string_lossy(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running gitops-health: {e}"));
    child
        .stdin
        .take()
        .expect("a stdin pipe")
        .write_all(&object)
        .expect("writing the object to gitops-health");
    let output = child.wait_with_output().expect("waiting for gitops-health");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gitops-health {tool} failed ({}): {}{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("gitops-health {tool} printed {stdout:?}: {e}"));
    let field = |name: &str| result[name].as_str().unwrap_or_default().to_string();
    Health {
        status: field("status"),
        message: field("message"),
        error: field("error"),
    }
}

/// What Argo CD and Flux say of `obj`, printed for the test's log.
fn healths(what: &str, obj: &DynamicObject) -> (Health, Health) {
    let snippets = snippets();
    let argocd = evaluate("argocd", &snippets.argocd_cm, obj);
    let flux = evaluate("flux", &snippets.kustomization, obj);
    println!("{what}: Argo CD {argocd:?}, Flux {flux:?}");
    (argocd, flux)
}

/// Asserts Argo CD's status and message, and Flux's status with no error.
fn assert_health(what: &str, obj: &DynamicObject, argocd: (&str, &str), flux: &str) {
    let (a, f) = healths(what, obj);
    let context = format!(
        "{what}: Argo CD {a:?}, Flux {f:?}; Backfill {}",
        summary(obj)
    );
    assert_eq!((a.status.as_str(), a.message.as_str()), argocd, "{context}");
    assert_eq!(
        (f.status.as_str(), f.error.as_str()),
        (flux, ""),
        "{context}"
    );
}

/// Argo CD's message for a Backfill the operator has seen: its progress
/// and phase.
fn progress_message(obj: &DynamicObject) -> String {
    format!(
        "{} {}",
        status(obj)["progress"].as_str().unwrap_or_default(),
        phase(obj)
    )
}

fn generations(obj: &DynamicObject) -> (Option<i64>, Option<i64>) {
    (
        obj.metadata.generation,
        status(obj)["observedGeneration"].as_i64(),
    )
}

// ---------------------------------------------------------------------
// The states
// ---------------------------------------------------------------------

/// Before the operator has written a status, both wait; once sessions
/// fail, the Backfill is Degraded for Argo CD and Failed for Flux.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_waits_for_the_operator_then_fails_with_its_sessions() {
    gitops_health();
    let env = setup("gitops-failed").await;
    let plan = hours(JAN_FROM, "2026-01-01T06:00:00Z");
    // Not in the first batch: kwok needs a moment to load the Stage.
    let _stage = FailStage::apply(&env, &[plan[3], plan[5]]).await;
    apply_hourly(&env, Some("1s")).await;
    apply_hourly_backfill(
        &env,
        "flaky",
        json!({"from": JAN_FROM, "to": "2026-01-01T06:00:00Z", "maxInFlight": 2}),
    )
    .await;

    let bf = get(&env.backfills, "flaky").await;
    assert!(status(&bf).is_null(), "{}", summary(&bf));
    let (argocd, flux) = healths("no status yet", &bf);
    assert_eq!(
        (argocd.status.as_str(), argocd.message.as_str()),
        ("Progressing", "waiting for the operator")
    );
    // The expressions have no `status` to read: Flux reports Unknown with
    // the error and keeps waiting, as for any custom resource without a
    // status (the README says so). Never Current, never Failed.
    assert_eq!(flux.status, "Unknown", "{flux:?}");
    assert!(flux.error.contains("status"), "{flux:?}");

    let _op = Operator::start(&env.ns.name, &[]).await;
    let bf = wait_finished(&env, "flaky", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(counter(&bf, "failedCount"), 2, "{}", summary(&bf));
    assert_health(
        "failed",
        &bf,
        ("Degraded", &progress_message(&bf)),
        "Failed",
    );
}

/// A succeeded Backfill and a dry run are healthy; a spec change is in
/// progress until the operator has observed it, then healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_backfill_is_healthy_until_its_spec_changes() {
    gitops_health();
    let env = setup("gitops-succeeded").await;
    let mut op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("1s")).await;
    apply_hourly_backfill(
        &env,
        "clean",
        json!({"from": JAN_FROM, "count": 3, "maxInFlight": 3}),
    )
    .await;
    apply_hourly_backfill(
        &env,
        "preview",
        json!({"from": JAN_FROM, "count": 100, "dryRun": true}),
    )
    .await;

    let bf = wait_finished(&env, "clean", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_health(
        "succeeded",
        &bf,
        ("Healthy", &progress_message(&bf)),
        "Current",
    );
    let planned = wait_phase(&env, "preview", "Planned").await;
    assert_health(
        "planned (dry run)",
        &planned,
        ("Healthy", &progress_message(&planned)),
        "Current",
    );

    // A change applied while the operator is down: generation moves on,
    // observedGeneration stays.
    op.terminate().await;
    let generation = patch_spec(&env.backfills, "clean", json!({"maxInFlight": 1})).await;
    let bf = get(&env.backfills, "clean").await;
    assert_eq!(
        generations(&bf),
        (Some(generation), Some(generation - 1)),
        "{}",
        summary(&bf)
    );
    assert_health(
        "spec change not observed",
        &bf,
        ("Progressing", "waiting for the operator"),
        "InProgress",
    );

    op.restart().await;
    let bf = wait_phase(&env, "clean", "Succeeded").await;
    assert_health(
        "spec change observed",
        &bf,
        ("Healthy", &progress_message(&bf)),
        "Current",
    );
}

/// Running is in progress, paused is suspended (Argo CD) or done (Flux),
/// and cancelled is a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backfill_progresses_pauses_and_fails_when_cancelled() {
    gitops_health();
    let env = setup("gitops-cancelled").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly(&env, Some("60s")).await;
    apply_hourly_backfill(
        &env,
        "long",
        json!({"from": JAN_FROM, "count": 4, "maxInFlight": 2}),
    )
    .await;

    let bf = wait_backfill(
        &env,
        "long",
        "Backfill long running 2 Jobs",
        DEADLINE,
        |bf| {
            let (generation, observed) = generations(bf);
            phase(bf) == "Running" && counter(bf, "runningCount") == 2 && observed == generation
        },
    )
    .await;
    assert_health(
        "running",
        &bf,
        ("Progressing", &progress_message(&bf)),
        "InProgress",
    );

    patch_spec(&env.backfills, "long", json!({"suspend": true})).await;
    let bf = wait_phase(&env, "long", "Paused").await;
    assert_health(
        "paused",
        &bf,
        ("Suspended", &progress_message(&bf)),
        "Current",
    );

    patch_spec(&env.backfills, "long", json!({"cancel": true})).await;
    let bf = wait_finished(&env, "long", DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Cancelled", "{}", summary(&bf));
    assert_health(
        "cancelled",
        &bf,
        ("Degraded", &progress_message(&bf)),
        "Failed",
    );
}

/// A Backfill waiting for the approval of its cost is in progress, not
/// failed: Progressing for Argo CD, InProgress for Flux.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_awaiting_approval_is_in_progress() {
    gitops_health();
    let env = setup("gitops-approval").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly_with(
        &env,
        json!({"creditsPerSession": 10, "approval": {"requiredAboveCredits": 20}}),
    )
    .await;
    apply_hourly_backfill(&env, "costly", json!({"from": JAN_FROM, "count": 3})).await;
    let bf = wait_phase(&env, "costly", "AwaitingApproval").await;
    assert_health(
        "awaiting approval",
        &bf,
        ("Progressing", &progress_message(&bf)),
        "InProgress",
    );
}

/// Bad input that admission lets through (a time zone no one knows) stalls
/// the Backfill: Degraded with the operator's reason for Argo CD, Failed
/// for Flux, although its phase is still Pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_backfill_is_a_failure() {
    gitops_health();
    let env = setup("gitops-stalled").await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply_hourly_with(&env, json!({"timeZone": "Mars/Olympus_Mons"})).await;
    apply(
        &env.backfills,
        &backfill_manifest("martian", "hourly", json!({"from": JAN_FROM, "count": 3})),
    )
    .await;

    let bf = wait_stalled(&env, "martian", "InvalidSchedule").await;
    assert_eq!(phase(&bf), "Pending", "{}", summary(&bf));
    let message = condition_message(&bf, "Stalled");
    assert!(message.contains("Mars/Olympus_Mons"), "{message:?}");
    assert_health("stalled", &bf, ("Degraded", &message), "Failed");
}
