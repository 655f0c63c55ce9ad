//! Where the load goes: by default an embedded full stack (containers from
//! the test kit, and the consumer, gateway and server nodes as `rtmc` child
//! processes, so the server's file descriptors are not loadgen's), or the
//! addresses of a running deployment.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use rtmc::config::Config;
use rtmc_testkit::process::rtmc_binary;
use rtmc_testkit::{NodeProcess, Pipeline, PipelineOptions, Role, Services, TEST_PASSWORD};

use crate::measure::cpu::container_pid;
use crate::profile::Profile;

/// Failure bringing the target up or resolving it.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("bringing up the embedded stack: {0}")]
    Embedded(String),
    #[error("address {addr:?}: {message}")]
    Address { addr: String, message: String },
    #[error("{0}")]
    Missing(String),
}

/// The resolved load target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server nodes clients connect to.
    pub servers: Vec<SocketAddr>,
    /// Gateway base URL, if any.
    pub gateway: Option<String>,
    pub api_key: Option<String>,
    pub user_prefix: String,
    pub password: String,
    /// Redis for the floor, if any.
    pub floor_redis: Option<SocketAddr>,
    /// Every rtmc process (consumer, sync worker, gateway, server nodes):
    /// the self-check reports their CPU time (embedded mode; in target
    /// mode, `--server-pid`).
    pub rtmc_pids: Vec<u32>,
    /// The chat server node processes alone: their memory per connected
    /// client is reported (embedded mode; in target mode, `--server-pid`).
    pub server_node_pids: Vec<u32>,
    pub max_frame_bytes: usize,
    /// "embedded" or "target".
    pub mode: String,
    /// Whether the floor Redis is ours to reconfigure.
    pub floor_is_ours: bool,
    /// The floor Redis's server process, for its CPU (embedded: the
    /// container's host pid; else `--floor-redis-pid`).
    pub floor_redis_pid: Option<u32>,
}

impl Target {
    /// `<prefix>-<i>`.
    pub fn user(&self, i: usize) -> String {
        format!("{}-{i}", self.user_prefix)
    }
}

/// An embedded stack; dropping it stops the processes and removes the containers.
pub struct EmbeddedStack {
    /// Child processes first so they stop before the services go.
    nodes: Vec<NodeProcess>,
    _pipeline: Pipeline,
    _services: Services,
}

impl EmbeddedStack {
    /// Stops the child processes gracefully.
    pub async fn shutdown(mut self) {
        for n in self.nodes.drain(..) {
            let _ = n.stop().await;
        }
    }
}

/// Users a run needs: receivers, TCP publishers (or a room workload's room
/// owners), one probe.
pub fn users_needed(p: &Profile) -> usize {
    let publishers = match &p.workload {
        // A room workload's publishers own the rooms: one per few rooms.
        Some(w) => crate::workload::plan::room_publishers(w.rooms),
        None => p.load.tcp_publishers as usize,
    };
    p.load.clients + publishers + 1
}

fn resolve(addr: &str) -> Result<SocketAddr, StackError> {
    addr.to_socket_addrs()
        .map_err(|e| StackError::Address {
            addr: addr.into(),
            message: e.to_string(),
        })?
        .next()
        .ok_or_else(|| StackError::Address {
            addr: addr.into(),
            message: "resolves to nothing".into(),
        })
}

/// Resolves the target of a running deployment.
pub fn external(p: &Profile) -> Result<Target, StackError> {
    let servers = p
        .target
        .servers
        .iter()
        .map(|s| resolve(s))
        .collect::<Result<Vec<_>, _>>()?;
    let password = p
        .target
        .password
        .clone()
        .ok_or_else(|| StackError::Missing("target mode needs --password".into()))?;
    Ok(Target {
        servers,
        gateway: p.target.gateway.clone(),
        api_key: p.target.api_key.clone(),
        user_prefix: p.target.user_prefix.clone(),
        password,
        floor_redis: p.floor.redis.as_deref().map(resolve).transpose()?,
        rtmc_pids: p.target.server_pids.clone(),
        server_node_pids: p.target.server_pids.clone(),
        max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
        mode: "target".into(),
        floor_is_ours: false,
        floor_redis_pid: p.floor.redis_pid,
    })
}

/// Brings up containers, a namespace with users, a consumer, the sync
/// worker, a gateway and `server_nodes` servers as child processes.
pub async fn embedded(p: &Profile) -> Result<(EmbeddedStack, Target), StackError> {
    let binary = rtmc_binary().map_err(|e| embedded_err(&e))?;
    let services = Services::start().await.map_err(|e| embedded_err(&e))?;
    let pipeline = namespace_only(&services, Some(binary.clone()))
        .await
        .map_err(|e| embedded_err(&e))?;
    let prefix = p.target.user_prefix.clone();
    pipeline
        .add_users(&prefix, users_needed(p))
        .await
        .map_err(|e| embedded_err(&e))?;
    let cfg = (*pipeline.cfg).clone();
    let mut nodes = Vec::new();
    nodes.push(spawn(Role::Consumer, &cfg, &binary).await?);
    nodes.push(spawn(Role::Sync, &cfg, &binary).await?);
    let gateway = spawn(Role::Gateway, &cfg, &binary).await?;
    let gateway_url = gateway.addr.clone().map(|a| format!("http://{a}"));
    nodes.push(gateway);
    let (servers, server_node_pids) =
        spawn_servers(p.target.server_nodes.max(1), &cfg, &binary, &mut nodes).await?;
    let floor_redis = match &p.floor.redis {
        Some(r) => Some(resolve(r)?),
        None => Some(resolve(&format!("127.0.0.1:{}", services.redis.port))?),
    };
    let target = Target {
        servers,
        gateway: gateway_url,
        api_key: cfg
            .gateway
            .api_keys
            .first()
            .map(|k| k.expose_secret().clone()),
        user_prefix: prefix,
        password: TEST_PASSWORD.into(),
        floor_redis,
        rtmc_pids: nodes.iter().map(|n| n.pid()).collect(),
        server_node_pids,
        max_frame_bytes: cfg.server.max_frame_bytes,
        mode: "embedded".into(),
        floor_is_ours: p.floor.redis.is_none(),
        floor_redis_pid: match &p.floor.redis {
            Some(_) => p.floor.redis_pid,
            None => container_pid(&services.redis.container_id()).ok(),
        },
    };
    Ok((
        EmbeddedStack {
            nodes,
            _pipeline: pipeline,
            _services: services,
        },
        target,
    ))
}

/// A pipeline on `services` that starts no component in-process: its
/// namespace, configuration and helpers only. The components run as `rtmc`
/// processes (every one, the sync worker too), so nothing of the stack
/// shares loadgen's CPU accounting.
/// `schema_from`: the `rtmc` binary that creates the schema (the one the
/// stack runs, so a newer loadgen never migrates an older rtmc's database);
/// `None`: loadgen's own `rtmc` library does.
pub async fn namespace_only(
    services: &Services,
    schema_from: Option<PathBuf>,
) -> anyhow::Result<Pipeline> {
    Pipeline::start(
        services,
        PipelineOptions {
            servers: 0,
            gateway: false,
            consumer: false,
            sync: false,
            schema_from,
            ..Default::default()
        },
    )
    .await
}

fn embedded_err(e: &dyn std::fmt::Display) -> StackError {
    StackError::Embedded(e.to_string())
}

/// Starts one component as an `rtmc` child process.
async fn spawn(role: Role, cfg: &Config, binary: &Path) -> Result<NodeProcess, StackError> {
    NodeProcess::spawn(role, cfg.clone(), binary)
        .await
        .map_err(|e| embedded_err(&e))
}

/// Starts `count` server nodes (added to `nodes`); returns their addresses
/// and process ids.
async fn spawn_servers(
    count: usize,
    cfg: &Config,
    binary: &Path,
    nodes: &mut Vec<NodeProcess>,
) -> Result<(Vec<SocketAddr>, Vec<u32>), StackError> {
    let mut servers = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..count {
        let node = spawn(Role::Server, cfg, binary).await?;
        let addr = node
            .addr
            .clone()
            .ok_or_else(|| StackError::Embedded("server without an address".into()))?;
        servers.push(resolve(&addr)?);
        pids.push(node.pid());
        nodes.push(node);
    }
    Ok((servers, pids))
}
