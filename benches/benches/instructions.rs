//! Instruction counts (gungraun on Valgrind's callgrind) of the CPU-bound
//! hot paths. Wall-clock benches move with the machine's load (design §9:
//! the same command gave p99 ratios of 0.39 to 1.06 here); the number of
//! instructions a function executes does not, so these are the numbers to
//! compare between two commits of CPU-bound code (rule 7 of design §9).
//!
//! - `codec`: `FrameCodec` encode and decode of a small and a large frame;
//! - `broadcast`: framing a broadcast, as the node does once per message:
//!   `outbound::frame` (serialize a `ServerFrame` + prefix, the path of
//!   replies and PostgreSQL replays) and `StreamEntry::framed` (prefix a
//!   stored payload, the live path);
//! - `parse`: `ClientCommand::parse` of a `send` and of unknown input;
//! - `wire`: loadgen's byte-scan `parse_broadcast`, small and large;
//! - `token_bucket`: 1000 `TokenBucket::allow_at` decisions (the per-
//!   connection flood limit, taken on every frame);
//! - `histogram`: 1000 `record_us` into loadgen's latency histogram;
//! - `fanout`: one message, and a burst of 16 (one XREAD batch), through
//!   the real `Fanout` ring to 100 sessions' real writers (`outbound::run`)
//!   writing into counting sinks, on a current-thread runtime: the ring,
//!   the task wake-ups, the coalescing and the metrics, without the kernel.
//!   Divide by the deliveries (100, 1,600) for the cost of one. Each on
//!   both paths: every writer woken per message, and (`_direct`) the
//!   ring's pump writing the parked writers' sockets itself.
//!
//! Setup (building inputs) is not counted. Needs valgrind and
//! `gungraun-runner` of the same version as the `gungraun` crate (ci/setup.sh
//! installs it); `cargo bench -p rtmc-benches --bench instructions`.
//! benches/README.md says how to read the counts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gungraun::{library_benchmark, library_benchmark_group, main};
use rtmc::protocol::{ClientCommand, FrameCodec, ProtocolError, ServerFrame};
use rtmc::server::limits::TokenBucket;
use rtmc::server::outbound;
use rtmc::stream::{Delivery, StreamEntry};
use rtmc_benches::frames::{self, LARGE_BODY_BYTES, SMALL_BODY_BYTES};
use rtmc_benches::sessions::{FanoutSessions, Path};
use rtmc_loadgen::measure::histogram::{self, LatencyHistogram};
use rtmc_loadgen::wire::rtmc_frames::{self, BroadcastFacts};
use tokio_util::codec::{Decoder, Encoder};

/// Decisions per token-bucket and histogram bench: enough that the
/// per-call cost dominates the bench's fixed cost.
const CALLS: usize = 1_000;

fn payload(body_bytes: usize) -> Vec<u8> {
    frames::broadcast_json(1, body_bytes)
}

fn framed(body_bytes: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::default()
        .encode(payload(body_bytes).as_slice(), &mut buf)
        .expect("fits");
    buf
}

#[library_benchmark]
#[bench::small(args = (SMALL_BODY_BYTES), setup = payload)]
#[bench::large(args = (LARGE_BODY_BYTES), setup = payload)]
fn encode(payload: Vec<u8>) -> BytesMut {
    let mut dst = BytesMut::new();
    FrameCodec::default()
        .encode(black_box(payload.as_slice()), &mut dst)
        .expect("fits");
    dst
}

#[library_benchmark]
#[bench::small(args = (SMALL_BODY_BYTES), setup = framed)]
#[bench::large(args = (LARGE_BODY_BYTES), setup = framed)]
fn decode(mut src: BytesMut) -> Option<Bytes> {
    FrameCodec::default()
        .decode(black_box(&mut src))
        .expect("valid")
}

library_benchmark_group!(name = codec; benchmarks = encode, decode);

fn server_frame(body_bytes: usize) -> ServerFrame {
    ServerFrame::Broadcast(frames::broadcast(1, body_bytes))
}

#[library_benchmark]
#[bench::small(args = (SMALL_BODY_BYTES), setup = server_frame)]
#[bench::large(args = (LARGE_BODY_BYTES), setup = server_frame)]
fn outbound_frame(frame: ServerFrame) -> Bytes {
    outbound::frame(black_box(&frame))
}

#[library_benchmark]
#[bench::small(args = (1, SMALL_BODY_BYTES), setup = frames::stream_entry)]
#[bench::large(args = (1, LARGE_BODY_BYTES), setup = frames::stream_entry)]
fn stream_entry_framed(entry: StreamEntry) -> Delivery {
    black_box(&entry).framed()
}

library_benchmark_group!(name = broadcast; benchmarks = outbound_frame, stream_entry_framed);

fn send_command(_: ()) -> Vec<u8> {
    ClientCommand::Send {
        room: None,
        to: None,
        body: frames::body(SMALL_BODY_BYTES),
        message_id: Some(frames::loadgen_message_id(7)),
        sent_at_us: Some(frames::SENT_AT_US),
    }
    .to_json()
}

fn unknown_command(_: ()) -> Vec<u8> {
    br#"{"command":"fly","to":"moon"}"#.to_vec()
}

#[library_benchmark]
#[bench::send(args = (()), setup = send_command)]
#[bench::unknown(args = (()), setup = unknown_command)]
fn client_command(payload: Vec<u8>) -> Result<ClientCommand, ProtocolError> {
    ClientCommand::parse(black_box(&payload))
}

library_benchmark_group!(name = parse; benchmarks = client_command);

#[library_benchmark]
#[bench::small(args = (SMALL_BODY_BYTES), setup = payload)]
#[bench::large(args = (LARGE_BODY_BYTES), setup = payload)]
fn parse_broadcast(payload: Vec<u8>) -> Option<BroadcastFacts> {
    rtmc_frames::parse_broadcast(black_box(&payload))
}

library_benchmark_group!(name = loadgen_wire; benchmarks = parse_broadcast);

/// A bucket of 100 events/s and `CALLS` instants 7 ms apart: a mix of
/// allowed and refused decisions, fixed so every run takes the same path.
fn bucket_and_times(_: ()) -> (TokenBucket, Vec<Instant>) {
    let t0 = Instant::now();
    let times = (0..CALLS as u32)
        .map(|i| t0 + Duration::from_millis(7) * i)
        .collect();
    (TokenBucket::new(100), times)
}

#[library_benchmark]
#[bench::thousand_decisions(args = (()), setup = bucket_and_times)]
fn token_bucket(input: (TokenBucket, Vec<Instant>)) -> usize {
    let (mut bucket, times) = input;
    times
        .iter()
        .filter(|&&t| bucket.allow_at(black_box(t)))
        .count()
}

/// An empty latency histogram and `CALLS` latencies spread over 1 µs..1 s.
fn histogram_and_values(_: ()) -> (LatencyHistogram, Vec<u64>) {
    let values = (0..CALLS as u64)
        .map(|i| (i * 7_919 * 127) % 1_000_000 + 1)
        .collect();
    (histogram::new_histogram(), values)
}

#[library_benchmark]
#[bench::thousand_records(args = (()), setup = histogram_and_values)]
fn histogram_record(input: (LatencyHistogram, Vec<u64>)) -> LatencyHistogram {
    let (mut h, values) = input;
    for v in values {
        histogram::record_us(&mut h, black_box(v));
    }
    h
}

library_benchmark_group!(name = limits_and_histograms; benchmarks = token_bucket, histogram_record);

/// Sessions of the `fanout` group.
const FANOUT_SESSIONS: usize = 100;

/// A current-thread runtime with `FANOUT_SESSIONS` subscribed writers, one
/// message already delivered so every writer waits on the ring.
fn fanout_sessions(path: Path) -> (tokio::runtime::Runtime, FanoutSessions) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let frame = rtmc::protocol::encode_frame(&payload(SMALL_BODY_BYTES));
    let sessions = rt.block_on(async {
        let s = FanoutSessions::in_process(FANOUT_SESSIONS, frame, path).await;
        s.deliver_one().await;
        s
    });
    (rt, sessions)
}

#[library_benchmark]
#[bench::one_message(args = (Path::Woken), setup = fanout_sessions)]
#[bench::one_message_direct(args = (Path::Direct), setup = fanout_sessions)]
fn fanout_one(input: (tokio::runtime::Runtime, FanoutSessions)) {
    let (rt, sessions) = &input;
    rt.block_on(black_box(sessions).deliver_one());
    // Tearing 100 writers down is not the fan-out's cost.
    std::mem::forget(input);
}

#[library_benchmark]
#[bench::burst_of_16(args = (Path::Woken), setup = fanout_sessions)]
#[bench::burst_of_16_direct(args = (Path::Direct), setup = fanout_sessions)]
fn fanout_burst(input: (tokio::runtime::Runtime, FanoutSessions)) {
    let (rt, sessions) = &input;
    rt.block_on(black_box(sessions).deliver_burst(16));
    std::mem::forget(input);
}

library_benchmark_group!(name = fanout; benchmarks = fanout_one, fanout_burst);

main!(
    library_benchmark_groups = codec,
    broadcast,
    parse,
    loadgen_wire,
    limits_and_histograms,
    fanout
);
