//! `acl` (priority 950): lets a request through, or refuses it with Kong's 403, by the `acls` groups of the
//! consumer an authentication plugin identified (which is why it runs after all of them), and tells the upstream
//! the groups in `X-Consumer-Groups`.
//!
//! Kong's `handler.lua`, case by case: no consumer → 403 when a plugin accepted a credential anyway (a token no
//! consumer maps to), else 401; a consumer without groups → allowed under `deny`, refused like the previous case
//! under `allow`; otherwise `deny` refuses a member of any listed group and `allow` refuses a non-member. Kong
//! also consults "authenticated groups" that LDAP and OpenID Connect plugins report; no Gatehouse plugin reports
//! any, so `always_use_authenticated_groups` changes nothing yet (docs/compatibility.md).
//!
//! Per request this is a few binary searches in the consumer's sorted groups and, when allowed, one header value
//! clone: the groups and their header value are made when the configuration is compiled (`consumers.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins::acl::{Config, INFO};

use super::auth::json_response;
use super::{Flow, Phases, Plugin, PluginDef, RequestContext, Shared};

pub const X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(Acl::new(config)?)),
};

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Allow,
    Deny,
}

#[derive(Debug)]
pub struct Acl {
    mode: Mode,
    groups: Box<[String]>,
    hide_groups_header: bool,
}

impl Acl {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        // Kong's choice: `deny` when it has a first element, else `allow` (validation lets only one be set).
        let (mode, groups) = match config.deny {
            Some(deny) if !deny.is_empty() => (Mode::Deny, deny),
            _ => (Mode::Allow, config.allow.unwrap_or_default()),
        };
        Ok(Self { mode, groups: groups.into_boxed_slice(), hide_groups_header: config.hide_groups_header })
    }

    /// Kong's answer when the request cannot be tied to a consumer's groups: 403 if some plugin accepted a
    /// credential, else 401.
    fn unidentified(ctx: &RequestContext<'_>) -> Flow {
        if ctx.credential.is_some() { forbidden(ctx) } else { refuse(ctx, StatusCode::UNAUTHORIZED, "Unauthorized") }
    }
}

fn refuse(ctx: &RequestContext<'_>, status: StatusCode, message: &str) -> Flow {
    Flow::Respond(json_response(status, &json!({"message": message, "request_id": ctx.request_id}), None))
}

fn forbidden(ctx: &RequestContext<'_>) -> Flow {
    refuse(ctx, StatusCode::FORBIDDEN, "You cannot consume this service")
}

#[async_trait]
impl Plugin for Acl {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let Some(consumer) = ctx.consumer.as_deref() else { return Self::unidentified(ctx) };
        if consumer.groups.is_empty() && self.mode == Mode::Allow {
            return Self::unidentified(ctx);
        }
        let member = self.groups.iter().any(|g| consumer.in_group(g));
        let blocked = match self.mode {
            Mode::Deny => member,
            Mode::Allow => !member,
        };
        if blocked {
            return forbidden(ctx);
        }
        match (&consumer.groups_header, self.hide_groups_header) {
            (Some(value), false) => {
                let value: HeaderValue = value.clone();
                ctx.headers.insert(X_CONSUMER_GROUPS, value);
            }
            // Authentication plugins already dropped a client's own header; this keeps it so without one.
            _ => {
                ctx.headers.remove(X_CONSUMER_GROUPS);
            }
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(config: Value) -> Acl {
        let mut full = json!({"allow": null, "deny": null, "hide_groups_header": false,
            "always_use_authenticated_groups": false});
        full.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
        Acl::new(full.as_object().unwrap()).unwrap()
    }

    #[test]
    fn deny_with_a_first_group_decides_the_mode_as_in_kong() {
        assert_eq!(built(json!({"deny": ["a"]})).mode, Mode::Deny);
        let allow = built(json!({"allow": ["a", "b"], "deny": []}));
        assert_eq!((allow.mode, &*allow.groups), (Mode::Allow, &["a".to_owned(), "b".to_owned()][..]));
        assert!(built(json!({"hide_groups_header": true})).hide_groups_header);
        assert!(Acl::new(&Map::new()).is_err(), "an unvalidated config is refused at build, not at request time");
    }
}
