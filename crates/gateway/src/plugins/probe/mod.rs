//! `probe` (tests only): a plugin in every phase that records what it saw, to show that a plugin is one folder
//! plus one registry line and that the phase runner calls each phase, `log` included, whatever the outcome.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::{PluginInfo, no_check};
use gatehouse_model::gateway::schema::Field;

use super::{Flow, LogContext, Outcome, Phases, Plugin, PluginDef, RequestContext, ResponseContext, RewriteContext};

pub const NAME: &str = "probe";

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: 1000, consumer_scope: true, config: Vec::<Field>::new, check: no_check };

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { rewrite: true, access: true, response: true, log: true },
    build: |config, _| Ok(Arc::new(Probe::new(config))),
};

/// What every probe instance saw, in order: `rewrite`, `access`, `response <status>`, `log <status> <outcome>`.
pub static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Debug)]
pub struct Probe {
    /// Answer in `access` with this status instead of proxying.
    answer: Option<u16>,
}

/// What `access` keeps for the later phases in the probe's slot.
struct Visited(&'static str);

impl Probe {
    fn new(config: &Map<String, Value>) -> Self {
        let answer = config.get("answer").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
        Self { answer }
    }

    fn saw(what: String) {
        if let Ok(mut seen) = SEEN.lock() {
            seen.push(what);
        }
    }
}

#[async_trait]
impl Plugin for Probe {
    fn rewrite(&self, _ctx: &mut RewriteContext<'_>) {
        Self::saw("rewrite".into());
    }

    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        Self::saw("access".into());
        ctx.slots.set(NAME, Visited("access ran"));
        match self.answer {
            Some(code) => {
                let mut response = Response::new(Full::new(Bytes::from_static(b"probe")));
                *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
                Flow::Respond(response)
            }
            None => Flow::Continue,
        }
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        Self::saw(format!("response {}", ctx.status.as_u16()));
        ctx.headers.insert("x-probe", HeaderValue::from_static("1"));
    }

    fn log(&self, ctx: &LogContext<'_>) {
        let outcome = match ctx.outcome {
            Outcome::Proxied => "proxied".to_owned(),
            Outcome::Answered { plugin } => format!("answered by {plugin}"),
            Outcome::Failed(error) => format!("failed {}", error.status().as_u16()),
            Outcome::HttpsRequired => "https required".to_owned(),
        };
        let slot = ctx.slots.get::<Visited>(NAME).map_or("no slot", |v| v.0);
        Self::saw(format!("log {} {outcome} ({slot})", ctx.status.as_u16()));
    }
}
