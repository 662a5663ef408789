//! Sessions as instants: a cron expression read in an IANA time zone,
//! with ISC cron's daylight-saving rule.
//!
//! - A *wildcard* schedule (minute or hour field starts with `*`) runs at
//!   every real instant whose local time matches: a slot inside a
//!   spring-forward gap does not exist, a slot in a fall-back hour exists
//!   twice.
//! - A *fixed-time* schedule runs a slot inside a gap once, at the first
//!   instant after the gap, and a slot in a fall-back hour once, at its
//!   first occurrence.
//!
//! Instants are Unix seconds (`i64`) inside the core; conversion to
//! `jiff::Timestamp` and RFC 3339 happens at the edges.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::calendar::Civil;
use super::cron::{Cron, CronError};

/// A session searched for this long without one is taken as "no more
/// sessions": it bounds the walk for schedules whose only matches fall
/// into gaps that stop existing.
const SEARCH_HORIZON_SECONDS: i64 = 100 * 366 * 86_400;

/// Why a schedule cannot be evaluated: the messages users see in a
/// `Stalled` condition and from `backfill-operator plan`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZonedCronError {
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error("unknown time zone {0:?}: use an IANA name such as America/New_York or UTC")]
    UnknownZone(String),
}

/// An IANA time zone, with the fixed-time rule for local times that occur
/// zero or two times.
#[derive(Clone, Debug)]
pub struct Zone {
    tz: TimeZone,
    name: String,
}

impl Zone {
    /// The zone named `name`; `None` or an empty name is UTC.
    pub fn get(name: Option<&str>) -> Result<Self, ZonedCronError> {
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("UTC");
        let tz = TimeZone::get(name).map_err(|_| ZonedCronError::UnknownZone(name.to_string()))?;
        Ok(Self {
            tz,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// UTC offset in seconds at instant `at`.
    pub fn offset_at(&self, at: i64) -> i64 {
        i64::from(self.tz.to_offset(timestamp(at)).seconds())
    }

    /// The span around `at` in which the offset does not change: its
    /// offset and the instant of the next transition (exclusive end).
    fn segment_at(&self, at: i64) -> Segment {
        let offset = self.offset_at(at);
        let end = self
            .tz
            .following(timestamp(at))
            .map(|t| t.timestamp().as_second())
            .find(|&t| t > at)
            .unwrap_or(i64::MAX);
        Segment { offset, end }
    }

    /// The instant of a local time under the fixed-time rule: inside a gap,
    /// the first instant after the gap; inside a fold, the first occurrence.
    /// Returns the instant and the offset in force then.
    pub fn resolve_fixed(&self, local: Civil) -> (i64, i64) {
        let secs = local.local_seconds();
        let dt = DateTime::new(
            local.year as i16,
            local.month as i8,
            local.day as i8,
            local.hour as i8,
            local.minute as i8,
            0,
            0,
        );
        let offset = match dt {
            Ok(dt) => self.tz.to_ambiguous_timestamp(dt).offset(),
            // Outside jiff's range (years beyond ±9999): read as UTC.
            Err(_) => return (secs, 0),
        };
        match offset {
            AmbiguousOffset::Unambiguous { offset } => {
                let off = i64::from(offset.seconds());
                (secs - off, off)
            }
            AmbiguousOffset::Fold { before, .. } => {
                let off = i64::from(before.seconds());
                (secs - off, off)
            }
            AmbiguousOffset::Gap { after, .. } => {
                // The gap's local times lie between the transition read
                // with the old offset and read with the new one; the
                // transition is the first real instant after the gap.
                let earliest = secs - i64::from(after.seconds());
                let seg = self.segment_at(earliest);
                (seg.end, self.offset_at(seg.end))
            }
        }
    }

    /// RFC 3339 in this zone, e.g. `2026-03-08T03:00:00-04:00`.
    pub fn rfc3339(&self, at: i64) -> String {
        timestamp(at)
            .to_zoned(self.tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// The local wall-clock reading of `at` in seconds, read as UTC
    /// (`at + offset`).
    pub fn local_seconds(&self, at: i64) -> i64 {
        at + self.offset_at(at)
    }
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    offset: i64,
    end: i64,
}

/// A schedule's sessions: a cron expression in a zone.
#[derive(Clone, Debug)]
pub struct ZonedCron {
    cron: Cron,
    zone: Zone,
    expr: String,
}

/// One session: its instant and the zone's offset then (so its local time
/// is `at + offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Session {
    pub at: i64,
    pub offset: i64,
}

impl Session {
    pub fn local_seconds(self) -> i64 {
        self.at + self.offset
    }
}

impl ZonedCron {
    pub fn new(expr: &str, zone: Option<&str>) -> Result<Self, ZonedCronError> {
        let cron = Cron::parse(expr)?;
        let zone = Zone::get(zone)?;
        Ok(Self {
            cron,
            zone,
            expr: expr.trim().to_string(),
        })
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn is_wildcard(&self) -> bool {
        self.cron.is_wildcard()
    }

    /// Sessions at or after `from`, ascending, without end.
    pub fn sessions_from(&self, from: i64) -> Sessions<'_> {
        Sessions {
            clock: self,
            after: from.saturating_sub(1),
            segment: None,
            cursor: None,
            day: (Civil::new(1970, 1, 1, 0, 0), 0),
        }
    }

    /// The first session strictly after `at`.
    pub fn next_after(&self, at: i64) -> Option<Session> {
        self.sessions_from(at.saturating_add(1)).next()
    }

    /// Whether `at` is a session of this schedule.
    pub fn is_session(&self, at: i64) -> bool {
        self.sessions_from(at).next().is_some_and(|s| s.at == at)
    }

    /// The last session strictly before `at`, searching back in doubling
    /// steps so a minutely and a yearly schedule both answer quickly.
    pub fn previous_before(&self, at: i64) -> Option<Session> {
        let mut span = 86_400i64;
        while span <= SEARCH_HORIZON_SECONDS {
            let from = at.saturating_sub(span);
            if let Some(s) = self.sessions_from(from).take_while(|s| s.at < at).last() {
                return Some(s);
            }
            span *= 2;
        }
        None
    }
}

/// The iterator behind [`ZonedCron::sessions_from`]. Within a span of constant
/// offset the walk is pure calendar arithmetic; the zone is consulted once
/// per transition.
#[derive(Clone, Debug)]
pub struct Sessions<'a> {
    clock: &'a ZonedCron,
    /// The next session is strictly after this instant.
    after: i64,
    segment: Option<Segment>,
    /// Where the wall-clock search resumes (valid within `segment` for
    /// wildcard schedules, always for fixed-time ones).
    cursor: Option<Civil>,
    /// The local midnight of the last session and its seconds, so a
    /// minutely walk does calendar arithmetic once a day.
    day: (Civil, i64),
}

impl Sessions<'_> {
    fn next_wildcard(&mut self) -> Option<Session> {
        let cron = &self.clock.cron;
        let start = self.after;
        loop {
            if self.after.saturating_sub(start) > SEARCH_HORIZON_SECONDS {
                return None;
            }
            let probe = self.after.checked_add(1)?;
            let seg = match self.segment {
                Some(seg) if probe < seg.end => seg,
                _ => {
                    self.cursor = None;
                    self.clock.zone.segment_at(probe)
                }
            };
            let from = match self.cursor {
                Some(c) => c,
                None => Civil::from_local_seconds_ceil(probe + seg.offset),
            };
            let local = cron.next_at_or_after(from)?;
            let at = self.local_seconds(local) - seg.offset;
            if at < seg.end {
                self.after = at;
                self.segment = Some(seg);
                self.cursor = Some(local.succ());
                return Some(Session {
                    at,
                    offset: seg.offset,
                });
            }
            // The match lies past the next transition: resume there, with
            // the new offset.
            self.after = seg.end - 1;
            self.segment = None;
        }
    }

    fn local_seconds(&mut self, local: Civil) -> i64 {
        let (day, secs) = &mut self.day;
        if (day.year, day.month, day.day) != (local.year, local.month, local.day) {
            *day = Civil::new(local.year, local.month, local.day, 0, 0);
            *secs = day.local_seconds();
        }
        *secs + i64::from(local.hour) * 3_600 + i64::from(local.minute) * 60
    }

    fn next_fixed(&mut self) -> Option<Session> {
        let cron = &self.clock.cron;
        let zone = &self.clock.zone;
        let start = self.after;
        let mut from = match self.cursor {
            Some(c) => c,
            None => {
                // Read `probe` with the smaller of the offsets around it:
                // when it is exactly the end of a gap, the gap's slots
                // (which resolve to it) lie before its own reading.
                let probe = self.after.checked_add(1)?;
                let offset = zone.offset_at(probe).min(zone.offset_at(probe - 1));
                Civil::from_local_seconds_ceil(probe + offset)
            }
        };
        loop {
            let local = cron.next_at_or_after(from)?;
            let (at, offset) = zone.resolve_fixed(local);
            from = local.succ();
            if at > self.after {
                self.after = at;
                self.cursor = Some(from);
                return Some(Session { at, offset });
            }
            // Several slots of one gap land on the same instant, and a
            // search resumed inside a fold meets slots already passed.
            if at.saturating_sub(start) > SEARCH_HORIZON_SECONDS {
                return None;
            }
        }
    }
}

impl Iterator for Sessions<'_> {
    type Item = Session;

    fn next(&mut self) -> Option<Session> {
        if self.clock.cron.is_wildcard() {
            self.next_wildcard()
        } else {
            self.next_fixed()
        }
    }
}

/// Unix seconds to a `Timestamp`, clamped to jiff's range.
pub fn timestamp(at: i64) -> Timestamp {
    Timestamp::from_second(at).unwrap_or(if at < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Unix seconds of an API timestamp: the inverse of [`time`].
pub fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

/// Unix seconds as an API timestamp.
pub fn time(at: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(timestamp(at))
}

/// Unix seconds of an RFC 3339 instant, for tests.
#[cfg(test)]
pub fn at(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_second()
}

/// RFC 3339 in UTC, e.g. `2026-03-08T07:00:00Z`.
pub fn rfc3339_utc(at: i64) -> String {
    timestamp(at).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions in `[from, to)` as UTC RFC 3339 strings.
    fn plan(expr: &str, zone: &str, from: &str, to: &str) -> Vec<String> {
        let clock = ZonedCron::new(expr, Some(zone)).unwrap();
        let to = at(to);
        clock
            .sessions_from(at(from))
            .take_while(|s| s.at < to)
            .map(|s| rfc3339_utc(s.at))
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_zone_is_named() {
        let err = ZonedCron::new("* * * * *", Some("Mars/Olympus_Mons")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Mars/Olympus_Mons\": use an IANA name such as America/New_York or UTC"
        );
        assert_eq!(
            ZonedCron::new("0 0 * * *", None).unwrap().zone().name(),
            "UTC"
        );
    }

    // America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z);
    // 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).

    #[test]
    fn new_york_fixed_daily_runs_once_on_both_transition_days() {
        assert_eq!(
            plan(
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T00:00:00Z",
                "2026-03-10T00:00:00Z"
            ),
            strs(&[
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 02:30 does not exist: 03:00 EDT
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ])
        );
        assert_eq!(
            plan(
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            strs(&[
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // first 01:30, EDT; not again at EST
                "2026-11-02T06:30:00Z", // 01:30 EST
            ])
        );
    }

    #[test]
    fn new_york_hourly_skips_the_gap_and_repeats_the_fold() {
        assert_eq!(
            plan(
                "0 * * * *",
                "America/New_York",
                "2026-03-08T05:00:00Z",
                "2026-03-08T09:00:00Z"
            ),
            strs(&[
                "2026-03-08T05:00:00Z", // 00:00 EST
                "2026-03-08T06:00:00Z", // 01:00 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT (02:00 never happened)
                "2026-03-08T08:00:00Z", // 04:00 EDT
            ])
        );
        assert_eq!(
            plan(
                "0 * * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                "2026-11-01T08:00:00Z"
            ),
            strs(&[
                "2026-11-01T04:00:00Z", // 00:00 EDT
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST, again
                "2026-11-01T07:00:00Z", // 02:00 EST
            ])
        );
    }

    #[test]
    fn new_york_quarter_hourly_across_both_transitions() {
        assert_eq!(
            plan(
                "*/15 * * * *",
                "America/New_York",
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:31:00Z"
            ),
            strs(&[
                "2026-03-08T06:30:00Z", // 01:30 EST
                "2026-03-08T06:45:00Z", // 01:45 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-08T07:15:00Z",
                "2026-03-08T07:30:00Z",
            ])
        );
        assert_eq!(
            plan(
                "*/15 * * * *",
                "America/New_York",
                "2026-11-01T05:30:00Z",
                "2026-11-01T07:01:00Z"
            ),
            strs(&[
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:45:00Z", // 01:45 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T06:15:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T06:45:00Z",
                "2026-11-01T07:00:00Z", // 02:00 EST
            ])
        );
    }

    // Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST (01:00Z);
    // 2026-10-25 02:00 BST -> 01:00 GMT (01:00Z).

    #[test]
    fn london_fixed_daily_hourly_and_quarter_hourly() {
        assert_eq!(
            plan(
                "30 1 * * *",
                "Europe/London",
                "2026-03-28T00:00:00Z",
                "2026-03-31T00:00:00Z"
            ),
            strs(&[
                "2026-03-28T01:30:00Z", // 01:30 GMT
                "2026-03-29T01:00:00Z", // in the gap: 02:00 BST
                "2026-03-30T00:30:00Z", // 01:30 BST
            ])
        );
        assert_eq!(
            plan(
                "30 1 * * *",
                "Europe/London",
                "2026-10-24T00:00:00Z",
                "2026-10-27T00:00:00Z"
            ),
            strs(&[
                "2026-10-24T00:30:00Z", // 01:30 BST
                "2026-10-25T00:30:00Z", // first 01:30 (BST) only
                "2026-10-26T01:30:00Z", // 01:30 GMT
            ])
        );
        assert_eq!(
            plan(
                "0 * * * *",
                "Europe/London",
                "2026-03-28T23:00:00Z",
                "2026-03-29T03:00:00Z"
            ),
            strs(&[
                "2026-03-28T23:00:00Z",
                "2026-03-29T00:00:00Z", // 00:00 GMT
                "2026-03-29T01:00:00Z", // 02:00 BST
                "2026-03-29T02:00:00Z",
            ])
        );
        assert_eq!(
            plan(
                "0 * * * *",
                "Europe/London",
                "2026-10-24T23:00:00Z",
                "2026-10-25T03:00:00Z"
            ),
            strs(&[
                "2026-10-24T23:00:00Z", // 00:00 BST
                "2026-10-25T00:00:00Z", // 01:00 BST
                "2026-10-25T01:00:00Z", // 01:00 GMT
                "2026-10-25T02:00:00Z", // 02:00 GMT
            ])
        );
        assert_eq!(
            plan(
                "*/15 * * * *",
                "Europe/London",
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:16:00Z"
            ),
            strs(&[
                "2026-03-29T00:30:00Z",
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z", // 02:00 BST
                "2026-03-29T01:15:00Z",
            ])
        );
        assert_eq!(
            plan(
                "*/15 * * * *",
                "Europe/London",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:31:00Z"
            ),
            strs(&[
                "2026-10-25T00:30:00Z", // 01:30 BST
                "2026-10-25T00:45:00Z", // 01:45 BST
                "2026-10-25T01:00:00Z", // 01:00 GMT
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
            ])
        );
    }

    // Australia/Lord_Howe shifts by 30 minutes: 2026-04-05 02:00 +11 ->
    // 01:30 +10:30 (15:00Z on the 4th); 2026-10-04 02:00 +10:30 -> 02:30
    // +11 (15:30Z on the 3rd).

    #[test]
    fn lord_howe_half_hour_shift() {
        // Fixed daily at 02:15: inside the October gap it runs at 02:30.
        assert_eq!(
            plan(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2026-10-02T00:00:00Z",
                "2026-10-05T00:00:00Z"
            ),
            strs(&[
                "2026-10-02T15:45:00Z", // 02:15 +10:30
                "2026-10-03T15:30:00Z", // gap: 02:30 +11
                "2026-10-04T15:15:00Z", // 02:15 +11
            ])
        );
        // Fixed daily at 01:45: inside the April fold, first occurrence only.
        assert_eq!(
            plan(
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-03T00:00:00Z",
                "2026-04-06T00:00:00Z"
            ),
            strs(&[
                "2026-04-03T14:45:00Z", // 01:45 +11
                "2026-04-04T14:45:00Z", // first 01:45 (+11)
                "2026-04-05T15:15:00Z", // 01:45 +10:30
            ])
        );
        // Hourly: 02:00 on the October day never exists; in April the
        // half hour 01:30-02:00 repeats but holds no :00 slot.
        assert_eq!(
            plan(
                "0 * * * *",
                "Australia/Lord_Howe",
                "2026-10-03T14:00:00Z",
                "2026-10-03T17:00:00Z"
            ),
            strs(&[
                "2026-10-03T14:30:00Z", // 01:00 +10:30
                "2026-10-03T16:00:00Z", // 03:00 +11
            ])
        );
        assert_eq!(
            plan(
                "0 * * * *",
                "Australia/Lord_Howe",
                "2026-04-04T13:00:00Z",
                "2026-04-04T17:00:00Z"
            ),
            strs(&[
                "2026-04-04T13:00:00Z", // 00:00 +11
                "2026-04-04T14:00:00Z", // 01:00 +11
                "2026-04-04T15:30:00Z", // 02:00 +10:30
                "2026-04-04T16:30:00Z", // 03:00 +10:30
            ])
        );
        // Quarter-hourly: the October gap loses 02:00 and 02:15; the April
        // fold repeats 01:30 and 01:45.
        assert_eq!(
            plan(
                "*/15 * * * *",
                "Australia/Lord_Howe",
                "2026-10-03T15:15:00Z",
                "2026-10-03T15:46:00Z"
            ),
            strs(&[
                "2026-10-03T15:15:00Z", // 01:45 +10:30
                "2026-10-03T15:30:00Z", // 02:30 +11
                "2026-10-03T15:45:00Z", // 02:45 +11
            ])
        );
        assert_eq!(
            plan(
                "*/15 * * * *",
                "Australia/Lord_Howe",
                "2026-04-04T14:30:00Z",
                "2026-04-04T15:31:00Z"
            ),
            strs(&[
                "2026-04-04T14:30:00Z", // 01:30 +11
                "2026-04-04T14:45:00Z", // 01:45 +11
                "2026-04-04T15:00:00Z", // 01:30 +10:30
                "2026-04-04T15:15:00Z", // 01:45 +10:30
                "2026-04-04T15:30:00Z", // 02:00 +10:30
            ])
        );
    }

    #[test]
    fn several_gap_slots_run_once() {
        // 02:00, 02:20 and 02:40 all fall in New York's gap: one session.
        assert_eq!(
            plan(
                "0,20,40 2 * * *",
                "America/New_York",
                "2026-03-08T00:00:00Z",
                "2026-03-09T00:00:00Z"
            ),
            strs(&["2026-03-08T07:00:00Z"])
        );
    }

    #[test]
    fn previous_next_and_membership() {
        let clock = ZonedCron::new("30 2 * * *", Some("America/New_York")).unwrap();
        let s = at("2026-03-08T07:00:00Z");
        assert!(clock.is_session(s));
        assert!(!clock.is_session(s + 60));
        assert_eq!(
            clock.previous_before(s).unwrap().at,
            at("2026-03-07T07:30:00Z")
        );
        assert_eq!(clock.next_after(s).unwrap().at, at("2026-03-09T06:30:00Z"));
        let yearly = ZonedCron::new("0 0 29 2 *", None).unwrap();
        assert_eq!(
            yearly
                .previous_before(at("2027-01-01T00:00:00Z"))
                .unwrap()
                .at,
            at("2024-02-29T00:00:00Z")
        );
        assert_eq!(clock.zone().rfc3339(s), "2026-03-08T03:00:00-04:00");
    }
}
