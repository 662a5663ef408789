//! The one applier: carries out a decision of either controller, in the
//! one order that keeps every counter true across a crash at any point.

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::events::Occurrence;
use super::jobs::{Created, create_job};
use super::{Context, FIELD_MANAGER, missing};
use crate::api::{Backfill, BackfillStatus, Schedule, ScheduleStatus};
use crate::core::backfill::rerun::{RerunChild, is_child_of};
use crate::core::decision::{Decision, Status};
use crate::core::observed::Note;
use crate::core::reason::Reason;
use crate::metrics::ControllerLabels;
use crate::{Error, Result};

/// Requests under way at once for one decision's Jobs: the API server's
/// pace, not one at a time.
const CONCURRENCY: usize = 64;

/// A kind whose decisions the applier carries out.
pub trait Owner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    type Status: Status;
    /// The `controller` label of its metrics.
    const CONTROLLER: &'static str;
    fn current_status(&self) -> Option<&Self::Status>;
}

impl Owner for Schedule {
    type Status = ScheduleStatus;
    const CONTROLLER: &'static str = "schedule";
    fn current_status(&self) -> Option<&ScheduleStatus> {
        self.status.as_ref()
    }
}

impl Owner for Backfill {
    type Status = BackfillStatus;
    const CONTROLLER: &'static str = "backfill";
    fn current_status(&self) -> Option<&BackfillStatus> {
        self.status.as_ref()
    }
}

/// Carries out `d` for `owner`; `ledger_of` is the Schedule whose session
/// ledger records the outcomes (none when it is gone: the outcomes are
/// still in the owner's status). The order is the point:
///
/// 1. Jobs that must stop go first (`Replace` deletes the running Job
///    before its successor starts, as CronJob does; a cancel).
/// 2. Jobs are created. Each is named by its session, so a retry after a
///    crash finds the Job it made instead of making another; on an error
///    nothing below happens and the next pass decides the same again.
/// 3. A rerun child is created before the parent records it: a crash in
///    between finds the child by its name.
/// 4. The ledger gets the outcomes of the Jobs about to be released (a
///    Backfill's), or the Schedule's unfiled outcomes when the status is
///    about to drop them. A crash before the status write writes them
///    again, which changes nothing.
/// 5. The status is written: the counters now hold the outcomes of the
///    Jobs about to be released (a Schedule's status keeps them as
///    unfiled outcomes until a batch is due), and a new Schedule watermark
///    comes after the Jobs it covers exist.
/// 6. Finalizers come off: only now may a counted Job disappear.
/// 7. Finished Jobs past the history limits are deleted, counted.
/// 8. Events.
pub async fn apply<K: Owner>(
    ctx: &Context,
    owner: &K,
    ledger_of: Option<&Schedule>,
    mut d: Decision<K::Status>,
) -> Result<Action> {
    let ns = owner
        .namespace()
        .ok_or_else(|| missing(owner, "namespace"))?;
    for job in &d.delete {
        ctx.delete(&ns, job).await?;
    }

    if !d.create.is_empty() {
        ctx.may_write("create Jobs")?;
    }
    let (made, created, taken) = create_jobs(ctx, &ns, &d).await?;
    if made > 0 {
        failpoint("after-jobs-created");
    }
    for i in taken {
        let new = &d.create[i];
        d.status.job_name_taken(new, ctx.clock.now());
        d.notes.push(Note {
            warning: true,
            reason: Reason::JobNameTaken,
            message: format!(
                "Job {} exists and is not this {}'s (an earlier object of the same name, or orphaned): the session at {} is counted as {}; delete that Job to run the session again",
                new.job.name_any(),
                K::kind(&()),
                crate::core::zoned_cron::rfc3339_utc(new.session.at),
                if new.plan_index.is_some() { "failed" } else { "not run" },
            ),
        });
    }
    ctx.metrics
        .jobs_created
        .get_or_create(&ControllerLabels {
            controller: K::CONTROLLER,
        })
        .inc_by(made);

    if let Some(rerun) = &d.rerun {
        ctx.may_write("create a rerun child")?;
        let uid = owner.uid().unwrap_or_default();
        let child_uid = create_child(ctx, &ns, &uid, rerun).await?;
        d.status.child_created(rerun, &child_uid);
        d.notes.push(rerun.note.clone());
    }

    if let Some(schedule) = ledger_of
        && !d.ledger.is_empty()
    {
        ctx.may_write("ledger")?;
        let left_out = ctx.record_outcomes(schedule, &d.ledger).await?;
        d.notes.extend(left_out);
        failpoint("after-ledger-write");
    }
    if owner.current_status() != Some(&d.status) {
        ctx.may_write("status")?;
        write_status(ctx, owner, &d.status).await?;
    }
    // Indexes, not references, into the decision: a stream of borrowed
    // items makes the reconcile future not `Send` (rust-lang/rust#102211).
    futures::stream::iter(0..d.release.len())
        .map(|i| ctx.release(&ns, &d.release[i]))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    for job in &d.prune {
        ctx.delete(&ns, job).await?;
    }

    publish(ctx, owner, created.iter().chain(&d.notes)).await;
    debug!(created = made, wake_at = ?d.wake_at, "applied");
    Ok(match d.wake_at {
        Some(at) => Action::requeue(ctx.clock.until(at)),
        None => Action::await_change(),
    })
}

/// Creates the decision's Jobs; returns how many it made, their Events
/// (a Job that existed already was made by an earlier pass), and which
/// (by index in `d.create`) found their name taken by another owner's Job.
/// The first error comes back once every create has been tried.
async fn create_jobs<S>(
    ctx: &Context,
    ns: &str,
    d: &Decision<S>,
) -> Result<(u64, Vec<Note>, Vec<usize>)> {
    let results: Vec<(usize, Result<Created>)> = futures::stream::iter(0..d.create.len())
        .map(|i| async move {
            let job = &d.create[i].job;
            (i, create_job(&ctx.client, &ctx.jobs, ns, job).await)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let (mut made, mut notes, mut taken, mut error) = (0, Vec::new(), Vec::new(), None);
    for (i, result) in results {
        match result {
            Ok(Created::Made) => {
                made += 1;
                notes.extend(d.create[i].created.clone());
            }
            Ok(Created::Existed) => {}
            Ok(Created::Taken) => taken.push(i),
            Err(e) => error = error.or(Some(e)),
        }
    }
    taken.sort_unstable();
    match error {
        Some(e) => Err(e),
        None => Ok((made, notes, taken)),
    }
}

/// Creates a rerun child, or finds the one an earlier pass made; returns
/// its UID.
async fn create_child(
    ctx: &Context,
    ns: &str,
    parent_uid: &str,
    rerun: &RerunChild,
) -> Result<String> {
    let api: Api<Backfill> = Api::namespaced(ctx.client.clone(), ns);
    let name = rerun.child.name_any();
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let child = match api.create(&pp, &rerun.child).await {
        Ok(child) => child,
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?,
        Err(e) => return Err(e.into()),
    };
    failpoint("after-rerun-child-created");
    if !is_child_of(&child, parent_uid) {
        return Err(Error::NameTaken {
            kind: "Backfill",
            name,
            owner: "a rerun child of this backfill".into(),
        });
    }
    Ok(child.uid().unwrap_or_default())
}

/// Writes an object's status with server-side apply. The resourceVersion
/// makes the write fail (409) on a stale read, so a counter is never
/// computed from an old value; the retry reads the fresh object.
async fn write_status<K: Owner>(ctx: &Context, obj: &K, status: &K::Status) -> Result<()> {
    let ns = obj.namespace().ok_or_else(|| missing(obj, "namespace"))?;
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
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.wrote_status(&written);
    ctx.recent.record(key, digest);
    Ok(())
}

/// Publishes the core's notes as Events on `obj`, in order, in a task of
/// their own: the reconcile does not wait for them (as client-go's event
/// broadcaster does not), so when many sessions fire together a worker
/// goes on to the next Schedule's Job instead of waiting on an Event
/// write. An Event that fails is logged; a stop may lose the last ones.
/// At most `Context::events_in_flight` batches wait at once; past that
/// the reconcile waits here for one to finish.
async fn publish<'n, K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    notes: impl Iterator<Item = &'n Note>,
) {
    let notes: Vec<Note> = notes
        .map(|n| Note {
            warning: n.warning,
            reason: n.reason,
            message: truncate(&n.message, 1_000),
        })
        .collect();
    if notes.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    let recorder = ctx.recorder.clone();
    let Ok(slot) = ctx.events_in_flight.clone().acquire_owned().await else {
        return; // closed: the operator is stopping
    };
    tokio::spawn(async move {
        let _slot = slot;
        for note in &notes {
            let what = Occurrence {
                warning: note.warning,
                reason: note.reason.as_str(),
                note: &note.message,
            };
            if let Err(e) = recorder.publish(&what, &reference).await {
                warn!(reason = %note.reason, error = %e, "publishing an Event failed");
            }
        }
    });
}

/// A test hook: the process aborts at the named point when the
/// `BACKFILL_OPERATOR_FAILPOINT` environment variable names it, so tests
/// can kill the operator between two writes that must both land. Only in
/// debug builds (the tests'): a release build never reads it.
fn failpoint(name: &str) {
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
