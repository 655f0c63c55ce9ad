//! Resume: a client that reconnects with its last sequence number gets
//! exactly what it missed — from Redis, or from PostgreSQL once Redis
//! trimmed it — then live traffic, with no gap and no duplicate.

use std::time::Duration;

use rtmc::client::ChatClient;
use rtmc::protocol::ServerFrame;
use rtmc_testkit::{raw, Pipeline, PipelineOptions, TEST_PASSWORD};

use crate::support::{collect, eventually, next_error, post_numbered};

/// Publishes messages `r-<i>` for `range` over HTTP, each acknowledged.
async fn publish(p: &Pipeline, range: std::ops::Range<usize>) {
    post_numbered(p, "r", range, "missed or live").await;
}

fn ids(got: &[rtmc::protocol::BroadcastFrame]) -> Vec<String> {
    got.iter().map(|b| b.message_id.clone()).collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r-{i}")).collect()
}

/// A client of node 0 that received `r-0..r-<n>` live, as they were published.
async fn caught_up(p: &Pipeline, user: &str, n: usize) -> ChatClient {
    let mut c = p.client(0, user).await.unwrap();
    publish(p, 0..n).await;
    let first = collect(&mut c, n, Duration::from_secs(20)).await;
    assert_eq!(ids(&first), expected(0..n));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_what_it_missed() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("res").await.unwrap();
    let c = caught_up(&p, &user, 10).await;
    let last = c.last_seq();
    drop(c);
    // Messages flow while the client is away.
    publish(&p, 10..25).await;
    let mut c = ChatClient::connect_from(&p.server_addr(0), &user, TEST_PASSWORD, Some(last))
        .await
        .unwrap();
    publish(&p, 25..30).await;
    let rest = collect(&mut c, 20, Duration::from_secs(20)).await;
    assert_eq!(
        ids(&rest),
        expected(10..30),
        "missed + live, no gap, no duplicate"
    );
    assert_eq!(rest[0].seq, last + 1);
    assert!(
        c.next_broadcast(Duration::from_millis(300)).await.is_err(),
        "a duplicate leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_resumes_automatically_after_a_dropped_link() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("auto").await.unwrap();
    let mut c = caught_up(&p, &user, 5).await;
    // Cut the link under the client (as a network failure would): the server
    // sees end of stream and closes; the client notices on its next read.
    c.connection().shutdown().await.unwrap();
    // Wait for the server's close before publishing: until the session has
    // ended the node may still deliver to the half-closed link, and a client
    // that got everything live would have had nothing to resume (CI saw it).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while c.connection().recv_raw().await.is_ok() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server never closed the half-closed link"
    );
    publish(&p, 5..15).await;
    let rest = collect(&mut c, 10, Duration::from_secs(30)).await;
    assert_eq!(ids(&rest), expected(5..15));
    assert!(c.reconnects >= 1, "the client never reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reads_postgres_once_redis_has_trimmed() {
    // Keep nothing in Redis that PostgreSQL already holds.
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.sync.retention_messages = 0))
            .await
            .unwrap();
    let user = p.add_user("trim").await.unwrap();
    let c = p.client(0, &user).await.unwrap();
    let start = c.info.last_seq;
    drop(c);
    publish(&p, 0..40).await;
    p.await_stored_messages(40, Duration::from_secs(30))
        .await
        .unwrap();
    // Wait until the sync worker trimmed the stream below the newest entry.
    let mut r = p.redis().await.unwrap();
    let stream = format!("{}:stream", p.cfg.redis.key_prefix);
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || {
            let len: u64 = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut r)
                .await
                .unwrap();
            (len <= 1)
                .then_some(())
                .ok_or(format!("stream not trimmed (XLEN {len})"))
        },
    )
    .await;
    // Resume from the very beginning: everything comes back, from PostgreSQL.
    let mut conn = p.raw_connection(0).await.unwrap();
    raw::login_resuming(&mut conn, &user, start).await.unwrap();
    let mut got = Vec::new();
    loop {
        match conn.recv_timeout(Duration::from_secs(20)).await.unwrap() {
            ServerFrame::Broadcast(b) => got.push(b),
            ServerFrame::ResumeDone { last_seq, .. } => {
                assert_eq!(last_seq, start + 40);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids(&got), expected(0..40));
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_messages_stored_nowhere_is_refused_clearly() {
    let p = Pipeline::shared(PipelineOptions {
        sync: false,
        ..PipelineOptions::default()
    })
    .await
    .unwrap();
    let user = p.add_user("gone").await.unwrap();
    publish(&p, 0..3).await;
    // The broker confirmed them; wait until the consumer appended all three,
    // so nothing can land in the stream after the trim below.
    let mut r = p.redis().await.unwrap();
    let seq_key = format!("{}:seq", p.cfg.redis.key_prefix);
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || {
            let seq: Option<u64> = redis::cmd("GET")
                .arg(&seq_key)
                .query_async(&mut r)
                .await
                .unwrap();
            (seq == Some(3)).then_some(()).ok_or(format!(
                "the consumer never appended the messages (seq {seq:?})"
            ))
        },
    )
    .await;
    // Simulate messages lost everywhere: trim Redis with nothing in PostgreSQL.
    let _: u64 = redis::cmd("XTRIM")
        .arg(format!("{}:stream", p.cfg.redis.key_prefix))
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut r)
        .await
        .unwrap();
    let mut conn = p.raw_connection(0).await.unwrap();
    raw::login_resuming(&mut conn, &user, 0).await.unwrap();
    let (code, message) = next_error(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(
        code,
        rtmc::protocol::ErrorCode::ResumeUnavailable,
        "{message}"
    );
    assert!(message.contains("stored nowhere"), "{message}");
    // No resume_done: the client must not believe the replay was complete.
    let next = conn.recv_timeout(Duration::from_millis(500)).await;
    assert!(
        !matches!(next, Ok(ServerFrame::ResumeDone { .. })),
        "{next:?}"
    );
}
