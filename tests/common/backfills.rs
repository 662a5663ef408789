//! The world of the Backfill end-to-end tests (`tests/backfill.rs`,
//! `tests/rerun.rs`): a namespace with its Schedule and Backfill APIs,
//! manifests, readers and waits for Backfills, a kwok Stage failing chosen
//! sessions, and a tracker of every Backfill Job that ever existed.
//!
//! The target is a suspended hourly Schedule in UTC: a Backfill runs past
//! sessions whether or not the Schedule runs.

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

use super::jobs::{JobLog, watch_jobs};
use super::objects::{condition, condition_is, counter, eventually, status};
use super::{
    DEADLINE, FIELD_MANAGER, TestNamespace, client, install_crds, merge, repo_root, run_detached,
};

pub const LABEL_BACKFILL: &str = "backfill.dev/backfill";
pub const LABEL_SCHEDULE: &str = "backfill.dev/schedule";
pub const LABEL_SESSION: &str = "backfill.dev/session";
pub const ANNOTATION_PLAN_INDEX: &str = "backfill.dev/plan-index";
pub const ANNOTATION_CREATED_BY: &str = "backfill.dev/created-by";
pub const JOB_FINALIZER: &str = "backfill.dev/outcome";
pub const RUN_FOR: &str = "testenv.backfill.dev/run-for";

pub const HOUR: i64 = 3_600;
pub const MINUTE: i64 = 60;

/// How long a small backfill (a few dozen short Jobs) may take to finish.
/// Generous: the tests of this binary run side by side on a small machine.
pub const RUN_DEADLINE: Duration = Duration::from_secs(240);

pub const FINISHED: [&str; 3] = ["Succeeded", "Failed", "Cancelled"];

// ---------------------------------------------------------------------
// Setup and the API (untyped, so the tests read the API as a user's
// kubectl does).
// ---------------------------------------------------------------------

pub struct Env {
    pub client: Client,
    pub ns: TestNamespace,
    pub schedules: Api<DynamicObject>,
    pub backfills: Api<DynamicObject>,
    pub jobs: Api<Job>,
}

pub async fn setup(prefix: &str) -> Env {
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

/// The SessionLedgers of the test's namespace (the operator writes them;
/// a test reads them, or creates them to have some).
pub fn ledgers(env: &Env) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("backfill.dev", "v1alpha1", "SessionLedger"),
        "sessionledgers",
    );
    Api::namespaced_with(env.client.clone(), &env.ns.name, &resource)
}

/// A suspended Schedule in UTC running `cron`, whose pods carry
/// `pod_annotations` (the kwok knobs), with `spec_patch` merged onto its
/// spec (RFC 7386).
pub fn schedule_manifest(
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
pub fn backfill_manifest(name: &str, schedule: &str, mut spec: Value) -> Value {
    spec["scheduleRef"] = json!({"name": schedule});
    json!({
        "apiVersion": "backfill.dev/v1alpha1",
        "kind": "Backfill",
        "metadata": {"name": name},
        "spec": spec,
    })
}

pub async fn apply(api: &Api<DynamicObject>, manifest: &Value) -> DynamicObject {
    let name = manifest["metadata"]["name"].as_str().expect("a name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", manifest["kind"]))
}

/// Applies the Schedule most tests back up: `hourly`, suspended, at
/// minute 0 in UTC, its pods running `run_for` (a Go duration; kwok's
/// default when `None`).
pub async fn apply_hourly(env: &Env, run_for: Option<&str>) -> DynamicObject {
    let annotations: Vec<(&str, &str)> = run_for.map(|d| (RUN_FOR, d)).into_iter().collect();
    apply(
        &env.schedules,
        &schedule_manifest("hourly", "0 * * * *", &annotations, json!({})),
    )
    .await
}

/// Applies the Backfill `name` of `hourly` with `spec`.
pub async fn apply_hourly_backfill(env: &Env, name: &str, spec: Value) -> DynamicObject {
    apply(&env.backfills, &backfill_manifest(name, "hourly", spec)).await
}

/// Merge-patches an object's spec (`null` removes a field) and returns
/// its new generation.
pub async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) -> i64 {
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

pub async fn get(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

pub fn phase(obj: &DynamicObject) -> &str {
    status(obj)["phase"].as_str().unwrap_or("")
}

/// An RFC 3339 value as Unix seconds.
pub fn instant(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    Some(
        text.parse::<Timestamp>()
            .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
            .as_second(),
    )
}

/// A list of RFC 3339 values as Unix seconds.
pub fn instants(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| instant(v).expect("a time")).collect())
        .unwrap_or_default()
}

pub fn at(text: &str) -> i64 {
    text.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .as_second()
}

/// The Backfill's status in one line, for messages.
pub fn summary(bf: &DynamicObject) -> String {
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

/// (processed, succeeded, failed, killed, total).
pub fn counters(bf: &DynamicObject) -> (i64, i64, i64, i64, i64) {
    (
        counter(bf, "processedCount"),
        counter(bf, "succeededCount"),
        counter(bf, "failedCount"),
        counter(bf, "killedCount"),
        counter(bf, "totalEstimated"),
    )
}

pub fn is_finished(bf: &DynamicObject) -> bool {
    FINISHED.contains(&phase(bf))
        && status(bf)["completedAt"].is_string()
        && counter(bf, "runningCount") == 0
}

/// Waits until the Backfill is finished (a final phase, completedAt set,
/// nothing running), checking `during` on every poll before that.
pub async fn wait_finished(
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
pub async fn wait_phase(env: &Env, name: &str, want: &str) -> DynamicObject {
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
pub fn hours(from: &str, to: &str) -> Vec<i64> {
    (at(from)..at(to)).step_by(HOUR as usize).collect()
}

// Events
// ---------------------------------------------------------------------

/// Events about the `kind` object `name` (core/v1 lists events.k8s.io
/// Events too): (type, reason, message).
pub async fn events_about(env: &Env, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), &env.ns.name);
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing Events: {e}"));
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
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

/// Events about the Backfill `name`.
pub async fn events_of(env: &Env, name: &str) -> Vec<(String, String, String)> {
    events_about(env, "Backfill", name).await
}

/// Waits for a `type_` Event `reason` about the `kind` object `name`;
/// returns its message.
pub async fn wait_event_about(
    env: &Env,
    kind: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> String {
    eventually(
        &format!("a {type_} Event {reason} on {kind} {name}"),
        DEADLINE,
        || async {
            let events = events_about(env, kind, name).await;
            events
                .iter()
                .find(|(t, r, _)| t == type_ && r == reason)
                .map(|(_, _, m)| m.clone())
                .ok_or_else(|| format!("events so far: {events:?}"))
        },
    )
    .await
}

/// Waits for a `type_` Event `reason` about the Backfill `name`.
pub async fn wait_event(env: &Env, name: &str, type_: &str, reason: &str) -> String {
    wait_event_about(env, "Backfill", name, type_, reason).await
}

/// Waits until the Backfill `name` is `Stalled=True` with `reason`, not
/// Ready, and the Warning Event `reason` is out.
pub async fn wait_stalled(env: &Env, name: &str, reason: &str) -> DynamicObject {
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

// ---------------------------------------------------------------------
// kwok: failing chosen sessions
// ---------------------------------------------------------------------

/// A kwok Stage failing the pods of chosen sessions in one namespace: the
/// `pod-fail` Stage of `hack/kwok/stages.yaml`, selected by namespace and
/// session label (and, for [`FailStage::for_backfill`], Backfill label)
/// instead of the annotation, with a positive weight so kwok prefers it
/// over `pod-complete`. Deleted when dropped.
pub struct FailStage {
    name: String,
}

pub fn stages_api(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage"),
        "stages",
    );
    Api::all_with(client.clone(), &resource)
}

impl FailStage {
    /// Fails `sessions` of every Backfill of the namespace.
    pub async fn apply(env: &Env, sessions: &[i64]) -> Self {
        Self::create(env, None, sessions).await
    }

    /// Fails `sessions` of the Backfill `backfill` only: the same sessions
    /// succeed in its rerun children (other Backfills, with Jobs of their
    /// own). Several may exist in a namespace, one per Backfill.
    pub async fn for_backfill(env: &Env, backfill: &str, sessions: &[i64]) -> Self {
        Self::create(env, Some(backfill), sessions).await
    }

    /// Fails `sessions` of the Schedules' own runs only: Backfills of the
    /// same sessions succeed.
    pub async fn for_schedules(env: &Env, sessions: &[i64]) -> Self {
        Self::create(env, Some(""), sessions).await
    }

    /// `backfill`: `None` for every pod of the namespace, `Some("")` for
    /// the pods of no Backfill (scheduled runs), else one Backfill's.
    async fn create(env: &Env, backfill: Option<&str>, sessions: &[i64]) -> Self {
        let path = repo_root().join("hack/kwok/stages.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut stage = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("a YAML document"))
            .find(|doc| doc["metadata"]["name"] == "pod-fail")
            .expect("a pod-fail Stage in hack/kwok/stages.yaml");
        let name = match backfill {
            Some("") => format!("fail-{}-scheduled", env.ns.name),
            Some(backfill) => format!("fail-{}-{backfill}", env.ns.name),
            None => format!("fail-{}", env.ns.name),
        };
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
        match backfill {
            Some("") => expressions.push(json!({
                "key": format!(".metadata.labels[\"{LABEL_BACKFILL}\"]"),
                "operator": "DoesNotExist",
            })),
            Some(backfill) => expressions.push(json!({
                "key": format!(".metadata.labels[\"{LABEL_BACKFILL}\"]"),
                "operator": "In",
                "values": [backfill],
            })),
            None => {}
        }
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
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(&format!("delete Stage {name}"), async move {
            let api = stages_api(&client().await);
            if let Err(e) = api.delete(&name, &DeleteParams::background()).await {
                eprintln!("cannot delete Stage {name}: {e}");
            }
        });
    }
}

// ---------------------------------------------------------------------
// The Job tracker: every Backfill Job that ever existed in the namespace.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// How a Job ended, as the operator judges it: Complete or Failed.
pub fn outcome(job: &Job) -> Option<Outcome> {
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

pub fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub name: String,
    pub backfill: String,
    pub schedule: String,
    pub session: Option<i64>,
    pub plan_index: Option<u64>,
    pub outcome: Option<Outcome>,
    /// Seen with a pod active.
    pub started: bool,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// Gone from the API server.
    pub deleted: bool,
    /// Carried the outcome finalizer when last seen.
    pub finalizer: bool,
    pub owned: bool,
}

impl Seen {
    /// Running, as `maxInFlight` counts: not finished, not being deleted.
    pub fn active(&self) -> bool {
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

pub struct JobTracker {
    state: Arc<Mutex<Tracked>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobTracker {
    /// Starts watching the namespace's Backfill Jobs and waits for the
    /// first list.
    pub async fn start(jobs: &Api<Job>) -> Self {
        let (state, task) =
            watch_jobs::<Tracked>(jobs, watcher::Config::default().labels(LABEL_BACKFILL)).await;
        JobTracker { state, task }
    }

    /// Watches every Job of the namespace's Schedules, scheduled runs (under
    /// the Backfill name "") and Backfills alike.
    pub async fn start_all(jobs: &Api<Job>) -> Self {
        let (state, task) =
            watch_jobs::<Tracked>(jobs, watcher::Config::default().labels(LABEL_SCHEDULE)).await;
        JobTracker { state, task }
    }

    /// Every Job of `backfill` ever seen, by session then name.
    pub fn of(&self, backfill: &str) -> Vec<Seen> {
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
    pub fn max_active(&self, backfill: &str) -> usize {
        let state = self.state.lock().expect("tracker lock");
        state.max_active.get(backfill).copied().unwrap_or(0)
    }

    /// The Jobs of `backfill` active together when the most were.
    pub fn max_active_names(&self, backfill: &str) -> Vec<String> {
        let state = self.state.lock().expect("tracker lock");
        state
            .max_active_names
            .get(backfill)
            .cloned()
            .unwrap_or_default()
    }

    /// Every name seen with more than one UID, and every session seen in
    /// more than one Job: a session run twice.
    pub fn duplicates(&self, backfill: &str) -> Vec<String> {
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
    pub fn sessions(&self, backfill: &str) -> BTreeSet<i64> {
        self.of(backfill).iter().filter_map(|s| s.session).collect()
    }

    /// Distinct sessions of `backfill`'s Jobs that ended with `outcome`.
    pub fn sessions_with(&self, backfill: &str, outcome: Outcome) -> BTreeSet<i64> {
        self.of(backfill)
            .iter()
            .filter(|s| s.outcome == Some(outcome))
            .filter_map(|s| s.session)
            .collect()
    }

    /// Waits until the Jobs of `backfill` satisfy `pred`.
    pub async fn wait(
        &self,
        what: &str,
        backfill: &str,
        pred: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
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

pub fn describe(jobs: &[Seen]) -> String {
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
pub fn assert_one_job_per_session(tracker: &JobTracker, backfill: &str, plan: &[i64]) {
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
