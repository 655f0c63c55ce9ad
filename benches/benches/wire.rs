//! Whether loadgen's byte-scan broadcast parser (`rtmc_loadgen::wire::rtmc_frames`) is
//! worth its special case: at a million deliveries per second, parsing is
//! loadgen's own CPU budget, and a loadgen that cannot keep up reports the
//! server slower than it is. Each frame is read three ways into the same
//! `BroadcastFacts` (seq, send time, origin):
//!
//! - `byte_scan`: `rtmc_frames::parse_broadcast`, what loadgen runs per delivery;
//! - `serde_frame`: `ServerFrame::parse`, the full typed decode (owned
//!   strings) loadgen falls back to, and any ordinary client would use;
//! - `serde_lean`: the best plain serde can do, a borrowed struct with only
//!   the fields loadgen needs.
//!
//! Frames: a small and a large body, with loadgen's message id and with a
//! foreign one (scanned over as a JSON string). `split_and_scan` is
//! loadgen's read loop: 64 small frames split out of one read buffer
//! (`rtmc_frames::for_each_frame`) and scanned.
//!
//! `cargo bench -p rtmc-benches --bench wire`.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtmc::protocol::{ServerFrame, DEFAULT_MAX_FRAME_BYTES};
use rtmc_benches::frames;
use rtmc_loadgen::wire::rtmc_frames::{self, BroadcastFacts};
use serde::Deserialize;

/// The fields loadgen measures with, borrowed from the payload.
#[derive(Deserialize)]
struct LeanBroadcast<'a> {
    seq: u64,
    #[serde(borrow)]
    message_id: Cow<'a, str>,
    sent_at_us: u64,
}

fn serde_frame(payload: &[u8]) -> Option<BroadcastFacts> {
    match ServerFrame::parse(payload).ok()? {
        ServerFrame::Broadcast(b) => Some(BroadcastFacts {
            seq: b.seq,
            sent_at_us: b.sent_at_us,
            origin: rtmc_frames::parse_message_id(b.message_id.as_bytes()),
        }),
        _ => None,
    }
}

fn serde_lean(payload: &[u8]) -> Option<BroadcastFacts> {
    let b: LeanBroadcast = serde_json::from_slice(payload).ok()?;
    Some(BroadcastFacts {
        seq: b.seq,
        sent_at_us: b.sent_at_us,
        origin: rtmc_frames::parse_message_id(b.message_id.as_bytes()),
    })
}

type Parser = fn(&[u8]) -> Option<BroadcastFacts>;

const PARSERS: [(&str, Parser); 3] = [
    ("byte_scan", rtmc_frames::parse_broadcast),
    ("serde_frame", serde_frame),
    ("serde_lean", serde_lean),
];

fn parse(c: &mut Criterion) {
    for (size, body_bytes) in frames::BODY_SIZES {
        let inputs = [
            ("loadgen_id", frames::broadcast_json(7, body_bytes)),
            ("foreign_id", frames::foreign_broadcast_json(7, body_bytes)),
        ];
        for (id_kind, payload) in inputs {
            let expected = serde_frame(&payload).expect("a broadcast");
            let mut g = c.benchmark_group(format!("broadcast/{size}/{id_kind}"));
            g.throughput(Throughput::Elements(1));
            for (name, parser) in PARSERS {
                assert_eq!(parser(&payload), Some(expected), "{name} disagrees");
                g.bench_with_input(BenchmarkId::from_parameter(name), &payload, |b, p| {
                    b.iter(|| parser(black_box(p)))
                });
            }
            g.finish();
        }
    }
}

fn split_and_scan(c: &mut Criterion) {
    const FRAMES: u64 = 64;
    let mut buf = Vec::new();
    for seq in 1..=FRAMES {
        rtmc_frames::put_frame(
            &mut buf,
            &frames::broadcast_json(seq, frames::SMALL_BODY_BYTES),
        );
    }
    let mut g = c.benchmark_group("read_buffer");
    g.throughput(Throughput::Elements(FRAMES));
    g.bench_function("split_and_scan", |b| {
        b.iter(|| {
            let mut last_seq = 0;
            let used = rtmc_frames::for_each_frame(black_box(&buf), DEFAULT_MAX_FRAME_BYTES, |p| {
                if let Some(f) = rtmc_frames::parse_broadcast(p) {
                    last_seq = f.seq;
                }
            })
            .expect("frames fit");
            assert_eq!((used, last_seq), (buf.len(), FRAMES));
        })
    });
    g.finish();
}

criterion_group!(benches, parse, split_and_scan);
criterion_main!(benches);
