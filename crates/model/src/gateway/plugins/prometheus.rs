//! `prometheus`'s config (Kong's OSS `schema.lua`): which metric families the plugin records. The metrics
//! themselves are served by the status listener's `/metrics`, never by the proxy.

use serde::Deserialize;
use serde_json::json;

use super::{PluginInfo, no_check};
use crate::gateway::schema::Field;

pub const NAME: &str = "prometheus";
/// Kong's priority: among the last, so the request's final status and latencies are what it records.
pub const PRIORITY: i32 = 13;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::boolean("per_consumer").default(json!(false)).describe_as(
            "Fill the `consumer` label of `kong_http_requests_total` and `kong_bandwidth_bytes` with the \
             authenticated consumer's username.",
        ),
        Field::boolean("status_code_metrics")
            .default(json!(false))
            .describe_as("Record `kong_http_requests_total` (requests by service, route, status code and source)."),
        Field::boolean("ai_metrics")
            .default(json!(false))
            .unsupported()
            .describe_as("Kong's AI metrics; Gatehouse has no AI plugins, so only `false` is accepted."),
        Field::boolean("latency_metrics").default(json!(false)).describe_as(
            "Record the `kong_kong_latency_ms`, `kong_upstream_latency_ms` and `kong_request_latency_ms` histograms.",
        ),
        Field::boolean("bandwidth_metrics")
            .default(json!(false))
            .describe_as("Record `kong_bandwidth_bytes` (request and response bytes by direction)."),
        Field::boolean("upstream_health_metrics").default(json!(false)).describe_as(
            "Kong's `kong_upstream_target_health`; Gatehouse has no upstream entities yet, so there is nothing to \
             report and the setting is accepted for compatibility.",
        ),
        Field::boolean("wasm_metrics")
            .default(json!(false))
            .unsupported()
            .describe_as("Kong's Wasm filter metrics; Gatehouse runs no Wasm filters, so only `false` is accepted."),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub per_consumer: bool,
    pub status_code_metrics: bool,
    pub latency_metrics: bool,
    pub bandwidth_metrics: bool,
    pub upstream_health_metrics: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};
    use serde_json::{Map, Value};

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": "prometheus", "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn defaults_are_kongs() {
        let plugin = validate(json!({})).unwrap();
        assert_eq!(
            plugin["config"],
            json!({"per_consumer": false, "status_code_metrics": false, "ai_metrics": false,
                "latency_metrics": false, "bandwidth_metrics": false, "upstream_health_metrics": false,
                "wasm_metrics": false})
        );
        let config: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert!(!config.per_consumer);
        assert_eq!(INFO.priority, 13);
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        assert_eq!(validate(json!({"per_consumer": "yes"})).unwrap_err()[0].0, "config.per_consumer");
        assert_eq!(validate(json!({"bogus": true})).unwrap_err()[0].0, "config.bogus");
        assert_eq!(validate(json!({"ai_metrics": true})).unwrap_err()[0].0, "config.ai_metrics");
        assert!(validate(json!({"status_code_metrics": true, "per_consumer": true})).is_ok());
    }
}
