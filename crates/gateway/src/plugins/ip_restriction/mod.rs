//! `ip-restriction` (priority 990): refuses requests by their client's address, the one the proxy computed
//! (behind `proxy.trusted_ips`, from `X-Forwarded-For`, as Kong's realip module gives `binary_remote_addr`). As in
//! Kong's `handler.lua`, `deny` is checked first and wins; then, when `allow` holds anything, the address must be
//! in it. A refusal is Kong's `kong.response.error`: `status` (403) and `{"message": …, "request_id": …}`, the
//! message defaulting to `IP address not allowed: <address>`.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use ipnet::IpNet;
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins::ip_restriction::{Config, INFO, parse_ip_or_cidr};

use super::auth::json_response;
use super::{Flow, Phases, Plugin, PluginDef, RequestContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(IpRestriction::new(config)?)),
};

#[derive(Debug)]
pub struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    status: StatusCode,
    message: Option<String>,
}

impl IpRestriction {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let status = match config.status {
            None => StatusCode::FORBIDDEN,
            Some(n) => StatusCode::from_u16(n as u16).map_err(|e| e.to_string())?,
        };
        Ok(Self {
            allow: networks(config.allow.as_deref())?,
            deny: networks(config.deny.as_deref())?,
            status,
            message: config.message,
        })
    }

    fn refuse(&self, ctx: &RequestContext<'_>, client: IpAddr) -> Flow {
        let message = match &self.message {
            Some(message) => message.clone(),
            None => format!("IP address not allowed: {client}"),
        };
        tracing::debug!(request_id = ctx.request_id, %client, "ip-restriction refused the request");
        let body = json!({"message": message, "request_id": ctx.request_id});
        Flow::Respond(json_response(self.status, &body, None))
    }
}

/// Validation accepted every entry, so a failure here means a configuration that skipped it: refused whole.
fn networks(entries: Option<&[String]>) -> Result<Vec<IpNet>, String> {
    entries
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let (address, prefix) =
                parse_ip_or_cidr(entry).ok_or_else(|| format!("invalid ip or cidr range: '{entry}'"))?;
            IpNet::new(address, prefix).map(|net| net.trunc()).map_err(|e| e.to_string())
        })
        .collect()
}

#[async_trait]
impl Plugin for IpRestriction {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`; IPv4 rules must still match it.
        let client = ctx.client_ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&client)) {
            return self.refuse(ctx, client);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&client)) {
            return self.refuse(ctx, client);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_keep_the_prefix_and_drop_host_bits() {
        let nets = networks(Some(&["127.0.0.1/8".into(), "::1".into(), "2001:db8::5/32".into()])).unwrap();
        let has = |ip: &str| nets.iter().any(|n| n.contains(&ip.parse::<IpAddr>().unwrap()));
        assert!(has("127.255.0.9") && has("::1") && has("2001:db8:ffff::1"));
        assert!(!has("128.0.0.1") && !has("::2") && !has("2001:db9::1"));
        assert!(networks(Some(&["nope".into()])).is_err());
    }
}
