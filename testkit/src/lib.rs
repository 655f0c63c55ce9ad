//! rtmc's test kit: real RabbitMQ, Redis and PostgreSQL in containers
//! ([`services`]), and isolated rtmc deployments running in-process on top of
//! them ([`pipeline`]), with frame-level access to a server node ([`raw`]),
//! and nats-server for loadgen's NATS peers ([`nats`]).
//! The end-to-end suites, loadgen and chaos build on it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rtmc_testkit::{Pipeline, PipelineOptions};
//! let p = Pipeline::shared(PipelineOptions::default().servers(2)).await?;
//! let users = p.add_users("alice", 1).await?;
//! let mut c = p.client(0, &users[0]).await?;
//! c.send("hello", None).await?;
//! # Ok(()) }
//! ```

pub mod docker;
pub mod layers;
pub mod nats;
pub mod pipeline;
pub mod process;
pub mod raw;
pub mod services;
pub mod watchdog;

pub use nats::Nats;
pub use pipeline::{
    Component, HttpPublisher, PerComponent, Pipeline, PipelineOptions, TEST_PASSWORD,
};
pub use process::{NodeProcess, Role};
pub use services::{shared, Service, Services};

/// Logs for tests: captured per test by the harness (shown for failures),
/// `RUST_LOG` filters (default warn). The test entry points
/// ([`Pipeline::shared`], [`Pipeline::private`]) call it, so suites do not;
/// a second call does nothing. [`Pipeline::start`] does not: tools that
/// embed a stack install their own subscriber (or none).
///
/// It also puts the calling test under the kit's time limit
/// ([`watchdog`]): a test that hangs ends the binary with its name.
pub fn init_test_logs() {
    watchdog::guard_this_test();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
