//! One sampled request's trace, as the phase runner, the proxy and plugins record it (Kong's tracing
//! instrumentation, `kong/observability/tracing/instrumentation.lua`): the request's server span `kong`, a child
//! per plugin phase that ran (`kong.access.plugin.<name>`, `kong.header_filter.plugin.<name>`), the upstream
//! call (`kong.balancer`, a client span whose id goes upstream in `traceparent`) and calls plugins make to other
//! services (`kong.internal.request`, under the plugin's span).
//!
//! A [`Trace`] exists only for a sampled request: the `opentelemetry` plugin decides before anything is
//! allocated (`plugins::opentelemetry`), and an unsampled request carries `None` through every phase. Times are
//! taken as `Instant`s and turned into wall time once, when the spans are exported.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span as ProtoSpan, Status, span, status};
use tokio::time::Instant;

pub type SpanId = [u8; 8];
pub type TraceId = [u8; 16];

/// A span id that is not all zeros (W3C's invalid value). A plain draw: the full range needs no reduction, and
/// the all-zero value (one in 2^64) is drawn again.
pub fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A trace id that is not all zeros, drawn as [`new_span_id`] is.
pub fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A span attribute's value.
pub fn string_value(value: impl Into<String>) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(value.into())) }
}

pub fn int_value(value: i64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::IntValue(value)) }
}

pub fn attribute(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value), ..Default::default() }
}

/// OTLP's span kinds that Kong uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    Server,
    Client,
}

impl Kind {
    fn proto(self) -> i32 {
        match self {
            Kind::Internal => span::SpanKind::Internal as i32,
            Kind::Server => span::SpanKind::Server as i32,
            Kind::Client => span::SpanKind::Client as i32,
        }
    }
}

/// A finished child span.
#[derive(Debug)]
struct Recorded {
    id: SpanId,
    parent: SpanId,
    name: Cow<'static, str>,
    kind: Kind,
    start: Instant,
    end: Instant,
    attributes: Vec<KeyValue>,
    error: bool,
}

/// A sampled request's spans so far.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: TraceId,
    /// The caller's span (an incoming `traceparent`), the parent of the root span.
    pub parent: Option<SpanId>,
    /// The request's span, `kong`.
    pub root: SpanId,
    /// The upstream call's span, made up front so its id can be sent upstream before the call.
    pub balancer: SpanId,
    /// When the request arrived, and the wall clock then (microseconds since the epoch).
    started: Instant,
    started_unix_micros: i64,
    /// The root span's attributes (Kong's names).
    attributes: Vec<KeyValue>,
    spans: Vec<Recorded>,
    /// The plugin phase span in progress, the parent of what the plugin records.
    current: Option<(SpanId, Cow<'static, str>, Instant)>,
    upstream: Option<(Instant, Instant, Vec<KeyValue>, bool)>,
}

impl Trace {
    pub fn new(
        trace_id: TraceId,
        parent: Option<SpanId>,
        started: Instant,
        started_unix_micros: i64,
        attributes: Vec<KeyValue>,
    ) -> Self {
        Self {
            trace_id,
            parent,
            root: new_span_id(),
            balancer: new_span_id(),
            started,
            started_unix_micros,
            attributes,
            spans: Vec::with_capacity(8),
            current: None,
            upstream: None,
        }
    }

    /// The W3C `traceparent` sent upstream: this trace, the balancer span as parent, sampled.
    pub fn traceparent(&self) -> String {
        String::from_utf8_lossy(&traceparent(&self.trace_id, &self.balancer, true)).into_owned()
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        hex(&self.trace_id, &mut out);
        out
    }

    /// A plugin's phase starts: spans it records until [`Trace::end_phase`] are its children.
    pub fn start_phase(&mut self, phase: &'static str, plugin: &'static str) {
        let name = Cow::Owned(format!("kong.{phase}.plugin.{plugin}"));
        self.current = Some((new_span_id(), name, Instant::now()));
    }

    pub fn end_phase(&mut self) {
        if let Some((id, name, start)) = self.current.take() {
            let (parent, end) = (self.root, Instant::now());
            self.spans.push(Recorded {
                id,
                parent,
                name,
                kind: Kind::Internal,
                start,
                end,
                attributes: Vec::new(),
                error: false,
            });
        }
    }

    /// A plugin phase that ran outside [`Trace::start_phase`] (`header_filter`, whose plugins see the trace
    /// read-only), timed by the phase runner.
    pub fn phase(&mut self, phase: &'static str, plugin: &'static str, start: Instant, end: Instant) {
        self.spans.push(Recorded {
            id: new_span_id(),
            parent: self.root,
            name: Cow::Owned(format!("kong.{phase}.plugin.{plugin}")),
            kind: Kind::Internal,
            start,
            end,
            attributes: Vec::new(),
            error: false,
        });
    }

    /// Routing (`kong.router`), timed by the proxy before the trace existed.
    pub fn router(&mut self, start: Instant, end: Instant) {
        let (id, parent) = (new_span_id(), self.root);
        let name = Cow::Borrowed("kong.router");
        let (kind, attributes, error) = (Kind::Internal, Vec::new(), false);
        self.spans.push(Recorded { id, parent, name, kind, start, end, attributes, error });
    }

    /// The calls collected by [`with_calls`] while the current plugin phase ran, as `kong.internal.request`
    /// spans under it.
    pub fn add_calls(&mut self, calls: &Calls) {
        let taken = std::mem::take(&mut *calls.0.lock().unwrap_or_else(|p| p.into_inner()));
        for call in taken {
            self.internal_request(call.start, call.end, call.attributes, call.error);
        }
    }

    /// A call the current plugin made to another service (`kong.internal.request`, Kong's name for calls made
    /// with its HTTP client), between `start` and `end`.
    pub fn internal_request(&mut self, start: Instant, end: Instant, attributes: Vec<KeyValue>, error: bool) {
        let parent = self.current.as_ref().map_or(self.root, |(id, ..)| *id);
        self.spans.push(Recorded {
            id: new_span_id(),
            parent,
            name: Cow::Borrowed("kong.internal.request"),
            kind: Kind::Client,
            start,
            end,
            attributes,
            error,
        });
    }

    /// The upstream call (`kong.balancer`), from the request being sent to the response head or the failure.
    pub fn upstream_call(&mut self, start: Instant, end: Instant, attributes: Vec<KeyValue>, error: bool) {
        self.upstream = Some((start, end, attributes, error));
    }

    fn unix_nanos(&self, at: Instant) -> u64 {
        let offset = at.saturating_duration_since(self.started);
        let micros = u64::try_from(self.started_unix_micros).unwrap_or_default();
        micros.saturating_mul(1000).saturating_add(u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Every span, the root ending at `end` with the response's status.
    pub fn finish(&self, end: Instant, status: u16) -> Vec<ProtoSpan> {
        let mut spans = Vec::with_capacity(self.spans.len() + 2);
        let mut root_attributes = self.attributes.clone();
        root_attributes.push(attribute("http.status_code", int_value(i64::from(status))));
        spans.push(self.proto(
            self.root,
            self.parent,
            "kong".into(),
            Kind::Server,
            (self.started, end),
            root_attributes,
            status >= 500,
        ));
        if let Some((start, finished, attributes, error)) = &self.upstream {
            let span = self.proto(
                self.balancer,
                Some(self.root),
                "kong.balancer".into(),
                Kind::Client,
                (*start, *finished),
                attributes.clone(),
                *error,
            );
            spans.push(span);
        }
        for r in &self.spans {
            let name = r.name.clone();
            spans.push(self.proto(r.id, Some(r.parent), name, r.kind, (r.start, r.end), r.attributes.clone(), r.error));
        }
        spans
    }

    #[allow(clippy::too_many_arguments)]
    fn proto(
        &self,
        id: SpanId,
        parent: Option<SpanId>,
        name: Cow<'static, str>,
        kind: Kind,
        (start, end): (Instant, Instant),
        attributes: Vec<KeyValue>,
        error: bool,
    ) -> ProtoSpan {
        ProtoSpan {
            trace_id: self.trace_id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: span_flags(id == self.root && self.parent.is_some()),
            name: name.into_owned(),
            kind: kind.proto(),
            start_time_unix_nano: self.unix_nanos(start),
            end_time_unix_nano: self.unix_nanos(end.max(start)),
            attributes,
            status: error.then(|| Status { code: status::StatusCode::Error as i32, message: String::new() }),
            ..Default::default()
        }
    }
}

tokio::task_local! {
    /// The calls to other services that the running plugin phase makes, while its request is traced.
    static CALLS: Arc<Calls>;
}

/// Calls to other services made by a traced plugin phase, from code that has no access to the request's
/// [`Trace`] (IdP clients shared by many requests: discovery, JWKS, token endpoints). The phase runner sets a
/// task-local [`Calls`] around a traced request's plugin phase ([`with_calls`]); an HTTP client reports into it
/// with [`record_call`], and the runner moves what was reported into the trace as `kong.internal.request` spans
/// (Kong's `http_client` instrumentation). An untraced request sets nothing, and a client's report is then one
/// failed task-local lookup. A call made by a task of its own (a background refresh) belongs to no request.
#[derive(Debug, Default)]
pub struct Calls(std::sync::Mutex<Vec<Call>>);

#[derive(Debug)]
struct Call {
    start: Instant,
    end: Instant,
    attributes: Vec<KeyValue>,
    error: bool,
}

/// Runs `phase` with a task-local [`Calls`] that the calls it makes report into; returns them with its output.
pub async fn with_calls<F: std::future::Future>(phase: F) -> (F::Output, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let output = CALLS.scope(calls.clone(), phase).await;
    (output, calls)
}

/// Whether the current task runs a traced plugin phase: a client times its call only then.
pub fn recording_calls() -> bool {
    CALLS.try_with(|_| ()).is_ok()
}

/// Reports a call to another service (Kong's `kong.internal.request` attributes: method, URL, flavor, and the
/// status when an answer came); nothing when the current task runs no traced plugin phase.
pub fn record_call(method: &str, url: &dyn std::fmt::Display, (start, end): (Instant, Instant), status: Option<u16>) {
    let _ = CALLS.try_with(|calls| {
        let mut attributes = vec![
            attribute("http.method", string_value(method)),
            attribute("http.url", string_value(url.to_string())),
            attribute("http.flavor", string_value("1.1")),
        ];
        if let Some(status) = status {
            attributes.push(attribute("http.status_code", int_value(i64::from(status))));
        }
        // Kong records an error when no answer came; a refusal (4xx/5xx) is an answer.
        let call = Call { start, end, attributes, error: status.is_none() };
        calls.0.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    });
}

/// OTLP's span flags: W3C's sampled flag (every exported span is sampled), and whether the parent is known to be
/// in another process (bit 8: known; bit 9: remote), which only the root span's caller is.
fn span_flags(remote_parent: bool) -> u32 {
    const SAMPLED: u32 = 0x01;
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    SAMPLED | HAS_IS_REMOTE | if remote_parent { IS_REMOTE } else { 0 }
}

/// A W3C `traceparent` (version 00) on the stack: what goes upstream, sampled or not (Kong propagates the trace
/// id of a request it does not record too, with the sampled flag off).
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> [u8; 55] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 55];
    out[..2].copy_from_slice(b"00");
    for (i, b) in trace_id.iter().chain(span_id.iter()).enumerate() {
        // The trace id's 32 digits from byte 3, then the span id's 16 from byte 36.
        let at = if i < 16 { 3 + 2 * i } else { 36 + 2 * (i - 16) };
        out[at] = DIGITS[usize::from(b >> 4)];
        out[at + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out[53..].copy_from_slice(if sampled { b"01" } else { b"00" });
    out
}

fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// An incoming W3C `traceparent` (version 00 and the future versions' first four fields): the trace id, the
/// caller's span id and whether the caller sampled. `None` for anything malformed or all-zero ids, which the
/// spec says to ignore. Reads the header's bytes only: no allocation.
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    let version = value.get(0..2)?;
    if value.get(2) != Some(&b'-') || value.get(35) != Some(&b'-') || value.get(52) != Some(&b'-') {
        return None;
    }
    // Version ff is invalid; version 00 is exactly 55 bytes; later versions may append `-...`.
    let version = u8::from_str_radix(std::str::from_utf8(version).ok()?, 16).ok()?;
    if version == 0xff || (version == 0 && value.len() != 55) || (version > 0 && value.len() > 55 && value[55] != b'-')
    {
        return None;
    }
    let lower_hex = |bytes: &[u8]| bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let (trace, span, flags) = (value.get(3..35)?, value.get(36..52)?, value.get(53..55)?);
    if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    let trace = opentelemetry::TraceId::from_hex(std::str::from_utf8(trace).ok()?).ok()?;
    let span = opentelemetry::SpanId::from_hex(std::str::from_utf8(span).ok()?).ok()?;
    let flags = u8::from_str_radix(std::str::from_utf8(flags).ok()?, 16).ok()?;
    if trace == opentelemetry::TraceId::INVALID || span == opentelemetry::SpanId::INVALID {
        return None;
    }
    Some((trace.to_bytes(), span.to_bytes(), flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_w3c_says() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, span, sampled) = parse_traceparent(good).unwrap();
        assert_eq!(trace[..2], [0x4b, 0xf9]);
        assert_eq!(span[7], 0xb7);
        assert!(sampled);
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!parse_traceparent(unsampled).unwrap().2);
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-more";
        assert!(parse_traceparent(future).unwrap().2, "a later version's known fields");
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn spans_hang_from_the_root_and_the_balancer_id_goes_upstream() {
        let start = Instant::now();
        let incoming = [7u8; 8];
        let mut trace = Trace::new(new_trace_id(), Some(incoming), start, 1_700_000_000_000_000, Vec::new());
        trace.start_phase("access", "oauth2-introspection");
        trace.internal_request(Instant::now(), Instant::now(), Vec::new(), false);
        trace.end_phase();
        trace.upstream_call(Instant::now(), Instant::now(), Vec::new(), true);
        let traceparent = trace.traceparent();
        assert_eq!(traceparent.len(), 55);
        assert_eq!(parse_traceparent(traceparent.as_bytes()).unwrap(), (trace.trace_id, trace.balancer, true));
        let spans = trace.finish(Instant::now(), 200);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["kong", "kong.balancer", "kong.internal.request", "kong.access.plugin.oauth2-introspection"]
        );
        assert_eq!(spans[0].parent_span_id, incoming.to_vec());
        assert_eq!((spans[0].flags, spans[1].flags), (0x301, 0x101), "only the root's parent is remote");
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        assert_eq!(spans[3].parent_span_id, spans[0].span_id);
        assert_eq!(spans[2].parent_span_id, spans[3].span_id, "the IdP call is the plugin's child");
        assert!(spans[1].status.is_some(), "a failed upstream call is an error");
        assert!(spans.iter().all(|s| s.trace_id == trace.trace_id.to_vec()));
        assert!(spans[0].start_time_unix_nano >= 1_700_000_000_000_000_000);
        assert!(spans.iter().all(|s| s.end_time_unix_nano >= s.start_time_unix_nano));
    }

    #[test]
    fn a_traceparent_is_written_as_w3c_reads_it() {
        let (trace, span) = (new_trace_id(), new_span_id());
        for sampled in [true, false] {
            let written = traceparent(&trace, &span, sampled);
            assert_eq!(parse_traceparent(&written), Some((trace, span, sampled)));
        }
        let known = traceparent(&[0xab; 16], &[0x01; 8], false);
        assert_eq!(&known[..], b"00-abababababababababababababababab-0101010101010101-00");
    }

    /// Calls reported inside [`with_calls`] become `kong.internal.request` spans under the phase that ran; outside
    /// it (an untraced request, a background task) a report does nothing.
    #[tokio::test]
    async fn calls_reported_in_a_traced_phase_become_its_children() {
        record_call("GET", &"http://idp.test/x", (Instant::now(), Instant::now()), Some(200));
        assert!(!recording_calls());
        let mut trace = Trace::new(new_trace_id(), None, Instant::now(), 1_700_000_000_000_000, Vec::new());
        trace.start_phase("access", "openid-connect");
        let ((), calls) = with_calls(async {
            assert!(recording_calls());
            let start = Instant::now();
            record_call("GET", &"http://idp.test/.well-known/openid-configuration", (start, Instant::now()), Some(200));
            record_call("POST", &"http://idp.test/token", (start, Instant::now()), None);
        })
        .await;
        trace.add_calls(&calls);
        trace.end_phase();
        let spans = trace.finish(Instant::now(), 200);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["kong", "kong.internal.request", "kong.internal.request", "kong.access.plugin.openid-connect"]
        );
        assert!(spans[1..3].iter().all(|s| s.parent_span_id == spans[3].span_id), "under the plugin's phase");
        let url = |s: &ProtoSpan| s.attributes.iter().find(|a| a.key == "http.url").cloned();
        assert_eq!(url(&spans[2]), Some(attribute("http.url", string_value("http://idp.test/token"))));
        assert!(spans[1].status.is_none() && spans[2].status.is_some(), "no answer is an error");
    }
}
