//! The sessions of a Schedule in a range, each with its latest attempt in
//! the workflow seed's vocabulary (`queued`, `running`, `canceling`,
//! `success`, `error`, `killed`, and `missing` for none), joined from
//! what the cluster holds: the live Jobs of every owner (the Schedule's
//! scheduled runs, its Backfills and their rerun children), the session
//! ledger (outcomes that outlive their Jobs), and the frozen plans of
//! started Backfills (sessions not launched yet).
//!
//! Pure: the plugin reads the objects, this decides what each session
//! shows, so every rule is unit-tested without a cluster.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use uuid::Uuid;

use super::backfill::frozen_plan;
use super::bitmap::Bitmap;
use super::job::{OwnerKind, session_uuid};
use super::ledger::{EARLIER_ATTEMPTS, Ledger, LedgerIndex};
use super::observed::{JobState, ObservedJob};
use super::zoned_cron::{ZonedCron, ZonedCronError, rfc3339_utc, seconds};
use crate::api::{Backfill, BackfillPhase, Schedule, SessionLedger};

/// The most sessions one listing walks: a year of hourly sessions fits
/// many times over, a year of minutely ones does not.
pub const MAX_SESSIONS: u64 = 100_000;

/// A session's latest attempt, in the workflow seed's words (and
/// `missing`, which the seed has no word for: no attempt at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttemptStatus {
    /// Planned by a started Backfill, not launched yet.
    Queued,
    Running,
    /// Its Job is being deleted, or its Backfill was cancelled.
    Canceling,
    Success,
    /// Failed.
    Error,
    /// Deleted before it finished.
    Killed,
    /// No attempt: never run, and no Backfill plans it.
    Missing,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Queued => "queued",
            AttemptStatus::Running => "running",
            AttemptStatus::Canceling => "canceling",
            AttemptStatus::Success => "success",
            AttemptStatus::Error => "error",
            AttemptStatus::Killed => "killed",
            AttemptStatus::Missing => "missing",
        }
    }

    /// The attempt finished (the seed's `done`).
    pub fn done(self) -> bool {
        matches!(
            self,
            AttemptStatus::Success | AttemptStatus::Error | AttemptStatus::Killed
        )
    }
}

/// Who ran (or will run) an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Schedule(String),
    Backfill(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Schedule(name) => write!(f, "Schedule/{name}"),
            Owner::Backfill(name) => write!(f, "Backfill/{name}"),
        }
    }
}

/// Where a session's answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Job that exists now.
    Job,
    /// The session ledger: the Job is gone.
    Ledger,
    /// A started Backfill's plan: no Job yet.
    Plan,
}

/// One attempt at a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt name: the Schedule's name for scheduled runs, a
    /// Backfill's `attemptName` (default its name) for its runs.
    pub name: String,
    /// `None` when the ledger names an attempt no Schedule or Backfill
    /// here has (a deleted Backfill, or `earlier-attempts`).
    pub owner: Option<Owner>,
    pub source: Source,
    /// The Job, while it exists.
    pub job: Option<String>,
    pub job_uid: Option<String>,
    /// The session's index in its Backfill's plan.
    pub plan_index: Option<u64>,
    pub created: Option<i64>,
    pub finished: Option<i64>,
    /// Its Backfill has `cancel` set, or its Job is being deleted.
    pub cancel_requested: bool,
}

impl Attempt {
    /// A retry or backfill attempt: any but the Schedule's own runs (the
    /// seed's `retryAttemptName` is set for these only).
    pub fn is_retry(&self, schedule: &str) -> bool {
        match &self.owner {
            Some(Owner::Schedule(_)) => false,
            Some(Owner::Backfill(_)) => true,
            None => self.name != schedule,
        }
    }
}

/// One session of the Schedule and its latest attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub at: i64,
    pub uuid: Uuid,
    pub status: AttemptStatus,
    /// `None` when `missing`.
    pub attempt: Option<Attempt>,
}

impl SessionRow {
    /// The seed's attempt `id`: the Job's UID while the Job exists, else
    /// a UUID derived from the session's and the attempt's names (the
    /// same on every listing); `None` for a session without an attempt.
    pub fn attempt_id(&self) -> Option<String> {
        let attempt = self.attempt.as_ref()?;
        Some(match &attempt.job_uid {
            Some(uid) => uid.clone(),
            None => {
                Uuid::new_v5(&self.uuid, format!("attempt/{}", attempt.name).as_bytes()).to_string()
            }
        })
    }
}

/// What the listing reads: one Schedule and what the cluster holds of it.
#[derive(Clone, Copy, Debug)]
pub struct SessionsInput<'a> {
    pub schedule: &'a Schedule,
    /// Its SessionLedgers (others are ignored).
    pub ledgers: &'a [SessionLedger],
    /// Jobs labelled as its own, whoever made them.
    pub jobs: &'a [Job],
    /// Backfills of it (`scheduleRef.name`), rerun children included.
    pub backfills: &'a [Backfill],
    /// `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub now: i64,
}

/// The listing: one row per session in the range, ascending, and notes
/// on what was read but could not be used.
#[derive(Clone, Debug)]
pub struct SessionList {
    pub clock: ZonedCron,
    pub schedule: String,
    pub schedule_uid: String,
    pub rows: Vec<SessionRow>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionsError {
    #[error("Schedule {0}: {1}")]
    Clock(String, ZonedCronError),
    #[error("--from {from} must be earlier than --to {to}")]
    Range { from: String, to: String },
    #[error(
        "more than {limit} sessions of {expr:?} from {from} to {to}; narrow the range, e.g. --to {split}, and list the rest from there"
    )]
    TooMany {
        limit: u64,
        expr: String,
        from: String,
        to: String,
        split: String,
    },
}

/// Every session of the Schedule's cron in `[from, to)` with its latest
/// attempt. A running (or canceling) Job is the latest attempt; else a
/// started Backfill's plan that has the session still to launch (its
/// attempt comes after any that ended); else the newest Job's outcome,
/// unless the ledger shows a later attempt decided the session since
/// (that attempt's Job is gone); else the ledger's outcome; else missing.
pub fn list_sessions(input: SessionsInput<'_>) -> Result<SessionList, SessionsError> {
    let schedule = input.schedule;
    let name = schedule.name_any();
    let uid = schedule.uid().unwrap_or_default();
    let clock = ZonedCron::new(&schedule.spec.schedule, schedule.spec.time_zone.as_deref())
        .map_err(|e| SessionsError::Clock(name.clone(), e))?;
    let (from, to) = (input.from, input.to);
    if from >= to {
        return Err(SessionsError::Range {
            from: rfc3339_utc(from),
            to: rfc3339_utc(to),
        });
    }
    let sessions: Vec<i64> = clock
        .sessions_from(from)
        .take_while(|s| s.at < to)
        .take(MAX_SESSIONS as usize + 1)
        .map(|s| s.at)
        .collect();
    if sessions.len() as u64 > MAX_SESSIONS {
        return Err(SessionsError::TooMany {
            limit: MAX_SESSIONS,
            expr: clock.expr().to_string(),
            from: rfc3339_utc(from),
            to: rfc3339_utc(to),
            split: rfc3339_utc(sessions[MAX_SESSIONS as usize]),
        });
    }

    let mut notes = Vec::new();
    let backfills: Vec<&Backfill> = input
        .backfills
        .iter()
        .filter(|b| b.spec.schedule_ref.name == name)
        .collect();
    let jobs = latest_jobs(&input, &name, &uid, &backfills, &mut notes);
    let mut ledger = read_ledgers(input.ledgers, &name, from, to, &mut notes);
    if let Some(status) = &schedule.status {
        ledger.add_unfiled(&name, &status.unfiled_outcomes);
    }
    let queued = queued_sessions(&backfills, from, to, &mut notes);

    let mut rows = Vec::with_capacity(sessions.len());
    let mut not_due = 0;
    for at in sessions {
        let decided = ledger.decided_by(at);
        let from_ledger = || {
            decided.map(|(attempt, outcome)| {
                let status = match outcome {
                    super::observed::Outcome::Succeeded => AttemptStatus::Success,
                    super::observed::Outcome::Failed => AttemptStatus::Error,
                    super::observed::Outcome::Killed => AttemptStatus::Killed,
                };
                (
                    status,
                    Attempt {
                        name: attempt.to_string(),
                        owner: owner_of_attempt(attempt, &name, &backfills),
                        source: Source::Ledger,
                        job: None,
                        job_uid: None,
                        plan_index: None,
                        created: None,
                        finished: None,
                        cancel_requested: false,
                    },
                )
            })
        };
        let chosen = match (jobs.get(&at), queued.get(&at)) {
            (Some(j), _) if !j.status.done() => Some((j.status, j.attempt.clone())),
            (_, Some(q)) => Some((AttemptStatus::Queued, q.clone())),
            (Some(j), None) => {
                // Recorded (the finalizer is off) and the ledger names
                // another attempt since: that one ended later, its Job
                // is gone.
                let superseded = !j.unrecorded
                    && decided.is_some_and(|(attempt, _)| {
                        attempt != j.attempt.name && attempt != EARLIER_ATTEMPTS
                    });
                if superseded {
                    from_ledger()
                } else {
                    Some((j.status, j.attempt.clone()))
                }
            }
            (None, None) => from_ledger(),
        };
        let uuid = session_uuid(&uid, at);
        rows.push(match chosen {
            Some((status, attempt)) => SessionRow {
                at,
                uuid,
                status,
                attempt: Some(attempt),
            },
            None => {
                if at >= input.now {
                    not_due += 1;
                }
                SessionRow {
                    at,
                    uuid,
                    status: AttemptStatus::Missing,
                    attempt: None,
                }
            }
        });
    }
    if not_due > 0 {
        notes.push(format!(
            "{not_due} missing session(s) are at or after now ({}): not due yet",
            rfc3339_utc(input.now)
        ));
    }
    Ok(SessionList {
        clock,
        schedule: name,
        schedule_uid: uid,
        rows,
        notes,
    })
}

/// A live Job's attempt and status.
struct LiveJob {
    status: AttemptStatus,
    attempt: Attempt,
    /// It still holds the outcome finalizer: the ledger may not have its
    /// outcome yet.
    unrecorded: bool,
    created: i64,
}

/// The newest Job of each session (by creation, then name), among the
/// Jobs made by the Schedule or one of its Backfills: owners are matched
/// by UID, and the session is the one the Job's name was made from.
fn latest_jobs(
    input: &SessionsInput<'_>,
    schedule: &str,
    schedule_uid: &str,
    backfills: &[&Backfill],
    notes: &mut Vec<String>,
) -> BTreeMap<i64, LiveJob> {
    let by_uid: HashMap<String, &Backfill> = backfills
        .iter()
        .filter_map(|b| Some((b.uid()?, *b)))
        .collect();
    let mut latest: BTreeMap<i64, LiveJob> = BTreeMap::new();
    let mut foreign = 0;
    for job in input.jobs {
        let owner = job
            .owner_references()
            .iter()
            .find_map(|o| match o.kind.as_str() {
                "Schedule" if o.uid == schedule_uid && !schedule_uid.is_empty() => {
                    Some((OwnerKind::Schedule, schedule.to_string(), None))
                }
                "Backfill" => by_uid
                    .get(&o.uid)
                    .map(|b| (OwnerKind::Backfill, b.name_any(), Some(*b))),
                _ => None,
            });
        let Some((kind, owner_name, backfill)) = owner else {
            foreign += 1;
            continue;
        };
        let observed = ObservedJob::of(job, kind, &owner_name);
        let Some(at) = observed.session else {
            foreign += 1;
            continue;
        };
        if at < input.from || at >= input.to {
            continue;
        }
        let cancelled = backfill.is_some_and(|b| b.spec.cancel == Some(true));
        let status = match observed.state {
            JobState::Active if observed.deleting || cancelled => AttemptStatus::Canceling,
            JobState::Active => AttemptStatus::Running,
            JobState::Succeeded => AttemptStatus::Success,
            JobState::Failed => AttemptStatus::Error,
        };
        let created = job.metadata.creation_timestamp.as_ref().map(seconds);
        let attempt = Attempt {
            name: match backfill {
                Some(b) => attempt_name(b),
                None => schedule.to_string(),
            },
            owner: Some(match kind {
                OwnerKind::Schedule => Owner::Schedule(owner_name),
                OwnerKind::Backfill => Owner::Backfill(owner_name),
            }),
            source: Source::Job,
            job: Some(observed.name.clone()),
            job_uid: Some(observed.uid.clone()).filter(|u| !u.is_empty()),
            plan_index: observed.plan_index,
            created,
            finished: finished_at(job).filter(|_| status.done()),
            cancel_requested: status == AttemptStatus::Canceling,
        };
        let live = LiveJob {
            status,
            attempt,
            unrecorded: observed.has_finalizer,
            created: created.unwrap_or(i64::MIN),
        };
        let newer = |old: &LiveJob| {
            (live.created, live.attempt.job.as_deref()) > (old.created, old.attempt.job.as_deref())
        };
        match latest.get(&at) {
            Some(old) if !newer(old) => {}
            _ => {
                latest.insert(at, live);
            }
        }
    }
    if foreign > 0 {
        notes.push(format!(
            "{foreign} Job(s) labelled as {schedule}'s were not made by it or one of its Backfills (or were renamed): ignored"
        ));
    }
    latest
}

/// When a Job finished: its completion time, else when its Complete or
/// Failed condition became true.
fn finished_at(job: &Job) -> Option<i64> {
    let status = job.status.as_ref()?;
    if let Some(t) = &status.completion_time {
        return Some(seconds(t));
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(seconds)
}

fn attempt_name(backfill: &Backfill) -> String {
    backfill
        .spec
        .attempt_name
        .clone()
        .unwrap_or_else(|| backfill.name_any())
}

/// Who ran the attempt the ledger names: the Schedule, else the newest
/// Backfill with that attempt name.
fn owner_of_attempt(attempt: &str, schedule: &str, backfills: &[&Backfill]) -> Option<Owner> {
    if attempt == schedule {
        return Some(Owner::Schedule(schedule.to_string()));
    }
    backfills
        .iter()
        .filter(|b| attempt_name(b) == attempt)
        .max_by_key(|b| b.metadata.creation_timestamp.as_ref().map(seconds))
        .map(|b| Owner::Backfill(b.name_any()))
}

/// The Schedule's ledger months touching `[from, to)`. A month that
/// cannot be read is left out with a note: its sessions read as without
/// an outcome.
fn read_ledgers(
    ledgers: &[SessionLedger],
    schedule: &str,
    from: i64,
    to: i64,
    notes: &mut Vec<String>,
) -> LedgerIndex {
    let mut months = LedgerIndex::default();
    for object in ledgers {
        if object.spec.schedule_ref.name != schedule {
            continue;
        }
        let (lo, hi) = (seconds(&object.spec.from), seconds(&object.spec.to));
        if hi <= from || lo >= to {
            continue;
        }
        match Ledger::from_spec(&object.spec) {
            Ok(l) => months.insert(l),
            Err(e) => notes.push(format!(
                "SessionLedger {} cannot be read ({e}): its sessions show no recorded outcome",
                object.name_any()
            )),
        }
    }
    months
}

/// The sessions in `[from, to)` that a started Backfill still has to
/// launch: in its frozen plan, at or past `launched`, and not settled.
/// A cancelled or finished Backfill launches nothing more. When two
/// plan the same session, the newer Backfill's attempt is the latest.
fn queued_sessions(
    backfills: &[&Backfill],
    from: i64,
    to: i64,
    notes: &mut Vec<String>,
) -> BTreeMap<i64, Attempt> {
    let mut ordered: Vec<&&Backfill> = backfills.iter().collect();
    ordered.sort_by_key(|b| {
        (
            b.metadata.creation_timestamp.as_ref().map(seconds),
            b.name_any(),
        )
    });
    let mut queued = BTreeMap::new();
    for backfill in ordered {
        let Some(status) = &backfill.status else {
            continue;
        };
        let Some(run) = &status.run else { continue };
        let finished = matches!(
            status.phase,
            Some(BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled)
        );
        if finished
            || backfill.spec.cancel == Some(true)
            || backfill.spec.dry_run == Some(true)
            || status.started_at.is_none()
        {
            continue;
        }
        let plan = match frozen_plan(&backfill.spec, run) {
            Ok(plan) => plan,
            Err(e) => {
                notes.push(format!(
                    "Backfill {}: its plan cannot be read ({e}): its queued sessions are not shown",
                    backfill.name_any()
                ));
                continue;
            }
        };
        let done = Bitmap::decode(&run.done).unwrap_or_default();
        let launched = run.launched.max(0) as usize;
        for (index, session) in plan.iter().enumerate().skip(launched) {
            if session.at < from || session.at >= to || done.contains(index as u64) {
                continue;
            }
            queued.insert(
                session.at,
                Attempt {
                    name: attempt_name(backfill),
                    owner: Some(Owner::Backfill(backfill.name_any())),
                    source: Source::Plan,
                    job: None,
                    job_uid: None,
                    plan_index: Some(index as u64),
                    created: None,
                    finished: None,
                    cancel_requested: false,
                },
            );
        }
    }
    queued
}

#[cfg(test)]
mod tests;
