//! Wall-clock cost of the client protocol's CPU work, which every frame a
//! server node reads or writes goes through: framing (the tokio-util
//! `FrameCodec` encode and decode, and `encode_frame`, the helper a
//! broadcast is framed with once) for a small and a large frame, and
//! `ClientCommand::parse` for each command kind and for each kind of bad
//! input (bad input must be cheap to refuse: a flood of it is abuse).
//!
//! Throughput is in payload bytes for framing and in commands for parsing.
//! `cargo bench -p rtmc-benches --bench protocol`; the instruction counts
//! of the same paths are in `instructions.rs`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rtmc::protocol::{encode_frame, ClientCommand, FrameCodec};
use rtmc_benches::frames;
use tokio_util::codec::{Decoder, Encoder};

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    for (size, body_bytes) in frames::BODY_SIZES {
        let payload = frames::broadcast_json(1, body_bytes);
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", size), &payload, |b, p| {
            let mut codec = FrameCodec::default();
            let mut dst = BytesMut::with_capacity(p.len() + 4);
            b.iter(|| {
                dst.clear();
                codec
                    .encode(black_box(p.as_slice()), &mut dst)
                    .expect("fits");
            })
        });
        g.bench_with_input(BenchmarkId::new("encode_frame", size), &payload, |b, p| {
            b.iter(|| encode_frame(black_box(p)))
        });
        let mut framed = BytesMut::new();
        FrameCodec::default()
            .encode(payload.as_slice(), &mut framed)
            .expect("fits");
        g.bench_with_input(BenchmarkId::new("decode", size), &framed, |b, framed| {
            let mut codec = FrameCodec::default();
            b.iter_batched_ref(
                || framed.clone(),
                |src| codec.decode(src).expect("valid").expect("whole"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn parse_commands(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, payload) in frames::client_commands() {
        g.bench_with_input(BenchmarkId::new("command", name), &payload, |b, p| {
            b.iter(|| ClientCommand::parse(black_box(p)).expect("well-formed"))
        });
    }
    for (kind, payload) in frames::bad_inputs() {
        g.bench_with_input(BenchmarkId::new("bad", kind), &payload, |b, p| {
            b.iter(|| ClientCommand::parse(black_box(p)).expect_err("bad input"))
        });
    }
    g.finish();
}

criterion_group!(benches, framing, parse_commands);
criterion_main!(benches);
