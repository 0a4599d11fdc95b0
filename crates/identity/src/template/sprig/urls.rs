//! Sprig's `urlParse` and `urlJoin`, with Go's `net/url` field names.

use std::collections::HashMap;

use gtmpl::{FuncError, Value};

use crate::template::value::{as_map, exactly, fail, strval};

/// `urlParse URL`: a dict of `scheme host hostname path query opaque fragment userinfo`.
pub fn url_parse(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "urlParse")?;
    let raw = strval(&args[0]);
    let (url, relative) = match url::Url::parse(&raw) {
        Ok(u) => (u, false),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = url::Url::parse("relative:///").map_err(|e| fail(e.to_string()))?;
            (base.join(&raw).map_err(|e| fail(format!("urlParse: {e}")))?, true)
        }
        Err(e) => return Err(fail(format!("urlParse: {e}"))),
    };
    let hostname = url.host_str().unwrap_or_default().to_owned();
    let host = match url.port() {
        Some(p) => format!("{hostname}:{p}"),
        None => hostname.clone(),
    };
    let userinfo = match (url.username(), url.password()) {
        ("", None) => String::new(),
        (u, None) => u.to_owned(),
        (u, Some(p)) => format!("{u}:{p}"),
    };
    // Go keeps an empty path empty (`http://h`); the url crate normalises it to "/".
    let path = if url.cannot_be_a_base() {
        String::new()
    } else if !relative && url.has_authority() && url.path() == "/" {
        let after = raw.split_once("://").map_or("", |(_, r)| r);
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        if after[authority_end..].starts_with('/') { "/".to_owned() } else { String::new() }
    } else {
        url.path().to_owned()
    };
    let opaque = if url.cannot_be_a_base() { url.path().to_owned() } else { String::new() };
    let field = |k: &str, v: String| (k.to_owned(), Value::from(v));
    Ok(Value::Map(HashMap::from([
        field("scheme", if relative { String::new() } else { url.scheme().to_owned() }),
        field("host", host),
        field("hostname", hostname),
        field("path", path),
        field("query", url.query().unwrap_or_default().to_owned()),
        field("opaque", opaque),
        field("fragment", url.fragment().unwrap_or_default().to_owned()),
        field("userinfo", userinfo),
    ])))
}

/// `urlJoin DICT`: the URL the dict's parts describe (the inverse of `urlParse`).
pub fn url_join(args: &[Value]) -> Result<Value, FuncError> {
    exactly(args, 1, "urlJoin")?;
    let d = as_map(&args[0]).ok_or_else(|| fail("urlJoin: not a dict"))?;
    let get = |k: &str| d.get(k).map(strval).unwrap_or_default();
    let mut out = String::new();
    let scheme = get("scheme");
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    let opaque = get("opaque");
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        let (host, userinfo) = (get("host"), get("userinfo"));
        if !host.is_empty() || !userinfo.is_empty() || !scheme.is_empty() {
            out.push_str("//");
            if !userinfo.is_empty() {
                out.push_str(&userinfo);
                out.push('@');
            }
            out.push_str(&host);
        }
        let path = get("path");
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&path);
    }
    let (query, fragment) = (get("query"), get("fragment"));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&fragment);
    }
    Ok(Value::from(out))
}
