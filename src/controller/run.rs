//! Wiring: the watches and their shared caches, the two controllers, the
//! leader Lease, the probes, and the requeue policy.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::grouped::Grouped;
use super::jobs::{has_finalizer, release_orphans};
use super::{
    Context, FIELD_MANAGER, Recent, Settings, backfill, leader, owners, schedule, scope, trim,
};
use crate::api::{Backfill, LABEL_SCHEDULE, Schedule, SessionLedger};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// How long reconciles under way may take to finish after SIGTERM: less
/// than a pod's default grace period of 30 s.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(20);
/// Event batches published at once (`Context::events_in_flight`): as
/// many as Schedule reconciles run at once by default.
const EVENTS_IN_FLIGHT: usize = 64;

/// Serves the probes and metrics, waits for the leader Lease if asked
/// to, and runs the controllers until SIGTERM or Ctrl-C (or until the
/// Lease is lost: the process then exits with an error, to be restarted
/// as a standby).
pub async fn run(client: Client, lease_client: Client, settings: Settings) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let backfills = Arc::new(std::sync::Mutex::new(None));
    if let Some(address) = &settings.listen_address {
        let listener = crate::http::bind(address)
            .await
            .map_err(|e| Error::Startup(format!("--listen-address {address}: {e}")))?;
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            backfills.clone(),
        ));
    }
    if let Some(api) = settings.api.clone() {
        crate::public_api::start(
            api,
            client.clone(),
            settings.namespaces.clone(),
            settings.clock,
            metrics.clone(),
        )
        .await?;
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
        let mut e = leader::Elector::new(lease_client, config);
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
    let leadership = elector
        .as_ref()
        .map_or_else(leader::Leadership::always, leader::Elector::leadership);
    let controllers = run_controllers(
        client,
        settings,
        metrics.clone(),
        backfills,
        stop,
        leadership,
    );
    let result = match elector.as_mut() {
        Some(e) => tokio::select! {
            r = controllers => r,
            lost = e.hold() => Err(lost),
        },
        None => controllers.await,
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
    metrics: Arc<Metrics>,
    backfill_slot: Arc<std::sync::Mutex<Option<Store<Backfill>>>>,
    stop: future::Shared<future::BoxFuture<'static, ()>>,
    leadership: leader::Leadership,
) -> Result<()> {
    let ns = settings.namespaces.as_slice();
    // One watch of the operator's Jobs feeds both controllers and the
    // shared cache.
    let (jobs, writer) = reflector::store_shared::<trim::CachedJob>(1_024);
    let (schedule_jobs, backfill_jobs) = (subscribe(&writer)?, subscribe(&writer)?);
    let (ready_tx, jobs_ready) = tokio::sync::watch::channel(false);
    let job_owners = owners::OwnerIndex::default();
    let job_events = scope::watch(
        &client,
        ns,
        watcher::Config::default().labels(LABEL_SCHEDULE),
        jobs.clone(),
    )
    // Trimmed before the index and the cache see them: only what
    // decisions read is kept (`controller::trim`).
    .modify(trim::trim_job)
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
    let ledgers_by_schedule = Grouped::new(|l: &SessionLedger| l.spec.schedule_ref.name.clone());
    let schedule_ledgers = subscribe(&ledger_writer)?;
    let ledger_events = scope::watch(&client, ns, watcher::Config::default(), ledgers.clone())
        .modify(|l| trim::drop_managed_fields(&mut l.metadata))
        .inspect(index_events(ledgers_by_schedule.clone()))
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
    // Owners gone (a Schedule or Backfill without finalizers goes at once,
    // e.g. with its namespace): their Jobs' finalizers come off, whatever
    // order the watches tell of the owner and its Jobs in.
    let (gone_tx, gone_owners) = futures::channel::mpsc::unbounded::<(String, String)>();
    let schedule_gone = gone_tx.clone();
    let schedule_events = scope::watch(&client, ns, watcher::Config::default(), schedules.clone())
        .modify(|s| trim::drop_managed_fields(&mut s.metadata))
        .reflect_shared(schedule_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(s)) = event {
                // The receivers go only when the operator stops.
                let _ = deleted_tx.unbounded_send(Arc::new(s.clone()));
                let _ = schedule_gone.unbounded_send(owner_key(s));
            }
        });
    let (backfills, backfill_writer) = reflector::store_shared::<Backfill>(256);
    let backfills_by_schedule = Grouped::new(backfill::schedule_of);
    let backfill_changes = subscribe(&backfill_writer)?;
    // A Backfill's managers are kept (its `createdBy` may fall back to
    // the first), without their field sets.
    let backfill_events = scope::watch(&client, ns, watcher::Config::default(), backfills.clone())
        .modify(|b| trim::trim_meta(&mut b.metadata))
        .inspect(index_events(backfills_by_schedule.clone()))
        .reflect_shared(backfill_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(b)) = event {
                let _ = gone_tx.unbounded_send(owner_key(b));
            }
        });
    *backfill_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(backfills.clone());

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Arc::new(super::events::Recorder::new(client.clone(), FIELD_MANAGER)),
        events_in_flight: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
        jobs: jobs.clone(),
        job_owners,
        jobs_ready,
        schedules: schedules.clone(),
        backfills: backfills.clone(),
        backfills_by_schedule: backfills_by_schedule.clone(),
        ledgers,
        ledgers_by_schedule,
        ledgers_ready,
        ledgers_written: Default::default(),
        status_written: Default::default(),
        ledger_retention: i64::from(settings.ledger_retention_days) * 86_400,
        ledger_batch: usize::from(settings.ledger_batch),
        clock: settings.clock,
        recent: Recent::default(),
        launches: Default::default(),
        metrics,
        leadership: leadership.clone(),
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
        .with_config(controller::Config::default().concurrency(settings.concurrent_schedule_syncs))
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
    let (mapper_store, mapper_index) = (backfills.clone(), backfills_by_schedule.clone());
    let (job_store, job_index) = (backfills.clone(), backfills_by_schedule);
    let backfill_loop = Controller::for_shared_stream(backfill_changes, backfills.clone())
        .with_config(controller::Config::default().concurrency(settings.concurrent_backfill_syncs))
        // A Job reconciles its Backfill, and when it ends, the Backfills
        // of its Schedule waiting for that session's attempt to end.
        .watches_shared_stream(backfill_jobs, move |job| {
            backfill::backfills_of_job(&job_store, &job_index, &job)
        })
        .watches_shared_stream(
            futures::stream::select(schedules_for_backfills, deleted_schedules),
            move |s| backfill::backfills_of(&mapper_store, &mapper_index, &s),
        )
        .graceful_shutdown_on(stop.clone())
        .run(
            |obj, ctx: Arc<Context>| {
                measured("backfill", ctx.clone(), backfill::reconcile(obj, ctx))
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(log_result);
    let job_loop = release_orphans(job_events, schedules, backfills, client, leadership)
        .for_each(|_| future::ready(()));
    let gone_loop = gone_owners.for_each(|(ns, uid)| {
        let ctx = ctx.clone();
        async move {
            for job in ctx.jobs_of(&ns, &uid).iter().filter(|j| has_finalizer(j.as_ref())) {
                if let Err(e) = ctx.release(&ns, &job.name_any()).await {
                    warn!(job = %job.name_any(), error = %e, "releasing a Job of a deleted owner failed");
                }
            }
        }
    });

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
        _ = gone_loop => warn!("the deleted owners' channel ended"),
        _ = ledger_loop => warn!("the SessionLedger watch ended"),
        _ = schedule_watch => warn!("the Schedule watch ended"),
        _ = backfill_watch => warn!("the Backfill watch ended"),
    }
    info!("stopped");
    Ok(())
}

/// The (namespace, UID) an owner's Jobs are indexed by.
fn owner_key<K: Resource>(obj: &K) -> (String, String) {
    (
        obj.namespace().unwrap_or_default(),
        obj.uid().unwrap_or_default(),
    )
}

/// For a watch's `inspect`: keeps an index by Schedule in step, one
/// event ahead of the cache.
fn index_events<K>(
    index: Grouped<K>,
) -> impl FnMut(&std::result::Result<watcher::Event<K>, watcher::Error>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    move |event| {
        if let Ok(event) = event {
            index.apply(event);
        }
    }
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
    ctx.metrics.reconciled(
        controller,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
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
        .ok_or_else(|| Error::Startup("a shared store gives subscribers".into()))
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
        e if e.awaits_change() => Action::await_change(),
        _ => {
            warn!(kind = %K::kind(&()), name = %obj.name_any(), error = %error, "will retry");
            Action::requeue(Duration::from_secs(5))
        }
    }
}
