//! Helpers shared by the end-to-end tests in `tests/`.
//!
//! The tests run against the local control plane of `hack/cluster.sh`
//! (`make cluster`, or `make test` which starts and stops it). They never
//! skip themselves: without a reachable API server they fail, saying how to
//! start one. Every test works in a namespace of its own, so the tests of a
//! binary run in parallel without seeing each other.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod accounts;
pub mod api;
pub mod events;
pub mod helm;
pub mod http;
pub mod instants;
pub mod jobs;
pub mod kwok;
pub mod operator;
pub mod pods;
pub mod poll;
pub mod status;
pub mod tracker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use poll::eventually;

/// The field manager of every write the tests make.
pub const FIELD_MANAGER: &str = "backfill-tests";

/// How long to wait for the control plane to do something quick (a CRD to
/// be established, a Job to finish). Generous: CI machines are slow.
pub const DEADLINE: Duration = Duration::from_secs(60);

const UNREACHABLE: &str = "control plane not reachable: run `make cluster` or `make test`";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The client config: `KUBECONFIG` when set, else the local control plane's
/// `.cluster/kubeconfig`.
async fn config() -> Config {
    let mut config = if std::env::var_os("KUBECONFIG").is_some() {
        Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{UNREACHABLE} (reading $KUBECONFIG: {e})"))
    } else {
        let path = repo_root().join(".cluster/kubeconfig");
        let kubeconfig = Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("{UNREACHABLE} (reading {}: {e})", path.display()));
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{UNREACHABLE} (loading {}: {e})", path.display()))
    };
    config.read_timeout = Some(Duration::from_secs(30));
    config
}

/// A client of the test control plane. Panics when it is not reachable:
/// a test that cannot run must fail, not pass silently.
pub async fn client() -> Client {
    let config = config().await;
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)
        .unwrap_or_else(|e| panic!("{UNREACHABLE} (building a client for {url}: {e})"));
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!("{UNREACHABLE} ({url}: {e})"),
        Err(_) => panic!("{UNREACHABLE} ({url} did not answer within 10s)"),
    }
}

/// The CRD files of a directory, sorted by name.
pub fn crd_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Serialises CRD installation within a test binary: the first test
/// applies, the others find the CRDs established.
static CRDS_INSTALLED: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Installs the CRDs of `crds/` with server-side apply and waits until the
/// API server serves them. Idempotent, and safe to call from every test.
pub async fn install_crds(client: &Client) {
    let mut installed = CRDS_INSTALLED.lock().await;
    if *installed {
        return;
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for file in crd_files(&repo_root().join("crds")) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
        let name = crd.metadata.name.clone().expect("a CRD has a name");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying {}: {e}", file.display()));
        names.push(name);
    }
    assert!(!names.is_empty(), "no CRD files in crds/: run `make crds`");
    for name in &names {
        eventually(&format!("CRD {name} to be Established"), DEADLINE, || {
            let api = api.clone();
            async move {
                let crd = api.get(name).await.map_err(|e| e.to_string())?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                {
                    Ok(())
                } else {
                    Err(format!("conditions {conditions:?}"))
                }
            }
        })
        .await;
    }
    *installed = true;
}

/// A namespace of one test, deleted when the value is dropped, whether the
/// test passed or panicked. Set `KEEP_TEST_NAMESPACES=1` to keep them for
/// a post-mortem.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<unique suffix>`.
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique_suffix());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("backfill.dev/test".to_string(), prefix.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_NAMESPACES").is_some() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        let name = self.name.clone();
        run_detached(&format!("delete namespace {name}"), async move {
            let client = match Client::try_from(config().await) {
                Ok(client) => client,
                Err(e) => return eprintln!("cannot delete namespace {name}: {e}"),
            };
            let api: Api<Namespace> = Api::all(client);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => eprintln!("cannot delete namespace {name}: {e}"),
            }
        });
    }
}

/// Runs `work` to completion from a `Drop`, which cannot await, and whose
/// caller may be the test's runtime itself (its client would deadlock):
/// on a thread of its own, with a runtime of its own, so `work` must make
/// its own client. `what` names the work in the message when no runtime
/// can be built.
pub fn run_detached(what: &str, work: impl std::future::Future<Output = ()> + Send + 'static) {
    let what = what.to_string();
    let worker = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(work),
            Err(e) => eprintln!("cannot {what}: {e}"),
        }
    });
    // A panic on the worker thread must not become a second panic here.
    let _ = worker.join();
}

/// A suffix no other test, in this process or another, picks at the same
/// time: the clock, the process id and a counter, in base 36.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut n = mixed;
    let mut digits = Vec::new();
    for _ in 0..8 {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    String::from_utf8(digits).expect("ASCII digits")
}

/// The message of an API error, or a description of any other outcome.
pub fn api_error_message<T>(result: &Result<T, kube::Error>) -> Option<(u16, String)> {
    match result {
        Err(kube::Error::Api(status)) => Some((status.code, status.message.clone())),
        _ => None,
    }
}

/// RFC 7386 JSON merge patch: `patch` onto `target`, `null` removing keys.
pub fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Parses one YAML document into JSON.
pub fn yaml(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML in a test: {e}\n{text}"))
}
