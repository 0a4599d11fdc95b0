//! Request targets fit for logs: query parameters that carry credentials keep their name and lose their value.
//! Every access log (the API listeners' and the proxy's) goes through this one list.

use std::borrow::Cow;

/// Query parameters whose values are credentials (RFC 6750 puts tokens in `access_token`).
pub const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "client_secret",
    "secret",
    "password",
    "code",
    "refresh_token",
    "id_token",
    "assertion",
    "client_assertion",
    "apikey",
    "api_key",
    // The `jwt` plugin's default `uri_param_names`: a bearer token like any other.
    "jwt",
];

pub const REDACTED: &str = "[redacted]";

/// `query` with the value of every credential parameter replaced by [`REDACTED`]; borrowed when it has none.
/// Names are compared after percent-decoding, so `%61ccess_token` is masked too.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
        // Most names need no decoding, and the proxy's access log asks for every request.
        if !name.bytes().any(|b| b == b'%' || b == b'+') {
            return SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s));
        }
        let decoded: String = form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k.into_owned()).collect();
        SECRET_PARAMS.iter().any(|s| decoded.eq_ignore_ascii_case(s))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}={REDACTED}"),
            None if secret(pair) => format!("{pair}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    Cow::Owned(redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_masked_and_other_queries_borrowed() {
        let out = redact_query("a=1&access_token=eyJhbGci&Client_Secret=s3cr3t&x=2&%61ccess_token=zz");
        assert_eq!(out, "a=1&access_token=[redacted]&Client_Secret=[redacted]&x=2&%61ccess_token=[redacted]");
        assert!(matches!(redact_query("a=1&b=2"), Cow::Borrowed(_)));
        assert_eq!(redact_query("token"), "token=[redacted]");
        assert_eq!(redact_query("jwt=eyJhbGci.e30.c2ln&page=2"), "jwt=[redacted]&page=2");
    }
}
