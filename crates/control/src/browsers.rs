//! What keeps web pages away from the listeners that trust whoever reaches them (the Admin API, the echo
//! upstream). Binding loopback is not enough: a page whose name the attacker re-points at 127.0.0.1 (DNS
//! rebinding) is same-origin with a loopback port, so the browser lets it read and write there. Such a request
//! still carries the attacker's name in `Host`, which is what [`LocalHosts`] refuses. A page of another site can
//! also send writes blind (CSRF); the Admin API refuses those by `Sec-Fetch-Site` and `Origin`, which browsers
//! set and decK, curl and other programs do not.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Version, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use gatehouse_model::kong::MessageBody;
use gatehouse_runtime::config::parse_host;

/// The hosts a listener answers to: `localhost`, `*.localhost` (RFC 6761 keeps them on this machine), loopback
/// addresses, and the configured names, each with any port.
#[derive(Debug, Clone)]
pub struct LocalHosts {
    configured: Arc<[url::Host]>,
    /// Where the operator adds a name, for the refusal's message.
    setting: &'static str,
    /// Whether state-changing requests from web pages of other origins are refused too.
    same_origin_writes: bool,
}

impl LocalHosts {
    pub fn new(configured: Vec<url::Host>, setting: &'static str) -> Self {
        Self { configured: configured.into(), setting, same_origin_writes: false }
    }

    /// Also refuse requests with an unsafe method that a browser marks as coming from another origin.
    pub fn with_same_origin_writes(self) -> Self {
        Self { same_origin_writes: true, ..self }
    }

    /// Checks every request before `router` sees it (its fallbacks included).
    pub fn guard(self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self, guard))
    }

    fn allows(&self, host: &url::Host) -> bool {
        let local = match host {
            url::Host::Domain(name) => name == "localhost" || name.ends_with(".localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        };
        local || self.configured.contains(host)
    }

    /// The port the request was sent to (as its `Host` names it), when every host it names is allowed.
    fn check_host(&self, request: &Request) -> Result<Option<u16>, Refusal> {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            return Err(Refusal::BadHost("The request has more than one Host"));
        }
        let host_header = host_header
            .map(|value| Authority::try_from(value.as_bytes()).map_err(|_| Refusal::BadHost(NOT_A_HOST)))
            .transpose()?;
        // HTTP/2's `:authority`, or an absolute-form target in HTTP/1, which RFC 9112 puts before `Host`: a
        // request must not get past this check under one name and be served under another, so both are checked.
        let targets: Vec<&Authority> = request.uri().authority().into_iter().chain(host_header.as_ref()).collect();
        if targets.is_empty() {
            // Browsers always send a host; HTTP/1.0 health checks (HAProxy's among them) often do not.
            return match request.version() {
                Version::HTTP_09 | Version::HTTP_10 => Ok(None),
                _ => Err(Refusal::BadHost("The request has no Host")),
            };
        }
        for target in &targets {
            if target.as_str().contains('@') {
                return Err(Refusal::BadHost(NOT_A_HOST));
            }
            let host = parse_host(target.host()).ok_or(Refusal::BadHost(NOT_A_HOST))?;
            if !self.allows(&host) {
                return Err(Refusal::NotServed { host: host.to_string(), setting: self.setting });
            }
        }
        Ok(targets[0].port_u16())
    }

    /// A request that can change something must not come from a web page of another origin. `Sec-Fetch-Site`
    /// settles it where browsers send it (`same-site` is refused too: another port of localhost is the same site);
    /// `Origin` covers browsers that do not, and must name an allowed host on the port the request went to.
    fn check_origin(&self, headers: &HeaderMap, port: Option<u16>) -> Result<(), Refusal> {
        if let Some(site) = headers.get("sec-fetch-site")
            && !matches!(site.as_bytes(), b"same-origin" | b"none")
        {
            return Err(Refusal::CrossSite);
        }
        for origin in headers.get_all(header::ORIGIN) {
            // `Origin: null` (sandboxed frames, redirects, `file:` pages) fails to parse and is refused.
            let same = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()).is_some_and(|origin| {
                matches!(origin.scheme(), "http" | "https")
                    && origin.host_str().and_then(parse_host).is_some_and(|host| self.allows(&host))
                    && origin.port() == port
            });
            if !same {
                return Err(Refusal::CrossSite);
            }
        }
        Ok(())
    }
}

const NOT_A_HOST: &str = "The request's Host is not a host name or address";

async fn guard(State(hosts): State<LocalHosts>, request: Request, next: Next) -> Response {
    let checked = hosts.check_host(&request).and_then(|port| {
        if hosts.same_origin_writes && !request.method().is_safe() {
            hosts.check_origin(request.headers(), port)
        } else {
            Ok(())
        }
    });
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(refusal = refusal.message(), "request refused before routing");
            refusal.into_response()
        }
    }
}

/// Why a request was refused before any handler ran; rendered in the Admin API's `{"message": …}` shape.
#[derive(Debug)]
enum Refusal {
    /// No host, several, or not a host: RFC 9112 §3.2's 400.
    BadHost(&'static str),
    /// A host this listener does not answer to: 421, as for a request sent to the wrong server (RFC 9110
    /// §15.5.20). Nothing is wrong with the request itself and no permission would make it right here.
    NotServed {
        host: String,
        setting: &'static str,
    },
    CrossSite,
}

impl Refusal {
    fn message(&self) -> String {
        match self {
            Refusal::BadHost(message) => (*message).to_owned(),
            Refusal::NotServed { host, setting } => format!(
                "Host [{host}] is not served here: this listener answers to localhost, loopback addresses and the \
                 names in {setting}"
            ),
            Refusal::CrossSite => {
                "A web page of another origin cannot change this configuration (Origin or Sec-Fetch-Site)".to_owned()
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::BadHost(_) => StatusCode::BAD_REQUEST,
            Refusal::NotServed { .. } => StatusCode::MISDIRECTED_REQUEST,
            Refusal::CrossSite => StatusCode::FORBIDDEN,
        };
        (status, Json(MessageBody { message: self.message(), status: None })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn hosts_and_their_spellings() {
        let hosts = LocalHosts::new(vec![parse_host("admin.internal").unwrap_or_else(|| unreachable!())], "x");
        for host in [
            "localhost",
            "LOCALHOST:8001",
            "localhost.:1",
            "admin.localhost:8001",
            "127.0.0.1:8001",
            "127.9.9.9",
            "127.1:8001",
            "[::1]:8001",
            "[::ffff:127.0.0.1]:8001",
            "admin.internal:9",
            "Admin.Internal.",
        ] {
            assert!(hosts.check_host(&request("GET", "/", &[("host", host)])).is_ok(), "{host}");
        }
        for host in ["evil.example", "localhost.evil.example:8001", "0.0.0.0:8001", "[::]:8001", "10.0.0.1", "internal"]
        {
            let refused = hosts.check_host(&request("GET", "/", &[("host", host)]));
            assert!(matches!(refused, Err(Refusal::NotServed { .. })), "{host}: {refused:?}");
        }
        for host in ["", "user@localhost", "local host", "localhost:80:80"] {
            let refused = hosts.check_host(&request("GET", "/", &[("host", host)]));
            assert!(matches!(refused, Err(Refusal::BadHost(_))), "{host}: {refused:?}");
        }
        // An absolute-form target names the host too, whatever `Host` says.
        let absolute = request("GET", "http://evil.example/", &[("host", "localhost")]);
        assert!(matches!(hosts.check_host(&absolute), Err(Refusal::NotServed { .. })));
    }

    #[test]
    fn origins_must_be_this_listener() {
        let hosts = LocalHosts::new(Vec::new(), "x").with_same_origin_writes();
        let check = |headers: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                    header::HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
                );
            }
            hosts.check_origin(&map, Some(8001)).is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[("origin", "http://127.0.0.1:8001")]));
        assert!(check(&[("origin", "http://localhost:8001"), ("sec-fetch-site", "same-origin")]));
        assert!(check(&[("sec-fetch-site", "none")]));
        let refused: [&[(&str, &str)]; 8] = [
            &[("origin", "http://evil.example:8001")],
            &[("origin", "http://localhost:3000")],
            &[("origin", "http://localhost")],
            &[("origin", "null")],
            &[("origin", "file://localhost:8001")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site"), ("origin", "http://localhost:8001")],
            &[("origin", "http://localhost:8001"), ("origin", "http://evil.example")],
        ];
        for refused in refused {
            assert!(!check(refused), "{refused:?}");
        }
    }
}
