//! rtmc's test kit: real RabbitMQ, Redis and PostgreSQL in containers
//! ([`services`]), and isolated rtmc deployments running in-process on top of
//! them ([`pipeline`]), a 3-node RabbitMQ cluster for the high-availability
//! suites ([`cluster`]), the whole stack on the three clusters
//! ([`ha_stack`]), with frame-level access to a server node ([`raw`]),
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

pub mod cluster;
pub mod credentials;
pub mod docker;
pub mod ha_stack;
pub mod layers;
pub mod nats;
pub mod pg_ha;
pub mod pipeline;
pub mod process;
pub mod raw;
pub mod redis_ha;
pub mod services;
pub mod watchdog;

pub use cluster::{QuorumQueue, RabbitCluster};
pub use credentials::TEST_PASSWORD;
pub use ha_stack::{ClusterNode, HaStack};
pub use nats::Nats;
pub use pg_ha::PgHa;
pub use pipeline::{Component, Engines, HttpPublisher, PerComponent, Pipeline, PipelineOptions};
pub use process::{NodeProcess, Role};
pub use redis_ha::RedisHa;
pub use services::{shared, Service, Services};
pub use watchdog::init_test_logs;
