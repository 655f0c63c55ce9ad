//! The sync worker: copies the Redis message stream into PostgreSQL in
//! batches (one multi-row `UNNEST` insert), idempotent on the message id,
//! with its cursor written in the same transaction as the rows. Only then
//! does it trim Redis, and only below what PostgreSQL holds minus a
//! retention. A PostgreSQL outage delays the copy; Redis keeps everything
//! until it is committed, so nothing is lost. Lag is a metric.
//!
//! Rooms: each shard stream is copied the same way into `room_messages`
//! (membership entries only move its cursor, kept in `sync_cursor` under
//! the shard stream's key), then the shard stream and the room logs it
//! copied are trimmed, each keeping its newest `retention_messages`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::protocol::{BroadcastFrame, ServerFrame};
use crate::stream::{self, RedisKeys, ShardEntry, ShardEvent, StreamEntry};

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
    /// `rooms.shards`: the shard streams copied besides the lobby's stream.
    shards: u32,
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
            shards: cfg.rooms.shards.max(1),
        })
    }

    /// The highest sequence number copied so far.
    pub async fn cursor(&self) -> Result<u64, SyncError> {
        self.cursor_of(&self.keys.stream()).await
    }

    /// The highest entry of stream `key` copied so far (0: none).
    async fn cursor_of(&self, key: &str) -> Result<u64, SyncError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT last_seq FROM sync_cursor WHERE stream = $1")
                .bind(key)
                .fetch_optional(&self.pg)
                .await?;
        Ok(row.map(|(s,)| s as u64).unwrap_or(0))
    }

    /// The highest shard seq of shard `shard`'s stream copied so far.
    pub async fn shard_cursor(&self, shard: u32) -> Result<u64, SyncError> {
        self.cursor_of(&self.keys.shard_stream(shard)).await
    }

    /// One step over the rooms: per shard stream, copies at most one batch
    /// after its cursor (room messages into `room_messages`; membership
    /// entries only move the cursor) in one transaction, then trims the
    /// shard stream and the room logs it copied. Does not block. Returns
    /// the shard stream entries copied.
    pub async fn step_rooms(&mut self) -> Result<usize, SyncError> {
        let mut copied = 0;
        let mut lag = 0;
        let heads = stream::shard_heads(&mut self.redis, &self.keys, self.shards).await?;
        for (shard, head) in (0..self.shards).zip(heads) {
            let cursor = self.shard_cursor(shard).await?;
            let entries = stream::shard_range_after(
                &mut self.redis,
                &self.keys,
                shard,
                cursor,
                self.batch_max,
            )
            .await?;
            let cursor = match entries.last() {
                Some(last) => {
                    let last = last.shard_seq;
                    let synced = self.copy_rooms(shard, last, &entries).await?;
                    self.trim_rooms(shard, &synced).await?;
                    last
                }
                None => cursor,
            };
            copied += entries.len();
            self.trim_stream(&self.keys.shard_stream(shard), cursor)
                .await?;
            lag += head.saturating_sub(cursor);
        }
        metrics::gauge!("rtmc_sync_room_lag_messages").set(lag as f64);
        Ok(copied)
    }

    /// Copies the room messages among `entries` (of shard `shard`, up to
    /// shard seq `last`) and moves the shard's cursor, in one transaction.
    /// Returns the highest room seq copied per room.
    async fn copy_rooms(
        &mut self,
        shard: u32,
        last: u64,
        entries: &[ShardEntry],
    ) -> Result<BTreeMap<String, u64>, SyncError> {
        let rows = RoomRows::of(entries)?;
        let started = std::time::Instant::now();
        let mut tx = self.pg.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO room_messages (room_id, seq, message_id, sender, body, sent_at_us, received_at_us) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&rows.rooms)
        .bind(&rows.seqs)
        .bind(&rows.ids)
        .bind(&rows.senders)
        .bind(&rows.bodies)
        .bind(&rows.sent)
        .bind(&rows.received)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        save_cursor(&mut tx, &self.keys.shard_stream(shard), last).await?;
        tx.commit().await?;
        metrics::histogram!("rtmc_sync_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("rtmc_sync_rows_total").increment(inserted);
        let mut synced = BTreeMap::new();
        for (room, seq) in rows.rooms.into_iter().zip(rows.seqs) {
            let top = synced.entry(room).or_insert(0);
            *top = (*top).max(seq as u64);
        }
        Ok(synced)
    }

    /// Trims each room log in `synced` below its highest copied room seq
    /// minus `retention_messages`.
    async fn trim_rooms(
        &mut self,
        shard: u32,
        synced: &BTreeMap<String, u64>,
    ) -> Result<(), SyncError> {
        for (room, &top) in synced {
            self.trim_stream(&self.keys.room_log(shard, room), top)
                .await?;
        }
        Ok(())
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
        save_cursor(&mut tx, &self.keys.stream(), last).await?;
        tx.commit().await?;
        metrics::histogram!("rtmc_sync_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("rtmc_sync_rows_total").increment(inserted);
        Ok(last)
    }

    /// Drops stream entries PostgreSQL holds, keeping the newest
    /// `retention_messages` of them for fast resume.
    async fn trim(&mut self, cursor: u64) -> Result<(), SyncError> {
        self.trim_stream(&self.keys.stream(), cursor).await
    }

    /// Drops the entries of the `<seq>-0`-keyed stream `key` up to `cursor`
    /// (what PostgreSQL holds), but the newest `retention_messages`.
    async fn trim_stream(&self, key: &str, cursor: u64) -> Result<(), SyncError> {
        let keep_from = cursor
            .saturating_add(1)
            .saturating_sub(self.retention_messages);
        if keep_from <= 1 {
            return Ok(());
        }
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(key)
            .arg("MINID")
            .arg(format!("{keep_from}-0"))
            .query_async(&mut self.redis.clone())
            .await?;
        metrics::counter!("rtmc_sync_trimmed_total").increment(trimmed);
        Ok(())
    }
}

/// Records in `tx` that `stream` is copied up to `last` (never backwards).
async fn save_cursor(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    stream: &str,
    last: u64,
) -> Result<(), SyncError> {
    sqlx::query(
        "INSERT INTO sync_cursor (stream, last_seq) VALUES ($1, $2) \
         ON CONFLICT (stream) DO UPDATE SET last_seq = GREATEST(sync_cursor.last_seq, EXCLUDED.last_seq)",
    )
    .bind(stream)
    .bind(last as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A room message's `broadcast` JSON as the sync worker reads it.
#[derive(Debug, serde::Deserialize)]
struct RoomBroadcast {
    seq: u64,
    message_id: String,
    from: String,
    body: String,
    #[serde(default)]
    received_at_us: u64,
    sent_at_us: u64,
    room: String,
}

/// The columns of one multi-row insert into `room_messages`.
#[derive(Default)]
struct RoomRows {
    rooms: Vec<String>,
    seqs: Vec<i64>,
    ids: Vec<String>,
    senders: Vec<String>,
    bodies: Vec<String>,
    sent: Vec<i64>,
    received: Vec<i64>,
}

impl RoomRows {
    /// The room messages of `entries` (membership entries are skipped); an
    /// entry whose JSON disagrees with its room or seq is an error.
    fn of(entries: &[ShardEntry]) -> Result<Self, SyncError> {
        let mut rows = RoomRows::default();
        for e in entries {
            let ShardEvent::Message { room, seq, payload } = &e.event else {
                continue;
            };
            let bad = |reason: String| SyncError::BadEntry {
                seq: e.shard_seq,
                reason,
            };
            let b: RoomBroadcast =
                serde_json::from_slice(payload).map_err(|err| bad(err.to_string()))?;
            if b.seq != *seq || &b.room != room {
                return Err(bad(format!(
                    "a broadcast of another room or seq than {room} {seq}"
                )));
            }
            rows.rooms.push(b.room);
            rows.seqs.push(b.seq as i64);
            rows.ids.push(b.message_id);
            rows.senders.push(b.from);
            rows.bodies.push(b.body);
            rows.sent.push(b.sent_at_us as i64);
            rows.received.push(b.received_at_us as i64);
        }
        Ok(rows)
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

/// How long a step waits for lobby entries when the rooms had none either:
/// also the longest a room message waits to be copied when all is idle.
const IDLE_BLOCK_MS: u64 = 1_000;

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
    // Blocks on the lobby's stream only while the rooms are idle too: a
    // step that copied room entries makes the next one not wait.
    let mut block_ms = IDLE_BLOCK_MS;
    while !shutdown.is_cancelled() {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = worker.step(block_ms) => s,
        };
        let step = match step {
            Ok(_) => worker.step_rooms().await,
            Err(e) => Err(e),
        };
        match step {
            Ok(rooms_copied) => {
                block_ms = if rooms_copied > 0 { 0 } else { IDLE_BLOCK_MS };
                backoff.reset()
            }
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
