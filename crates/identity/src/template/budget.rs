//! Bounds on one render. gtmpl calls plain `fn` pointers, so the state they share (steps left, the clock) lives in
//! a thread-local set for the duration of a render: rendering is synchronous and never crosses threads.
//!
//! A step is one function call or one `range` iteration (the translation puts a `_step` call at the top of every
//! range body), so loops cannot spin without spending steps. Every value a function returns is measured, so no
//! string, list or nesting grows past the limits, and the writer refuses output past [`MAX_OUTPUT`].

use std::cell::Cell;
use std::io;

use gtmpl::{FuncError, Value};

/// Function calls plus range iterations in one render.
pub const MAX_STEPS: u32 = 10_000;
/// Bytes a claim may render to, and the largest value (string bytes plus one per item) a function may return.
pub const MAX_OUTPUT: usize = 16 * 1024;
/// Nesting of lists and maps inside a value.
pub const MAX_DEPTH: usize = 32;
/// Items in one list a function may build (`until`, `seq`, `splitList`, …).
pub const MAX_ITEMS: usize = 1_000;

thread_local! {
    static STEPS_LEFT: Cell<u32> = const { Cell::new(MAX_STEPS) };
    static NOW_NANOS: Cell<Option<i128>> = const { Cell::new(None) };
}

/// Resets the budget and pins `now` for the render; restores the previous state on drop, so nested renders (none
/// today) and panics leave nothing behind.
pub(crate) struct RenderScope {
    steps: u32,
    now: Option<i128>,
}

impl RenderScope {
    pub(crate) fn enter(now: jiff::Timestamp) -> Self {
        let steps = STEPS_LEFT.with(|s| s.replace(MAX_STEPS));
        let now = NOW_NANOS.with(|n| n.replace(Some(now.as_nanosecond())));
        Self { steps, now }
    }
}

impl Drop for RenderScope {
    fn drop(&mut self) {
        STEPS_LEFT.with(|s| s.set(self.steps));
        NOW_NANOS.with(|n| n.set(self.now));
    }
}

/// The render's clock (the issuer's injectable clock), or the system time outside a render.
pub fn now() -> jiff::Timestamp {
    NOW_NANOS
        .with(Cell::get)
        .and_then(|n| jiff::Timestamp::from_nanosecond(n).ok())
        // Outside a render, the wall clock, read like every other through `Clock`.
        .unwrap_or_else(|| {
            let micros = gatehouse_model::Clock::now(&gatehouse_model::SystemClock).micros();
            jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
}

pub fn step() -> Result<(), FuncError> {
    STEPS_LEFT.with(|s| match s.get() {
        0 => Err(FuncError::Generic(format!("template exceeded {MAX_STEPS} steps"))),
        n => {
            s.set(n - 1);
            Ok(())
        }
    })
}

/// Runs one template function within the budget.
pub fn call(args: &[Value], f: gtmpl::Func) -> Result<Value, FuncError> {
    step()?;
    let out = f(args)?;
    check(&out)?;
    Ok(out)
}

/// Rejects a value larger than [`MAX_OUTPUT`] or nested deeper than [`MAX_DEPTH`].
pub fn check(v: &Value) -> Result<(), FuncError> {
    fn size(v: &Value, depth: usize, budget: &mut usize) -> Result<(), FuncError> {
        if depth > MAX_DEPTH {
            return Err(FuncError::Generic(format!("value nested deeper than {MAX_DEPTH}")));
        }
        let own = match v {
            Value::String(s) => s.len() + 1,
            _ => 1,
        };
        *budget = budget
            .checked_sub(own)
            .ok_or_else(|| FuncError::Generic(format!("value larger than {MAX_OUTPUT} bytes")))?;
        match v {
            Value::Array(a) => a.iter().try_for_each(|x| size(x, depth + 1, budget)),
            Value::Object(o) | Value::Map(o) => o.iter().try_for_each(|(k, x)| {
                *budget = budget.saturating_sub(k.len());
                size(x, depth + 1, budget)
            }),
            _ => Ok(()),
        }
    }
    let mut budget = MAX_OUTPUT;
    size(v, 0, &mut budget)
}

/// Refuses a list longer than [`MAX_ITEMS`] before it is built.
pub fn items(n: usize) -> Result<(), FuncError> {
    if n > MAX_ITEMS { Err(FuncError::Generic(format!("list longer than {MAX_ITEMS} items"))) } else { Ok(()) }
}

/// Refuses a string longer than [`MAX_OUTPUT`] before it is built.
pub fn bytes(n: usize) -> Result<(), FuncError> {
    if n > MAX_OUTPUT { Err(FuncError::Generic(format!("string longer than {MAX_OUTPUT} bytes"))) } else { Ok(()) }
}

/// The render's output, refusing to grow past [`MAX_OUTPUT`].
#[derive(Debug, Default)]
pub struct BoundedWriter(pub Vec<u8>);

impl io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(io::Error::other(format!("output longer than {MAX_OUTPUT} bytes")));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
