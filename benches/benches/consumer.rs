//! The consumer's step between RabbitMQ and the Redis stream, against a
//! real Redis (the testkit's container: AOF with `appendfsync always`, as in
//! production): validate each message of a batch (`consumer::validate`),
//! build its broadcast tail, and append the batch with `stream::append_batch`
//! (the Lua script that dedupes, assigns sequence numbers and `XADD`s).
//! This is what bounds ingest (design §7: ≥ 20,000 msg/s); RabbitMQ's own
//! cost is loadgen's to measure.
//!
//! - `append/new/{1,64,256}`: batches of fresh message ids, the common path.
//! - `append/duplicate/{1,64,256}`: batches the stream already holds
//!   (redeliveries), which the script answers from the dedupe keys.
//!
//! Throughput is in messages. Needs a Docker engine (the testkit says how to
//! get one); `cargo bench -p rtmc-benches --bench consumer`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::ConnectionManager;
use rtmc::config::ServerConfig;
use rtmc::stream::{self, Appended, RedisKeys};
use rtmc_benches::frames;
use rtmc_benches::stack::BenchStack;

const BATCH_SIZES: [usize; 3] = [1, 64, 256];
/// Dedupe window of the bench's messages: long enough for a run, short
/// enough that their keys do not pile up in the container.
const DEDUPE_TTL_SECS: u64 = 120;
/// The stream is emptied (outside the timing) after this many messages, so
/// a long run does not grow Redis without bound.
const TRIM_EVERY_MESSAGES: u64 = 100_000;

/// A connection to the stack's Redis and this bench's keys.
struct Target {
    redis: ConnectionManager,
    keys: RedisKeys,
    limits: ServerConfig,
    /// Messages appended since the stream was last emptied.
    appended_since_trim: u64,
}

impl Target {
    fn connect(stack: &BenchStack) -> Self {
        let redis_url = stack.services().redis.url();
        let redis = stack
            .runtime()
            .block_on(stream::managed_connection(&redis_url))
            .expect("a connection to the testkit's Redis");
        Target {
            redis,
            keys: RedisKeys::new("bench-consumer"),
            limits: ServerConfig::default(),
            appended_since_trim: 0,
        }
    }

    /// The consumer's step for one batch of raw deliveries: validate, build
    /// the broadcast tails, append. Returns the outcomes.
    async fn validate_and_append(&mut self, raw: &[Vec<u8>]) -> Vec<Appended> {
        let (max_body, max_frame) = (self.limits.max_body_bytes, self.limits.max_frame_bytes);
        let items: Vec<(String, Vec<u8>)> = raw
            .iter()
            .map(|r| {
                let msg = rtmc::consumer::validate(r, max_body, max_frame)
                    .expect("the fixture is a valid message");
                let tail = rtmc::consumer::broadcast_tail(&msg);
                (msg.message_id, tail)
            })
            .collect();
        stream::append_batch(&mut self.redis, &self.keys, DEDUPE_TTL_SECS, &items)
            .await
            .expect("redis append")
    }

    /// Counts `appended` messages; empties the stream once another
    /// `TRIM_EVERY_MESSAGES` were appended (the sequence counter and the
    /// dedupe keys stay).
    async fn trim_now_and_then(&mut self, appended: usize) {
        self.appended_since_trim += appended as u64;
        if self.appended_since_trim >= TRIM_EVERY_MESSAGES {
            let _: () = redis::cmd("DEL")
                .arg(self.keys.stream())
                .query_async(&mut self.redis)
                .await
                .expect("redis DEL");
            self.appended_since_trim = 0;
        }
    }
}

/// `batch` raw messages with fresh ids.
fn fresh_batch(next_id: &AtomicU64, batch: usize) -> Vec<Vec<u8>> {
    (0..batch)
        .map(|_| {
            let id = frames::loadgen_message_id(next_id.fetch_add(1, Ordering::Relaxed));
            frames::published_message(&id, frames::SMALL_BODY_BYTES)
        })
        .collect()
}

fn append(c: &mut Criterion, stack: &BenchStack) {
    let rt = stack.runtime();
    // Connected on the first selected bench, so a filtered-out run starts
    // no containers.
    let mut target: Option<Target> = None;
    let next_id = AtomicU64::new(0);
    let mut g = c.benchmark_group("append");
    g.sample_size(20);
    for batch in BATCH_SIZES {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("new", batch), |b| {
            let t = target.get_or_insert_with(|| Target::connect(stack));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let raw = fresh_batch(&next_id, batch);
                        let start = Instant::now();
                        let outcomes = t.validate_and_append(&raw).await;
                        timed += start.elapsed();
                        assert!(outcomes.iter().all(|o| matches!(o, Appended::New(_))));
                        t.trim_now_and_then(batch).await;
                    }
                    timed
                })
            });
        });
        g.bench_function(BenchmarkId::new("duplicate", batch), |b| {
            let t = target.get_or_insert_with(|| Target::connect(stack));
            let raw = fresh_batch(&next_id, batch);
            rt.block_on(t.validate_and_append(&raw));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let outcomes = t.validate_and_append(&raw).await;
                        assert!(outcomes.iter().all(|o| matches!(o, Appended::Duplicate(_))));
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

fn main() {
    // Declared first, dropped last: the containers go when the benches are done.
    let stack = BenchStack::default();
    let mut c = Criterion::default().configure_from_args();
    append(&mut c, &stack);
    c.final_summary();
}
