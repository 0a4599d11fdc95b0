//! The issuer listener: every auth server's public OAuth endpoints under its issuer URL.
//!
//! Requests are resolved to an auth server by the configured template (the key is a path segment, or the first
//! label of `Host`), then served from that server's in-memory [`snapshot::Snapshot`]. Routing is a small explicit
//! table so path-based and host-based issuers share one code path.

mod claims;
pub mod crypto;
mod forms;
pub mod limiter;
mod metadata;
mod recorder;
pub mod revocations;
pub mod snapshot;
mod token;
mod validation;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use gatehouse_model::body::Choice;
use gatehouse_model::issuer_url::IssuerUrlTemplate;
use gatehouse_model::oauth::OAuthErrorCode;
use gatehouse_runtime::Services;
use gatehouse_runtime::config::ListenerConfig;
use gatehouse_runtime::errors::{ApiError, OAuthError};
use gatehouse_store::{Backend, StoreError};

pub use limiter::Limits;
use recorder::TokenRecorder;
use revocations::RevocationSet;
use snapshot::{ClientEntry, Snapshot, SnapshotCache};

/// How often expired token records and revocations are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Answers to wrong secrets waiting out their delay at once; past this, they are answered without waiting, so a
/// flood cannot pin memory and connections.
const MAX_DELAYED_ANSWERS: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct IssuerSettings {
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
}

impl IssuerSettings {
    pub fn from_config(config: &ListenerConfig) -> Self {
        let b = &config.brute_force;
        let d = Limits::default();
        let limits = Limits {
            window: b.window_secs.map_or(d.window, Duration::from_secs),
            per_client_and_address: b.per_client_and_address.unwrap_or(d.per_client_and_address),
            per_client: b.per_client.unwrap_or(d.per_client),
            per_address: b.per_address.unwrap_or(d.per_address),
            failure_delay: b.failure_delay_ms.map_or(d.failure_delay, Duration::from_millis),
            trust_for: b.trust_secs.map_or(d.trust_for, Duration::from_secs),
            capacity: b.max_tracked.unwrap_or(d.capacity),
        };
        Self { trusted_proxies: config.trusted_ips.clone(), limits }
    }
}

#[derive(Debug)]
pub struct Issuer {
    pub services: Services,
    pub template: Arc<IssuerUrlTemplate>,
    pub snapshots: Arc<SnapshotCache>,
    pub revocations: Arc<RevocationSet>,
    recorder: TokenRecorder,
    limiter: limiter::AuthLimiter,
    delayed_answers: tokio::sync::Semaphore,
    trusted_proxies: Vec<IpNet>,
}

pub type IssuerState = Arc<Issuer>;

impl Issuer {
    /// Loads revocations, follows the bus, and starts the record writers and the pruning task.
    pub async fn start(
        services: Services,
        template: Arc<IssuerUrlTemplate>,
        settings: IssuerSettings,
    ) -> Result<IssuerState, StoreError> {
        let revocations = Arc::new(RevocationSet::default());
        revocations.follow(services.store.clone(), services.clock.clone());
        revocations.reload(services.store.as_ref(), services.clock.now()).await?;
        let writers = match services.store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let issuer = Arc::new(Issuer {
            snapshots: SnapshotCache::new(services.clone(), template.clone()),
            recorder: TokenRecorder::start(services.store.clone(), writers, services.metrics.clone()),
            limiter: limiter::AuthLimiter::new(settings.limits),
            delayed_answers: tokio::sync::Semaphore::new(MAX_DELAYED_ANSWERS),
            trusted_proxies: settings.trusted_proxies,
            revocations,
            template,
            services,
        });
        let weak = Arc::downgrade(&issuer);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                let Some(issuer) = weak.upgrade() else { return };
                let now = issuer.services.clock.now();
                issuer.revocations.prune(now);
                match issuer.services.store.prune_tokens(now).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned expired token records"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not prune token records"),
                }
            }
        });
        Ok(issuer)
    }
}

pub fn issuer_router(state: IssuerState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(issuer): State<IssuerState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/health" {
        return gatehouse_runtime::health::response(issuer.services.store.as_ref());
    }
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(parts.uri.host());
    let Some((key, endpoint)) = issuer.template.resolve(host, parts.uri.path()).map(|(k, e)| (k, e.into_owned()))
    else {
        return not_found();
    };
    let snapshot = match issuer.snapshots.get(&key).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "could not load an auth server");
            return OAuthError::from(ApiError::Unavailable(Box::new(LoadFailed))).into_response();
        }
    };
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let mut response = route(&issuer, &snapshot, &endpoint, parts, body).await;
    cors(&snapshot, origin.as_ref(), &mut response);
    response
}

#[derive(Debug, thiserror::Error)]
#[error("the auth server could not be loaded")]
struct LoadFailed;

const KNOWN: &[&str] = &[
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks",
    "/oauth/token",
    "/introspect",
    "/revoke",
    "/userinfo",
    "/authorize",
    "/end_session",
    "/device_authorization",
];

async fn route(issuer: &Issuer, snapshot: &Snapshot, endpoint: &str, parts: Parts, body: Body) -> Response {
    let address = caller_address(&parts, &issuer.trusted_proxies);
    let method = parts.method.clone();
    let result = match (endpoint, &method) {
        (
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server",
            &Method::GET | &Method::HEAD,
        ) => Ok(metadata::discovery(snapshot)),
        ("/.well-known/jwks", &Method::GET | &Method::HEAD) => Ok(metadata::jwks(issuer, snapshot)),
        ("/oauth/token", &Method::POST) => {
            let result = token::token(issuer, snapshot, &parts, body, address).await;
            let outcome = result.as_ref().map_or_else(OAuthError::outcome, |_| "issued");
            let algorithm = snapshot.signer.algorithm.as_str();
            issuer.services.metrics.token_requests.add(&[&snapshot.server.name, algorithm, outcome], 1);
            result
        }
        ("/introspect", &Method::POST) => {
            // A success records whether the token was active; failures are recorded here.
            let result = validation::introspect(issuer, snapshot, &parts, body, address).await;
            if let Err(e) = &result {
                issuer.services.metrics.introspections.add(&[&snapshot.server.name, e.outcome()], 1);
            }
            result
        }
        ("/revoke", &Method::POST) => {
            let result = validation::revoke(issuer, snapshot, &parts, body, address).await;
            if let Err(e) = &result {
                issuer.services.metrics.revocations.add(&[&snapshot.server.name, e.outcome()], 1);
            }
            result
        }
        ("/userinfo", &Method::GET | &Method::POST) => Ok(validation::userinfo(issuer, snapshot, &parts)),
        ("/authorize" | "/end_session" | "/device_authorization", _) if method != Method::OPTIONS => {
            Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "this endpoint is not offered: Gatehouse issues tokens with client_credentials at the token endpoint",
            ))
        }
        (e, &Method::OPTIONS) if KNOWN.contains(&e) => Ok(StatusCode::NO_CONTENT.into_response()),
        (e, _) if KNOWN.contains(&e) => Err(OAuthError::from(ApiError::MethodNotAllowed)),
        _ => return not_found(),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn not_found() -> Response {
    OAuthError::from(ApiError::NotFound("no such issuer endpoint".to_owned())).into_response()
}

fn caller_address(parts: &Parts, trusted: &[IpNet]) -> IpAddr {
    let peer =
        parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| c.0);
    gatehouse_net::client_address(peer.ip(), &parts.headers, trusted)
}

/// CORS for the auth server's `trusted_origins` only; any other origin gets no CORS headers, so browsers block it.
fn cors(snapshot: &Snapshot, origin: Option<&HeaderValue>, response: &mut Response) {
    let Some(origin) = origin else { return };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let trusted = origin.to_str().is_ok_and(|o| snapshot.server.trusted_origins.iter().any(|t| t == o));
    if trusted {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
}

/// Authenticates the caller as a client of this auth server, under the brute-force limits (see [`limiter`]).
pub(crate) async fn authenticate<'s>(
    issuer: &Issuer,
    snapshot: &'s Snapshot,
    presented: forms::Presented,
    address: IpAddr,
) -> Result<&'s ClientEntry, OAuthError> {
    use forms::Presented;
    let metrics = &issuer.services.metrics;
    let server = snapshot.server.name.as_str();
    let missing = || metrics.client_auth_failures.add(&[server, "missing"], 1);
    let (client_id, secrets, via_basic) = match presented {
        Presented::Secret { client_id, secrets, via_basic } => (client_id, secrets, via_basic),
        Presented::IdOnly { client_id } => {
            missing();
            if snapshot.client(&client_id).is_some_and(|c| {
                c.client.token_endpoint_auth_method == gatehouse_model::identity::client::TokenEndpointAuthMethod::None
            }) {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnauthorizedClient,
                    "this client is registered without client authentication, which cannot get tokens",
                ));
            }
            return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication is required"));
        }
        Presented::Nothing => {
            missing();
            let mut e = OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication is required");
            e.basic_challenge = true;
            return Err(e);
        }
    };
    let now = issuer.services.clock.now();
    let attempt = issuer.limiter.attempt(snapshot.server.id, &client_id, address);
    // Refused before the secret is checked, so the answer says nothing about the secret.
    if let Err(retry_after_secs) = issuer.limiter.admit(&attempt, now) {
        tracing::info!(client = %shown(&client_id), %address, "client authentication refused unchecked (guessing)");
        metrics.client_auth_throttled.add(&[server], 1);
        return Err(ApiError::TooManyRequests { retry_after_secs }.into());
    }
    let hashes: Vec<_> = secrets.iter().map(|s| issuer.services.keys.hash_client_secret(s.expose())).collect();
    let entry = snapshot.client(&client_id).filter(|entry| hashes.iter().any(|h| entry.secret_matches(h)));
    if let Some(entry) = entry {
        issuer.limiter.succeeded(&attempt, now);
        return Ok(entry);
    }
    metrics.client_auth_failures.add(&[server, "rejected"], 1);
    // Basic credentials are checked in two forms (as sent, and form-decoded), and each is a guess.
    let Some(failure) =
        hashes.iter().map(|presented| issuer.limiter.failed(&attempt, presented, now)).reduce(|a, b| {
            limiter::Failure {
                new: a.new || b.new,
                delay: a.delay.max(b.delay),
                throttled: a.throttled.or(b.throttled),
            }
        })
    else {
        return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication failed"));
    };
    let client = shown(&client_id);
    if failure.new {
        tracing::warn!(%client, %address, "client authentication failed: a wrong secret");
    } else {
        tracing::info!(%client, %address, "client authentication failed: the same wrong secret again");
    }
    if !failure.delay.is_zero()
        && let Ok(_waiting) = issuer.delayed_answers.try_acquire()
    {
        tokio::time::sleep(failure.delay).await;
    }
    if let Some(retry_after_secs) = failure.throttled {
        metrics.client_auth_throttled.add(&[server], 1);
        return Err(ApiError::TooManyRequests { retry_after_secs }.into());
    }
    let mut e = OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication failed");
    e.basic_challenge = via_basic;
    Err(e)
}

/// A presented client id as logs show it: escaped, and cut short (ids may be 16 KiB of anything).
fn shown(client_id: &str) -> String {
    const MAX: usize = 64;
    match client_id.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &client_id[..cut]),
        None => format!("{client_id:?}"),
    }
}

/// A JSON response that must not be cached (tokens, introspection answers).
pub(crate) fn no_store_json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
