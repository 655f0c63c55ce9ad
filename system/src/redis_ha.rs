//! Redis behind Sentinel, and appends that wait for a replica. With
//! `redis.sentinels` set, a component starts a [`Relay`]: a listener on
//! loopback that leads every connection to the primary the Sentinels name
//! now, and closes them all when the Sentinels name another ([`crate::relay`]). The component's
//! `redis.url` points at the relay, so every Redis connection rtmc makes (the
//! shared auto-reconnecting `ConnectionManager`, the blocking readers of the
//! fan-out and sync) follows a failover by reconnecting, without knowing
//! Sentinel exists. The redis crate's own Sentinel client resolves a
//! primary once and hands back a client fixed to that address, which the
//! reconnecting `ConnectionManager` cannot follow to a new one; hence the
//! relay. Its cost is one loopback hop per command, only when Sentinel is used.
//!
//! [`replicas_acked`] is the consumer's `WAIT`: an append is acked to
//! RabbitMQ only when `redis.min_replicas_acked` replicas hold it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, RedisConfig};
use crate::relay::Relay;

/// How often the relay asks the Sentinels which node is the primary. The
/// Sentinels themselves take `down-after-milliseconds` (seconds) to agree a
/// primary is down, so this adds little to a failover; it is no part of the
/// delivery path.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Bound on one question to one Sentinel.
const ASK_LIMIT: Duration = Duration::from_secs(1);

/// With `redis.sentinels` set: starts a relay to the primary the Sentinels
/// name and returns a configuration whose `redis.url` leads to it, with the
/// relay to keep for as long as the component runs. Without: `cfg` as it is.
/// Fails when no Sentinel names a primary.
pub async fn follow_master(
    cfg: Arc<Config>,
) -> Result<(Arc<Config>, Option<Relay>), redis::RedisError> {
    if cfg.redis.sentinels.is_empty() {
        return Ok((cfg, None));
    }
    let mut sentinels = Sentinels::new(&cfg.redis)?;
    let first = sentinels.master().await?;
    tracing::info!(primary = %first, master = %cfg.redis.master_name, "redis: primary found through sentinel");
    let relay = crate::relay::start(
        sentinels,
        first,
        POLL_INTERVAL,
        metrics::counter!("rtmc_redis_primary_switches_total"),
        metrics::counter!("rtmc_redis_relay_connect_failures_total"),
    )
    .await?;
    let mut relayed = (*cfg).clone();
    relayed.redis.url =
        crate::relay::with_address(cfg.redis.url.expose_secret(), &relay.addr).into();
    Ok((Arc::new(relayed), Some(relay)))
}

/// A client for the primary the Sentinels name now, with `redis.url`'s
/// credentials and database (the readiness check pings it).
pub async fn primary_client(cfg: &RedisConfig) -> Result<redis::Client, redis::RedisError> {
    let primary = Sentinels::new(cfg)?.master().await?;
    redis::Client::open(crate::relay::with_address(
        cfg.url.expose_secret(),
        &primary,
    ))
}

/// The Sentinels of `redis.sentinels`, asked in turn, starting with the one
/// that last answered.
struct Sentinels {
    /// `host:port` of each Sentinel.
    addresses: Vec<String>,
    /// `redis.master_name`.
    master_name: String,
    /// Index of the Sentinel that answered last, and its connection.
    last: Option<(usize, redis::aio::MultiplexedConnection)>,
}

impl Sentinels {
    fn new(cfg: &RedisConfig) -> Result<Sentinels, redis::RedisError> {
        if cfg.master_name.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "redis.sentinels is set but redis.master_name is empty",
            )));
        }
        Ok(Sentinels {
            addresses: cfg.sentinels.clone(),
            master_name: cfg.master_name.clone(),
            last: None,
        })
    }

    /// The primary's `host:port` as the first Sentinel that answers names
    /// it; the error names every Sentinel that did not.
    async fn master(&mut self) -> Result<String, redis::RedisError> {
        let first = self.last.as_ref().map_or(0, |(i, _)| *i);
        let mut errors = Vec::new();
        for k in 0..self.addresses.len() {
            let index = (first + k) % self.addresses.len();
            match tokio::time::timeout(ASK_LIMIT, self.ask(index)).await {
                Ok(Ok(primary)) => return Ok(primary),
                Ok(Err(e)) => errors.push(format!("{}: {e}", self.addresses[index])),
                Err(_) => errors.push(format!(
                    "{}: no answer within {ASK_LIMIT:?}",
                    self.addresses[index]
                )),
            }
            self.last = None;
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::MasterNameNotFoundBySentinel,
            "no sentinel named a primary",
            errors.join("; "),
        )))
    }

    /// `SENTINEL get-master-addr-by-name` on Sentinel `index`, over the
    /// kept connection when it is that Sentinel's.
    async fn ask(&mut self, index: usize) -> Result<String, redis::RedisError> {
        let mut conn = match self.last.take() {
            Some((i, conn)) if i == index => conn,
            _ => {
                let client = redis::Client::open(format!("redis://{}", self.addresses[index]))?;
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(ASK_LIMIT))
                    .set_response_timeout(Some(ASK_LIMIT));
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?
            }
        };
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(&mut conn)
            .await?;
        let (host, port) = named.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know redis.master_name",
            ))
        })?;
        self.last = Some((index, conn));
        Ok(format!("{host}:{port}"))
    }
}

impl crate::relay::PrimaryFinder for Sentinels {
    const STORE: &'static str = "redis";

    async fn primary(&mut self) -> Result<String, String> {
        self.master().await.map_err(|e| e.to_string())
    }
}

/// Why an append is not acked yet: fewer replicas than required hold it.
pub fn replica_shortfall(acked: i64, required: u32) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "too few replicas acknowledged the append",
        format!("{acked} of {required}"),
    ))
}

/// The name the consumer gives its connection before an append (`CLIENT
/// SETNAME`), so the `WAIT` after it can tell whether it still runs on the
/// same connection: a connection lost and re-made in between would have
/// `WAIT` count a fresh connection's writes (none) and pass. `None` when no
/// replica is required.
pub struct ConnectionMark(Option<String>);

/// Names the connection before an append, when replicas are required.
pub async fn mark_connection<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    cfg: &RedisConfig,
) -> Result<ConnectionMark, redis::RedisError> {
    if cfg.min_replicas_acked == 0 {
        return Ok(ConnectionMark(None));
    }
    let name = format!("rtmc-append-{}", uuid::Uuid::new_v4().simple());
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&name)
        .query_async::<()>(conn)
        .await?;
    Ok(ConnectionMark(Some(name)))
}

/// The consumer's `WAIT`: after an append on `conn` (named by `mark`),
/// waits up to `redis.replica_ack_timeout_ms` until
/// `redis.min_replicas_acked` replicas hold every write made on it. Fewer,
/// or a connection that is no longer the marked one, is an error (counted
/// and logged), so the consumer retries the append (deduplicated) and acks
/// nothing until a replica has it. With `min_replicas_acked` 0 it does
/// nothing.
pub async fn replicas_acked<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    cfg: &RedisConfig,
    mark: &ConnectionMark,
) -> Result<(), redis::RedisError> {
    let Some(marked) = &mark.0 else {
        return Ok(());
    };
    let (acked, name): (i64, Option<String>) = redis::pipe()
        .cmd("WAIT")
        .arg(cfg.min_replicas_acked)
        .arg(cfg.replica_ack_timeout_ms)
        .cmd("CLIENT")
        .arg("GETNAME")
        .query_async(conn)
        .await?;
    if name.as_ref() != Some(marked) {
        metrics::counter!("rtmc_consumer_replica_shortfalls_total").increment(1);
        tracing::warn!(
            "redis: the connection was re-made between the append and its WAIT; appending again"
        );
        return Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the connection was re-made between the append and its WAIT",
        )));
    }
    if acked >= i64::from(cfg.min_replicas_acked) {
        return Ok(());
    }
    metrics::counter!("rtmc_consumer_replica_shortfalls_total").increment(1);
    tracing::warn!(
        acked,
        required = cfg.min_replicas_acked,
        timeout_ms = cfg.replica_ack_timeout_ms,
        "redis: too few replicas acknowledged the append; not acking it to RabbitMQ"
    );
    Err(replica_shortfall(acked, cfg.min_replicas_acked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_without_a_master_name_are_refused() {
        let cfg = RedisConfig {
            sentinels: vec!["127.0.0.1:26379".into()],
            ..RedisConfig::default()
        };
        let e = Sentinels::new(&cfg).err().expect("refused");
        assert!(e.to_string().contains("master_name"), "{e}");
    }

    #[tokio::test]
    async fn without_sentinels_the_configuration_is_left_alone() {
        let cfg = Arc::new(Config::default());
        let (same, relay) = follow_master(cfg.clone()).await.unwrap();
        assert!(relay.is_none());
        assert!(Arc::ptr_eq(&cfg, &same));
    }

    #[tokio::test]
    async fn no_sentinel_answering_fails_with_every_address_named() {
        let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = unused.local_addr().unwrap().to_string();
        drop(unused);
        let mut cfg = Config::default();
        cfg.redis.sentinels = vec![addr.clone()];
        cfg.redis.master_name = "rtmc".into();
        let e = follow_master(Arc::new(cfg))
            .await
            .err()
            .expect("no sentinel");
        assert!(e.to_string().contains(&addr), "{e}");
    }
}
