//! `openid-connect` (priority 1050): validates bearer tokens locally against the issuer's keys.

use gatehouse_model::gateway::plugins::openid_connect::INFO;

use super::{Phases, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |_, _| Err("openid-connect is not built yet".into()),
};
