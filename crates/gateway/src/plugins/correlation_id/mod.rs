//! `correlation-id` (priority 100001, so before every other plugin): makes sure each request carries an id in a
//! header (`Kong-Request-ID` by default) on its way upstream, keeping one the client sent, and with
//! `echo_downstream` sends the same id back to the client.
//!
//! Generators, as Kong's `handler.lua` spells them: `uuid` (a random UUID), `uuid#counter` (a UUID made once per
//! worker thread, `#`, and that worker's count of ids, as Kong makes one per nginx worker) and `tracker`
//! (`<server address>-<server port>-<process id>-<connection>-<request on it>-<seconds.millis>`).

use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use gatehouse_model::Clock;
use gatehouse_model::gateway::plugins::correlation_id::{Config, Generator, INFO, NAME};

use super::{Connection, Flow, Phases, Plugin, PluginDef, RequestContext, ResponseContext, RewriteContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    // `rewrite` keeps the client's id for an answer made before `access` (a 404), which Kong echoes too.
    phases: Phases { rewrite: true, access: true, response: true, log: false },
    build: |config, shared| Ok(Arc::new(CorrelationId::new(config, shared)?)),
};

#[derive(Debug)]
pub struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
    clock: gatehouse_model::SharedClock,
}

/// The id a request ended up with, kept for the response when it is echoed.
#[derive(Debug)]
struct Echo(HeaderValue);

impl CorrelationId {
    pub fn new(config: &Map<String, Value>, shared: &Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let header = HeaderName::from_bytes(config.header_name.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self { header, generator: config.generator, echo: config.echo_downstream, clock: shared.clock.clone() })
    }

    fn generate(&self, connection: &Connection) -> HeaderValue {
        let made = match self.generator {
            Generator::Uuid => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
            }
            Generator::UuidCounter => WORKER_IDS.with(|ids| {
                let count = ids.count.get() + 1;
                ids.count.set(count);
                // The UUID, `#` and at most 20 digits (`u64::MAX`): the slices below stay in bounds.
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH + 21];
                let (head, tail) = text.split_at_mut(uuid::fmt::Hyphenated::LENGTH);
                head.copy_from_slice(&ids.uuid);
                tail[0] = b'#';
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(count).as_bytes();
                tail[1..=digits.len()].copy_from_slice(digits);
                HeaderValue::from_bytes(&text[..uuid::fmt::Hyphenated::LENGTH + 1 + digits.len()])
            }),
            Generator::Tracker => {
                let micros = self.clock.now().micros();
                let (secs, millis) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000) / 1000);
                let (ip, port, pid) = (connection.local.ip(), connection.local.port(), std::process::id());
                let (serial, requests) = (connection.serial, connection.requests);
                HeaderValue::from_str(&format!("{ip}-{port}-{pid}-{serial}-{requests}-{secs}.{millis:03}"))
            }
        };
        // Made of hex digits, dots, colons, dashes and `#`: always a header value.
        made.unwrap_or(HeaderValue::from_static("0"))
    }
}

/// `uuid#counter`'s state: one UUID per worker thread (the proxy's workers are threads, Kong's nginx processes)
/// and the count of ids it made, shared by every instance on the thread and kept across configuration changes,
/// so ids never repeat; no other core ever touches it.
struct WorkerIds {
    uuid: [u8; uuid::fmt::Hyphenated::LENGTH],
    count: Cell<u64>,
}

thread_local! {
    static WORKER_IDS: WorkerIds = {
        let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid);
        WorkerIds { uuid, count: Cell::new(0) }
    };
}

#[async_trait]
impl Plugin for CorrelationId {
    fn rewrite(&self, ctx: &mut RewriteContext<'_>) {
        if self.echo
            && let Some(id) = ctx.headers.get(&self.header).filter(|v| !v.is_empty())
        {
            ctx.slots.set(NAME, Echo(id.clone()));
        }
    }

    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let id = match ctx.headers.get(&self.header).filter(|v| !v.is_empty()) {
            Some(id) => id.clone(),
            None => {
                let id = self.generate(&ctx.connection);
                ctx.headers.insert(self.header.clone(), id.clone());
                id
            }
        };
        if self.echo {
            ctx.slots.set(NAME, Echo(id));
        }
        Flow::Continue
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        if !self.echo {
            return;
        }
        let id = match ctx.slots.get::<Echo>(NAME) {
            Some(Echo(id)) => id.clone(),
            None => self.generate(&ctx.connection),
        };
        ctx.headers.insert(self.header.clone(), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::{ManualClock, Timestamp};
    use serde_json::json;

    fn plugin(generator: &str, clock: ManualClock) -> CorrelationId {
        let config = json!({"header_name": "Kong-Request-ID", "generator": generator, "echo_downstream": true});
        let shared = Shared::new(None, None, gatehouse_model::SharedClock::new(Arc::new(clock)), Arc::default());
        CorrelationId::new(config.as_object().unwrap(), &shared).unwrap()
    }

    fn text(v: &HeaderValue) -> String {
        v.to_str().unwrap().to_owned()
    }

    #[test]
    fn generators_make_kongs_shapes() {
        let clock = ManualClock::new(Timestamp::from_micros(1_800_000_000_123_456));
        let connection = Connection { local: "127.0.0.1:8000".parse().unwrap(), serial: 7, requests: 3 };
        let uuid = text(&plugin("uuid", clock.clone()).generate(&connection));
        assert_eq!(uuid::Uuid::parse_str(&uuid).unwrap().get_version_num(), 4);
        assert_eq!(uuid, uuid.to_lowercase());

        let counter = plugin("uuid#counter", clock.clone());
        let (a, b) = (text(&counter.generate(&connection)), text(&counter.generate(&connection)));
        let (a_uuid, a_count) = a.split_once('#').unwrap();
        let (b_uuid, b_count) = b.split_once('#').unwrap();
        assert_eq!(a_uuid, b_uuid, "one UUID per worker");
        assert!(uuid::Uuid::parse_str(a_uuid).is_ok());
        assert_eq!(b_count.parse::<u64>().unwrap(), a_count.parse::<u64>().unwrap() + 1);
        // Another instance on the same thread (a configuration change) continues the count.
        let next = text(&plugin("uuid#counter", clock.clone()).generate(&connection));
        assert_eq!(next, format!("{a_uuid}#{}", b_count.parse::<u64>().unwrap() + 1));
        let elsewhere = std::thread::spawn(move || text(&counter.generate(&connection))).join().unwrap();
        assert_ne!(elsewhere.split_once('#').unwrap().0, a_uuid, "another worker, another UUID");
        assert!(elsewhere.ends_with("#1"));

        let tracker = text(&plugin("tracker", clock.clone()).generate(&connection));
        assert_eq!(tracker, format!("127.0.0.1-8000-{}-7-3-1800000000.123", std::process::id()));
        clock.set(Timestamp::from_micros(1_800_000_001_000_999));
        let tracker = text(&plugin("tracker", clock).generate(&connection));
        assert!(tracker.ends_with("-1800000001.000"), "{tracker}");
    }
}
