//! Consumers as the proxy uses them, and the lookups authentication plugins make (by id, username, custom id).

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_model::gateway::snapshot;

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub id: uuid::Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Made when the configuration is compiled, so an authenticated request clones them instead of formatting.
    pub headers: ConsumerHeaders,
}

/// A consumer's `X-Consumer-Id`, `X-Consumer-Custom-Id` and `X-Consumer-Username` values; `None` for a field the
/// consumer does not have or that cannot be a header value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerHeaders {
    pub id: Option<http::HeaderValue>,
    pub custom_id: Option<http::HeaderValue>,
    pub username: Option<http::HeaderValue>,
}

impl ConsumerHeaders {
    pub(crate) fn of(consumer: &snapshot::Consumer) -> Self {
        let value = |text: Option<&str>| text.and_then(|t| http::HeaderValue::from_str(t).ok());
        Self {
            id: value(Some(&consumer.id.to_string())),
            custom_id: value(consumer.custom_id.as_deref()),
            username: value(consumer.username.as_deref()),
        }
    }
}

/// Every consumer of a configuration, indexed the ways plugins look them up.
#[derive(Debug, Default)]
pub struct Consumers {
    by_id: HashMap<uuid::Uuid, Arc<Consumer>>,
    by_username: HashMap<String, Arc<Consumer>>,
    by_custom_id: HashMap<String, Arc<Consumer>>,
}

impl Consumers {
    pub fn new(consumers: &[snapshot::Consumer]) -> Self {
        let mut index = Self::default();
        for c in consumers {
            let consumer = Arc::new(Consumer {
                id: c.id,
                username: c.username.clone(),
                custom_id: c.custom_id.clone(),
                headers: ConsumerHeaders::of(c),
            });
            if let Some(username) = &consumer.username {
                index.by_username.insert(username.clone(), consumer.clone());
            }
            if let Some(custom_id) = &consumer.custom_id {
                index.by_custom_id.insert(custom_id.clone(), consumer.clone());
            }
            index.by_id.insert(consumer.id, consumer);
        }
        index
    }

    pub fn by_id(&self, id: &uuid::Uuid) -> Option<&Arc<Consumer>> {
        self.by_id.get(id)
    }

    pub fn by_username(&self, username: &str) -> Option<&Arc<Consumer>> {
        self.by_username.get(username)
    }

    pub fn by_custom_id(&self, custom_id: &str) -> Option<&Arc<Consumer>> {
        self.by_custom_id.get(custom_id)
    }

    /// Kong's anonymous lookup: by id, else by username.
    pub fn by_id_or_username(&self, key: &str) -> Option<&Arc<Consumer>> {
        key.parse::<uuid::Uuid>().ok().and_then(|id| self.by_id.get(&id)).or_else(|| self.by_username(key))
    }
}
