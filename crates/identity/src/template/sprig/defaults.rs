//! Sprig's defaults and JSON functions: `default`, `empty`, `coalesce`, `compact`, `toJson`, `ternary`, ….

use gtmpl::{FuncError, Value};

use crate::template::value::{arg, as_list, exactly, fail, from_json, is_empty, str_arg, to_json};

/// `default DEFAULT GIVEN`: GIVEN unless it is empty (a missing label, "", 0, false, an empty list).
pub fn default(args: &[Value]) -> Result<Value, FuncError> {
    let d = arg(args, 0, "default")?;
    Ok(match args.get(1) {
        Some(given) if !is_empty(given) => given.clone(),
        _ => d.clone(),
    })
}

pub fn empty(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(args.first().is_none_or(is_empty)))
}

pub fn coalesce(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.iter().find(|a| !is_empty(a)).cloned().unwrap_or(Value::Nil))
}

pub fn all(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(args.iter().all(|a| !is_empty(a))))
}

pub fn any(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(args.iter().any(|a| !is_empty(a))))
}

pub fn must_compact(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "compact")?;
    let list = as_list(&args[0]).ok_or_else(|| fail("compact: not a list"))?;
    Ok(Value::Array(list.iter().filter(|v| !is_empty(v)).cloned().collect()))
}

/// `compact LIST`: the non-empty items.
pub fn compact(args: &[Value]) -> Result<Value, FuncError> {
    must_compact(args)
}

pub fn must_from_json(args: &[Value]) -> Result<Value, FuncError> {
    let text = str_arg(args, 0, "fromJson")?;
    serde_json::from_str(&text).map(|j| from_json(&j)).map_err(|e| fail(format!("fromJson: {e}")))
}

/// `fromJson STRING`; invalid JSON gives nil.
pub fn from_json_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(must_from_json(args).unwrap_or(Value::Nil))
}

/// Go's encoder escapes `<`, `>` and `&` inside strings (the only place they can appear).
fn html_escaped(s: String) -> String {
    s.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

fn json_of(args: &[Value], func: &str) -> Result<serde_json::Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(to_json(&args[0]))
}

pub fn must_to_json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(html_escaped(json_of(args, "toJson")?.to_string())))
}

pub fn must_to_pretty_json(args: &[Value]) -> Result<Value, FuncError> {
    let pretty = serde_json::to_string_pretty(&json_of(args, "toPrettyJson")?).map_err(|e| fail(e.to_string()))?;
    Ok(Value::from(html_escaped(pretty)))
}

pub fn must_to_raw_json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(json_of(args, "toRawJson")?.to_string()))
}

/// `toJson`, `toPrettyJson`, `toRawJson`: every value has a JSON form here, so they equal their `must` forms.
pub fn to_json_fn(args: &[Value]) -> Result<Value, FuncError> {
    must_to_json(args)
}

pub fn to_pretty_json(args: &[Value]) -> Result<Value, FuncError> {
    must_to_pretty_json(args)
}

pub fn to_raw_json(args: &[Value]) -> Result<Value, FuncError> {
    must_to_raw_json(args)
}

/// `ternary IF_TRUE IF_FALSE CONDITION`.
pub fn ternary(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "ternary")?;
    Ok(if matches!(args[2], Value::Bool(true)) { args[0].clone() } else { args[1].clone() })
}

/// `deepCopy`: values are copied anyway; kept for Sprig's name.
pub fn deep_copy(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "deepCopy")?;
    Ok(args[0].clone())
}
