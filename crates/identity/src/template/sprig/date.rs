//! Sprig's date functions. `Local` is UTC: claims must not depend on the host's zone setting.

use gtmpl::{FuncError, Value};
use jiff::Zoned;
use jiff::tz::TimeZone;

use super::layout::{self, duration_string, parse_duration};
use crate::template::budget;
use crate::template::value::{arg, as_time, fail, str_arg, strval, time_value, to_i64};

fn now_zoned() -> Zoned {
    budget::now().to_zoned(TimeZone::UTC)
}

/// A time argument: a time, or unix seconds; anything else is now, as in Sprig.
fn time_or_now(v: Option<&Value>) -> Zoned {
    v.and_then(as_time).unwrap_or_else(now_zoned)
}

fn zone(name: &str) -> TimeZone {
    match name {
        "" | "UTC" | "Local" => TimeZone::UTC,
        other => TimeZone::get(other).unwrap_or(TimeZone::UTC),
    }
}

fn in_zone(layout: &str, t: &Zoned, zone_name: &str) -> Value {
    Value::from(layout::format(&t.with_time_zone(zone(zone_name)), layout))
}

pub fn now(_: &[Value]) -> Result<Value, FuncError> {
    Ok(time_value(&now_zoned()))
}

/// `date FORMAT TIME`.
pub fn date(args: &[Value]) -> Result<Value, FuncError> {
    Ok(in_zone(&str_arg(args, 0, "date")?, &time_or_now(args.get(1)), "Local"))
}

/// `dateInZone FORMAT TIME ZONE`.
pub fn date_in_zone(args: &[Value]) -> Result<Value, FuncError> {
    Ok(in_zone(&str_arg(args, 0, "dateInZone")?, &time_or_now(args.get(1)), &str_arg(args, 2, "dateInZone")?))
}

pub fn html_date(args: &[Value]) -> Result<Value, FuncError> {
    Ok(in_zone("2006-01-02", &time_or_now(args.first()), "Local"))
}

pub fn html_date_in_zone(args: &[Value]) -> Result<Value, FuncError> {
    Ok(in_zone("2006-01-02", &time_or_now(args.first()), &str_arg(args, 1, "htmlDateInZone")?))
}

fn modify(args: &[Value], func: &str) -> Result<Value, FuncError> {
    let t = as_time(arg(args, 1, func)?).ok_or_else(|| fail(format!("{func}: not a time")))?;
    let d = parse_duration(&str_arg(args, 0, func)?).ok_or_else(|| fail(format!("{func}: invalid duration")))?;
    let span = jiff::SignedDuration::from_nanos(i64::try_from(d).map_err(|_| fail("duration out of range"))?);
    let moved = t.checked_add(span).map_err(|e| fail(format!("{func}: {e}")))?;
    Ok(time_value(&moved))
}

/// `dateModify "-1.5h" TIME`: an invalid modifier leaves the time as it is.
pub fn date_modify(args: &[Value]) -> Result<Value, FuncError> {
    modify(args, "dateModify").or_else(|e| match args.get(1) {
        Some(t) if as_time(t).is_some() => Ok(t.clone()),
        _ => Err(e),
    })
}

pub fn must_date_modify(args: &[Value]) -> Result<Value, FuncError> {
    modify(args, "mustDateModify")
}

/// `duration SECONDS`: Go's duration string.
pub fn duration(args: &[Value]) -> Result<Value, FuncError> {
    let secs = match arg(args, 0, "duration")? {
        Value::String(s) => s.trim().parse::<i64>().unwrap_or(0),
        other => to_i64(other),
    };
    Ok(Value::from(duration_string(i128::from(secs) * 1_000_000_000)))
}

/// `durationRound D`: the duration in its largest unit (`2h`, `3mo`, `1y`).
pub fn duration_round(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "durationRound")?;
    let nanos: i128 = match v {
        Value::String(s) => parse_duration(s).unwrap_or(0),
        Value::Number(_) => i128::from(to_i64(v)),
        other => match as_time(other) {
            Some(t) => budget::now().as_nanosecond() - t.timestamp().as_nanosecond(),
            None => 0,
        },
    };
    let u = nanos.unsigned_abs();
    const SECOND: u128 = 1_000_000_000;
    let units: [(u128, &str); 6] = [
        (365 * 24 * 3600 * SECOND, "y"),
        (30 * 24 * 3600 * SECOND, "mo"),
        (24 * 3600 * SECOND, "d"),
        (3600 * SECOND, "h"),
        (60 * SECOND, "m"),
        (SECOND, "s"),
    ];
    let out = units
        .iter()
        .find(|(unit, _)| u >= *unit)
        .map_or_else(|| "0s".to_owned(), |(unit, s)| format!("{}{s}", u / unit));
    Ok(Value::from(out))
}

/// `ago TIME`: time since, rounded to the second.
pub fn ago(args: &[Value]) -> Result<Value, FuncError> {
    let t = time_or_now(args.first());
    let nanos = budget::now().as_nanosecond() - t.timestamp().as_nanosecond();
    let rounded = (nanos + if nanos >= 0 { 500_000_000 } else { -500_000_000 }) / 1_000_000_000 * 1_000_000_000;
    Ok(Value::from(duration_string(rounded)))
}

fn parse_date(args: &[Value], func: &str) -> Result<Zoned, FuncError> {
    let (layout, value) = (str_arg(args, 0, func)?, str_arg(args, 1, func)?);
    layout::parse(&layout, &value).ok_or_else(|| fail(format!("{func}: cannot parse {value:?} as {layout:?}")))
}

/// `toDate LAYOUT STRING`; an unparsable string gives Go's zero time.
pub fn to_date(args: &[Value]) -> Result<Value, FuncError> {
    Ok(time_value(
        &parse_date(args, "toDate")
            .unwrap_or_else(|_| jiff::civil::date(1, 1, 1).to_zoned(TimeZone::UTC).unwrap_or_else(|_| now_zoned())),
    ))
}

pub fn must_to_date(args: &[Value]) -> Result<Value, FuncError> {
    Ok(time_value(&parse_date(args, "mustToDate")?))
}

/// `unixEpoch TIME`: seconds, as a string.
pub fn unix_epoch(args: &[Value]) -> Result<Value, FuncError> {
    let t = as_time(arg(args, 0, "unixEpoch")?)
        .ok_or_else(|| fail(format!("unixEpoch: not a time: {}", strval(&args[0]))))?;
    Ok(Value::from(t.timestamp().as_second().to_string()))
}
