//! The session plan of a Backfill: which sessions of a Schedule it runs,
//! in which order. A plan is an iterator, never a vector: a year of
//! minutely sessions costs the same memory as a day of them.

use std::fmt;

use super::bitmap::{Bitmap, BitmapError};
use super::calendar::weekday_from_days;
use super::zoned_cron::{Session, ZonedCron, ZonedCronError, rfc3339_utc, seconds, time};
use crate::api::{BackfillSpec, ScheduleSpec, SessionFilter, SessionOrder, SessionSet, Weekday};

/// Why a Backfill's sessions cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    ZonedCron(#[from] ZonedCronError),
    #[error("{time} is not a session of schedule {expr:?} in {zone}")]
    NotASession {
        time: String,
        expr: String,
        zone: String,
    },
    #[error("sessionSet: {0}")]
    Bitmap(#[from] BitmapError),
    #[error(
        "choose the sessions with exactly one of: from (alone: every session up to the start; with to; or with count), sessions, sessionSet"
    )]
    NoSelection,
    #[error(
        "the plan spans more than {limit} sessions of schedule {expr:?} from {from}; a Backfill may span at most {limit} (its status keeps a bit per session, and must stay well under etcd's object limit): split it into Backfills of at most {limit} sessions each, for example one ending at {split}"
    )]
    TooLarge {
        limit: u64,
        expr: String,
        from: String,
        /// Where the first Backfill of a split would end.
        split: String,
    },
}

/// The most sessions of its Schedule a Backfill's plan may span, from its
/// first session to its last, filtered out or not: its status keeps up to
/// five bitmaps over that span (done, failed, killed, the sessions
/// `reprocess` selected, and the failed set), a bit per session each, in
/// base64. At this limit the worst case (every session failed or killed,
/// spread over the whole span) is about 500 KiB, well under etcd's 1.5 MiB
/// request limit; a year of minutely sessions (527,040) fits.
pub const MAX_SESSIONS: u64 = 600_000;

/// Which sessions, before filters and bounds.
#[derive(Clone, Debug)]
pub enum Selection {
    /// `from` inclusive, `to` exclusive.
    Range { from: i64, to: i64 },
    /// The first `count` sessions at or after `from` (after filtering).
    Count { from: i64, count: u64 },
    /// Explicit sessions, ascending and distinct.
    List(Vec<i64>),
    /// A compact set: the sessions of its own clock in `[from, to)` whose
    /// index is in `bits`.
    Set {
        clock: Box<ZonedCron>,
        from: i64,
        to: i64,
        bits: Bitmap,
    },
}

impl Selection {
    /// Explicit sessions as the plan needs them: ascending and distinct
    /// by instant, however the user listed them (out of order, or one
    /// instant twice, perhaps written with two offsets).
    pub fn list(sessions: impl IntoIterator<Item = i64>) -> Self {
        let mut list: Vec<i64> = sessions.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        Selection::List(list)
    }
}

/// Which selected sessions to keep, in the schedule's local time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Bit 0 = Sunday; 0 keeps every day.
    pub days_of_week: u8,
    /// Bit h = local hour h; 0 keeps every hour.
    pub hours: u32,
    /// Half-open instants to drop.
    pub exclude: Vec<(i64, i64)>,
}

impl Filter {
    pub fn keeps(&self, s: Session) -> bool {
        let local = s.local_seconds();
        if self.days_of_week != 0 {
            let wd = weekday_from_days(local.div_euclid(86_400));
            if self.days_of_week & (1 << wd) == 0 {
                return false;
            }
        }
        if self.hours != 0 {
            let hour = local.rem_euclid(86_400) / 3_600;
            if self.hours & (1 << hour) == 0 {
                return false;
            }
        }
        !self.exclude.iter().any(|&(a, b)| a <= s.at && s.at < b)
    }

    pub fn from_spec(spec: &SessionFilter) -> Self {
        let day_bit = |d: &Weekday| -> u8 {
            1 << match d {
                Weekday::Sunday => 0,
                Weekday::Monday => 1,
                Weekday::Tuesday => 2,
                Weekday::Wednesday => 3,
                Weekday::Thursday => 4,
                Weekday::Friday => 5,
                Weekday::Saturday => 6,
            }
        };
        Self {
            days_of_week: spec.days_of_week.iter().map(day_bit).fold(0, |a, b| a | b),
            hours: spec
                .hours
                .iter()
                .filter(|h| (0..24).contains(*h))
                .fold(0, |a, h| a | (1 << h)),
            exclude: spec
                .exclude
                .iter()
                .map(|r| (seconds(&r.from), seconds(&r.to)))
                .collect(),
        }
    }
}

/// Oldest or newest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

impl From<SessionOrder> for Order {
    fn from(o: SessionOrder) -> Self {
        match o {
            SessionOrder::Oldest => Order::Ascending,
            SessionOrder::Newest => Order::Descending,
        }
    }
}

/// A Backfill's plan: a schedule's sessions, selected, bounded, filtered
/// and ordered.
#[derive(Clone, Debug)]
pub struct Plan {
    clock: ZonedCron,
    selection: Selection,
    filter: Filter,
    /// The Schedule's `startTime`: no session before it.
    not_before: Option<i64>,
    /// The Schedule's `endTime` and the moment the backfill started: no
    /// session at or after the earlier of them.
    before: Option<i64>,
    order: Order,
    /// Where a walk of a `Set` resumes: one of its sessions and its
    /// position among the clock's sessions from the set's `from`, so a
    /// launch pass does not walk the set from its start.
    resume: Option<(i64, u64)>,
}

impl Plan {
    pub fn new(clock: ZonedCron, selection: Selection) -> Self {
        Self {
            clock,
            selection,
            filter: Filter::default(),
            not_before: None,
            before: None,
            order: Order::Ascending,
            resume: None,
        }
    }

    /// A walk of a `Set` plan resumes at `at`, the set's `slot`-th clock
    /// session (as [`Plan::set_slot`] counts). Other plans resume
    /// without it. Only a walk in order from `at` (`not_before` it
    /// ascending, `before` just after it descending) may use it.
    pub fn resuming(mut self, at: i64, slot: u64) -> Self {
        self.resume = Some((at, slot));
        self
    }

    /// For a `Set` plan: the position of `at` among the clock's sessions
    /// from the set's `from`, counted from `known` (an earlier or later
    /// session and its position) or else from `from`; in the steps between
    /// them. `None` for other plans.
    pub fn set_slot(&self, at: i64, known: Option<(i64, u64)>) -> Option<u64> {
        let Selection::Set { clock, from, .. } = &self.selection else {
            return None;
        };
        let between =
            |lo: i64, hi: i64| clock.sessions_from(lo).take_while(|s| s.at < hi).count() as u64;
        Some(match known {
            Some((k, slot)) if k <= at => slot + between(k, at),
            Some((k, slot)) => slot.saturating_sub(between(at, k)),
            None => between(*from, at),
        })
    }

    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// No session before `at`.
    pub fn not_before(mut self, at: Option<i64>) -> Self {
        self.not_before = max_opt(self.not_before, at);
        self
    }

    /// No session at or after `at`.
    pub fn before(mut self, at: Option<i64>) -> Self {
        self.before = match (self.before, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// The plan of a Backfill against its Schedule. `cutoff` is the moment
    /// the backfill started: a backfill covers past sessions only.
    pub fn for_backfill(
        schedule: &ScheduleSpec,
        backfill: &BackfillSpec,
        cutoff: Option<i64>,
    ) -> Result<Self, PlanError> {
        let clock = ZonedCron::new(&schedule.schedule, schedule.time_zone.as_deref())?;
        let selection = match (
            &backfill.from,
            &backfill.to,
            backfill.count,
            &backfill.sessions,
            &backfill.session_set,
        ) {
            (Some(from), Some(to), None, None, None) => Selection::Range {
                from: seconds(from),
                to: seconds(to),
            },
            (Some(from), None, Some(count), None, None) => Selection::Count {
                from: seconds(from),
                count: count.max(0) as u64,
            },
            // From alone: up to the cutoff, the moment the backfill starts.
            (Some(from), None, None, None, None) => Selection::Range {
                from: seconds(from),
                to: i64::MAX,
            },
            (None, None, None, Some(list), None) => Selection::list(list.iter().map(seconds)),
            (None, None, None, None, Some(set)) => selection_of_set(set)?,
            _ => return Err(PlanError::NoSelection),
        };
        let plan = Plan::new(clock, selection)
            .with_filter(
                backfill
                    .filter
                    .as_ref()
                    .map(Filter::from_spec)
                    .unwrap_or_default(),
            )
            .with_order(backfill.order.unwrap_or_default().into())
            .not_before(schedule.start_time.as_ref().map(seconds))
            .before(schedule.end_time.as_ref().map(seconds))
            .before(cutoff);
        plan.validate()?;
        Ok(plan)
    }

    /// Refuses a plan that spans more than `limit` sessions of the
    /// schedule (see [`MAX_SESSIONS`]). It walks at most `limit + 1` of
    /// them, however far the plan reaches.
    pub fn check_span(&self, limit: u64) -> Result<(), PlanError> {
        let (lo, hi, kept_max) = match &self.selection {
            Selection::Range { from, to } => {
                let (lo, hi) = self.clock_span(*from, *to);
                (lo, hi, u64::MAX)
            }
            Selection::Count { from, count } => {
                let (lo, hi) = self.clock_span(*from, i64::MAX);
                (lo, hi, *count)
            }
            Selection::List(list) => match (list.first(), list.last()) {
                (Some(&first), Some(&last)) => (first, last.saturating_add(1), u64::MAX),
                _ => return Ok(()),
            },
            Selection::Set { from, to, .. } => (*from, *to, u64::MAX),
        };
        let mut kept = 0u64;
        for (walked, s) in self
            .clock
            .sessions_from(lo)
            .take_while(|s| s.at < hi)
            .enumerate()
        {
            if walked as u64 == limit {
                return Err(PlanError::TooLarge {
                    limit,
                    expr: self.clock.expr().to_string(),
                    from: rfc3339_utc(lo),
                    split: rfc3339_utc(s.at),
                });
            }
            if self.filter.keeps(s) {
                kept += 1;
                if kept >= kept_max {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Every explicit session must be a session of the schedule.
    pub fn validate(&self) -> Result<(), PlanError> {
        if let Selection::List(list) = &self.selection
            && let Some(&bad) = list.iter().find(|&&t| !self.clock.is_session(t))
        {
            return Err(PlanError::NotASession {
                time: rfc3339_utc(bad),
                expr: self.clock.expr().to_string(),
                zone: self.clock.zone().name().to_string(),
            });
        }
        Ok(())
    }

    pub fn clock(&self) -> &ZonedCron {
        &self.clock
    }

    pub fn order(&self) -> Order {
        self.order
    }

    /// The sessions, in plan order.
    pub fn iter(&self) -> PlanIter<'_> {
        PlanIter {
            inner: match self.order {
                Order::Ascending => self.ascending(),
                Order::Descending => self.descending(),
            },
        }
    }

    /// How many sessions the plan holds. One pass, no allocation.
    pub fn count(&self) -> u64 {
        self.ascending().count() as u64
    }

    /// `count` asked for more sessions than exist before the cutoff.
    pub fn count_cut_short(&self) -> Option<(u64, u64)> {
        match self.selection {
            Selection::Count { count, .. } => {
                let got = self.count();
                (got < count).then_some((count, got))
            }
            _ => None,
        }
    }

    fn keeps(&self, s: Session) -> bool {
        self.not_before.is_none_or(|b| s.at >= b)
            && self.before.is_none_or(|b| s.at < b)
            && self.filter.keeps(s)
    }

    /// Sessions of the schedule's clock in `[lo, hi)`, bounded.
    fn clock_span(&self, lo: i64, hi: i64) -> (i64, i64) {
        let lo = max_opt(Some(lo), self.not_before).unwrap_or(lo);
        let hi = self.before.map_or(hi, |b| hi.min(b));
        (lo, hi)
    }

    fn ascending(&self) -> Box<dyn Iterator<Item = Session> + '_> {
        match &self.selection {
            Selection::Range { from, to } => {
                let (lo, hi) = self.clock_span(*from, *to);
                Box::new(
                    self.clock
                        .sessions_from(lo)
                        .take_while(move |s| s.at < hi)
                        .filter(|s| self.filter.keeps(*s)),
                )
            }
            Selection::Count { from, count } => {
                let (lo, hi) = self.clock_span(*from, i64::MAX);
                Box::new(
                    self.clock
                        .sessions_from(lo)
                        .take_while(move |s| s.at < hi)
                        .filter(|s| self.filter.keeps(*s))
                        .take(*count as usize),
                )
            }
            Selection::List(list) => Box::new(
                list.iter()
                    .map(|&at| self.in_schedule_zone(at))
                    .filter(|s| self.keeps(*s)),
            ),
            Selection::Set {
                clock,
                from,
                to,
                bits,
            } => {
                let to = *to;
                let (start, first) = match self.resume {
                    Some((at, slot)) if at >= *from && bits.contains(slot) => (at, slot),
                    _ => (*from, 0),
                };
                Box::new(
                    clock
                        .sessions_from(start)
                        .take_while(move |s| s.at < to)
                        .enumerate()
                        .filter(move |(i, _)| bits.contains(first + *i as u64))
                        .map(|(_, s)| self.in_schedule_zone(s.at))
                        .filter(|s| self.keeps(*s)),
                )
            }
        }
    }

    fn descending(&self) -> Box<dyn Iterator<Item = Session> + '_> {
        match &self.selection {
            Selection::Range { from, to } => {
                let (lo, hi) = self.clock_span(*from, *to);
                Box::new(
                    Backward::new(&self.clock, lo, hi, 0)
                        .filter(|(_, s)| self.filter.keeps(*s))
                        .map(|(_, s)| s),
                )
            }
            Selection::Count { from, .. } => {
                // The span ends just after the count-th kept session.
                let Some(last) = self.ascending().last() else {
                    return Box::new(std::iter::empty());
                };
                let (lo, _) = self.clock_span(*from, i64::MAX);
                Box::new(
                    Backward::new(&self.clock, lo, last.at + 1, 0)
                        .filter(|(_, s)| self.filter.keeps(*s))
                        .map(|(_, s)| s),
                )
            }
            Selection::List(list) => Box::new(
                list.iter()
                    .rev()
                    .map(|&at| self.in_schedule_zone(at))
                    .filter(|s| self.keeps(*s)),
            ),
            Selection::Set {
                clock,
                from,
                to,
                bits,
            } => {
                let (hi, total) = match self.resume {
                    Some((at, slot)) if at < *to && bits.contains(slot) => (at + 1, slot + 1),
                    _ => {
                        let to = *to;
                        let total = clock.sessions_from(*from).take_while(|s| s.at < to).count();
                        (to, total as u64)
                    }
                };
                Box::new(
                    Backward::new(clock, *from, hi, total)
                        .filter(|(i, _)| bits.contains(*i))
                        .map(|(_, s)| self.in_schedule_zone(s.at))
                        .filter(|s| self.keeps(*s)),
                )
            }
        }
    }

    fn in_schedule_zone(&self, at: i64) -> Session {
        Session {
            at,
            offset: self.clock.zone().offset_at(at),
        }
    }

    /// The boundaries in words, for the dry run: every peer picks
    /// different ones, so we say ours.
    pub fn describe_boundaries(&self) -> String {
        let mut text = match &self.selection {
            Selection::Range { from, to } => format!(
                "sessions from {} (inclusive) to {} (exclusive)",
                rfc3339_utc(*from),
                rfc3339_utc(*to)
            ),
            Selection::Count { from, count } => format!(
                "the first {count} sessions at or after {} (inclusive)",
                rfc3339_utc(*from)
            ),
            Selection::List(list) => format!("{} listed sessions", list.len()),
            Selection::Set { bits, .. } => format!("{} sessions of a session set", bits.len()),
        };
        text.push_str(&format!(
            " of {:?} in {}",
            self.clock.expr(),
            self.clock.zone().name()
        ));
        if let Some(b) = self.not_before {
            text.push_str(&format!(
                ", none before the schedule's startTime {}",
                rfc3339_utc(b)
            ));
        }
        if let Some(b) = self.before {
            text.push_str(&format!(", none at or after {}", rfc3339_utc(b)));
        }
        if self.filter != Filter::default() {
            text.push_str(", filtered");
        }
        text.push_str(match self.order {
            Order::Ascending => ", oldest first",
            Order::Descending => ", newest first",
        });
        text
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe_boundaries())
    }
}

/// The compact form of a set of sessions of `clock` (ascending and
/// distinct instants): a bitmap over the clock's sessions from the first
/// to just after the last. `None` for an empty set.
pub fn session_set(clock: &ZonedCron, sessions: &[i64]) -> Option<SessionSet> {
    let (&first, &last) = (sessions.first()?, sessions.last()?);
    let mut wanted = sessions.iter().copied().peekable();
    let mut bits = Bitmap::new();
    for (i, s) in clock
        .sessions_from(first)
        .take_while(|s| s.at <= last)
        .enumerate()
    {
        while wanted.next_if(|&w| w < s.at).is_some() {}
        if wanted.next_if_eq(&s.at).is_some() {
            bits.insert(i as u64);
        }
    }
    Some(SessionSet {
        schedule: clock.expr().to_string(),
        time_zone: clock.zone().name().to_string(),
        from: time(first),
        to: time(last + 1),
        count: bits.len() as i64,
        bitmap: bits.encode(),
    })
}

fn selection_of_set(set: &SessionSet) -> Result<Selection, PlanError> {
    Ok(Selection::Set {
        clock: Box::new(ZonedCron::new(&set.schedule, Some(&set.time_zone))?),
        from: seconds(&set.from),
        to: seconds(&set.to),
        bits: Bitmap::decode(&set.bitmap)?,
    })
}

/// The plan's sessions in order.
pub struct PlanIter<'a> {
    inner: Box<dyn Iterator<Item = Session> + 'a>,
}

impl Iterator for PlanIter<'_> {
    type Item = Session;

    fn next(&mut self) -> Option<Session> {
        self.inner.next()
    }
}

/// A clock's sessions in `[lo, hi)`, newest first, read forward in chunks
/// whose width adapts so that the buffer stays small for a minutely
/// schedule and the walk stays short for a yearly one. Yields each
/// session's index from `lo` when `total` (the count in the span) is given.
struct Backward<'a> {
    clock: &'a ZonedCron,
    lo: i64,
    hi: i64,
    width: i64,
    buffer: Vec<Session>,
    /// Index (from `lo`) of the session after the last one popped.
    index: u64,
}

const MAX_CHUNK: usize = 4_096;

impl<'a> Backward<'a> {
    fn new(clock: &'a ZonedCron, lo: i64, hi: i64, total: u64) -> Self {
        Self {
            clock,
            lo,
            hi,
            width: 3_600,
            buffer: Vec::new(),
            index: total,
        }
    }
}

impl Iterator for Backward<'_> {
    type Item = (u64, Session);

    fn next(&mut self) -> Option<(u64, Session)> {
        loop {
            if let Some(s) = self.buffer.pop() {
                self.index = self.index.saturating_sub(1);
                return Some((self.index, s));
            }
            if self.hi <= self.lo {
                return None;
            }
            let start = self.hi.saturating_sub(self.width).max(self.lo);
            let hi = self.hi;
            self.buffer
                .extend(self.clock.sessions_from(start).take_while(|s| s.at < hi));
            self.hi = start;
            if self.buffer.is_empty() {
                self.width = self.width.saturating_mul(2);
            } else if self.buffer.len() > MAX_CHUNK {
                self.width = (self.width / 2).max(60);
            }
        }
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::zoned_cron::at;
    use proptest::prelude::*;

    fn times(plan: &Plan) -> Vec<String> {
        plan.iter().map(|s| rfc3339_utc(s.at)).collect()
    }

    fn ny(expr: &str) -> ZonedCron {
        ZonedCron::new(expr, Some("America/New_York")).unwrap()
    }

    #[test]
    fn range_is_from_inclusive_to_exclusive() {
        let plan = Plan::new(
            ZonedCron::new("0 * * * *", None).unwrap(),
            Selection::Range {
                from: at("2026-01-01T00:00:00Z"),
                to: at("2026-01-01T03:00:00Z"),
            },
        );
        assert_eq!(
            times(&plan),
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T02:00:00Z"
            ]
        );
        assert_eq!(plan.count(), 3);
        let desc = plan.clone().with_order(Order::Descending);
        assert_eq!(
            times(&desc),
            [
                "2026-01-01T02:00:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn count_counts_kept_sessions_and_reports_a_short_plan() {
        let from = at("2026-01-05T00:00:00Z"); // a Monday
        let plan = Plan::new(
            ZonedCron::new("0 12 * * *", None).unwrap(),
            Selection::Count { from, count: 3 },
        )
        .with_filter(Filter {
            days_of_week: 0b0100_0001, // Saturday and Sunday
            ..Filter::default()
        });
        assert_eq!(
            times(&plan),
            [
                "2026-01-10T12:00:00Z",
                "2026-01-11T12:00:00Z",
                "2026-01-17T12:00:00Z"
            ]
        );
        assert_eq!(
            times(&plan.clone().with_order(Order::Descending)),
            [
                "2026-01-17T12:00:00Z",
                "2026-01-11T12:00:00Z",
                "2026-01-10T12:00:00Z"
            ]
        );
        assert_eq!(plan.count_cut_short(), None);
        let cut = plan.before(Some(at("2026-01-12T00:00:00Z")));
        assert_eq!(cut.count_cut_short(), Some((3, 2)));
    }

    #[test]
    fn hours_and_exclusions_filter_in_local_time() {
        let plan = Plan::new(
            ny("0 * * * *"),
            Selection::Range {
                from: at("2026-01-01T05:00:00Z"), // midnight EST
                to: at("2026-01-02T05:00:00Z"),
            },
        )
        .with_filter(Filter {
            hours: (1 << 9) | (1 << 10) | (1 << 11),
            exclude: vec![(at("2026-01-01T15:00:00Z"), at("2026-01-01T16:00:00Z"))],
            ..Filter::default()
        });
        // 09:00 and 11:00 EST; 10:00 EST (15:00Z) is excluded.
        assert_eq!(
            times(&plan),
            ["2026-01-01T14:00:00Z", "2026-01-01T16:00:00Z"]
        );
    }

    #[test]
    fn schedule_bounds_and_cutoff_clip_the_plan() {
        let plan = Plan::new(
            ZonedCron::new("0 0 * * *", None).unwrap(),
            Selection::Range {
                from: at("2026-01-01T00:00:00Z"),
                to: at("2026-01-10T00:00:00Z"),
            },
        )
        .not_before(Some(at("2026-01-03T00:00:00Z")))
        .before(Some(at("2026-01-06T00:00:00Z")))
        .before(Some(at("2026-01-05T12:00:00Z")));
        assert_eq!(
            times(&plan),
            [
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-05T00:00:00Z"
            ]
        );
        assert!(plan.describe_boundaries().contains("(inclusive)"));
        assert!(
            plan.describe_boundaries()
                .contains("none at or after 2026-01-05T12:00:00Z")
        );
    }

    #[test]
    fn explicit_sessions_must_belong_to_the_schedule() {
        let clock = ny("30 2 * * *");
        let ok = Plan::new(
            clock.clone(),
            Selection::List(vec![at("2026-03-07T07:30:00Z"), at("2026-03-08T07:00:00Z")]),
        );
        assert!(ok.validate().is_ok());
        assert_eq!(ok.count(), 2);
        let bad = Plan::new(clock, Selection::List(vec![at("2026-03-08T07:30:00Z")]));
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "2026-03-08T07:30:00Z is not a session of schedule \"30 2 * * *\" in America/New_York"
        );
    }

    #[test]
    fn a_session_set_selects_by_index_in_both_orders() {
        let clock = ZonedCron::new("*/10 * * * *", None).unwrap();
        let set_clock = clock.clone();
        let plan = Plan::new(
            clock,
            Selection::Set {
                clock: Box::new(set_clock),
                from: at("2026-01-01T00:00:00Z"),
                to: at("2026-01-01T01:00:00Z"),
                bits: [0u64, 2, 5].into_iter().collect(),
            },
        );
        assert_eq!(
            times(&plan),
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:50:00Z"
            ]
        );
        assert_eq!(
            times(&plan.with_order(Order::Descending)),
            [
                "2026-01-01T00:50:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn a_set_walk_resumes_where_it_stopped_in_both_orders() {
        let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-01-03T00:00:00Z"));
        let set = |order| {
            let clock = ZonedCron::new("*/10 * * * *", Some("Europe/London")).unwrap();
            Plan::new(
                clock.clone(),
                Selection::Set {
                    clock: Box::new(clock),
                    from,
                    to,
                    bits: (0..288u64).filter(|i| i % 7 == 0 || i % 5 == 1).collect(),
                },
            )
            .with_order(order)
        };
        for order in [Order::Ascending, Order::Descending] {
            let all: Vec<i64> = set(order).iter().map(|s| s.at).collect();
            let mut known = None;
            for (k, &at) in all.iter().enumerate() {
                // The slot from the last resume point, and from scratch.
                let slot = set(order).set_slot(at, known).unwrap();
                assert_eq!(Some(slot), set(order).set_slot(at, None), "{order:?} {k}");
                let tail = match order {
                    Order::Ascending => set(order).not_before(Some(at)),
                    Order::Descending => set(order).before(Some(at + 1)),
                };
                let resumed: Vec<i64> = tail.resuming(at, slot).iter().map(|s| s.at).collect();
                assert_eq!(resumed, all[k..], "{order:?} from {k}");
                known = Some((at, slot));
            }
            // A slot someone edited that is no session of the set is
            // ignored: the walk starts over.
            let tail = set(order).not_before(Some(all[3])).before(Some(all[3] + 1));
            assert_eq!(tail.resuming(all[3], 2).iter().count(), 1, "{order:?}");
        }
    }

    #[test]
    fn a_million_session_plan_is_counted_without_a_vector() {
        let plan = Plan::new(
            ny("* * * * *"),
            Selection::Count {
                from: at("2026-01-01T00:00:00Z"),
                count: 1_000_000,
            },
        );
        assert_eq!(plan.count(), 1_000_000);
        // Descending reads back in bounded chunks.
        let desc = plan.clone().with_order(Order::Descending);
        let first = desc.iter().next().unwrap();
        assert_eq!(first.at, plan.iter().last().unwrap().at);
    }

    /// Splitting exactly at a transition is where a resumed walk could
    /// lose a gap-shifted slot or repeat a fold.
    #[test]
    fn a_range_split_at_each_transition_is_its_two_halves() {
        let (from, to) = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        for zone in ZONES {
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            let transitions: Vec<i64> = tz
                .following(jiff::Timestamp::from_second(from).unwrap())
                .map(|t| t.timestamp().as_second())
                .take_while(|&t| t < to)
                .collect();
            for expr in EXPRS {
                let clock = ZonedCron::new(expr, Some(zone)).unwrap();
                for &t in &transitions {
                    for mid in [t - 1, t, t + 1] {
                        let (lo, hi) = (t - 3 * 86_400, t + 3 * 86_400);
                        let whole: Vec<i64> =
                            Plan::new(clock.clone(), Selection::Range { from: lo, to: hi })
                                .iter()
                                .map(|s| s.at)
                                .collect();
                        let mut halves: Vec<i64> =
                            Plan::new(clock.clone(), Selection::Range { from: lo, to: mid })
                                .iter()
                                .map(|s| s.at)
                                .collect();
                        halves.extend(
                            Plan::new(clock.clone(), Selection::Range { from: mid, to: hi })
                                .iter()
                                .map(|s| s.at),
                        );
                        assert_eq!(
                            whole,
                            halves,
                            "{expr} in {zone} split at {}",
                            rfc3339_utc(mid)
                        );
                        for &s in &whole {
                            assert!(clock.is_session(s), "{expr} in {zone}: {}", rfc3339_utc(s));
                        }
                    }
                }
            }
        }
    }

    const EXPRS: [&str; 8] = [
        "* * * * *",
        "*/15 * * * *",
        "0 * * * *",
        "30 2 * * *",
        "0,20,40 1-3 * * *",
        "15 2 * * 0",
        "0 0 1 * *",
        "45 1 * * 1-5",
    ];
    const ZONES: [&str; 5] = [
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
    ];

    fn arb_clock() -> impl Strategy<Value = ZonedCron> {
        (0..EXPRS.len(), 0..ZONES.len())
            .prop_map(|(e, z)| ZonedCron::new(EXPRS[e], Some(ZONES[z])).unwrap())
    }

    /// Spans around the 2026 transitions of the zones above, and plain ones.
    fn arb_span() -> impl Strategy<Value = (i64, i64)> {
        let base = at("2026-01-01T00:00:00Z");
        (0i64..365 * 86_400, 60i64..10 * 86_400)
            .prop_map(move |(a, len)| (base + a, base + a + len))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn sessions_increase_stay_in_bounds_and_match_the_cron((clock, (from, to)) in (arb_clock(), arb_span())) {
            let plan = Plan::new(clock.clone(), Selection::Range { from, to });
            let mut prev = None;
            let mut n = 0u64;
            for s in plan.iter() {
                prop_assert!(s.at >= from && s.at < to);
                if let Some(p) = prev { prop_assert!(s.at > p, "not increasing"); }
                prev = Some(s.at);
                n += 1;
                let local = super::super::calendar::Civil::from_local_seconds_ceil(s.local_seconds());
                let cron = super::super::cron::Cron::parse(clock.expr()).unwrap();
                if !cron.matches(local) {
                    // Only a fixed-time slot moved out of a gap may differ:
                    // it sits exactly on a transition.
                    prop_assert!(!clock.is_wildcard());
                    prop_assert_ne!(clock.zone().offset_at(s.at - 1), s.offset);
                }
            }
            prop_assert_eq!(n, plan.count());
        }

        #[test]
        fn a_range_is_its_two_halves((clock, (from, to)) in (arb_clock(), arb_span()), cut in 0.0f64..1.0) {
            let mid = from + ((to - from) as f64 * cut) as i64;
            let whole: Vec<i64> = Plan::new(clock.clone(), Selection::Range { from, to }).iter().map(|s| s.at).collect();
            let mut halves: Vec<i64> = Plan::new(clock.clone(), Selection::Range { from, to: mid }).iter().map(|s| s.at).collect();
            halves.extend(Plan::new(clock, Selection::Range { from: mid, to }).iter().map(|s| s.at));
            prop_assert_eq!(whole, halves);
        }

        #[test]
        fn descending_is_ascending_reversed((clock, (from, to)) in (arb_clock(), arb_span()), count in 1u64..500) {
            for selection in [Selection::Range { from, to }, Selection::Count { from, count }] {
                let plan = Plan::new(clock.clone(), selection);
                let mut asc: Vec<i64> = plan.iter().map(|s| s.at).collect();
                let desc: Vec<i64> = plan.clone().with_order(Order::Descending).iter().map(|s| s.at).collect();
                asc.reverse();
                prop_assert_eq!(asc, desc);
            }
        }

        #[test]
        fn count_is_the_length_of_the_iteration((clock, (from, _)) in (arb_clock(), arb_span()), count in 1u64..300) {
            let plan = Plan::new(clock, Selection::Count { from, count });
            prop_assert_eq!(plan.iter().count() as u64, plan.count());
            prop_assert_eq!(plan.count(), count);
        }
    }
}
