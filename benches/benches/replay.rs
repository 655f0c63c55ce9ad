//! Resume replay (`replay::range`): what a reconnecting client waits for
//! before live traffic, on a real testkit stack. The last 100 or 1000
//! messages of a 1000-message stream are replayed, framed for the wire:
//!
//! - `redis/{100,1000}`: the stream still holds them (`XRANGE`);
//! - `postgres/{100,1000}`: the sync worker copied them into PostgreSQL and
//!   trimmed Redis (retention 0), so every one comes from a `SELECT` and is
//!   serialized again.
//!
//! Each namespace (Redis prefix, PostgreSQL database) is filled once,
//! through the consumer's append script and, for PostgreSQL, the real
//! `SyncWorker`. Throughput is in messages. Needs a Docker engine (the
//! testkit says how to get one); `cargo bench -p rtmc-benches --bench replay`.

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::ConnectionManager;
use rtmc::stream::{self, RedisKeys};
use rtmc::sync::SyncWorker;
use rtmc_benches::frames;
use rtmc_benches::stack::{append_messages, BenchStack};
use rtmc_testkit::Pipeline;

/// Messages in each stream; the replays take the newest of them.
const STORED_MESSAGES: u64 = 1_000;
const REPLAY_SIZES: [u64; 2] = [100, 1_000];
/// Above every replay size, so the limit never refuses one.
const MAX_REPLAY_MESSAGES: u64 = 10_000;

/// Where a replay reads from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Redis,
    Postgres,
}

/// A filled namespace and the connections a server node replays with.
struct Stored {
    /// Holds the namespace's database pool and configuration.
    pipeline: Pipeline,
    redis: ConnectionManager,
    keys: RedisKeys,
}

impl Stored {
    /// Fills a fresh namespace with `STORED_MESSAGES`; for `Postgres`, syncs
    /// them all and trims Redis empty.
    fn fill(stack: &BenchStack, source: Source) -> Self {
        let pipeline = stack.namespace(|cfg| cfg.sync.retention_messages = 0);
        let cfg = pipeline.cfg.clone();
        let keys = RedisKeys::new(&cfg.redis.key_prefix);
        let rt = stack.runtime();
        let mut redis = rt
            .block_on(stream::managed_connection(cfg.redis.url.expose_secret()))
            .expect("a connection to the testkit's Redis");
        let seqs = rt
            .block_on(append_messages(
                &mut redis,
                &keys,
                "bench-replay",
                STORED_MESSAGES as usize,
                frames::SMALL_BODY_BYTES,
            ))
            .expect("redis append");
        assert_eq!(seqs.last().copied(), Some(STORED_MESSAGES));
        if source == Source::Postgres {
            rt.block_on(async {
                let mut worker = SyncWorker::connect(&cfg).await.expect("sync worker");
                while worker.step(0).await.expect("sync step").cursor < STORED_MESSAGES {}
                let left = stream::first_seq(&mut redis, &keys).await.expect("xrange");
                assert_eq!(left, None, "retention 0 trims everything synced");
            });
        }
        Stored {
            pipeline,
            redis,
            keys,
        }
    }

    /// Replays the newest `n` messages; panics unless exactly those came back.
    async fn replay_newest(&mut self, n: u64) {
        let after = STORED_MESSAGES - n;
        let replayed = rtmc::replay::range(
            &mut self.redis,
            &self.pipeline.pg,
            &self.keys,
            after,
            STORED_MESSAGES,
            MAX_REPLAY_MESSAGES,
        )
        .await
        .expect("replay");
        assert_eq!(replayed.len() as u64, n);
    }
}

fn replay(c: &mut Criterion, stack: &BenchStack) {
    let rt = stack.runtime();
    let mut g = c.benchmark_group("replay");
    g.sample_size(20);
    for (name, source) in [("redis", Source::Redis), ("postgres", Source::Postgres)] {
        // Filled on the first selected bench of this source.
        let mut stored: Option<Stored> = None;
        for n in REPLAY_SIZES {
            g.throughput(Throughput::Elements(n));
            g.bench_function(BenchmarkId::new(name, n), |b| {
                let s = stored.get_or_insert_with(|| Stored::fill(stack, source));
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            s.replay_newest(n).await;
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

fn main() {
    // Declared first, dropped last: the containers go when the benches are done.
    let stack = BenchStack::default();
    let mut c = Criterion::default().configure_from_args();
    replay(&mut c, &stack);
    c.final_summary();
}
