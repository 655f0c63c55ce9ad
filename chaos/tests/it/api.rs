//! The HTTP API driven exactly as Toxiproxy's Go client drives it (same
//! methods, paths, headers and JSON bodies, from `client/*.go`), with an
//! independent HTTP client, plus the bodies toxiproxy_rust sends and bad
//! input. Expected codes and messages are Toxiproxy's (`api.go`,
//! `api_test.go`).

use std::sync::Arc;

use reqwest::Method;
use rtmc_chaos::{api, ProxyCollection};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{
    connect, read_to_end, round_trip, stays_silent, until_refused, End, Upstream,
};

/// An API server on a free loopback port, stopped when dropped.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    token: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub async fn api() -> Api {
    let token = CancellationToken::new();
    let proxies = Arc::new(ProxyCollection::new(&token, Some(7)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(api::serve(listener, proxies, token.clone()));
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    Api { base, http, token }
}

/// A status and the body, parsed as JSON when it is.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

impl Api {
    /// A request as the Go client sends it.
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.send_as("toxiproxy-cli", method, path, body).await
    }

    pub async fn send_as(
        &self,
        agent: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("User-Agent", agent)
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("api answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, text, json }
    }

    pub async fn create(&self, name: &str, upstream: &str) -> Reply {
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true, "toxics": null});
        self.send("POST", "/proxies", Some(&body.to_string())).await
    }
}

fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.json,
        json!({"error": message, "status": status}),
        "{reply:?}"
    );
}

fn listen_of(reply: &Reply) -> std::net::SocketAddr {
    reply.json["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("an address")
}

#[tokio::test]
async fn version_answers_like_toxiproxy() {
    let api = api().await;
    let reply = api.send("GET", "/version", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.ends_with("\"}\n"), "{:?}", reply.text);
    assert!(reply.json["version"]
        .as_str()
        .expect("version")
        .starts_with("2."));
}

#[tokio::test]
async fn proxies_are_created_listed_shown_and_deleted() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let created = api.create("mysql_master", &upstream.addr.to_string()).await;
    assert_eq!(created.status, 201, "{created:?}");
    let listen = listen_of(&created);
    assert!(listen.ip().is_loopback() && listen.port() != 0);
    assert_eq!(
        created.json,
        json!({"name": "mysql_master", "listen": listen.to_string(), "upstream": upstream.addr.to_string(), "enabled": true, "toxics": []})
    );
    let mut client = connect(listen).await;
    assert_eq!(round_trip(&mut client, b"hi").await, b"hi");

    let all = api.send("GET", "/proxies", None).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.json["mysql_master"], created.json);
    let one = api.send("GET", "/proxies/mysql_master", None).await;
    assert_eq!(one.json, created.json);

    let conflict = api.create("mysql_master", &upstream.addr.to_string()).await;
    assert_error(&conflict, 409, "proxy already exists");

    let deleted = api.send("DELETE", "/proxies/mysql_master", None).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    until_refused(listen).await;
    let gone = api.send("DELETE", "/proxies/mysql_master", None).await;
    assert_error(&gone, 404, "proxy not found");
    assert_error(
        &api.send("GET", "/proxies/mysql_master", None).await,
        404,
        "proxy not found",
    );
    assert_eq!(api.send("GET", "/proxies", None).await.json, json!({}));
}

#[tokio::test]
async fn listen_addresses_resolve_like_toxiproxy() {
    let api = api().await;
    let reply = api
        .send(
            "POST",
            "/proxies",
            Some(r#"{"name":"l","listen":"localhost:0","upstream":"localhost:1"}"#),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert!(reply.json["listen"]
        .as_str()
        .expect("listen")
        .starts_with("127.0.0.1:"));
    assert_eq!(reply.json["enabled"], true, "enabled defaults to true");

    // A disabled proxy keeps the address as given.
    let disabled = api
        .send(
            "POST",
            "/proxies",
            Some(r#"{"name":"d","listen":"localhost:0","upstream":"localhost:1","enabled":false}"#),
        )
        .await;
    assert_eq!(disabled.status, 201);
    assert_eq!(disabled.json["listen"], "localhost:0");
    assert_eq!(disabled.json["enabled"], false);
}

#[tokio::test]
async fn proxy_create_rejects_bad_input() {
    let api = api().await;
    let missing_name = api
        .send("POST", "/proxies", Some(r#"{"upstream":"127.0.0.1:1"}"#))
        .await;
    assert_error(&missing_name, 400, "missing required field: name");
    let missing_upstream = api.send("POST", "/proxies", Some(r#"{"name":"x"}"#)).await;
    assert_error(&missing_upstream, 400, "missing required field: upstream");
    let empty = api.send("POST", "/proxies", Some("")).await;
    assert_error(&empty, 400, "bad request body: EOF");
    for body in [
        r#"{"name":"#,
        "[1,2]",
        r#"{"name":5,"upstream":"x:1"}"#,
        r#"{"name":"x","upstream":"x:1","enabled":"yes"}"#,
        "\u{0}\u{1}",
    ] {
        let reply = api.send("POST", "/proxies", Some(body)).await;
        assert_eq!(reply.status, 400, "{body:?}: {reply:?}");
        assert!(
            reply.json["error"]
                .as_str()
                .expect("error")
                .starts_with("bad request body: "),
            "{reply:?}"
        );
        assert_eq!(reply.json["status"], 400);
    }
    // A port taken: Toxiproxy answers 500 with the listen error.
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let body = json!({"name": "clash", "listen": taken.local_addr().expect("addr").to_string(), "upstream": "127.0.0.1:1"});
    let clash = api.send("POST", "/proxies", Some(&body.to_string())).await;
    assert_eq!(clash.status, 500, "{clash:?}");
    assert!(clash.json["error"]
        .as_str()
        .expect("error")
        .starts_with("listen tcp "));
    assert_eq!(api.send("GET", "/proxies", None).await.json, json!({}));
}

#[tokio::test]
async fn update_disables_and_enables_with_post_and_patch() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let created = api.create("svc", &upstream.addr.to_string()).await;
    let listen = listen_of(&created);
    let mut client = connect(listen).await;
    round_trip(&mut client, b"hi").await;

    // The Go client's Save(): POST with the whole proxy, toxics included.
    let mut whole = created.json.clone();
    whole["enabled"] = json!(false);
    let disabled = api
        .send("POST", "/proxies/svc", Some(&whole.to_string()))
        .await;
    assert_eq!(disabled.status, 200, "{disabled:?}");
    assert_eq!(disabled.json["enabled"], false);
    assert_eq!(read_to_end(&mut client).await.1, End::Eof);
    let refused = TcpStream::connect(listen).await.expect_err("disabled");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let enabled = api
        .send("PATCH", "/proxies/svc", Some(r#"{"enabled":true}"#))
        .await;
    assert_eq!(enabled.status, 200);
    assert_eq!(
        enabled.json["listen"],
        listen.to_string(),
        "same address again"
    );
    let mut again = connect(listen).await;
    round_trip(&mut again, b"back").await;

    assert_error(
        &api.send("PATCH", "/proxies/nope", Some("{}")).await,
        404,
        "proxy not found",
    );
    let bad = api
        .send("PATCH", "/proxies/svc", Some(r#"{"enabled":1}"#))
        .await;
    assert_eq!(bad.status, 400);
    let unchanged = api.send("POST", "/proxies/svc", Some("{}")).await;
    assert_eq!(unchanged.json["enabled"], true);
}

#[tokio::test]
async fn update_moves_a_proxy_to_a_new_upstream() {
    let api = api().await;
    let first = Upstream::echo().await;
    let mut second = Upstream::echo().await;
    let created = api.create("moving", &first.addr.to_string()).await;
    let listen = listen_of(&created);
    let body = json!({"upstream": second.addr.to_string()});
    let moved = api
        .send("PATCH", "/proxies/moving", Some(&body.to_string()))
        .await;
    assert_eq!(moved.json["upstream"], second.addr.to_string());
    assert_eq!(moved.json["listen"], listen.to_string());
    let mut client = connect(listen).await;
    round_trip(&mut client, b"two").await;
    assert_eq!(second.received_within(crate::ms(100)).await, b"two");
}

#[tokio::test]
async fn toxics_are_added_shown_updated_and_removed() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    api.create("db", &upstream.addr.to_string()).await;

    // Go client AddToxic("", "latency", "downstream", 1, {latency, jitter}).
    let added = api
        .send(
            "POST",
            "/proxies/db/toxics",
            Some(r#"{"name":"","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":100,"jitter":10}}"#),
        )
        .await;
    assert_eq!(added.status, 200, "Toxiproxy answers 200 here: {added:?}");
    assert_eq!(
        added.json,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 10}})
    );
    let list = api.send("GET", "/proxies/db/toxics", None).await;
    assert_eq!(list.json, json!([added.json.clone()]));
    let shown = api
        .send("GET", "/proxies/db/toxics/latency_downstream", None)
        .await;
    assert_eq!(shown.json, added.json);
    assert_eq!(
        api.send("GET", "/proxies/db", None).await.json["toxics"],
        json!([added.json.clone()])
    );

    // Go client UpdateToxic(name, 0.5, {latency: 1000}): PATCH, merged.
    let updated = api
        .send(
            "PATCH",
            "/proxies/db/toxics/latency_downstream",
            Some(r#"{"attributes":{"latency":1000},"toxicity":0.5}"#),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json["toxicity"], 0.5);
    assert_eq!(
        updated.json["attributes"],
        json!({"latency": 1000, "jitter": 10})
    );
    // UpdateToxic(name, -1, …) leaves toxicity out; POST still updates.
    let again = api
        .send(
            "POST",
            "/proxies/db/toxics/latency_downstream",
            Some(r#"{"attributes":{"latency":500}}"#),
        )
        .await;
    assert_eq!(again.json["toxicity"], 0.5);
    assert_eq!(
        again.json["attributes"],
        json!({"latency": 500, "jitter": 10})
    );

    let removed = api
        .send("DELETE", "/proxies/db/toxics/latency_downstream", None)
        .await;
    assert_eq!((removed.status, removed.text.as_str()), (204, ""));
    assert_eq!(
        api.send("GET", "/proxies/db/toxics", None).await.json,
        json!([])
    );
    assert_error(
        &api.send("DELETE", "/proxies/db/toxics/latency_downstream", None)
            .await,
        404,
        "toxic not found",
    );
    assert_error(
        &api.send("GET", "/proxies/db/toxics/latency_downstream", None)
            .await,
        404,
        "toxic not found",
    );
    assert_error(
        &api.send("PATCH", "/proxies/db/toxics/nope", Some("{}"))
            .await,
        404,
        "toxic not found",
    );
    assert_error(
        &api.send("GET", "/proxies/nope/toxics", None).await,
        404,
        "proxy not found",
    );
    assert_error(
        &api.send("POST", "/proxies/nope/toxics", Some("{}")).await,
        404,
        "proxy not found",
    );
}

#[tokio::test]
async fn toxic_defaults_and_conflicts_are_toxiproxys() {
    let api = api().await;
    api.create("db", "127.0.0.1:1").await;
    // Go's client drops an empty stream (omitempty): downstream by default.
    let noop = api
        .send(
            "POST",
            "/proxies/db/toxics",
            Some(r#"{"name":"foobar","type":"noop","toxicity":1,"attributes":null}"#),
        )
        .await;
    assert_eq!(
        noop.json,
        json!({"name": "foobar", "type": "noop", "stream": "downstream", "toxicity": 1.0, "attributes": {}})
    );
    let conflict = api
        .send(
            "POST",
            "/proxies/db/toxics",
            Some(r#"{"name":"foobar","type":"slow_close","stream":"upstream"}"#),
        )
        .await;
    assert_error(&conflict, 409, "toxic already exists");
    let up = api
        .send(
            "POST",
            "/proxies/db/toxics",
            Some(r#"{"type":"latency","stream":"upstream"}"#),
        )
        .await;
    assert_eq!(up.json["name"], "latency_upstream");
    assert_eq!(up.json["toxicity"], 1.0, "toxicity defaults to 1");
    assert_eq!(
        up.json["attributes"],
        json!({"latency": 0, "jitter": 0}),
        "attributes default to 0"
    );
    let names: Vec<Value> = api
        .send("GET", "/proxies/db/toxics", None)
        .await
        .json
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("latency_upstream"), json!("foobar")],
        "upstream toxics are listed first"
    );

    // Every type, with Toxiproxy's attribute names.
    for (kind, attributes) in [
        ("bandwidth", json!({"rate": 0})),
        ("slow_close", json!({"delay": 0})),
        ("timeout", json!({"timeout": 0})),
        ("reset_peer", json!({"timeout": 0})),
        (
            "slicer",
            json!({"average_size": 0, "size_variation": 0, "delay": 0}),
        ),
        ("limit_data", json!({"bytes": 0})),
        ("limit_time", json!({"time": 0})),
    ] {
        let body = json!({"name": kind, "type": kind, "stream": "upstream", "toxicity": 0});
        let reply = api
            .send("POST", "/proxies/db/toxics", Some(&body.to_string()))
            .await;
        assert_eq!(reply.status, 200, "{kind}: {reply:?}");
        assert_eq!(reply.json["attributes"], attributes, "{kind}");
    }
}

#[tokio::test]
async fn toxic_create_rejects_bad_input() {
    let api = api().await;
    api.create("db", "127.0.0.1:1").await;
    let post = |body: &'static str| api.send("POST", "/proxies/db/toxics", Some(body));
    assert_error(
        &post(r#"{"type":"latency","stream":"walrustream"}"#).await,
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    assert_error(
        &post(r#"{"type":"latency","stream":""}"#).await,
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    assert_error(
        &post(r#"{"type":"no_such_toxic"}"#).await,
        400,
        "invalid toxic type",
    );
    assert_error(&post(r#"{"name":"x"}"#).await, 400, "invalid toxic type");
    assert_error(&post("").await, 400, "bad request body: EOF");
    for body in [
        r#"{"type":"latency","attributes":{"latency":"100"}}"#,
        r#"{"type":"latency","attributes":{"latency":-5}}"#,
        r#"{"type":"latency","attributes":{"latency":1.5}}"#,
        r#"{"type":"latency","attributes":[100]}"#,
        r#"{"type":"latency","toxicity":"all"}"#,
        r#"{"type":7}"#,
        r#"{"type":"latency""#,
        "not json",
    ] {
        let reply = post(body).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(
            reply.json["error"]
                .as_str()
                .expect("error")
                .starts_with("bad request body: "),
            "{reply:?}"
        );
    }
    assert_eq!(
        api.send("GET", "/proxies/db/toxics", None).await.json,
        json!([]),
        "nothing half-added"
    );
    let bad_update = api
        .send("POST", "/proxies/db/toxics", Some(r#"{"type":"latency"}"#))
        .await;
    assert_eq!(bad_update.status, 200);
    let reply = api
        .send(
            "PATCH",
            "/proxies/db/toxics/latency_downstream",
            Some(r#"{"attributes":{"jitter":"x"}}"#),
        )
        .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn toxics_added_over_the_api_act_on_connections() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let listen = listen_of(&api.create("db", &upstream.addr.to_string()).await);
    let mut client = connect(listen).await;
    round_trip(&mut client, b"ok").await;
    api.send(
        "POST",
        "/proxies/db/toxics",
        Some(r#"{"type":"timeout","attributes":{"timeout":0}}"#),
    )
    .await;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"lost")
        .await
        .expect("write");
    assert!(stays_silent(&mut client, crate::ms(300)).await);
    api.send("DELETE", "/proxies/db/toxics/timeout_downstream", None)
        .await;
    assert_eq!(read_to_end(&mut client).await.1, End::Eof);
}

#[tokio::test]
async fn populate_creates_keeps_and_replaces_like_toxiproxy() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let up = upstream.addr.to_string();
    let body = json!([
        {"name": "one", "listen": "127.0.0.1:0", "upstream": up, "enabled": true},
        {"name": "two", "listen": "127.0.0.1:0", "upstream": up, "enabled": false},
        {"name": "three", "listen": "127.0.0.1:0", "upstream": up},
    ]);
    let reply = api.send("POST", "/populate", Some(&body.to_string())).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let proxies = reply.json["proxies"].as_array().expect("proxies").clone();
    let names: Vec<&str> = proxies
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["one", "two", "three"]);
    assert_eq!(proxies[1]["enabled"], false);
    assert_eq!(proxies[2]["enabled"], true, "enabled defaults to true");

    // An existing proxy with the same addresses is kept, toxics and all.
    let one_listen = proxies[0]["listen"].as_str().expect("listen").to_owned();
    api.send("POST", "/proxies/one/toxics", Some(r#"{"type":"latency"}"#))
        .await;
    let same = json!([{"name": "one", "listen": one_listen, "upstream": up, "enabled": true, "toxics": []}]);
    let kept = api.send("POST", "/populate", Some(&same.to_string())).await;
    assert_eq!(kept.status, 201);
    assert_eq!(
        kept.json["proxies"][0]["toxics"][0]["name"],
        "latency_downstream"
    );

    // A different upstream replaces it.
    let other = json!([{"name": "one", "listen": one_listen, "upstream": "127.0.0.1:1"}]);
    let replaced = api
        .send("POST", "/populate", Some(&other.to_string()))
        .await;
    assert_eq!(replaced.json["proxies"][0]["upstream"], "127.0.0.1:1");
    assert_eq!(replaced.json["proxies"][0]["toxics"], json!([]));

    let empty = api.send("POST", "/populate", Some("[]")).await;
    assert_eq!(
        (empty.status, empty.json.clone()),
        (201, json!({"proxies": null}))
    );
}

#[tokio::test]
async fn populate_checks_everything_before_creating_anything() {
    let api = api().await;
    let body = r#"[{"name":"one","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"},{"name":"","listen":""}]"#;
    let reply = api.send("POST", "/populate", Some(body)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json,
        json!({"error": "missing required field: name at proxy 2", "status": 400, "proxies": null})
    );
    let bad_toxic = r#"[{"name":"one","upstream":"127.0.0.1:1","toxics":[{"type":"nope"}]}]"#;
    let reply = api.send("POST", "/populate", Some(bad_toxic)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json["error"],
        "invalid toxic type at toxic 1 at proxy 1"
    );
    let twice = r#"[{"name":"one","upstream":"127.0.0.1:1","toxics":[{"type":"latency"},{"type":"latency"}]}]"#;
    assert_eq!(api.send("POST", "/populate", Some(twice)).await.status, 409);
    assert_eq!(api.send("POST", "/populate", Some("{")).await.status, 400);
    assert_eq!(
        api.send("POST", "/populate", Some(r#"{"name":"x"}"#))
            .await
            .status,
        400
    );
    assert_eq!(api.send("GET", "/proxies", None).await.json, json!({}));

    // A failure while creating (a port taken) keeps what was done before it.
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let body = json!([
        {"name": "one", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
        {"name": "two", "listen": taken.local_addr().expect("addr").to_string(), "upstream": "127.0.0.1:1"},
        {"name": "three", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
    ]);
    let reply = api.send("POST", "/populate", Some(&body.to_string())).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json["status"], 500);
    assert_eq!(reply.json["proxies"][0]["name"], "one");
    let names: Vec<String> = api
        .send("GET", "/proxies", None)
        .await
        .json
        .as_object()
        .expect("map")
        .keys()
        .cloned()
        .collect();
    assert_eq!(names, ["one"]);
}

#[tokio::test]
async fn populate_with_toxics_has_them_in_place_before_the_first_client() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let body = json!([{
        "name": "atomic", "listen": "127.0.0.1:0", "upstream": upstream.addr.to_string(),
        "toxics": [{"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}]
    }]);
    let reply = api.send("POST", "/populate", Some(&body.to_string())).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(
        reply.json["proxies"][0]["toxics"][0]["name"],
        "timeout_upstream"
    );
    let listen: std::net::SocketAddr = reply.json["proxies"][0]["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    let mut client = connect(listen).await;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"first")
        .await
        .expect("write");
    assert!(
        stays_silent(&mut client, crate::ms(300)).await,
        "the first client escaped the toxic"
    );
}

#[tokio::test]
async fn reset_enables_everything_and_removes_every_toxic() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let listen = listen_of(&api.create("a", &upstream.addr.to_string()).await);
    api.send(
        "POST",
        "/proxies/a/toxics",
        Some(r#"{"type":"latency","attributes":{"latency":100,"jitter":10}}"#),
    )
    .await;
    api.send("POST", "/proxies/a/hold", None).await;
    api.send("POST", "/proxies/a", Some(r#"{"enabled":false}"#))
        .await;
    let reply = api.send("POST", "/reset", Some("")).await;
    assert_eq!((reply.status, reply.text.as_str()), (204, ""));
    let proxy = api.send("GET", "/proxies/a", None).await.json;
    assert_eq!(proxy["enabled"], true);
    assert_eq!(proxy["toxics"], json!([]));
    assert!(proxy.get("held").is_none());
    let mut client = connect(listen).await;
    round_trip(&mut client, b"clean").await;
}

#[tokio::test]
async fn hold_partition_and_their_undoing_are_api_endpoints() {
    let api = api().await;
    let upstream = Upstream::echo().await;
    let listen = listen_of(&api.create("x", &upstream.addr.to_string()).await);
    let held = api
        .send(
            "POST",
            "/proxies/x/hold",
            Some(r#"{"stream":"downstream"}"#),
        )
        .await;
    assert_eq!(held.status, 200);
    assert_eq!(held.json["held"], json!(["downstream"]));
    let mut client = connect(listen).await;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"held")
        .await
        .expect("write");
    assert!(stays_silent(&mut client, crate::ms(200)).await);
    let released = api.send("POST", "/proxies/x/release", None).await;
    assert!(released.json.get("held").is_none());
    assert_eq!(crate::support::read_n(&mut client, 4).await, b"held");

    let split = api
        .send(
            "POST",
            "/proxies/x/partition",
            Some(r#"{"stream":"upstream"}"#),
        )
        .await;
    assert_eq!(split.json["partitioned"], json!(["upstream"]));
    let both = api.send("POST", "/proxies/x/partition", Some("")).await;
    assert_eq!(both.json["partitioned"], json!(["upstream", "downstream"]));
    let healed = api.send("POST", "/proxies/x/heal", Some("{}")).await;
    assert!(healed.json.get("partitioned").is_none());

    assert_error(
        &api.send("POST", "/proxies/x/hold", Some(r#"{"stream":"sideways"}"#))
            .await,
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    assert_error(
        &api.send("POST", "/proxies/nope/heal", None).await,
        404,
        "proxy not found",
    );
    assert_eq!(
        api.send("POST", "/proxies/x/hold", Some("{")).await.status,
        400
    );
}

#[tokio::test]
async fn refuse_when_upstream_down_is_a_proxy_field() {
    let api = api().await;
    let dead = crate::support::dead_addr().await;
    let body = json!({"name": "r", "listen": "127.0.0.1:0", "upstream": dead.to_string(), "refuse_when_upstream_down": true});
    let reply = api.send("POST", "/proxies", Some(&body.to_string())).await;
    assert_eq!(reply.json["refuse_when_upstream_down"], true);
    until_refused(listen_of(&reply)).await;
    // Toxiproxy clients that do not know the field leave it as it is.
    let kept = api
        .send("POST", "/proxies/r", Some(r#"{"enabled":true}"#))
        .await;
    assert_eq!(kept.json["refuse_when_upstream_down"], true);
    let off = api
        .send(
            "PATCH",
            "/proxies/r",
            Some(r#"{"refuse_when_upstream_down":false}"#),
        )
        .await;
    assert!(off.json.get("refuse_when_upstream_down").is_none());
}

#[tokio::test]
async fn toxiproxy_rust_bodies_work_too() {
    // toxiproxy_rust 0.1.6: populate with `toxics: []`, u32 attributes, and
    // enable/disable as POST {"enabled": bool}.
    let api = api().await;
    let upstream = Upstream::echo().await;
    let body = json!([{"name": "socket", "listen": "127.0.0.1:0", "upstream": upstream.addr.to_string(), "enabled": true, "toxics": []}]);
    let reply = api.send("POST", "/populate", Some(&body.to_string())).await;
    assert_eq!(reply.status, 201);
    let toxic = json!({"name": "slicer_downstream", "type": "slicer", "stream": "downstream", "toxicity": 0.8, "attributes": {"average_size": 2048, "size_variation": 128, "delay": 0}});
    assert_eq!(
        api.send("POST", "/proxies/socket/toxics", Some(&toxic.to_string()))
            .await
            .status,
        200
    );
    assert_eq!(
        api.send("POST", "/proxies/socket", Some(r#"{"enabled":false}"#))
            .await
            .json["enabled"],
        false
    );
    assert_eq!(
        api.send("POST", "/proxies/socket", Some(r#"{"enabled":true}"#))
            .await
            .json["enabled"],
        true
    );
}

#[tokio::test]
async fn browsers_and_unknown_routes_are_refused() {
    let api = api().await;
    let reply = api
        .send_as("Mozilla/5.0 (X11)", "GET", "/proxies", None)
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text, "User agent not allowed\n");
    assert_eq!(api.send("GET", "/nothing/here", None).await.status, 404);
    assert_eq!(api.send("PUT", "/proxies", Some("{}")).await.status, 405);
}

#[tokio::test]
async fn garbage_never_takes_the_api_down() {
    let api = api().await;
    api.create("db", "127.0.0.1:1").await;
    let bodies = [
        "",
        "{",
        "}",
        "null",
        "[]",
        "{}",
        "\"s\"",
        "1e999",
        "[{}]",
        "{\"name\":{}}",
        "\u{7f}\u{80}",
    ];
    let routes = [
        ("POST", "/proxies"),
        ("POST", "/populate"),
        ("POST", "/proxies/db"),
        ("PATCH", "/proxies/db"),
        ("POST", "/proxies/db/toxics"),
        ("POST", "/proxies/db/hold"),
        ("POST", "/proxies/db/partition"),
    ];
    for (method, path) in routes {
        for body in bodies {
            let reply = api.send(method, path, Some(body)).await;
            assert!(reply.status < 500, "{method} {path} {body:?}: {reply:?}");
        }
    }
    assert_eq!(api.send("GET", "/proxies/db", None).await.status, 200);
    // Names with odd bytes are just names.
    let odd = api.send("GET", "/proxies/%00%0a%1b", None).await;
    assert_error(&odd, 404, "proxy not found");
}
