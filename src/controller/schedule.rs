//! The Schedule controller: observe the Schedule and its Jobs, `decide`,
//! act.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument};

use super::backfill::released_outcomes;
use super::{Context, create_job, failpoint, observe, publish, write_status};
use crate::api::Schedule;
use crate::core::job::{Attempt, OwnerKind};
use crate::core::observed::Note;
use crate::core::schedule::{RECENT_HORIZON, ScheduleView, decide};
use crate::core::{Clock, plan::seconds};
use crate::metrics::ControllerLabels;
use crate::{Error, Result};

#[instrument(skip_all, fields(schedule = %schedule.name_any(), namespace = schedule.namespace().unwrap_or_default()))]
pub async fn reconcile(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    let ns = schedule
        .namespace()
        .ok_or_else(|| Error::Invalid("a Schedule without a namespace".into()))?;
    let uid = schedule.uid().unwrap_or_default();
    ctx.synced().await;
    let jobs = ctx.jobs_of(&uid);

    if schedule.meta().deletion_timestamp.is_some() {
        // Going away: its Jobs go with it, their outcomes with nobody to
        // count them.
        for job in jobs.iter().filter(|j| super::has_finalizer(j)) {
            ctx.release(&ns, &job.name_any()).await?;
        }
        return Ok(Action::await_change());
    }

    let observed: Vec<_> = jobs.iter().map(|j| observe(j)).collect();
    let status = schedule.status.clone().unwrap_or_default();
    let created = schedule.meta().creation_timestamp.as_ref().map(seconds);
    // creationTimestamp has whole seconds: take the end of its second,
    // which on a fast test clock spans many of the operator's seconds.
    let created_at = created
        .map(|t| ctx.clock.at_real(t + 1) - 1)
        .unwrap_or_else(|| ctx.clock.now());
    let created_from = created.map_or(created_at, |t| ctx.clock.at_real(t));
    let name = schedule.name_any();
    let now = ctx.clock.now();
    // One read of the ledger cache serves the status and the retention.
    let ledgers = ctx.ledgers_of(&ns, &name);
    let ledger = ctx.ledger_index(&ledgers, Some((now - RECENT_HORIZON, now + 1)));
    let decision = decide(&ScheduleView {
        name: &name,
        namespace: &ns,
        generation: schedule.meta().generation,
        created_at,
        created_from,
        spec: &schedule.spec,
        status: &status,
        jobs: &observed,
        ledger: &ledger,
        now,
    });

    // Replace deletes the running Job before its successor starts, as
    // CronJob does.
    for job in &decision.replace {
        ctx.delete(&ns, job).await?;
    }
    // Jobs next: a crash after this finds them by name and starts none
    // twice; the status that moves the watermark comes after.
    if !decision.create.is_empty() {
        let clock = Clock::new(&schedule.spec.schedule, schedule.spec.time_zone.as_deref())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let owner = schedule
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Invalid("a Schedule without a uid".into()))?;
        let mut created = Vec::new();
        for session in &decision.create {
            let attempt = Attempt {
                kind: OwnerKind::Schedule,
                owner: owner.clone(),
                namespace: &ns,
                schedule_name: &name,
                schedule_uid: &uid,
                backfill_name: None,
                attempt_name: &name,
                clock: &clock,
                session: *session,
            };
            let job = attempt.build_job(&schedule.spec.job_template);
            if create_job(&ctx.client, &ns, &job).await? {
                ctx.metrics
                    .jobs_created
                    .get_or_create(&ControllerLabels {
                        controller: "schedule",
                    })
                    .inc();
                created.push(Note {
                    warning: false,
                    reason: "JobCreated",
                    message: format!(
                        "created Job {} for the session at {}",
                        attempt.job_name(),
                        clock.zone().rfc3339(session.at)
                    ),
                });
            }
        }
        publish(&ctx, schedule.as_ref(), &created).await;
    }

    if schedule.status.as_ref() != Some(&decision.status) {
        write_status(&ctx, schedule.as_ref(), &decision.status).await?;
    }
    if !decision.release.is_empty() {
        failpoint("before-ledger-write");
        let outcomes = released_outcomes(&observed, &decision.release);
        ctx.record_outcomes(&schedule, &name, &format!("Schedule/{name}"), &outcomes)
            .await?;
    }
    ctx.prune_ledgers(&ledgers, now).await?;
    // The outcomes are in the status and the ledger: the Jobs may go.
    for job in &decision.release {
        ctx.release(&ns, job).await?;
    }
    for job in &decision.prune {
        ctx.delete(&ns, job).await?;
    }
    publish(&ctx, schedule.as_ref(), &decision.notes).await;

    debug!(created = decision.create.len(), wake_at = ?decision.wake_at, "reconciled");
    Ok(match decision.wake_at {
        Some(at) => Action::requeue(ctx.clock.until(at)),
        None => Action::await_change(),
    })
}
