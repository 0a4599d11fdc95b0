//! Sprig's string functions (the string is the last argument, so they pipe: `.Client.Name | upper`).

use gtmpl::{FuncError, Value};

use gatehouse_runtime::random;

use crate::template::budget;
use crate::template::value::{exactly, fail, str_arg, strval, to_i64};

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn collect(c: &[char]) -> String {
    c.iter().collect()
}

/// A non-negative count that is also within the output bound.
fn count(n: i64, func: &str) -> Result<usize, FuncError> {
    let n = usize::try_from(n).map_err(|_| fail(format!("{func}: negative count")))?;
    budget::bytes(n)?;
    Ok(n)
}

fn map_str(args: &[Value], func: &str, f: impl Fn(&str) -> String) -> Result<Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(Value::from(f(&strval(&args[0]))))
}

pub fn upper(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "upper", str::to_uppercase)
}

pub fn lower(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "lower", str::to_lowercase)
}

pub fn trim(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "trim", |s| s.trim().to_owned())
}

pub fn nospace(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "nospace", |s| s.chars().filter(|c| !c.is_whitespace()).collect())
}

/// Go's `strings.Title`: the first letter after a separator (anything but letters, digits, `_` and `'`) upper.
pub fn title(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "title", |s| {
        let mut prev_sep = true;
        s.chars()
            .map(|c| {
                let out = if prev_sep { c.to_uppercase().collect::<String>() } else { c.to_string() };
                prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
                out
            })
            .collect()
    })
}

fn per_word(s: &str, f: impl Fn(char) -> String) -> String {
    let mut start = true;
    s.chars()
        .map(|c| {
            let out = if start && !c.is_whitespace() { f(c) } else { c.to_string() };
            start = c.is_whitespace();
            out
        })
        .collect()
}

pub fn untitle(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "untitle", |s| per_word(s, |c| c.to_lowercase().collect()))
}

pub fn initials(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "initials", |s| s.split_whitespace().filter_map(|w| w.chars().next()).collect())
}

pub fn swapcase(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "swapcase", |s| {
        s.chars()
            .map(|c| {
                if c.is_uppercase() {
                    c.to_lowercase().collect()
                } else if c.is_lowercase() {
                    c.to_uppercase().collect()
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

pub fn shuffle(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "shuffle", |s| {
        let mut c = chars(s);
        for i in (1..c.len()).rev() {
            let j = usize::try_from(random::below(i as u64 + 1)).unwrap_or(0);
            c.swap(i, j);
        }
        collect(&c)
    })
}

/// Words for the case conversions: split at separators and at lower→upper and acronym→word boundaries.
fn words(s: &str) -> Vec<String> {
    let c = chars(s);
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &ch) in c.iter().enumerate() {
        if ch == '_' || ch == '-' || ch == '.' || ch.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if ch.is_uppercase() && !cur.is_empty() {
            let prev = c[i - 1];
            let next_lower = c.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

pub fn snakecase(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "snakecase", |s| words(s).iter().map(|w| w.to_lowercase()).collect::<Vec<_>>().join("_"))
}

pub fn kebabcase(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "kebabcase", |s| words(s).iter().map(|w| w.to_lowercase()).collect::<Vec<_>>().join("-"))
}

/// `camelcase "http_server"` is `HttpServer`: each `_`-separated part capitalised, the rest left alone.
pub fn camelcase(args: &[Value]) -> Result<Value, FuncError> {
    map_str(args, "camelcase", |s| {
        s.split('_')
            .map(|part| {
                let mut c = part.chars();
                c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
            })
            .collect()
    })
}

/// `abbrev WIDTH STRING`: at most WIDTH characters, ending in `...` when cut.
pub fn abbrev(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "abbrev")?;
    let (width, s) = (to_i64(&args[0]), chars(&strval(&args[1])));
    if width < 4 || s.len() as i64 <= width {
        return Ok(Value::from(collect(&s)));
    }
    let keep = usize::try_from(width - 3).unwrap_or(0);
    Ok(Value::from(format!("{}...", collect(&s[..keep]))))
}

fn abbreviate_full(s: &[char], offset: i64, width: i64) -> String {
    let len = s.len() as i64;
    if s.is_empty() || len <= width {
        return collect(s);
    }
    let mut offset = offset.min(len);
    if len - offset < width - 3 {
        offset = len - (width - 3);
    }
    let idx = |n: i64| usize::try_from(n.clamp(0, len)).unwrap_or(0);
    if offset <= 4 {
        return format!("{}...", collect(&s[..idx(width - 3)]));
    }
    if width < 7 {
        return collect(s);
    }
    if offset + width - 3 < len {
        let inner = &s[idx(offset)..];
        let inner = if inner.len() as i64 <= width - 3 {
            collect(inner)
        } else {
            format!("{}...", collect(&inner[..idx(width - 6)]))
        };
        return format!("...{inner}");
    }
    format!("...{}", collect(&s[idx(len - (width - 3))..]))
}

/// `abbrevboth LEFT WIDTH STRING`: abbreviated on both sides.
pub fn abbrevboth(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "abbrevboth")?;
    let (left, right, s) = (to_i64(&args[0]), to_i64(&args[1]), strval(&args[2]));
    if right < 4 || (left > 0 && right < 7) {
        return Ok(Value::from(s));
    }
    Ok(Value::from(abbreviate_full(&chars(&s), left, right)))
}

/// `trunc N STRING`: the first N characters, or the last -N.
pub fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "trunc")?;
    let (n, s) = (to_i64(&args[0]), chars(&strval(&args[1])));
    let len = s.len() as i64;
    let out = if n < 0 && len + n > 0 {
        collect(&s[usize::try_from(len + n).unwrap_or(0)..])
    } else if n >= 0 && len > n {
        collect(&s[..usize::try_from(n).unwrap_or(0)])
    } else {
        collect(&s)
    };
    Ok(Value::from(out))
}

/// `substr START END STRING` (characters; a negative START means 0, a negative or too large END the end).
pub fn substr(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "substr")?;
    let (start, end, s) = (to_i64(&args[0]), to_i64(&args[1]), chars(&strval(&args[2])));
    let len = s.len() as i64;
    let start = start.max(0);
    let end = if end < 0 || end > len { len } else { end };
    if start > end {
        return Err(fail(format!("substr: start {start} is after end {end}")));
    }
    Ok(Value::from(collect(&s[usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)])))
}

/// `repeat COUNT STRING`, within the output bound.
pub fn repeat(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "repeat")?;
    let (n, s) = (to_i64(&args[0]), strval(&args[1]));
    let n = usize::try_from(n).map_err(|_| fail("repeat: negative count"))?;
    budget::bytes(n.saturating_mul(s.len()))?;
    Ok(Value::from(s.repeat(n)))
}

pub fn trim_all(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "trimAll")?;
    let (cutset, s) = (strval(&args[0]), strval(&args[1]));
    Ok(Value::from(s.trim_matches(|c| cutset.contains(c)).to_owned()))
}

pub fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "trimPrefix")?;
    let (p, s) = (strval(&args[0]), strval(&args[1]));
    Ok(Value::from(s.strip_prefix(p.as_str()).unwrap_or(&s).to_owned()))
}

pub fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "trimSuffix")?;
    let (p, s) = (strval(&args[0]), strval(&args[1]));
    Ok(Value::from(s.strip_suffix(p.as_str()).unwrap_or(&s).to_owned()))
}

fn rand_from(args: &[Value], func: &str, alphabet: &[u8]) -> Result<Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(Value::from(random::random_from(alphabet, count(to_i64(&args[0]), func)?)))
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const ASCII: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

pub fn rand_alpha_num(args: &[Value]) -> Result<Value, FuncError> {
    rand_from(args, "randAlphaNum", ALNUM)
}

pub fn rand_alpha(args: &[Value]) -> Result<Value, FuncError> {
    rand_from(args, "randAlpha", ALPHA)
}

pub fn rand_ascii(args: &[Value]) -> Result<Value, FuncError> {
    rand_from(args, "randAscii", ASCII)
}

pub fn rand_numeric(args: &[Value]) -> Result<Value, FuncError> {
    rand_from(args, "randNumeric", b"0123456789")
}

/// Word wrap at WIDTH columns on spaces; long words are not broken (goutils `WrapCustom`).
fn wrap_custom(s: &str, width: i64, newline: &str) -> String {
    let c = chars(s);
    let width = usize::try_from(width.max(1)).unwrap_or(1);
    let mut out = String::new();
    let mut offset = 0;
    while c.len() - offset > width {
        if c[offset] == ' ' {
            offset += 1;
            continue;
        }
        let window = &c[offset..=(offset + width).min(c.len() - 1)];
        if let Some(space) = window.iter().rposition(|&ch| ch == ' ') {
            out.push_str(&collect(&c[offset..offset + space]));
            out.push_str(newline);
            offset += space + 1;
        } else if let Some(space) = c[offset + width..].iter().position(|&ch| ch == ' ') {
            out.push_str(&collect(&c[offset..offset + width + space]));
            out.push_str(newline);
            offset += width + space + 1;
        } else {
            break;
        }
    }
    out.push_str(&collect(&c[offset..]));
    out
}

pub fn wrap(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "wrap")?;
    Ok(Value::from(wrap_custom(&strval(&args[1]), to_i64(&args[0]), "\n")))
}

pub fn wrap_with(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "wrapWith")?;
    let (sep, s) = (strval(&args[1]), strval(&args[2]));
    let out = wrap_custom(&s, to_i64(&args[0]), &sep);
    budget::bytes(out.len())?;
    Ok(Value::from(out))
}

fn str_test(args: &[Value], func: &str, f: impl Fn(&str, &str) -> bool) -> Result<Value, FuncError> {
    exactly(args, 2, func)?;
    Ok(Value::Bool(f(&strval(&args[1]), &strval(&args[0]))))
}

/// `contains NEEDLE STRING`.
pub fn contains(args: &[Value]) -> Result<Value, FuncError> {
    str_test(args, "contains", |s, n| s.contains(n))
}

pub fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    str_test(args, "hasPrefix", |s, p| s.starts_with(p))
}

pub fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    str_test(args, "hasSuffix", |s, p| s.ends_with(p))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn non_nil(args: &[Value]) -> impl Iterator<Item = &Value> {
    args.iter().filter(|a| !matches!(a, Value::Nil | Value::NoValue))
}

pub fn quote(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(non_nil(args).map(|a| go_quote(&strval(a))).collect::<Vec<_>>().join(" ")))
}

pub fn squote(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(non_nil(args).map(|a| format!("'{}'", strval(a))).collect::<Vec<_>>().join(" ")))
}

/// `cat A B …`: the arguments joined with spaces, nil ones skipped.
pub fn cat(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(non_nil(args).map(strval).collect::<Vec<_>>().join(" ")))
}

fn indent_by(args: &[Value], func: &str, newline: bool) -> Result<Value, FuncError> {
    exactly(args, 2, func)?;
    let (n, s) = (count(to_i64(&args[0]), func)?, strval(&args[1]));
    let pad = " ".repeat(n);
    let lines = s.matches('\n').count() + 1;
    budget::bytes(s.len().saturating_add(lines.saturating_mul(n)))?;
    let body = format!("{pad}{}", s.replace('\n', &format!("\n{pad}")));
    Ok(Value::from(if newline { format!("\n{body}") } else { body }))
}

pub fn indent(args: &[Value]) -> Result<Value, FuncError> {
    indent_by(args, "indent", false)
}

pub fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    indent_by(args, "nindent", true)
}

/// `replace OLD NEW STRING`: every occurrence.
pub fn replace(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "replace")?;
    let (old, new, s) = (strval(&args[0]), strval(&args[1]), strval(&args[2]));
    let occurrences = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old.as_str()).count() };
    budget::bytes(s.len().saturating_add(occurrences.saturating_mul(new.len())))?;
    Ok(Value::from(s.replace(old.as_str(), &new)))
}

/// `plural ONE MANY COUNT`.
pub fn plural(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 3, "plural")?;
    Ok(Value::from(if to_i64(&args[2]) == 1 { str_arg(args, 0, "plural")? } else { str_arg(args, 1, "plural")? }))
}
