//! Durability across a Redis restart. The guarantee: Redis runs with AOF and
//! `appendfsync always`, and the consumer acks RabbitMQ only after the append
//! script returned — i.e. after the entry, its sequence number and its dedupe
//! key are fsynced. So no acknowledged message is lost, whether Redis stops
//! gracefully or is SIGKILLed: what was not yet appended is still unacked in
//! RabbitMQ and is redelivered (and deduplicated) when Redis is back.

use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions};

use crate::support::{assert_gap_free, collect, post_numbered};

const BEFORE: usize = 40;
const DURING: usize = 40;
const AFTER: usize = 20;

async fn redis_restart_loses_nothing(sigkill: bool) {
    let p = Pipeline::private(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("dur").await.unwrap();
    let mut reader = p.client(0, &user).await.unwrap();
    let start = reader.info.last_seq;
    let mut acked = post_numbered(&p, "dur", 0..BEFORE, "before").await;
    if sigkill {
        p.services().redis().kill().await.unwrap();
    } else {
        p.services().redis().stop().await.unwrap();
    }
    // The gateway keeps accepting (RabbitMQ holds the messages) while Redis is down.
    acked.extend(post_numbered(&p, "dur", BEFORE..BEFORE + DURING, "during").await);
    p.services().redis().start().await.unwrap();
    let after = BEFORE + DURING..BEFORE + DURING + AFTER;
    acked.extend(post_numbered(&p, "dur", after, "after").await);
    let total = acked.len();
    // The connected client receives every acknowledged message, in order, once.
    let got = collect(&mut reader, total, Duration::from_secs(60)).await;
    assert_eq!(got.len(), total, "received {} of {total}", got.len());
    let order = assert_gap_free(&got, start + 1);
    let received: Vec<String> = order.into_values().collect();
    assert_eq!(received, acked);
    // And PostgreSQL holds each exactly once.
    let rows = p
        .await_stored_messages(total, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rows.len(), total);
    let stored: Vec<String> = rows.into_iter().map(|(_, id)| id).collect();
    assert_eq!(stored, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_redis_restart_loses_no_acknowledged_message() {
    redis_restart_loses_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_redis_loses_no_acknowledged_message() {
    redis_restart_loses_nothing(true).await;
}
