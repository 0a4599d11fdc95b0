//! Sprig's dictionaries. Dicts are values: `set` and `unset` return the changed dict (Go's mutate theirs in place,
//! so `$_ := set $d …` has no effect here; use the result).

use std::collections::HashMap;

use gtmpl::{FuncError, Value};

use crate::template::value::{arg, as_map, exactly, fail, is_empty, strval};

type Dict = HashMap<String, Value>;

fn dict_arg<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a Dict, FuncError> {
    as_map(arg(args, i, func)?).ok_or_else(|| fail(format!("{func}: argument {} is not a dict", i + 1)))
}

fn sorted_keys(d: &Dict) -> Vec<&String> {
    let mut keys: Vec<_> = d.keys().collect();
    keys.sort();
    keys
}

/// `dict K V K V …`; an odd last key maps to "".
pub fn dict(args: &[Value]) -> Result<Value, FuncError> {
    let mut d = Dict::new();
    for pair in args.chunks(2) {
        d.insert(strval(&pair[0]), pair.get(1).cloned().unwrap_or_else(|| Value::from("")));
    }
    Ok(Value::Map(d))
}

/// `get DICT KEY`: the value, or "".
pub fn get(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "get")?;
    Ok(dict_arg(args, 0, "get")?.get(&strval(&args[1])).cloned().unwrap_or_else(|| Value::from("")))
}

pub fn set(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "set")?;
    let mut d = dict_arg(args, 0, "set")?.clone();
    d.insert(strval(&args[1]), args[2].clone());
    Ok(Value::Map(d))
}

pub fn unset(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "unset")?;
    let mut d = dict_arg(args, 0, "unset")?.clone();
    d.remove(&strval(&args[1]));
    Ok(Value::Map(d))
}

pub fn has_key(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "hasKey")?;
    Ok(Value::Bool(dict_arg(args, 0, "hasKey")?.contains_key(&strval(&args[1]))))
}

/// `pluck KEY DICT …`: the KEY of every dict that has it.
pub fn pluck(args: &[Value]) -> Result<Value, FuncError> {
    let key = strval(arg(args, 0, "pluck")?);
    let mut out = Vec::new();
    for i in 1..args.len() {
        if let Some(v) = dict_arg(args, i, "pluck")?.get(&key) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

/// `keys DICT …`: every key (sorted per dict; Go's order is random).
pub fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for i in 0..args.len() {
        out.extend(sorted_keys(dict_arg(args, i, "keys")?).into_iter().map(|k| Value::from(k.clone())));
    }
    Ok(Value::Array(out))
}

/// `values DICT` (ordered by key; Go's order is random).
pub fn values(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "values")?;
    let d = dict_arg(args, 0, "values")?;
    Ok(Value::Array(sorted_keys(d).into_iter().filter_map(|k| d.get(k).cloned()).collect()))
}

/// `pick DICT KEY …`.
pub fn pick(args: &[Value]) -> Result<Value, FuncError> {
    let d = dict_arg(args, 0, "pick")?;
    let wanted: Vec<String> = args[1..].iter().map(strval).collect();
    Ok(Value::Map(d.iter().filter(|(k, _)| wanted.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()))
}

/// `omit DICT KEY …`.
pub fn omit(args: &[Value]) -> Result<Value, FuncError> {
    let d = dict_arg(args, 0, "omit")?;
    let unwanted: Vec<String> = args[1..].iter().map(strval).collect();
    Ok(Value::Map(d.iter().filter(|(k, _)| !unwanted.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()))
}

/// mergo's deep merge: nested dicts merge; otherwise the destination keeps a non-empty value unless
/// `overwrite`, and an empty source value never overwrites.
fn merge_into(dst: &mut Dict, src: &Dict, overwrite: bool) {
    for (k, v) in src {
        match (dst.get_mut(k), as_map(v)) {
            (Some(existing), Some(src_map)) if as_map(existing).is_some() => {
                let mut inner = as_map(existing).cloned().unwrap_or_default();
                merge_into(&mut inner, src_map, overwrite);
                *existing = Value::Map(inner);
            }
            (Some(existing), _) => {
                if (overwrite && !is_empty(v)) || is_empty(existing) {
                    *existing = v.clone();
                }
            }
            (None, _) => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merged(args: &[Value], func: &str, overwrite: bool) -> Result<Value, FuncError> {
    let mut dst = dict_arg(args, 0, func)?.clone();
    for i in 1..args.len() {
        merge_into(&mut dst, dict_arg(args, i, func)?, overwrite);
    }
    Ok(Value::Map(dst))
}

/// `merge DST SRC …`: the first dict wins (`mustMerge`).
pub fn merge(args: &[Value]) -> Result<Value, FuncError> {
    merged(args, "merge", false)
}

/// `mergeOverwrite DST SRC …`: later dicts win (`mustMergeOverwrite`).
pub fn merge_overwrite(args: &[Value]) -> Result<Value, FuncError> {
    merged(args, "mergeOverwrite", true)
}

/// `dig KEY … DEFAULT DICT`: the value at the path, or DEFAULT.
pub fn dig(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 3 {
        return Err(FuncError::AtLeastXArgs("dig".into(), 3));
    }
    let (path, default) = (&args[..args.len() - 2], &args[args.len() - 2]);
    let mut cur = dict_arg(args, args.len() - 1, "dig")?;
    for (i, key) in path.iter().enumerate() {
        match cur.get(&strval(key)) {
            Some(v) if i + 1 == path.len() => return Ok(v.clone()),
            Some(v) => match as_map(v) {
                Some(m) => cur = m,
                None => return Ok(default.clone()),
            },
            None => return Ok(default.clone()),
        }
    }
    Ok(default.clone())
}
