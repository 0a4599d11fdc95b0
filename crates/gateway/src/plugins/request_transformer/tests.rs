//! `request-transformer` through the proxy: every list on headers, query and form/JSON bodies, `http_method`,
//! `replace.uri`, the `Host` header, and templates.

use serde_json::{Value, json};

use crate::proxy::harness::{Harness, plugin, route};

const NAME: &str = "request-transformer";

async fn echo(res: reqwest::Response) -> Value {
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn headers_in_kongs_order() {
    let h = Harness::start(
        vec![route(10, &["/h"])],
        vec![plugin(
            NAME,
            10,
            json!({
                "remove": {"headers": ["x-gone", "host"]},
                "rename": {"headers": ["x-old:x-new", "x-absent:x-never"]},
                "replace": {"headers": ["x-rep:replaced", "x-absent-rep:never"]},
                "add": {"headers": ["x-add:added", "x-rep:not-added", "host:ignored", "x-forwarded-proto:ftp"]},
                "append": {"headers": ["x-app:one", "x-app:two", "x-rep:more"]},
            }),
        )],
    )
    .await;
    let res = reqwest::Client::new()
        .get(h.url("/h"))
        .header("x-gone", "1")
        .header("x-old", "moved")
        .header("x-rep", "original")
        .send()
        .await
        .unwrap();
    let up = echo(res).await["headers"].clone();
    assert!(up.get("x-gone").is_none());
    assert!(up.get("x-old").is_none());
    assert_eq!(up["x-new"], "moved");
    assert!(up.get("x-never").is_none() && up.get("x-absent-rep").is_none());
    assert_eq!(up["x-rep"], json!(["replaced", "more"]), "replaced, then appended to");
    assert_eq!(up["x-add"], "added");
    assert_eq!(up["x-app"], json!(["one", "two"]));
    assert_eq!(up["x-forwarded-proto"], "http", "X-Forwarded-* are the gateway's, as in Kong");
    let host = up["host"].as_str().unwrap();
    assert!(
        host.starts_with("127.0.0.1:") && host != h.url("").trim_start_matches("http://"),
        "the service's Host: {host}"
    );
}

#[tokio::test]
async fn replace_host_wins_over_routing() {
    let h = Harness::start(
        vec![route(10, &["/host"])],
        vec![plugin(NAME, 10, json!({"replace": {"headers": ["host:api.example.test"]}}))],
    )
    .await;
    let up = echo(reqwest::get(h.url("/host")).await.unwrap()).await;
    assert_eq!(up["headers"]["host"], "api.example.test", "set even though the client's Host is not kept");
}

#[tokio::test]
async fn query_parameters_sorted_as_kong_encodes_them() {
    let h = Harness::start(
        vec![route(10, &["/q"])],
        vec![plugin(
            NAME,
            10,
            json!({
                "remove": {"querystring": ["drop"]},
                "rename": {"querystring": ["old:new"]},
                "replace": {"querystring": ["rep:R", "absent:never"]},
                "add": {"querystring": ["add:a b", "rep:not-added"]},
                "append": {"querystring": ["list:2", "flag:x"]},
            }),
        )],
    )
    .await;
    let up = echo(reqwest::get(h.url("/q?drop=1&old=o&rep=r&list=1&flag&z=last")).await.unwrap()).await;
    assert_eq!(up["uri"], "/?add=a%20b&flag=x&list=1&list=2&new=o&rep=R&z=last");
    // Without query lists, the query goes upstream as sent.
    let h =
        Harness::start(vec![route(10, &["/q"])], vec![plugin(NAME, 10, json!({"add": {"headers": ["x-a:1"]}}))]).await;
    assert_eq!(echo(reqwest::get(h.url("/q?b=2&a=1")).await.unwrap()).await["uri"], "/?b=2&a=1");
}

fn body_config() -> Value {
    json!({
        "remove": {"body": ["secret"]},
        "rename": {"body": ["old:new"]},
        "replace": {"body": ["rep:R"]},
        "add": {"body": ["add:A", "rep:no"]},
        "append": {"body": ["list:2", "fresh:1"]},
    })
}

#[tokio::test]
async fn json_and_form_bodies() {
    let h = Harness::start(vec![route(10, &["/b"])], vec![plugin(NAME, 10, body_config())]).await;
    let client = reqwest::Client::new();
    let sent = json!({"secret": "s", "old": "o", "rep": "r", "list": "1", "kept": {"n": 1}});
    let up = echo(client.post(h.url("/b")).json(&sent).send().await.unwrap()).await;
    let body: Value = serde_json::from_str(up["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"new": "o", "rep": "R", "add": "A", "list": ["1", "2"], "fresh": ["1"], "kept": {"n": 1}}));
    assert_eq!(up["headers"]["content-length"], up["body"].as_str().unwrap().len().to_string(), "length fixed");

    // An empty JSON body only gets what add and append bring.
    let up = echo(client.post(h.url("/b")).header("content-type", "application/json").send().await.unwrap()).await;
    assert_eq!(
        serde_json::from_str::<Value>(up["body"].as_str().unwrap()).unwrap(),
        json!({"add": "A", "rep": "no", "list": ["2"], "fresh": ["1"]})
    );

    // Not JSON after all: left alone.
    let up =
        echo(client.post(h.url("/b")).header("content-type", "application/json").body("{oops").send().await.unwrap())
            .await;
    assert_eq!(up["body"], "{oops");

    let up = echo(
        client
            .post(h.url("/b"))
            .form(&[("secret", "s"), ("old", "o"), ("rep", "r"), ("list", "1")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Kong encodes a Lua table (no order); Gatehouse keeps the order, a renamed field last.
    assert_eq!(up["body"], "rep=R&list=1&list=2&new=o&add=A&fresh=1");

    // Other content types are never touched.
    let up = echo(client.post(h.url("/b")).header("content-type", "text/plain").body("secret=s").send().await.unwrap())
        .await;
    assert_eq!(up["body"], "secret=s");
}

#[tokio::test]
async fn a_streamed_body_goes_unchanged() {
    let h = Harness::start(vec![route(10, &["/b"])], vec![plugin(NAME, 10, body_config())]).await;
    let big = format!("secret=s&pad={}", "p".repeat(70 * 1024));
    let up = echo(
        reqwest::Client::new()
            .post(h.url("/b"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(up["body"], big, "over the 64 KiB the proxy holds: sent as it came");
}

#[tokio::test]
async fn method_and_uri() {
    let h = Harness::start(
        vec![route(10, &["/m"]), route(11, &[r"~/users/(?<user>\w+)/items/(\d+)$"]), route(12, &["/bad"])],
        vec![
            plugin(NAME, 10, json!({"http_method": "GET"})),
            plugin(NAME, 11, json!({"replace": {"uri": "/v2/$(uri_captures.user)/$(uri_captures[2]) x"}})),
            plugin(NAME, 12, json!({"replace": {"uri": "$(headers.x_none or 'relative')"}})),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let up = echo(client.post(h.url("/m?a=1")).form(&[("a", "2"), ("b", "3")]).send().await.unwrap()).await;
    assert_eq!(up["method"], "GET");
    assert_eq!(up["uri"], "/?a=1&a=2&b=3", "a form body's fields join the query for GET");
    assert_eq!(up["body"], "a=2&b=3", "and the body still goes");

    let up = echo(client.get(h.url("/users/ada/items/42?keep=1")).send().await.unwrap()).await;
    assert_eq!(up["uri"], "/v2/ada/42%20x?keep=1", "the whole upstream path, query kept");

    let res = client.get(h.url("/bad")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 500, "Kong's set_path refuses a path without a leading slash");
}

#[tokio::test]
async fn templates_read_the_request_as_sent() {
    let h = Harness::start(
        vec![route(10, &["/t"])],
        vec![plugin(
            NAME,
            10,
            json!({
                "remove": {"headers": ["x-api"]},
                "add": {"headers": [
                    "x-from-header:$(headers.x_api)",
                    "x-from-query:Basic $(query_params[\"auth\"])",
                    "x-fallback:$(headers.x_missing or query_params.missing or 'none')",
                    "x-escaped:$('$(headers.x_api)')",
                    "x-shared:[$(shared.anything)]",
                    "x-flag:$(query_params.flag)",
                ], "querystring": ["copied:$(headers[\"X-Api\"])"]},
            }),
        )],
    )
    .await;
    let up = echo(reqwest::Client::new().get(h.url("/t?auth=dXNlcg&flag")).header("x-api", "k1").send().await.unwrap())
        .await;
    let headers = &up["headers"];
    assert!(headers.get("x-api").is_none(), "removed, yet templates still read it");
    assert_eq!(headers["x-from-header"], "k1");
    assert_eq!(headers["x-from-query"], "Basic dXNlcg");
    assert_eq!(headers["x-fallback"], "none");
    assert_eq!(headers["x-escaped"], "$(headers.x_api)");
    assert_eq!(headers["x-shared"], "[]", "kong.ctx.shared holds nothing in Gatehouse");
    assert_eq!(headers["x-flag"], "true", "a bare parameter is Lua's true");
    assert_eq!(up["uri"], "/?auth=dXNlcg&copied=k1&flag");
}

#[tokio::test]
async fn multipart_bodies_as_lua_multipart_does() {
    let h = Harness::start(vec![route(10, &["/b"])], vec![plugin(NAME, 10, body_config())]).await;
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\ns\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"old\"; filename=\"o.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"rep\"\r\n\r\nr\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"kept\"\r\n\r\nk\r\n--{boundary}--\r\n"
    );
    let up = echo(
        reqwest::Client::new()
            .post(h.url("/b"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sent = up["body"].as_str().unwrap();
    let part = |name: &str, value: &str| format!("content-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
    // Kong's order: rename (the file becomes a plain part named `new`, last), remove, replace (last), add; no append.
    let want = [
        format!("--{boundary}\r\n{}", part("kept", "k")),
        format!("--{boundary}\r\n{}", part("new", "file")),
        format!("--{boundary}\r\n{}", part("rep", "R")),
        format!("--{boundary}\r\n{}", part("add", "A")),
        format!("--{boundary}--\r\n"),
    ]
    .concat();
    assert_eq!(sent, want);
    assert_eq!(up["headers"]["content-length"], sent.len().to_string());
}
