//! The Backfill controller end to end: the operator runs as a real
//! process (one per test, scoped to the test's namespace) against the
//! local control plane, and its Jobs run through the real job controller
//! and kwok.
//!
//! The target is a suspended hourly Schedule in UTC: a Backfill runs past
//! sessions whether or not the Schedule runs. The operator's clock is the
//! real one, so "now" (the end of every plan, the execution windows) is
//! today, and the January 2026 sessions are all in the past.
//!
//! A `JobTracker` watches the namespace's Backfill Jobs from before the
//! Backfill exists, so a test knows every Job that ever existed, how many
//! ran at once and how each ended, even after it was deleted — the truth
//! the counters are checked against. Sessions are failed on purpose by a
//! kwok Stage of the test's own (`FailStage`), selected by namespace and
//! `backfill.dev/session` label.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use common::jobs::{JobLog, watch_jobs};
use common::objects::{condition, condition_is, counter, eventually, rfc3339_utc, status};
use common::operator::Operator;
use common::{DEADLINE, FIELD_MANAGER, TestNamespace, client, install_crds, merge, repo_root};

const LABEL_BACKFILL: &str = "backfill.dev/backfill";
const LABEL_SCHEDULE: &str = "backfill.dev/schedule";
const LABEL_SESSION: &str = "backfill.dev/session";
const ANNOTATION_PLAN_INDEX: &str = "backfill.dev/plan-index";
const ANNOTATION_CREATED_BY: &str = "backfill.dev/created-by";
const JOB_FINALIZER: &str = "backfill.dev/outcome";
const RUN_FOR: &str = "testenv.backfill.dev/run-for";

const HOUR: i64 = 3_600;
const MINUTE: i64 = 60;

/// How long a small backfill (a few dozen short Jobs) may take to finish.
/// Generous: the tests of this binary run side by side on a small machine.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

/// The largest status object the design allows.
const SIZE_LIMIT: usize = 256 * 1024;

const FINISHED: [&str; 3] = ["Succeeded", "Failed", "Cancelled"];

// ---------------------------------------------------------------------
// Setup and the API (untyped, so the tests read the API as a user's
// kubectl does).
// ---------------------------------------------------------------------

struct Env {
    client: Client,
    ns: TestNamespace,
    schedules: Api<DynamicObject>,
    backfills: Api<DynamicObject>,
    jobs: Api<Job>,
}

async fn setup(prefix: &str) -> Env {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("backfill.dev", "v1alpha1", kind),
            plural,
        )
    };
    Env {
        schedules: Api::namespaced_with(
            client.clone(),
            &ns.name,
            &resource("Schedule", "schedules"),
        ),
        backfills: Api::namespaced_with(
            client.clone(),
            &ns.name,
            &resource("Backfill", "backfills"),
        ),
        jobs: Api::namespaced(client.clone(), &ns.name),
        client,
        ns,
    }
}

/// A suspended Schedule in UTC running `cron`, whose pods carry
/// `pod_annotations` (the kwok knobs), with `spec_patch` merged onto its
/// spec (RFC 7386).
fn schedule_manifest(
    name: &str,
    cron: &str,
    pod_annotations: &[(&str, &str)],
    spec_patch: Value,
) -> Value {
    let annotations: serde_json::Map<String, Value> = pod_annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let mut manifest = json!({
        "apiVersion": "backfill.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {
            "schedule": cron,
            "timeZone": "UTC",
            "suspend": true,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "main",
                            "image": "busybox:1.37",
                            "command": ["sh", "-c", "echo \"$SESSION_TIME\""],
                        }],
                    },
                },
            }},
        },
    });
    merge(&mut manifest["spec"], &spec_patch);
    manifest
}

/// A Backfill of `schedule` with `spec` (scheduleRef added).
fn backfill_manifest(name: &str, schedule: &str, mut spec: Value) -> Value {
    spec["scheduleRef"] = json!({"name": schedule});
    json!({
        "apiVersion": "backfill.dev/v1alpha1",
        "kind": "Backfill",
        "metadata": {"name": name},
        "spec": spec,
    })
}

async fn apply(api: &Api<DynamicObject>, manifest: &Value) -> DynamicObject {
    let name = manifest["metadata"]["name"].as_str().expect("a name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", manifest["kind"]))
}

/// Merge-patches an object's spec (`null` removes a field) and returns
/// its new generation.
async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) -> i64 {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let patched = api
        .patch(name, &params, &Patch::Merge(&json!({ "spec": spec })))
        .await
        .unwrap_or_else(|e| panic!("patching {name}: {e}"));
    patched.metadata.generation.expect("a generation")
}

async fn get(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn phase(obj: &DynamicObject) -> &str {
    status(obj)["phase"].as_str().unwrap_or("")
}

/// An RFC 3339 value as Unix seconds.
fn instant(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    Some(
        text.parse::<Timestamp>()
            .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
            .as_second(),
    )
}

/// A list of RFC 3339 values as Unix seconds.
fn instants(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| instant(v).expect("a time")).collect())
        .unwrap_or_default()
}

fn at(text: &str) -> i64 {
    text.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .as_second()
}

/// The Backfill's status in one line, for messages.
fn summary(bf: &DynamicObject) -> String {
    let s = status(bf);
    let conditions: Vec<String> = s["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| format!("{}={}({})", c["type"], c["status"], c["reason"]))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "phase={} progress={} total={} processed={} succeeded={} failed={} killed={} \
         running={} launched={} completedAt={} error={} conditions=[{}]",
        s["phase"],
        s["progress"],
        s["totalEstimated"],
        s["processedCount"],
        s["succeededCount"],
        s["failedCount"],
        s["killedCount"],
        s["runningCount"],
        s["run"]["launched"],
        s["completedAt"],
        s["error"],
        conditions.join(" "),
    )
}

fn is_finished(bf: &DynamicObject) -> bool {
    FINISHED.contains(&phase(bf))
        && status(bf)["completedAt"].is_string()
        && counter(bf, "runningCount") == 0
}

/// Waits until the Backfill is finished (a final phase, completedAt set,
/// nothing running), checking `during` on every poll before that.
async fn wait_finished(
    env: &Env,
    name: &str,
    deadline: Duration,
    mut during: impl FnMut(&DynamicObject),
) -> DynamicObject {
    let start = Instant::now();
    loop {
        let bf = get(&env.backfills, name).await;
        during(&bf);
        if is_finished(&bf) {
            return bf;
        }
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting for Backfill {name} to finish; last seen: {}",
                summary(&bf)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the Backfill's phase is `want`, with the current generation
/// observed.
async fn wait_phase(env: &Env, name: &str, want: &str) -> DynamicObject {
    eventually(
        &format!("Backfill {name} in phase {want}"),
        DEADLINE,
        || async {
            let bf = get(&env.backfills, name).await;
            let observed = status(&bf)["observedGeneration"].as_i64();
            if phase(&bf) == want && observed == bf.metadata.generation {
                Ok(bf)
            } else {
                Err(summary(&bf))
            }
        },
    )
    .await
}

/// The sessions of an hourly schedule in `[from, to)`.
fn hours(from: &str, to: &str) -> Vec<i64> {
    (at(from)..at(to)).step_by(HOUR as usize).collect()
}

/// The whole stored object, as the API server serves it: its size is
/// what etcd holds.
async fn stored_json(env: &Env, name: &str) -> String {
    let path = format!(
        "/apis/backfill.dev/v1alpha1/namespaces/{}/backfills/{name}",
        env.ns.name
    );
    let request = http::Request::get(&path)
        .body(Vec::new())
        .expect("a GET request");
    env.client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// ---------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------

/// Events about the Backfill `name`: (type, reason, message).
async fn events_of(env: &Env, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), &env.ns.name);
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing Events: {e}"));
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Backfill")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

async fn wait_event(env: &Env, name: &str, type_: &str, reason: &str) -> String {
    eventually(
        &format!("a {type_} Event {reason} on Backfill {name}"),
        DEADLINE,
        || async {
            let events = events_of(env, name).await;
            events
                .iter()
                .find(|(t, r, _)| t == type_ && r == reason)
                .map(|(_, _, m)| m.clone())
                .ok_or_else(|| format!("events so far: {events:?}"))
        },
    )
    .await
}

// ---------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------

/// Checks `check` on every poll for `span`: for what must *not* happen
/// (a Job launched while paused), which no event announces. `span` is a
/// few times longer than the operator takes to launch a Job when it may.
async fn throughout(what: &str, span: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    while start.elapsed() < span {
        if let Err(e) = check() {
            panic!("{what} did not hold: {e}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------
// kwok: failing chosen sessions
// ---------------------------------------------------------------------

/// A kwok Stage failing the pods of chosen sessions in one namespace: the
/// `pod-fail` Stage of `hack/kwok/stages.yaml`, selected by namespace and
/// session label instead of the annotation, with a positive weight so kwok
/// prefers it over `pod-complete`. Deleted when dropped.
struct FailStage {
    name: String,
}

fn stages_api(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage"),
        "stages",
    );
    Api::all_with(client.clone(), &resource)
}

impl FailStage {
    async fn apply(env: &Env, sessions: &[i64]) -> Self {
        let path = repo_root().join("hack/kwok/stages.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut stage = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("a YAML document"))
            .find(|doc| doc["metadata"]["name"] == "pod-fail")
            .expect("a pod-fail Stage in hack/kwok/stages.yaml");
        let name = format!("fail-{}", env.ns.name);
        stage["metadata"] = json!({"name": name});
        stage["spec"]["weight"] = json!(1);
        let expressions = stage["spec"]["selector"]["matchExpressions"]
            .as_array_mut()
            .expect("pod-fail has matchExpressions");
        expressions.retain(|e| {
            !e["key"]
                .as_str()
                .unwrap_or_default()
                .contains("testenv.backfill.dev/outcome")
        });
        expressions.push(json!({
            "key": ".metadata.namespace",
            "operator": "In",
            "values": [env.ns.name],
        }));
        expressions.push(json!({
            "key": format!(".metadata.labels[\"{LABEL_SESSION}\"]"),
            "operator": "In",
            "values": sessions.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        }));
        stages_api(&env.client)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&stage),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Stage {name}: {e}"));
        FailStage { name }
    }
}

impl Drop for FailStage {
    /// As `TestNamespace`: a thread with a runtime and a client of its own.
    fn drop(&mut self) {
        let name = self.name.clone();
        let deleter = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return eprintln!("cannot delete Stage {name}: {e}"),
            };
            runtime.block_on(async {
                let api = stages_api(&client().await);
                if let Err(e) = api.delete(&name, &DeleteParams::background()).await {
                    eprintln!("cannot delete Stage {name}: {e}");
                }
            });
        });
        let _ = deleter.join();
    }
}

// ---------------------------------------------------------------------
// The Job tracker: every Backfill Job that ever existed in the namespace.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
}

/// How a Job ended, as the operator judges it: Complete or Failed.
fn outcome(job: &Job) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete") {
        Some(Outcome::Succeeded)
    } else if is("Failed") {
        Some(Outcome::Failed)
    } else {
        None
    }
}

fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    backfill: String,
    schedule: String,
    session: Option<i64>,
    plan_index: Option<u64>,
    outcome: Option<Outcome>,
    /// Seen with a pod active.
    started: bool,
    /// Has a deletionTimestamp.
    deleting: bool,
    /// Gone from the API server.
    deleted: bool,
    /// Carried the outcome finalizer when last seen.
    finalizer: bool,
    owned: bool,
}

impl Seen {
    /// Running, as `maxInFlight` counts: not finished, not being deleted.
    fn active(&self) -> bool {
        self.outcome.is_none() && !self.deleting && !self.deleted
    }
}

#[derive(Default)]
struct Tracked {
    jobs: BTreeMap<String, Seen>,
    /// Per Backfill: the UIDs of its active Jobs now, and the most ever.
    active: BTreeMap<String, BTreeSet<String>>,
    max_active: BTreeMap<String, usize>,
    /// Per Backfill: the names of the Jobs active when the most were.
    max_active_names: BTreeMap<String, Vec<String>>,
}

impl JobLog for Tracked {
    fn uids(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    fn apply(&mut self, job: &Job) {
        let Some(uid) = job.metadata.uid.clone() else {
            return;
        };
        let seen = self.jobs.entry(uid.clone()).or_insert_with(|| Seen {
            name: job.metadata.name.clone().unwrap_or_default(),
            backfill: label(job, LABEL_BACKFILL).unwrap_or_default().to_string(),
            schedule: label(job, LABEL_SCHEDULE).unwrap_or_default().to_string(),
            session: label(job, LABEL_SESSION).and_then(|s| s.parse().ok()),
            plan_index: job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_PLAN_INDEX))
                .and_then(|s| s.parse().ok()),
            outcome: None,
            started: false,
            deleting: false,
            deleted: false,
            finalizer: false,
            owned: job
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Backfill" && o.controller == Some(true)),
        });
        // An outcome, once seen, stays (a Job never un-finishes).
        seen.outcome = seen.outcome.or(outcome(job));
        seen.started |= job
            .status
            .as_ref()
            .and_then(|s| s.active)
            .is_some_and(|a| a > 0);
        seen.deleting |= job.metadata.deletion_timestamp.is_some();
        seen.finalizer = job
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == JOB_FINALIZER);
        self.measure(&uid);
    }

    fn delete(&mut self, uid: &str) {
        if let Some(seen) = self.jobs.get_mut(uid) {
            seen.deleted = true;
        }
        self.measure(uid);
    }
}

impl Tracked {
    fn measure(&mut self, uid: &str) {
        let Some(seen) = self.jobs.get(uid) else {
            return;
        };
        let active = self.active.entry(seen.backfill.clone()).or_default();
        if seen.active() {
            active.insert(uid.to_string());
        } else {
            active.remove(uid);
        }
        let max = self.max_active.entry(seen.backfill.clone()).or_default();
        if active.len() > *max {
            *max = active.len();
            let names = active
                .iter()
                .filter_map(|uid| self.jobs.get(uid))
                .map(|s| s.name.clone())
                .collect();
            self.max_active_names.insert(seen.backfill.clone(), names);
        }
    }
}

struct JobTracker {
    state: Arc<Mutex<Tracked>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobTracker {
    /// Starts watching the namespace's Backfill Jobs and waits for the
    /// first list.
    async fn start(jobs: &Api<Job>) -> Self {
        let (state, task) =
            watch_jobs::<Tracked>(jobs, watcher::Config::default().labels(LABEL_BACKFILL)).await;
        JobTracker { state, task }
    }

    /// Every Job of `backfill` ever seen, by session then name.
    fn of(&self, backfill: &str) -> Vec<Seen> {
        let state = self.state.lock().expect("tracker lock");
        let mut jobs: Vec<Seen> = state
            .jobs
            .values()
            .filter(|s| s.backfill == backfill)
            .cloned()
            .collect();
        jobs.sort_by_key(|s| (s.session, s.name.clone()));
        jobs
    }

    /// The most Jobs of `backfill` active at once so far.
    fn max_active(&self, backfill: &str) -> usize {
        let state = self.state.lock().expect("tracker lock");
        state.max_active.get(backfill).copied().unwrap_or(0)
    }

    /// The Jobs of `backfill` active together when the most were.
    fn max_active_names(&self, backfill: &str) -> Vec<String> {
        let state = self.state.lock().expect("tracker lock");
        state
            .max_active_names
            .get(backfill)
            .cloned()
            .unwrap_or_default()
    }

    /// Every name seen with more than one UID, and every session seen in
    /// more than one Job: a session run twice.
    fn duplicates(&self, backfill: &str) -> Vec<String> {
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_session: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
        for seen in self.of(backfill) {
            *by_name.entry(seen.name.clone()).or_default() += 1;
            by_session.entry(seen.session).or_default().push(seen.name);
        }
        let mut duplicates: Vec<String> = by_name
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(name, n)| format!("{name} created {n} times"))
            .collect();
        duplicates.extend(
            by_session
                .into_iter()
                .filter(|(_, names)| names.len() > 1)
                .map(|(session, names)| format!("session {session:?} in Jobs {names:?}")),
        );
        duplicates
    }

    /// Distinct sessions of `backfill`'s Jobs.
    fn sessions(&self, backfill: &str) -> BTreeSet<i64> {
        self.of(backfill).iter().filter_map(|s| s.session).collect()
    }

    /// Distinct sessions of `backfill`'s Jobs that ended with `outcome`.
    fn sessions_with(&self, backfill: &str, outcome: Outcome) -> BTreeSet<i64> {
        self.of(backfill)
            .iter()
            .filter(|s| s.outcome == Some(outcome))
            .filter_map(|s| s.session)
            .collect()
    }

    /// Waits until the Jobs of `backfill` satisfy `pred`.
    async fn wait(&self, what: &str, backfill: &str, pred: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        eventually(what, DEADLINE, || async {
            let jobs = self.of(backfill);
            if pred(&jobs) {
                Ok(jobs)
            } else {
                Err(format!("Jobs seen: {}", describe(&jobs)))
            }
        })
        .await
    }
}

impl Drop for JobTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn describe(jobs: &[Seen]) -> String {
    let parts: Vec<String> = jobs
        .iter()
        .map(|s| {
            let mut state = match s.outcome {
                Some(Outcome::Succeeded) => "succeeded",
                Some(Outcome::Failed) => "failed",
                None if s.started => "running",
                None => "pending",
            }
            .to_string();
            if s.deleting {
                state.push_str(",deleting");
            }
            if s.deleted {
                state.push_str(",deleted");
            }
            if s.finalizer {
                state.push_str(",finalizer");
            }
            format!("{}[{state}]", s.name)
        })
        .collect();
    format!("{} Jobs: [{}]", jobs.len(), parts.join(" "))
}

/// What every Job of a finished Backfill must look like: named, labelled
/// and annotated after its session, owned by the Backfill, one per
/// session of `plan` (in run order), and no more.
fn assert_one_job_per_session(tracker: &JobTracker, backfill: &str, plan: &[i64]) {
    let seen = tracker.of(backfill);
    let duplicates = tracker.duplicates(backfill);
    assert!(
        duplicates.is_empty(),
        "sessions run twice: {duplicates:?}\n{}",
        describe(&seen)
    );
    assert_eq!(
        seen.len(),
        plan.len(),
        "expected exactly {} Jobs ever created: {}",
        plan.len(),
        describe(&seen)
    );
    let want: BTreeSet<i64> = plan.iter().copied().collect();
    assert_eq!(
        tracker.sessions(backfill),
        want,
        "the Jobs' sessions are not the plan"
    );
    for s in &seen {
        let session = s.session.expect("a session label");
        assert_eq!(s.name, format!("{backfill}-b{session}"));
        assert!(
            s.owned,
            "{} has no controller reference to a Backfill",
            s.name
        );
        let index = plan.iter().position(|&p| p == session).expect("planned") as u64;
        assert_eq!(s.plan_index, Some(index), "{}: plan index", s.name);
    }
}

// ---------------------------------------------------------------------
// 1. maxInFlight, failures, counters
// ---------------------------------------------------------------------

const JAN_FROM: &str = "2026-01-01T00:00:00Z";
const JAN_TO: &str = "2026-01-02T06:00:00Z";

/// 30 hourly sessions, 4 at a time, 5 of them failing: never more than 4
/// Jobs at once, one Job per session, and counters that add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_session_once_within_max_in_flight_and_counts_failures() {
    let env = setup("bf-inflight").await;
    let plan = hours(JAN_FROM, JAN_TO);
    assert_eq!(plan.len(), 30);
    // Not in the first batch of 4: kwok needs a moment to load the Stage.
    let fail: Vec<i64> = [5, 9, 10, 21, 29].iter().map(|&i| plan[i]).collect();
    let _stage = FailStage::apply(&env, &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "1s")], json!({})),
    )
    .await;
    let mut manifest = backfill_manifest(
        "january",
        "hourly",
        json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 4}),
    );
    manifest["metadata"]["annotations"] = json!({ANNOTATION_CREATED_BY: "alice@example.com"});
    apply(&env.backfills, &manifest).await;

    let mut max_running_count = 0;
    let bf = wait_finished(&env, "january", RUN_DEADLINE, |bf| {
        let max = tracker.max_active("january");
        assert!(
            max <= 4,
            "{max} Jobs active at once, maxInFlight is 4: {:?}\n{}",
            tracker.max_active_names("january"),
            summary(bf)
        );
        max_running_count = max_running_count.max(counter(bf, "runningCount"));
        assert!(max_running_count <= 4, "status says: {}", summary(bf));
    })
    .await;

    assert_eq!(
        tracker.max_active("january"),
        4,
        "4 Jobs should run at once (pods run 1s): {}",
        describe(&tracker.of("january"))
    );
    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "killedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (25, 5, 0, 30, 30),
        "{}",
        summary(&bf)
    );
    let s = status(&bf);
    assert_eq!(s["progress"], "30/30");
    assert!(s["startedAt"].is_string() && s["runId"].is_string(), "{s}");
    assert!(
        instant(&s["completedAt"]) >= instant(&s["startedAt"]),
        "{s}"
    );
    assert_eq!(s["failedSessions"]["count"], 5, "{}", s["failedSessions"]);
    assert_eq!(
        instants(&s["failedSessions"]["preview"]),
        fail,
        "failedSessions.preview: {}",
        s["failedSessions"]
    );
    assert_eq!(s["createdBy"], "alice@example.com");
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    assert!(
        condition_is(&bf, "Reconciling", "False"),
        "{}",
        summary(&bf)
    );

    assert_one_job_per_session(&tracker, "january", &plan);
    assert_eq!(
        tracker
            .sessions_with("january", Outcome::Failed)
            .into_iter()
            .collect::<Vec<_>>(),
        fail,
        "the Stage failed other sessions than chosen"
    );
    for s in tracker.of("january") {
        assert_eq!(s.schedule, "hourly", "{}: schedule label", s.name);
    }
    tracker
        .wait("every finalizer released", "january", |jobs| {
            jobs.iter().all(|j| !j.finalizer)
        })
        .await;
}

// ---------------------------------------------------------------------
// 2. Crashes
// ---------------------------------------------------------------------

/// The same run with the operator SIGKILLed and restarted three times:
/// the same counters, and still one Job per session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_neither_duplicate_jobs_nor_bend_counters() {
    let env = setup("bf-crash").await;
    let plan = hours(JAN_FROM, JAN_TO);
    let fail: Vec<i64> = [4, 11, 12, 19, 28].iter().map(|&i| plan[i]).collect();
    let _stage = FailStage::apply(&env, &fail).await;
    let tracker = JobTracker::start(&env.jobs).await;
    let mut op = Operator::start(&env.ns.name, &[]).await;

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "1s")], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "sturdy",
            "hourly",
            json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 4}),
        ),
    )
    .await;

    // Counters only ever grow.
    let mut last = (0, 0, 0);
    let mut check_counters = |bf: &DynamicObject| {
        let now = (
            counter(bf, "processedCount"),
            counter(bf, "succeededCount"),
            counter(bf, "failedCount"),
        );
        assert!(
            now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2,
            "a counter went back from {last:?} to {now:?}: {}",
            summary(bf)
        );
        assert!(now.0 <= 30 && now.1 <= 25 && now.2 <= 5, "{}", summary(bf));
        last = now;
    };
    for threshold in [5, 12, 20] {
        let bf = eventually(
            &format!("{threshold} sessions processed"),
            RUN_DEADLINE,
            || async {
                let bf = get(&env.backfills, "sturdy").await;
                if counter(&bf, "processedCount") >= threshold {
                    Ok(bf)
                } else {
                    Err(summary(&bf))
                }
            },
        )
        .await;
        check_counters(&bf);
        assert!(
            !is_finished(&bf),
            "finished before the crash at {threshold}: {}",
            summary(&bf)
        );
        op.kill();
        eprintln!(
            "killed the operator at {} processed; {}; max active so far {} {:?}",
            counter(&bf, "processedCount"),
            describe(&tracker.of("sturdy")),
            tracker.max_active("sturdy"),
            tracker.max_active_names("sturdy"),
        );
        op.restart().await;
    }
    let bf = wait_finished(&env, "sturdy", RUN_DEADLINE, |bf| check_counters(bf)).await;

    assert_eq!(phase(&bf), "Failed", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "killedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (25, 5, 0, 30, 30),
        "{}",
        summary(&bf)
    );
    assert_eq!(status(&bf)["failedSessions"]["count"], 5);
    assert_eq!(instants(&status(&bf)["failedSessions"]["preview"]), fail);
    assert_one_job_per_session(&tracker, "sturdy", &plan);
    assert_eq!(
        tracker
            .sessions_with("sturdy", Outcome::Failed)
            .into_iter()
            .collect::<Vec<_>>(),
        fail
    );
    let max = tracker.max_active("sturdy");
    assert!(
        max <= 4,
        "{max} Jobs active at once across restarts, maxInFlight is 4: {:?}",
        tracker.max_active_names("sturdy")
    );
    tracker
        .wait("every finalizer released", "sturdy", |jobs| {
            jobs.iter().all(|j| !j.finalizer)
        })
        .await;
}

// ---------------------------------------------------------------------
// 3. A Job deleted by hand
// ---------------------------------------------------------------------

/// A person deletes a running Job: its session counts once, as killed,
/// and the backfill goes on with the next sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_while_running_counts_once_as_killed() {
    let env = setup("bf-deleted").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let plan = hours(JAN_FROM, "2026-01-01T04:00:00Z");

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "3s")], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "oops",
            "hourly",
            json!({"from": JAN_FROM, "to": "2026-01-01T04:00:00Z", "maxInFlight": 1}),
        ),
    )
    .await;

    let first = format!("oops-b{}", plan[0]);
    tracker
        .wait(
            &format!("{first} to have its pod running"),
            "oops",
            |jobs| {
                jobs.iter()
                    .any(|j| j.name == first && j.started && j.outcome.is_none())
            },
        )
        .await;
    env.jobs
        .delete(&first, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting Job {first}: {e}"));

    let bf = wait_finished(&env, "oops", RUN_DEADLINE, |_| {}).await;
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "killedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (3, 0, 1, 4, 4),
        "{}",
        summary(&bf)
    );
    assert_eq!(phase(&bf), "Failed", "a killed session is not a success");
    assert_eq!(status(&bf)["failedSessions"]["count"], 1);
    assert_eq!(
        instants(&status(&bf)["failedSessions"]["preview"]),
        vec![plan[0]]
    );
    assert_one_job_per_session(&tracker, "oops", &plan);
    let killed = tracker
        .of("oops")
        .into_iter()
        .find(|j| j.name == first)
        .expect("tracked");
    assert_eq!(
        killed.outcome, None,
        "{first} finished before it was deleted"
    );
    // The operator let it go once it was counted.
    tracker
        .wait(&format!("{first} gone"), "oops", |jobs| {
            jobs.iter().any(|j| j.name == first && j.deleted)
        })
        .await;
    assert_eq!(tracker.max_active("oops"), 1);
}

// ---------------------------------------------------------------------
// 4. Execution windows
// ---------------------------------------------------------------------

/// Outside its only window a Backfill waits and says when the window
/// opens; a window open now lets it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_execution_window() {
    let env = setup("bf-windows").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;

    // A one-minute window twelve hours from now, in UTC.
    let opens = (Timestamp::now().as_second() + 12 * HOUR).div_euclid(MINUTE) * MINUTE;
    let start = Timestamp::from_second(opens)
        .expect("in range")
        .in_tz("UTC")
        .expect("UTC");
    let end = if (start.hour(), start.minute()) == (23, 59) {
        "24:00".to_string()
    } else {
        start
            .checked_add(jiff::SignedDuration::from_secs(MINUTE))
            .expect("in range")
            .strftime("%H:%M")
            .to_string()
    };
    let day = format!("{:?}", start.weekday()).to_lowercase();
    let window = json!([{"start": start.strftime("%H:%M").to_string(), "end": end}]);

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[], json!({})),
    )
    .await;
    let plan = hours(JAN_FROM, "2026-01-01T03:00:00Z");
    apply(
        &env.backfills,
        &backfill_manifest(
            "nightly",
            "hourly",
            json!({
                "from": JAN_FROM,
                "to": "2026-01-01T03:00:00Z",
                "maxInFlight": 3,
                "executionWindows": {"timeZone": "UTC", day.clone(): window},
            }),
        ),
    )
    .await;

    let bf = wait_phase(&env, "nightly", "Waiting").await;
    assert_eq!(
        instant(&status(&bf)["nextWindowStart"]),
        Some(opens),
        "nextWindowStart should be {} ({day} {window}): {}",
        rfc3339_utc(opens),
        status(&bf)
    );
    assert_eq!(counter(&bf, "runningCount"), 0, "{}", summary(&bf));
    assert_eq!(status(&bf)["run"]["launched"].as_i64().unwrap_or(0), 0);
    assert_eq!(counter(&bf, "totalEstimated"), 3, "{}", summary(&bf));
    assert!(condition_is(&bf, "Reconciling", "True"), "{}", summary(&bf));
    // The status is written after the Jobs are made: none were.
    assert!(tracker.of("nightly").is_empty(), "Jobs outside the window");
    let message = wait_event(&env, "nightly", "Normal", "Waiting").await;
    assert!(
        message.contains(&rfc3339_utc(opens)),
        "the Waiting Event should say when the window opens: {message:?}"
    );

    let whole_day = json!([{"start": "00:00", "end": "24:00"}]);
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let windows: serde_json::Map<String, Value> = days
        .iter()
        .map(|d| (d.to_string(), whole_day.clone()))
        .collect();
    patch_spec(
        &env.backfills,
        "nightly",
        json!({"executionWindows": windows}),
    )
    .await;
    let bf = wait_finished(&env, "nightly", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    assert!(status(&bf)["nextWindowStart"].is_null(), "{}", status(&bf));
    assert_one_job_per_session(&tracker, "nightly", &plan);
}

// ---------------------------------------------------------------------
// 5. Dry run
// ---------------------------------------------------------------------

/// A dry run plans, estimates and shows its boundaries without a Job;
/// turning it off runs the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_estimates_then_runs_when_turned_off() {
    let env = setup("bf-dryrun").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let plan = hours(JAN_FROM, JAN_TO);

    apply(
        &env.schedules,
        &schedule_manifest(
            "hourly",
            "0 * * * *",
            &[],
            json!({"creditsPerSession": 2.5}),
        ),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "preview",
            "hourly",
            json!({"from": JAN_FROM, "to": JAN_TO, "maxInFlight": 10, "dryRun": true}),
        ),
    )
    .await;

    let bf = wait_phase(&env, "preview", "Planned").await;
    let s = status(&bf);
    assert_eq!(s["totalEstimated"], 30, "{s}");
    assert_eq!(s["progress"], "0/30", "{s}");
    let cost = &s["costEstimate"];
    assert_eq!(cost["creditsPerEntity"].as_f64(), Some(2.5), "{cost}");
    assert_eq!(cost["totalCreditsEstimated"].as_f64(), Some(75.0), "{cost}");
    assert_eq!(cost["totalEntities"], 30, "{cost}");
    assert_eq!(instants(&s["preview"]["first"]), plan[..5].to_vec(), "{s}");
    assert_eq!(instants(&s["preview"]["last"]), plan[25..].to_vec(), "{s}");
    let boundaries = s["preview"]["boundaries"].as_str().unwrap_or_default();
    assert!(
        boundaries.contains("inclusive") && boundaries.contains("exclusive"),
        "the boundaries should say what is inclusive and exclusive: {boundaries:?}"
    );
    assert!(s["runId"].is_null() && s["startedAt"].is_null(), "{s}");
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    assert!(tracker.of("preview").is_empty(), "a dry run made Jobs");
    wait_event(&env, "preview", "Normal", "Planned").await;

    patch_spec(&env.backfills, "preview", json!({"dryRun": false})).await;
    let bf = wait_finished(&env, "preview", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (30, 30, 30),
        "{}",
        summary(&bf)
    );
    let s = status(&bf);
    assert!(
        s["runId"].is_string() && s["startedAt"].is_string() && s["plannedUntil"].is_string(),
        "{s}"
    );
    // No annotation: the field manager that created it, not the operator
    // that wrote the dry run's status.
    assert_eq!(s["createdBy"], FIELD_MANAGER, "{s}");
    assert_one_job_per_session(&tracker, "preview", &plan);
    assert!(tracker.max_active("preview") <= 10);
}

// ---------------------------------------------------------------------
// 6. Suspend and cancel
// ---------------------------------------------------------------------

/// Suspended, a Backfill launches nothing and lets its running Job finish
/// and be counted; resumed, it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_launching_and_resume_completes() {
    let env = setup("bf-suspend").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(JAN_FROM, to);

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "2s")], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "pausable",
            "hourly",
            json!({"from": JAN_FROM, "to": to, "maxInFlight": 1}),
        ),
    )
    .await;

    // Suspend while the second session runs.
    let second = format!("pausable-b{}", plan[1]);
    tracker
        .wait(&format!("{second} running"), "pausable", |jobs| {
            jobs.iter().any(|j| j.name == second && j.outcome.is_none())
        })
        .await;
    patch_spec(&env.backfills, "pausable", json!({"suspend": true})).await;
    let paused = wait_phase(&env, "pausable", "Paused").await;
    let at_pause: BTreeSet<String> = tracker.of("pausable").into_iter().map(|j| j.name).collect();
    assert!(
        at_pause.len() < plan.len(),
        "everything launched before the pause: {}",
        summary(&paused)
    );

    // The running Job goes on, and its outcome is counted.
    let bf = eventually(
        "the Jobs launched before the pause finished and counted",
        DEADLINE,
        || async {
            let bf = get(&env.backfills, "pausable").await;
            if counter(&bf, "processedCount") == at_pause.len() as i64
                && counter(&bf, "runningCount") == 0
            {
                Ok(bf)
            } else {
                Err(format!(
                    "{} / {}",
                    summary(&bf),
                    describe(&tracker.of("pausable"))
                ))
            }
        },
    )
    .await;
    assert_eq!(phase(&bf), "Paused", "{}", summary(&bf));
    assert_eq!(
        counter(&bf, "succeededCount"),
        at_pause.len() as i64,
        "{}",
        summary(&bf)
    );
    // Unpaused, the next Job would start within moments of a slot freeing.
    throughout(
        "no Job launched while paused",
        Duration::from_secs(4),
        || {
            let now: BTreeSet<String> =
                tracker.of("pausable").into_iter().map(|j| j.name).collect();
            if now == at_pause {
                Ok(())
            } else {
                Err(format!("Jobs at the pause {at_pause:?}, now {now:?}"))
            }
        },
    )
    .await;
    assert_eq!(phase(&get(&env.backfills, "pausable").await), "Paused");
    wait_event(&env, "pausable", "Normal", "Paused").await;

    patch_spec(&env.backfills, "pausable", json!({"suspend": null})).await;
    let bf = wait_finished(&env, "pausable", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (6, 6, 6),
        "{}",
        summary(&bf)
    );
    assert_one_job_per_session(&tracker, "pausable", &plan);
    assert_eq!(tracker.max_active("pausable"), 1);
    wait_event(&env, "pausable", "Normal", "Resumed").await;
}

/// Cancelled, a Backfill deletes its running Jobs (counted as killed) and
/// launches nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_running_jobs_and_launches_nothing_more() {
    let env = setup("bf-cancel").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T10:00:00Z";

    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &[(RUN_FOR, "60s")], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "doomed",
            "hourly",
            json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
        ),
    )
    .await;

    let running = tracker
        .wait("3 Jobs with running pods", "doomed", |jobs| {
            jobs.iter().filter(|j| j.started && j.active()).count() == 3
        })
        .await;
    patch_spec(&env.backfills, "doomed", json!({"cancel": true})).await;
    let bf = wait_finished(&env, "doomed", DEADLINE, |_| {}).await;

    assert_eq!(phase(&bf), "Cancelled", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "killedCount"),
            counter(&bf, "succeededCount"),
            counter(&bf, "failedCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (running.len() as i64, 0, 0, running.len() as i64, 10),
        "{}",
        summary(&bf)
    );
    assert!(status(&bf)["completedAt"].is_string(), "{}", status(&bf));
    assert!(
        status(&bf)["error"]
            .as_str()
            .is_some_and(|e| e.contains("cancel")),
        "{}",
        status(&bf)
    );
    assert!(condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    tracker
        .wait("the cancelled Jobs gone", "doomed", |jobs| {
            jobs.iter().all(|j| j.deleted)
        })
        .await;
    let names: BTreeSet<String> = running.iter().map(|j| j.name.clone()).collect();
    throughout(
        "no Job launched after the cancel",
        Duration::from_secs(3),
        || {
            let now: BTreeSet<String> = tracker.of("doomed").into_iter().map(|j| j.name).collect();
            if now == names {
                Ok(())
            } else {
                Err(format!("running at the cancel {names:?}, ever {now:?}"))
            }
        },
    )
    .await;
    assert!(tracker.duplicates("doomed").is_empty());
    wait_event(&env, "doomed", "Normal", "Cancelled").await;
}

// ---------------------------------------------------------------------
// 7. Size
// ---------------------------------------------------------------------

/// A 100,000-session dry run is a small object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_session_dry_run_stays_small() {
    let env = setup("bf-size-plan").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({})),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "huge",
            "minutely",
            json!({"from": "2025-01-01T00:00:00Z", "count": 100_000, "dryRun": true}),
        ),
    )
    .await;

    let bf = wait_phase(&env, "huge", "Planned").await;
    assert_eq!(counter(&bf, "totalEstimated"), 100_000, "{}", summary(&bf));
    let first = at("2025-01-01T00:00:00Z");
    assert_eq!(
        instants(&status(&bf)["preview"]["last"]).last(),
        Some(&(first + 99_999 * MINUTE)),
        "{}",
        status(&bf)["preview"]
    );
    let json = stored_json(&env, "huge").await;
    println!(
        "stored Backfill of a 100,000-session dry run: {} bytes",
        json.len()
    );
    assert!(json.len() < SIZE_LIMIT, "{} bytes", json.len());
    assert!(tracker.of("huge").is_empty(), "a dry run made Jobs");
}

/// 2,000 minutely sessions, 200 at a time, run in reasonable time and
/// leave a small object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_run_and_stay_small() {
    let env = setup("bf-size-run").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({})),
    )
    .await;
    let from = at("2026-01-01T00:00:00Z");
    let plan: Vec<i64> = (0..2_000).map(|i| from + i * MINUTE).collect();
    let started = Instant::now();
    apply(
        &env.backfills,
        &backfill_manifest(
            "big",
            "minutely",
            json!({"from": rfc3339_utc(from), "count": 2_000, "maxInFlight": 200}),
        ),
    )
    .await;

    // maxInFlight is checked at the end, so that a failure still reports
    // the run's time and size.
    let bf = wait_finished(&env, "big", Duration::from_secs(600), |_| {}).await;
    let took = started.elapsed();
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(
        (
            counter(&bf, "succeededCount"),
            counter(&bf, "processedCount"),
            counter(&bf, "totalEstimated"),
        ),
        (2_000, 2_000, 2_000),
        "{}",
        summary(&bf)
    );
    let json = stored_json(&env, "big").await;
    println!(
        "2,000-session run: {took:.1?}, most Jobs at once {}, stored Backfill {} bytes",
        tracker.max_active("big"),
        json.len()
    );
    assert!(json.len() < SIZE_LIMIT, "{} bytes", json.len());
    assert_one_job_per_session(&tracker, "big", &plan);
    let max = tracker.max_active("big");
    assert!(
        max <= 200,
        "{max} Jobs active at once, maxInFlight is 200: {:?}",
        tracker.max_active_names("big")
    );
}

// ---------------------------------------------------------------------
// 8. Bad input
// ---------------------------------------------------------------------

/// Waits for `Stalled=True` with `reason`, and the Warning Event.
async fn wait_stalled(env: &Env, name: &str, reason: &str) -> DynamicObject {
    let bf = eventually(
        &format!("Backfill {name} Stalled with reason {reason}"),
        DEADLINE,
        || async {
            let bf = get(&env.backfills, name).await;
            match condition(&bf, "Stalled") {
                Some(c) if c["status"] == "True" && c["reason"] == reason => Ok(bf),
                _ => Err(summary(&bf)),
            }
        },
    )
    .await;
    assert!(!condition_is(&bf, "Ready", "True"), "{}", summary(&bf));
    wait_event(env, name, "Warning", reason).await;
    bf
}

/// A Backfill of a Schedule that does not exist stalls, runs nothing, and
/// runs once the Schedule appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schedule_stalls_until_it_exists() {
    let env = setup("bf-noschedule").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T03:00:00Z";
    apply(
        &env.backfills,
        &backfill_manifest(
            "early",
            "later",
            json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
        ),
    )
    .await;

    let bf = wait_stalled(&env, "early", "ScheduleNotFound").await;
    assert!(status(&bf)["runId"].is_null(), "{}", status(&bf));
    assert!(tracker.of("early").is_empty());

    apply(
        &env.schedules,
        &schedule_manifest("later", "0 * * * *", &[], json!({})),
    )
    .await;
    let bf = wait_finished(&env, "early", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    assert!(condition_is(&bf, "Stalled", "False"), "{}", summary(&bf));
    // No annotation: the field manager that created it.
    assert_eq!(status(&bf)["createdBy"], FIELD_MANAGER, "{}", status(&bf));
    assert_one_job_per_session(&tracker, "early", &hours(JAN_FROM, to));
}

/// A Schedule in an unknown time zone stalls its Backfill; fixing the
/// zone lets it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_time_zone_stalls_until_fixed() {
    let env = setup("bf-badzone").await;
    let tracker = JobTracker::start(&env.jobs).await;
    let _op = Operator::start(&env.ns.name, &[]).await;
    let to = "2026-01-01T03:00:00Z";
    apply(
        &env.schedules,
        &schedule_manifest(
            "hourly",
            "0 * * * *",
            &[],
            json!({"timeZone": "Mars/Olympus_Mons"}),
        ),
    )
    .await;
    apply(
        &env.backfills,
        &backfill_manifest(
            "martian",
            "hourly",
            json!({"from": JAN_FROM, "to": to, "maxInFlight": 3}),
        ),
    )
    .await;

    let bf = wait_stalled(&env, "martian", "InvalidSchedule").await;
    let message = condition(&bf, "Stalled").expect("Stalled")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("Mars/Olympus_Mons"),
        "the message should name the zone: {message:?}"
    );
    assert!(tracker.of("martian").is_empty());

    patch_spec(&env.schedules, "hourly", json!({"timeZone": "UTC"})).await;
    let bf = wait_finished(&env, "martian", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert!(condition_is(&bf, "Stalled", "False"), "{}", summary(&bf));
    assert_one_job_per_session(&tracker, "martian", &hours(JAN_FROM, to));
}
