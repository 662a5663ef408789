//! The operator as a real process, for end-to-end tests.
//!
//! Each test starts its own `backfill-operator run --namespace <its
//! namespace>`, so it can kill and restart it without disturbing the
//! others. The harness keeps the operator's virtual clock (`--time-scale`,
//! `--time-origin`) in step: [`Operator::virtual_now`] is the operator's
//! "now", and a restart continues it instead of letting it jump back.
//! Logs go to `target/e2e-logs/<namespace>[-<POD_NAME>]-<run>.log`; when a test panics
//! the tail of every run's log is printed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use super::jobs::JOB_FINALIZER;
use super::{FIELD_MANAGER, config, repo_root, run_detached};

/// The line the operator logs once its caches are synced.
const READY_LINE: &str = "controllers started";
/// The line a replica under leader election logs before it competes.
const STANDBY_LINE: &str = "waiting to lead";

/// How long the operator may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long the operator may take to exit after SIGTERM.
const TERM_DEADLINE: Duration = Duration::from_secs(10);

/// Lines of log printed when a test fails.
const TAIL_LINES: usize = 40;

/// The environment variable that names a failpoint: the debug build aborts
/// there (`controller::apply`).
pub const FAILPOINT: &str = "BACKFILL_OPERATOR_FAILPOINT";

/// A running (or stopped) operator process scoped to one namespace.
pub struct Operator {
    namespace: String,
    /// The test's extra arguments, without `--time-origin` (the harness
    /// passes that itself on restarts).
    args: Vec<String>,
    /// `--time-origin` the test asked for, used on the first start only.
    first_origin: Option<String>,
    /// Extra environment variables of the process (a failpoint).
    env: Vec<(String, String)>,
    scale: f64,
    /// The virtual clock: at real instant `clock_start` it read
    /// `clock_origin` (Unix seconds), and it runs `scale` times faster.
    clock_origin: f64,
    clock_start: Instant,
    child: Option<Child>,
    logs: Vec<PathBuf>,
}

impl Operator {
    /// Starts `backfill-operator run --namespace <namespace> <args>` and
    /// waits until it logs that its controllers started.
    pub async fn start(namespace: &str, args: &[&str]) -> Self {
        Self::start_with_env(namespace, args, &[]).await
    }

    /// [`Operator::start`] with extra environment variables, e.g.
    /// `BACKFILL_OPERATOR_FAILPOINT`; restarts keep them unless
    /// [`Operator::restart_with_env`] replaces them.
    pub async fn start_with_env(namespace: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut rest = Vec::new();
        let mut first_origin = None;
        let mut scale = 1.0;
        let mut iter = args.iter().map(|a| a.to_string());
        while let Some(arg) = iter.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_string(), Some(value.to_string()))
                }
                _ => (arg.clone(), None),
            };
            match flag.as_str() {
                "--time-origin" => {
                    first_origin = Some(inline.or_else(|| iter.next()).expect("--time-origin T"));
                }
                "--time-scale" => {
                    let value = inline.or_else(|| iter.next()).expect("--time-scale F");
                    scale = value
                        .parse()
                        .unwrap_or_else(|e| panic!("--time-scale {value:?}: {e}"));
                    rest.push("--time-scale".to_string());
                    rest.push(value);
                }
                _ => rest.push(arg),
            }
        }
        let clock_origin = match &first_origin {
            Some(t) => {
                t.parse::<Timestamp>()
                    .unwrap_or_else(|e| panic!("--time-origin {t:?}: {e}"))
                    .as_millisecond() as f64
                    / 1000.0
            }
            None => Timestamp::now().as_millisecond() as f64 / 1000.0,
        };
        let mut operator = Operator {
            namespace: namespace.to_string(),
            args: rest,
            first_origin,
            env: owned_env(env),
            scale,
            clock_origin,
            clock_start: Instant::now(),
            child: None,
            logs: Vec::new(),
        };
        operator.spawn().await;
        operator
    }

    /// The operator's virtual "now" in Unix seconds: where its clock is,
    /// running or not (the clock goes on while it is down, as real time
    /// does for a real operator).
    pub fn virtual_now(&self) -> f64 {
        self.clock_origin + self.clock_start.elapsed().as_secs_f64() * self.scale
    }

    /// How many times faster than real time the operator's clock runs.
    pub fn time_scale(&self) -> f64 {
        self.scale
    }

    /// Real time the virtual clock takes to advance `virtual_seconds`.
    pub fn real_duration(&self, virtual_seconds: f64) -> Duration {
        Duration::from_secs_f64((virtual_seconds / self.scale).max(0.0))
    }

    /// Waits until the virtual clock reads at least `at` (Unix seconds).
    pub async fn wait_until_virtual(&self, at: f64) {
        loop {
            let left = at - self.virtual_now();
            if left <= 0.0 {
                return;
            }
            tokio::time::sleep(self.real_duration(left).min(Duration::from_millis(200))).await;
        }
    }

    /// Whether the process runs: started, not killed by the test, and not
    /// exited by itself (a crash, an abort). One that exited is reaped
    /// and counts as stopped from then on.
    pub fn is_running(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
        if exited {
            self.child = None;
        }
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and asserts a clean exit (status 0) within a few seconds.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("terminate: the operator is not running");
        };
        sigterm(child.id()).unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().expect("waiting for the operator") {
                break status;
            }
            if start.elapsed() > TERM_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the operator did not exit within {TERM_DEADLINE:?} of SIGTERM\n{}",
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "the operator exited with {status} after SIGTERM, expected 0\n{}",
            self.log_tail(TAIL_LINES)
        );
    }

    /// Starts the operator again (killing it first if it still runs), with
    /// the same arguments and `--time-origin` set to the virtual clock's
    /// current reading, so virtual time continues from where it is.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// [`Operator::restart`] with these extra environment variables
    /// instead of the previous ones (none, to drop a failpoint).
    pub async fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = owned_env(env);
        self.restart().await;
    }

    /// Waits until the process exits by itself (a failpoint aborting it)
    /// and returns how it ended; panics if it still runs after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            let Some(child) = self.child.as_mut() else {
                panic!("wait_exit: the operator is not running");
            };
            if let Some(status) = child.try_wait().expect("waiting for the operator") {
                self.child = None;
                return status;
            }
            if start.elapsed() > deadline {
                panic!(
                    "the operator still runs after {deadline:?}, expected it to exit\n{}",
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The path of the current (latest) run's log.
    pub fn log_path(&self) -> &Path {
        self.logs.last().expect("the operator has been started")
    }

    /// Every run's log, concatenated, each under a header line.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        for path in &self.logs {
            text.push_str(&format!("===== {} =====\n", path.display()));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    /// The last `lines` lines of the current run's log, under a header:
    /// for panic messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match self.logs.last() {
            Some(path) => format!(
                "----- last {lines} lines of {} -----\n{}",
                path.display(),
                tail(path, lines)
            ),
            None => "(the operator never started)".to_string(),
        }
    }

    /// Asserts that no run's log says the operator was refused something:
    /// no line with "forbidden", or with any of `also` (case-insensitive).
    #[track_caller]
    pub fn assert_nothing_refused(&self, also: &[&str]) {
        let logs = self.all_logs();
        let denied: Vec<&str> = logs
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                l.contains("forbidden") || also.iter().any(|a| l.contains(a))
            })
            .collect();
        assert!(
            denied.is_empty(),
            "the operator was refused something:\n{}",
            denied.join("\n")
        );
    }

    /// Lines of all runs' logs containing `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        self.all_logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the operator already runs");
        let origin = if self.logs.is_empty() {
            self.first_origin.clone()
        } else {
            // Round up: a restart may jump a fraction of a second ahead,
            // never back.
            let now = self.virtual_now().ceil() as i64;
            Some(
                Timestamp::from_second(now)
                    .expect("a virtual time in range")
                    .to_string(),
            )
        };
        let run = self.logs.len() + 1;
        let dir = logs_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Replicas of one namespace are told apart by their POD_NAME.
        let replica = self
            .env
            .iter()
            .find(|(k, _)| k == "POD_NAME")
            .map(|(_, v)| format!("-{v}"))
            .unwrap_or_default();
        let log = dir.join(format!("{}{replica}-{run}.log", self.namespace));
        let file = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let stdout = file.try_clone().expect("cloning a file handle");

        let mut command = Command::new(env!("CARGO_BIN_EXE_backfill-operator"));
        command
            .arg("run")
            .args(["--namespace", &self.namespace])
            .args(&self.args);
        if let Some(origin) = &origin {
            command.args(["--time-origin", origin]);
        }
        if std::env::var_os("KUBECONFIG").is_none() {
            command.env("KUBECONFIG", repo_root().join(".cluster/kubeconfig"));
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,backfill_operator=debug");
        }
        command
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(file));
        let spawned_at = Instant::now();
        if let Some(origin) = &origin {
            self.clock_origin = origin
                .parse::<Timestamp>()
                .expect("an RFC 3339 origin")
                .as_millisecond() as f64
                / 1000.0;
            self.clock_start = spawned_at;
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("starting {}: {e}", env!("CARGO_BIN_EXE_backfill-operator"))
        });
        self.logs.push(log.clone());
        self.child = Some(child);
        eprintln!(
            "operator run {run} for {} (pid {}): {}",
            self.namespace,
            self.pid().unwrap_or_default(),
            log.display()
        );

        // A replica under leader election logs its start before it leads.
        let ready = if self.args.iter().any(|a| a == "--leader-elect") {
            STANDBY_LINE
        } else {
            READY_LINE
        };
        loop {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(ready)
            {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                panic!(
                    "the operator exited ({status}) before logging {ready:?}\n{}",
                    self.log_tail(TAIL_LINES)
                );
            }
            if spawned_at.elapsed() > START_DEADLINE {
                self.kill();
                panic!(
                    "the operator did not log {ready:?} within {START_DEADLINE:?}\n{}",
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    /// Kills the process; on a failing test prints the logs' tails; then
    /// removes the operator's finalizer from the Jobs left in the
    /// namespace (see [`sweep_job_finalizers`]).
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            for (i, path) in self.logs.iter().enumerate() {
                let lines = if i + 1 == self.logs.len() {
                    TAIL_LINES
                } else {
                    TAIL_LINES / 4
                };
                eprintln!(
                    "----- last {lines} lines of {} -----\n{}",
                    path.display(),
                    tail(path, lines)
                );
            }
        }
        if !self.logs.is_empty() {
            sweep_job_finalizers(&self.namespace);
        }
    }
}

/// Removes the operator's finalizer from the Jobs of a namespace when
/// dropped, as [`Operator`]'s drop does: for tests whose operator is not
/// an [`Operator`] (the chart's, run by `pods::PodRunner`). Declare it
/// before the operator's processes stop (it must drop after) and after the
/// namespace.
pub struct JobFinalizerSweep {
    pub namespace: String,
}

impl Drop for JobFinalizerSweep {
    fn drop(&mut self) {
        sweep_job_finalizers(&self.namespace);
    }
}

/// Removes the operator's finalizer from the namespace's Jobs, so that
/// deleting the namespace does not hang on them (unless
/// `KEEP_TEST_NAMESPACES` asks to keep everything as it is). For drops:
/// a thread with a runtime and a client of its own.
fn sweep_job_finalizers(namespace: &str) {
    if std::env::var_os("KEEP_TEST_NAMESPACES").is_some() {
        return;
    }
    let namespace = namespace.to_string();
    run_detached(&format!("clean up Jobs in {namespace}"), async move {
        match Client::try_from(config().await) {
            Ok(client) => remove_job_finalizers(client, &namespace).await,
            Err(e) => eprintln!("cannot clean up Jobs in {namespace}: {e}"),
        }
    });
}

/// Sends SIGTERM to a process, as a kubelet does to stop a container.
pub fn sigterm(pid: u32) -> Result<(), String> {
    let pid = pid.to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if sent.success() {
        Ok(())
    } else {
        Err(format!("kill -TERM {pid} failed: {sent}"))
    }
}

fn owned_env(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Removes the operator's finalizer from every Job of the namespace.
async fn remove_job_finalizers(client: Client, namespace: &str) {
    let jobs: Api<Job> = Api::namespaced(client, namespace);
    let Ok(list) = jobs.list(&ListParams::default()).await else {
        return;
    };
    for job in list {
        let Some(finalizers) = job.metadata.finalizers else {
            continue;
        };
        if !finalizers.iter().any(|f| f == JOB_FINALIZER) {
            continue;
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != JOB_FINALIZER).collect();
        let patch = serde_json::json!({
            "metadata": {
                "finalizers": kept,
                "resourceVersion": job.metadata.resource_version,
            }
        });
        let name = job.metadata.name.unwrap_or_default();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        if let Err(e) = jobs.patch(&name, &params, &Patch::Merge(&patch)).await {
            eprintln!("cannot remove the finalizer of Job {namespace}/{name}: {e}");
        }
    }
}

/// `target/e2e-logs`, next to the binary under test.
pub fn logs_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_backfill-operator"));
    exe.parent()
        .and_then(Path::parent)
        .map(|target| target.join("e2e-logs"))
        .unwrap_or_else(|| repo_root().join("target/e2e-logs"))
}

/// The last `lines` lines of a file (reading at most its last 256 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot read {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
