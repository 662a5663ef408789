//! The Schedule controller: observe the Schedule and its Jobs, `decide`,
//! act.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::apply::apply;
use super::{BEHIND_OWN_WRITE, Context, missing};
use crate::Result;
use crate::api::Schedule;
use crate::core::decision::Decision;
use crate::core::job::OwnerKind;
use crate::core::observed::ObservedJob;
use crate::core::schedule::{RECENT_HORIZON, ScheduleView, decide};
use crate::core::zoned_cron::seconds;

#[instrument(skip_all, fields(schedule = %schedule.name_any(), namespace = schedule.namespace().unwrap_or_default()))]
pub async fn reconcile(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    let ns = schedule
        .namespace()
        .ok_or_else(|| missing::<Schedule>(&schedule, "namespace"))?;
    let uid = schedule.uid().unwrap_or_default();
    if ctx.behind_own_write(schedule.as_ref()) {
        return Ok(Action::requeue(BEHIND_OWN_WRITE));
    }
    ctx.synced().await;
    let jobs = ctx.jobs_of(&ns, &uid);

    let name = schedule.name_any();
    let mut observed: Vec<_> = jobs
        .iter()
        .map(|j| j.observe(OwnerKind::Schedule, &name))
        .collect();
    let status = schedule.status.clone().unwrap_or_default();
    if schedule.meta().deletion_timestamp.is_some() {
        let decision = Decision::release_all(status, &observed);
        return apply(&ctx, schedule.as_ref(), None, decision).await;
    }
    // A Job this process launched a moment ago, which the status written
    // since lists as active, runs even while the Job cache does not show
    // it yet: else the status would say it stopped, then started again.
    let active = |job: &str| status.active.iter().any(|a| a.name.as_deref() == Some(job));
    let seen = |job: &str| observed.iter().any(|o| o.name == job);
    let launched: Vec<ObservedJob> = ctx
        .launches
        .own_unseen(&ns, &name, &uid, seen)
        .into_iter()
        .filter(|(_, job)| active(job))
        .map(|(session, job)| ObservedJob::launched(job, session))
        .collect();
    observed.extend(launched);
    let created = schedule.meta().creation_timestamp.as_ref().map(seconds);
    // creationTimestamp has whole seconds: take the end of its second,
    // which on a fast test clock spans many of the operator's seconds.
    let created_at = created
        .map(|t| ctx.clock.at_real(t + 1) - 1)
        .unwrap_or_else(|| ctx.clock.now());
    let created_from = created.map_or(created_at, |t| ctx.clock.at_real(t));
    let now = ctx.clock.now();
    // One read of the ledger cache serves the status and the retention.
    let ledgers = ctx.ledgers_of(&ns, &name);
    let mut ledger = ctx.ledger_index(&ledgers, Some((now - RECENT_HORIZON, now + 1)));
    ledger.add_unfiled(&name, &status.unfiled_outcomes);
    // Sessions a Backfill's Job runs now, or was launched for a moment
    // ago, are not started twice: the Schedule and its Backfills launch
    // one at a time.
    let launch_lock = ctx.launches.lock_for(&ns, &name);
    let launching = launch_lock.lock().await;
    let others = ctx.jobs_of_others(&ns, &name, &uid);
    let run_elsewhere = ctx.launches.run_elsewhere(&ns, &name, &uid, &others);
    let decision = decide(&ScheduleView {
        name: &name,
        namespace: &ns,
        uid: &uid,
        generation: schedule.meta().generation,
        created_at,
        created_from,
        spec: &schedule.spec,
        status: &status,
        jobs: &observed,
        ledger: &ledger,
        run_elsewhere: &run_elsewhere,
        ledger_batch: ctx.ledger_batch,
        now,
    });

    for new in &decision.create {
        if let Some(job) = new.job.metadata.name.as_deref() {
            ctx.launches.claim(&ns, &name, &uid, new.session.at, job);
        }
    }
    // Claimed: the others see these launches from now on, so the lock is
    // not held across the creates (a large Backfill's would hold the
    // Schedule's next run back for as long as they take).
    drop(launching);
    let action = apply(&ctx, schedule.as_ref(), Some(&schedule), decision).await?;
    // Retention, apart from the outcomes: old months go once the new
    // outcomes are in.
    ctx.prune_ledgers(&ledgers, now).await?;
    Ok(action)
}
