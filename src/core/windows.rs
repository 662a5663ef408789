//! Execution windows: the local times, per weekday, when a Backfill may
//! start new Jobs. A window whose end is earlier than its start runs past
//! midnight into the next day. Window edges follow the fixed-time rule of
//! the schedule clock: an edge inside a spring-forward gap falls on the
//! first instant after the gap, an edge inside a fall-back hour on its
//! first occurrence.

use super::calendar::{Civil, civil_from_days, weekday_from_days};
use super::zoned_cron::{Zone, ZonedCronError};
use crate::api::{ExecutionWindows, Window};

/// Minutes after local midnight: `start` 0..1440, `end` 1..=1440; `end <=
/// start` means the window ends on the next day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DailyWindow {
    start: u16,
    end: u16,
}

#[derive(Clone, Debug)]
pub struct Windows {
    zone: Zone,
    /// Index 0 = Sunday.
    days: [Vec<DailyWindow>; 7],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Zone(#[from] ZonedCronError),
    #[error("executionWindows.{day}: {value:?} is not a time of day as HH:MM")]
    BadTime { day: &'static str, value: String },
}

/// A span of instants when Jobs may start, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSpan {
    pub start: i64,
    pub end: i64,
}

impl Windows {
    /// The windows of a Backfill; their zone defaults to the Schedule's.
    /// `None` when no window is given: Jobs may start at any time.
    pub fn from_spec(
        spec: Option<&ExecutionWindows>,
        default_zone: Option<&str>,
    ) -> Result<Option<Self>, WindowError> {
        let Some(spec) = spec else { return Ok(None) };
        let zone = Zone::get(spec.time_zone.as_deref().or(default_zone))?;
        let named: [(&'static str, &Vec<Window>); 7] = [
            ("sunday", &spec.sunday),
            ("monday", &spec.monday),
            ("tuesday", &spec.tuesday),
            ("wednesday", &spec.wednesday),
            ("thursday", &spec.thursday),
            ("friday", &spec.friday),
            ("saturday", &spec.saturday),
        ];
        let mut days: [Vec<DailyWindow>; 7] = Default::default();
        for (i, (day, windows)) in named.into_iter().enumerate() {
            for w in windows {
                let parse = |value: &str| {
                    parse_hhmm(value).ok_or_else(|| WindowError::BadTime {
                        day,
                        value: value.to_string(),
                    })
                };
                let (start, end) = (parse(&w.start)?, parse(&w.end)?);
                if start >= 1_440 || start == end {
                    return Err(WindowError::BadTime {
                        day,
                        value: w.start.clone(),
                    });
                }
                days[i].push(DailyWindow { start, end });
            }
        }
        if days.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        Ok(Some(Self { zone, days }))
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The window spans that begin on the local date `days` (days since
    /// the epoch), as instants.
    fn spans_of_day(&self, days: i64) -> impl Iterator<Item = OpenSpan> + '_ {
        let weekday = weekday_from_days(days) as usize;
        self.days[weekday].iter().filter_map(move |w| {
            let start = self.instant(days, w.start);
            let end_day = if w.end <= w.start { days + 1 } else { days };
            let end = self.instant(end_day, w.end);
            (end > start).then_some(OpenSpan { start, end })
        })
    }

    fn instant(&self, days: i64, minute_of_day: u16) -> i64 {
        // 24:00 is the next day's midnight.
        let (days, minute_of_day) = if minute_of_day >= 1_440 {
            (days + 1, minute_of_day - 1_440)
        } else {
            (days, minute_of_day)
        };
        let (y, m, d) = civil_from_days(days);
        let local = Civil::new(
            y,
            m,
            d,
            (minute_of_day / 60) as u8,
            (minute_of_day % 60) as u8,
        );
        self.zone.resolve_fixed(local).0
    }

    /// The open span containing `at`, if any.
    pub fn open_at(&self, at: i64) -> Option<OpenSpan> {
        let today = self.zone.local_seconds(at).div_euclid(86_400);
        // A window that began yesterday may run past midnight.
        (today - 1..=today)
            .flat_map(|d| self.spans_of_day(d))
            .filter(|s| s.start <= at && at < s.end)
            .max_by_key(|s| s.end)
    }

    pub fn is_open(&self, at: i64) -> bool {
        self.open_at(at).is_some()
    }

    /// The first instant at or after `at` when a window is open: `at`
    /// itself when one is open now.
    pub fn next_open(&self, at: i64) -> Option<i64> {
        if self.is_open(at) {
            return Some(at);
        }
        let today = self.zone.local_seconds(at).div_euclid(86_400);
        (today..=today + 8)
            .flat_map(|d| self.spans_of_day(d))
            .filter(|s| s.start > at)
            .map(|s| s.start)
            .min()
    }
}

fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1_440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::zoned_cron::at;

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: start.into(),
            end: end.into(),
        }
    }

    fn windows(zone: &str, f: impl FnOnce(&mut ExecutionWindows)) -> Windows {
        let mut spec = ExecutionWindows {
            time_zone: Some(zone.into()),
            ..Default::default()
        };
        f(&mut spec);
        Windows::from_spec(Some(&spec), None).unwrap().unwrap()
    }

    #[test]
    fn no_windows_means_always() {
        assert!(Windows::from_spec(None, None).unwrap().is_none());
        let empty = ExecutionWindows::default();
        assert!(
            Windows::from_spec(Some(&empty), Some("UTC"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_day_window_opens_and_closes() {
        // 2026-11-23 is a Monday.
        let w = windows("UTC", |s| s.monday = vec![window("09:00", "17:00")]);
        assert!(!w.is_open(at("2026-11-23T08:59:59Z")));
        assert!(w.is_open(at("2026-11-23T09:00:00Z")));
        assert!(w.is_open(at("2026-11-23T16:59:59Z")));
        assert!(!w.is_open(at("2026-11-23T17:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-11-23T17:00:00Z")),
            Some(at("2026-11-30T09:00:00Z"))
        );
        assert_eq!(
            w.next_open(at("2026-11-23T10:00:00Z")),
            Some(at("2026-11-23T10:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_midnight_runs_into_the_next_day() {
        let w = windows("UTC", |s| s.friday = vec![window("22:00", "02:00")]);
        // Friday 2026-11-27 22:00 to Saturday 02:00.
        assert!(!w.is_open(at("2026-11-27T21:59:00Z")));
        assert!(w.is_open(at("2026-11-27T23:30:00Z")));
        assert!(w.is_open(at("2026-11-28T01:59:00Z")));
        assert!(!w.is_open(at("2026-11-28T02:00:00Z")));
        // Saturday's own windows (none) do not reopen it.
        assert_eq!(
            w.next_open(at("2026-11-28T03:00:00Z")),
            Some(at("2026-12-04T22:00:00Z"))
        );
        // The whole day, with 24:00.
        let all_day = windows("UTC", |s| s.sunday = vec![window("00:00", "24:00")]);
        assert!(all_day.is_open(at("2026-11-29T23:59:59Z")));
        assert!(!all_day.is_open(at("2026-11-30T00:00:00Z")));
    }

    #[test]
    fn windows_follow_local_time_across_daylight_saving() {
        // New York, Sunday 2026-03-08: 02:00-03:00 does not exist.
        let w = windows("America/New_York", |s| {
            s.sunday = vec![window("02:30", "04:00")];
            s.saturday = vec![window("23:00", "01:30")];
        });
        // The start falls in the gap: it opens at 03:00 EDT (07:00Z).
        assert!(!w.is_open(at("2026-03-08T06:59:00Z")));
        assert!(w.is_open(at("2026-03-08T07:00:00Z")));
        assert!(!w.is_open(at("2026-03-08T08:00:00Z"))); // 04:00 EDT
        assert_eq!(
            w.next_open(at("2026-03-08T06:45:00Z")),
            Some(at("2026-03-08T07:00:00Z"))
        );
        // Saturday 23:00 EST to Sunday 01:30 EST.
        assert!(w.is_open(at("2026-03-08T04:30:00Z")));
        assert!(!w.is_open(at("2026-03-08T06:30:00Z")));

        // Sunday 2026-11-01: 01:00-02:00 happens twice; a window from 01:15
        // to 01:45 is open once, during the first (EDT) occurrence.
        let fold = windows("America/New_York", |s| {
            s.sunday = vec![window("01:15", "01:45")]
        });
        assert!(fold.is_open(at("2026-11-01T05:20:00Z"))); // 01:20 EDT
        assert!(!fold.is_open(at("2026-11-01T06:20:00Z"))); // 01:20 EST
        assert_eq!(
            fold.next_open(at("2026-11-01T05:50:00Z")),
            Some(at("2026-11-08T06:15:00Z"))
        );
    }

    #[test]
    fn windows_in_a_half_hour_zone() {
        // Lord Howe, Sunday 2026-10-04: 02:00-02:30 does not exist.
        let w = windows("Australia/Lord_Howe", |s| {
            s.sunday = vec![window("02:00", "03:00")]
        });
        assert!(w.is_open(at("2026-10-03T15:30:00Z"))); // 02:30 +11
        assert!(!w.is_open(at("2026-10-03T16:00:00Z"))); // 03:00 +11
        assert_eq!(
            w.next_open(at("2026-10-03T12:00:00Z")),
            Some(at("2026-10-03T15:30:00Z"))
        );
    }

    #[test]
    fn bad_times_and_zones_are_reported() {
        let bad = ExecutionWindows {
            time_zone: Some("UTC".into()),
            tuesday: vec![window("9:00", "10:00")],
            ..Default::default()
        };
        assert_eq!(
            Windows::from_spec(Some(&bad), None)
                .unwrap_err()
                .to_string(),
            "executionWindows.tuesday: \"9:00\" is not a time of day as HH:MM"
        );
        let zone = ExecutionWindows {
            time_zone: Some("Nowhere/Special".into()),
            tuesday: vec![window("09:00", "10:00")],
            ..Default::default()
        };
        assert!(
            Windows::from_spec(Some(&zone), None)
                .unwrap_err()
                .to_string()
                .contains("unknown time zone \"Nowhere/Special\"")
        );
    }
}
