//! The Backfill controller: observe the Backfill, its Schedule and its
//! Jobs, `decide`, act.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::apply::apply;
use super::{Context, FIELD_MANAGER, missing};
use crate::Result;
use crate::api::{ANNOTATION_CREATED_BY, ANNOTATION_RERUN_FAILED, Backfill, Schedule};
use crate::core::backfill::{BackfillView, decide};
use crate::core::decision::Decision;
use crate::core::job::OwnerKind;
use crate::core::ledger::LedgerIndex;
use crate::core::observed::ObservedJob;
use crate::core::zoned_cron::seconds;

/// Recent Jobs whose durations estimate a dry run.
const RECENT_JOBS: usize = 50;

#[instrument(skip_all, fields(backfill = %backfill.name_any(), namespace = backfill.namespace().unwrap_or_default()))]
pub async fn reconcile(backfill: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    let ns = backfill
        .namespace()
        .ok_or_else(|| missing::<Backfill>(&backfill, "namespace"))?;
    let name = backfill.name_any();
    let uid = backfill.uid().unwrap_or_default();
    ctx.synced().await;
    let jobs = ctx.jobs_of(&ns, &uid);

    let observed: Vec<_> = jobs
        .iter()
        .map(|j| ObservedJob::of(j, OwnerKind::Backfill, &name))
        .collect();
    let status = backfill.status.clone().unwrap_or_default();
    if backfill.meta().deletion_timestamp.is_some() {
        let decision = Decision::release_all(status, &observed);
        return apply(&ctx, backfill.as_ref(), None, decision).await;
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
    // Only a plan that has not started yet is estimated, and judged by
    // `reprocess`: the Schedule's other Jobs are read before the start
    // only (through the index of the Schedule's Jobs, not the whole cache).
    let (recent_durations, ledger) = if status.run.is_none() {
        let schedule_jobs = ctx
            .job_owners
            .jobs_of_schedule(&ns, schedule_name, &ctx.jobs);
        let mut index = ctx.ledger_index(&ctx.ledgers_of(&ns, schedule_name), None);
        add_jobs_of_others(&mut index, ctx.jobs_of_others(&ns, schedule_name, &uid));
        (recent_durations(&schedule_jobs), index)
    } else {
        (Vec::new(), LedgerIndex::default())
    };
    let schedule_uid = schedule.as_ref().and_then(|s| s.uid()).unwrap_or_default();
    let decision = decide(&BackfillView {
        name: &name,
        namespace: Some(&ns),
        uid: &uid,
        schedule_uid: &schedule_uid,
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

    apply(&ctx, backfill.as_ref(), schedule.as_deref(), decision).await
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
                .find(|m| m != FIELD_MANAGER)
        })
}

/// Adds to `index` what Jobs of the Schedule not owned by this Backfill
/// (a scheduled run, another Backfill) know and the ledger does not yet:
/// the sessions they run now, and the outcomes of those that ended but
/// still hold their outcome finalizer (not recorded yet).
fn add_jobs_of_others(index: &mut LedgerIndex, others: Vec<ObservedJob>) {
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
fn recent_durations(jobs: &[Arc<Job>]) -> Vec<i64> {
    let mut finished: Vec<(i64, i64)> = jobs
        .iter()
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
