//! PostgreSQL with a standby and an automatic failover manager: with
//! `postgres.urls` set, a component finds the node that takes writes (not
//! in recovery, and not read-only: pg_auto_failover keeps a just-promoted
//! standby read-only until the old primary is known to be gone) and reaches
//! it through a [`crate::relay`], which closes every connection when
//! another node takes over. The component's `postgres.url` points at the
//! relay, so sqlx's pool reconnects to the new primary by itself.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::relay::Relay;
use crate::secret::Secret;
use sqlx::{Connection, PgConnection};

/// How often the watcher checks that the primary still takes writes. A
/// failover manager takes seconds to promote a standby; this adds little.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Bound on connecting to one node and asking it.
const ASK_LIMIT: Duration = Duration::from_secs(2);

/// The question that finds the primary.
const TAKES_WRITES: &str =
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'";

/// With `postgres.urls` set: finds the node that takes writes, starts a
/// relay to it and returns a configuration whose `postgres.url` leads to it
/// (user, database and parameters from the first of `postgres.urls`), with
/// the relay to keep for as long as the component runs. Without: `cfg` as
/// it is. Fails when no node takes writes.
pub async fn follow_primary(cfg: Arc<Config>) -> Result<(Arc<Config>, Option<Relay>), sqlx::Error> {
    if cfg.postgres.urls.is_empty() {
        return Ok((cfg, None));
    }
    let mut nodes = Nodes::new(cfg.postgres.urls.clone());
    let first = nodes.primary().await?;
    tracing::info!(primary = %first, "postgres: the node that takes writes");
    let relay = crate::relay::start(
        nodes,
        first,
        CHECK_INTERVAL,
        metrics::counter!("rtmc_postgres_primary_switches_total"),
        metrics::counter!("rtmc_postgres_relay_connect_failures_total"),
    )
    .await?;
    let mut relayed = (*cfg).clone();
    let template = cfg.postgres.urls[0].expose_secret();
    relayed.postgres.url = crate::relay::with_address(template, &relay.addr).into();
    Ok((Arc::new(relayed), Some(relay)))
}

/// The `host:port` of the node of `urls` that takes writes now (the
/// readiness check asks it).
pub async fn primary_address(urls: Vec<Secret<String>>) -> Result<String, sqlx::Error> {
    Nodes::new(urls).primary().await
}

/// The nodes of `postgres.urls`, and a connection to the one that took
/// writes when last asked.
struct Nodes {
    /// Each node's URL.
    urls: Vec<Secret<String>>,
    /// The node that took writes when last asked, and a connection to it.
    current: Option<(usize, PgConnection)>,
}

impl Nodes {
    fn new(urls: Vec<Secret<String>>) -> Nodes {
        Nodes {
            urls,
            current: None,
        }
    }

    /// The `host:port` of the node that takes writes: the one that did last
    /// time if it still does, else the first in order that does. The error
    /// names every node that did not (by address, never by URL).
    async fn primary(&mut self) -> Result<String, sqlx::Error> {
        if let Some((index, mut conn)) = self.current.take() {
            if let Ok(Ok(true)) = tokio::time::timeout(ASK_LIMIT, takes_writes(&mut conn)).await {
                self.current = Some((index, conn));
                return Ok(self.address(index));
            }
        }
        let mut refusals = Vec::new();
        for index in 0..self.urls.len() {
            let asked = tokio::time::timeout(ASK_LIMIT, async {
                let mut conn = PgConnection::connect(self.urls[index].expose_secret()).await?;
                let writes = takes_writes(&mut conn).await?;
                Ok::<_, sqlx::Error>((conn, writes))
            });
            match asked.await {
                Ok(Ok((conn, true))) => {
                    self.current = Some((index, conn));
                    return Ok(self.address(index));
                }
                Ok(Ok((_, false))) => refusals.push(format!("{}: read-only", self.address(index))),
                Ok(Err(e)) => refusals.push(format!("{}: {e}", self.address(index))),
                Err(_) => refusals.push(format!(
                    "{}: no answer within {ASK_LIMIT:?}",
                    self.address(index)
                )),
            }
        }
        Err(sqlx::Error::Protocol(format!(
            "no PostgreSQL node takes writes: {}",
            refusals.join("; ")
        )))
    }

    fn address(&self, index: usize) -> String {
        crate::config::service_address(self.urls[index].expose_secret())
    }
}

async fn takes_writes(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(TAKES_WRITES).fetch_one(conn).await
}

impl crate::relay::PrimaryFinder for Nodes {
    const STORE: &'static str = "postgres";

    async fn primary(&mut self) -> Result<String, String> {
        Nodes::primary(self).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_urls_the_configuration_is_left_alone() {
        let cfg = Arc::new(Config::default());
        let (same, relay) = follow_primary(cfg.clone()).await.unwrap();
        assert!(relay.is_none());
        assert!(Arc::ptr_eq(&cfg, &same));
    }

    #[tokio::test]
    async fn no_node_answering_fails_naming_each_address_without_credentials() {
        let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = unused.local_addr().unwrap().to_string();
        drop(unused);
        let mut cfg = Config::default();
        cfg.postgres.urls = vec![format!("postgres://rtmc:secret@{addr}/rtmc").into()];
        let e = follow_primary(Arc::new(cfg)).await.err().expect("no node");
        let text = e.to_string();
        assert!(text.contains(&addr) && !text.contains("secret"), "{text}");
    }
}
