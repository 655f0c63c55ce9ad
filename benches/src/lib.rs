//! rtmc-benches: criterion micro-benchmarks of the hot paths and end-to-end
//! latency benchmarks — not built yet; its issue comes later. End-to-end
//! throughput and latency are measured today by `loadgen`.
