//! Konnect control planes (`/v2/control-planes`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::body::{BodyReader, Choice, Len, Presence};
use crate::labels::{LabelsPatch, apply_labels_patch};
use crate::problem::{InvalidParameter, Rule};
use crate::{Labels, Timestamp};

pub const NAME_LEN: Len = Len::new(2, 256);
pub const DESCRIPTION_LEN: Len = Len::new(0, 2048);
pub const MAX_PROXY_URLS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum ClusterType {
    #[serde(rename = "CLUSTER_TYPE_CONTROL_PLANE")]
    ControlPlane,
    #[serde(rename = "CLUSTER_TYPE_K8S_INGRESS_CONTROLLER")]
    K8sIngressController,
    #[serde(rename = "CLUSTER_TYPE_CONTROL_PLANE_GROUP")]
    ControlPlaneGroup,
    #[serde(rename = "CLUSTER_TYPE_SERVERLESS")]
    Serverless,
    #[serde(rename = "CLUSTER_TYPE_KAFKA_NATIVE_EVENT_PROXY")]
    KafkaNativeEventProxy,
    #[serde(rename = "CLUSTER_TYPE_SERVERLESS_V1")]
    ServerlessV1,
}

impl Choice for ClusterType {
    const ALL: &'static [Self] = &[
        Self::ControlPlane,
        Self::K8sIngressController,
        Self::ControlPlaneGroup,
        Self::Serverless,
        Self::KafkaNativeEventProxy,
        Self::ServerlessV1,
    ];
    fn as_str(self) -> &'static str {
        match self {
            Self::ControlPlane => "CLUSTER_TYPE_CONTROL_PLANE",
            Self::K8sIngressController => "CLUSTER_TYPE_K8S_INGRESS_CONTROLLER",
            Self::ControlPlaneGroup => "CLUSTER_TYPE_CONTROL_PLANE_GROUP",
            Self::Serverless => "CLUSTER_TYPE_SERVERLESS",
            Self::KafkaNativeEventProxy => "CLUSTER_TYPE_KAFKA_NATIVE_EVENT_PROXY",
            Self::ServerlessV1 => "CLUSTER_TYPE_SERVERLESS_V1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    PinnedClientCerts,
    PkiClientCerts,
}

impl Choice for AuthType {
    const ALL: &'static [Self] = &[Self::PinnedClientCerts, Self::PkiClientCerts];
    fn as_str(self) -> &'static str {
        match self {
            Self::PinnedClientCerts => "pinned_client_certs",
            Self::PkiClientCerts => "pki_client_certs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProxyUrl {
    pub host: String,
    pub port: i64,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: String,
    pub cluster_type: ClusterType,
    pub auth_type: AuthType,
    pub cloud_gateway: bool,
    pub proxy_urls: Vec<ProxyUrl>,
    pub labels: Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct NewControlPlane {
    pub name: String,
    pub description: String,
    pub cluster_type: ClusterType,
    pub auth_type: AuthType,
    pub cloud_gateway: bool,
    pub proxy_urls: Vec<ProxyUrl>,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct ControlPlanePatch {
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub description: Option<String>,
    #[schema(nullable = false)]
    pub auth_type: Option<AuthType>,
    #[schema(nullable = false)]
    pub proxy_urls: Option<Vec<ProxyUrl>>,
    /// A `null` value removes that label; `null` for the whole map removes them all.
    #[schema(value_type = Option<std::collections::HashMap<String, Option<String>>>)]
    pub labels: Presence<LabelsPatch>,
}

fn proxy_url(field: &str, v: &Value) -> Result<ProxyUrl, InvalidParameter> {
    let bad = |reason: &str| InvalidParameter::new(field, Rule::Invalid, reason).in_body();
    let obj =
        v.as_object().ok_or_else(|| InvalidParameter::new(field, Rule::IsObject, "must be an object").in_body())?;
    if obj.keys().any(|k| !matches!(k.as_str(), "host" | "port" | "protocol")) {
        return Err(bad("only host, port and protocol are allowed"));
    }
    let host = obj
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| (1..=120).contains(&h.len()))
        .ok_or_else(|| bad("host must be 1 to 120 characters"))?;
    let port = obj
        .get("port")
        .and_then(Value::as_i64)
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| bad("port must be an integer from 1 to 65535"))?;
    let protocol = obj
        .get("protocol")
        .and_then(Value::as_str)
        .filter(|p| (1..=32).contains(&p.len()))
        .ok_or_else(|| bad("protocol must be 1 to 32 characters"))?;
    Ok(ProxyUrl { host: host.to_owned(), port, protocol: protocol.to_owned() })
}

const CREATE_FIELDS: &[&str] =
    &["name", "description", "cluster_type", "auth_type", "cloud_gateway", "proxy_urls", "labels"];
const PATCH_FIELDS: &[&str] = &["name", "description", "auth_type", "proxy_urls", "labels"];

impl NewControlPlane {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, CREATE_FIELDS, &[]);
        let name = r.required_string("name", NAME_LEN);
        let description = r.string("description", DESCRIPTION_LEN);
        let cluster_type = r.choice("cluster_type");
        let auth_type = r.choice("auth_type");
        let cloud_gateway = r.boolean("cloud_gateway");
        let proxy_urls = r.array("proxy_urls", MAX_PROXY_URLS, false, proxy_url);
        let labels = r.labels("labels");
        r.finish()?;
        Ok(Self {
            name: name.unwrap_or_default(),
            description: description.unwrap_or_default(),
            cluster_type: cluster_type.unwrap_or(ClusterType::ControlPlane),
            auth_type: auth_type.unwrap_or(AuthType::PinnedClientCerts),
            cloud_gateway: cloud_gateway.unwrap_or(false),
            proxy_urls: proxy_urls.unwrap_or_default(),
            labels: labels.unwrap_or_default(),
        })
    }
}

impl ControlPlanePatch {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, PATCH_FIELDS, &[]);
        let patch = Self {
            name: r.string("name", NAME_LEN),
            description: r.string("description", DESCRIPTION_LEN),
            auth_type: r.choice("auth_type"),
            proxy_urls: r.array("proxy_urls", MAX_PROXY_URLS, false, proxy_url),
            labels: r.labels_patch("labels"),
        };
        if obj.contains_key("cluster_type") {
            r.error(
                InvalidParameter::new("cluster_type", Rule::UnknownProperty, "cluster_type cannot be changed")
                    .in_body(),
            );
        }
        r.finish()?;
        Ok(patch)
    }

    pub fn apply(&self, current: &ControlPlane, now: Timestamp) -> Result<ControlPlane, Vec<InvalidParameter>> {
        Ok(ControlPlane {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            description: self.description.clone().unwrap_or_else(|| current.description.clone()),
            auth_type: self.auth_type.unwrap_or(current.auth_type),
            proxy_urls: self.proxy_urls.clone().unwrap_or_else(|| current.proxy_urls.clone()),
            labels: apply_labels_patch(&current.labels, &self.labels).map_err(|e| vec![e])?,
            updated_at: now,
            ..current.clone()
        })
    }
}

/// Konnect's response shape; `control_plane_endpoint` is this node's admin URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlaneView<'a> {
    pub id: uuid::Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub labels: &'a Labels,
    pub config: ControlPlaneConfig<'a>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlaneConfig<'a> {
    pub control_plane_endpoint: &'a str,
    pub telemetry_endpoint: &'a str,
    pub cluster_type: ClusterType,
    pub auth_type: AuthType,
    pub cloud_gateway: bool,
    pub proxy_urls: &'a [ProxyUrl],
}

impl ControlPlane {
    pub fn view<'a>(&'a self, admin_url: &'a str) -> ControlPlaneView<'a> {
        ControlPlaneView {
            id: self.id,
            name: &self.name,
            description: &self.description,
            labels: &self.labels,
            config: ControlPlaneConfig {
                control_plane_endpoint: admin_url,
                telemetry_endpoint: admin_url,
                cluster_type: self.cluster_type,
                auth_type: self.auth_type,
                cloud_gateway: self.cloud_gateway,
                proxy_urls: &self.proxy_urls,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_rules() {
        let cp = NewControlPlane::from_body(json!({"name": "quickstart"}).as_object().unwrap()).unwrap();
        assert_eq!(
            (cp.cluster_type, cp.auth_type, cp.cloud_gateway),
            (ClusterType::ControlPlane, AuthType::PinnedClientCerts, false)
        );
        for bad in [
            json!({"name": "q"}),
            json!({}),
            json!({"name": "ok", "id": "x"}),
            json!({"name": "ok", "cluster_type": "OTHER"}),
            json!({"name": "ok", "proxy_urls": [{"host": "h", "port": 0, "protocol": "https"}]}),
        ] {
            assert!(NewControlPlane::from_body(bad.as_object().unwrap()).is_err(), "{bad}");
        }
        assert!(
            ControlPlanePatch::from_body(json!({"cluster_type": "CLUSTER_TYPE_SERVERLESS"}).as_object().unwrap())
                .is_err()
        );
    }
}
