//! What the authentication plugins' tests share: a proxy exchange as the tests read it, and the bytes a SQLite
//! node has written (to check that no secret is stored in clear).

use reqwest::StatusCode;
use serde_json::Value;

use gatehouse_store::StorageUrl;
use gatehouse_testkit::TestNode;

/// The status, the `WWW-Authenticate` header, and the echo's view of the request (on 200, header names in lower
/// case) or the gateway's body.
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let mut body: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    // The echo names headers as httpbin does (`X-Consumer-Id`).
    if let Some(headers) = body.get_mut("headers").and_then(Value::as_object_mut) {
        *headers = std::mem::take(headers).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    }
    (status, challenge, body)
}

/// Every byte SQLite has written for the node (the main file and its write-ahead log).
pub fn database_bytes(node: &TestNode) -> Vec<u8> {
    let StorageUrl::Sqlite(path) = &node.db.url else { panic!("a SQLite node") };
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", path.display())) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "the database was read");
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
