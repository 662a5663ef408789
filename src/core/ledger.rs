//! The session ledger: per Schedule and per month (UTC), the latest
//! outcome of each session and the attempt that decided it, as compact
//! sets of minute slots. Cron sessions fall on whole minutes, so a slot is
//! a session whatever the cron expression was when it ran: a changed
//! Schedule does not scramble its history.
//!
//! A set is stored as runs (gap and length varints) or as a bitmap,
//! whichever is shorter: a month of minutely sessions that all succeeded
//! is a few bytes, the worst case (every other minute) 7.4 KiB.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::bitmap::{Bitmap, BitmapError};
use super::calendar::{civil_from_days, days_from_civil};
use super::job::fit_name;
use super::observed::Outcome;
use super::zoned_cron::seconds;
use super::zoned_cron::{ZonedCron, rfc3339_utc, time};
use crate::api::{LedgerAttempt, ScheduleRef, SessionLedgerSpec, UnfiledOutcome};

/// Seconds per slot: cron's resolution.
pub const SLOT_SECONDS: i64 = 60;
/// Attempts kept apart in one ledger object; older ones are merged.
pub const MAX_ATTEMPTS: usize = 64;
/// The attempt the oldest are merged into past [`MAX_ATTEMPTS`].
pub const EARLIER_ATTEMPTS: &str = "earlier-attempts";
/// Object names fit in this.
const MAX_NAME: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger set {0:?} is neither r: runs nor b: a bitmap")]
    Form(String),
    #[error("ledger set: {0}")]
    Base64(String),
    #[error(transparent)]
    Bitmap(#[from] BitmapError),
    #[error("period {period:?} from {from} to {to} is not one UTC month")]
    Period {
        period: String,
        from: String,
        to: String,
    },
    #[error("a set holds minute {0} of a month of {1}")]
    PastMonth(u64, u64),
}

/// A month (UTC) of sessions: one ledger object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    /// The month holding `at`.
    pub fn of(at: i64) -> Self {
        let (y, m, _) = civil_from_days(at.div_euclid(86_400));
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Self {
            from: days_from_civil(y, m, 1) * 86_400,
            to: days_from_civil(ny, nm, 1) * 86_400,
        }
    }

    /// `YYYY-MM`.
    pub fn label(&self) -> String {
        let (y, m, _) = civil_from_days(self.from.div_euclid(86_400));
        format!("{y:04}-{m:02}")
    }

    /// Minute slots in the month.
    pub fn slots(&self) -> u64 {
        ((self.to - self.from) / SLOT_SECONDS) as u64
    }

    fn slot(&self, at: i64) -> u64 {
        ((at - self.from).max(0) / SLOT_SECONDS) as u64
    }
}

/// The ledger object of a Schedule's month: `<schedule>-<YYYY-MM>`.
pub fn ledger_name(schedule: &str, period: &Period) -> String {
    fit_name(schedule, &format!("-{}", period.label()), MAX_NAME)
}

/// Encodes a set of slots in its shorter form.
pub fn encode_slots(set: &Bitmap) -> String {
    if set.is_empty() {
        return String::new();
    }
    let mut runs = Vec::new();
    let mut end = 0u64;
    let mut iter = set.iter().peekable();
    while let Some(start) = iter.next() {
        let mut last = start;
        while iter.next_if(|&i| i == last + 1).is_some() {
            last += 1;
        }
        put_varint(&mut runs, start - end);
        put_varint(&mut runs, last + 1 - start);
        end = last + 1;
    }
    let bitmap = set.encode();
    let runs = STANDARD.encode(&runs);
    if runs.len() <= bitmap.len() {
        format!("r:{runs}")
    } else {
        format!("b:{bitmap}")
    }
}

pub fn decode_slots(text: &str) -> Result<Bitmap, LedgerError> {
    if text.is_empty() {
        return Ok(Bitmap::new());
    }
    if let Some(bitmap) = text.strip_prefix("b:") {
        return Ok(Bitmap::decode(bitmap)?);
    }
    let runs = text
        .strip_prefix("r:")
        .ok_or_else(|| LedgerError::Form(text.chars().take(16).collect()))?;
    let bytes = STANDARD
        .decode(runs)
        .map_err(|e| LedgerError::Base64(e.to_string()))?;
    let mut set = Bitmap::new();
    let (mut pos, mut end) = (0usize, 0u64);
    while pos < bytes.len() {
        let gap = get_varint(&bytes, &mut pos)?;
        let len = get_varint(&bytes, &mut pos)?;
        let start = end + gap;
        // A month has 44,640 slots: anything past that is corrupt.
        if start + len > 1 << 20 {
            return Err(LedgerError::Form("a run past the month".into()));
        }
        (start..start + len).for_each(|i| set.insert(i));
        end = start + len;
    }
    Ok(set)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, LedgerError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| LedgerError::Form("a truncated run".into()))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(LedgerError::Form("a run too long".into()))
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed => 1,
        Outcome::Killed => 2,
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::Killed];

/// The sessions one attempt decided last.
#[derive(Clone, Debug, PartialEq)]
struct Attempt {
    name: String,
    owner: String,
    updated_at: i64,
    /// By [`outcome_index`].
    sets: [Bitmap; 3],
}

/// One month of one Schedule, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    pub period: Period,
    attempts: Vec<Attempt>,
}

impl Ledger {
    pub fn new(period: Period) -> Self {
        Self {
            period,
            attempts: Vec::new(),
        }
    }

    /// Reads an object as the operator writes it, and nothing else: one
    /// UTC month whose `period`, `from` and `to` agree, and sets of that
    /// month's minutes.
    pub fn from_spec(spec: &SessionLedgerSpec) -> Result<Self, LedgerError> {
        let (from, to) = (seconds(&spec.from), seconds(&spec.to));
        let period = Period::of(from);
        if period.from != from || period.to != to || period.label() != spec.period {
            return Err(LedgerError::Period {
                period: spec.period.clone(),
                from: rfc3339_utc(from),
                to: rfc3339_utc(to),
            });
        }
        let set = |text: &str| {
            let set = decode_slots(text)?;
            match set.iter().next_back() {
                Some(last) if last >= period.slots() => {
                    return Err(LedgerError::PastMonth(last, period.slots()));
                }
                _ => {}
            }
            Ok(set)
        };
        let attempts = spec
            .attempts
            .iter()
            .map(|a| {
                Ok(Attempt {
                    name: a.name.clone(),
                    owner: a.owner.clone(),
                    updated_at: seconds(&a.updated_at),
                    sets: [set(&a.succeeded)?, set(&a.failed)?, set(&a.killed)?],
                })
            })
            .collect::<Result<_, LedgerError>>()?;
        Ok(Self { period, attempts })
    }

    pub fn to_spec(&self, schedule: &str) -> SessionLedgerSpec {
        SessionLedgerSpec {
            schedule_ref: ScheduleRef {
                name: schedule.to_string(),
            },
            period: self.period.label(),
            from: time(self.period.from),
            to: time(self.period.to),
            succeeded: self.count(Outcome::Succeeded) as i64,
            failed: self.count(Outcome::Failed) as i64,
            killed: self.count(Outcome::Killed) as i64,
            attempts: self
                .attempts
                .iter()
                .map(|a| LedgerAttempt {
                    name: a.name.clone(),
                    owner: a.owner.clone(),
                    updated_at: time(a.updated_at),
                    succeeded: encode_slots(&a.sets[0]),
                    failed: encode_slots(&a.sets[1]),
                    killed: encode_slots(&a.sets[2]),
                })
                .collect(),
        }
    }

    /// The latest outcome of the session at `at`, if one was recorded.
    pub fn outcome(&self, at: i64) -> Option<Outcome> {
        self.decided_by(at).map(|(_, o)| o)
    }

    /// The latest outcome of the session at `at` and the attempt that
    /// decided it.
    pub fn decided_by(&self, at: i64) -> Option<(&str, Outcome)> {
        self.decided(at).map(|(a, o)| (a.name.as_str(), o))
    }

    fn decided(&self, at: i64) -> Option<(&Attempt, Outcome)> {
        if at < self.period.from || at >= self.period.to {
            return None;
        }
        let slot = self.period.slot(at);
        self.attempts.iter().find_map(|a| {
            OUTCOMES
                .iter()
                .find(|&&o| a.sets[outcome_index(o)].contains(slot))
                .map(|&o| (a, o))
        })
    }

    /// Files an outcome a Schedule (`attempt`, run by `owner`) kept in its
    /// status: recorded as [`Ledger::record`] does, unless another attempt
    /// recorded the session here ([`supersedes`]). Returns whether
    /// anything changed.
    pub fn file(&mut self, unfiled: &Unfiled, attempt: &str, owner: &str, now: i64) -> bool {
        if self
            .decided(unfiled.at)
            .is_some_and(|(a, _)| supersedes(a, attempt))
        {
            return false;
        }
        self.record(unfiled.at, unfiled.outcome, attempt, owner, now)
    }

    /// Sessions whose latest outcome is `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.attempts
            .iter()
            .map(|a| a.sets[outcome_index(outcome)].len())
            .sum()
    }

    /// Records that `attempt` (run by `owner`) ended the session at `at`
    /// with `outcome`, replacing what any attempt recorded before. Returns
    /// whether anything changed: recording the same outcome twice is a
    /// no-op, so a retried write is harmless.
    pub fn record(
        &mut self,
        at: i64,
        outcome: Outcome,
        attempt: &str,
        owner: &str,
        now: i64,
    ) -> bool {
        if at < self.period.from || at >= self.period.to {
            return false;
        }
        let slot = self.period.slot(at);
        let k = outcome_index(outcome);
        if let Some(a) = self.attempts.iter().find(|a| a.name == attempt)
            && a.sets[k].contains(slot)
        {
            return false;
        }
        for a in &mut self.attempts {
            for set in &mut a.sets {
                set.remove(slot);
            }
        }
        let index = match self.attempts.iter().position(|a| a.name == attempt) {
            Some(i) => i,
            None => {
                self.attempts.push(Attempt {
                    name: attempt.to_string(),
                    owner: owner.to_string(),
                    updated_at: now,
                    sets: Default::default(),
                });
                self.attempts.len() - 1
            }
        };
        let a = &mut self.attempts[index];
        a.sets[k].insert(slot);
        a.updated_at = now;
        a.owner = owner.to_string();
        self.attempts
            .retain(|a| a.sets.iter().any(|s| !s.is_empty()));
        self.merge_oldest();
        true
    }

    /// Past [`MAX_ATTEMPTS`], the least recently updated attempts are
    /// merged into one: their sessions keep their outcome, only the name
    /// of the attempt that decided them is lost.
    fn merge_oldest(&mut self) {
        while self.attempts.len() > MAX_ATTEMPTS {
            self.attempts
                .sort_by_key(|a| (a.name != EARLIER_ATTEMPTS, a.updated_at));
            let oldest = if self.attempts[0].name == EARLIER_ATTEMPTS {
                self.attempts.remove(1)
            } else {
                self.attempts.remove(0)
            };
            match self
                .attempts
                .iter_mut()
                .find(|a| a.name == EARLIER_ATTEMPTS)
            {
                Some(earlier) => {
                    for (to, from) in earlier.sets.iter_mut().zip(&oldest.sets) {
                        to.union_with(from);
                    }
                    earlier.updated_at = earlier.updated_at.max(oldest.updated_at);
                }
                None => self.attempts.push(Attempt {
                    name: EARLIER_ATTEMPTS.to_string(),
                    owner: String::new(),
                    ..oldest
                }),
            }
        }
    }
}

/// Whether what attempt `a` decided of a session is newer than the
/// Schedule's (`attempt`'s) unfiled outcome of it: `a` is another attempt.
/// A Schedule runs a session at its time; a Backfill runs past sessions,
/// and never while another Job of the session runs, so its Job of a
/// session the Schedule ran ended after the Schedule's. (For the
/// Schedule's to be the later, a Backfill's Job would have had to start
/// and end between the session's time and the Schedule's start of it.)
fn supersedes(a: &Attempt, attempt: &str) -> bool {
    a.name != attempt
}

/// An outcome of one of a Schedule's own sessions kept in its status
/// (`unfiledOutcomes`) until it is filed in its month's ledger object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfiled {
    pub at: i64,
    pub outcome: Outcome,
}

impl Unfiled {
    /// A Schedule's unfiled outcomes as its status holds them, by session;
    /// of two for one session (someone edited the status) the later in
    /// the list counts.
    pub fn read(status: &[UnfiledOutcome]) -> BTreeMap<i64, Unfiled> {
        status
            .iter()
            .map(|u| {
                let at = seconds(&u.session);
                (
                    at,
                    Unfiled {
                        at,
                        outcome: u.outcome,
                    },
                )
            })
            .collect()
    }

    pub fn to_api(self) -> UnfiledOutcome {
        UnfiledOutcome {
            session: time(self.at),
            outcome: self.outcome,
        }
    }
}

/// A Schedule's ledgers, by month, its unfiled outcomes, the sessions a
/// Job of it runs now (an attempt under way), and outcomes of ended Jobs
/// not recorded yet or recorded a moment ago.
#[derive(Clone, Debug, Default)]
pub struct LedgerIndex {
    months: BTreeMap<i64, Ledger>,
    /// The Schedule's name (its attempt) and its unfiled outcomes.
    unfiled: Option<(String, BTreeMap<i64, Unfiled>)>,
    running: std::collections::BTreeSet<i64>,
    unrecorded: BTreeMap<i64, Outcome>,
    /// Outcomes of ended Jobs that were recorded (their finalizer is off):
    /// the answer when the ledger as cached has none for the session yet.
    recorded: BTreeMap<i64, Outcome>,
}

impl LedgerIndex {
    pub fn insert(&mut self, ledger: Ledger) {
        self.months.insert(ledger.period.from, ledger);
    }

    /// Marks sessions as run now by some Job of the Schedule.
    pub fn add_running(&mut self, sessions: impl IntoIterator<Item = i64>) {
        self.running.extend(sessions);
    }

    /// Whether a Job of the Schedule runs this session now.
    pub fn running(&self, at: i64) -> bool {
        self.running.contains(&at)
    }

    /// An outcome of a Job that ended and is about to be recorded (it
    /// still holds its outcome finalizer): newer than the ledger's.
    pub fn add_unrecorded(&mut self, at: i64, outcome: Outcome) {
        self.unrecorded.insert(at, outcome);
    }

    /// An outcome of a Job that ended and was recorded (its finalizer is
    /// off), for when the ledger has none: its record may be a moment
    /// newer than the cache of the Schedule's status.
    pub fn add_recorded(&mut self, at: i64, outcome: Outcome) {
        self.recorded.insert(at, outcome);
    }

    /// The outcomes the Schedule `schedule` keeps in its status
    /// (`unfiledOutcomes`).
    pub fn add_unfiled(&mut self, schedule: &str, status: &[UnfiledOutcome]) {
        self.unfiled = Some((schedule.to_string(), Unfiled::read(status)));
    }

    pub fn is_empty(&self) -> bool {
        self.months.is_empty() && self.unfiled.as_ref().is_none_or(|(_, u)| u.is_empty())
    }

    /// The latest recorded outcome of the session at `at`, and the attempt
    /// that decided it: the month's, or the Schedule's unfiled one unless
    /// the month names another attempt.
    pub fn decided_by(&self, at: i64) -> Option<(&str, Outcome)> {
        let month = self
            .months
            .range(..=at)
            .next_back()
            .and_then(|(_, l)| l.decided(at));
        let unfiled = self
            .unfiled
            .as_ref()
            .and_then(|(name, u)| Some((name.as_str(), u.get(&at)?)));
        match (month, unfiled) {
            (Some((a, o)), Some((name, _))) if supersedes(a, name) => Some((a.name.as_str(), o)),
            (_, Some((name, u))) => Some((name, u.outcome)),
            (month, None) => month.map(|(a, o)| (a.name.as_str(), o)),
        }
    }

    pub fn outcome(&self, at: i64) -> Option<Outcome> {
        if let Some(&o) = self.unrecorded.get(&at) {
            return Some(o);
        }
        self.decided_by(at)
            .map(|(_, o)| o)
            .or_else(|| self.recorded.get(&at).copied())
    }
}

/// What the ledger says of a Schedule's recent sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub sessions: u64,
    pub succeeded: u64,
    /// Failed or killed.
    pub failed: u64,
    /// No recorded outcome and no Job.
    pub missing: u64,
    pub first_missing: Option<i64>,
    pub last_missing: Option<i64>,
    pub first_failed: Option<i64>,
}

/// Sessions walked at most for a report.
const REPORT_LIMIT: usize = 100_000;

/// The sessions of `clock` in `[since, until)`, judged against the
/// ledger, then against the Jobs still there (`jobs`: session to outcome,
/// `None` while running): a finished Job's outcome may not have reached
/// the ledger yet, and a session with a running Job is not missing.
pub fn report(
    clock: &ZonedCron,
    since: i64,
    until: i64,
    ledger: &LedgerIndex,
    jobs: &BTreeMap<i64, Option<Outcome>>,
) -> Report {
    let mut r = Report::default();
    for s in clock
        .sessions_from(since)
        .take_while(|s| s.at < until)
        .take(REPORT_LIMIT)
    {
        r.sessions += 1;
        let job = jobs.get(&s.at);
        match ledger.outcome(s.at).or(job.copied().flatten()) {
            Some(Outcome::Succeeded) => r.succeeded += 1,
            Some(Outcome::Failed | Outcome::Killed) => {
                r.failed += 1;
                r.first_failed.get_or_insert(s.at);
            }
            None if job.is_some() => {}
            None => {
                r.missing += 1;
                r.first_missing.get_or_insert(s.at);
                r.last_missing = Some(s.at);
            }
        }
    }
    r
}

/// The suggestion a Schedule's Event makes when sessions are missing.
pub fn backfill_hint(schedule: &str, r: &Report) -> Option<String> {
    let (first, last) = (r.first_missing?, r.last_missing?);
    Some(format!(
        "{} recent session(s) have no recorded outcome, from {} to {}; to run them, create a Backfill with scheduleRef.name {schedule:?}, from {:?}, to {:?} and reprocess Missing",
        r.missing,
        rfc3339_utc(first),
        rfc3339_utc(last),
        rfc3339_utc(first),
        rfc3339_utc(last + 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every month touching `[from, to)`, in order.
    fn covering(from: i64, to: i64) -> Vec<Period> {
        let mut out = Vec::new();
        let mut p = Period::of(from);
        while p.from < to {
            let next = p.to;
            out.push(p);
            p = Period::of(next);
        }
        out
    }
    use crate::core::zoned_cron::at;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn slots_round_trip_in_either_form(slots in proptest::collection::btree_set(0u64..44_640, 0..2_000)) {
            let set: Bitmap = slots.iter().copied().collect();
            let text = encode_slots(&set);
            let back = decode_slots(&text).unwrap();
            prop_assert_eq!(back.iter().collect::<Vec<_>>(), slots.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn the_latest_outcome_wins_and_sessions_stay_in_one_set(
            ops in proptest::collection::vec((0i64..500, 0usize..3, 0usize..4), 1..300)
        ) {
            let p = Period::of(at("2026-03-01T00:00:00Z"));
            let mut ledger = Ledger::new(p.clone());
            let mut want = BTreeMap::new();
            for (i, (slot, outcome, attempt)) in ops.iter().enumerate() {
                let at = p.from + slot * 60;
                let name = format!("a{attempt}");
                ledger.record(at, OUTCOMES[*outcome], &name, "Backfill/x", i as i64);
                want.insert(at, (name, OUTCOMES[*outcome]));
            }
            // Through the API form and back.
            let ledger = Ledger::from_spec(&ledger.to_spec("s")).unwrap();
            for (at, (name, outcome)) in &want {
                prop_assert_eq!(ledger.decided_by(*at), Some((name.as_str(), *outcome)));
            }
            let total: u64 = OUTCOMES.iter().map(|&o| ledger.count(o)).sum();
            prop_assert_eq!(total, want.len() as u64);
        }
    }

    #[test]
    fn periods_are_utc_months() {
        let p = Period::of(at("2026-02-14T12:00:00Z"));
        assert_eq!(
            (p.from, p.to),
            (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z"))
        );
        assert_eq!(p.label(), "2026-02");
        let dec = Period::of(at("2025-12-31T23:59:00Z"));
        assert_eq!(dec.to, at("2026-01-01T00:00:00Z"));
        let months = covering(at("2025-12-31T00:00:00Z"), at("2026-02-01T00:00:00Z"));
        assert_eq!(
            months.iter().map(Period::label).collect::<Vec<_>>(),
            ["2025-12", "2026-01"]
        );
        assert_eq!(ledger_name("nightly", &p), "nightly-2026-02");
        let long = ledger_name(&"x".repeat(300), &p);
        assert!(long.len() <= 253 && long.ends_with("-2026-02"), "{long}");
    }

    #[test]
    fn recording_the_same_outcome_twice_changes_nothing() {
        let p = Period::of(at("2026-03-01T00:00:00Z"));
        let mut ledger = Ledger::new(p);
        let s = at("2026-03-02T04:00:00Z");
        assert!(ledger.record(s, Outcome::Failed, "nightly", "Schedule/nightly", 1));
        assert!(!ledger.record(s, Outcome::Failed, "nightly", "Schedule/nightly", 2));
        assert!(ledger.record(s, Outcome::Succeeded, "fix", "Backfill/fix", 3));
        assert_eq!(ledger.decided_by(s), Some(("fix", Outcome::Succeeded)));
        assert_eq!(
            (
                ledger.count(Outcome::Failed),
                ledger.count(Outcome::Succeeded)
            ),
            (0, 1)
        );
        // The attempt with nothing left is dropped.
        assert_eq!(ledger.to_spec("nightly").attempts.len(), 1);
        // Outside the month: not this object's.
        assert!(!ledger.record(at("2026-04-01T00:00:00Z"), Outcome::Failed, "x", "", 4));
    }

    #[test]
    fn a_ledger_edited_past_what_the_operator_writes_is_unreadable() {
        let p = Period::of(at("2026-02-01T00:00:00Z"));
        let mut ledger = Ledger::new(p.clone());
        ledger.record(p.from, Outcome::Succeeded, "s", "Schedule/s", 0);
        let good = ledger.to_spec("s");
        assert_eq!(Ledger::from_spec(&good).unwrap(), ledger);
        let edited = |f: &dyn Fn(&mut SessionLedgerSpec)| {
            let mut spec = good.clone();
            f(&mut spec);
            Ledger::from_spec(&spec).unwrap_err()
        };
        // Moved to another month, in part or whole: its slots would be
        // read as that month's sessions.
        assert!(matches!(
            edited(&|s| s.from = time(at("2026-01-01T00:00:00Z"))),
            LedgerError::Period { .. }
        ));
        assert!(matches!(
            edited(&|s| s.from = time(at("2026-02-01T00:01:00Z"))),
            LedgerError::Period { .. }
        ));
        assert!(matches!(
            edited(&|s| s.to = time(at("2026-04-01T00:00:00Z"))),
            LedgerError::Period { .. }
        ));
        assert!(matches!(
            edited(&|s| s.period = "2026-03".into()),
            LedgerError::Period { .. }
        ));
        // Sets longer than the month (February 2026: 40,320 minutes),
        // as a bitmap or as runs; the last minute itself is fine.
        let last: Bitmap = [p.slots() - 1].into_iter().collect();
        let past: Bitmap = [p.slots()].into_iter().collect();
        assert!(
            Ledger::from_spec(&{
                let mut s = good.clone();
                s.attempts[0].failed = encode_slots(&last);
                s
            })
            .is_ok()
        );
        assert_eq!(
            edited(&|s| s.attempts[0].failed = encode_slots(&past)),
            LedgerError::PastMonth(40_320, 40_320)
        );
        assert_eq!(
            edited(&|s| s.attempts[0].killed = format!("b:{}", past.encode())),
            LedgerError::PastMonth(40_320, 40_320)
        );
    }

    #[test]
    fn past_the_attempt_limit_the_oldest_merge_and_keep_their_outcomes() {
        let p = Period::of(at("2026-03-01T00:00:00Z"));
        let mut ledger = Ledger::new(p.clone());
        for i in 0..(MAX_ATTEMPTS as i64 + 10) {
            ledger.record(p.from + i * 60, Outcome::Failed, &format!("a{i}"), "", i);
        }
        let spec = ledger.to_spec("s");
        assert_eq!(spec.attempts.len(), MAX_ATTEMPTS);
        assert_eq!(spec.failed, MAX_ATTEMPTS as i64 + 10);
        assert_eq!(
            ledger.decided_by(p.from),
            Some((EARLIER_ATTEMPTS, Outcome::Failed))
        );
        let last = p.from + (MAX_ATTEMPTS as i64 + 9) * 60;
        assert_eq!(ledger.decided_by(last), Some(("a73", Outcome::Failed)));
    }

    #[test]
    fn a_month_of_minutely_sessions_is_small() {
        let p = Period::of(at("2026-01-01T00:00:00Z"));
        let minutes = (p.to - p.from) / 60;
        let size = |f: &dyn Fn(i64) -> Outcome| {
            let mut ledger = Ledger::new(p.clone());
            for i in 0..minutes {
                ledger.record(p.from + i * 60, f(i), "minutely", "Schedule/minutely", 0);
            }
            let spec = ledger.to_spec("minutely");
            assert_eq!(spec.succeeded + spec.failed, minutes);
            serde_json::to_vec(&spec).unwrap().len()
        };
        let all_succeeded = size(&|_| Outcome::Succeeded);
        let all_failed = size(&|_| Outcome::Failed);
        let alternating = size(&|i| {
            if i % 2 == 0 {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            }
        });
        println!(
            "a month of minutely sessions ({minutes}): all succeeded {all_succeeded} bytes, all failed {all_failed} bytes, alternating {alternating} bytes"
        );
        assert!(all_succeeded < 400 && all_failed < 400);
        // Worst case: two bitmaps of 44,640 bits.
        assert!(alternating < 16 * 1024, "{alternating}");
    }

    #[test]
    fn a_report_tells_missing_from_failed_and_from_running() {
        let clock = ZonedCron::new("0 * * * *", None).unwrap();
        let p = Period::of(at("2026-03-01T00:00:00Z"));
        let mut ledger = Ledger::new(p);
        ledger.record(at("2026-03-02T00:00:00Z"), Outcome::Succeeded, "s", "", 0);
        ledger.record(at("2026-03-02T01:00:00Z"), Outcome::Failed, "s", "", 0);
        let mut index = LedgerIndex::default();
        index.insert(ledger);
        let jobs = BTreeMap::from([
            (at("2026-03-02T03:00:00Z"), None),
            // Finished, not in the ledger yet.
            (at("2026-03-02T05:00:00Z"), Some(Outcome::Succeeded)),
            // The ledger knows better: a later attempt succeeded.
            (at("2026-03-02T01:00:00Z"), Some(Outcome::Succeeded)),
        ]);
        let r = report(
            &clock,
            at("2026-03-02T00:00:00Z"),
            at("2026-03-02T06:00:00Z"),
            &index,
            &jobs,
        );
        assert_eq!((r.sessions, r.succeeded, r.failed, r.missing), (6, 2, 1, 2));
        assert_eq!(r.first_missing, Some(at("2026-03-02T02:00:00Z")));
        assert_eq!(r.last_missing, Some(at("2026-03-02T04:00:00Z")));
        let hint = backfill_hint("hourly", &r).unwrap();
        assert!(hint.contains("to \"2026-03-02T04:00:01Z\""), "{hint}");
    }

    #[test]
    fn a_schedules_unfiled_outcome_stands_unless_another_attempt_recorded_its_session() {
        let (one, two, three) = (
            at("2026-03-02T01:00:00Z"),
            at("2026-03-02T02:00:00Z"),
            at("2026-03-02T03:00:00Z"),
        );
        // The Schedule recorded session one before a flush; a Backfill
        // then reran session two.
        let noon = at("2026-03-02T12:00:00Z");
        let mut month = Ledger::new(Period::of(one));
        month.record(one, Outcome::Failed, "nightly", "Schedule/nightly", noon);
        month.record(two, Outcome::Succeeded, "fix", "Backfill/fix", noon);
        // The status keeps the Schedule's outcomes of two and three; one
        // is listed twice (someone edited it): the later entry counts.
        let status = [
            (one, Outcome::Failed),
            (two, Outcome::Failed),
            (three, Outcome::Killed),
            (one, Outcome::Succeeded),
        ]
        .map(|(at, outcome)| Unfiled { at, outcome }.to_api());
        let unfiled = Unfiled::read(&status);
        assert_eq!(
            unfiled
                .values()
                .map(|u| (u.at, u.outcome))
                .collect::<Vec<_>>(),
            [
                (one, Outcome::Succeeded),
                (two, Outcome::Failed),
                (three, Outcome::Killed)
            ]
        );
        let mut index = LedgerIndex::default();
        index.insert(month.clone());
        index.add_unfiled("nightly", &status);
        // The Schedule's own newer word; the Backfill's rerun; the only
        // word.
        assert_eq!(index.decided_by(one), Some(("nightly", Outcome::Succeeded)));
        assert_eq!(index.decided_by(two), Some(("fix", Outcome::Succeeded)));
        assert_eq!(index.decided_by(three), Some(("nightly", Outcome::Killed)));
        let four = at("2026-03-02T04:00:00Z");
        assert_eq!(index.outcome(four), None);
        // A Job recorded a moment ago answers only where the ledger (as
        // cached) has nothing.
        index.add_recorded(three, Outcome::Succeeded);
        index.add_recorded(four, Outcome::Failed);
        assert_eq!(index.outcome(three), Some(Outcome::Killed));
        assert_eq!(index.outcome(four), Some(Outcome::Failed));
        // Filing them writes what the index read: the same answers.
        let later = noon + 3_600;
        let changed: Vec<bool> = unfiled
            .values()
            .map(|u| month.file(u, "nightly", "Schedule/nightly", later))
            .collect();
        assert_eq!(changed, [true, false, true]);
        assert_eq!(month.decided_by(one), Some(("nightly", Outcome::Succeeded)));
        assert_eq!(month.decided_by(two), Some(("fix", Outcome::Succeeded)));
        assert_eq!(month.decided_by(three), Some(("nightly", Outcome::Killed)));
        // Filed twice (a retried write): nothing changes.
        assert!(
            unfiled
                .values()
                .all(|u| !month.file(u, "nightly", "Schedule/nightly", later + 1))
        );
    }
}
