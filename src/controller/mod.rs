//! The controllers: thin shells that observe (watch caches), call the
//! pure core, and act (create and delete Jobs, write status with
//! server-side apply, emit Events).

pub mod backfill;
pub mod leader;
pub mod ledger;
pub mod owners;
pub mod schedule;
pub mod scope;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::{Backfill, JOB_FINALIZER, LABEL_SCHEDULE, Schedule, SessionLedger};
use crate::core::observed::{JobState, Note, ObservedJob};
use crate::{Error, Result};

/// How long reconciles under way may take to finish after SIGTERM: less
/// than a pod's default grace period of 30 s.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(20);

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "backfill-operator";

/// The operator's clock. Real time by default; tests may start it
/// elsewhere and run it faster (`--time-origin`, `--time-scale`) so that
/// a minutely Schedule fires every second. Only scheduling decisions read
/// it; Kubernetes' own timestamps stay real.
#[derive(Clone, Copy, Debug)]
pub struct OperatorClock {
    started: Instant,
    /// Real Unix time at `started`.
    real_start: f64,
    origin: f64,
    scale: f64,
}

impl OperatorClock {
    pub fn real() -> Self {
        Self::new(None, 1.0)
    }

    /// `origin`: the clock's reading now (Unix seconds); `scale`: how many
    /// of its seconds pass per real second.
    pub fn new(origin: Option<i64>, scale: f64) -> Self {
        let real_now = jiff::Timestamp::now().as_millisecond() as f64 / 1_000.0;
        Self {
            started: Instant::now(),
            real_start: real_now,
            origin: origin.map_or(real_now, |o| o as f64),
            scale: if scale > 0.0 { scale } else { 1.0 },
        }
    }

    /// This clock's reading at a real instant (Unix seconds), such as an
    /// object's creationTimestamp.
    pub fn at_real(&self, real: i64) -> i64 {
        (self.origin + (real as f64 - self.real_start) * self.scale).floor() as i64
    }

    /// Unix seconds on this clock.
    pub fn now(&self) -> i64 {
        (self.origin + self.started.elapsed().as_secs_f64() * self.scale).floor() as i64
    }

    /// The real time until this clock reads `at` (just after it, so the
    /// wake-up sees the session as due).
    pub fn until(&self, at: i64) -> Duration {
        let now = self.origin + self.started.elapsed().as_secs_f64() * self.scale;
        let ahead = (at as f64 - now).max(0.0) / self.scale;
        Duration::from_secs_f64(ahead) + Duration::from_millis(50)
    }
}

/// Shared by every reconcile: one client, one recorder, the Job cache and
/// the clock.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub jobs: Store<Job>,
    /// The Jobs of each owner in `jobs`.
    pub job_owners: owners::OwnerIndex,
    /// True once the Job cache holds the initial list. A reconcile waits
    /// for it: deciding from an empty cache would forget which outcomes
    /// were counted. (A watch channel, because kube's store readiness
    /// wakes only one waiter.)
    pub jobs_ready: tokio::sync::watch::Receiver<bool>,
    pub schedules: Store<Schedule>,
    /// The session ledgers, and whether their cache holds the initial list
    /// (a Backfill's `reprocess` is judged against it).
    pub ledgers: Store<SessionLedger>,
    pub ledgers_ready: tokio::sync::watch::Receiver<bool>,
    /// The ledger objects this process wrote last, newer than the cache
    /// for a moment after each write.
    pub ledgers_written: std::sync::Mutex<std::collections::HashMap<String, Arc<SessionLedger>>>,
    /// Ledger months that ended longer ago than this (seconds) are deleted.
    pub ledger_retention: i64,
    pub clock: OperatorClock,
    pub recent: Recent,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What this process did lately, so that a pass working from a cache that
/// has not caught up yet does not send the same request again (a second
/// finalizer removal, a second delete, the same status).
#[derive(Default)]
pub struct Recent {
    done: std::sync::Mutex<std::collections::HashMap<String, (Instant, u64)>>,
}

/// How long a request is remembered: far longer than a watch lags.
const RECENT_TTL: Duration = Duration::from_secs(60);

impl Recent {
    /// Whether `key` was done with this `value` within the TTL.
    pub fn seen(&self, key: &str, value: u64) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.get(key)
            .is_some_and(|(at, v)| *v == value && at.elapsed() < RECENT_TTL)
    }

    pub fn record(&self, key: String, value: u64) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() > 10_000 {
            done.retain(|_, (at, _)| at.elapsed() < RECENT_TTL);
        }
        done.insert(key, (Instant::now(), value));
    }
}

impl Context {
    /// Removes a Job's outcome finalizer, once.
    pub async fn release(&self, ns: &str, name: &str) -> Result<()> {
        let key = format!("release/{ns}/{name}");
        if !self.recent.seen(&key, 0) {
            release_finalizer(&self.client, ns, name).await?;
            self.recent.record(key, 0);
        }
        Ok(())
    }

    /// Deletes a Job, once.
    pub async fn delete(&self, ns: &str, name: &str) -> Result<()> {
        let key = format!("delete/{ns}/{name}");
        if !self.recent.seen(&key, 0) {
            delete_job(&self.client, ns, name).await?;
            self.recent.record(key, 0);
        }
        Ok(())
    }

    /// The cached Jobs a Schedule or Backfill (by UID) owns.
    pub fn jobs_of(&self, uid: &str) -> Vec<Arc<Job>> {
        self.job_owners.jobs_of(uid, &self.jobs)
    }

    /// Waits until the Job and ledger caches hold their initial lists.
    pub async fn synced(&self) {
        // An error means the sender is gone: the operator is stopping.
        let _ = self.jobs_ready.clone().wait_for(|r| *r).await;
        let _ = self.ledgers_ready.clone().wait_for(|r| *r).await;
    }
}

/// What the operator is told at start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch these namespaces only; empty watches all.
    pub namespaces: Vec<String>,
    pub clock: OperatorClock,
    /// Ledger months older than this many days are deleted.
    pub ledger_retention_days: u32,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    pub listen_address: Option<String>,
    /// Run only while holding this Lease.
    pub leader_election: Option<leader::LeaseConfig>,
}

/// Serves the probes and metrics, waits for the leader Lease if asked
/// to, and runs the controllers until SIGTERM or Ctrl-C (or until the
/// Lease is lost: the process then exits with an error, to be restarted
/// as a standby).
pub async fn run(client: Client, settings: Settings) -> Result<()> {
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let backfills = Arc::new(std::sync::Mutex::new(None));
    if let Some(address) = &settings.listen_address {
        let listener = crate::http::bind(address)
            .await
            .map_err(|e| Error::Invalid(format!("--listen-address {address}: {e}")))?;
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            backfills.clone(),
        ));
    }
    // One listener for SIGTERM for the whole life of the process: a signal
    // that comes between winning the Lease and starting the controllers
    // is kept for them, not lost.
    let stop = futures::FutureExt::shared(futures::FutureExt::boxed(shutdown_signal()));
    scope::preflight(&client, &settings.namespaces).await?;
    let mut elector = None;
    if let Some(config) = settings.leader_election.clone() {
        // A standby is ready: it is doing what it should.
        metrics.ready.store(true, Ordering::Relaxed);
        let mut e = leader::Elector::new(client.clone(), config);
        tokio::select! {
            acquired = e.acquire() => acquired?,
            _ = stop.clone() => {
                info!("stopped while standing by");
                return Ok(());
            }
        }
        metrics.ready.store(false, Ordering::Relaxed);
        elector = Some(e);
    }
    metrics.leader.set(1);
    let result = match elector.as_mut() {
        Some(e) => tokio::select! {
            r = run_controllers(client, settings, metrics.clone(), backfills, stop) => r,
            lost = e.hold() => Err(lost),
        },
        None => run_controllers(client, settings, metrics.clone(), backfills, stop).await,
    };
    metrics.leader.set(0);
    if let (Some(e), Ok(())) = (elector.as_mut(), &result) {
        e.release().await;
    }
    result
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<crate::metrics::Metrics>,
    backfill_slot: Arc<std::sync::Mutex<Option<Store<Backfill>>>>,
    stop: future::Shared<future::BoxFuture<'static, ()>>,
) -> Result<()> {
    let ns = settings.namespaces.as_slice();
    // One watch of the operator's Jobs feeds both controllers and the
    // shared cache.
    let (jobs, writer) = reflector::store_shared::<Job>(1_024);
    let (schedule_jobs, backfill_jobs) = (subscribe(&writer)?, subscribe(&writer)?);
    let (ready_tx, jobs_ready) = tokio::sync::watch::channel(false);
    let job_owners = owners::OwnerIndex::default();
    let job_events = scope::watch(
        &client,
        ns,
        watcher::Config::default().labels(LABEL_SCHEDULE),
        jobs.clone(),
    )
    .inspect({
        let index = job_owners.clone();
        move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        }
    })
    .reflect_shared(writer)
    .inspect(mark_synced(ready_tx))
    .applied_objects();

    // The ledgers: read by both controllers; a change reconciles the
    // Schedule that owns it (its status.recentSessions).
    let (ledgers_tx, ledgers_ready) = tokio::sync::watch::channel(false);
    let (ledgers, ledger_writer) = reflector::store_shared::<SessionLedger>(256);
    let schedule_ledgers = subscribe(&ledger_writer)?;
    let ledger_events = scope::watch(&client, ns, watcher::Config::default(), ledgers.clone())
        .reflect_shared(ledger_writer)
        .inspect(mark_synced(ledgers_tx));

    // One watch of the Schedules: the Schedule controller's own, and a
    // change to one reconciles the Backfills of it. A shared cache tells
    // its subscribers of changes but not of deletions, which the
    // Backfills must hear of too (they stall): those are passed on apart.
    let (schedules, schedule_writer) = reflector::store_shared::<Schedule>(256);
    let (schedule_changes, schedules_for_backfills) =
        (subscribe(&schedule_writer)?, subscribe(&schedule_writer)?);
    let (deleted_tx, deleted_schedules) = futures::channel::mpsc::unbounded::<Arc<Schedule>>();
    let schedule_events = scope::watch(&client, ns, watcher::Config::default(), schedules.clone())
        .reflect_shared(schedule_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(s)) = event {
                // The receiver goes only when the operator stops.
                let _ = deleted_tx.unbounded_send(Arc::new(s.clone()));
            }
        });
    let (backfills, backfill_writer) = reflector::store_shared::<Backfill>(256);
    let backfill_changes = subscribe(&backfill_writer)?;
    let backfill_events = scope::watch(&client, ns, watcher::Config::default(), backfills.clone())
        .reflect_shared(backfill_writer);
    *backfill_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(backfills.clone());

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER)),
        jobs: jobs.clone(),
        job_owners,
        jobs_ready,
        schedules: schedules.clone(),
        ledgers,
        ledgers_ready,
        ledgers_written: Default::default(),
        ledger_retention: i64::from(settings.ledger_retention_days) * 86_400,
        clock: settings.clock,
        recent: Recent::default(),
        metrics,
    });

    let ready = {
        let ctx = ctx.clone();
        let namespace = ns_label(ns);
        async move {
            ctx.synced().await;
            ctx.metrics.ready.store(true, Ordering::Relaxed);
            info!(namespace, "controllers started");
        }
    };
    tokio::spawn(ready);

    let schedule_loop = Controller::for_shared_stream(schedule_changes, schedules.clone())
        .owns_shared_stream(schedule_jobs)
        .owns_shared_stream(schedule_ledgers)
        .graceful_shutdown_on(stop.clone())
        .run(
            |obj, ctx: Arc<Context>| {
                measured("schedule", ctx.clone(), schedule::reconcile(obj, ctx))
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(log_result);
    let mapper_store = backfills.clone();
    let backfill_loop = Controller::for_shared_stream(backfill_changes, backfills.clone())
        .owns_shared_stream(backfill_jobs)
        .watches_shared_stream(
            futures::stream::select(schedules_for_backfills, deleted_schedules),
            move |s| backfill::backfills_of(&mapper_store, &s),
        )
        .graceful_shutdown_on(stop.clone())
        .run(
            |obj, ctx: Arc<Context>| {
                measured("backfill", ctx.clone(), backfill::reconcile(obj, ctx))
            },
            error_policy,
            ctx,
        )
        .for_each(log_result);
    let job_loop =
        release_orphans(job_events, schedules, backfills, client).for_each(|_| future::ready(()));

    let ledger_loop = ledger_events.for_each(|_| future::ready(()));
    let schedule_watch = schedule_events.for_each(|_| future::ready(()));
    let backfill_watch = backfill_events.for_each(|_| future::ready(()));
    // Reconciles under way finish after the signal, within a bound: one
    // blocked on a cache that never fills must not keep the Lease until
    // the kubelet's SIGKILL.
    let drain = async {
        stop.clone().await;
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
    };
    tokio::select! {
        _ = future::join(schedule_loop, backfill_loop) => {}
        _ = drain => warn!(seconds = SHUTDOWN_DRAIN.as_secs(), "reconciles still running after the stop signal; stopping anyway"),
        _ = job_loop => warn!("the Job watch ended"),
        _ = ledger_loop => warn!("the SessionLedger watch ended"),
        _ = schedule_watch => warn!("the Schedule watch ended"),
        _ = backfill_watch => warn!("the Backfill watch ended"),
    }
    info!("stopped");
    Ok(())
}

/// For a watch's `inspect`: tells `synced` once the initial list is in.
fn mark_synced<K>(
    synced: tokio::sync::watch::Sender<bool>,
) -> impl FnMut(&std::result::Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            synced.send_replace(true);
        }
    }
}

/// Runs a reconcile and records it in the metrics.
async fn measured(
    controller: &'static str,
    ctx: Arc<Context>,
    reconcile: impl std::future::Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics
        .reconciled(controller, started.elapsed(), result.is_ok());
    result
}

fn log_result<T, E: std::error::Error>(
    res: std::result::Result<T, kube::runtime::controller::Error<Error, E>>,
) -> future::Ready<()> {
    match res {
        // A write raced a newer version: retried at once, normal.
        Err(kube::runtime::controller::Error::ReconcilerFailed(
            Error::Kube(kube::Error::Api(e)),
            obj,
        )) if e.code == 409 => {
            debug!(object = %obj, "stale read, retrying")
        }
        Err(e) => warn!(error = %e, "reconcile failed"),
        Ok(_) => {}
    }
    future::ready(())
}

fn ns_label(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        "(all)".to_string()
    } else {
        namespaces.join(",")
    }
}

/// A subscriber of a shared cache: a stream of its changes.
fn subscribe<K>(writer: &reflector::store::Writer<K>) -> Result<reflector::ReflectHandle<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer
        .subscribe()
        .ok_or_else(|| Error::Invalid("a shared store gives subscribers".into()))
}

/// Passes Job events on, and releases the finalizer of a Job being deleted
/// whose owner (Schedule or Backfill) no longer exists — the garbage
/// collector deleting a deleted owner's Jobs: nobody is left to record
/// its outcome. An owner missing from the cache is looked up before its
/// Job is taken for an orphan (the cache may not have synced yet).
fn release_orphans<S>(
    events: S,
    schedules: Store<Schedule>,
    backfills: Store<Backfill>,
    client: Client,
) -> impl futures::Stream<Item = std::result::Result<Job, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = std::result::Result<Job, watcher::Error>> + Send + 'static,
{
    events.then(move |event| {
        let (schedules, backfills, client) = (schedules.clone(), backfills.clone(), client.clone());
        async move {
            if let Ok(job) = &event
                && job.meta().deletion_timestamp.is_some()
                && has_finalizer(job)
                && let Some(ns) = job.namespace()
            {
                let mut orphan = true;
                for owner in job.owner_references() {
                    let cached = match owner.kind.as_str() {
                        "Schedule" => schedules
                            .state()
                            .iter()
                            .any(|s| alive(s.meta(), &owner.uid)),
                        "Backfill" => backfills
                            .state()
                            .iter()
                            .any(|b| alive(b.meta(), &owner.uid)),
                        _ => true,
                    };
                    if cached || owner_alive(&client, &ns, owner).await {
                        orphan = false;
                    }
                }
                if orphan && let Err(e) = release_finalizer(&client, &ns, &job.name_any()).await {
                    warn!(job = %job.name_any(), error = %e, "releasing an orphaned Job failed");
                }
            }
            event
        }
    })
}

/// Whether the owner a reference names still exists (same UID, not being
/// deleted). An error other than "not found" counts as alive: a Job is
/// never released on a guess.
async fn owner_alive(
    client: &Client,
    ns: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> bool {
    let meta = match owner.kind.as_str() {
        "Schedule" => Api::<Schedule>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await
            .map(|o| o.map(|o| o.metadata)),
        "Backfill" => Api::<Backfill>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await
            .map(|o| o.map(|o| o.metadata)),
        _ => return true,
    };
    match meta {
        Ok(Some(meta)) => alive(&meta, &owner.uid),
        Ok(None) => false,
        Err(_) => true,
    }
}

fn alive(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.uid.as_deref() == Some(uid) && meta.deletion_timestamp.is_none()
}

pub fn has_finalizer(job: &Job) -> bool {
    job.finalizers().iter().any(|f| f == JOB_FINALIZER)
}

/// What the core needs to know of a Job.
pub fn observe(job: &Job) -> ObservedJob {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let state = if is("Complete") {
        JobState::Succeeded
    } else if is("Failed") {
        JobState::Failed
    } else {
        JobState::Active
    };
    ObservedJob {
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        session: job
            .labels()
            .get(crate::api::LABEL_SESSION)
            .and_then(|s| s.parse().ok()),
        state,
        deleting: job.meta().deletion_timestamp.is_some(),
        has_finalizer: has_finalizer(job),
        plan_index: job
            .annotations()
            .get(crate::api::ANNOTATION_PLAN_INDEX)
            .and_then(|s| s.parse().ok()),
    }
}

/// Creates a Job; one that exists already (a retry after a crash, or a
/// stale cache) is fine: its name is the session's.
pub async fn create_job(client: &Client, ns: &str, job: &Job) -> Result<bool> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&pp, job).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Deletes a Job and its pods; one already gone is fine.
pub async fn delete_job(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Removes the outcome finalizer from a Job, leaving any other.
pub async fn release_finalizer(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Writes an object's status with server-side apply. The resourceVersion
/// makes the write fail (409) on a stale read, so a counter is never
/// computed from an old value; the retry reads the fresh object.
pub async fn write_status<K>(ctx: &Context, obj: &K, status: &impl serde::Serialize) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("an object without a namespace".into()))?;
    // The same status written lately: the cache has not caught up yet.
    let body = serde_json::to_vec(status).unwrap_or_default();
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        h.finish()
    };
    let key = format!("status/{}", obj.uid().unwrap_or_default());
    if ctx.recent.seen(&key, digest) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": obj.resource_version()},
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.recent.record(key, digest);
    Ok(())
}

/// The requeue after a failed reconcile: at once after a stale read,
/// never for an object that cannot be handled until it changes, after a
/// short backoff for the rest (transient API errors).
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    match error {
        Error::Kube(kube::Error::Api(e)) if e.code == 409 => {
            Action::requeue(Duration::from_millis(200))
        }
        Error::Invalid(_) => Action::await_change(),
        _ => {
            warn!(kind = %K::kind(&()), name = %obj.name_any(), error = %error, "will retry");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// Publishes the core's notes as Events on `obj`.
pub async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, notes: &[Note]) {
    let reference = obj.object_ref(&());
    for note in notes {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.to_string(),
            note: Some(truncate(&note.message, 1_000)),
            action: note.reason.to_string(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(reason = note.reason, error = %e, "publishing an Event failed");
        }
    }
}

/// A test hook: the process aborts at the named point when the
/// `BACKFILL_OPERATOR_FAILPOINT` environment variable names it, so tests
/// can kill the operator between two writes that must both land. Only in
/// debug builds (the tests'): a release build never reads it.
pub fn failpoint(name: &str) {
    if cfg!(debug_assertions)
        && std::env::var("BACKFILL_OPERATOR_FAILPOINT").is_ok_and(|v| v == name)
    {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
