//! `response-transformer` through the proxy: headers, JSON bodies (with types, chunked upstream bodies and the
//! length dropped), non-JSON bodies left alone, and bodies past the buffering bound.

use bytes::Bytes;
use serde_json::{Value, json};

use super::JsonTransforms;
use crate::body::{FilteredBody, ResponseBody, full};
use crate::plugins::BodyFilter;
use crate::proxy::harness::{Harness, plugin, route};

const NAME: &str = "response-transformer";

fn config() -> Value {
    json!({
        "remove": {"headers": ["x-gone"], "json": ["secret"]},
        "rename": {"headers": ["x-old:x-new"], "json": ["old:new"]},
        "replace": {"headers": ["x-rep:R"], "json": ["rep:7", "flag:true"], "json_types": ["number", "boolean"]},
        "add": {"headers": ["x-add:A", "x-rep:no"], "json": ["added:yes", "rep:no"]},
        "append": {"headers": ["x-app:1"], "json": ["list:b", "fresh:1"], "json_types": ["string", "number"]},
    })
}

/// What the echo upstream is asked to answer with.
async fn answer(h: &Harness, content_type: &str, body: &str, chunks: usize) -> reqwest::Response {
    reqwest::Client::new()
        .get(h.url("/r"))
        .header("x-respond-type", content_type)
        .header("x-respond-body", body)
        .header("x-respond-chunks", chunks.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn headers_and_json_bodies_in_kongs_order() {
    let h = Harness::start(vec![route(10, &["/r"])], vec![plugin(NAME, 10, config())]).await;
    let body = r#"{"secret":"s","old":"o","rep":"r","flag":false,"list":"a","kept":[1]}"#;
    for chunks in [0, 3] {
        let res = answer(&h, "application/json; charset=utf-8", body, chunks).await;
        assert_eq!(res.status().as_u16(), 200);
        let headers = res.headers().clone();
        assert!(headers.get("content-length").is_none(), "the length goes: the body changes");
        assert_eq!(headers["x-add"], "A");
        assert_eq!(headers["x-app"], "1");
        let got: Value = res.json().await.unwrap();
        assert_eq!(
            got,
            json!({"new": "o", "rep": 7, "flag": false, "added": "yes", "list": ["a", "b"], "fresh": [1], "kept": [1]}),
            "false is not replaced (Lua's truthiness); {chunks} chunks"
        );
    }
}

#[tokio::test]
async fn response_headers_are_renamed_replaced_and_removed() {
    let h = Harness::start(
        vec![route(10, &["/r"])],
        vec![plugin(
            NAME,
            10,
            json!({
                "remove": {"headers": ["x-kong-upstream-latency"]},
                "rename": {"headers": ["content-type:x-was-type"]},
                "replace": {"headers": ["via:hidden", "x-absent:never"]},
            }),
        )],
    )
    .await;
    let res = answer(&h, "text/plain", "hello", 0).await;
    let headers = res.headers().clone();
    assert!(headers.get("x-kong-upstream-latency").is_none());
    assert!(headers.get("content-type").is_none());
    assert_eq!(headers["x-was-type"], "text/plain");
    assert_eq!(headers["via"], "hidden");
    assert!(headers.get("x-absent").is_none());
    assert_eq!(headers["content-length"], "5", "no JSON transforms: the body and its length stay");
    assert_eq!(res.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn non_json_bodies_are_untouched() {
    let h = Harness::start(vec![route(10, &["/r"])], vec![plugin(NAME, 10, config())]).await;
    let res = answer(&h, "text/plain", r#"{"secret":"s"}"#, 0).await;
    assert_eq!(res.headers()["content-length"], "14");
    assert_eq!(res.text().await.unwrap(), r#"{"secret":"s"}"#, "not JSON by its type");
    let res = answer(&h, "application/json", "[1,2]", 0).await;
    assert_eq!(res.text().await.unwrap(), "[1,2]", "JSON, but not an object");
    let res = answer(&h, "application/json", "{broken", 2).await;
    assert_eq!(res.text().await.unwrap(), "{broken", "does not parse");
    // A HEAD answer has no body to parse: it stays empty.
    let res = reqwest::Client::new()
        .head(h.url("/r"))
        .header("x-respond-type", "application/json")
        .header("x-respond-body", "{}")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["x-add"].to_str().unwrap()), (200, "A"));
    assert!(res.bytes().await.unwrap().is_empty());
    // 204 and 304 have no body: no filter, and their headers stay as they are.
    for status in ["204", "304"] {
        let res = reqwest::Client::new()
            .get(h.url("/r"))
            .header("x-respond-type", "application/json")
            .header("x-respond-body", "{}")
            .header("x-respond-status", status)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_str(), status);
        assert_eq!(res.headers()["x-add"], "A", "headers still change");
        assert!(res.bytes().await.unwrap().is_empty());
    }
    // A media type list with JSON in it counts (Kong's is_json_body).
    let res = answer(&h, "text/html, application/json", r#"{"secret":"s"}"#, 0).await;
    assert_eq!(res.json::<Value>().await.unwrap()["added"], "yes");
}

/// Past the bound, what was read and the rest go out as they came.
#[tokio::test]
async fn bodies_past_the_bound_stream_through() {
    #[derive(Debug)]
    struct Upper;
    impl BodyFilter for Upper {
        fn filter(&self, body: &[u8]) -> Option<Bytes> {
            Some(Bytes::from(body.to_ascii_uppercase()))
        }
    }
    use http_body_util::BodyExt;
    let small = FilteredBody::with_limit(ResponseBody::Local(full("abc")), vec![std::sync::Arc::new(Upper)], 8);
    assert_eq!(small.collect().await.unwrap().to_bytes(), "ABC");
    let large = FilteredBody::with_limit(ResponseBody::Local(full("abcdefghijk")), vec![std::sync::Arc::new(Upper)], 8);
    assert_eq!(large.collect().await.unwrap().to_bytes(), "abcdefghijk");
    // Trailers follow the filtered body.
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames: Vec<Result<hyper::body::Frame<Bytes>, crate::body::BoxError>> = vec![
        Ok(hyper::body::Frame::data(Bytes::from_static(b"ab"))),
        Ok(hyper::body::Frame::data(Bytes::from_static(b"c"))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let with_trailers =
        FilteredBody::new(ResponseBody::Local(BodyExt::boxed(stream)), vec![std::sync::Arc::new(Upper)]);
    let collected = with_trailers.collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "ABC");
}

#[test]
fn kongs_json_rules() {
    let config: gatehouse_model::gateway::plugins::response_transformer::Config = {
        let mut v = Vec::new();
        let fields = (gatehouse_model::gateway::plugins::response_transformer::INFO.config)();
        let out = gatehouse_model::gateway::schema::normalize(
            &fields,
            json!({"add": {"json": ["n:x1", "b:yes"], "json_types": ["number", "boolean"]},
                   "append": {"json": ["obj:v", "num:2"]}})
            .as_object()
            .unwrap(),
            "config",
            &mut v,
        );
        serde_json::from_value(Value::Object(out)).unwrap()
    };
    let transforms = JsonTransforms::new(&config);
    let out = transforms.filter(br#"{"obj":{"a":1},"num":1}"#).unwrap();
    let got: Value = serde_json::from_slice(&out).unwrap();
    // A number that does not parse is left out (Lua's tonumber is nil); a boolean is true only for "true".
    assert_eq!(got, json!({"b": false, "obj": {"a": 1, "2": "v"}, "num": ["2"]}));
}
