//! Sprig's conversions and string-list functions: `toString`, `atoi`, `int`, `seq`, `until`, `split`, `join`, ….

use std::collections::HashMap;

use gtmpl::{FuncError, Value};

use crate::template::budget;
use crate::template::value::{arg, exactly, float, str_arg, strslice, strval, to_f64, to_i64};

pub fn to_string(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "toString")?;
    Ok(Value::from(strval(&args[0])))
}

/// `atoi STRING`: decimal only; anything else is 0.
pub fn atoi(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "atoi")?;
    Ok(Value::from(strval(&args[0]).parse::<i64>().unwrap_or(0)))
}

/// `int`, `int64`: `cast.ToInt64`.
pub fn int(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(to_i64(arg(args, 0, "int")?)))
}

pub fn float64(args: &[Value]) -> Result<Value, FuncError> {
    Ok(float(to_f64(arg(args, 0, "float64")?)))
}

/// `toDecimal "0777"` is 511: an octal string's value.
pub fn to_decimal(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "toDecimal")?;
    Ok(Value::from(i64::from_str_radix(&strval(&args[0]), 8).unwrap_or(0)))
}

/// Sprig's `untilStep`, refusing lists past the item bound before building them.
fn until_step(start: i64, stop: i64, step: i64) -> Result<Vec<i64>, FuncError> {
    let span = i128::from(stop) - i128::from(start);
    if step == 0 || (span > 0) != (step > 0) || span == 0 {
        return Ok(Vec::new());
    }
    let n = span.unsigned_abs().div_ceil(u128::from(step.unsigned_abs()));
    budget::items(usize::try_from(n).unwrap_or(usize::MAX))?;
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i);
        let Some(next) = i.checked_add(step) else { break };
        i = next;
    }
    Ok(out)
}

fn ints(v: Vec<i64>) -> Value {
    Value::Array(v.into_iter().map(Value::from).collect())
}

/// `until 5` is `[0 1 2 3 4]`.
pub fn until(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "until")?;
    let n = to_i64(&args[0]);
    Ok(ints(until_step(0, n, if n < 0 { -1 } else { 1 })?))
}

/// `untilStep START STOP STEP`.
pub fn until_step_fn(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "untilStep")?;
    Ok(ints(until_step(to_i64(&args[0]), to_i64(&args[1]), to_i64(&args[2]))?))
}

/// `seq` as in bash, as a space-separated string: `seq 5`, `seq 2 5`, `seq 1 2 10`, `seq 5 -1 1`.
pub fn seq(args: &[Value]) -> Result<Value, FuncError> {
    let p: Vec<i64> = args.iter().map(to_i64).collect();
    let list = match p.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            until_step(1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let inc = if end < start { -1 } else { 1 };
            until_step(*start, end.saturating_add(inc), inc)?
        }
        [start, step, end] => {
            let inc = if end < start { -1 } else { 1 };
            if end < start && *step > 0 { Vec::new() } else { until_step(*start, end.saturating_add(inc), *step)? }
        }
        _ => Vec::new(),
    };
    Ok(Value::from(list.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")))
}

fn parts(sep: &str, s: &str, n: Option<usize>) -> Result<Vec<String>, FuncError> {
    let parts: Vec<String> = match (sep.is_empty(), n) {
        (true, None) => s.chars().map(String::from).collect(),
        (true, Some(n)) => {
            let c: Vec<char> = s.chars().collect();
            let mut v: Vec<String> = c.iter().take(n.saturating_sub(1)).map(|c| c.to_string()).collect();
            if c.len() >= n && n > 0 {
                v.push(c[n - 1..].iter().collect());
            }
            v
        }
        (false, None) => s.split(sep).map(str::to_owned).collect(),
        (false, Some(n)) => s.splitn(n, sep).map(str::to_owned).collect(),
    };
    budget::items(parts.len())?;
    Ok(parts)
}

fn indexed(parts: Vec<String>) -> Value {
    Value::Map(parts.into_iter().enumerate().map(|(i, p)| (format!("_{i}"), Value::from(p))).collect::<HashMap<_, _>>())
}

/// `split SEP STRING`: a dict `{_0: …, _1: …}`.
pub fn split(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "split")?;
    Ok(indexed(parts(&strval(&args[0]), &strval(&args[1]), None)?))
}

/// `splitn SEP N STRING`.
pub fn splitn(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "splitn")?;
    let n = to_i64(&args[1]);
    if n == 0 {
        return Ok(Value::Map(HashMap::new()));
    }
    let n = usize::try_from(n).ok();
    Ok(indexed(parts(&strval(&args[0]), &strval(&args[2]), n)?))
}

/// `splitList SEP STRING`: a list.
pub fn split_list(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "splitList")?;
    Ok(Value::Array(parts(&strval(&args[0]), &strval(&args[1]), None)?.into_iter().map(Value::from).collect()))
}

pub fn to_strings(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "toStrings")?;
    let list = match &args[0] {
        Value::Array(a) => a.iter().map(strval).collect(),
        other => strslice(other),
    };
    Ok(Value::Array(list.into_iter().map(Value::from).collect()))
}

/// `join SEP LIST`.
pub fn join(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "join")?;
    let sep = str_arg(args, 0, "join")?;
    let out = strslice(&args[1]).join(&sep);
    budget::bytes(out.len())?;
    Ok(Value::from(out))
}

/// `sortAlpha LIST`: the items as strings, sorted (a single value is a one-item list).
pub fn sort_alpha(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "sortAlpha")?;
    let mut list = strslice(&args[0]);
    list.sort();
    Ok(Value::Array(list.into_iter().map(Value::from).collect()))
}
