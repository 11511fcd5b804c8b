//! Wall-clock time where the gateway needs it: `created` stamps and budget periods.

/// Seconds since the Unix epoch (0 on a clock set before 1970).
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The civil (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// civil-from-days).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix milliseconds as RFC 3339 in UTC to the millisecond (`2026-12-02T21:04:05.123Z`), as
/// `humantime::format_rfc3339_millis` writes it, for years 0-9999. By hand, and each thread
/// keeps the last second's text: humantime's `Display` and the `String` it fills cost every
/// access-log line ~400 instructions, the date and time worked out afresh ~280.
pub(crate) fn rfc3339_millis(ms: i64) -> [u8; 24] {
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 24])> =
            const { std::cell::Cell::new((i64::MIN, [0; 24])) };
    }
    let second = ms.div_euclid(1000);
    let mut text = LAST.with(|last| match last.get() {
        (s, text) if s == second => text,
        _ => {
            let text = second_text(second);
            last.set((second, text));
            text
        }
    });
    put_digits(&mut text[20..23], ms.rem_euclid(1000));
    text
}

/// A second's RFC 3339 text, milliseconds zero.
fn second_text(second: i64) -> [u8; 24] {
    let (year, month, day) = civil(second.div_euclid(86_400));
    let in_day = second.rem_euclid(86_400);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text[0..4], year.clamp(0, 9999));
    put_digits(&mut text[5..7], i64::from(month));
    put_digits(&mut text[8..10], i64::from(day));
    put_digits(&mut text[11..13], in_day / 3600);
    put_digits(&mut text[14..16], in_day / 60 % 60);
    put_digits(&mut text[17..19], in_day % 60);
    text
}

/// `n` in decimal, zero-padded to fill `into`.
fn put_digits(into: &mut [u8], mut n: i64) {
    for digit in into.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A day count since 1970-01-01 as `YYYYMMDD`.
pub(crate) fn civil_date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}{m:02}{d:02}")
}

/// `YYYYMMDD` back to a day count since 1970-01-01 (days-from-civil).
pub(crate) fn day_of_date(date: &str) -> Option<i64> {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        date[..4].parse().ok()?,
        date[4..6].parse().ok()?,
        date[6..].parse().ok()?,
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_and_dates_go_both_ways() {
        assert_eq!(super::civil_date(0), "19700101");
        assert_eq!(super::civil_date(20_789), "20261202");
        for day in [0, 59, 60, 11_016, 20_789, 30_000] {
            assert_eq!(super::day_of_date(&super::civil_date(day)), Some(day));
        }
        assert_eq!(super::day_of_date("2026-12-"), None);
    }

    #[test]
    fn stamps_are_written_as_humantime_writes_them() {
        use std::time::{Duration, UNIX_EPOCH};
        for ms in [
            0,
            1,
            999,
            59_999,
            951_782_400_000,   // 2000-02-29
            1_764_713_045_123, // 2025-12-02T22:04:05.123
            1_764_713_045_999, // the same second again
            1_764_713_045_007,
            4_102_444_799_999, // 2099-12-31T23:59:59.999
            253_402_300_799_999,
        ] {
            let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
            assert_eq!(
                std::str::from_utf8(&super::rfc3339_millis(ms)).unwrap(),
                humantime::format_rfc3339_millis(at).to_string()
            );
        }
    }
}
