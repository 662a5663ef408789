//! Cron expressions as Kubernetes CronJob reads them (robfig/cron's
//! standard parser), matched against local wall-clock minutes.
//!
//! Time zones and daylight saving are not this module's business: it only
//! answers "which wall-clock minute matches next". `clock` turns those
//! minutes into instants.

use std::fmt;

use super::calendar::{Civil, days_in_month};

/// A parsed five-field cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    days_of_week: u8,
    /// The field was `*` or `?` (robfig's "star bit"): with either day
    /// field starred a day must match both fields, otherwise either.
    dom_star: bool,
    dow_star: bool,
    /// The minute or hour field starts with `*`: ISC cron's "wildcard"
    /// schedules, which follow every real instant across daylight saving.
    wildcard: bool,
}

/// Why an expression is not a schedule, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {expr:?}: {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

#[derive(Clone, Copy)]
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
    },
    // 7 is accepted as Sunday, as in Vixie and ISC cron.
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &DAY_NAMES,
    },
];

fn expand_macro(expr: &str) -> Result<&'static str, String> {
    Ok(match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        m if m.starts_with("@every") => {
            return Err(
                "@every is not supported by Schedules; write a five-field expression".into(),
            );
        }
        _ => {
            return Err(format!(
                "unknown macro {expr:?}; use one of {}",
                crate::api::CRON_MACROS.join(", ")
            ));
        }
    })
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(err(
                "set the time zone in timeZone, not with TZ= in the schedule".into(),
            ));
        }
        let text = if trimmed.starts_with('@') {
            expand_macro(trimmed).map_err(err)?
        } else {
            trimmed
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let mut bits = [0u64; 5];
        let mut stars = [false; 5];
        for (i, (field, spec)) in fields.iter().zip(FIELDS).enumerate() {
            let (b, star) = parse_field(field, spec)
                .map_err(|r| err(format!("{} field {field:?}: {r}", spec.name)))?;
            bits[i] = b;
            stars[i] = star;
        }
        // Sunday may be written 7.
        let dow = (bits[4] | (bits[4] >> 7)) & 0x7f;
        let cron = Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: dow as u8,
            dom_star: stars[2],
            dow_star: stars[4],
            wildcard: fields[0].starts_with(['*', '?']) || fields[1].starts_with(['*', '?']),
        };
        cron.check_satisfiable().map_err(err)?;
        Ok(cron)
    }

    /// ISC cron's "wildcard" schedule: the minute or hour field starts with
    /// `*`. Such a schedule runs at every real instant whose local time
    /// matches; any other is a "fixed-time" schedule.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// A schedule that can never fire (`0 0 30 2 *`) is an error, found
    /// here rather than by searching forever.
    fn check_satisfiable(&self) -> Result<(), String> {
        // Only a restricted day-of-month under a starred day-of-week must
        // match on its own: with neither starred either field is enough,
        // and a starred day-of-month leaves every weekday possible.
        if self.dom_star || !self.dow_star {
            return Ok(());
        }
        let possible = (1..=12u8).any(|m| {
            self.months & (1 << m) != 0
                && (1..=days_in_month(2000, m)).any(|d| self.days_of_month & (1 << d) != 0)
        });
        if possible {
            Ok(())
        } else {
            Err(
                "can never run: no month of the month field has a day of the day-of-month field"
                    .into(),
            )
        }
    }

    fn day_matches(&self, day: u8, weekday: u8) -> bool {
        let dom = self.days_of_month & (1 << day) != 0;
        let dow = self.days_of_week & (1 << weekday) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether this wall-clock minute matches.
    pub fn matches(&self, c: Civil) -> bool {
        self.minutes & (1 << c.minute) != 0
            && self.hours & (1 << c.hour) != 0
            && self.months & (1 << c.month) != 0
            && self.day_matches(c.day, c.weekday())
    }

    /// The first matching wall-clock minute at or after `from`, or `None`
    /// when none comes within ten years (only possible for a schedule that
    /// matches nothing past `from`; a Feb 29 schedule fires at least every
    /// eight years).
    pub fn next_at_or_after(&self, from: Civil) -> Option<Civil> {
        let limit = from.year.saturating_add(10);
        let mut c = from;
        loop {
            if c.year > limit {
                return None;
            }
            if self.months & (1 << c.month) == 0 {
                match next_bit(u64::from(self.months), c.month + 1, 12) {
                    Some(m) => c = Civil::new(c.year, m, 1, 0, 0),
                    None => c = Civil::new(c.year + 1, 1, 1, 0, 0),
                }
                continue;
            }
            let dim = days_in_month(c.year, c.month);
            let mut weekday = c.weekday();
            let mut day = c.day;
            while day <= dim && !self.day_matches(day, weekday) {
                day += 1;
                weekday = (weekday + 1) % 7;
            }
            if day > dim {
                c = c.next_month_start();
                continue;
            }
            if day != c.day {
                c = Civil::new(c.year, c.month, day, 0, 0);
            }
            let Some(hour) = next_bit(u64::from(self.hours), c.hour, 23) else {
                c = c.next_day_start();
                continue;
            };
            if hour != c.hour {
                c.hour = hour;
                c.minute = 0;
            }
            match next_bit(self.minutes, c.minute, 59) {
                Some(minute) => {
                    c.minute = minute;
                    return Some(c);
                }
                None if c.hour < 23 => {
                    c.hour += 1;
                    c.minute = 0;
                }
                None => c = c.next_day_start(),
            }
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "minutes={:#x} hours={:#x} dom={:#x} months={:#x} dow={:#x}",
            self.minutes, self.hours, self.days_of_month, self.months, self.days_of_week
        )
    }
}

/// The lowest set bit at or above `from` and at or below `max`.
fn next_bit(mask: u64, from: u8, max: u8) -> Option<u8> {
    if from > max || from >= 64 {
        return None;
    }
    let above = mask >> from;
    if above == 0 {
        return None;
    }
    let bit = from + above.trailing_zeros() as u8;
    (bit <= max).then_some(bit)
}

/// One field: a comma-separated list of `*`, `?`, `N`, `N-M`, each with an
/// optional `/step`. Returns the bits and whether the field is a star.
fn parse_field(field: &str, spec: FieldSpec) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in field.split(',') {
        let (b, s) = parse_range(part, spec)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn parse_range(part: &str, spec: FieldSpec) -> Result<(u64, bool), String> {
    let mut range_step = part.split('/');
    let range = range_step.next().unwrap_or_default();
    let step = range_step.next();
    if range_step.next().is_some() {
        return Err(format!("too many slashes in {part:?}"));
    }
    // Day-of-week runs 0-6 in CronJob's parser (robfig/cron): `*` and the
    // open end of `N/step` stop at Saturday. 7 for Sunday is accepted only
    // when written.
    let open_end = if spec.name == "day-of-week" {
        6
    } else {
        spec.max
    };
    let (mut start, end, mut star) = if range == "*" || range == "?" {
        (spec.min, open_end, true)
    } else {
        let mut bounds = range.split('-');
        let low = parse_value(bounds.next().unwrap_or_default(), spec)?;
        let high = match bounds.next() {
            Some(h) => Some(parse_value(h, spec)?),
            None => None,
        };
        if bounds.next().is_some() {
            return Err(format!("too many hyphens in {part:?}"));
        }
        // "N/step" means "N-max/step", as robfig/cron reads it.
        let high = high.unwrap_or(if step.is_some() { open_end } else { low });
        (low, high, false)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let n: u32 = s
                .parse()
                .map_err(|_| format!("step {s:?} is not a positive number"))?;
            if n == 0 {
                return Err("step must be a positive number, not 0".into());
            }
            if n > 1 {
                star = false;
            }
            n
        }
    };
    if start < spec.min {
        return Err(format!("{start} is below the minimum {}", spec.min));
    }
    if end > spec.max {
        return Err(format!("{end} is above the maximum {}", spec.max));
    }
    if start > end {
        return Err(format!("range start {start} is beyond its end {end}"));
    }
    let mut bits = 0u64;
    while start <= end {
        bits |= 1 << start;
        start += step;
    }
    Ok((bits, star))
}

fn parse_value(text: &str, spec: FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + spec.min);
    }
    text.parse::<u32>().map_err(|_| {
        if spec.names.is_empty() {
            format!("{text:?} is not a number")
        } else {
            format!(
                "{text:?} is not a number or a name ({})",
                spec.names.join(", ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(y: i32, mo: u8, d: u8, h: u8, mi: u8) -> Civil {
        Civil::new(y, mo, d, h, mi)
    }

    fn next(expr: &str, from: Civil) -> Option<Civil> {
        Cron::parse(expr).unwrap().next_at_or_after(from)
    }

    fn err(expr: &str) -> String {
        Cron::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn rejects_with_the_field_and_the_reason() {
        let cases = [
            ("* * * *", "expected exactly 5 fields"),
            ("0 * * * * *", "found 6"),
            (
                "60 * * * *",
                "minute field \"60\": 60 is above the maximum 59",
            ),
            (
                "* 24 * * *",
                "hour field \"24\": 24 is above the maximum 23",
            ),
            (
                "* * 0 * *",
                "day-of-month field \"0\": 0 is below the minimum 1",
            ),
            ("* * 32 * *", "day-of-month field \"32\""),
            ("* * * 13 *", "month field \"13\""),
            (
                "* * * * 8",
                "day-of-week field \"8\": 8 is above the maximum 7",
            ),
            ("*/0 * * * *", "step must be a positive number"),
            ("5-1 * * * *", "range start 5 is beyond its end 1"),
            ("1-2-3 * * * *", "too many hyphens"),
            ("*/2/3 * * * *", "too many slashes"),
            ("x * * * *", "minute field \"x\": \"x\" is not a number"),
            ("* * * foo *", "not a number or a name (jan"),
            ("1,,2 * * * *", "empty value"),
            ("@every 5m", "@every is not supported"),
            ("@reboot", "unknown macro"),
            ("TZ=UTC 0 * * * *", "timeZone"),
            ("0 0 30 2 *", "can never run"),
            ("0 0 31 4,6,9,11 *", "can never run"),
        ];
        for (expr, want) in cases {
            let got = err(expr);
            assert!(got.contains(want), "{expr:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn accepts_what_cronjob_accepts() {
        for expr in [
            "* * * * *",
            "*/15 * * * *",
            "0 0 29 2 *",
            "0 0 30 2 1",
            "5/15 * * * *",
            "0 9-17/2 * * MON-FRI",
            "0 0 * JAN,jul sun",
            "0 0 ? * ?",
            "0 0 * * 7",
            "  1  2  3  4  5 ",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ] {
            Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn wildcard_is_decided_by_the_minute_and_hour_fields() {
        for (expr, wildcard) in [
            ("* * * * *", true),
            ("*/15 * * * *", true),
            ("0 * * * *", true),
            ("0 */2 * * *", true),
            ("30 2 * * *", false),
            ("0,30 1-3 * * *", false),
            ("@hourly", true),
            ("@daily", false),
        ] {
            assert_eq!(Cron::parse(expr).unwrap().is_wildcard(), wildcard, "{expr}");
        }
    }

    /// Cases from robfig/cron's `TestActivation` and `TestNext` (the ones
    /// with five fields; their DST cases differ from our rule on purpose
    /// and live in `clock`).
    #[test]
    fn robfig_activation_cases() {
        // (time, spec, expected match)
        let cases: &[(Civil, &str, bool)] = &[
            (c(2012, 7, 9, 15, 0), "0/15 * * * *", true),
            // Day-of-week "1/2" is Monday, Wednesday, Friday: robfig's
            // range ends at 6, so it never adds Sunday (7).
            (c(2012, 7, 9, 0, 0), "0 0 * * 1/2", true),
            (c(2012, 7, 11, 0, 0), "0 0 * * 1/2", true),
            (c(2012, 7, 13, 0, 0), "0 0 * * 1/2", true),
            (c(2012, 7, 8, 0, 0), "0 0 * * 1/2", false),
            (c(2012, 7, 15, 0, 0), "0 0 * * 1/2", false),
            (c(2012, 7, 14, 0, 0), "0 0 * * 1/2", false),
            (c(2012, 7, 8, 0, 0), "0 0 * * 5-7", true),
            (c(2012, 7, 9, 15, 45), "0/15 * * * *", true),
            (c(2012, 7, 9, 15, 40), "0/15 * * * *", false),
            (c(2012, 7, 9, 15, 5), "5/15 * * * *", true),
            (c(2012, 7, 9, 15, 20), "5/15 * * * *", true),
            (c(2012, 7, 9, 15, 50), "5/15 * * * *", true),
            (c(2012, 7, 15, 15, 0), "0/15 * * Jul *", true),
            (c(2012, 7, 15, 15, 0), "0/15 * * Jun *", false),
            (c(2012, 7, 15, 8, 30), "30 08 ? Jul Sun", true),
            (c(2012, 7, 15, 8, 30), "30 08 15 Jul ?", true),
            (c(2012, 7, 16, 8, 30), "30 08 ? Jul Sun", false),
            (c(2012, 7, 16, 8, 30), "30 08 15 Jul ?", false),
            (c(2012, 7, 9, 15, 0), "@hourly", true),
            (c(2012, 7, 9, 15, 4), "@hourly", false),
            (c(2012, 7, 9, 0, 0), "@daily", true),
            (c(2012, 7, 9, 0, 0), "@weekly", false),
            (c(2012, 7, 8, 0, 0), "@weekly", true),
            (c(2012, 7, 8, 1, 0), "@weekly", false),
            (c(2012, 7, 1, 0, 0), "@monthly", true),
            (c(2012, 1, 1, 0, 0), "@yearly", true),
            // Day of month and day of week: either, unless one is a star.
            (c(2012, 7, 1, 0, 0), "* * 1,15 * Sun", true),
            (c(2012, 7, 15, 0, 0), "* * 1,15 * Sun", true),
            (c(2012, 7, 8, 0, 0), "* * 1,15 * Sun", true),
            (c(2012, 7, 1, 0, 0), "* * * * Mon", false),
            (c(2012, 7, 15, 0, 0), "* * */10 * Sun", true),
            (c(2012, 7, 1, 0, 0), "* * 1,15 * *", true),
            (c(2012, 7, 2, 0, 0), "* * 1,15 * *", false),
            (c(2012, 7, 1, 0, 0), "* * * * 1,5", false),
            (c(2012, 7, 15, 0, 0), "* * */2 * Sun", true),
        ];
        for (t, spec, want) in cases {
            assert_eq!(
                Cron::parse(spec).unwrap().matches(*t),
                *want,
                "{spec} at {t:?}"
            );
        }
    }

    #[test]
    fn robfig_next_cases() {
        // (from, spec, expected next) with robfig's strictly-after semantics
        // expressed as at-or-after the following minute.
        let cases: &[(Civil, &str, Option<Civil>)] = &[
            (
                c(2012, 7, 9, 14, 45),
                "0/15 * * * *",
                Some(c(2012, 7, 9, 15, 0)),
            ),
            (
                c(2012, 7, 9, 14, 59),
                "0/15 * * * *",
                Some(c(2012, 7, 9, 15, 0)),
            ),
            // Wrap around hours
            (
                c(2012, 7, 9, 15, 45),
                "20-35/15 * * * *",
                Some(c(2012, 7, 9, 16, 20)),
            ),
            // Wrap around days
            (
                c(2012, 7, 9, 23, 46),
                "*/15 * * * *",
                Some(c(2012, 7, 10, 0, 0)),
            ),
            (
                c(2012, 7, 9, 23, 45),
                "20-35/15 * * * *",
                Some(c(2012, 7, 10, 0, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 * * * *",
                Some(c(2012, 7, 10, 0, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 1/2 * * *",
                Some(c(2012, 7, 10, 1, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 10-12 * * *",
                Some(c(2012, 7, 10, 10, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 1/2 */2 * *",
                Some(c(2012, 7, 11, 1, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 * 9-20 * *",
                Some(c(2012, 7, 10, 0, 20)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "20-35/15 * 9-20 Jul *",
                Some(c(2012, 7, 10, 0, 20)),
            ),
            // Wrap around months
            (
                c(2012, 7, 9, 23, 35),
                "0 0 9 Apr-Oct ?",
                Some(c(2012, 8, 9, 0, 0)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "0 0 */5 Apr,Aug,Oct Mon",
                Some(c(2012, 8, 1, 0, 0)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "0 0 */5 Oct Mon",
                Some(c(2012, 10, 1, 0, 0)),
            ),
            // Wrap around years
            (
                c(2012, 7, 9, 23, 35),
                "0 0 * Feb Mon",
                Some(c(2013, 2, 4, 0, 0)),
            ),
            (
                c(2012, 7, 9, 23, 35),
                "0 0 * Feb Mon/2",
                Some(c(2013, 2, 1, 0, 0)),
            ),
            // Wrap around minute, hour, day, month, and year
            (
                c(2012, 12, 31, 23, 59),
                "* * * * *",
                Some(c(2013, 1, 1, 0, 0)),
            ),
            // Leap year
            (
                c(2012, 7, 9, 23, 35),
                "0 0 29 Feb ?",
                Some(c(2016, 2, 29, 0, 0)),
            ),
            // Sunday written as 7
            (
                c(2026, 11, 23, 0, 1),
                "0 0 * * 7",
                Some(c(2026, 11, 29, 0, 0)),
            ),
            // The eight-year gap around 2100 for Feb 29.
            (
                c(2096, 3, 1, 0, 0),
                "0 0 29 2 *",
                Some(c(2104, 2, 29, 0, 0)),
            ),
        ];
        for (from, spec, want) in cases {
            assert_eq!(next(spec, from.succ()), *want, "{spec} after {from:?}");
        }
    }

    #[test]
    fn next_agrees_with_minute_by_minute_matching() {
        for spec in [
            "*/7 3,5 * * *",
            "0 0 1,15 * Fri",
            "15 10 * * 1-5",
            "0 12 */3 2 *",
            "59 23 31 * *",
        ] {
            let cron = Cron::parse(spec).unwrap();
            let mut t = c(2023, 12, 25, 0, 0);
            for _ in 0..20 {
                let n = cron.next_at_or_after(t).unwrap();
                let mut walk = t;
                while walk < n {
                    assert!(!cron.matches(walk), "{spec}: skipped {walk:?}");
                    walk = walk.succ();
                }
                assert!(cron.matches(n), "{spec}: {n:?}");
                t = n.succ();
            }
        }
    }
}
