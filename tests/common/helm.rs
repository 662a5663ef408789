//! helm and kubectl of the local control plane (`.cluster/bin`, else
//! `PATH`), talking to `KUBECONFIG`, else `.cluster/kubeconfig`; and Helm
//! releases that uninstall themselves.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::repo_root;

/// The chart of the working tree.
pub fn chart() -> PathBuf {
    repo_root().join("charts/backfill-operator")
}

/// The working tree chart's Chart.yaml.
pub fn chart_yaml() -> serde_json::Value {
    let path = chart().join("Chart.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A released chart, as packaged in `tests/fixtures/charts`.
pub fn released_chart(version: &str) -> PathBuf {
    let path = repo_root().join(format!(
        "tests/fixtures/charts/backfill-operator-{version}.tgz"
    ));
    assert!(path.is_file(), "no released chart at {}", path.display());
    path
}

/// The admin kubeconfig the tests use.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster/kubeconfig"))
}

/// `.cluster/bin/<name>`, else `<name>` on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    let local = repo_root().join(".cluster/bin").join(name);
    if local.exists() {
        return local;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found in .cluster/bin or PATH: run `make tools` or `make cluster`")
        })
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs helm or kubectl against the test control plane.
pub fn run(name: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(tool(name))
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to {name}: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(name, args, stdin);
    assert!(
        out.ok,
        "{name} {} failed:\n{}\n{}",
        args.join(" "),
        out.stderr,
        out.stdout
    );
    out.stdout
}

/// A Helm release, uninstalled when dropped (before its namespace goes:
/// declare it after the namespace). A cluster-wide install leaves a
/// ClusterRole and its binding that the namespace's deletion would not.
pub struct Release {
    pub name: String,
    pub ns: String,
}

impl Release {
    /// `helm install <name> <chart> -n <ns> <args>` (`--set`, `--wait`,
    /// ...). Uninstalled on drop even when the install fails half-way.
    pub fn install(name: &str, ns: &str, chart: &Path, args: &[&str]) -> Self {
        let release = Release {
            name: name.to_string(),
            ns: ns.to_string(),
        };
        let chart = chart.to_str().expect("a UTF-8 path");
        let mut all = vec!["install", name, chart, "-n", ns];
        all.extend_from_slice(args);
        run_ok("helm", &all, None);
        release
    }

    /// The release's full name, which the chart gives its ServiceAccount
    /// and Deployment (the release name does not hold the chart's name).
    pub fn fullname(&self) -> String {
        format!("{}-backfill-operator", self.name)
    }

    pub fn service_account(&self) -> String {
        self.fullname()
    }

    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.ns,
            self.service_account()
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let out = run("helm", &["uninstall", &self.name, "-n", &self.ns], None);
        if !out.ok && !out.stderr.contains("not found") {
            eprintln!("helm uninstall {}: {}", self.name, out.stderr);
        }
    }
}

/// Cluster-scoped objects applied for one test, deleted when dropped.
pub struct Applied(String);

impl Applied {
    /// Applies `manifests` server-side as `field_manager`.
    pub fn new(manifests: String, field_manager: &str) -> Self {
        run_ok(
            "kubectl",
            &[
                "apply",
                "--server-side",
                "--field-manager",
                field_manager,
                "-f",
                "-",
            ],
            Some(&manifests),
        );
        Applied(manifests)
    }

    /// The chart's admission policies of `template` (under `templates/`),
    /// bound to the namespace `ns` alone by `<values>.namespaceSelector`
    /// (the test cluster is shared), applied.
    pub fn chart_policy(template: &str, values: &str, ns: &str) -> Self {
        let chart = chart();
        let selector =
            format!("{values}.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={ns}");
        let release = format!("p-{}", &ns[ns.len().saturating_sub(8)..]);
        let policy = run_ok(
            "helm",
            &[
                "template",
                &release,
                chart.to_str().expect("a UTF-8 path"),
                "-n",
                ns,
                "--show-only",
                &format!("templates/{template}"),
                "--set",
                &selector,
            ],
            None,
        );
        Applied::new(policy, &format!("{values}-test"))
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        run(
            "kubectl",
            &["delete", "--ignore-not-found", "-f", "-"],
            Some(&self.0),
        );
    }
}
