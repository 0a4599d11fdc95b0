//! Go's view of template values: how `fmt` prints them, how `spf13/cast` (which Sprig uses) converts them, what
//! counts as empty, and the JSON mapping. Times, which gtmpl has no type for, are objects with one marker key.

use std::collections::HashMap;

use gtmpl::{FuncError, Value};
use gtmpl_value::Number;
use serde_json::Value as Json;

/// The key marking an object as a time (unix seconds); [`NANOS_KEY`] holds the sub-second part and [`ZONE_KEY`]
/// the zone (an IANA name, or an offset in seconds).
pub const TIME_KEY: &str = "\u{0}time";
const NANOS_KEY: &str = "\u{0}nanos";
const ZONE_KEY: &str = "\u{0}zone";

pub fn fail(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

pub fn time_value(t: &jiff::Zoned) -> Value {
    let zone = match t.time_zone().iana_name() {
        Some(name) => Value::from(name.to_owned()),
        None => Value::from(i64::from(t.offset().seconds())),
    };
    Value::Object(HashMap::from([
        (TIME_KEY.to_owned(), Value::from(t.timestamp().as_second())),
        (NANOS_KEY.to_owned(), Value::from(i64::from(t.timestamp().subsec_nanosecond()))),
        (ZONE_KEY.to_owned(), zone),
    ]))
}

/// The time a value holds: a time object, or (as Sprig's `date` accepts) a number of unix seconds.
pub fn as_time(v: &Value) -> Option<jiff::Zoned> {
    use jiff::tz::{Offset, TimeZone};
    let int = |v: Option<&Value>| if let Some(Value::Number(n)) = v { n.as_i64() } else { None };
    match v {
        Value::Object(o) => {
            let secs = int(o.get(TIME_KEY))?;
            let nanos = i32::try_from(int(o.get(NANOS_KEY)).unwrap_or(0)).ok()?;
            let zone = match o.get(ZONE_KEY) {
                Some(Value::String(z)) => TimeZone::get(z).unwrap_or(TimeZone::UTC),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .and_then(|s| i32::try_from(s).ok())
                    .and_then(|s| Offset::from_seconds(s).ok())
                    .map_or(TimeZone::UTC, TimeZone::fixed),
                _ => TimeZone::UTC,
            };
            Some(jiff::Timestamp::new(secs, nanos).ok()?.to_zoned(zone))
        }
        Value::Number(n) => {
            let secs = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
            Some(jiff::Timestamp::from_second(secs).ok()?.to_zoned(TimeZone::UTC))
        }
        _ => None,
    }
}

fn is_time(o: &HashMap<String, Value>) -> bool {
    o.contains_key(TIME_KEY)
}

/// Go's `%v` for a float64: shortest representation, exponent form below 1e-4 and from 1e6 on (`1e+06`).
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

fn go_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// Go's `Time.String()` without the monotonic clock reading: `2006-01-02 15:04:05.999999999 -0700 MST`.
fn go_time(t: &jiff::Zoned) -> String {
    super::sprig::layout::format(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

fn sorted(o: &HashMap<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = o.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// `fmt.Sprint` of one value (`[a b]`, `map[k:v]`); a missing value prints as nothing.
pub fn go_fmt(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => go_number(n),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(o) | Value::Map(o) => match as_time(v) {
            Some(t) if is_time(o) => go_time(&t),
            _ => {
                let items: Vec<String> = sorted(o).into_iter().map(|(k, v)| format!("{k}:{}", go_fmt(v))).collect();
                format!("map[{}]", items.join(" "))
            }
        },
        Value::Function(_) => String::new(),
    }
}

/// What an action prints: lists and maps as JSON (Kong Identity documents `${ list … }` rendering `["a"]`, which
/// its type inference then reads as an array), everything else as Go prints it.
pub fn printed(v: &Value) -> String {
    match v {
        Value::Array(_) => to_json(v).to_string(),
        Value::Object(o) | Value::Map(o) if !is_time(o) => to_json(v).to_string(),
        other => go_fmt(other),
    }
}

/// Sprig's `strval`.
pub fn strval(v: &Value) -> String {
    go_fmt(v)
}

fn parse_go_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = digits.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let parsed = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse().ok()
    };
    parsed.map(|n| if neg { n.wrapping_neg() } else { n })
}

/// `cast.ToInt64`: numbers truncated, strings parsed (with Go's base prefixes), booleans 0/1, anything else 0.
pub fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)).unwrap_or_else(|| {
            let f = n.as_f64().unwrap_or(0.0);
            if f.is_finite() { f as i64 } else { 0 }
        }),
        Value::String(s) => parse_go_int(s).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// `cast.ToFloat64`.
pub fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => {
            n.as_f64().or_else(|| n.as_i64().map(|i| i as f64)).or_else(|| n.as_u64().map(|u| u as f64)).unwrap_or(0.0)
        }
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// A float64 result. gtmpl stores integral floats as integers and truncates negative fractions (-0.5 becomes 0),
/// so those and floats beyond the integer range travel as their Go text, which every numeric function reads back.
pub fn float(f: f64) -> Value {
    if f.is_finite() && (f.fract() == 0.0 || f > 0.0) && f.abs() < 9.2e18 {
        Value::from(f)
    } else {
        Value::from(go_float(f))
    }
}

pub fn str_arg(args: &[Value], i: usize, func: &str) -> Result<String, FuncError> {
    args.get(i).map(strval).ok_or_else(|| FuncError::AtLeastXArgs(func.into(), i + 1))
}

pub fn arg<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a Value, FuncError> {
    args.get(i).ok_or_else(|| FuncError::AtLeastXArgs(func.into(), i + 1))
}

pub fn exactly(args: &[Value], n: usize, func: &str) -> Result<(), FuncError> {
    if args.len() == n { Ok(()) } else { Err(FuncError::ExactlyXArgs(func.into(), n)) }
}

/// Go's zero values: nil, "", 0, false, empty collections (Sprig's `empty`).
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0) || n.as_u64() == Some(0) || n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) | Value::Map(o) => o.is_empty(),
        Value::Function(_) => false,
    }
}

pub fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0)).map_or(Json::Null, Json::Number)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => match as_time(v) {
            Some(t) if is_time(o) => Json::String(super::sprig::layout::format(&t, super::sprig::layout::RFC3339_NANO)),
            _ => Json::Object(sorted(o).into_iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        },
    }
}

pub fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .unwrap_or_else(|| float(n.as_f64().unwrap_or(0.0))),
        Json::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// A list argument (Sprig accepts slices and arrays); `None` for anything else.
pub fn as_list(v: &Value) -> Option<&Vec<Value>> {
    if let Value::Array(a) = v { Some(a) } else { None }
}

pub fn as_map(v: &Value) -> Option<&HashMap<String, Value>> {
    match v {
        Value::Map(m) => Some(m),
        Value::Object(o) if !is_time(o) => Some(o),
        _ => None,
    }
}

/// Sprig's `strslice`: a list's items as strings (nil items dropped), or a single value as a one-item list.
pub fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter(|x| !matches!(x, Value::Nil | Value::NoValue)).map(strval).collect(),
        Value::Nil | Value::NoValue => Vec::new(),
        other => vec![strval(other)],
    }
}
