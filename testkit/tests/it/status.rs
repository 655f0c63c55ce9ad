//! Presence cache-aside: `get_status` reads Redis, falls back to PostgreSQL
//! on a miss and refills Redis with a TTL; entries expire.

use std::time::Duration;

use redis::AsyncCommands;
use rtmc::protocol::{ClientCommand, ServerFrame, UserStatus};
use rtmc_testkit::{Pipeline, PipelineOptions};

use crate::support::{assert_refused, metric};

/// Status cache lookups with `result` ("hit" or "miss") in Prometheus text `metrics`.
fn counter(metrics: &str, result: &str) -> f64 {
    metric(
        metrics,
        "rtmc_status_cache_total",
        &format!("result=\"{result}\""),
    )
}

async fn get(c: &mut rtmc::client::ChatClient, user: &str) -> UserStatus {
    match c
        .request_status(ClientCommand::GetStatus {
            user_id: user.into(),
        })
        .await
        .unwrap()
    {
        ServerFrame::Status { status, .. } => status,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_hit_miss_fallback_refill_and_expiry() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| c.redis.status_ttl_secs = 2))
        .await
        .unwrap();
    let users = p.add_users("st", 2).await.unwrap();
    let (me, other) = (&users[0], &users[1]);
    let mut c = p.client(0, me).await.unwrap();
    let key = format!("{}:status:{other}", p.cfg.redis.key_prefix);
    let mut r = p.redis().await.unwrap();

    // Miss: `other` never logged in, so nothing is cached; PostgreSQL answers, Redis is refilled.
    let m0 = rtmc::telemetry::metrics().render();
    assert!(!r.exists::<_, bool>(&key).await.unwrap());
    assert_eq!(get(&mut c, other).await, UserStatus::Offline);
    let ttl: i64 = r.ttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 2, "refilled with TTL {ttl}");
    let m1 = rtmc::telemetry::metrics().render();
    assert!(counter(&m1, "miss") >= counter(&m0, "miss") + 1.0);

    // Hit: served from Redis. Prove it by making PostgreSQL disagree.
    sqlx::query("UPDATE users SET status = 'away' WHERE user_id = $1")
        .bind(other)
        .execute(&p.pg)
        .await
        .unwrap();
    assert_eq!(
        get(&mut c, other).await,
        UserStatus::Offline,
        "a cached value must be served"
    );
    let m2 = rtmc::telemetry::metrics().render();
    assert!(counter(&m2, "hit") >= counter(&m1, "hit") + 1.0);

    // Expiry: after the TTL the entry is gone and the next read falls back and refills.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(
        !r.exists::<_, bool>(&key).await.unwrap(),
        "cache entry did not expire"
    );
    assert_eq!(get(&mut c, other).await, UserStatus::Away);
    assert_eq!(r.get::<_, String>(&key).await.unwrap(), "away");

    // Setting one's own status writes PostgreSQL and the cache.
    match c
        .request_status(ClientCommand::Status {
            status: UserStatus::Away,
        })
        .await
        .unwrap()
    {
        ServerFrame::Status { status, user_id } => {
            assert_eq!((status, user_id.as_str()), (UserStatus::Away, me.as_str()))
        }
        other => panic!("{other:?}"),
    }
    let stored: (String,) = sqlx::query_as("SELECT status FROM users WHERE user_id = $1")
        .bind(me)
        .fetch_one(&p.pg)
        .await
        .unwrap();
    assert_eq!(stored.0, "away");
    assert_eq!(get(&mut c, me).await, UserStatus::Away);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_unknown_user_is_an_error() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let me = p.add_user("su").await.unwrap();
    let mut c = p.client(0, &me).await.unwrap();
    let ghost = c
        .request_status(ClientCommand::GetStatus {
            user_id: "ghost".into(),
        })
        .await;
    assert_refused(ghost, rtmc::protocol::ErrorCode::InvalidField);
}
