//! Redis → PostgreSQL sync: K published messages become exactly K rows in
//! sequence order, also when PostgreSQL is stopped and restarted mid-way.

use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions};

use crate::support::post_numbered;

fn assert_exactly(rows: &[(i64, String)], ids: &[String]) {
    assert_eq!(rows.len(), ids.len(), "row count");
    for (i, (seq, id)) in rows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "sequence gap at row {i}");
        assert_eq!(id, &ids[i], "row {i} holds the wrong message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_messages_become_k_rows_in_order() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| c.sync.batch_max = 7))
        .await
        .unwrap();
    let user = p.add_user("sy").await.unwrap();
    let mut c = p.client(0, &user).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            c.send(&format!("m{i}"), Some(&format!("sync-{i}")))
                .await
                .unwrap(),
        );
    }
    // A repeated id adds no row.
    c.send("again", Some("sync-0")).await.unwrap();
    let rows = p
        .await_stored_messages(ids.len(), Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows_after: (i64,) = sqlx::query_as("SELECT count(*) FROM messages")
        .fetch_one(&p.pg)
        .await
        .unwrap();
    assert_eq!(rows_after.0 as usize, ids.len());
    assert_exactly(&rows, &ids);
    let cursor: (i64,) = sqlx::query_as("SELECT last_seq FROM sync_cursor")
        .fetch_one(&p.pg)
        .await
        .unwrap();
    assert_eq!(cursor.0, 50);
}

/// Own services: this test stops PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_delays_sync_and_loses_nothing() {
    let p = Pipeline::private(PipelineOptions::default().configure(|c| c.sync.batch_max = 10))
        .await
        .unwrap();
    let mut ids = post_numbered(&p, "pg", 0..30, "before outage").await;
    p.await_stored_messages(30, Duration::from_secs(30))
        .await
        .unwrap();
    p.services().postgres().stop().await.unwrap();
    ids.extend(post_numbered(&p, "pg", 30..80, "during outage").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.services().postgres().start().await.unwrap();
    ids.extend(post_numbered(&p, "pg", 80..100, "after outage").await);
    let rows = p
        .await_stored_messages(100, Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly(&rows, &ids);
}
