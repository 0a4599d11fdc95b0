//! Sprig's list functions. Lists are values, so `append` and friends return a new list; the `must` forms are the
//! same functions (a wrong argument type is an error either way, where Go's plain forms would panic).

use gtmpl::{FuncError, Value};

use crate::template::budget;
use crate::template::value::{arg, as_list, exactly, fail, to_i64};

fn list_arg<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a Vec<Value>, FuncError> {
    as_list(arg(args, i, func)?).ok_or_else(|| fail(format!("{func}: argument {} is not a list", i + 1)))
}

fn new_list(items: Vec<Value>) -> Result<Value, FuncError> {
    budget::items(items.len())?;
    Ok(Value::Array(items))
}

/// `list A B …` (also `tuple`).
pub fn list(args: &[Value]) -> Result<Value, FuncError> {
    new_list(args.to_vec())
}

/// `append LIST ITEM` (`mustAppend`).
pub fn append(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "append")?;
    let mut l = list_arg(args, 0, "append")?.clone();
    l.push(args[1].clone());
    new_list(l)
}

pub fn prepend(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "prepend")?;
    let l = list_arg(args, 0, "prepend")?;
    let mut out = Vec::with_capacity(l.len() + 1);
    out.push(args[1].clone());
    out.extend(l.iter().cloned());
    new_list(out)
}

fn with_list(args: &[Value], func: &str, f: impl Fn(&Vec<Value>) -> Value) -> Result<Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(f(list_arg(args, 0, func)?))
}

pub fn first(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "first", |l| l.first().cloned().unwrap_or(Value::Nil))
}

pub fn last(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "last", |l| l.last().cloned().unwrap_or(Value::Nil))
}

pub fn rest(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "rest", |l| if l.is_empty() { Value::Nil } else { Value::Array(l[1..].to_vec()) })
}

pub fn initial(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "initial", |l| if l.is_empty() { Value::Nil } else { Value::Array(l[..l.len() - 1].to_vec()) })
}

pub fn reverse(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "reverse", |l| Value::Array(l.iter().rev().cloned().collect()))
}

/// `uniq LIST`: first occurrences, in order.
pub fn uniq(args: &[Value]) -> Result<Value, FuncError> {
    with_list(args, "uniq", |l| {
        let mut out: Vec<Value> = Vec::new();
        for v in l {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        Value::Array(out)
    })
}

/// `without LIST A B …`.
pub fn without(args: &[Value]) -> Result<Value, FuncError> {
    let l = list_arg(args, 0, "without")?;
    Ok(Value::Array(l.iter().filter(|v| !args[1..].contains(v)).cloned().collect()))
}

/// `has NEEDLE LIST`.
pub fn has(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "has")?;
    match &args[1] {
        Value::Nil | Value::NoValue => Ok(Value::Bool(false)),
        _ => Ok(Value::Bool(list_arg(args, 1, "has")?.contains(&args[0]))),
    }
}

/// `slice LIST [START [END]]`.
pub fn slice(args: &[Value]) -> Result<Value, FuncError> {
    let l = list_arg(args, 0, "slice")?;
    let len = l.len() as i64;
    let start = args.get(1).map_or(0, to_i64);
    let end = args.get(2).map_or(len, to_i64);
    if start < 0 || end > len || start > end {
        return Err(fail(format!("slice: bounds out of range [{start}:{end}] with length {len}")));
    }
    Ok(Value::Array(l[usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)].to_vec()))
}

/// `concat LIST …`: one list.
pub fn concat(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        out.extend(
            list_arg(args, i, "concat").map_err(|_| fail(format!("concat: {a:?} is not a list")))?.iter().cloned(),
        );
        budget::items(out.len())?;
    }
    Ok(Value::Array(out))
}

/// `chunk SIZE LIST`: lists of SIZE items (the last may be shorter).
pub fn chunk(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "chunk")?;
    let size = usize::try_from(to_i64(&args[0]))
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| fail("chunk: size must be positive"))?;
    let l = list_arg(args, 1, "chunk")?;
    Ok(Value::Array(l.chunks(size).map(|c| Value::Array(c.to_vec())).collect()))
}
