//! Security findings, each driven end to end: no impersonation
//! (services publish as `service:<name>`, enforced at the gateway and again
//! in the consumer), no terminal takeover by a hostile body, no lock-out by
//! someone guessing a user's password from another address, and no secret
//! in `--help`.

use std::net::IpAddr;
use std::time::Duration;

use rtmc::client::Connection;
use rtmc::protocol::{ErrorCode, DEFAULT_MAX_FRAME_BYTES};
use rtmc_testkit::{raw, Pipeline, PipelineOptions, TEST_PASSWORD};
use serde_json::json;

use crate::support::{assert_refused, collect};
use crate::terminal_driver::{is_message, TerminalClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_never_posts_as_a_user() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let users = p.add_users("imp", 2).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    // A service naming a real user as its sender is published as the service.
    let (s, b) = p
        .post_message(&users[0], "from the bot", None)
        .await
        .unwrap();
    assert_eq!(s, 202, "{b}");
    // A sender that tries to claim a namespace itself is refused.
    for claim in ["service:billing", "alice\n[99] bob", ""] {
        let (s, b) = p.post_message(claim, "x", None).await.unwrap();
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_field")),
            "{claim:?}: {b}"
        );
    }
    // The consumer checks again: bytes in the queue are not trusted.
    p.publish_raw(br#"{"message_id":"imp-raw","from":"bo:b","body":"forged","sent_at_us":1}"#)
        .await
        .unwrap();
    let got = collect(&mut reader, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].from, format!("service:{}", users[0]));
    assert_ne!(got[0].from, users[0]);
    assert!(reader
        .next_broadcast(Duration::from_millis(500))
        .await
        .is_err());
    let dead = p.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .any(|(raw, why)| raw.starts_with(br#"{"message_id":"imp-raw""#)
                && why.contains("from must be")),
        "{dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_body_cannot_take_over_the_terminal_client() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("takeover").await.unwrap();
    let mut c = TerminalClient::start(&[p.server_addr(0)], &user, None).await;
    let hostile = "\u{1b}[2J\u{1b}[H\n[99] bob: I never said this\u{1b}]0;pwned\u{7}";
    let (s, b) = p.post_message("svc", hostile, None).await.unwrap();
    assert_eq!(s, 202, "{b}");
    let (s, _) = p.post_message("svc", "after", None).await.unwrap();
    assert_eq!(s, 202);
    c.expect(|l| is_message(l, "service:svc", "after")).await;
    let seen = &c.seen;
    for line in seen {
        assert!(
            !line.chars().any(char::is_control),
            "raw control char: {line:?}"
        );
        assert!(!line.starts_with("[99] bob"), "a forged line: {seen:?}");
    }
    let shown = seen
        .iter()
        .find(|l| l.contains("I never said this"))
        .unwrap_or_else(|| panic!("hostile message not shown: {seen:?}"));
    assert!(shown.contains("service:svc: \\u{1b}[2J"), "{shown}");
    assert!(shown.contains("\\n[99] bob: I never said this"), "{shown}");
}

/// A connection to server node 0 from loopback address `source`, so the
/// server sees distinct clients by address.
async fn connect_from(p: &Pipeline, source: &str) -> Connection {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let server = p.server_addr(0).parse().unwrap();
    let stream = sock.connect(server).await.unwrap();
    Connection::from_stream(stream, DEFAULT_MAX_FRAME_BYTES)
}

/// `POST /v1/login` from loopback address `source`; the status.
async fn http_login_from(p: &Pipeline, source: &str, user: &str, password: &str) -> u16 {
    let http = reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    http.post(format!("{}/v1/login", p.gateway_url()))
        .json(&json!({"user_id": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_never_locks_the_owner_out() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.server.max_login_failures = 3;
        c.server.max_login_failures_per_source = 5;
        c.server.max_login_failures_per_connection = 100;
    }))
    .await
    .unwrap();
    let users = p.add_users("lockout", 2).await.unwrap();
    let (attacker, owner) = ("127.0.0.2", "127.0.0.3");
    let mut guesser = connect_from(&p, attacker).await;
    for _ in 0..3 {
        let guess = rtmc::client::login(
            &mut guesser,
            &users[0],
            "guess",
            None,
            raw::LOGIN_REPLY_TIMEOUT,
        );
        assert_refused(guess.await, ErrorCode::AuthFailed);
    }
    // Guessing stays throttled: from that address even the right password is refused …
    assert_refused(
        raw::login(&mut guesser, &users[0]).await,
        ErrorCode::RateLimited,
    );
    assert_eq!(
        http_login_from(&p, attacker, &users[0], TEST_PASSWORD).await,
        429
    );
    // … while the owner, from elsewhere, logs in over TCP and HTTP.
    let mut own = connect_from(&p, owner).await;
    raw::login(&mut own, &users[0]).await.unwrap();
    assert_eq!(
        http_login_from(&p, owner, &users[0], TEST_PASSWORD).await,
        200
    );
    // Moving on to other user ids from the same address hits the per-source limit.
    for _ in 0..2 {
        let guess = rtmc::client::login(
            &mut guesser,
            &users[1],
            "guess",
            None,
            raw::LOGIN_REPLY_TIMEOUT,
        );
        assert_refused(guess.await, ErrorCode::AuthFailed);
    }
    assert_refused(
        raw::login(&mut guesser, &users[1]).await,
        ErrorCode::RateLimited,
    );
    for _ in 0..3 {
        assert_eq!(http_login_from(&p, attacker, &users[1], "guess").await, 429);
    }
    let mut other = connect_from(&p, owner).await;
    raw::login(&mut other, &users[1]).await.unwrap();
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let binary = rtmc_testkit::process::rtmc_binary().unwrap();
    for args in [&["client", "--help"][..], &["user", "add", "--help"]] {
        let out = std::process::Command::new(&binary)
            .args(args)
            .env("RTMC_PASSWORD", "s3cret")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("RTMC_PASSWORD"), "{args:?}: {text}");
        assert!(
            !text.contains("s3cret"),
            "{args:?} printed the password: {text}"
        );
    }
}

/// The server trusts only its own clock: a `send` claiming the Unix epoch
/// as its send time is stamped with the server's receive time, the claim is
/// carried as `sent_at_us` only, and the fan-out lag histogram does not
/// move by the 56 years the sender's clock is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_clock_moves_no_metric_and_no_shown_time() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("clock").await.unwrap();
    let mut reader = p.client(0, &user).await.unwrap();
    let lag_sum = || {
        let text = rtmc::telemetry::render();
        crate::support::metric(&text, "rtmc_fanout_lag_seconds_sum", "")
    };
    let lag_before = lag_sum();
    let before = rtmc::protocol::now_us();
    let mut sender = p.raw_connection(0).await.unwrap();
    raw::login_publish_only(&mut sender, &user).await.unwrap();
    sender
        .send(&rtmc::protocol::ClientCommand::Send {
            room: None,
            to: None,
            body: "claims 1970".into(),
            message_id: Some(format!("clock-{}", uuid::Uuid::new_v4())),
            sent_at_us: Some(0),
        })
        .await
        .unwrap();
    let got = collect(&mut reader, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].sent_at_us, 0, "the sender's claim is carried as is");
    let after = rtmc::protocol::now_us();
    assert!(
        (before..=after).contains(&got[0].received_at_us),
        "received_at_us {} outside {before}..={after}",
        got[0].received_at_us
    );
    let line = rtmc::terminal::message_line(&got[0], after);
    assert!(
        !line.starts_with("1970") && !line.starts_with("00:00:00"),
        "{line}"
    );
    // Other tests of this binary add their own (small) lags meanwhile.
    let moved = lag_sum() - lag_before;
    assert!(moved < 3600.0, "fan-out lag sum moved by {moved} s");
}
