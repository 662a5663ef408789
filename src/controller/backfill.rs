//! The Backfill controller: observe the Backfill, its Schedule and its
//! Jobs, `decide`, act.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument};

use super::{Context, FIELD_MANAGER, create_job, failpoint, observe, publish, write_status};
use crate::api::{
    ANNOTATION_CREATED_BY, ANNOTATION_PLAN_INDEX, ANNOTATION_RERUN_FAILED, Backfill,
    LABEL_SCHEDULE, Schedule,
};
use crate::core::backfill::{BackfillView, decide};
use crate::core::job::{Attempt, OwnerKind};
use crate::core::ledger::LedgerIndex;
use crate::core::observed::{Kstatus, Note, ObservedJob, Outcome};
use crate::core::rerun::{RerunChild, is_child_of, record_child};
use crate::core::{Clock, plan::seconds};
use crate::metrics::ControllerLabels;
use crate::{Error, Result};

/// Jobs created at once: the API server's pace, not one at a time.
const CREATE_CONCURRENCY: usize = 64;
/// Recent Jobs whose durations estimate a dry run.
const RECENT_JOBS: usize = 50;

#[instrument(skip_all, fields(backfill = %backfill.name_any(), namespace = backfill.namespace().unwrap_or_default()))]
pub async fn reconcile(backfill: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    let ns = backfill
        .namespace()
        .ok_or_else(|| Error::Invalid("a Backfill without a namespace".into()))?;
    let name = backfill.name_any();
    let uid = backfill.uid().unwrap_or_default();
    ctx.synced().await;
    let jobs = ctx.jobs_of(&uid);

    if backfill.meta().deletion_timestamp.is_some() {
        for job in jobs.iter().filter(|j| super::has_finalizer(j)) {
            ctx.release(&ns, &job.name_any()).await?;
        }
        return Ok(Action::await_change());
    }

    let schedule_name = &backfill.spec.schedule_ref.name;
    // The cache first; a Schedule it lacks may be one it has not seen yet.
    let schedule = match ctx
        .schedules
        .get(&ObjectRef::<Schedule>::new(schedule_name).within(&ns))
    {
        Some(s) => Some(s),
        None => Api::<Schedule>::namespaced(ctx.client.clone(), &ns)
            .get_opt(schedule_name)
            .await?
            .map(Arc::new),
    };
    // Only a plan that has not started yet is estimated: the durations
    // are not read on every pass of a running backfill.
    // Other owners' Jobs are read (a scan of the whole cache) before the
    // start only.
    let all_jobs = if backfill.status.as_ref().is_none_or(|s| s.run.is_none()) {
        ctx.jobs.state()
    } else {
        Vec::new()
    };
    let recent_durations = recent_durations(&all_jobs, &ns, schedule_name);
    let observed: Vec<_> = jobs.iter().map(|j| observe(j)).collect();
    let status = backfill.status.clone().unwrap_or_default();
    // `reprocess` is judged once, at the start.
    let ledger = if status.run.is_none() {
        let mut index = ctx.ledger_index(&ctx.ledgers_of(&ns, schedule_name), None);
        add_jobs_of_others(&mut index, &all_jobs, &ns, schedule_name, &uid);
        index
    } else {
        LedgerIndex::default()
    };
    let mut decision = decide(&BackfillView {
        name: &name,
        namespace: Some(&ns),
        uid: &uid,
        generation: backfill.meta().generation,
        spec: &backfill.spec,
        status: &status,
        created_by: created_by(&backfill),
        schedule: schedule.as_ref().map(|s| &s.spec),
        jobs: &observed,
        recent_durations: &recent_durations,
        rerun_request: backfill
            .annotations()
            .get(ANNOTATION_RERUN_FAILED)
            .map(String::as_str),
        ledger: &ledger,
        created: backfill
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| ctx.clock.at_real(seconds(t))),
        now: ctx.clock.now(),
    });

    // Jobs first: named by session, so a retry after a crash finds them.
    if let (Some(schedule), Some(run), false) =
        (&schedule, &decision.status.run, decision.create.is_empty())
    {
        let clock = Clock::new(&run.schedule, Some(&run.time_zone))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let owner = backfill
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Invalid("a Backfill without a uid".into()))?;
        let attempt_name = backfill
            .spec
            .attempt_name
            .clone()
            .unwrap_or_else(|| name.clone());
        let schedule_uid = schedule.uid().unwrap_or_default();
        let jobs: Vec<Job> = decision
            .create
            .iter()
            .map(|(index, session)| {
                let mut job = Attempt {
                    kind: OwnerKind::Backfill,
                    owner: owner.clone(),
                    namespace: &ns,
                    schedule_name,
                    schedule_uid: &schedule_uid,
                    backfill_name: Some(&name),
                    attempt_name: &attempt_name,
                    clock: &clock,
                    session: *session,
                }
                .build_job(&schedule.spec.job_template);
                job.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANNOTATION_PLAN_INDEX.to_string(), index.to_string());
                job
            })
            .collect();
        let results: Vec<Result<bool>> = futures::stream::iter(jobs)
            .map(|job| {
                let (client, ns) = (ctx.client.clone(), ns.clone());
                async move { create_job(&client, &ns, &job).await }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        let created = results.iter().filter(|r| matches!(r, Ok(true))).count();
        ctx.metrics
            .jobs_created
            .get_or_create(&ControllerLabels {
                controller: "backfill",
            })
            .inc_by(created as u64);
        if let Some(err) = results.into_iter().find_map(|r| r.err()) {
            // The status is not written: the next pass makes the same
            // decision and finds the Jobs that were made.
            return Err(err);
        }
        debug!(created, "launched");
    }
    for job in &decision.delete {
        ctx.delete(&ns, job).await?;
    }

    // A rerun child before the record of it: a crash between the two
    // finds the child by its name on the next pass.
    if let Some(rerun) = decision.rerun.take() {
        let child_uid = create_child(&ctx, &ns, &uid, &rerun).await?;
        let ks = Kstatus {
            before: &status.conditions,
            generation: backfill.meta().generation,
            now: ctx.clock.now(),
        };
        record_child(&mut decision, &ks, &rerun, &child_uid, ctx.clock.now());
    }

    if backfill.status.as_ref() != Some(&decision.status) {
        write_status(&ctx, backfill.as_ref(), &decision.status).await?;
    }
    // The outcomes whose finalizer comes off go to the ledger first. A
    // crash before the release writes them again, which changes nothing.
    if let Some(schedule) = &schedule
        && !decision.release.is_empty()
    {
        failpoint("before-ledger-write");
        let attempt = backfill.spec.attempt_name.as_deref().unwrap_or(&name);
        let outcomes = released_outcomes(&observed, &decision.release);
        ctx.record_outcomes(schedule, attempt, &format!("Backfill/{name}"), &outcomes)
            .await?;
    }
    futures::stream::iter(decision.release.clone())
        .map(|job| {
            let (ctx, ns) = (ctx.clone(), ns.clone());
            async move { ctx.release(&ns, &job).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    publish(&ctx, backfill.as_ref(), &decision.notes).await;
    if !decision.create.is_empty() {
        let note = Note {
            warning: false,
            reason: "JobsCreated",
            message: format!("launched {} session(s)", decision.create.len()),
        };
        publish(&ctx, backfill.as_ref(), &[note]).await;
    }

    Ok(match decision.wake_at {
        Some(at) => Action::requeue(ctx.clock.until(at)),
        None => Action::await_change(),
    })
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
        return Err(Error::Invalid(format!(
            "Backfill {name} exists and is not a rerun child of this backfill; delete or rename it to carry out the request"
        )));
    }
    Ok(child.uid().unwrap_or_default())
}

/// The session and outcome of each Job about to be released.
pub fn released_outcomes(observed: &[ObservedJob], release: &[String]) -> Vec<(i64, Outcome)> {
    observed
        .iter()
        .filter(|j| release.contains(&j.name))
        .filter_map(|j| Some((j.session?, j.outcome()?)))
        .collect()
}

/// The Backfills of a Schedule, reconciled when it changes (created,
/// fixed, deleted).
pub fn backfills_of(
    backfills: &kube::runtime::reflector::Store<Backfill>,
    schedule: &Schedule,
) -> Vec<ObjectRef<Backfill>> {
    let ns = schedule.namespace();
    let name = schedule.name_any();
    backfills
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && b.spec.schedule_ref.name == name)
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// `backfill.dev/created-by`, else the field manager that created it.
fn created_by(backfill: &Backfill) -> Option<String> {
    backfill
        .annotations()
        .get(ANNOTATION_CREATED_BY)
        .cloned()
        .or_else(|| {
            // The first manager of the object itself, not of its status
            // (the operator's).
            backfill
                .meta()
                .managed_fields
                .iter()
                .flatten()
                .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
                .filter_map(|m| m.manager.clone())
                .find(|m| m != super::FIELD_MANAGER)
        })
}

/// Adds to `index` what Jobs of the Schedule not owned by `uid` (a
/// scheduled run, another Backfill) know and the ledger does not yet: the
/// sessions they run now, and the outcomes of those that ended but still
/// hold their outcome finalizer (not recorded yet).
fn add_jobs_of_others(
    index: &mut LedgerIndex,
    jobs: &[Arc<Job>],
    ns: &str,
    schedule: &str,
    uid: &str,
) {
    let others = jobs
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(ns))
        .filter(|j| j.labels().get(LABEL_SCHEDULE).map(String::as_str) == Some(schedule))
        .filter(|j| !j.owner_references().iter().any(|o| o.uid == uid))
        .map(|j| observe(j));
    for job in others {
        let Some(at) = job.session else { continue };
        if job.running() {
            index.add_running([at]);
        } else if let (true, Some(outcome)) = (job.has_finalizer, job.outcome()) {
            index.add_unrecorded(at, outcome);
        }
    }
}

/// How long the Schedule's recent finished Jobs took, in seconds.
fn recent_durations(jobs: &[Arc<Job>], ns: &str, schedule: &str) -> Vec<i64> {
    let mut finished: Vec<(i64, i64)> = jobs
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(ns))
        .filter(|j| j.labels().get(LABEL_SCHEDULE).map(String::as_str) == Some(schedule))
        .filter_map(|j| {
            let s = j.status.as_ref()?;
            let start = seconds(s.start_time.as_ref()?);
            let end = seconds(s.completion_time.as_ref()?);
            Some((end, end - start))
        })
        .collect();
    finished.sort_unstable_by_key(|(end, _)| std::cmp::Reverse(*end));
    finished
        .into_iter()
        .take(RECENT_JOBS)
        .map(|(_, d)| d)
        .collect()
}
