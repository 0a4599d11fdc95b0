//! UUIDs: Sprig's `uuidv4`, and Kong Identity's `uuidParse` / `uuidValidate`.

use gtmpl::{FuncError, Value};

use crate::template::value::{exactly, fail, strval};

pub fn uuidv4(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(uuid::Uuid::new_v4().to_string()))
}

/// `uuidParse STRING`: the UUID in canonical form; an error if it is not one.
pub fn uuid_parse(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "uuidParse")?;
    let s = strval(&args[0]);
    uuid::Uuid::parse_str(&s).map(|u| Value::from(u.to_string())).map_err(|e| fail(format!("uuidParse: {e}")))
}

pub fn uuid_validate(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "uuidValidate")?;
    Ok(Value::Bool(uuid::Uuid::parse_str(&strval(&args[0])).is_ok()))
}
