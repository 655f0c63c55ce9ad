//! What every session of one server node shares: its connections to
//! PostgreSQL, Redis and the broker, the presence store, the fan-out ring,
//! the room registry and the login gate. Built once, when the node starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use super::fanout::Fanout;
use super::rooms::{RoomRegistry, SessionId};
use crate::broker::Publisher;
use crate::config::Config;
use crate::error::StartError;
use crate::presence::Presence;
use crate::stream::{self, RedisKeys};

/// Largest replay served to one `resume`.
pub(super) const MAX_REPLAY_MESSAGES: u64 = 200_000;

/// What every session of this node shares.
pub(super) struct NodeContext {
    pub cfg: Arc<Config>,
    pub pg: PgPool,
    pub redis: ConnectionManager,
    pub keys: RedisKeys,
    /// The deployment's stream id (`login_ok.stream.id`).
    pub stream_id: String,
    pub publisher: Arc<Publisher>,
    pub presence: Presence,
    pub fanout: Fanout,
    /// Which local v2 sessions receive which room.
    pub rooms: RoomRegistry,
    /// The next session's id in the room registry.
    next_session_id: AtomicU64,
    /// Logins doing database work at once (the pool size): a login storm
    /// queues here, within each connection's login deadline, instead of
    /// timing out on the pool.
    pub login_gate: Semaphore,
}

impl NodeContext {
    /// Connects to PostgreSQL and Redis and starts the fan-out ring at the
    /// stream's current head. The broker is connected lazily, on first use.
    pub async fn connect(cfg: Arc<Config>) -> Result<Self, StartError> {
        let pg_url = cfg.postgres.url.expose_secret();
        let pg = crate::db::connect(&cfg.postgres)
            .await
            .map_err(|e| StartError::connect("PostgreSQL", pg_url, e))?;
        let redis_url = cfg.redis.url.expose_secret();
        let mut redis = stream::managed_connection(redis_url)
            .await
            .map_err(|e| StartError::connect("Redis", redis_url, e))?;
        let keys = RedisKeys::new(&cfg.redis.key_prefix);
        let start = stream::head(&mut redis, &keys).await?;
        let stream_id = crate::db::stream_id(&pg, &keys.stream()).await?;
        Ok(Self {
            stream_id,
            fanout: Fanout::new(cfg.server.outbound_queue_frames, start),
            presence: Presence::from_config(&cfg, redis.clone(), pg.clone()),
            publisher: Arc::new(Publisher::for_config(&cfg)),
            rooms: RoomRegistry::new(),
            next_session_id: AtomicU64::new(1),
            login_gate: Semaphore::new(cfg.postgres.max_connections.max(1) as usize),
            cfg,
            pg,
            redis,
            keys,
        })
    }

    /// A new session id, unique on this node while it runs.
    pub fn session_id(&self) -> SessionId {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The deployment's room shard count (`rooms.shards`).
    pub fn shards(&self) -> u32 {
        self.cfg.rooms.shards
    }
}
