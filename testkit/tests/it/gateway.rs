//! The HTTP gateway: status codes for each class of bad request, session
//! tokens and API keys, the OpenAPI document, and a bounded 503 when the
//! broker is down.

use std::time::{Duration, Instant};

use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use serde_json::json;

use crate::support::eventually;

async fn post(
    p: &Pipeline,
    headers: &[(&str, &str)],
    body: reqwest::Body,
) -> (u16, serde_json::Value) {
    // API keys publish at the service route, session tokens at the user route.
    let route = if headers.iter().any(|(k, _)| *k == "x-api-key") {
        "/v1/service/messages"
    } else {
        "/v1/messages"
    };
    let mut req = p
        .http
        .post(format!("{}{route}", p.gateway_url()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn get(p: &Pipeline, path: &str) -> reqwest::Response {
    p.http
        .get(format!("{}{path}", p.gateway_url()))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_requests_with_precise_statuses() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let key = p.api_key().to_owned();
    let auth = [("x-api-key", key.as_str())];
    let (s, b) = post(&p, &auth, "{not json".into()).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_json")), "{b}");
    let (s, b) = post(
        &p,
        &auth,
        json!({"sender": "svc", "body": 5}).to_string().into(),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_field")), "{b}");
    let (s, b) = post(&p, &auth, json!({"body": "no sender"}).to_string().into()).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_field")), "{b}");
    let (s, b) = post(
        &p,
        &auth,
        json!({"sender": "svc", "body": "x", "message_id": ""})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_field")), "{b}");
    let huge =
        json!({"sender": "svc", "body": "x".repeat(p.cfg.gateway.max_request_bytes)}).to_string();
    let (s, b) = post(&p, &auth, huge.into()).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );
    let (s, b) = post(&p, &[], json!({"body": "x"}).to_string().into()).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")), "{b}");
    for bad_credential in [
        ("x-api-key", "wrong"),
        ("authorization", "Bearer not-a-session"),
    ] {
        let (s, _) = post(
            &p,
            &[bad_credential],
            json!({"body": "x"}).to_string().into(),
        )
        .await;
        assert_eq!(s, 401, "{bad_credential:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_from_login_publishes_as_that_user() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("g").await.unwrap();
    let mut reader = p.client(0, &user).await.unwrap();
    let (s, b) = p.http_login(&user, "wrong").await.unwrap();
    assert_eq!(s, 401, "{b}");
    let (s, login) = p.http_login(&user, TEST_PASSWORD).await.unwrap();
    assert_eq!(s, 200, "{login}");
    let token = format!("Bearer {}", login["session_token"].as_str().unwrap());
    let (s, b) = post(
        &p,
        &[("authorization", &token)],
        json!({"body": "from http"}).to_string().into(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let (s, _) = post(
        &p,
        &[("authorization", &token)],
        json!({"body": "x", "sender": "someone-else"})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!(s, 400, "impersonation must be refused");
    let got = reader
        .next_broadcast(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (got.from.as_str(), got.body.as_str()),
        (user.as_str(), "from http")
    );
    assert_eq!(got.message_id, b["message_id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_openapi_health_and_metrics() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let doc: serde_json::Value = get(&p, "/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/messages",
        "/v1/service/messages",
        "/v1/login",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&p, path).await.status().as_u16(), 200, "{path}");
    }
    let (s, _) = p.post_message("svc", "count me", None).await.unwrap();
    assert_eq!(s, 202);
    let metrics = get(&p, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("rtmc_publish_confirmed_total"),
        "{metrics}"
    );
}

/// Own services: this test stops the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_a_bounded_503_and_recovers() {
    let p = Pipeline::private(PipelineOptions::default()).await.unwrap();
    let (s, _) = p.post_message("svc", "before", None).await.unwrap();
    assert_eq!(s, 202);
    p.services().rabbitmq().stop().await.unwrap();
    let started = Instant::now();
    let (s, b) = p.post_message("svc", "during", None).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(
        (s, b["code"].as_str()),
        (503, Some("broker_unavailable")),
        "{b}"
    );
    assert!(
        waited < Duration::from_millis(p.cfg.rabbitmq.publish_timeout_ms + 1_000),
        "503 took {waited:?}"
    );
    p.services().rabbitmq().start().await.unwrap();
    // Accepted again once the broker is back (the publisher reconnects on demand).
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || match p.post_message("svc", "after", None).await.unwrap() {
            (202, _) => Ok(()),
            (s, b) => Err(format!(
                "publishing not accepted after the broker came back: {s} {b}"
            )),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_publishing_route_takes_only_its_own_credential() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("routes").await.unwrap();
    let (_, login) = p.http_login(&user, TEST_PASSWORD).await.unwrap();
    let bearer = format!("Bearer {}", login["session_token"].as_str().unwrap());
    let body = json!({"sender": "svc", "body": "x"}).to_string();
    let to = |route: &str| format!("{}{route}", p.gateway_url());
    let key_on_user_route = p
        .http
        .post(to("/v1/messages"))
        .header("x-api-key", p.api_key())
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(key_on_user_route.status().as_u16(), 401);
    let said: serde_json::Value = key_on_user_route.json().await.unwrap();
    assert!(
        said["message"]
            .as_str()
            .unwrap()
            .contains("/v1/service/messages"),
        "{said}"
    );
    let token_on_service_route = p
        .http
        .post(to("/v1/service/messages"))
        .header("authorization", bearer)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(token_on_service_route.status().as_u16(), 401);
}

/// A body declared larger than the gateway takes is refused from its
/// `Content-Length`: no `100 Continue`, no byte of the body read, a 413 and
/// a closed connection, so a client never sends megabytes for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_content_length_is_refused_before_the_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let addr = p.gateway_url().trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/service/messages HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 2000000\r\n\
         Expect: 100-continue\r\n\r\n",
        p.api_key()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "the gateway neither answered nor closed without the body; it sent {text:?}"
    );
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

/// The gateway stamps its own receive time: a post claiming the Unix epoch
/// as its send time keeps that claim as `sent_at_us` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_stamps_its_own_receive_time() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("clock").await.unwrap();
    let mut reader = p.client(0, &user).await.unwrap();
    let key = p.api_key().to_owned();
    let before = rtmc::protocol::now_us();
    let (s, b) = post(
        &p,
        &[("x-api-key", key.as_str())],
        json!({"sender": "svc", "body": "claims 1970", "sent_at_us": 0})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let got = crate::support::collect(&mut reader, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].sent_at_us, 0);
    let after = rtmc::protocol::now_us();
    assert!(
        (before..=after).contains(&got[0].received_at_us),
        "received_at_us {} outside {before}..={after}",
        got[0].received_at_us
    );
}
