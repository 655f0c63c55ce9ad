//! Sessions and presence. A session token lives in Redis with a TTL that
//! heartbeats refresh; presence is cached in Redis in front of PostgreSQL
//! (cache-aside: read Redis, fall back to PostgreSQL on a miss, refill).

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sqlx::PgPool;

use crate::db::{self, DbError};
use crate::protocol::UserStatus;
use crate::stream::RedisKeys;

/// Failure of a session or presence operation.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where presence lives and for how long it is cached.
#[derive(Clone)]
pub struct Presence {
    pub redis: ConnectionManager,
    pub pg: PgPool,
    pub keys: RedisKeys,
    /// TTL of session keys, refreshed by each heartbeat.
    pub session_ttl_secs: u64,
    /// TTL of cached presence entries.
    pub status_ttl_secs: u64,
}

impl Presence {
    /// Starts a session: a fresh token bound to the user, and status online.
    pub async fn open_session(&self, user_id: &str) -> Result<String, PresenceError> {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut r = self.redis.clone();
        let _: () = r
            .set_ex(self.keys.session(&token), user_id, self.session_ttl_secs)
            .await?;
        self.set_status(user_id, UserStatus::Online).await?;
        Ok(token)
    }

    /// Keeps a session alive for another TTL.
    pub async fn refresh_session(&self, token: &str) -> Result<(), PresenceError> {
        let mut r = self.redis.clone();
        let _: bool = r
            .expire(self.keys.session(token), self.session_ttl_secs as i64)
            .await?;
        Ok(())
    }

    /// Ends a session: the token is deleted and the user marked offline
    /// (PostgreSQL stamps `last_seen`).
    pub async fn close_session(&self, token: &str, user_id: &str) -> Result<(), PresenceError> {
        let mut r = self.redis.clone();
        let _: () = r.del(self.keys.session(token)).await?;
        self.set_status(user_id, UserStatus::Offline).await?;
        Ok(())
    }

    /// The user a session token belongs to, if the session is alive.
    pub async fn session_user(&self, token: &str) -> Result<Option<String>, PresenceError> {
        let mut r = self.redis.clone();
        Ok(r.get(self.keys.session(token)).await?)
    }

    /// Writes presence to PostgreSQL, then to the cache.
    pub async fn set_status(&self, user_id: &str, status: UserStatus) -> Result<(), PresenceError> {
        db::set_status(&self.pg, user_id, status).await?;
        let mut r = self.redis.clone();
        let _: () = r
            .set_ex(
                self.keys.status(user_id),
                status.as_str(),
                self.status_ttl_secs,
            )
            .await?;
        Ok(())
    }

    /// Reads presence cache-aside; `None` for an unknown user.
    pub async fn get_status(&self, user_id: &str) -> Result<Option<UserStatus>, PresenceError> {
        let mut r = self.redis.clone();
        let cached: Option<String> = r.get(self.keys.status(user_id)).await?;
        if let Some(s) = cached.as_deref().and_then(UserStatus::parse) {
            metrics::counter!("rtmc_status_cache_total", "result" => "hit").increment(1);
            return Ok(Some(s));
        }
        metrics::counter!("rtmc_status_cache_total", "result" => "miss").increment(1);
        let stored = db::get_status(&self.pg, user_id).await?;
        if let Some(s) = stored {
            let _: () = r
                .set_ex(self.keys.status(user_id), s.as_str(), self.status_ttl_secs)
                .await?;
        }
        Ok(stored)
    }
}
