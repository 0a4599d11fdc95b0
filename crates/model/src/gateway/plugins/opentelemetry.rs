//! `opentelemetry`'s config (Kong's `schema.lua`, with the 3.15 fields): where spans go (OTLP/HTTP), how they are
//! batched, sampled and propagated. Every field of Kong's is accepted with Kong's type and default; what Gatehouse
//! does not do (logs and metrics export, trace header formats other than W3C) is refused by name when set.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::checks::{header_token, header_value, http_url};
use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;

pub const NAME: &str = "opentelemetry";
/// Kong's priority: after authentication and most plugins, so their work is inside the request's span.
pub const PRIORITY: i32 = 14;

/// Global, per service and per route. Kong also takes a consumer, but Gatehouse decides whether to trace a request
/// as soon as it is routed (so every plugin's work is in the trace), before any consumer is known.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check };

/// Kong's trace header formats. Gatehouse reads and writes W3C Trace Context only.
const FORMATS: &[&str] = &["aws", "b3", "b3-single", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"];
const EXTRACTORS: &[&str] = &["aws", "b3", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"];
const INJECTORS: &[&str] = &["preserve", "aws", "b3", "b3-single", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"];
const HEADER_TYPES: &[&str] =
    &["preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog", "instana"];

fn w3c_only(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("w3c") | None => Ok(()),
        Some(other) => Err(format!("not supported by Gatehouse: the '{other}' format (only w3c is)")),
    }
}

fn preserve_or_w3c(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("preserve") => Ok(()),
        _ => w3c_only(v),
    }
}

fn header_type_supported(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("ignore") => Ok(()),
        _ => preserve_or_w3c(v),
    }
}

fn unit_interval(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(rate) if (0.0..=1.0).contains(&rate) => Ok(()),
        _ => Err("value should be between 0 and 1".into()),
    }
}

fn non_empty_text(v: &Value) -> Result<(), String> {
    if v.as_str().is_some_and(str::is_empty) { Err("required field missing".into()) } else { Ok(()) }
}

pub fn config_fields() -> Vec<Field> {
    let timeout = |name, default: i64| Field::integer(name).default(json!(default)).between(0, 2_147_483_646);
    vec![
        Field::string("traces_endpoint").check(http_url).describe_as(
            "The OTLP/HTTP endpoint spans are sent to (protobuf), e.g. `http://collector:4318/v1/traces`.",
        ),
        Field::string("logs_endpoint")
            .unsupported()
            .describe_as("Kong's OTLP logs export; Gatehouse exports traces only, so only null is accepted."),
        Field::map(
            "headers",
            Field::string("name").check(header_token),
            Field::string("value").check(header_value).encrypted(),
        )
        .describe_as("Headers sent with every export request (a collector's API key); stored sealed."),
        Field::map("resource_attributes", Field::string("name"), Field::string("value").check(non_empty_text))
            .describe_as(
                "Attributes of the OpenTelemetry resource, over the defaults `service.name` (`kong`), \
                 `service.version` and `service.instance.id`.",
            ),
        Field::record(
            "queue",
            vec![
                Field::integer("max_batch_size")
                    .default(json!(200))
                    .between(1, 1_000_000)
                    .describe_as("The most spans sent in one export request."),
                Field::number("max_coalescing_delay")
                    .default(json!(1))
                    .between(0, 3600)
                    .describe_as("Seconds a batch waits for more spans once its first is queued."),
                Field::integer("max_entries")
                    .default(json!(10000))
                    .between(1, 1_000_000)
                    .describe_as("The most spans waiting to be sent; further spans are dropped (and counted)."),
                Field::integer("max_bytes")
                    .unsupported()
                    .describe_as("Kong's byte bound of a queue of strings; spans are bounded by count only."),
                Field::number("max_retry_time")
                    .default(json!(60))
                    .describe_as("Seconds a failed export is retried before its spans are dropped."),
                Field::number("initial_retry_delay")
                    .default(json!(0.01))
                    .between(0, 1_000_000)
                    .describe_as("Seconds before the first retry of a failed export; doubled at each retry."),
                Field::number("max_retry_delay")
                    .default(json!(60))
                    .between(0, 1_000_000)
                    .describe_as("The longest pause between two retries, in seconds."),
                Field::integer("concurrency_limit")
                    .default(json!(1))
                    .unsupported()
                    .describe_as("One export at a time per queue (Kong's default); `-1` (no queue) is refused."),
            ],
        )
        .describe_as("How spans are batched and sent (Kong's plugin queue)."),
        Field::integer("batch_span_count")
            .describe_as("Deprecated by Kong: `queue.max_batch_size`, which it overrides when set."),
        Field::integer("batch_flush_delay")
            .describe_as("Deprecated by Kong: `queue.max_coalescing_delay` (seconds), which it overrides when set."),
        timeout("connect_timeout", 1000).describe_as("Milliseconds to connect to the collector."),
        timeout("send_timeout", 5000).describe_as("Milliseconds to send an export request."),
        timeout("read_timeout", 5000).describe_as("Milliseconds to wait for the collector's answer."),
        Field::string("http_response_header_for_traceid")
            .check(header_token)
            .describe_as("A response header the request's trace id (hex) is returned in."),
        Field::string("header_type")
            .default(json!("preserve"))
            .one_of(HEADER_TYPES)
            .check(header_type_supported)
            .describe_as(
                "Deprecated by Kong (`propagation`): `preserve`, `ignore` and `w3c` are implemented, other formats \
                 are refused.",
            ),
        Field::number("sampling_rate")
            .check(unit_interval)
            .describe_as("The share of traces without a sampled parent that are recorded (0 to 1); null is 1."),
        Field::string("sampling_strategy")
            .default(json!("parent_drop_probability_fallback"))
            .one_of(&["parent_drop_probability_fallback", "parent_probability_fallback"])
            .describe_as(
                "How an incoming trace's sampled flag counts: `parent_drop_probability_fallback` follows it both \
                 ways; `parent_probability_fallback` keeps sampled parents and draws for the others.",
            ),
        Field::record(
            "propagation",
            vec![
                Field::array("extract", Field::string("format").one_of(EXTRACTORS).check(w3c_only))
                    .describe_as("Header formats a trace context is read from; only `w3c` (`traceparent`)."),
                Field::array("clear", Field::string("header").check(header_token))
                    .describe_as("Headers removed from the upstream request once the context is read."),
                Field::array("inject", Field::string("format").one_of(INJECTORS).check(preserve_or_w3c)).describe_as(
                    "Header formats sent upstream: `preserve` (the incoming one, else `default_format`) or `w3c`.",
                ),
                Field::string("default_format")
                    .required()
                    .default(json!("w3c"))
                    .one_of(FORMATS)
                    .check(w3c_only)
                    .describe_as("The format `preserve` uses when none was extracted; only `w3c`."),
            ],
        )
        .describe_as("How a trace context is read from the request and sent upstream."),
        Field::record(
            "metrics",
            vec![
                Field::string("endpoint"),
                Field::number("push_interval").default(json!(60)),
                Field::boolean("enable_request_metrics").default(json!(false)),
                Field::boolean("enable_latency_metrics").default(json!(false)),
                Field::boolean("enable_bandwidth_metrics").default(json!(false)),
                Field::boolean("enable_consumer_attribute").default(json!(false)),
                Field::boolean("enable_upstream_health_metrics").default(json!(false)),
                Field::boolean("enable_ai_metrics").default(json!(false)),
            ],
        )
        // Required, as Kong Enterprise fills it: a body it wrote (every field at its default) passes field by field.
        .required()
        .input_only()
        .describe_as("Kong Enterprise's OTLP metrics export; use the `prometheus` plugin. Only defaults are accepted."),
        Field::record(
            "access_logs",
            vec![
                Field::string("endpoint"),
                Field::map("custom_attributes_by_lua", Field::string("name"), Field::string("code")),
            ],
        )
        .input_only()
        .describe_as("Kong Enterprise's OTLP access logs; only null is accepted."),
    ]
}

/// Kong's `at_least_one_of` on the endpoints. `logs_endpoint` only takes null, so this requires `traces_endpoint`.
fn check(config: &Map<String, Value>, checks: &mut Checks) {
    checks.at_least_one_of(config, &["traces_endpoint", "logs_endpoint"]);
}

/// Kong's shorthand: a config's `endpoint` (deprecated) is its `traces_endpoint`. Applied before validation.
pub fn expand_shorthands(config: &mut Map<String, Value>) {
    if let Some(endpoint) = config.remove("endpoint")
        && config.get("traces_endpoint").is_none_or(Value::is_null)
    {
        config.insert("traces_endpoint".into(), endpoint);
    }
}

/// The validated config, as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub traces_endpoint: String,
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub resource_attributes: Option<std::collections::BTreeMap<String, String>>,
    pub queue: Queue,
    pub batch_span_count: Option<u64>,
    pub batch_flush_delay: Option<u64>,
    pub connect_timeout: u64,
    pub send_timeout: u64,
    pub read_timeout: u64,
    pub http_response_header_for_traceid: Option<String>,
    pub header_type: String,
    pub sampling_rate: Option<f64>,
    pub sampling_strategy: String,
    pub propagation: Propagation,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Queue {
    pub max_batch_size: u64,
    pub max_coalescing_delay: f64,
    pub max_entries: u64,
    pub max_retry_time: f64,
    pub initial_retry_delay: f64,
    pub max_retry_delay: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Propagation {
    pub extract: Option<Vec<String>>,
    pub clear: Option<Vec<String>>,
    pub inject: Option<Vec<String>>,
    pub default_format: String,
}

/// What propagation does, once Kong's legacy `header_type` is folded in (Kong's `get_plugin_params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagate {
    /// Read an incoming `traceparent`.
    pub extract_w3c: bool,
    /// Send a `traceparent` upstream.
    pub inject_w3c: bool,
    pub clear: Vec<String>,
}

impl Config {
    /// The spans per export request: the deprecated `batch_span_count` wins when set, as in Kong.
    pub fn batch_size(&self) -> u64 {
        self.batch_span_count.unwrap_or(self.queue.max_batch_size).max(1)
    }

    /// How long a batch waits for more spans: the deprecated `batch_flush_delay` wins when set.
    pub fn flush_delay(&self) -> std::time::Duration {
        let seconds = self.batch_flush_delay.map_or(self.queue.max_coalescing_delay, |s| s as f64);
        std::time::Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))
    }

    /// Kong's reading of `propagation` and `header_type`: the new fields win when any but `default_format` is
    /// set; otherwise `preserve` extracts (every format, of which Gatehouse reads W3C) and injects what it
    /// found, `ignore` extracts nothing and injects `default_format`, `w3c` does both. Formats other than W3C
    /// were refused by validation, so `preserve` always means W3C.
    pub fn propagate(&self) -> Propagate {
        let p = &self.propagation;
        let set = [&p.extract, &p.clear, &p.inject].iter().any(|v| v.is_some());
        let has = |list: &Option<Vec<String>>, formats: &[&str]| {
            list.as_ref().is_some_and(|l| l.iter().any(|f| formats.contains(&f.as_str())))
        };
        if set {
            return Propagate {
                extract_w3c: has(&p.extract, &["w3c"]),
                inject_w3c: has(&p.inject, &["w3c", "preserve"]),
                clear: p.clear.clone().unwrap_or_default(),
            };
        }
        Propagate { extract_w3c: self.header_type != "ignore", inject_w3c: true, clear: Vec::new() }
    }

    /// Whether an incoming trace's unsampled flag is followed (else a draw decides, as for no parent).
    pub fn parent_drops(&self) -> bool {
        self.sampling_strategy != "parent_probability_fallback"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": "opentelemetry", "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn defaults_are_kongs() {
        let plugin = validate(json!({"traces_endpoint": "http://collector:4318/v1/traces"})).unwrap();
        let config = &plugin["config"];
        assert_eq!(config["queue"]["max_batch_size"], json!(200));
        assert_eq!(config["queue"]["max_coalescing_delay"], json!(1));
        assert_eq!(config["queue"]["max_entries"], json!(10000));
        assert_eq!(config["queue"]["concurrency_limit"], json!(1));
        assert_eq!(config["queue"]["max_retry_time"], json!(60));
        assert_eq!(
            (&config["connect_timeout"], &config["send_timeout"], &config["read_timeout"]),
            (&json!(1000), &json!(5000), &json!(5000))
        );
        assert_eq!(config["header_type"], json!("preserve"));
        assert_eq!(config["sampling_rate"], Value::Null);
        assert_eq!(config["sampling_strategy"], json!("parent_drop_probability_fallback"));
        assert_eq!(
            config["propagation"],
            json!({"extract": null, "clear": null, "inject": null, "default_format": "w3c"})
        );
        assert_eq!(config["logs_endpoint"], Value::Null);
        assert!(config.get("metrics").is_none(), "an Enterprise field, not returned");
        let typed: Config = serde_json::from_value(config.clone()).unwrap();
        assert_eq!(typed.batch_size(), 200);
        assert_eq!(typed.flush_delay(), std::time::Duration::from_secs(1));
        assert_eq!(typed.propagate(), Propagate { extract_w3c: true, inject_w3c: true, clear: vec![] });
        assert_eq!(INFO.priority, 14);
    }

    #[test]
    fn the_deprecated_endpoint_is_the_traces_endpoint() {
        let plugin = validate(json!({"endpoint": "http://c:4318/v1/traces"})).unwrap();
        assert_eq!(plugin["config"]["traces_endpoint"], json!("http://c:4318/v1/traces"));
        assert!(plugin["config"].get("endpoint").is_none());
        let typed: Config = serde_json::from_value(
            validate(json!({"endpoint": "http://c/", "batch_span_count": 5, "batch_flush_delay": 2})).unwrap()
                ["config"]
                .clone(),
        )
        .unwrap();
        assert_eq!((typed.batch_size(), typed.flush_delay()), (5, std::time::Duration::from_secs(2)));
    }

    #[test]
    fn unimplemented_fields_and_formats_are_refused_by_name() {
        let endpoint = "http://c:4318/v1/traces";
        let first = |config: Value| validate(config).unwrap_err().into_iter().next().unwrap();
        assert_eq!(
            first(json!({})).1,
            "at least one of these fields must be non-empty: 'config.traces_endpoint', 'config.logs_endpoint'"
        );
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "logs_endpoint": "http://c/v1/logs"})).0,
            "config.logs_endpoint"
        );
        let b3 =
            first(json!({"traces_endpoint": endpoint, "propagation": {"extract": ["b3"], "default_format": "w3c"}}));
        assert_eq!(b3.0, "config.propagation.extract.1");
        assert!(b3.1.contains("'b3'"), "{}", b3.1);
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "propagation": {"inject": ["w3c", "jaeger"]}})).0,
            "config.propagation.inject.2"
        );
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "propagation": {"default_format": "ot"}})).0,
            "config.propagation.default_format"
        );
        assert_eq!(first(json!({"traces_endpoint": endpoint, "header_type": "aws"})).0, "config.header_type");
        assert_eq!(first(json!({"traces_endpoint": endpoint, "header_type": "zipkin"})).0, "config.header_type");
        assert_eq!(first(json!({"traces_endpoint": endpoint, "sampling_rate": 1.5})).0, "config.sampling_rate");
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "queue": {"concurrency_limit": -1}})).0,
            "config.queue.concurrency_limit"
        );
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "metrics": {"endpoint": "http://c/v1/metrics"}})).0,
            "config.metrics.endpoint"
        );
        assert_eq!(first(json!({"traces_endpoint": "ftp://c/"})).0, "config.traces_endpoint");
        assert_eq!(
            first(json!({"traces_endpoint": endpoint, "resource_attributes": {"a": ""}})).0,
            "config.resource_attributes.a"
        );
        // What Kong writes for an unset Enterprise record is accepted.
        let defaults = json!({"traces_endpoint": endpoint, "metrics": {"push_interval": 60}, "access_logs": null,
            "propagation": {"extract": ["w3c"], "inject": ["preserve"], "clear": ["x-b3-traceid"], "default_format": "w3c"},
            "sampling_rate": 0.25, "header_type": "ignore"});
        let typed: Config = serde_json::from_value(validate(defaults).unwrap()["config"].clone()).unwrap();
        assert_eq!(
            typed.propagate(),
            Propagate { extract_w3c: true, inject_w3c: true, clear: vec!["x-b3-traceid".into()] },
            "the new fields win over header_type"
        );
    }

    /// A collector's API key in `headers` is sealed at rest, as every encrypted field is.
    #[test]
    fn header_values_are_secret() {
        let plugin = validate(json!({"traces_endpoint": "http://c/", "headers": {"x-api-key": "k-1"}})).unwrap();
        let config = plugin["config"].as_object().unwrap();
        let secrets = super::super::encrypted_values(NAME, config);
        assert_eq!(secrets, [("headers.x-api-key".to_owned(), "k-1")]);
    }

    #[test]
    fn header_type_ignore_extracts_nothing() {
        let config = validate(json!({"traces_endpoint": "http://c/", "header_type": "ignore"})).unwrap();
        let typed: Config = serde_json::from_value(config["config"].clone()).unwrap();
        assert_eq!(typed.propagate(), Propagate { extract_w3c: false, inject_w3c: true, clear: vec![] });
        assert!(typed.parent_drops());
    }
}
