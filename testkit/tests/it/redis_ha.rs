//! The Redis group (primary, two replicas, three Sentinels): writes that a
//! replica acknowledged (`WAIT 1`) survive a SIGKILL of the primary, the
//! Sentinels promote a replica within the kit's bound, and the new primary
//! takes writes.

use rtmc_testkit::redis_ha::{REDIS_NODES, SENTINELS};
use rtmc_testkit::RedisHa;

const KEYS: usize = 100;

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a running node accepts connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_acknowledged_writes_survive_killing_the_primary() {
    rtmc_testkit::init_test_logs();
    let ha = RedisHa::start().await.unwrap();
    assert_eq!(
        (ha.nodes().len(), ha.sentinel_addresses().len()),
        (REDIS_NODES, SENTINELS)
    );
    let old = ha.primary().await.unwrap();
    assert_eq!(old, 0, "node 0 starts as the primary");
    let mut primary = connection(&ha.node(old).url()).await;
    for i in 0..KEYS {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut primary)
            .await
            .unwrap();
    }
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(&mut primary)
        .await
        .unwrap();
    assert!(acked >= 1, "a replica acknowledged the writes: {acked}");

    ha.node(old).kill().await.unwrap();
    let promoted = ha.wait_failover(old).await.unwrap();
    assert_ne!(promoted, old);
    let mut new_primary = connection(&ha.node(promoted).url()).await;
    for i in 0..KEYS {
        let value: Option<usize> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut new_primary)
            .await
            .unwrap();
        assert_eq!(value, Some(i), "k{i} on the promoted replica");
    }
    let () = redis::cmd("SET")
        .arg("after-failover")
        .arg(1)
        .query_async(&mut new_primary)
        .await
        .expect("the promoted replica takes writes");
    let other = ha.replica(0).await.unwrap();
    assert_ne!(
        other.port,
        ha.node(promoted).port,
        "a replica is not the primary"
    );
}
