//! rtmc's load generator as a library. Its folders are its layers, leaves
//! first: the protocols it speaks ([`wire`]), room workloads ([`workload`])
//! and the [`profile`]s that hold them; what it
//! measures with ([`measure`]: histograms, CPU, self-check, event hooks); the
//! target, embedded or running ([`stack`]); the load [`engine`] (the fleet
//! of clients and its faults, the open-loop publishers, accounting, the live
//! line, one measured phase); what a run tells people ([`report`]: types,
//! text, files, plots, merged reports, the verdict); what rtmc is measured
//! against ([`yardstick`]: the Redis floor, the NATS peers, the blaster); and
//! a whole invocation ([`run`]: interleaved rounds, the capacity ramp, the
//! ingest hops); and past one process ([`agents`]: `loadgen agent` and the
//! coordinator of `run --agents`). The chaos runner drives and records runs through the engine's
//! faults and the observe hooks. The `loadgen` binary is a thin CLI over it.

pub mod agents;
pub mod engine;
pub mod measure;
pub mod profile;
pub mod report;
pub mod run;
pub mod stack;
pub mod wire;
pub mod workload;
pub mod yardstick;
