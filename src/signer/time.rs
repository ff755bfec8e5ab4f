//! UTC calendar arithmetic for `x-amz-date`, without a date library.
//!
//! Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms, proleptic Gregorian.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `x-amz-date`: `YYYYMMDDTHHMMSSZ`. Its first eight bytes are the credential scope's date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmzDate([u8; 16]);

impl AmzDate {
    /// The time, truncated to the second. Times before 1970 read as the epoch.
    pub fn new(time: SystemTime) -> Self {
        let seconds = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let days = (seconds / 86_400) as i64;
        let of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut text = [b'0'; 16];
        put(&mut text[0..4], year as u64);
        put(&mut text[4..6], month as u64);
        put(&mut text[6..8], day as u64);
        text[8] = b'T';
        put(&mut text[9..11], of_day / 3600);
        put(&mut text[11..13], of_day / 60 % 60);
        put(&mut text[13..15], of_day % 60);
        text[15] = b'Z';
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, `T` and `Z` are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// `YYYYMMDD`, the date of the credential scope.
    pub fn date(&self) -> &str {
        &self.as_str()[..8]
    }
}

fn put(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses an `x-amz-date`, `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let (date, time) = (&text[..8], &text[9..15]);
    parse_rfc3339_utc(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..8],
        &time[..2],
        &time[2..4],
        &time[4..6]
    ))
}

/// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z` or fractional seconds and `Z` (RFC 3339 in UTC).
pub fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(bytes.get(range)?).ok()?.parse().ok()
    };
    let shape_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':'
        && matches!(bytes[bytes.len() - 1], b'Z' | b'z');
    if !shape_ok {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month as u32, day as u32) * 86_400
        + hour * 3600
        + minute * 60
        + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_same_instant() {
        let time = parse_rfc3339_utc("2015-08-30T12:36:00Z").unwrap();
        assert_eq!(AmzDate::new(time).as_str(), "20150830T123600Z");
        assert_eq!(AmzDate::new(time).date(), "20150830");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(time));
        assert_eq!(parse_amz_date("20150830 123600Z"), None);
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn leap_days_and_year_ends() {
        for (text, expected) in [
            ("2024-02-29T23:59:59Z", "20240229T235959Z"),
            ("2000-03-01T00:00:00.123Z", "20000301T000000Z"),
            ("1999-12-31T23:59:59Z", "19991231T235959Z"),
            ("2100-03-01T01:02:03Z", "21000301T010203Z"),
        ] {
            let time = parse_rfc3339_utc(text).unwrap();
            assert_eq!(AmzDate::new(time).as_str(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_utc_timestamp() {
        for text in [
            "",
            "2015-08-30",
            "2015-13-01T00:00:00Z",
            "2015-08-30T12:36:00+02:00",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339_utc(text), None, "{text}");
        }
    }
}
