//! The frozen run of a started Backfill: its run id, its plan as it was
//! at the start, and its failed sessions. Everything after the start reads
//! the plan from here, never from the Schedule as it is now.

use uuid::Uuid;

use crate::api::{BackfillSpec, RunState, ScheduleSpec};
use crate::core::bitmap::Bitmap;
use crate::core::plan::{Plan, PlanError, Selection};
use crate::core::zoned_cron::{ZonedCron, seconds};

/// The run id: a UUID derived from the Backfill's UID, so a start retried
/// after a crash assigns the same one.
pub fn run_id(uid: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("backfill.dev/run/{uid}").as_bytes(),
    )
    .to_string()
}

/// The frozen plan of a started Backfill: its Schedule's cron and zone as
/// they were, its own selection, filter and order, between the frozen
/// first and last sessions.
pub fn frozen_plan(spec: &BackfillSpec, run: &RunState) -> Result<Plan, PlanError> {
    let clock = ZonedCron::new(&run.schedule, Some(&run.time_zone))?;
    let (from, to) = (run.from.as_ref().map(seconds), run.to.as_ref().map(seconds));
    let schedule = ScheduleSpec {
        schedule: run.schedule.clone(),
        time_zone: Some(run.time_zone.clone()),
        ..ScheduleSpec::default()
    };
    let plan = match (from, to, spec.count) {
        // `reprocess` left sessions out: the set of the ones that run.
        (Some(from), Some(to), _) if !run.selected.is_empty() => Plan::new(
            clock,
            Selection::Set {
                clock: Box::new(ZonedCron::new(&run.schedule, Some(&run.time_zone))?),
                from,
                to,
                bits: Bitmap::decode(&run.selected)?,
            },
        )
        .with_order(spec.order.unwrap_or_default().into()),
        // Counted plans become the range they covered at the start.
        (Some(from), Some(to), Some(_)) => Plan::new(clock, Selection::Range { from, to })
            .with_filter(
                spec.filter
                    .as_ref()
                    .map(crate::core::plan::Filter::from_spec)
                    .unwrap_or_default(),
            )
            .with_order(spec.order.unwrap_or_default().into()),
        _ => Plan::for_backfill(&schedule, spec, None)?,
    };
    Ok(match (from, to) {
        (Some(from), Some(to)) => plan.not_before(Some(from)).before(Some(to)),
        // An empty plan stays empty.
        _ => plan.before(Some(i64::MIN)),
    })
}

/// The sessions of a started run whose Job failed or was killed,
/// ascending.
pub fn failed_sessions(spec: &BackfillSpec, run: &RunState) -> Result<Vec<i64>, PlanError> {
    let mut bad = Bitmap::decode(&run.failed)?;
    bad.union_with(&Bitmap::decode(&run.killed)?);
    if bad.is_empty() {
        return Ok(Vec::new());
    }
    let plan = frozen_plan(spec, run)?;
    let mut sessions: Vec<i64> = plan
        .iter()
        .enumerate()
        .filter(|(i, _)| bad.contains(*i as u64))
        .map(|(_, s)| s.at)
        .collect();
    sessions.sort_unstable();
    Ok(sessions)
}
