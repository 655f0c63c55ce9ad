//! The sync worker: copies the Redis message stream into PostgreSQL in
//! batches (one multi-row `UNNEST` insert), idempotent on the message id,
//! with its cursor written in the same transaction as the rows. Only then
//! does it trim Redis, and only below what PostgreSQL holds minus a
//! retention. A PostgreSQL outage delays the copy; Redis keeps everything
//! until it is committed, so nothing is lost. Lag is a metric.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::protocol::{BroadcastFrame, ServerFrame};
use crate::stream::{self, RedisKeys, StreamEntry};

/// Why one sync step failed (the worker retries with back-off).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stream entry {seq} is not a broadcast: {reason}")]
    BadEntry { seq: u64, reason: String },
}

/// The worker's state: connections and settings.
pub struct SyncWorker {
    pg: PgPool,
    redis: redis::aio::ConnectionManager,
    /// For XREAD BLOCK (no response timeout).
    blocking: Option<redis::aio::MultiplexedConnection>,
    redis_url: String,
    keys: RedisKeys,
    batch_max: usize,
    retention_messages: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStep {
    /// Stream entries copied in this step (already present rows included).
    pub copied: usize,
    /// Highest sequence number PostgreSQL holds after the step.
    pub cursor: u64,
}

impl SyncWorker {
    pub async fn connect(cfg: &Config) -> Result<Self, SyncError> {
        let pg = crate::db::connect(&cfg.postgres)
            .await
            .map_err(|e| match e {
                crate::db::DbError::Sql(s) => SyncError::Sql(s),
                other => SyncError::Sql(sqlx::Error::Protocol(other.to_string())),
            })?;
        Ok(Self {
            pg,
            redis: stream::managed_connection(cfg.redis.url.expose_secret()).await?,
            blocking: None,
            redis_url: cfg.redis.url.expose_secret().clone(),
            keys: RedisKeys::new(&cfg.redis.key_prefix),
            batch_max: cfg.sync.batch_max.max(1),
            retention_messages: cfg.sync.retention_messages,
        })
    }

    /// The highest sequence number copied so far.
    pub async fn cursor(&self) -> Result<u64, SyncError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT last_seq FROM sync_cursor WHERE stream = $1")
                .bind(self.keys.stream())
                .fetch_optional(&self.pg)
                .await?;
        Ok(row.map(|(s,)| s as u64).unwrap_or(0))
    }

    /// One step: waits up to `block_ms` for entries after the cursor, copies
    /// at most one batch in one transaction, then trims Redis.
    pub async fn step(&mut self, block_ms: u64) -> Result<SyncStep, SyncError> {
        let cursor = self.cursor().await?;
        let entries = if block_ms == 0 {
            stream::range_after(
                &mut self.redis,
                &self.keys,
                cursor,
                u64::MAX,
                self.batch_max,
            )
            .await?
        } else {
            let conn = match self.blocking.as_mut() {
                Some(c) => c,
                None => self
                    .blocking
                    .insert(stream::blocking_connection(&self.redis_url).await?),
            };
            match stream::read_after(conn, &self.keys, cursor, block_ms, self.batch_max).await {
                Ok(e) => e,
                Err(e) => {
                    self.blocking = None;
                    return Err(e.into());
                }
            }
        };
        let copied = entries.len();
        let cursor = if entries.is_empty() {
            cursor
        } else {
            self.copy(&entries).await?
        };
        self.trim(cursor).await?;
        let head = stream::head(&mut self.redis, &self.keys).await?;
        metrics::gauge!("rtmc_sync_lag_messages").set(head.saturating_sub(cursor) as f64);
        Ok(SyncStep { copied, cursor })
    }

    async fn copy(&mut self, entries: &[StreamEntry]) -> Result<u64, SyncError> {
        let n = entries.len();
        let (mut seqs, mut ids, mut senders, mut bodies, mut times, mut received) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in entries {
            let b = parse_entry(e)?;
            seqs.push(b.seq as i64);
            ids.push(b.message_id);
            senders.push(b.from);
            bodies.push(b.body);
            times.push(b.sent_at_us as i64);
            received.push(b.received_at_us as i64);
        }
        let last = entries.last().map(|e| e.seq).unwrap_or(0);
        let started = std::time::Instant::now();
        let mut tx = self.pg.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO messages (seq, message_id, sender, body, sent_at_us, received_at_us) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&seqs)
        .bind(&ids)
        .bind(&senders)
        .bind(&bodies)
        .bind(&times)
        .bind(&received)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO sync_cursor (stream, last_seq) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET last_seq = GREATEST(sync_cursor.last_seq, EXCLUDED.last_seq)",
        )
        .bind(self.keys.stream())
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::histogram!("rtmc_sync_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("rtmc_sync_rows_total").increment(inserted);
        Ok(last)
    }

    /// Drops stream entries PostgreSQL holds, keeping the newest
    /// `retention_messages` of them for fast resume.
    async fn trim(&mut self, cursor: u64) -> Result<(), SyncError> {
        let keep_from = cursor
            .saturating_add(1)
            .saturating_sub(self.retention_messages);
        if keep_from <= 1 {
            return Ok(());
        }
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(self.keys.stream())
            .arg("MINID")
            .arg(format!("{keep_from}-0"))
            .query_async(&mut self.redis)
            .await?;
        metrics::counter!("rtmc_sync_trimmed_total").increment(trimmed);
        Ok(())
    }
}

fn parse_entry(e: &StreamEntry) -> Result<BroadcastFrame, SyncError> {
    match ServerFrame::parse(&e.payload) {
        Ok(ServerFrame::Broadcast(b)) if b.seq == e.seq => Ok(b),
        Ok(_) => Err(SyncError::BadEntry {
            seq: e.seq,
            reason: "not a broadcast for this sequence number".into(),
        }),
        Err(err) => Err(SyncError::BadEntry {
            seq: e.seq,
            reason: err.to_string(),
        }),
    }
}

/// Runs the worker until `shutdown`, retrying failed steps with back-off.
pub async fn run(cfg: Arc<Config>, shutdown: CancellationToken) -> Result<(), SyncError> {
    crate::telemetry::metrics();
    let (cfg, _relay) = crate::redis_ha::follow_master(cfg).await?;
    let (cfg, _pg_relay) = crate::pg_ha::follow_primary(cfg).await?;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let connect = || SyncWorker::connect(&cfg);
    let on_error = |e: &SyncError, _| {
        tracing::warn!(
            error = %e,
            "sync worker cannot start yet (PostgreSQL at {}, Redis at {}); retrying",
            crate::config::service_address(cfg.postgres.url.expose_secret()),
            crate::config::service_address(cfg.redis.url.expose_secret())
        );
    };
    let Some(mut worker) = backoff.retry(&shutdown, connect, on_error).await else {
        return Ok(());
    };
    tracing::info!("sync worker running");
    backoff.reset();
    while !shutdown.is_cancelled() {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = worker.step(1_000) => s,
        };
        match step {
            Ok(_) => backoff.reset(),
            Err(e) => {
                metrics::counter!("rtmc_sync_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff.next_delay(), "sync step failed");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("sync worker stopped");
    Ok(())
}
