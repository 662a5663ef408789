//! `kubectl backfill status` and `kubectl backfill list` end to end: the
//! built `kubectl-backfill` binary, run as a user runs it (`--kubeconfig`,
//! `-n`, and once through `kubectl` itself), against Backfills the
//! operator runs on the local control plane.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use common::api::{apply_hourly, apply_hourly_backfill, get, setup};
use common::helm::kubeconfig;
use common::instants::hours;
use common::kwok::FailStage;
use common::operator::Operator;
use common::repo_root;
use common::status::{RUN_DEADLINE, counters, is_finished, summary, wait_finished};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-backfill");

/// Runs the plugin with `args` and the test's kubeconfig and namespace.
fn plugin(ns: &str, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig();
    Command::new(PLUGIN)
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", ns])
        .env_remove("NO_COLOR")
        .output()
        .expect("kubectl-backfill runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Six hourly sessions of 1 January 2026, the fourth one failing: status
/// shows the counts and the failed session with its Job, reason, exit
/// code and logs command; `-o json` the object; `list` (also through
/// `kubectl backfill`) the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_list_show_a_finished_backfill_and_its_failure() {
    let env = setup("plug-status").await;
    let ns = env.ns.name.clone();
    let plan = hours("2026-01-01T00:00:00Z", "2026-01-01T06:00:00Z");
    let failing = plan[3];
    let _stage = FailStage::apply(&env, &[failing]).await;
    let _op = Operator::start(&ns, &[]).await;
    apply_hourly(&env, Some("1s")).await;
    apply_hourly_backfill(
        &env,
        "january",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T06:00:00Z", "maxInFlight": 3}),
    )
    .await;
    let bf = wait_finished(&env, "january", RUN_DEADLINE, |_| {}).await;
    assert_eq!(counters(&bf), (6, 5, 1, 0, 6), "{}", summary(&bf));

    let screen = ok(&plugin(&ns, &["status", "january"]));
    assert!(
        !screen.contains('\x1b'),
        "no colour off a terminal:\n{screen}"
    );
    let job = format!("january-b{failing}");
    for want in [
        format!("Backfill {ns}/january of Schedule hourly (\"0 * * * *\" in UTC)"),
        "Phase     Failed".to_string(),
        "] 6/6 (100%)".to_string(),
        "5 succeeded, 1 failed, 0 killed, 0 running, 0 queued, 0 skipped".to_string(),
        "Thu 2026-01-01 # # # x # #".to_string(),
        "Failed and killed sessions (1):".to_string(),
        format!("  2026-01-01T03:00:00+00:00  {job}"),
        "exit code 1 (Error)".to_string(),
        format!("    kubectl logs job/{job} -n {ns}"),
    ] {
        assert!(screen.contains(&want), "missing {want:?} in:\n{screen}");
    }
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
    }

    let object: Value =
        serde_json::from_str(&ok(&plugin(&ns, &["status", "january", "-o", "json"])))
            .expect("status -o json is JSON");
    assert_eq!(object["kind"], "Backfill");
    assert_eq!(object["status"]["failedCount"], 1);

    let table = ok(&plugin(&ns, &["list"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("PROGRESS") && header.ends_with("AGE"),
        "{table}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("january "))
        .unwrap_or_else(|| panic!("no row for january:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..6],
        ["january", "hourly", "Failed", "[##########]", "6/6", "5"],
        "{table}"
    );
    assert_eq!(row[6], "1", "{table}");

    let everywhere = ok(&plugin(&ns, &["list", "-A"]));
    assert!(everywhere.starts_with("NAMESPACE "), "{everywhere}");
    assert!(
        everywhere
            .lines()
            .any(|l| l.starts_with(&format!("{ns} ")) && l.contains(" january ")),
        "{everywhere}"
    );

    let wide = ok(&plugin(&ns, &["list", "-o", "wide"]));
    let run_id = bf.data["status"]["runId"].as_str().expect("a run id");
    assert!(wide.contains("RUN ID") && wide.contains(run_id), "{wide}");
    let list: Value = serde_json::from_str(&ok(&plugin(&ns, &["list", "-o", "json"])))
        .expect("list -o json is JSON");
    assert_eq!(list["items"][0]["metadata"]["name"], "january", "{list}");

    // kubectl finds the plugin on the PATH.
    let bin = Path::new(PLUGIN).parent().expect("the binary's directory");
    let path = std::env::join_paths(
        [bin.to_path_buf(), repo_root().join(".cluster/bin")]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .expect("a PATH");
    let through_kubectl = Command::new("kubectl")
        .args(["backfill", "list", "--kubeconfig"])
        .arg(kubeconfig())
        .args(["-n", &ns])
        .env("PATH", path)
        .output()
        .expect("kubectl runs");
    // The same table, but for the age, which may have ticked meanwhile.
    assert_eq!(without_age(&ok(&through_kubectl)), without_age(&table));
}

/// A table without its last column (AGE).
fn without_age(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            line.trim_end()
                .rsplit_once(' ')
                .map_or(line, |(rest, _)| rest)
                .trim_end()
                .to_string()
        })
        .collect()
}

/// `status --watch` on a running Backfill draws frames as it goes and
/// ends by itself, exit 0, when the Backfill finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_ends_when_the_backfill_finishes() {
    let env = setup("plug-watch").await;
    let ns = env.ns.name.clone();
    let _op = Operator::start(&ns, &[]).await;
    apply_hourly(&env, Some("2s")).await;
    apply_hourly_backfill(
        &env,
        "slow",
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T04:00:00Z", "maxInFlight": 1}),
    )
    .await;

    let child = Command::new(PLUGIN)
        .args(["status", "slow", "--watch", "--kubeconfig"])
        .arg(kubeconfig())
        .args(["-n", &ns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl-backfill starts");
    let pid = child.id();
    let waited = tokio::time::timeout(
        RUN_DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(joined) => joined
            .expect("the waiting task")
            .expect("the watch's output"),
        Err(_) => {
            // Ours to stop: the process this test started, by its id.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let bf = get(&env.backfills, "slow").await;
            panic!(
                "status --watch did not end within {RUN_DEADLINE:?}: {}",
                summary(&bf)
            );
        }
    };
    let screen = ok(&output);
    let bf = get(&env.backfills, "slow").await;
    assert!(is_finished(&bf), "the watch ended early: {}", summary(&bf));
    let frames: Vec<&str> = screen.split("---\n").collect();
    assert!(
        frames.len() >= 2,
        "one frame per change, separated by ---, off a terminal:\n{screen}"
    );
    let last = frames.last().expect("a frame");
    assert!(last.contains("Phase     Succeeded"), "{last}");
    assert!(last.contains("] 4/4 (100%)"), "{last}");
    assert!(last.contains("Thu 2026-01-01 # # # #"), "{last}");
    assert!(!frames[0].contains("Phase     Succeeded"), "{screen}");
}

/// A Backfill that does not exist: a clear error on stderr, exit 1,
/// nothing on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_backfill_is_an_error_on_stderr() {
    let env = setup("plug-missing").await;
    let ns = env.ns.name.clone();
    for args in [&["status", "nope"][..], &["status", "nope", "--watch"]] {
        let o = plugin(&ns, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stderr),
            format!("error: backfill \"nope\" not found in namespace \"{ns}\"\n"),
            "{args:?}"
        );
        assert!(o.stdout.is_empty(), "{args:?}: {}", text(&o.stdout));
    }
    let empty = plugin(&ns, &["list"]);
    assert!(empty.status.success());
    assert_eq!(
        text(&empty.stderr),
        format!("No resources found in {ns} namespace.\n")
    );
}
