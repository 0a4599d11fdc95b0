//! Sprig's path functions: Go's `path` package (slash-separated, lexical only).

use gtmpl::{FuncError, Value};

use crate::template::value::{exactly, strval};

/// Go's `path.Clean`.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&p) if p != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn one(args: &[Value], func: &str, f: impl Fn(&str) -> Value) -> Result<Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(f(&strval(&args[0])))
}

pub fn base(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "base", |p| {
        if p.is_empty() {
            return Value::from(".");
        }
        let trimmed = p.trim_end_matches('/');
        if trimmed.is_empty() {
            return Value::from("/");
        }
        Value::from(trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned())
    })
}

pub fn dir(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "dir", |p| {
        let cut = p.rfind('/').map_or(0, |i| i + 1);
        Value::from(clean_path(&p[..cut]))
    })
}

pub fn clean(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "clean", |p| Value::from(clean_path(p)))
}

pub fn ext(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "ext", |p| {
        let name = &p[p.rfind('/').map_or(0, |i| i + 1)..];
        Value::from(name.rfind('.').map_or("", |i| &name[i..]).to_owned())
    })
}

pub fn is_abs(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "isAbs", |p| Value::Bool(p.starts_with('/')))
}
