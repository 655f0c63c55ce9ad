//! Redis → PostgreSQL sync: K published messages become exactly K rows in
//! sequence order, also when PostgreSQL is stopped and restarted mid-way.

use std::time::{Duration, Instant};

use rtmc_testkit::{Pipeline, PipelineOptions, Services};

use crate::support::init_logs;

/// Waits until PostgreSQL holds `k` rows; returns them (seq, message_id).
pub async fn await_rows(p: &Pipeline, k: usize, limit: Duration) -> Vec<(i64, String)> {
    let started = Instant::now();
    loop {
        let rows: Result<Vec<(i64, String)>, _> =
            sqlx::query_as("SELECT seq, message_id FROM messages ORDER BY seq")
                .fetch_all(&p.pg)
                .await;
        if let Ok(rows) = rows {
            if rows.len() >= k {
                return rows;
            }
        }
        assert!(
            started.elapsed() < limit,
            "PostgreSQL did not reach {k} rows within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_exactly(rows: &[(i64, String)], ids: &[String]) {
    assert_eq!(rows.len(), ids.len(), "row count");
    for (i, (seq, id)) in rows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "sequence gap at row {i}");
        assert_eq!(id, &ids[i], "row {i} holds the wrong message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_messages_become_k_rows_in_order() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| c.sync.batch_max = 7))
        .await
        .unwrap();
    let user = p.add_users("sy", 1).await.unwrap().remove(0);
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
    let rows = await_rows(&p, ids.len(), Duration::from_secs(30)).await;
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
    init_logs();
    let services = Services::start().await.unwrap();
    let p = Pipeline::start(
        &services,
        PipelineOptions::default().configure(|c| c.sync.batch_max = 10),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = format!("pg-{i}");
        assert_eq!(
            p.post_message("svc", "before outage", Some(&id))
                .await
                .unwrap()
                .0,
            202
        );
        ids.push(id);
    }
    await_rows(&p, 30, Duration::from_secs(30)).await;
    services.postgres().stop().await.unwrap();
    for i in 30..80 {
        let id = format!("pg-{i}");
        assert_eq!(
            p.post_message("svc", "during outage", Some(&id))
                .await
                .unwrap()
                .0,
            202
        );
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    services.postgres().start().await.unwrap();
    for i in 80..100 {
        let id = format!("pg-{i}");
        assert_eq!(
            p.post_message("svc", "after outage", Some(&id))
                .await
                .unwrap()
                .0,
            202
        );
        ids.push(id);
    }
    let rows = await_rows(&p, 100, Duration::from_secs(60)).await;
    assert_exactly(&rows, &ids);
    p.shutdown().await;
}
