//! The whole stack on the three clusters, started the one way both
//! `rtmc-stack --ha` and its test use: a 3-node RabbitMQ cluster (quorum
//! queues), Redis primary + 2 replicas + 3 Sentinels (the consumer waits for
//! one replica), PostgreSQL primary + standby under pg_auto_failover, and a
//! [`Pipeline`] whose components are given every node's address.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rtmc_testkit::{HaStack, PipelineOptions};
//! let stack = HaStack::start(PipelineOptions::default()).await?;
//! for node in stack.nodes().await {
//!     println!("{} {} {}", node.engine, node.address, node.container_id);
//! }
//! # Ok(()) }
//! ```

use rtmc::config::QueueType;

use crate::cluster::RabbitCluster;
use crate::pg_ha::{PgHa, PG_NODES};
use crate::pipeline::{Engines, Pipeline, PipelineOptions, WriteAddresses};
use crate::redis_ha::{RedisHa, SENTINELS};
use crate::services::Service;

/// Replicas that must hold a Redis append before the consumer acks
/// RabbitMQ: one, so a message survives the loss of any single node.
pub const MIN_REPLICAS_ACKED: u32 = 1;

/// The three clusters and the rtmc deployment on them. Dropping it stops
/// the components, then removes every container.
pub struct HaStack {
    /// rtmc's components, configured with every node's address. Declared
    /// first so it stops before the clusters go.
    pub pipeline: Pipeline,
    /// The 3-node RabbitMQ cluster.
    pub rabbitmq: RabbitCluster,
    /// Redis primary, replicas and Sentinels.
    pub redis: RedisHa,
    /// PostgreSQL primary and standby with their monitor.
    pub postgres: PgHa,
}

/// One node of one cluster, as `rtmc-stack --ha` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// `rabbitmq`, `redis`, `redis-sentinel` or `postgres`.
    pub engine: &'static str,
    /// The node's index within its cluster.
    pub index: usize,
    /// What clients connect to (`host:port`).
    pub address: String,
    /// Its Docker container, for `docker kill`.
    pub container_id: String,
    /// Whether it leads now: the quorum queue's leader, the Redis primary,
    /// the PostgreSQL node that takes writes (never for a Sentinel).
    pub leads: bool,
}

impl HaStack {
    /// Starts the three clusters side by side, then the pipeline on them
    /// (its database created on the PostgreSQL primary); `opts` edits the
    /// rest as for [`Pipeline::start`].
    pub async fn start(opts: PipelineOptions) -> anyhow::Result<HaStack> {
        let (rabbitmq, redis, postgres) =
            tokio::join!(RabbitCluster::start(), RedisHa::start(), PgHa::start());
        let (rabbitmq, redis, postgres) = (rabbitmq?, redis?, postgres?);
        let primary = postgres.primary().await?;
        let engines = Engines {
            postgres_admin_url: postgres.node(primary).url(),
            address: cluster_addresses(&rabbitmq, &redis, &postgres),
        };
        let pipeline = Pipeline::start_on(engines, opts).await?;
        Ok(HaStack {
            pipeline,
            rabbitmq,
            redis,
            postgres,
        })
    }

    /// Every node of every cluster, in engine then node order, each marked
    /// with whether it leads now. A leader the kit cannot ask (a node just
    /// killed) leaves its engine with no node marked.
    pub async fn nodes(&self) -> Vec<ClusterNode> {
        let queue = &self.pipeline.cfg.rabbitmq.queue;
        let rabbit_leader = self
            .rabbitmq
            .quorum_queue(queue)
            .await
            .ok()
            .map(|q| q.leader);
        let redis_primary = self.redis.primary().await.ok();
        let pg_primary = self.postgres.primary().await.ok();
        let node = |engine, index, service: &Service, leader: Option<usize>| ClusterNode {
            engine,
            index,
            address: format!("127.0.0.1:{}", service.port),
            container_id: service.container_id(),
            leads: leader == Some(index),
        };
        let mut out = Vec::new();
        for (i, s) in self.rabbitmq.nodes().iter().enumerate() {
            out.push(node("rabbitmq", i, s, rabbit_leader));
        }
        for (i, s) in self.redis.nodes().iter().enumerate() {
            out.push(node("redis", i, s, redis_primary));
        }
        for i in 0..SENTINELS {
            out.push(node("redis-sentinel", i, self.redis.sentinel(i), None));
        }
        for i in 0..PG_NODES {
            out.push(node("postgres", i, self.postgres.node(i), pg_primary));
        }
        out
    }
}

/// Writes every node's address and the cluster settings into a pipeline's
/// configuration: all RabbitMQ URLs with quorum queues, the Sentinels with
/// one replica per append, every PostgreSQL node for the pipeline's database.
fn cluster_addresses(rabbitmq: &RabbitCluster, redis: &RedisHa, postgres: &PgHa) -> WriteAddresses {
    let rabbit_urls = rabbitmq.urls();
    let (sentinels, master) = (redis.sentinel_addresses(), redis.master_name());
    let redis_url = redis.node(0).url();
    let pg_nodes: Vec<u16> = (0..PG_NODES).map(|i| postgres.node(i).port).collect();
    Box::new(move |cfg, ns| {
        cfg.rabbitmq.url = rabbit_urls[0].clone().into();
        cfg.rabbitmq.urls = rabbit_urls.into_iter().map(Into::into).collect();
        cfg.rabbitmq.queue_type = QueueType::Quorum;
        cfg.redis.url = redis_url.into();
        cfg.redis.sentinels = sentinels;
        cfg.redis.master_name = master.to_owned();
        cfg.redis.min_replicas_acked = MIN_REPLICAS_ACKED;
        let pg_urls: Vec<String> = pg_nodes
            .iter()
            .map(|port| format!("postgres://postgres@127.0.0.1:{port}/{ns}"))
            .collect();
        cfg.postgres.url = pg_urls[0].clone().into();
        cfg.postgres.urls = pg_urls.into_iter().map(Into::into).collect();
    })
}
