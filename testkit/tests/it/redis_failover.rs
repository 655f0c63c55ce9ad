//! rtmc on Redis behind Sentinel (`redis.sentinels`, and the consumer's
//! `WAIT` for one replica, `redis.min_replicas_acked = 1`): clients publish
//! over TCP while the Redis primary is SIGKILLed. The Sentinels promote a
//! replica, every rtmc connection follows it through the relay, and every
//! acknowledged message is in the new primary's stream exactly once, and
//! reached the reading client in one gap-free sequence. The time without
//! deliveries after the kill is printed (a figure only when run alone).
//! And on a Redis without replicas, an append that no replica acknowledged
//! is never acked to RabbitMQ, and its redelivery is deduplicated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtmc::protocol::{BroadcastFrame, ServerFrame};
use rtmc::stream::RedisKeys;
use rtmc_testkit::{Pipeline, PipelineOptions, RedisHa};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{acked_ids, assert_gap_free, longest_silence, spawn_publishers};

/// TCP clients publishing at once.
const PUBLISHERS: usize = 3;
/// Pause between one client's sends: about 300 messages in all.
const SEND_INTERVAL: Duration = Duration::from_millis(100);
/// Publishing before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_secs(2);
const AFTER_KILL: Duration = Duration::from_secs(8);

/// Every broadcast the reader received, with when it arrived.
type Received = Arc<Mutex<Vec<(BroadcastFrame, Instant)>>>;

/// Reads broadcasts into `received` until `stop`.
fn spawn_reader(mut reader: rtmc::client::ChatClient, stop: CancellationToken) -> Received {
    let received: Received = Arc::default();
    let out = received.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            if let Ok(b) = reader.next_broadcast(Duration::from_millis(500)).await {
                out.lock().expect("reader lock").push((b, Instant::now()));
            }
        }
    });
    received
}

/// Waits up to 60 s until the reader has every id of `acked`.
async fn await_delivered(received: &Received, acked: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let have: BTreeSet<String> = received
            .lock()
            .expect("reader lock")
            .iter()
            .map(|(b, _)| b.message_id.clone())
            .collect();
        if acked.is_subset(&have) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many times each message id is in the stream on the node at `url`.
async fn stream_ids(url: &str, keys: &RedisKeys) -> BTreeMap<String, usize> {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the node answers");
    let entries = rtmc::stream::range_after(&mut conn, keys, 0, u64::MAX, 1_000_000)
        .await
        .expect("XRANGE on the node");
    let mut ids = BTreeMap::new();
    for e in entries {
        let Ok(ServerFrame::Broadcast(b)) = ServerFrame::parse(&e.payload) else {
            panic!("stream entry {} is not a broadcast", e.seq);
        };
        *ids.entry(b.message_id).or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_redis_primary_loses_no_acknowledged_message() {
    rtmc_testkit::init_test_logs();
    let ha = RedisHa::start().await.unwrap();
    let (sentinels, master) = (ha.sentinel_addresses(), ha.master_name().to_owned());
    let opts = PipelineOptions::default().configure(move |cfg| {
        cfg.redis.sentinels = sentinels;
        cfg.redis.master_name = master;
        cfg.redis.min_replicas_acked = 1;
        cfg.redis.replica_ack_timeout_ms = 500;
    });
    let p = Arc::new(Pipeline::shared(opts).await.unwrap());
    let users = p.add_users("rha", PUBLISHERS + 1).await.unwrap();
    let reader = p.client(0, &users[PUBLISHERS]).await.unwrap();
    let first_seq = reader.info.last_seq + 1;
    let stop_reading = CancellationToken::new();
    let received = spawn_reader(reader, stop_reading.clone());

    let kill_at = Instant::now() + BEFORE_KILL;
    let stop_at = kill_at + AFTER_KILL;
    let publishers = spawn_publishers(&p, &users[..PUBLISHERS], SEND_INTERVAL, stop_at);
    tokio::time::sleep_until(kill_at).await;
    let old = ha.primary().await.unwrap();
    let killed_at = Instant::now();
    ha.node(old).kill().await.unwrap();
    let new = ha.wait_failover(old).await.unwrap();
    let promoted_after = killed_at.elapsed();

    let acked = acked_ids(publishers).await;
    await_delivered(&received, &acked).await;
    stop_reading.cancel();
    let got: Vec<(BroadcastFrame, Instant)> = received.lock().unwrap().drain(..).collect();
    let silence = longest_silence(got.iter().map(|(_, t)| *t), killed_at);
    println!(
        "redis primary (node {old}) killed: node {new} promoted after {promoted_after:?}; \
         {} acknowledged; longest time without a delivery after the kill: {silence:?}",
        acked.len()
    );
    let frames: Vec<BroadcastFrame> = got.into_iter().map(|(b, _)| b).collect();
    let delivered: BTreeSet<String> = assert_gap_free(&frames, first_seq).into_values().collect();
    let lost: Vec<&String> = acked.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    assert!(
        frames.iter().any(|b| b.seq > first_seq) && acked.len() > 100,
        "publishing went on through the failover: {} acknowledged",
        acked.len()
    );

    let keys = RedisKeys::new(&p.cfg.redis.key_prefix);
    let stored = stream_ids(&ha.node(new).url(), &keys).await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the new primary's stream: {missing:?}"
    );
    let twice: Vec<(&String, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in the stream more than once: {twice:?}");
}

/// The replicas the consumer requires (`redis.min_replicas_acked`) when it
/// starts, for the shortfall test: 1 on a Redis without replicas, then 0.
static REPLICAS_REQUIRED: AtomicU32 = AtomicU32::new(1);

/// How many times `id` is in the pipeline's stream.
async fn times_stored(p: &Pipeline, id: &str) -> usize {
    let keys = RedisKeys::new(&p.cfg.redis.key_prefix);
    let stored = stream_ids(&p.services().redis().url(), &keys).await;
    stored.get(id).copied().unwrap_or(0)
}

/// The pipeline's ready messages once they settle on `want`, or the last
/// count seen within `limit` (a stopped consumer's unacked delivery goes
/// back to the queue as its channel closes).
async fn ready_settling_on(p: &Pipeline, want: u32, limit: Duration) -> u32 {
    let deadline = Instant::now() + limit;
    loop {
        let ready = p.queue_ready().await.expect("a passive declare");
        if ready == want || Instant::now() >= deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Everything this test asserts is of its own pipeline (its queue, its
// stream): the process's metrics are shared with every test running beside
// it in the same binary, so a count of acks there says nothing of this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_no_replica_acknowledged_is_not_acked_and_is_deduplicated_when_redelivered() {
    let opts = PipelineOptions::default().per_component(|_, cfg| {
        cfg.redis.min_replicas_acked = REPLICAS_REQUIRED.load(Ordering::SeqCst);
        cfg.redis.replica_ack_timeout_ms = 100;
    });
    let mut p = Pipeline::shared(opts).await.unwrap();
    let users = p.add_users("short", 2).await.unwrap();
    let mut publisher = p.client(0, &users[0]).await.unwrap();
    publisher
        .send("unreplicated", Some("short-1"))
        .await
        .unwrap();

    // The consumer appended it (so it took the delivery) ...
    let deadline = Instant::now() + Duration::from_secs(20);
    while times_stored(&p, "short-1").await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        times_stored(&p, "short-1").await,
        1,
        "the consumer appended the message"
    );
    // ... and, no replica acknowledging it, retries it and never acks it:
    // stopped, its delivery goes back to the queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.consumer.take().expect("a consumer").stop().await;
    assert_eq!(
        ready_settling_on(&p, 1, Duration::from_secs(10)).await,
        1,
        "nothing acked to RabbitMQ without a replica: the message is back in the queue"
    );

    // A consumer that requires no replica takes the redelivered message,
    // finds it appended already, and acks it: stopped, it leaves nothing.
    REPLICAS_REQUIRED.store(0, Ordering::SeqCst);
    p.restart_consumer();
    let taken = ready_settling_on(&p, 0, Duration::from_secs(10)).await;
    assert_eq!(taken, 0, "redelivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.consumer.take().expect("a consumer").stop().await;
    // Given as long as an unacked delivery took to come back above, it
    // must not come back.
    assert_eq!(
        ready_settling_on(&p, 1, Duration::from_secs(3)).await,
        0,
        "acked once redelivered: nothing went back to the queue"
    );
    assert_eq!(
        times_stored(&p, "short-1").await,
        1,
        "the redelivery was deduplicated: in the stream once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_connection_re_made_after_the_append_does_not_count() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let url = p.services().redis().url();
    let mut conn = rtmc::stream::managed_connection(&url).await.unwrap();
    let cfg = rtmc::config::RedisConfig {
        min_replicas_acked: 1,
        replica_ack_timeout_ms: 50,
        ..Default::default()
    };
    let mark = rtmc::redis_ha::mark_connection(&mut conn, &cfg)
        .await
        .unwrap();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut other = p.redis().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut other)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the marked connection was killed");
    // The first command after the kill may fail on the dead connection;
    // the manager then reconnects, and the WAIT runs on a new connection.
    let mut outcome = rtmc::redis_ha::replicas_acked(&mut conn, &cfg, &mark).await;
    if outcome
        .as_ref()
        .is_err_and(|e| !e.to_string().contains("re-made"))
    {
        outcome = rtmc::redis_ha::replicas_acked(&mut conn, &cfg, &mark).await;
    }
    let e = outcome.expect_err("a WAIT on another connection does not count");
    assert!(e.to_string().contains("re-made"), "{e}");
}
