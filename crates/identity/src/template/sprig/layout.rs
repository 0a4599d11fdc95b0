//! Go's reference-time layouts (`2006-01-02T15:04:05Z07:00`) and durations (`1h2m3.5s`), formatted and parsed as
//! Go's `time` package does.

use jiff::Zoned;
use jiff::tz::{Offset, TimeZone};

pub const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TzName,
    /// Numeric offset: (Z for UTC, colons, seconds, hours only).
    Offset {
        z: bool,
        colon: bool,
        seconds: bool,
        short: bool,
    },
    /// Fractional seconds: digits, and whether trailing zeros are trimmed (`.999`).
    Frac {
        digits: usize,
        trim: bool,
        sep: char,
    },
}

/// The next layout element at the start of `s`: the chunk and its length in bytes.
fn next_chunk(s: &str) -> Option<(Chunk, usize)> {
    let b = s.as_bytes();
    let starts = |p: &str| s.starts_with(p);
    let offset = |z: bool, colon: bool, seconds: bool, short: bool| Chunk::Offset { z, colon, seconds, short };
    Some(match b.first()? {
        b'J' if starts("January") => (Chunk::LongMonth, 7),
        b'J' if starts("Jan") => (Chunk::Month, 3),
        b'M' if starts("Monday") => (Chunk::LongWeekDay, 6),
        b'M' if starts("Mon") => (Chunk::WeekDay, 3),
        b'M' if starts("MST") => (Chunk::TzName, 3),
        b'0' if matches!(b.get(1), Some(b'1'..=b'6')) => (
            match b[1] {
                b'1' => Chunk::ZeroMonth,
                b'2' => Chunk::ZeroDay,
                b'3' => Chunk::ZeroHour12,
                b'4' => Chunk::ZeroMinute,
                b'5' => Chunk::ZeroSecond,
                _ => Chunk::Year,
            },
            2,
        ),
        b'0' if starts("002") => (Chunk::ZeroYearDay, 3),
        b'1' if starts("15") => (Chunk::Hour, 2),
        b'1' => (Chunk::NumMonth, 1),
        b'2' if starts("2006") => (Chunk::LongYear, 4),
        b'2' => (Chunk::Day, 1),
        b'_' if starts("__2") => (Chunk::UnderYearDay, 3),
        b'_' if starts("_2") && !starts("_2006") => (Chunk::UnderDay, 2),
        b'3' => (Chunk::Hour12, 1),
        b'4' => (Chunk::Minute, 1),
        b'5' => (Chunk::Second, 1),
        b'P' if starts("PM") => (Chunk::PM, 2),
        b'p' if starts("pm") => (Chunk::Pm, 2),
        b'-' if starts("-07:00:00") => (offset(false, true, true, false), 9),
        b'-' if starts("-070000") => (offset(false, false, true, false), 7),
        b'-' if starts("-07:00") => (offset(false, true, false, false), 6),
        b'-' if starts("-0700") => (offset(false, false, false, false), 5),
        b'-' if starts("-07") => (offset(false, false, false, true), 3),
        b'Z' if starts("Z07:00:00") => (offset(true, true, true, false), 9),
        b'Z' if starts("Z070000") => (offset(true, false, true, false), 7),
        b'Z' if starts("Z07:00") => (offset(true, true, false, false), 6),
        b'Z' if starts("Z0700") => (offset(true, false, false, false), 5),
        b'Z' if starts("Z07") => (offset(true, false, false, true), 3),
        b'.' | b',' if matches!(b.get(1), Some(b'0' | b'9')) => {
            let digit = b[1];
            let n = b[1..].iter().take_while(|&&c| c == digit).count();
            if b.get(1 + n).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            (Chunk::Frac { digits: n, trim: digit == b'9', sep: b[0] as char }, 1 + n)
        }
        _ => return None,
    })
}

/// Splits a layout into literal text and chunks.
fn chunks(layout: &str) -> Vec<Result<Chunk, &str>> {
    let mut out = Vec::new();
    let (mut i, mut lit) = (0, 0);
    while i < layout.len() {
        if let Some((chunk, len)) = next_chunk(&layout[i..]) {
            if lit < i {
                out.push(Err(&layout[lit..i]));
            }
            out.push(Ok(chunk));
            i += len;
            lit = i;
        } else {
            i += layout[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if lit < layout.len() {
        out.push(Err(&layout[lit..]));
    }
    out
}

fn write_offset(out: &mut String, secs: i32, z: bool, colon: bool, seconds: bool, short: bool) {
    if z && secs == 0 {
        out.push('Z');
        return;
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    out.push(sign);
    out.push_str(&format!("{:02}", a / 3600));
    if !short {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", a / 60 % 60));
    }
    if seconds {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", a % 60));
    }
}

/// Formats `t` with a Go layout.
pub fn format(t: &Zoned, layout: &str) -> String {
    let mut out = String::with_capacity(layout.len() + 8);
    let (year, month, day) = (t.year(), usize::try_from(t.month()).unwrap_or(1), t.day());
    let (hour, minute, second) = (t.hour(), t.minute(), t.second());
    let hour12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    for chunk in chunks(layout) {
        let chunk = match chunk {
            Err(lit) => {
                out.push_str(lit);
                continue;
            }
            Ok(c) => c,
        };
        let s = match chunk {
            Chunk::LongMonth => MONTHS[(month + 11) % 12].to_owned(),
            Chunk::Month => MONTHS[(month + 11) % 12][..3].to_owned(),
            Chunk::NumMonth => month.to_string(),
            Chunk::ZeroMonth => format!("{month:02}"),
            Chunk::LongWeekDay => DAYS[usize::from(t.weekday().to_sunday_zero_offset().unsigned_abs())].to_owned(),
            Chunk::WeekDay => DAYS[usize::from(t.weekday().to_sunday_zero_offset().unsigned_abs())][..3].to_owned(),
            Chunk::Day => day.to_string(),
            Chunk::UnderDay => format!("{day:>2}"),
            Chunk::ZeroDay => format!("{day:02}"),
            Chunk::UnderYearDay => format!("{:>3}", t.day_of_year()),
            Chunk::ZeroYearDay => format!("{:03}", t.day_of_year()),
            Chunk::Hour => format!("{hour:02}"),
            Chunk::Hour12 => hour12.to_string(),
            Chunk::ZeroHour12 => format!("{hour12:02}"),
            Chunk::Minute => minute.to_string(),
            Chunk::ZeroMinute => format!("{minute:02}"),
            Chunk::Second => second.to_string(),
            Chunk::ZeroSecond => format!("{second:02}"),
            Chunk::LongYear => format!("{year:04}"),
            Chunk::Year => format!("{:02}", year.rem_euclid(100)),
            Chunk::PM => (if hour >= 12 { "PM" } else { "AM" }).to_owned(),
            Chunk::Pm => (if hour >= 12 { "pm" } else { "am" }).to_owned(),
            Chunk::TzName => {
                let info = t.time_zone().to_offset_info(t.timestamp());
                let abbr = info.abbreviation();
                if abbr.chars().any(char::is_alphabetic) {
                    abbr.to_owned()
                } else {
                    let mut s = String::new();
                    write_offset(&mut s, t.offset().seconds(), false, false, false, false);
                    s
                }
            }
            Chunk::Offset { z, colon, seconds, short } => {
                let mut s = String::new();
                write_offset(&mut s, t.offset().seconds(), z, colon, seconds, short);
                s
            }
            Chunk::Frac { digits, trim, sep } => {
                let nanos = format!("{:09}", t.subsec_nanosecond());
                let mut d = nanos[..digits.min(9)].to_owned();
                if trim {
                    d = d.trim_end_matches('0').to_owned();
                    if d.is_empty() {
                        continue;
                    }
                }
                format!("{sep}{d}")
            }
        };
        out.push_str(&s);
    }
    out
}

fn take_digits(s: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

fn take_name<'a>(s: &'a str, names: &[&str], short: bool) -> Option<(usize, &'a str)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let name = if short { &name[..3] } else { name };
        let head = s.get(..name.len())?;
        head.eq_ignore_ascii_case(name).then(|| (i, &s[name.len()..]))
    })
}

/// Parses `value` with a Go layout (`time.Parse`); times without a zone are UTC (the server's `Local`).
pub fn parse(layout: &str, value: &str) -> Option<Zoned> {
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut nanos) = (1i64, 1i64, 1i64, 0, 0, 0, 0i64);
    let mut pm: Option<bool> = None;
    let mut offset: Option<i32> = None;
    let mut rest = value;
    for chunk in chunks(layout) {
        let chunk = match chunk {
            Err(lit) => {
                rest = rest.strip_prefix(lit)?;
                continue;
            }
            Ok(c) => c,
        };
        match chunk {
            Chunk::LongMonth | Chunk::Month => {
                let (m, r) = take_name(rest, &MONTHS, chunk == Chunk::Month)?;
                month = i64::try_from(m).ok()? + 1;
                rest = r;
            }
            Chunk::LongWeekDay | Chunk::WeekDay => rest = take_name(rest, &DAYS, chunk == Chunk::WeekDay)?.1,
            Chunk::NumMonth | Chunk::ZeroMonth => {
                (month, rest) = take_digits(rest, if chunk == Chunk::ZeroMonth { 2 } else { 1 }, 2)?
            }
            Chunk::Day | Chunk::ZeroDay => {
                (day, rest) = take_digits(rest, if chunk == Chunk::ZeroDay { 2 } else { 1 }, 2)?
            }
            Chunk::UnderDay => (day, rest) = take_digits(rest.strip_prefix(' ').unwrap_or(rest), 1, 2)?,
            Chunk::UnderYearDay | Chunk::ZeroYearDay => rest = take_digits(rest.trim_start_matches(' '), 1, 3)?.1,
            Chunk::Hour => (hour, rest) = take_digits(rest, 2, 2)?,
            Chunk::Hour12 | Chunk::ZeroHour12 => (hour, rest) = take_digits(rest, 1, 2)?,
            Chunk::Minute | Chunk::ZeroMinute => (minute, rest) = take_digits(rest, 1, 2)?,
            Chunk::Second | Chunk::ZeroSecond => {
                (second, rest) = take_digits(rest, 1, 2)?;
                // Go accepts a fractional second after the seconds even when the layout has none.
                if let Some(frac) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(','))
                    && !layout.contains(".0")
                    && !layout.contains(".9")
                {
                    let n = frac.bytes().take_while(u8::is_ascii_digit).count();
                    if n > 0 {
                        nanos = format!("{:0<9}", &frac[..n.min(9)]).parse().ok()?;
                        rest = &frac[n..];
                    }
                }
            }
            Chunk::LongYear => (year, rest) = take_digits(rest, 4, 4)?,
            Chunk::Year => {
                let (y, r) = take_digits(rest, 2, 2)?;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
                rest = r;
            }
            Chunk::PM | Chunk::Pm => {
                let head = rest.get(..2)?;
                pm = Some(match head.to_ascii_uppercase().as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return None,
                });
                rest = &rest[2..];
            }
            Chunk::TzName => {
                let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return None;
                }
                if matches!(&rest[..n], "UTC" | "GMT") {
                    offset = Some(0);
                }
                rest = &rest[n..];
            }
            Chunk::Offset { z, colon, seconds, short } => {
                if z && let Some(r) = rest.strip_prefix('Z') {
                    offset = Some(0);
                    rest = r;
                    continue;
                }
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                rest = &rest[1..];
                let (h, mut r) = take_digits(rest, 2, 2)?;
                let mut secs = h * 3600;
                if !short {
                    if colon {
                        r = r.strip_prefix(':')?;
                    }
                    let (m, r2) = take_digits(r, 2, 2)?;
                    secs += m * 60;
                    r = r2;
                }
                if seconds {
                    if colon {
                        r = r.strip_prefix(':')?;
                    }
                    let (s, r2) = take_digits(r, 2, 2)?;
                    secs += s;
                    r = r2;
                }
                offset = Some(i32::try_from(sign * secs).ok()?);
                rest = r;
            }
            Chunk::Frac { digits, sep, .. } => {
                let Some(frac) = rest.strip_prefix(sep) else { continue };
                let n = frac.bytes().take_while(u8::is_ascii_digit).count();
                if chunk_is_fixed(chunk) && n != digits {
                    return None;
                }
                if n > 0 {
                    nanos = format!("{:0<9}", &frac[..n.min(9)]).parse().ok()?;
                }
                rest = &frac[n..];
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let dt = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        i32::try_from(nanos).ok()?,
    )
    .ok()?;
    let tz = match offset {
        Some(secs) => TimeZone::fixed(Offset::from_seconds(secs).ok()?),
        None => TimeZone::UTC,
    };
    dt.to_zoned(tz).ok()
}

fn chunk_is_fixed(c: Chunk) -> bool {
    matches!(c, Chunk::Frac { trim: false, .. })
}

/// Go's `Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn duration_string(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let frac = |value: u128, unit: u128| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let width = unit.ilog10() as usize;
            let digits = format!("{rest:0width$}");
            format!("{whole}.{}", digits.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = frac(u % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s}s"),
        _ => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Go's `time.ParseDuration`: `300ms`, `-1.5h`, `2h45m`; units ns, us (µs), ms, s, m, h.
pub fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if n == 0 {
            return None;
        }
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(|b| !(b.is_ascii_digit() || *b == b'.')).count();
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += number * unit;
    }
    if total > 9.3e18 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if neg { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_layouts_format_and_parse() {
        let t: Zoned = "2024-03-05T07:08:09.120+02:00[+02:00]".parse().unwrap();
        assert_eq!(format(&t, "2006-01-02T15:04:05Z07:00"), "2024-03-05T07:08:09+02:00");
        assert_eq!(format(&t, "Mon Jan _2 3:4:5 PM 06 -0700"), "Tue Mar  5 7:8:9 AM 24 +0200");
        assert_eq!(format(&t, "Monday, 02-January-2006 15:04:05.000 002"), "Tuesday, 05-March-2024 07:08:09.120 065");
        assert_eq!(format(&t, RFC3339_NANO), "2024-03-05T07:08:09.12+02:00");
        let utc = t.with_time_zone(TimeZone::UTC);
        assert_eq!(format(&utc, "2006-01-02T15:04:05Z07:00 MST"), "2024-03-05T05:08:09Z UTC");
        let p = parse("2006-01-02T15:04:05Z07:00", "2024-03-05T07:08:09+02:00").unwrap();
        assert_eq!(p.timestamp(), t.timestamp().round(jiff::Unit::Second).unwrap());
        let p = parse("2006-01-02 3:04PM", "2024-12-31 11:30PM").unwrap();
        assert_eq!(format(&p, "2006-01-02T15:04:05Z07:00"), "2024-12-31T23:30:00Z");
        assert!(parse("2006-01-02", "2024-13-01").is_none());
        assert!(parse("2006-01-02", "2024-01-01x").is_none());
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration_string(95_000_000_000), "1m35s");
        assert_eq!(duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(duration_string(1_500_000), "1.5ms");
        assert_eq!(duration_string(-2_500_000_000), "-2.5s");
        assert_eq!(duration_string(0), "0s");
        assert_eq!(parse_duration("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(parse_duration("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
