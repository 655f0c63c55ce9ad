//! rtmc-benches: the fixtures every benchmark of `benches/benches/` shares,
//! so that the criterion benches (wall-clock time) and the gungraun bench
//! (instruction counts) measure the same inputs.
//!
//! - [`frames`]: protocol payloads (broadcasts of a small and a large body,
//!   one payload per client command, bad input, messages as the broker
//!   carries them).
//! - [`sessions`]: sessions driven by the real fan-out ring and per-session
//!   writer, writing into a counting sink in-process or into loopback TCP
//!   sockets, and a counter that says when every session has its copy.
//! - [`stack`]: the runtime and the testkit services (real Redis,
//!   PostgreSQL, RabbitMQ containers) the container benches run on.
//!
//! `benches/README.md` says how to run each bench and how to read the results.

pub mod frames;
pub mod sessions;
pub mod stack;
