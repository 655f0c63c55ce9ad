//! PostgreSQL as a primary + standby group with an automatic failover
//! manager, for the high-availability suites: pg_auto_failover (Debian's
//! `postgresql-15-auto-failover`), a monitor and two data nodes, each a
//! container of the `rtmc-postgres-ha` image on a kit-picked loopback port,
//! each data node a [`Service`]. pg_auto_failover was chosen over patroni +
//! etcd because it is one package and one process per node (`pg_autoctl`),
//! needs no separate consensus store, and runs synchronous replication to
//! the standby by default, so a commit on the primary is on both nodes. The
//! image's `node.sh` says how each member starts and why the health checks
//! are made fast.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let pg = rtmc_testkit::PgHa::start().await?;
//! let urls = pg.urls("postgres"); // for `postgres.urls`
//! let old = pg.primary().await?;
//! pg.node(old).kill().await?;
//! let new = pg.wait_failover(old).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use sqlx::Connection;
use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::docker;
use crate::services::{
    ensure_docker, poll_ready, start_container, wait_ready, Kind, ProbeResult, Service,
    ServiceError,
};

/// Data nodes: a primary and its standby.
pub const PG_NODES: usize = 2;

/// How long the group may take to come up (the standby is cloned from the
/// primary with `pg_basebackup`).
const READY_LIMIT: Duration = Duration::from_secs(120);

/// How long [`PgHa::wait_failover`] waits for the standby to take writes.
const FAILOVER_LIMIT: Duration = Duration::from_secs(90);

/// What makes a node the primary: out of recovery and not read-only
/// (pg_auto_failover holds a promoted standby read-only for a while).
const TAKES_WRITES: &str =
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'";

/// The monitor and two data nodes. Dropping it removes every container.
pub struct PgHa {
    /// The data nodes, by index; node 0 is the first primary.
    nodes: Vec<Service>,
    /// The pg_auto_failover monitor; dropped after the nodes.
    monitor: Option<Container<GenericImage>>,
}

impl Drop for PgHa {
    /// Nodes first, then their monitor; the sync container blocks on its
    /// own runtime when dropped, so off the async context.
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(monitor) = self.monitor.take() {
            let _ = std::thread::spawn(move || drop(monitor)).join();
        }
    }
}

impl PgHa {
    /// Starts the monitor, the primary, then the standby (cloned from the
    /// primary), and waits until the standby replicates.
    pub async fn start() -> Result<PgHa, ServiceError> {
        ensure_docker().await?;
        let monitor_port = docker::free_port();
        let monitor = start_container(
            "postgres monitor",
            member(&["monitor", &monitor_port.to_string()]),
        )
        .await?;
        wait_ready(Kind::Postgres, &admin_url(monitor_port), READY_LIMIT).await?;
        let mut ha = PgHa {
            nodes: Vec::with_capacity(PG_NODES),
            monitor: Some(monitor),
        };
        for _ in 0..PG_NODES {
            let port = docker::free_port();
            let args = ["postgres", &port.to_string(), &monitor_port.to_string()];
            let container = start_container("postgres", member(&args)).await?;
            let node = Service::new(Kind::Postgres, port, container);
            wait_ready(Kind::Postgres, &node.url(), READY_LIMIT).await?;
            ha.nodes.push(node);
        }
        let standby = ha.nodes[1].url();
        poll_ready("postgres standby", READY_LIMIT, || {
            streaming(standby.clone())
        })
        .await?;
        // Streaming is not enough: until the monitor has moved the primary
        // to `primary` (synchronous replication on) and the standby to
        // `secondary`, a commit is on one node only and the monitor would
        // not promote the standby if the primary died. A loaded machine
        // takes seconds to get there.
        let monitor = format!("postgres://postgres@127.0.0.1:{monitor_port}/pg_auto_failover");
        poll_ready("postgres formation", READY_LIMIT, || {
            settled(monitor.clone())
        })
        .await?;
        Ok(ha)
    }

    /// Data node `index` (0 is the first primary), to stop, kill or pause it.
    pub fn node(&self, index: usize) -> &Service {
        &self.nodes[index]
    }

    /// Every data node's URL for database `db`, in node order, for
    /// `postgres.urls`.
    pub fn urls(&self, db: &str) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("postgres://postgres@127.0.0.1:{}/{db}", n.port))
            .collect()
    }

    /// The index of the node that takes writes now.
    pub async fn primary(&self) -> Result<usize, ServiceError> {
        for (index, node) in self.nodes.iter().enumerate() {
            if let Ok(Ok(true)) =
                tokio::time::timeout(Duration::from_secs(5), takes_writes(&node.url())).await
            {
                return Ok(index);
            }
        }
        Err(ServiceError::Container {
            service: "postgres ha",
            message: "no node takes writes".into(),
        })
    }

    /// Waits (bounded) until a node other than `old` takes writes; returns
    /// its index.
    pub async fn wait_failover(&self, old: usize) -> Result<usize, ServiceError> {
        let other = (old + 1) % PG_NODES;
        let url = self.nodes[other].url();
        poll_ready("postgres failover", FAILOVER_LIMIT, || {
            let url = url.clone();
            async move {
                if takes_writes(&url).await? {
                    Ok(())
                } else {
                    Err(format!("node {other} does not take writes yet").into())
                }
            }
        })
        .await?;
        Ok(other)
    }
}

/// The container of one member: `node.sh` with `args` (role, port, and the
/// monitor's port for a data node).
fn member(args: &[&str]) -> testcontainers::core::ContainerRequest<GenericImage> {
    GenericImage::new("rtmc-postgres-ha".to_owned(), docker::image_tag())
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(args.iter().map(|a| (*a).to_owned()))
        .with_network("host")
        .with_container_name(docker::container_name(&format!("pg-{}", args[0])))
}

/// The monitor's own `postgres` database, for the readiness check.
fn admin_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

async fn takes_writes(url: &str) -> Result<bool, sqlx::Error> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query_scalar(TAKES_WRITES).fetch_one(&mut c).await
}

/// Ready when the monitor at `url` has every data node where it wants it
/// (reported state = goal state), one `primary` and the rest `secondary`.
async fn settled(url: String) -> ProbeResult {
    let mut c = sqlx::PgConnection::connect(&url).await?;
    let states: Vec<(String, String)> = sqlx::query_as(
        "SELECT reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY nodeid",
    )
    .fetch_all(&mut c)
    .await?;
    let primaries = states.iter().filter(|(r, _)| r == "primary").count();
    let secondaries = states.iter().filter(|(r, _)| r == "secondary").count();
    if states.len() == PG_NODES
        && states.iter().all(|(r, g)| r == g)
        && primaries == 1
        && secondaries == PG_NODES - 1
    {
        Ok(())
    } else {
        Err(format!("formation not settled yet (reported, goal): {states:?}").into())
    }
}

/// Ready when the node at `url` is a standby receiving the primary's WAL.
async fn streaming(url: String) -> ProbeResult {
    let mut c = sqlx::PgConnection::connect(&url).await?;
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM pg_stat_wal_receiver")
        .fetch_optional(&mut c)
        .await?;
    match status.as_deref() {
        Some("streaming") => Ok(()),
        other => Err(format!("standby not streaming yet: {other:?}").into()),
    }
}
