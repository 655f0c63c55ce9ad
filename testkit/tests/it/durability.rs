//! Durability across a Redis restart. The guarantee: Redis runs with AOF and
//! `appendfsync always`, and the consumer acks RabbitMQ only after the append
//! script returned — i.e. after the entry, its sequence number and its dedupe
//! key are fsynced. So no acknowledged message is lost, whether Redis stops
//! gracefully or is SIGKILLed: what was not yet appended is still unacked in
//! RabbitMQ and is redelivered (and deduplicated) when Redis is back.

use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions, Services};

use crate::support::{assert_gap_free, collect, init_logs};
use crate::sync::await_rows;

const BEFORE: usize = 40;
const DURING: usize = 40;
const AFTER: usize = 20;

async fn redis_restart_loses_nothing(sigkill: bool) {
    init_logs();
    let services = Services::start().await.unwrap();
    let p = Pipeline::start(&services, PipelineOptions::default())
        .await
        .unwrap();
    let user = p.add_users("dur", 1).await.unwrap().remove(0);
    let mut reader = p.client(0, &user).await.unwrap();
    let start = reader.info.last_seq;
    let mut ids = Vec::new();
    let mut post = |i: usize| {
        let id = format!("dur-{i}");
        ids.push(id.clone());
        id
    };
    let mut acked = Vec::new();
    for i in 0..BEFORE {
        let id = post(i);
        assert_eq!(
            p.post_message("svc", "before", Some(&id)).await.unwrap().0,
            202
        );
        acked.push(id);
    }
    if sigkill {
        services.redis().kill().await.unwrap();
    } else {
        services.redis().stop().await.unwrap();
    }
    // The gateway keeps accepting (RabbitMQ holds the messages) while Redis is down.
    for i in BEFORE..BEFORE + DURING {
        let id = post(i);
        assert_eq!(
            p.post_message("svc", "during", Some(&id)).await.unwrap().0,
            202
        );
        acked.push(id);
    }
    services.redis().start().await.unwrap();
    for i in BEFORE + DURING..BEFORE + DURING + AFTER {
        let id = post(i);
        assert_eq!(
            p.post_message("svc", "after", Some(&id)).await.unwrap().0,
            202
        );
        acked.push(id);
    }
    let total = acked.len();
    // The connected client receives every acknowledged message, in order, once.
    let got = collect(&mut reader, total, Duration::from_secs(60)).await;
    assert_eq!(got.len(), total, "received {} of {total}", got.len());
    let order = assert_gap_free(&got, start + 1);
    let received: Vec<String> = order.into_values().collect();
    assert_eq!(received, acked);
    // And PostgreSQL holds each exactly once.
    let rows = await_rows(&p, total, Duration::from_secs(60)).await;
    assert_eq!(rows.len(), total);
    let stored: Vec<String> = rows.into_iter().map(|(_, id)| id).collect();
    assert_eq!(stored, acked);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_redis_restart_loses_no_acknowledged_message() {
    redis_restart_loses_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_redis_loses_no_acknowledged_message() {
    redis_restart_loses_nothing(true).await;
}
