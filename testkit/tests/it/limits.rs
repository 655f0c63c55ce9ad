//! Abuse limits: each has an error code and a metric, and never affects
//! other clients — send rate, frame floods, login throttling (per user and
//! per connection), and the connection cap.

use std::time::Duration;

use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use rtmc_testkit::{raw, Pipeline, PipelineOptions, TEST_PASSWORD};

use crate::support::{assert_refused, error_code, metric, until_closed};

/// How long the server may take to close a connection it gave up on.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Sends refused for their rate so far (this process's metrics).
fn send_rate_refusals() -> f64 {
    let now = rtmc::telemetry::metrics().render();
    metric(&now, "rtmc_rate_limited_total", "kind=\"send\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_above_the_rate_are_refused_and_not_published() {
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_sends_per_sec = 5))
            .await
            .unwrap();
    let users = p.add_users("rl", 2).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    let (mut c, _) = p.raw_login(0, &users[0]).await.unwrap();
    let before = send_rate_refusals();
    for i in 0..20 {
        c.send(&ClientCommand::Send {
            room: None,
            to: None,
            body: "x".into(),
            message_id: Some(format!("rl-{i}")),
            sent_at_us: None,
        })
        .await
        .unwrap();
    }
    let (mut acked, mut limited) = (Vec::new(), 0);
    while acked.len() + limited < 20 {
        match c.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            ServerFrame::SendAck { message_id, .. } => acked.push(message_id),
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message_id: Some(_),
                ..
            } => limited += 1,
            ServerFrame::Broadcast(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        acked.len() <= 6 && limited >= 14,
        "acked {} limited {limited}",
        acked.len()
    );
    assert!(send_rate_refusals() >= before + limited as f64);
    // Only the acknowledged ones are delivered.
    let mut got = Vec::new();
    while let Ok(b) = reader.next_broadcast(Duration::from_millis(1_500)).await {
        got.push(b.message_id);
    }
    got.sort();
    acked.sort();
    assert_eq!(
        got, acked,
        "acks may arrive in any order; the delivered set must equal the acked set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_closes_the_connection() {
    let p = Pipeline::shared(
        PipelineOptions::default().configure(|c| c.server.max_frames_per_sec = 100),
    )
    .await
    .unwrap();
    let user = p.add_user("fl").await.unwrap();
    let (mut c, _) = p.raw_login(0, &user).await.unwrap();
    for _ in 0..1_000 {
        if c.send(&ClientCommand::Heartbeat {}).await.is_err() {
            break;
        }
    }
    let frames = until_closed(&mut c, CLOSE_LIMIT).await;
    assert_eq!(
        error_code(frames.last()),
        Some(ErrorCode::RateLimited),
        "last frame {:?}",
        frames.last()
    );
    // The server still serves others.
    let mut other = p.client(0, &user).await.unwrap();
    other.heartbeat().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_throttle_the_user() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.server.max_login_failures = 3;
        c.server.max_login_failures_per_connection = 100;
    }))
    .await
    .unwrap();
    let users = p.add_users("lt", 2).await.unwrap();
    let mut c = p.raw_connection(0).await.unwrap();
    for _ in 0..3 {
        let wrong_password =
            rtmc::client::login(&mut c, &users[0], "wrong", None, raw::LOGIN_REPLY_TIMEOUT).await;
        assert_refused(wrong_password, ErrorCode::AuthFailed);
    }
    // Even the right password is refused while throttled, saying when to
    // come back (within the failure window) …
    c.send(&ClientCommand::Login {
        protocol: None,
        resume_rooms: None,
        user_id: users[0].clone(),
        password: TEST_PASSWORD.into(),
        resume_from: None,
        subscribe: true,
    })
    .await
    .unwrap();
    let window = p.cfg.server.login_failure_window_secs;
    match c.recv_timeout(raw::LOGIN_REPLY_TIMEOUT).await.unwrap() {
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            retry_after_secs: Some(secs),
            ..
        } => assert!((1..=window).contains(&secs), "{secs} s"),
        other => panic!("expected rate_limited with retry_after_secs, got {other:?}"),
    }
    // … over HTTP too, with Retry-After …
    let resp = p
        .http
        .post(format!("{}/v1/login", p.gateway_url()))
        .json(&serde_json::json!({"user_id": users[0], "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (1..=window).contains(&s)),
        "Retry-After: {retry_after:?}"
    );
    // … while other users are unaffected.
    raw::login(&mut c, &users[1]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_failing_to_log_in_is_closed() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("lc").await.unwrap();
    let mut c = p.raw_connection(0).await.unwrap();
    for _ in 0..p.cfg.server.max_login_failures_per_connection {
        c.send(&ClientCommand::Login {
            protocol: None,
            resume_rooms: None,
            user_id: user.clone(),
            password: "nope".into(),
            resume_from: None,
            subscribe: true,
        })
        .await
        .unwrap();
    }
    let frames = until_closed(&mut c, CLOSE_LIMIT).await;
    assert_eq!(
        error_code(frames.last()),
        Some(ErrorCode::RateLimited),
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_are_refused() {
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_connections = 3))
            .await
            .unwrap();
    let user = p.add_user("cap").await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(p.client(0, &user).await.unwrap());
    }
    let mut extra = p.raw_connection(0).await.unwrap();
    let frames = until_closed(&mut extra, CLOSE_LIMIT).await;
    assert_eq!(
        error_code(frames.first()),
        Some(ErrorCode::TooManyConnections),
        "{frames:?}"
    );
    // A slot frees when a client leaves.
    held.pop().unwrap().logout().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.client(0, &user).await.unwrap().heartbeat().await.unwrap();
}
