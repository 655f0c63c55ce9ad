//! The HTTP gateway: status codes for each class of bad request, session
//! tokens and API keys, the OpenAPI document, and a bounded 503 when the
//! broker is down.

use std::time::{Duration, Instant};

use rtmc_testkit::{Pipeline, PipelineOptions, Services, TEST_PASSWORD};
use serde_json::json;

use crate::support::init_logs;

async fn post(
    p: &Pipeline,
    headers: &[(&str, &str)],
    body: reqwest::Body,
) -> (u16, serde_json::Value) {
    let mut req = p
        .http
        .post(format!("{}/v1/messages", p.gateway_url()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_requests_with_precise_statuses() {
    init_logs();
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
    let (s, _) = post(
        &p,
        &[("x-api-key", "wrong")],
        json!({"body": "x"}).to_string().into(),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &p,
        &[("authorization", "Bearer not-a-session")],
        json!({"body": "x"}).to_string().into(),
    )
    .await;
    assert_eq!(s, 401);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_from_login_publishes_as_that_user() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_users("g", 1).await.unwrap().remove(0);
    let mut reader = p.client(0, &user).await.unwrap();
    let resp = p
        .http
        .post(format!("{}/v1/login", p.gateway_url()))
        .json(&json!({"user_id": user, "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let login: serde_json::Value = p
        .http
        .post(format!("{}/v1/login", p.gateway_url()))
        .json(&json!({"user_id": user, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_openapi_health_and_metrics() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let doc: serde_json::Value = p
        .http
        .get(format!("{}/openapi.json", p.gateway_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in ["/v1/messages", "/v1/login", "/healthz"] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let health = p
        .http
        .get(format!("{}/healthz", p.gateway_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = p
        .http
        .get(format!("{}/readyz", p.gateway_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let (s, _) = p.post_message("svc", "count me", None).await.unwrap();
    assert_eq!(s, 202);
    let metrics = p
        .http
        .get(format!("{}/metrics", p.gateway_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rtmc_publish_confirmed_total"),
        "{metrics}"
    );
    p.shutdown().await;
}

/// Own services: this test stops the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_a_bounded_503_and_recovers() {
    init_logs();
    let services = Services::start().await.unwrap();
    let p = Pipeline::start(&services, PipelineOptions::default())
        .await
        .unwrap();
    let (s, _) = p.post_message("svc", "before", None).await.unwrap();
    assert_eq!(s, 202);
    services.rabbitmq().stop().await.unwrap();
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
    services.rabbitmq().start().await.unwrap();
    // Accepted again once the broker is back (the publisher reconnects on demand).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = p.post_message("svc", "after", None).await.unwrap();
        if s == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publishing not accepted 30 s after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.shutdown().await;
}
