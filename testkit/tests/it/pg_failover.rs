//! rtmc on PostgreSQL primary + standby under pg_auto_failover
//! (`postgres.urls`): clients publish over TCP while the primary is
//! SIGKILLed during sync. The standby is promoted, the server, gateway and
//! sync follow it through their relay, a user logs in after the failover,
//! and every acknowledged message ends up in the new primary once, in seq
//! order. The time until the new primary took writes is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rtmc_testkit::{PgHa, Pipeline, PipelineOptions};
use sqlx::Connection;
use tokio::time::Instant;

use crate::support::{acked_ids, spawn_publishers};

/// TCP clients publishing at once.
const PUBLISHERS: usize = 3;
/// Pause between one client's sends.
const SEND_INTERVAL: Duration = Duration::from_millis(100);
/// Publishing before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_secs(2);
const AFTER_KILL: Duration = Duration::from_secs(12);

/// What the pipeline's Redis stream holds at each of `seqs`: the message id,
/// or nothing (for a failure message).
async fn redis_at(p: &Pipeline, seqs: &[i64]) -> Vec<(i64, Option<String>)> {
    let keys = rtmc::stream::RedisKeys::new(&p.cfg.redis.key_prefix);
    let mut conn = redis::Client::open(p.services().redis().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let entries = rtmc::stream::range_after(&mut conn, &keys, 0, u64::MAX, 1_000_000)
        .await
        .expect("XRANGE");
    seqs.iter()
        .map(|s| {
            let id = entries.iter().find(|e| e.seq as i64 == *s).map(|e| {
                match rtmc::protocol::ServerFrame::parse(&e.payload) {
                    Ok(rtmc::protocol::ServerFrame::Broadcast(b)) => b.message_id,
                    _ => "(not a broadcast)".to_owned(),
                }
            });
            (*s, id)
        })
        .collect()
}

/// The messages table of the node at `url`: message id → seq.
async fn stored(url: &str) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, message_id FROM messages ORDER BY seq")
            .fetch_all(&mut c)
            .await?;
    Ok(rows.into_iter().map(|(seq, id)| (id, seq)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_postgres_primary_during_sync_loses_nothing() {
    rtmc_testkit::init_test_logs();
    let pg = PgHa::start().await.unwrap();
    let urls = pg.urls("postgres");
    let opts = PipelineOptions::default().configure(move |cfg| {
        cfg.postgres.url = urls[0].clone().into();
        cfg.postgres.urls = urls.into_iter().map(Into::into).collect();
    });
    let p = Arc::new(Pipeline::shared(opts).await.unwrap());
    let users = p.add_users("pgha", PUBLISHERS + 1).await.unwrap();

    let kill_at = Instant::now() + BEFORE_KILL;
    let stop_at = kill_at + AFTER_KILL;
    let publishers = spawn_publishers(&p, &users[..PUBLISHERS], SEND_INTERVAL, stop_at);
    tokio::time::sleep_until(kill_at).await;
    let old = pg.primary().await.unwrap();
    let killed_at = Instant::now();
    pg.node(old).kill().await.unwrap();
    let new = pg.wait_failover(old).await.unwrap();
    let promoted_after = killed_at.elapsed();

    // Until the relays have moved to the new primary a login is refused
    // (`internal`, login unavailable), as while any database is down; a
    // user tries again.
    let login = Instant::now();
    let mut late = loop {
        match p.client(0, &users[PUBLISHERS]).await {
            Ok(c) => break c,
            Err(e) if login.elapsed() < Duration::from_secs(30) => {
                tracing::info!(error = %e, "login refused during the failover; again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("no login within 30 s of the failover: {e}"),
        }
    };
    let login_took = login.elapsed();
    late.send("after failover", Some("late-1")).await.unwrap();

    let mut acked = acked_ids(publishers).await;
    acked.insert("late-1".to_owned());
    println!(
        "postgres primary (node {old}) killed: node {new} takes writes after {promoted_after:?}; \
         the first login after it succeeded {login_took:?} later; {} acknowledged",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "publishing went on: {} acknowledged",
        acked.len()
    );

    let new_url = &pg.urls("postgres")[new];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = BTreeMap::new();
    while Instant::now() < deadline {
        rows = stored(new_url).await.unwrap_or_default();
        if acked.iter().all(|id| rows.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !rows.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the new primary: {missing:?}"
    );
    let mut seqs: Vec<i64> = rows.values().copied().collect();
    seqs.sort_unstable();
    let first = seqs[0];
    let holes: Vec<i64> = (first..=*seqs.last().unwrap_or(&first))
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        holes.is_empty(),
        "the stored seqs are gap-free: {} rows from {first}, missing seqs {holes:?}; \
         Redis holds at those seqs: {:?}",
        seqs.len(),
        redis_at(&p, &holes).await
    );
}
