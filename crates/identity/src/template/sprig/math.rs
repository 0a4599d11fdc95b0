//! Sprig's math: integer functions on int64 (wrapping, as Go's), `…f` functions on float64 with Sprig's decimal
//! results (`addf 1.1 2.2` is 3.3, not 3.3000000000000003).

use gtmpl::{FuncError, Value};

use gatehouse_runtime::random;

use crate::template::value::{arg, exactly, fail, float, to_f64, to_i64};

fn at_least(args: &[Value], n: usize, func: &str) -> Result<(), FuncError> {
    if args.len() < n { Err(FuncError::AtLeastXArgs(func.into(), n)) } else { Ok(()) }
}

fn fold_int(args: &[Value], func: &str, f: impl Fn(i64, i64) -> i64) -> Result<Value, FuncError> {
    at_least(args, 1, func)?;
    Ok(Value::from(args[1..].iter().map(to_i64).fold(to_i64(&args[0]), f)))
}

/// Shopspring's decimals round-trip through 15 significant digits; so does this.
fn decimal(f: f64) -> f64 {
    if !f.is_finite() || f == 0.0 {
        return f;
    }
    format!("{f:.14e}").parse().unwrap_or(f)
}

fn fold_float(args: &[Value], func: &str, f: impl Fn(f64, f64) -> f64) -> Result<Value, FuncError> {
    at_least(args, 1, func)?;
    Ok(float(decimal(args[1..].iter().map(to_f64).fold(to_f64(&args[0]), f))))
}

pub fn add1(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "add1")?;
    Ok(Value::from(to_i64(&args[0]).wrapping_add(1)))
}

pub fn add(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(args.iter().map(to_i64).fold(0i64, i64::wrapping_add)))
}

pub fn sub(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "sub")?;
    Ok(Value::from(to_i64(&args[0]).wrapping_sub(to_i64(&args[1]))))
}

pub fn mul(args: &[Value]) -> Result<Value, FuncError> {
    fold_int(args, "mul", i64::wrapping_mul)
}

pub fn div(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "div")?;
    to_i64(&args[0]).checked_div(to_i64(&args[1])).map(Value::from).ok_or_else(|| fail("div: integer divide by zero"))
}

pub fn modulo(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "mod")?;
    to_i64(&args[0]).checked_rem(to_i64(&args[1])).map(Value::from).ok_or_else(|| fail("mod: integer divide by zero"))
}

/// `randInt MIN MAX`: MIN ≤ n < MAX.
pub fn rand_int(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 2, "randInt")?;
    let (min, max) = (to_i64(&args[0]), to_i64(&args[1]));
    let span = u64::try_from(i128::from(max) - i128::from(min)).map_err(|_| fail("randInt: max must exceed min"))?;
    if span == 0 {
        return Err(fail("randInt: max must exceed min"));
    }
    Ok(Value::from((i128::from(min) + i128::from(random::below(span))) as i64))
}

pub fn max(args: &[Value]) -> Result<Value, FuncError> {
    fold_int(args, "max", i64::max)
}

pub fn min(args: &[Value]) -> Result<Value, FuncError> {
    fold_int(args, "min", i64::min)
}

pub fn add1f(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "add1f")?;
    Ok(float(decimal(to_f64(&args[0]) + 1.0)))
}

pub fn addf(args: &[Value]) -> Result<Value, FuncError> {
    fold_float(args, "addf", |a, b| a + b)
}

pub fn subf(args: &[Value]) -> Result<Value, FuncError> {
    fold_float(args, "subf", |a, b| a - b)
}

pub fn mulf(args: &[Value]) -> Result<Value, FuncError> {
    fold_float(args, "mulf", |a, b| a * b)
}

pub fn divf(args: &[Value]) -> Result<Value, FuncError> {
    at_least(args, 1, "divf")?;
    if args[1..].iter().any(|a| to_f64(a) == 0.0) {
        return Err(fail("divf: division by zero"));
    }
    fold_float(args, "divf", |a, b| a / b)
}

pub fn maxf(args: &[Value]) -> Result<Value, FuncError> {
    fold_float(args, "maxf", f64::max)
}

pub fn minf(args: &[Value]) -> Result<Value, FuncError> {
    fold_float(args, "minf", f64::min)
}

pub fn ceil(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "ceil")?;
    Ok(float(to_f64(&args[0]).ceil()))
}

pub fn floor(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "floor")?;
    Ok(float(to_f64(&args[0]).floor()))
}

/// `round X PLACES [ROUND_ON]`: half up by default.
pub fn round(args: &[Value]) -> Result<Value, FuncError> {
    let value = to_f64(arg(args, 0, "round")?);
    let places = to_f64(arg(args, 1, "round")?);
    let round_on = args.get(2).map_or(0.5, to_f64);
    let pow = 10f64.powf(places);
    let digit = pow * value;
    let rounded = if digit.fract() >= round_on { digit.ceil() } else { digit.floor() };
    Ok(float(rounded / pow))
}
