//! Bad input over TCP: each class gets its own error code, the connection
//! survives where the input is merely wrong and closes where it is abuse, and
//! the server keeps serving everyone else.

use std::time::Duration;

use rtmc::client::Connection;
use rtmc::protocol::{ErrorCode, ServerFrame};
use rtmc_testkit::{raw, Pipeline, PipelineOptions};

use crate::support::{assert_refused, until_closed};

/// How long the server may take to close a connection it gave up on.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

async fn setup() -> (Pipeline, String) {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.server.login_timeout_ms = 1_500;
    }))
    .await
    .unwrap();
    let user = p.add_user("b").await.unwrap();
    (p, user)
}

async fn logged_in(p: &Pipeline, user: &str) -> Connection {
    p.raw_login(0, user).await.unwrap().0
}

async fn expect_error(c: &mut Connection, code: ErrorCode) -> String {
    loop {
        match c.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            ServerFrame::Error {
                code: got, message, ..
            } => {
                assert_eq!(got, code, "{message}");
                return message;
            }
            ServerFrame::Broadcast(_) => continue,
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }
}

/// The connection still works: a heartbeat is answered.
async fn still_open(c: &mut Connection) {
    c.send(&rtmc::protocol::ClientCommand::Heartbeat {})
        .await
        .unwrap();
    loop {
        match c.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            ServerFrame::HeartbeatAck {} => return,
            ServerFrame::Broadcast(_) => continue,
            other => panic!("expected heartbeat_ack, got {other:?}"),
        }
    }
}

/// The server is healthy: a new client logs in and round-trips a message.
async fn server_still_serves(p: &Pipeline, user: &str) {
    let mut c = p.client(0, user).await.unwrap();
    let id = c.send("still alive", None).await.unwrap();
    let b = c.next_broadcast(Duration::from_secs(20)).await.unwrap();
    assert_eq!(b.message_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_rejected_and_the_connection_closed() {
    let (p, user) = setup().await;
    let mut c = logged_in(&p, &user).await;
    let big = vec![b' '; p.cfg.server.max_frame_bytes + 1];
    c.send_raw(&big).await.unwrap();
    let msg = expect_error(&mut c, ErrorCode::FrameTooLarge).await;
    assert!(msg.contains("exceeds"), "{msg}");
    until_closed(&mut c, CLOSE_LIMIT).await;
    server_still_serves(&p, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_is_rejected_and_the_connection_survives() {
    let (p, user) = setup().await;
    let mut c = logged_in(&p, &user).await;
    c.send_raw(b"\xff\xfe not utf-8 or json").await.unwrap();
    expect_error(&mut c, ErrorCode::BadFrame).await;
    c.send_raw(b"[1,2,3]").await.unwrap();
    expect_error(&mut c, ErrorCode::BadFrame).await;
    still_open(&mut c).await;
    server_still_serves(&p, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_is_rejected() {
    let (p, user) = setup().await;
    let mut c = logged_in(&p, &user).await;
    c.send_raw(br#"{"command":"teleport","to":"mars"}"#)
        .await
        .unwrap();
    let msg = expect_error(&mut c, ErrorCode::UnknownCommand).await;
    assert!(msg.contains("teleport"), "{msg}");
    still_open(&mut c).await;
    server_still_serves(&p, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_field_types_are_rejected() {
    let (p, user) = setup().await;
    let mut c = logged_in(&p, &user).await;
    c.send_raw(br#"{"command":"send","body":42}"#)
        .await
        .unwrap();
    expect_error(&mut c, ErrorCode::InvalidField).await;
    c.send_raw(br#"{"command":"send"}"#).await.unwrap();
    expect_error(&mut c, ErrorCode::InvalidField).await;
    c.send_raw(br#"{"command":["send"]}"#).await.unwrap();
    expect_error(&mut c, ErrorCode::InvalidField).await;
    c.send_raw(br#"{"command":"send","body":"x","message_id":"has space"}"#)
        .await
        .unwrap();
    expect_error(&mut c, ErrorCode::InvalidField).await;
    still_open(&mut c).await;
    server_still_serves(&p, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_before_login_is_rejected_and_nothing_is_published() {
    let (p, user) = setup().await;
    let mut c = p.raw_connection(0).await.unwrap();
    c.send_raw(br#"{"command":"send","body":"sneaky","message_id":"sneaky-1"}"#)
        .await
        .unwrap();
    expect_error(&mut c, ErrorCode::NotLoggedIn).await;
    // Logging in afterwards works on the same connection, and the sneaky message never shows up.
    raw::login(&mut c, &user).await.unwrap();
    let mut reader = p.client(0, &user).await.unwrap();
    reader.send("marker", Some("marker-1")).await.unwrap();
    let b = reader
        .next_broadcast(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        b.message_id, "marker-1",
        "an unauthenticated send was published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_rejected() {
    let (p, user) = setup().await;
    let mut c = p.raw_connection(0).await.unwrap();
    let wrong_password =
        rtmc::client::login(&mut c, &user, "wrong", None, raw::LOGIN_REPLY_TIMEOUT).await;
    assert_refused(wrong_password, ErrorCode::AuthFailed);
    assert_refused(
        raw::login(&mut c, "nobody-here").await,
        ErrorCode::AuthFailed,
    );
    // The same connection can still log in with the right password.
    raw::login(&mut c, &user).await.unwrap();
    still_open(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_logs_in_is_closed_at_the_deadline() {
    let (p, user) = setup().await;
    let mut c = p.raw_connection(0).await.unwrap();
    expect_error(&mut c, ErrorCode::LoginTimeout).await;
    until_closed(&mut c, CLOSE_LIMIT).await;
    server_still_serves(&p, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_does_not_wedge_the_server() {
    let (p, user) = setup().await;
    let mut c = logged_in(&p, &user).await;
    for i in 0..2_000 {
        c.send_raw(format!("garbage {i}").as_bytes()).await.unwrap();
    }
    for _ in 0..2_000 {
        expect_error(&mut c, ErrorCode::BadFrame).await;
    }
    still_open(&mut c).await;
    server_still_serves(&p, &user).await;
}
