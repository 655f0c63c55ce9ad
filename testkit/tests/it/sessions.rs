//! Session cleanup: a session ends — Redis session gone, PostgreSQL status
//! `offline` with `last_seen` — within 2× the heartbeat timeout after an
//! abrupt disconnect, a silent client, a logout, a node shutting down, or a
//! node dying (then another node's sweep does it).

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use rtmc::config::Config;
use rtmc::protocol::ErrorCode;
use rtmc_testkit::{raw, Pipeline, PipelineOptions, Role};

use crate::support::{eventually, next_error};

const HEARTBEAT_TIMEOUT_MS: u64 = 2_000;

fn fast_heartbeats(c: &mut Config) {
    c.server.heartbeat_interval_ms = 500;
    c.server.heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS;
}

/// Redis session keys of the user, and their PostgreSQL status and last_seen.
async fn state(p: &Pipeline, user: &str) -> (u64, String, bool) {
    let mut r = p.redis().await.unwrap();
    let live: u64 = r
        .scard(format!("{}:user_sessions:{user}", p.cfg.redis.key_prefix))
        .await
        .unwrap();
    let (status, last_seen): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT status, last_seen FROM users WHERE user_id = $1")
            .bind(user)
            .fetch_one(&p.pg)
            .await
            .unwrap();
    (live, status, last_seen.is_some())
}

async fn session_key_exists(p: &Pipeline, token: &str) -> bool {
    let mut r = p.redis().await.unwrap();
    r.exists(format!("{}:session:{token}", p.cfg.redis.key_prefix))
        .await
        .unwrap()
}

/// Waits until the user's sessions are cleaned up; returns how long it took.
async fn await_cleanup(p: &Pipeline, user: &str, token: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    eventually(bound, Duration::from_millis(50), async || {
        let (live, status, seen) = state(p, user).await;
        if live == 0 && status == "offline" && seen && !session_key_exists(p, token).await {
            return Ok(started.elapsed());
        }
        Err(format!(
            "not cleaned up within {bound:?}: live sessions {live}, status {status}, last_seen set {seen}"
        ))
    })
    .await
}

fn bound() -> Duration {
    Duration::from_millis(2 * HEARTBEAT_TIMEOUT_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abruptly_killed_client_is_cleaned_up() {
    let p = Pipeline::shared(PipelineOptions::default().configure(fast_heartbeats))
        .await
        .unwrap();
    let user = p.add_user("k").await.unwrap();
    let (c, info) = p.raw_login(0, &user).await.unwrap();
    let (live, status, _) = state(&p, &user).await;
    assert_eq!((live, status.as_str()), (1, "online"));
    // Reset the connection (SO_LINGER 0 → RST), as a killed process's kernel would.
    let stream = c.into_inner();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    let took = await_cleanup(&p, &user, info.session_token.expose(), bound()).await;
    eprintln!("abrupt disconnect cleaned up in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_heartbeating_is_cut_off_and_cleaned_up() {
    let p = Pipeline::shared(PipelineOptions::default().configure(fast_heartbeats))
        .await
        .unwrap();
    let user = p.add_user("h").await.unwrap();
    let (mut c, info) = p.raw_login(0, &user).await.unwrap();
    // Silent from now on (connection open, nothing sent).
    let took = await_cleanup(&p, &user, info.session_token.expose(), bound()).await;
    eprintln!("silent client cleaned up in {took:?}");
    let (code, message) = next_error(&mut c, Duration::from_secs(5)).await;
    assert_eq!(code, ErrorCode::HeartbeatTimeout, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_session_alive() {
    let p = Pipeline::shared(PipelineOptions::default().configure(fast_heartbeats))
        .await
        .unwrap();
    let user = p.add_user("a").await.unwrap();
    let mut c = p.client(0, &user).await.unwrap();
    let until = Instant::now() + Duration::from_millis(3 * HEARTBEAT_TIMEOUT_MS);
    while Instant::now() < until {
        c.heartbeat().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (live, status, _) = state(&p, &user).await;
    assert_eq!((live, status.as_str()), (1, "online"));
    assert_eq!(c.reconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_at_once() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("l").await.unwrap();
    let c = p.client(0, &user).await.unwrap();
    let token = c.info.session_token.expose().to_owned();
    c.logout().await.unwrap();
    let took = await_cleanup(&p, &user, &token, Duration::from_secs(2)).await;
    assert!(
        took < Duration::from_secs(1),
        "logout cleanup took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_two_sessions_stays_online_until_the_last_ends() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("two").await.unwrap();
    let a = p.client(0, &user).await.unwrap();
    let b = p.client(0, &user).await.unwrap();
    let token_b = b.info.session_token.expose().to_owned();
    a.logout().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (live, status, _) = state(&p, &user).await;
    assert_eq!((live, status.as_str()), (1, "online"));
    b.logout().await.unwrap();
    await_cleanup(&p, &user, &token_b, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_ends_its_sessions() {
    let mut p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("n").await.unwrap();
    let (mut c, info) = p.raw_login(0, &user).await.unwrap();
    p.stop_server(0).await;
    await_cleanup(
        &p,
        &user,
        info.session_token.expose(),
        Duration::from_secs(2),
    )
    .await;
    let (code, message) = next_error(&mut c, Duration::from_secs(5)).await;
    assert_eq!(code, ErrorCode::ShuttingDown, "{message}");
}

/// A node process is SIGKILLed: nobody ends its sessions but their TTL; the
/// surviving node's sweep marks the user offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_are_swept_by_another_node() {
    let p = Pipeline::shared(PipelineOptions::default().configure(fast_heartbeats))
        .await
        .unwrap();
    let user = p.add_user("dead").await.unwrap();
    let node = p.spawn_process(Role::Server).await.unwrap();
    let (_c, info) = raw::connect_and_login(node.addr.as_deref().unwrap(), &user)
        .await
        .unwrap();
    assert_eq!(state(&p, &user).await.1, "online");
    node.kill();
    let took = await_cleanup(&p, &user, info.session_token.expose(), bound()).await;
    eprintln!("dead node's session swept in {took:?}");
}
