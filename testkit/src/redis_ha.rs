//! Redis as a highly available group for the high-availability suites: one
//! primary, two replicas and three Sentinels (quorum 2), all containers of
//! the `rtmc-redis` image on loopback ports the kit picks, each a
//! [`Service`] that can be stopped, killed or paused on its own. The image's
//! `redis-server` runs as a Sentinel with `--sentinel` (Debian's
//! `redis-sentinel` package is only that link), so no other image is needed.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let ha = rtmc_testkit::RedisHa::start().await?;
//! let sentinels = ha.sentinel_addresses(); // for `redis.sentinels`
//! let old = ha.primary().await?;
//! ha.node(old).kill().await?;
//! let new = ha.wait_failover(old).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use testcontainers::core::WaitFor;
use testcontainers::{GenericImage, ImageExt};

use crate::docker;
use crate::services::{
    ensure_docker, poll_ready, start_container, wait_ready, Kind, ProbeResult, Service,
    ServiceError,
};

/// Redis data nodes: the primary and two replicas, so a replica is left to
/// acknowledge writes after any one node is lost.
pub const REDIS_NODES: usize = 3;

/// Sentinels: the smallest count where a quorum (2) survives the loss of one.
pub const SENTINELS: usize = 3;

/// Sentinels that must agree the primary is down before a failover.
const QUORUM: usize = 2;

/// The name the Sentinels know the group by (`redis.master_name`).
const MASTER_NAME: &str = "rtmc";

/// How long the Sentinels wait for a silent primary before they call it
/// down: short, so a suite's failover takes seconds.
const DOWN_AFTER_MS: u64 = 1_000;

/// A failover that has not finished in this time is tried again (by
/// another Sentinel).
const FAILOVER_TIMEOUT_MS: u64 = 5_000;

/// How long the group may take to come up: nodes, replication, and every
/// Sentinel seeing both replicas and both other Sentinels.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long [`RedisHa::wait_failover`] waits for a new primary.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// One primary, two replicas and three Sentinels. Dropping it removes every
/// container.
pub struct RedisHa {
    /// The data nodes, by index; node 0 is the first primary.
    nodes: Vec<Service>,
    /// The Sentinels, by index.
    sentinels: Vec<Service>,
}

impl RedisHa {
    /// Starts the primary, its two replicas and the three Sentinels, and
    /// waits until replication runs and every Sentinel knows the whole group.
    pub async fn start() -> Result<RedisHa, ServiceError> {
        ensure_docker().await?;
        let primary_port = docker::free_port();
        let primary = launch_node(primary_port, None).await?;
        let (r1, r2) = tokio::join!(
            launch_node(docker::free_port(), Some(primary_port)),
            launch_node(docker::free_port(), Some(primary_port))
        );
        let nodes = vec![primary, r1?, r2?];
        let (s1, s2, s3) = tokio::join!(
            launch_sentinel(primary_port),
            launch_sentinel(primary_port),
            launch_sentinel(primary_port)
        );
        let ha = RedisHa {
            nodes,
            sentinels: vec![s1?, s2?, s3?],
        };
        for replica in &ha.nodes[1..] {
            poll_ready("redis replica", READY_LIMIT, || {
                replica_linked(replica.url())
            })
            .await?;
        }
        for sentinel in &ha.sentinels {
            poll_ready("redis sentinel", READY_LIMIT, || {
                sentinel_knows_group(sentinel.url())
            })
            .await?;
        }
        Ok(ha)
    }

    /// Data node `index` (0 is the first primary), to stop, kill or pause it.
    pub fn node(&self, index: usize) -> &Service {
        &self.nodes[index]
    }

    pub fn nodes(&self) -> &[Service] {
        &self.nodes
    }

    /// Sentinel `index`, to stop, kill or pause it.
    pub fn sentinel(&self, index: usize) -> &Service {
        &self.sentinels[index]
    }

    /// Every Sentinel's `host:port`, for `redis.sentinels`.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The name the Sentinels know the group by, for `redis.master_name`.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The index of the primary as the first Sentinel that answers names it.
    pub async fn primary(&self) -> Result<usize, ServiceError> {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            match master_port(&sentinel.url()).await {
                Ok(port) => {
                    return self.index_of(port).ok_or_else(|| {
                        ha_error(format!("the sentinels name an unknown primary :{port}"))
                    })
                }
                Err(e) => errors.push(format!("sentinel :{}: {e}", sentinel.port)),
            }
        }
        Err(ha_error(format!(
            "no sentinel answered: {}",
            errors.join("; ")
        )))
    }

    /// The `i`-th data node that is not the primary now (0 or 1).
    pub async fn replica(&self, i: usize) -> Result<&Service, ServiceError> {
        let primary = self.primary().await?;
        (0..self.nodes.len())
            .filter(|&n| n != primary)
            .nth(i)
            .map(|n| &self.nodes[n])
            .ok_or_else(|| ha_error(format!("there is no replica {i}")))
    }

    /// Waits (bounded) until the Sentinels name a primary other than node
    /// `old` and that node says it is a master; returns its index.
    pub async fn wait_failover(&self, old: usize) -> Result<usize, ServiceError> {
        let promoted = std::cell::Cell::new(None);
        poll_ready("redis failover", FAILOVER_LIMIT, || {
            let found = &promoted;
            async move {
                let now = self.primary().await?;
                if now == old {
                    return Err(format!("the sentinels still name node {old}").into());
                }
                if role(&self.nodes[now].url()).await? != "master" {
                    return Err(format!("node {now} is named but not yet a master").into());
                }
                found.set(Some(now));
                Ok(())
            }
        })
        .await?;
        promoted
            .get()
            .ok_or_else(|| ha_error("the failover check ended without a primary".into()))
    }

    fn index_of(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }
}

fn ha_error(message: String) -> ServiceError {
    ServiceError::Container {
        service: "redis ha",
        message,
    }
}

/// Starts one data node on `port`, a replica of `primary_port` when given,
/// with the same durability as the kit's single Redis (AOF, fsync always),
/// and waits until it answers.
async fn launch_node(port: u16, primary_port: Option<u16>) -> Result<Service, ServiceError> {
    let mut args: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--maxclients",
        "20000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["--port".to_owned(), port.to_string()]);
    if let Some(primary) = primary_port {
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.to_string(),
        ]);
    }
    let request = GenericImage::new("rtmc-redis".to_owned(), docker::image_tag())
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(args)
        .with_network("host")
        .with_container_name(docker::container_name("redis-node"));
    let container = start_container("redis", request).await?;
    let node = Service::new(Kind::Redis, port, container);
    wait_ready(Kind::Redis, &node.url(), READY_LIMIT).await?;
    Ok(node)
}

/// The configuration file of a Sentinel on `port` watching the primary on
/// `primary_port`. A Sentinel rewrites its file, so it is written at start
/// inside the container.
fn sentinel_conf(port: u16, primary_port: u16) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir /data\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {QUORUM}\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
}

/// Starts a Sentinel watching the primary on `primary_port`.
async fn launch_sentinel(primary_port: u16) -> Result<Service, ServiceError> {
    let port = docker::free_port();
    let script = format!(
        "printf '%s' '{}' > /data/sentinel.conf && exec redis-server /data/sentinel.conf --sentinel",
        sentinel_conf(port, primary_port)
    );
    let request = GenericImage::new("rtmc-redis".to_owned(), docker::image_tag())
        .with_entrypoint("sh")
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(["-c".to_owned(), script])
        .with_network("host")
        .with_container_name(docker::container_name("redis-sentinel"));
    let container = start_container("redis sentinel", request).await?;
    let sentinel = Service::new(Kind::Redis, port, container);
    wait_ready(Kind::Redis, &sentinel.url(), READY_LIMIT).await?;
    Ok(sentinel)
}

/// One command on a fresh connection to `url`, bounded by the caller's poll.
async fn ask<T: redis::FromRedisValue>(
    url: &str,
    cmd: &redis::Cmd,
) -> Result<T, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut c).await
}

/// The primary's port as the Sentinel at `url` knows it.
async fn master_port(url: &str) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let get = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER_NAME)
        .clone();
    let addr: Option<(String, String)> = ask(url, &get).await?;
    let (_, port) = addr.ok_or("the sentinel knows no primary")?;
    Ok(port.parse()?)
}

/// `master`, `slave` or `sentinel`: the first element of `ROLE`.
async fn role(url: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let reply: Vec<redis::Value> = ask(url, &redis::cmd("ROLE")).await?;
    match reply.first() {
        Some(v) => Ok(<String as redis::FromRedisValue>::from_redis_value_ref(v)?),
        None => Err("ROLE answered nothing".into()),
    }
}

/// Ready when the replica at `url` has its link to the primary up.
async fn replica_linked(url: String) -> ProbeResult {
    let info: String = ask(&url, redis::cmd("INFO").arg("replication")).await?;
    if info.contains("master_link_status:up") {
        Ok(())
    } else {
        Err(format!("replica not linked yet: {}", info.replace("\r\n", " ")).into())
    }
}

/// Ready when the Sentinel at `url` sees both replicas and both other
/// Sentinels: from then on a failover can be agreed and carried out.
async fn sentinel_knows_group(url: String) -> ProbeResult {
    let fields: std::collections::HashMap<String, String> =
        ask(&url, redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME)).await?;
    let count = |k: &str| fields.get(k).and_then(|v| v.parse::<usize>().ok());
    let replicas = count("num-slaves").unwrap_or(0);
    let others = count("num-other-sentinels").unwrap_or(0);
    if replicas >= REDIS_NODES - 1 && others >= SENTINELS - 1 {
        Ok(())
    } else {
        Err(format!("sentinel sees {replicas} replicas and {others} other sentinels").into())
    }
}
