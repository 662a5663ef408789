//! The Backfill controller: observe the Backfill, its Schedule and its
//! Jobs, `decide`, act.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::trim::CachedJob;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument};

use super::apply::apply;
use super::grouped::Grouped;
use super::{Context, FIELD_MANAGER, missing};
use crate::api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_CREATED_BY, ANNOTATION_RERUN_FAILED,
    ANNOTATION_RERUN_REQUESTED_BY, ANNOTATION_RESUME, Backfill, BackfillPhase, BackfillSpec,
    BackfillStatus, Reprocess, Schedule, SessionOrder, condition,
};
use crate::core::backfill::{BackfillView, decide};
use crate::core::capacity::{Budget, Claimant, waits_for_capacity};
use crate::core::decision::Decision;
use crate::core::job::OwnerKind;
use crate::core::ledger::LedgerIndex;
use crate::core::observed::ObservedJob;
use crate::core::observed::find_condition;
use crate::core::reason::Reason;
use crate::core::zoned_cron::seconds;
use crate::{Error, Result};

/// Recent Jobs whose durations estimate a dry run.
const RECENT_JOBS: usize = 50;

#[instrument(skip_all, fields(backfill = %backfill.name_any(), namespace = backfill.namespace().unwrap_or_default()))]
pub async fn reconcile(backfill: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    let ns = backfill
        .namespace()
        .ok_or_else(|| missing::<Backfill>(&backfill, "namespace"))?;
    let name = backfill.name_any();
    let uid = backfill.uid().unwrap_or_default();
    if ctx.behind_own_write(backfill.as_ref()) {
        return Ok(Action::requeue(super::BEHIND_OWN_WRITE));
    }
    ctx.synced().await;
    let jobs = ctx.jobs_of(&ns, &uid);

    let observed: Vec<_> = jobs
        .iter()
        .map(|j| j.observe(OwnerKind::Backfill, &name))
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
    // Jobs of the Schedule that others own (its scheduled runs, other
    // Backfills) are read while there is something to start or launch,
    // through the index of the Schedule's Jobs, not the whole cache: a
    // session one of them runs waits for it, and what they decided
    // counts for `reprocess`.
    // The Schedule and its Backfills launch one at a time, each seeing
    // what the others launched a moment ago (`controller::launches`).
    let looking = status.run.is_none() || launching(&backfill.spec, &status);
    let launch_lock = ctx.launches.lock_for(&ns, schedule_name);
    let launching = if looking {
        Some(launch_lock.lock().await)
    } else {
        None
    };
    let others = if looking {
        ctx.jobs_of_others(&ns, schedule_name, &uid)
    } else {
        Vec::new()
    };
    let run_elsewhere: BTreeMap<i64, String> =
        ctx.launches
            .run_elsewhere(&ns, schedule_name, &uid, &others);
    // A Schedule's `maxActiveJobs` is shared with its live runs and its
    // other Backfills: what each runs now, and what the others claim.
    let budget = match (&schedule, looking) {
        (Some(s), true) => s
            .spec
            .max_active_jobs
            .map(|max| budget_of(&ctx, s, &ns, &uid, max)),
        _ => None,
    };
    // How long Jobs take, on the operator's clock: a plan that has not
    // started yet is estimated with it, and the budget's forecast of the
    // live runs needs it.
    let recent_durations = if status.run.is_none() || budget.is_some() {
        recent_durations(
            &ctx.job_owners
                .jobs_of_schedule(&ns, schedule_name, &ctx.jobs),
        )
        .into_iter()
        .map(|d| ctx.clock.span(d))
        .collect()
    } else {
        Vec::new()
    };
    // `reprocess` judges a plan that has not started yet against the
    // whole ledger, and then each session still to launch against the
    // months it may reach.
    let ledger = match (&status.run, backfill.spec.reprocess.unwrap_or_default()) {
        (None, _) => Some(None),
        (Some(_), Reprocess::All) => None,
        (Some(run), _) => run.next_session.as_ref().map(|next| {
            let at = seconds(next);
            match backfill.spec.order.unwrap_or_default() {
                SessionOrder::Oldest => Some((at, i64::MAX)),
                SessionOrder::Newest => Some((i64::MIN, at + 1)),
            }
        }),
    };
    let ledger = match ledger {
        Some(bounds) if looking => {
            let mut index = ctx.ledger_index(&ctx.ledgers_of(&ns, schedule_name), bounds);
            if let Some(status) = schedule.as_ref().and_then(|s| s.status.as_ref()) {
                index.add_unfiled(schedule_name, &status.unfiled_outcomes);
            }
            add_jobs_of_others(&mut index, others);
            index
        }
        _ => LedgerIndex::default(),
    };
    if let Some(budget) = &budget {
        debug!(?budget, ?recent_durations, "maxActiveJobs budget");
    }
    let schedule_uid = schedule.as_ref().and_then(|s| s.uid()).unwrap_or_default();
    // Planning walks up to the session limit, and a launch or a count by
    // name can walk a large plan: the decide step runs on the blocking
    // pool, so the Lease renewal and the other objects' reconciles never
    // wait for it. A panic there fails this object's reconcile only.
    let created_by = created_by(&backfill);
    let rerun_request = backfill.annotations().get(ANNOTATION_RERUN_FAILED).cloned();
    let resume_request = backfill.annotations().get(ANNOTATION_RESUME).cloned();
    let approved_by = backfill.annotations().get(ANNOTATION_APPROVED_BY).cloned();
    let rerun_requested_by = backfill
        .annotations()
        .get(ANNOTATION_RERUN_REQUESTED_BY)
        .cloned();
    let created = backfill
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|t| ctx.clock.at_real(seconds(t)));
    let now = ctx.clock.now();
    let (owner, of_schedule) = (backfill.clone(), schedule.clone());
    let (claim_ns, claim_uid) = (ns.clone(), uid.clone());
    let decision = tokio::task::spawn_blocking(move || {
        decide(&BackfillView {
            name: &name,
            namespace: Some(&ns),
            uid: &uid,
            schedule_uid: &schedule_uid,
            generation: owner.meta().generation,
            spec: &owner.spec,
            status: &status,
            created_by,
            schedule: of_schedule.as_ref().map(|s| &s.spec),
            jobs: &observed,
            recent_durations: &recent_durations,
            rerun_request: rerun_request.as_deref(),
            resume_request: resume_request.as_deref(),
            approved_by: approved_by.as_deref(),
            rerun_requested_by: rerun_requested_by.as_deref(),
            ledger: &ledger,
            run_elsewhere: &run_elsewhere,
            budget: budget.as_ref(),
            created,
            now,
        })
    })
    .await
    .map_err(|e| Error::DecidePanicked {
        object: format!("Backfill {}", backfill.name_any()),
        message: e.to_string(),
    })?;

    for new in &decision.create {
        if let Some(job) = new.job.metadata.name.as_deref() {
            ctx.launches
                .claim(&claim_ns, schedule_name, &claim_uid, new.session.at, job);
        }
    }
    // Claimed: released before the creates (`controller::launches`).
    drop(launching);
    apply(&ctx, backfill.as_ref(), schedule.as_deref(), decision).await
}

/// The budget of `schedule`'s `maxActiveJobs` as the Backfill `uid` sees
/// it: the live runs active now, and the claims of its other Backfills.
fn budget_of(ctx: &Context, schedule: &Schedule, ns: &str, uid: &str, max: i32) -> Budget {
    let name = schedule.name_any();
    let running = ctx.running_by_owner(ns, &name);
    let count = |owner: &str| running.get(owner).copied().unwrap_or(0);
    let others = ctx
        .backfills_by_schedule
        .members(ns, &name, &ctx.backfills)
        .iter()
        .filter_map(|b| {
            let other = b.uid()?;
            (other != uid).then(|| {
                let status = b.status.clone().unwrap_or_default();
                Claimant::of(&other, &b.spec, &status, count(&other))
            })
        })
        .collect();
    let run_bound = schedule
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.active_deadline_seconds)
        .map(|d| ctx.clock.span(d));
    Budget {
        max_active: max.max(1) as u64,
        live_running: schedule.uid().map_or(0, |s| count(&s)),
        others,
        run_bound,
    }
}

/// Whether a started run may launch more Jobs: not finished or
/// cancelled.
fn launching(spec: &BackfillSpec, status: &BackfillStatus) -> bool {
    let over = matches!(
        status.phase,
        Some(BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled)
    );
    !over && spec.cancel != Some(true)
}

/// The Backfills of a Schedule, reconciled when it changes (created,
/// fixed, deleted): read through the index by Schedule, not by a scan of
/// every Backfill on each Schedule's change.
pub fn backfills_of(
    backfills: &kube::runtime::reflector::Store<Backfill>,
    by_schedule: &Grouped<Backfill>,
    schedule: &Schedule,
) -> Vec<ObjectRef<Backfill>> {
    let ns = schedule.namespace().unwrap_or_default();
    by_schedule
        .members(&ns, &schedule.name_any(), backfills)
        .iter()
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The Schedule a Backfill refers to: what the index groups it by.
pub fn schedule_of(backfill: &Backfill) -> String {
    backfill.spec.schedule_ref.name.clone()
}

/// The Backfills a change of `job` concerns: its owner's, and once it
/// ended, the Backfills of its Schedule whose launches wait for another
/// attempt of a session to end (phase `Waiting`, reason
/// `SessionRunElsewhere`) or for a slot of its `maxActiveJobs`.
pub fn backfills_of_job(
    backfills: &kube::runtime::reflector::Store<Backfill>,
    by_schedule: &Grouped<Backfill>,
    job: &CachedJob,
) -> Vec<ObjectRef<Backfill>> {
    let ns = job.namespace();
    let mut refs: Vec<ObjectRef<Backfill>> = job
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Backfill" && o.api_version == Backfill::api_version(&()))
        .map(|o| ObjectRef::new(&o.name).within(ns.as_deref().unwrap_or_default()))
        .collect();
    let schedule = job.schedule_label();
    let ended =
        job.meta().deletion_timestamp.is_some() || job.status.as_ref().is_some_and(|s| s.ended());
    if let (true, Some(schedule)) = (ended, schedule) {
        refs.extend(
            by_schedule
                .members(ns.as_deref().unwrap_or_default(), schedule, backfills)
                .iter()
                .filter(|b| waiting_elsewhere(b))
                .map(|b| ObjectRef::from_obj(b.as_ref())),
        );
    }
    refs
}

/// Whether the Backfill waits for another Job of its Schedule to end: one
/// that runs its next session, or any, for a slot of `maxActiveJobs`.
fn waiting_elsewhere(backfill: &Backfill) -> bool {
    let Some(status) = &backfill.status else {
        return false;
    };
    let held_elsewhere = status.phase == Some(BackfillPhase::Waiting)
        && find_condition(&status.conditions, condition::READY)
            .is_some_and(|c| Reason::SessionRunElsewhere == c.reason.as_str());
    held_elsewhere || waits_for_capacity(status)
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
/// the sessions they run now, the outcomes of those that ended but still
/// hold their outcome finalizer (not recorded yet), and of those recorded
/// a moment ago in a Schedule status the cache does not show yet.
fn add_jobs_of_others(index: &mut LedgerIndex, others: Vec<ObservedJob>) {
    for job in others {
        let Some(at) = job.session else { continue };
        match (job.running(), job.has_finalizer, job.outcome()) {
            (true, _, _) => index.add_running([at]),
            (false, true, Some(outcome)) => index.add_unrecorded(at, outcome),
            (false, false, Some(outcome)) => index.add_recorded(at, outcome),
            (false, _, None) => {}
        }
    }
}

/// How long the Schedule's recent finished Jobs took, in real seconds:
/// from their creation, so the time to start counts too (a Job takes a
/// slot of `maxActiveJobs` from then).
fn recent_durations(jobs: &[Arc<CachedJob>]) -> Vec<i64> {
    let mut finished: Vec<(i64, i64)> = jobs
        .iter()
        .filter_map(|j| {
            let s = j.status.as_ref()?;
            let created = j.meta().creation_timestamp.as_ref();
            let start = seconds(created.or(s.start_time.as_ref())?);
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
