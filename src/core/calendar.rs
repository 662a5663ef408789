//! Proleptic Gregorian calendar arithmetic on local ("civil") minutes.
//!
//! The cron search walks local wall-clock time field by field; these few
//! integer routines keep that walk free of allocation and of time-zone
//! lookups, which happen once per offset segment instead (see `clock`).

/// A local wall-clock minute: what a cron expression matches against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Civil {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
}

impl Civil {
    pub const fn new(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Self {
        Self {
            year,
            month,
            day,
            hour,
            minute,
        }
    }

    /// Seconds since the Unix epoch of this wall-clock time read as UTC.
    /// Subtracting a zone's offset gives the instant.
    pub fn local_seconds(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
    }

    /// The wall-clock minute containing `secs` (seconds since the epoch,
    /// read as UTC), rounded up to the next whole minute when `secs` is not
    /// on one.
    pub fn from_local_seconds_ceil(secs: i64) -> Self {
        let secs = secs.div_euclid(60) * 60 + if secs.rem_euclid(60) == 0 { 0 } else { 60 };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self::new(
            year,
            month,
            day,
            (rem / 3_600) as u8,
            ((rem % 3_600) / 60) as u8,
        )
    }

    /// The next wall-clock minute.
    pub fn succ(self) -> Self {
        let mut c = self;
        if c.minute < 59 {
            c.minute += 1;
            return c;
        }
        c.minute = 0;
        if c.hour < 23 {
            c.hour += 1;
            return c;
        }
        c.hour = 0;
        c.next_day_start()
    }

    /// Midnight of the following day.
    pub fn next_day_start(self) -> Self {
        let mut c = self;
        c.hour = 0;
        c.minute = 0;
        if c.day < days_in_month(c.year, c.month) {
            c.day += 1;
            return c;
        }
        c.day = 1;
        c.next_month_start()
    }

    /// Midnight of the first day of the following month.
    pub fn next_month_start(self) -> Self {
        if self.month < 12 {
            Self::new(self.year, self.month + 1, 1, 0, 0)
        } else {
            Self::new(self.year + 1, 1, 1, 0, 0)
        }
    }

    /// Day of the week, 0 = Sunday .. 6 = Saturday.
    pub fn weekday(self) -> u8 {
        weekday_from_days(days_from_civil(self.year, self.month, self.day))
    }
}

pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// 0 = Sunday; 1970-01-01 was a Thursday.
pub fn weekday_from_days(days: i64) -> u8 {
    (days + 4).rem_euclid(7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_round_trip_over_four_centuries() {
        for days in (-146_097 * 2..146_097 * 2).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn weekdays_and_month_lengths() {
        assert_eq!(Civil::new(2026, 11, 23, 0, 0).weekday(), 1); // a Monday
        assert_eq!(Civil::new(2000, 1, 1, 0, 0).weekday(), 6);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }

    #[test]
    fn successor_carries_through_year_end() {
        let c = Civil::new(2025, 12, 31, 23, 59).succ();
        assert_eq!(c, Civil::new(2026, 1, 1, 0, 0));
        assert_eq!(
            Civil::new(2024, 2, 28, 23, 59).succ(),
            Civil::new(2024, 2, 29, 0, 0)
        );
    }

    #[test]
    fn ceiling_rounds_up_to_whole_minutes() {
        let c = Civil::new(2026, 3, 8, 2, 30);
        assert_eq!(Civil::from_local_seconds_ceil(c.local_seconds()), c);
        assert_eq!(
            Civil::from_local_seconds_ceil(c.local_seconds() + 1),
            c.succ()
        );
        assert_eq!(
            Civil::from_local_seconds_ceil(-1),
            Civil::new(1970, 1, 1, 0, 0)
        );
    }
}
