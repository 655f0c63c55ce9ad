//! A 3-node RabbitMQ cluster for the high-availability suites: three
//! containers of the `rtmc-rabbitmq` image on loopback ports the kit picks,
//! one Erlang cookie, joined through classic-config peer discovery, each node
//! a [`Service`] that can be stopped, killed or paused on its own. How the
//! nodes share one host (ports, names, the one epmd) is explained in
//! `testkit/images/rabbitmq/cluster-node.sh`, which every node runs.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = rtmc_testkit::RabbitCluster::start().await?;
//! let urls = cluster.urls(); // every node's AMQP URL, for `rabbitmq.urls`
//! let leader = cluster.quorum_queue("rtmc.messages").await?.leader;
//! cluster.node(leader).kill().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::docker;
use crate::services::{ensure_docker, start_container, wait_ready, Kind, Service, ServiceError};

/// Nodes in a cluster: the smallest count where a quorum (2) survives the
/// loss of any one node.
pub const CLUSTER_NODES: usize = 3;

/// The script every node runs (`sh -c`), in place of the image's entrypoint.
const NODE_SCRIPT: &str = include_str!("../images/rabbitmq/cluster-node.sh");

/// How long a node may take to answer AMQP, and the cluster to form.
const READY_LIMIT: Duration = Duration::from_secs(90);

/// Where a quorum queue's replicas are, by node index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumQueue {
    /// The node whose replica leads (takes every publish and delivery).
    pub leader: usize,
    /// Every node holding a replica, the leader included.
    pub members: Vec<usize>,
}

/// Three clustered RabbitMQ nodes and the name service they share. Dropping
/// it removes every container.
pub struct RabbitCluster {
    nodes: Vec<Service>,
    /// Erlang node names, `rabbit<AMQP port>@localhost`, by node index.
    node_names: Vec<String>,
    /// The port of the one epmd every node registers with.
    epmd_port: u16,
    /// The epmd container; outlives every node (see the node script).
    epmd: Option<Container<GenericImage>>,
}

impl Drop for RabbitCluster {
    /// Nodes first, then their name service; the sync container blocks on
    /// its own runtime when dropped, so off the async context.
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(epmd) = self.epmd.take() {
            let _ = std::thread::spawn(move || drop(epmd)).join();
        }
    }
}

impl RabbitCluster {
    /// Starts the name service, the first node, then the other two (which
    /// join the first), and waits until all three run as one cluster.
    pub async fn start() -> Result<RabbitCluster, ServiceError> {
        ensure_docker().await?;
        let epmd_port = docker::free_port();
        let epmd = start_container("rabbitmq-epmd", epmd_request(epmd_port)).await?;
        let ports: Vec<u16> = (0..CLUSTER_NODES).map(|_| docker::free_port()).collect();
        let node_names: Vec<String> = ports
            .iter()
            .map(|p| format!("rabbit{p}@localhost"))
            .collect();
        let node = NodeSettings {
            epmd_port,
            cookie: uuid::Uuid::new_v4().simple().to_string(),
            peers: node_names.join(" "),
        };
        let mut cluster = RabbitCluster {
            nodes: Vec::with_capacity(CLUSTER_NODES),
            node_names,
            epmd_port,
            epmd: Some(epmd),
        };
        // The first node alone: the others find it up and join it, rather
        // than each forming a cluster of its own.
        cluster.nodes.push(node.launch(ports[0]).await?);
        let (second, third) = tokio::join!(node.launch(ports[1]), node.launch(ports[2]));
        cluster.nodes.push(second?);
        cluster.nodes.push(third?);
        cluster.wait_running(CLUSTER_NODES, READY_LIMIT).await?;
        Ok(cluster)
    }

    /// Node `index` (0, 1 or 2), to stop, kill, pause or restart it.
    pub fn node(&self, index: usize) -> &Service {
        &self.nodes[index]
    }

    pub fn nodes(&self) -> &[Service] {
        &self.nodes
    }

    /// Every node's AMQP URL, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Service::url).collect()
    }

    /// The Erlang node name of node `index`.
    pub fn node_name(&self, index: usize) -> &str {
        &self.node_names[index]
    }

    /// Indices of the nodes running in the cluster, as the first node that
    /// answers sees it.
    pub async fn running_nodes(&self) -> Result<Vec<usize>, ServiceError> {
        let status = self
            .ask_any(&["cluster_status", "--formatter", "json"])
            .await?;
        let running = status
            .get("running_nodes")
            .and_then(|v| v.as_array())
            .ok_or_else(|| ctl_error(format!("cluster_status without running_nodes: {status}")))?;
        Ok(running
            .iter()
            .filter_map(|n| n.as_str().and_then(|n| self.index_of(n)))
            .collect())
    }

    /// Waits until `count` nodes run in the cluster (after a start, or a
    /// restarted node rejoining).
    pub async fn wait_running(&self, count: usize, limit: Duration) -> Result<(), ServiceError> {
        crate::services::poll_ready("rabbitmq cluster", limit, || async {
            let running = self.running_nodes().await?;
            if running.len() >= count {
                Ok(())
            } else {
                Err(format!("{} of {count} nodes running: {running:?}", running.len()).into())
            }
        })
        .await
    }

    /// The leader and members of quorum queue `queue` (in the default vhost).
    pub async fn quorum_queue(&self, queue: &str) -> Result<QuorumQueue, ServiceError> {
        let listed = self
            .ask_any(&[
                "list_queues",
                "name",
                "leader",
                "members",
                "--formatter",
                "json",
            ])
            .await?;
        let entry = listed
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"].as_str() == Some(queue)))
            .ok_or_else(|| ctl_error(format!("queue {queue} not listed: {listed}")))?;
        let leader = entry["leader"]
            .as_str()
            .and_then(|n| self.index_of(n))
            .ok_or_else(|| ctl_error(format!("queue {queue} has no known leader: {entry}")))?;
        let members = entry["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.as_str().and_then(|n| self.index_of(n)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(QuorumQueue { leader, members })
    }

    fn index_of(&self, node_name: &str) -> Option<usize> {
        self.node_names.iter().position(|n| n == node_name)
    }

    /// Runs `rabbitmqctl` against each node in turn until one answers (a
    /// killed or paused node does not), and parses its JSON.
    async fn ask_any(&self, args: &[&str]) -> Result<serde_json::Value, ServiceError> {
        let mut errors = Vec::new();
        for index in 0..self.nodes.len() {
            match self.rabbitmqctl(index, args).await {
                Ok(out) => {
                    return serde_json::from_str(&out).map_err(|e| {
                        ctl_error(format!("rabbitmqctl printed no JSON ({e}): {out}"))
                    })
                }
                Err(e) => errors.push(format!("{}: {e}", self.node_names[index])),
            }
        }
        Err(ctl_error(format!(
            "no node answered rabbitmqctl: {}",
            errors.join("; ")
        )))
    }

    /// `rabbitmqctl -q -n <node> <args>` inside node `index`'s container,
    /// as the broker's user (whose home holds the cookie), bounded to 20 s.
    async fn rabbitmqctl(&self, index: usize, args: &[&str]) -> Result<String, ServiceError> {
        let script = format!(
            "HOME=/var/lib/rabbitmq ERL_EPMD_PORT={} rabbitmqctl -q -t 15 -n {} {}",
            self.epmd_port,
            self.node_names[index],
            args.join(" ")
        );
        let container = self.nodes[index].container_id();
        let run = tokio::process::Command::new("docker")
            .args(["exec", &container, "su", "rabbitmq", "-s", "/bin/sh", "-c"])
            .arg(script)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .map_err(|_| ctl_error("rabbitmqctl did not answer within 20 s".into()))?
            .map_err(|e| ctl_error(format!("docker exec: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ctl_error(format!(
                "rabbitmqctl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

fn ctl_error(message: String) -> ServiceError {
    ServiceError::Container {
        service: "rabbitmq cluster",
        message,
    }
}

/// What every node of one cluster shares.
struct NodeSettings {
    epmd_port: u16,
    cookie: String,
    /// Every node's name, space-separated, for classic-config discovery.
    peers: String,
}

impl NodeSettings {
    /// Starts the node whose AMQP port is `port` and waits until it answers.
    async fn launch(&self, port: u16) -> Result<Service, ServiceError> {
        let request = GenericImage::new("rtmc-rabbitmq".to_owned(), docker::image_tag())
            .with_entrypoint("sh")
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(["-c", NODE_SCRIPT])
            .with_env_var("RABBITMQ_NODE_PORT", port.to_string())
            .with_env_var("RABBITMQ_DIST_PORT", docker::free_port().to_string())
            .with_env_var("ERL_EPMD_PORT", self.epmd_port.to_string())
            .with_env_var("RTMC_ERLANG_COOKIE", self.cookie.clone())
            .with_env_var("RTMC_CLUSTER_NODES", self.peers.clone())
            .with_network("host")
            .with_container_name(docker::container_name("rabbitmq-node"));
        let container = start_container("rabbitmq", request).await?;
        let node = Service::new(Kind::RabbitMq, port, container);
        wait_ready(Kind::RabbitMq, &node.url(), READY_LIMIT).await?;
        Ok(node)
    }
}

/// The cluster's name service: epmd from the same image, on loopback.
fn epmd_request(port: u16) -> testcontainers::core::ContainerRequest<GenericImage> {
    GenericImage::new("rtmc-rabbitmq".to_owned(), docker::image_tag())
        .with_entrypoint("su")
        .with_wait_for(WaitFor::Nothing)
        .with_cmd([
            "rabbitmq",
            "-s",
            "/bin/sh",
            "-c",
            &format!("exec epmd -port {port} -address 127.0.0.1"),
        ])
        .with_network("host")
        .with_container_name(docker::container_name("rabbitmq-epmd"))
}
