//! Who owns the database schema: an rtmc build accepts a database that a
//! newer build migrated (a rolling upgrade; the latency gate running an
//! older baseline on a stack its newer harness prepared), and a pipeline can
//! let the binary under test create the schema instead of the kit.

use std::path::PathBuf;

use rtmc_testkit::{Pipeline, PipelineOptions};

fn no_components() -> PipelineOptions {
    PipelineOptions {
        servers: 0,
        gateway: false,
        consumer: false,
        sync: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_accepts_a_database_a_newer_build_migrated() {
    let p = Pipeline::shared(no_components()).await.unwrap();
    // A migration this build does not know, recorded as applied by a newer one.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000001, 'from a newer build', true, '\\x00'::bytea, 0)",
    )
    .execute(&p.pg)
    .await
    .unwrap();
    rtmc::db::migrate(&p.pg)
        .await
        .expect("a newer build's migration must not stop this build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_comes_from_the_binary_under_test_when_asked() {
    let bin = rtmc_testkit::process::rtmc_binary().unwrap();
    let p = Pipeline::shared(no_components().schema_from(bin))
        .await
        .unwrap();
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&p.pg)
        .await
        .unwrap();
    assert!(applied >= 1, "the binary's `rtmc migrate` made the schema");
    // A binary that cannot run makes the start fail: the kit did not
    // quietly migrate with its own code instead.
    let missing = PathBuf::from("/nonexistent/rtmc");
    let err = match Pipeline::shared(no_components().schema_from(missing)).await {
        Ok(_) => panic!("a pipeline whose schema binary is missing must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("migrate"), "{err}");
}
