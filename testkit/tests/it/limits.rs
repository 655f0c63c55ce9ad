//! Abuse limits: each has an error code and a metric, and never affects
//! other clients — send rate, frame floods, login throttling (per user and
//! per connection), and the connection cap.

use std::time::Duration;

use rtmc::client::{ClientError, Connection};
use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};

use crate::support::init_logs;

fn metric(name: &str, label: &str) -> f64 {
    rtmc::telemetry::metrics()
        .render()
        .lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn until_closed(c: &mut Connection) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(f) = c.recv().await {
            frames.push(f);
        }
    })
    .await;
    assert!(r.is_ok(), "connection not closed; got {frames:?}");
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_above_the_rate_are_refused_and_not_published() {
    init_logs();
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_sends_per_sec = 5))
            .await
            .unwrap();
    let users = p.add_users("rl", 2).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    let mut c = Connection::connect(&p.server_addr(0), 1 << 20)
        .await
        .unwrap();
    rtmc::client::login(
        &mut c,
        &users[0],
        TEST_PASSWORD,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let before = metric("rtmc_rate_limited_total", "kind=\"send\"");
    for i in 0..20 {
        c.send(&ClientCommand::Send {
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
            ServerFrame::SendAck { message_id } => acked.push(message_id),
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
    assert!(metric("rtmc_rate_limited_total", "kind=\"send\"") >= before + limited as f64);
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
    init_logs();
    let p = Pipeline::shared(
        PipelineOptions::default().configure(|c| c.server.max_frames_per_sec = 100),
    )
    .await
    .unwrap();
    let user = p.add_users("fl", 1).await.unwrap().remove(0);
    let mut c = Connection::connect(&p.server_addr(0), 1 << 20)
        .await
        .unwrap();
    rtmc::client::login(&mut c, &user, TEST_PASSWORD, None, Duration::from_secs(10))
        .await
        .unwrap();
    for _ in 0..1_000 {
        if c.send(&ClientCommand::Heartbeat {}).await.is_err() {
            break;
        }
    }
    let frames = until_closed(&mut c).await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ),
        "last frame {:?}",
        frames.last()
    );
    // The server still serves others.
    let mut other = p.client(0, &user).await.unwrap();
    other.heartbeat().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_throttle_the_user() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.server.max_login_failures = 3;
        c.server.max_login_failures_per_connection = 100;
    }))
    .await
    .unwrap();
    let users = p.add_users("lt", 2).await.unwrap();
    let mut c = Connection::connect(&p.server_addr(0), 1 << 20)
        .await
        .unwrap();
    for _ in 0..3 {
        let e =
            rtmc::client::login(&mut c, &users[0], "wrong", None, Duration::from_secs(10)).await;
        assert!(
            matches!(
                e,
                Err(ClientError::Server {
                    code: ErrorCode::AuthFailed,
                    ..
                })
            ),
            "{e:?}"
        );
    }
    // Even the right password is refused while throttled …
    let e = rtmc::client::login(
        &mut c,
        &users[0],
        TEST_PASSWORD,
        None,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        matches!(
            e,
            Err(ClientError::Server {
                code: ErrorCode::RateLimited,
                ..
            })
        ),
        "{e:?}"
    );
    // … over HTTP too …
    let r = p
        .http
        .post(format!("{}/v1/login", p.gateway_url()))
        .json(&serde_json::json!({"user_id": users[0], "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    // … while other users are unaffected.
    rtmc::client::login(
        &mut c,
        &users[1],
        TEST_PASSWORD,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_failing_to_log_in_is_closed() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_users("lc", 1).await.unwrap().remove(0);
    let mut c = Connection::connect(&p.server_addr(0), 1 << 20)
        .await
        .unwrap();
    for _ in 0..p.cfg.server.max_login_failures_per_connection {
        c.send(&ClientCommand::Login {
            user_id: user.clone(),
            password: "nope".into(),
            resume_from: None,
            subscribe: true,
        })
        .await
        .unwrap();
    }
    let frames = until_closed(&mut c).await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ),
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_are_refused() {
    init_logs();
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_connections = 3))
            .await
            .unwrap();
    let user = p.add_users("cap", 1).await.unwrap().remove(0);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(p.client(0, &user).await.unwrap());
    }
    let mut extra = Connection::connect(&p.server_addr(0), 1 << 20)
        .await
        .unwrap();
    let frames = until_closed(&mut extra).await;
    assert!(
        matches!(
            frames.first(),
            Some(ServerFrame::Error {
                code: ErrorCode::TooManyConnections,
                ..
            })
        ),
        "{frames:?}"
    );
    // A slot frees when a client leaves.
    held.pop().unwrap().logout().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.client(0, &user).await.unwrap().heartbeat().await.unwrap();
}
