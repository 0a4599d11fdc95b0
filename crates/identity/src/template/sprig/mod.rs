//! The functions a claim template may call: Go's builtins and the Sprig subset Kong Identity whitelists
//! (reference §5.2), one module per family. Every function runs through `budget::call`, which counts the step
//! and measures what it returns.

mod conversion;
mod date;
mod defaults;
mod dicts;
mod encoding;
pub(crate) mod layout;
mod lists;
mod math;
mod paths;
mod strings;
mod urls;
mod uuid;

use gtmpl::{Func, FuncError, Value};

use super::budget;
use super::value::{go_fmt, printed};

/// Each entry wraps its function in a `fn` of its own that goes through the budget (gtmpl takes `fn` pointers,
/// not closures).
macro_rules! functions {
    ($($name:literal => $f:path),* $(,)?) => {
        &[$(($name, {
            fn bounded(args: &[Value]) -> Result<Value, FuncError> {
                budget::call(args, $f)
            }
            bounded as Func
        })),*]
    };
}

/// Prints an action's value (`syntax` pipes every printing action through it).
fn print_action(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(args.last().map(printed).unwrap_or_default()))
}

/// Costs one step per `range` iteration (the budget wrapper does the counting) and prints nothing.
fn range_step(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(""))
}

/// Go's `print`: operands joined, with a space between two operands when neither is a string.
fn print(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::String(_)) && !matches!(args[i - 1], Value::String(_)) {
            out.push(' ');
        }
        out.push_str(&go_fmt(a));
    }
    Ok(Value::from(out))
}

fn println(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(format!("{}\n", args.iter().map(go_fmt).collect::<Vec<_>>().join(" "))))
}

/// gtmpl's `printf`, refusing widths and precisions that would pad past the output bound.
fn printf(args: &[Value]) -> Result<Value, FuncError> {
    if let Some(Value::String(format)) = args.first() {
        let mut run = 0usize;
        for c in format.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            if run > 4 {
                return Err(FuncError::Generic("printf: width or precision too large".into()));
            }
        }
    }
    gtmpl::funcs::printf(args)
}

pub static FUNCTIONS: &[(&str, Func)] = functions! {
    "_print" => print_action,
    "_step" => range_step,
    // Go's builtins, counted like the rest.
    "and" => gtmpl::funcs::and,
    "or" => gtmpl::funcs::or,
    "not" => gtmpl::funcs::not,
    "len" => gtmpl::funcs::len,
    "index" => gtmpl::funcs::index,
    "call" => gtmpl::funcs::call,
    "urlquery" => gtmpl::funcs::urlquery,
    "eq" => gtmpl::funcs::eq,
    "ne" => gtmpl::funcs::ne,
    "lt" => gtmpl::funcs::lt,
    "le" => gtmpl::funcs::le,
    "gt" => gtmpl::funcs::gt,
    "ge" => gtmpl::funcs::ge,
    "print" => print,
    "println" => println,
    "printf" => printf,
    // Date.
    "ago" => date::ago,
    "date" => date::date,
    "dateInZone" => date::date_in_zone,
    "dateModify" => date::date_modify,
    "duration" => date::duration,
    "durationRound" => date::duration_round,
    "htmlDate" => date::html_date,
    "htmlDateInZone" => date::html_date_in_zone,
    "mustDateModify" => date::must_date_modify,
    "mustToDate" => date::must_to_date,
    "now" => date::now,
    "toDate" => date::to_date,
    "unixEpoch" => date::unix_epoch,
    // Strings.
    "abbrev" => strings::abbrev,
    "abbrevboth" => strings::abbrevboth,
    "trunc" => strings::trunc,
    "trim" => strings::trim,
    "upper" => strings::upper,
    "lower" => strings::lower,
    "title" => strings::title,
    "untitle" => strings::untitle,
    "substr" => strings::substr,
    "repeat" => strings::repeat,
    "trimAll" => strings::trim_all,
    "trimSuffix" => strings::trim_suffix,
    "trimPrefix" => strings::trim_prefix,
    "nospace" => strings::nospace,
    "initials" => strings::initials,
    "randAlphaNum" => strings::rand_alpha_num,
    "randAlpha" => strings::rand_alpha,
    "randAscii" => strings::rand_ascii,
    "randNumeric" => strings::rand_numeric,
    "swapcase" => strings::swapcase,
    "shuffle" => strings::shuffle,
    "snakecase" => strings::snakecase,
    "camelcase" => strings::camelcase,
    "kebabcase" => strings::kebabcase,
    "wrap" => strings::wrap,
    "wrapWith" => strings::wrap_with,
    "contains" => strings::contains,
    "hasPrefix" => strings::has_prefix,
    "hasSuffix" => strings::has_suffix,
    "quote" => strings::quote,
    "squote" => strings::squote,
    "cat" => strings::cat,
    "indent" => strings::indent,
    "nindent" => strings::nindent,
    "replace" => strings::replace,
    "plural" => strings::plural,
    "sha1sum" => encoding::sha1sum,
    "sha256sum" => encoding::sha256sum,
    "adler32sum" => encoding::adler32sum,
    "toString" => conversion::to_string,
    "atoi" => conversion::atoi,
    "int64" => conversion::int,
    "int" => conversion::int,
    "float64" => conversion::float64,
    "seq" => conversion::seq,
    "toDecimal" => conversion::to_decimal,
    "split" => conversion::split,
    "splitList" => conversion::split_list,
    "splitn" => conversion::splitn,
    "toStrings" => conversion::to_strings,
    "until" => conversion::until,
    "untilStep" => conversion::until_step_fn,
    "join" => conversion::join,
    "sortAlpha" => conversion::sort_alpha,
    // Math.
    "add1" => math::add1,
    "add" => math::add,
    "sub" => math::sub,
    "div" => math::div,
    "mod" => math::modulo,
    "mul" => math::mul,
    "randInt" => math::rand_int,
    "add1f" => math::add1f,
    "addf" => math::addf,
    "subf" => math::subf,
    "divf" => math::divf,
    "mulf" => math::mulf,
    "biggest" => math::max,
    "max" => math::max,
    "min" => math::min,
    "maxf" => math::maxf,
    "minf" => math::minf,
    "ceil" => math::ceil,
    "floor" => math::floor,
    "round" => math::round,
    // Defaults.
    "default" => defaults::default,
    "empty" => defaults::empty,
    "coalesce" => defaults::coalesce,
    "all" => defaults::all,
    "any" => defaults::any,
    "compact" => defaults::compact,
    "mustCompact" => defaults::must_compact,
    "fromJson" => defaults::from_json_fn,
    "toJson" => defaults::to_json_fn,
    "toPrettyJson" => defaults::to_pretty_json,
    "toRawJson" => defaults::to_raw_json,
    "mustFromJson" => defaults::must_from_json,
    "mustToJson" => defaults::must_to_json,
    "mustToPrettyJson" => defaults::must_to_pretty_json,
    "mustToRawJson" => defaults::must_to_raw_json,
    "ternary" => defaults::ternary,
    "deepCopy" => defaults::deep_copy,
    "mustDeepCopy" => defaults::deep_copy,
    // Paths.
    "base" => paths::base,
    "dir" => paths::dir,
    "clean" => paths::clean,
    "ext" => paths::ext,
    "isAbs" => paths::is_abs,
    // Encoding.
    "b64enc" => encoding::b64enc,
    "b64dec" => encoding::b64dec,
    "b32enc" => encoding::b32enc,
    "b32dec" => encoding::b32dec,
    // Data structures.
    "tuple" => lists::list,
    "list" => lists::list,
    "dict" => dicts::dict,
    "get" => dicts::get,
    "set" => dicts::set,
    "unset" => dicts::unset,
    "hasKey" => dicts::has_key,
    "pluck" => dicts::pluck,
    "keys" => dicts::keys,
    "pick" => dicts::pick,
    "omit" => dicts::omit,
    "merge" => dicts::merge,
    "mergeOverwrite" => dicts::merge_overwrite,
    "mustMerge" => dicts::merge,
    "mustMergeOverwrite" => dicts::merge_overwrite,
    "values" => dicts::values,
    "append" => lists::append,
    "mustAppend" => lists::append,
    "prepend" => lists::prepend,
    "mustPrepend" => lists::prepend,
    "first" => lists::first,
    "mustFirst" => lists::first,
    "rest" => lists::rest,
    "mustRest" => lists::rest,
    "last" => lists::last,
    "mustLast" => lists::last,
    "initial" => lists::initial,
    "mustInitial" => lists::initial,
    "reverse" => lists::reverse,
    "mustReverse" => lists::reverse,
    "uniq" => lists::uniq,
    "mustUniq" => lists::uniq,
    "without" => lists::without,
    "mustWithout" => lists::without,
    "has" => lists::has,
    "mustHas" => lists::has,
    "slice" => lists::slice,
    "mustSlice" => lists::slice,
    "concat" => lists::concat,
    "dig" => dicts::dig,
    "chunk" => lists::chunk,
    "mustChunk" => lists::chunk,
    // UUIDs.
    "uuidv4" => uuid::uuidv4,
    "uuidParse" => uuid::uuid_parse,
    "uuidValidate" => uuid::uuid_validate,
    // URLs.
    "urlParse" => urls::url_parse,
    "urlJoin" => urls::url_join,
};
