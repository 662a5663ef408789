//! The Backfill's `decide` step: from the Backfill, its Schedule, the Jobs
//! observed and `now`, the Jobs to create and delete, the finalizers to
//! release, the status to write and when to look again.
//!
//! Progress is kept in constant space per session: the plan is frozen at
//! the start (the Schedule's cron and zone, the first and last session),
//! Jobs are launched in plan order so "launched" is one number, and the
//! outcomes are bitmaps over plan indexes. A Job carries its plan index,
//! so its outcome is counted exactly once however often it is seen.

pub mod approval;
pub mod budget;
mod progress;
pub mod rerun;
mod run;
mod start;
mod status;
mod view;

pub use run::{failed_sessions, frozen_plan, run_id};
pub use start::estimate_completion;
pub use view::BackfillView;

use crate::api::{Backfill, BackfillStatus};
use crate::core::decision::{Decision, LedgerRecord, NewJob, Status, released_outcomes};
use crate::core::job::{Attempt, OwnerKind, controller_reference};
use crate::core::observed::{Kstatus, Note, find_condition};
use crate::core::reason::Reason;
use crate::core::zoned_cron::ZonedCron;
use progress::advance;
use rerun::RerunChild;
use start::plan_or_start;
use status::{clear_stall, finish_status, in_grace, stalled, waiting_for_schedule};
use view::Pass;

/// A condition: the Schedule's cron or zone changed under a started run.
pub use crate::api::condition::{JOB_NAME_TAKEN, SCHEDULE_CHANGED};
/// Sessions shown at each end of a preview, and failures listed by time.
pub const PREVIEW: usize = 5;
pub const FAILURE_PREVIEW: usize = 10;
/// The completion estimate walks at most this many batches.
const ESTIMATE_STEPS: u64 = 200_000;

/// How long a new Backfill waits for its Schedule before it is Stalled:
/// manifests applied together (`kubectl apply -f dir/`, a GitOps sync)
/// may create the Backfill first, and a Stalled condition, even for a
/// moment, fails a Flux Kustomization that waits for health.
pub const SCHEDULE_GRACE: i64 = 30;

/// The decide step of the Backfill controller.
pub fn decide(view: &BackfillView<'_>) -> Decision<BackfillStatus> {
    complete(view, pass(view))
}

fn pass(view: &BackfillView<'_>) -> Pass {
    let mut d = Pass {
        status: view.status.clone(),
        ..Pass::default()
    };
    d.status.observed_generation = view.generation;
    let ks = Kstatus {
        before: &view.status.conditions,
        generation: view.generation,
        now: view.now,
    };
    let before = view.status.phase.unwrap_or_default();

    let outcome = if view.status.run.is_none() {
        plan_or_start(view, &mut d)
    } else {
        Ok(())
    };
    match (outcome, in_grace(view)) {
        (Err(stall), Some(until)) if stall.reason == Reason::ScheduleNotFound => {
            waiting_for_schedule(&mut d, &ks, until, &stall);
            return d;
        }
        (Err(stall), _) => {
            stalled(view, &mut d, &ks, stall);
            return d;
        }
        (Ok(()), _) => clear_stall(&mut d, &ks),
    }
    if let (Some(run), Some(schedule)) = (&view.status.run, view.schedule) {
        let now_zone = schedule.time_zone.as_deref().unwrap_or("UTC");
        let changed = run.schedule != schedule.schedule.trim() || run.time_zone != now_zone;
        let was = find_condition(&view.status.conditions, SCHEDULE_CHANGED)
            .is_some_and(|c| c.status == "True");
        let message = if changed {
            format!(
                "the Schedule is now {:?} in {now_zone}; this backfill keeps the plan it started with ({:?} in {})",
                schedule.schedule, run.schedule, run.time_zone
            )
        } else {
            String::new()
        };
        if changed && !was {
            d.notes.push(Note {
                warning: true,
                reason: Reason::ScheduleChanged,
                message: message.clone(),
            });
        }
        ks.set(
            &mut d.status.conditions,
            SCHEDULE_CHANGED,
            changed,
            if changed {
                Reason::ScheduleChanged
            } else {
                Reason::Unchanged
            },
            &message,
        );
    }
    if d.status.run.is_some()
        && let Err(stall) = advance(view, &mut d)
    {
        stalled(view, &mut d, &ks, stall);
        return d;
    }
    finish_status(&mut d, &ks, before);
    rerun::step(view, &mut d, &ks);
    d
}

/// The pass as a decision: its Jobs built from the Schedule's template
/// with the frozen plan's cron and zone, and its outcomes as the
/// ledger's record.
fn complete(view: &BackfillView<'_>, pass: Pass) -> Decision<BackfillStatus> {
    let attempt_name = view.spec.attempt_name.as_deref().unwrap_or(view.name);
    let mut notes = pass.notes;
    let mut create = Vec::with_capacity(pass.create.len());
    // A launch happens only with the Schedule there and a run whose cron
    // and zone were valid at its start.
    if let (Some(schedule), Some(run)) = (view.schedule, &pass.status.run)
        && let Ok(clock) = ZonedCron::new(&run.schedule, Some(&run.time_zone))
    {
        let owner = controller_reference::<Backfill>(view.name, view.uid);
        for &(index, session) in &pass.create {
            let attempt = Attempt {
                kind: OwnerKind::Backfill,
                owner: owner.clone(),
                namespace: view.namespace.unwrap_or_default(),
                schedule_name: &view.spec.schedule_ref.name,
                schedule_uid: view.schedule_uid,
                backfill_name: Some(view.name),
                attempt_name,
                clock: &clock,
                session,
                plan_index: Some(index),
            };
            create.push(NewJob {
                session,
                plan_index: Some(index),
                job: attempt.build_job(&schedule.job_template),
                created: None,
            });
        }
    }
    if !create.is_empty() {
        notes.push(Note {
            warning: false,
            reason: Reason::JobsCreated,
            message: format!("launched {} session(s)", create.len()),
        });
    }
    Decision {
        delete: pass.delete,
        create,
        rerun: pass.rerun,
        ledger: LedgerRecord {
            attempt: attempt_name.to_string(),
            owner: format!("Backfill/{}", view.name),
            outcomes: released_outcomes(view.jobs, &pass.release),
            unfiled: Vec::new(),
        },
        status: pass.status,
        release: pass.release,
        prune: Vec::new(),
        notes,
        wake_at: pass.wake_at,
    }
}

impl Status for BackfillStatus {
    fn child_created(&mut self, child: &RerunChild, child_uid: &str) {
        child.record_in(self, child_uid);
    }

    fn job_name_taken(&mut self, job: &NewJob, now: i64) {
        let Some(index) = job.plan_index else {
            return;
        };
        progress::count_not_launched(self, index, job.session.at);
        let name = job.job.metadata.name.as_deref().unwrap_or_default();
        let before = self.conditions.clone();
        let ks = Kstatus {
            before: &before,
            generation: self.observed_generation,
            now,
        };
        ks.set(
            &mut self.conditions,
            JOB_NAME_TAKEN,
            true,
            Reason::JobNameTaken,
            &format!(
                "the Job name {name} of the session at {} is taken by a Job this backfill does not own: the session is counted as failed; delete that Job, then rerun the failed sessions",
                crate::core::zoned_cron::rfc3339_utc(job.session.at)
            ),
        );
    }
}

#[cfg(test)]
mod tests;
