//! Broadcast fan-out on one server node: one message handed to every
//! session through the real `Fanout` ring and each session's real writer
//! (`outbound::run`), measured from `publish` until the last session has
//! its copy. Throughput is in deliveries (sessions per message), the unit
//! of the design's ≥ 1,000,000 deliveries/s target (design §7).
//!
//! - `in_process/{1000,10000}`: writers into counting sinks, so the cost is
//!   the ring, the task wake-ups and the coalescing copy, without the
//!   kernel. Its ceiling bounds what any socket can give.
//! - `loopback_tcp/1000`: writers into real TCP connections on 127.0.0.1,
//!   the client ends drained by reader tasks in the same runtime: one write
//!   syscall per session per message, ~7 µs each here (design §7), and the
//!   readers' syscalls share the same two cores. Sessions are fewer because
//!   each costs two file descriptors.
//!
//! Each runs on both delivery paths (`woken`: every writer task woken per
//! message; `direct`: the ring's pump writes parked sessions, the server's
//! default for plain TCP).
//!
//! One message is in flight at a time, so this is fan-out latency as much
//! as throughput; loadgen measures sustained rates with many in flight.
//! `cargo bench -p rtmc-benches --bench fanout`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtmc::protocol::encode_frame;
use rtmc_benches::frames;
use rtmc_benches::sessions::{FanoutSessions, Path};
use rtmc_benches::stack::runtime;
use tokio::runtime::Runtime;

/// Times `iters` messages fanned out to every session.
fn deliver(rt: &Runtime, sessions: &FanoutSessions, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            sessions.deliver_one().await;
        }
        start.elapsed()
    })
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let frame = encode_frame(&frames::broadcast_json(1, frames::SMALL_BODY_BYTES));
    let mut g = c.benchmark_group("fanout");
    g.sample_size(20);
    for (path, name) in [(Path::Woken, "woken"), (Path::Direct, "direct")] {
        for n in [1_000, 10_000] {
            g.throughput(Throughput::Elements(n as u64));
            // Criterion calls the closure once per sample: sessions are made
            // once, on the first call, and only if the bench is selected.
            let mut sessions = None;
            g.bench_function(BenchmarkId::new(format!("in_process_{name}"), n), |b| {
                let sessions = sessions.get_or_insert_with(|| {
                    rt.block_on(FanoutSessions::in_process(n, frame.clone(), path))
                });
                b.iter_custom(|iters| deliver(&rt, sessions, iters));
            });
        }
        let n = 1_000;
        g.throughput(Throughput::Elements(n as u64));
        let mut sessions = None;
        g.bench_function(BenchmarkId::new(format!("loopback_tcp_{name}"), n), |b| {
            let sessions = sessions.get_or_insert_with(|| {
                rt.block_on(FanoutSessions::over_loopback(n, frame.clone(), path))
                    .expect("loopback sockets (two file descriptors per session)")
            });
            b.iter_custom(|iters| deliver(&rt, sessions, iters));
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
