//! `openid-connect`'s config (Kong's Enterprise `OpenidConnect` schema, every field). The fields the gateway
//! implements are declared here; the rest of Kong's list, accepted only empty or at Kong's default, is in
//! `kong_fields`.

mod kong_fields;

use serde_json::{Map, Value};

use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;

pub use kong_fields::SUPPORTED;

pub const NAME: &str = "openid-connect";
/// Kong's priority: after `key-auth` (1250), before `acl` (950) and `rate-limiting` (910).
pub const PRIORITY: i32 = 1050;

/// Kong's schema has no `consumer` reference: the plugin is what finds the consumer.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check };

pub fn config_fields() -> Vec<Field> {
    let mut fields = supported_fields();
    fields.extend(kong_fields::other_fields());
    fields
}

/// The fields in [`SUPPORTED`], in that order.
fn supported_fields() -> Vec<Field> {
    Vec::new()
}

fn check(_config: &Map<String, Value>, _checks: &mut Checks) {}
