//! Sessions and presence. A session token lives in Redis with a TTL that
//! any frame from the client refreshes; presence is cached in Redis in front of PostgreSQL
//! (cache-aside: read Redis, fall back to PostgreSQL on a miss, refill).

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sqlx::PgPool;

use crate::db::{self, DbError};
use crate::presence_feed::{self, PresenceChange};
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

/// What a session is for: a TCP session is a user's presence; an HTTP
/// session only authorizes gateway requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Tcp,
    Http,
}

/// Where sessions and presence live.
///
/// Redis keys: `session:<token>` → user (TTL), `sessions` (sorted set of
/// live TCP sessions `<token>:<user>` scored by expiry in ms), and
/// `user_sessions:<user>` (that user's live TCP tokens). A user is offline
/// once their last TCP session ends — by logout, disconnect, heartbeat
/// timeout, or, when the node died, by any node's [`Presence::sweep`].
#[derive(Clone)]
pub struct Presence {
    pub redis: ConnectionManager,
    pub pg: PgPool,
    pub keys: RedisKeys,
    /// Lifetime of a TCP session without a refresh (heartbeat timeout + interval).
    pub tcp_session_ttl_ms: u64,
    /// Lifetime of an HTTP session token without use.
    pub http_session_ttl_ms: u64,
    /// TTL of cached presence entries.
    pub status_ttl_secs: u64,
}

fn now_ms() -> u64 {
    crate::protocol::now_us() / 1000
}

impl Presence {
    pub fn from_config(cfg: &crate::config::Config, redis: ConnectionManager, pg: PgPool) -> Self {
        Self {
            redis,
            pg,
            keys: RedisKeys::new(&cfg.redis.key_prefix),
            // Timeout plus one interval: the node's own heartbeat deadline
            // always ends a live connection before the sweep could.
            tcp_session_ttl_ms: cfg.server.heartbeat_timeout_ms + cfg.server.heartbeat_interval_ms,
            http_session_ttl_ms: cfg.redis.http_session_ttl_secs * 1000,
            status_ttl_secs: cfg.redis.status_ttl_secs,
        }
    }

    fn ttl_ms(&self, kind: SessionKind) -> u64 {
        match kind {
            SessionKind::Tcp => self.tcp_session_ttl_ms,
            SessionKind::Http => self.http_session_ttl_ms,
        }
        .max(1)
    }

    /// Starts a session and returns its token; a TCP session sets the user online.
    pub async fn open_session(
        &self,
        user_id: &str,
        kind: SessionKind,
    ) -> Result<String, PresenceError> {
        // The first character tells the kind apart (`t` TCP, `h` HTTP).
        let kind_tag = match kind {
            SessionKind::Tcp => 't',
            SessionKind::Http => 'h',
        };
        let token = format!(
            "{kind_tag}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let ttl = self.ttl_ms(kind);
        let mut r = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.keys.session(&token))
            .arg(user_id)
            .arg("PX")
            .arg(ttl)
            .ignore();
        if kind == SessionKind::Tcp {
            pipe.zadd(
                self.keys.sessions(),
                format!("{token}:{user_id}"),
                now_ms() + ttl,
            )
            .ignore()
            .sadd(self.keys.user_sessions(user_id), &token)
            .ignore();
        }
        let _: () = pipe.query_async(&mut r).await?;
        if kind == SessionKind::Tcp {
            self.set_status(user_id, UserStatus::Online).await?;
        }
        metrics::counter!("rtmc_sessions_opened_total").increment(1);
        Ok(token)
    }

    /// Keeps a session alive for another TTL.
    pub async fn refresh_session(
        &self,
        token: &str,
        user_id: &str,
        kind: SessionKind,
    ) -> Result<(), PresenceError> {
        let ttl = self.ttl_ms(kind);
        let mut r = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("PEXPIRE")
            .arg(self.keys.session(token))
            .arg(ttl)
            .ignore();
        if kind == SessionKind::Tcp {
            pipe.cmd("ZADD")
                .arg(self.keys.sessions())
                .arg("XX")
                .arg(now_ms() + ttl)
                .arg(format!("{token}:{user_id}"))
                .ignore();
        }
        let _: () = pipe.query_async(&mut r).await?;
        Ok(())
    }

    /// Ends a TCP session: the token is deleted, and when it was the user's
    /// last session the user is marked offline (PostgreSQL stamps `last_seen`).
    pub async fn close_session(&self, token: &str, user_id: &str) -> Result<(), PresenceError> {
        let mut r = self.redis.clone();
        let (_, _, _, left): ((), (), (), u64) = redis::pipe()
            .atomic()
            .del(self.keys.session(token))
            .zrem(self.keys.sessions(), format!("{token}:{user_id}"))
            .srem(self.keys.user_sessions(user_id), token)
            .scard(self.keys.user_sessions(user_id))
            .query_async(&mut r)
            .await?;
        if left == 0 {
            self.set_status(user_id, UserStatus::Offline).await?;
        }
        metrics::counter!("rtmc_sessions_closed_total").increment(1);
        Ok(())
    }

    /// Ends every TCP session whose TTL passed without a refresh — sessions
    /// of a node that died. Safe to run on every node at once: the sorted-set
    /// removal decides which node cleans each one up. Returns how many ended.
    pub async fn sweep(&self, max: usize) -> Result<usize, PresenceError> {
        let mut r = self.redis.clone();
        let expired: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.sessions())
            .arg("-inf")
            .arg(now_ms())
            .arg("LIMIT")
            .arg(0)
            .arg(max)
            .query_async(&mut r)
            .await?;
        let mut ended = 0;
        for member in expired {
            let Some((token, user)) = member.split_once(':') else {
                continue;
            };
            let removed: u64 = r.zrem(self.keys.sessions(), &member).await?;
            if removed == 1 {
                self.close_session(token, user).await?;
                metrics::counter!("rtmc_sessions_expired_total").increment(1);
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Whether logins for `user_id` from `source` are currently refused:
    /// too many failures for that pair (`max_login_failures`), or from that
    /// address for all users (`max_login_failures_per_source`). A limit of 0
    /// disables its check. No per-user count exists, so nobody can lock a
    /// user out by failing logins for them from elsewhere. `Some(secs)`
    /// when refused: seconds until the counts that refuse it expire (at
    /// least 1).
    pub async fn login_throttled(
        &self,
        user_id: &str,
        source: std::net::IpAddr,
        limits: &crate::config::ServerConfig,
    ) -> Result<Option<u64>, PresenceError> {
        let mut r = self.redis.clone();
        let (pair_key, from_key) = (
            self.keys.login_failures(user_id, source),
            self.keys.login_failures_from(source),
        );
        let (pair, from, pair_ttl, from_ttl): (Option<u32>, Option<u32>, i64, i64) = redis::pipe()
            .get(&pair_key)
            .get(&from_key)
            .ttl(&pair_key)
            .ttl(&from_key)
            .query_async(&mut r)
            .await?;
        let over = |n: Option<u32>, max: u32| max > 0 && n.unwrap_or(0) >= max;
        let waits = [
            (over(pair, limits.max_login_failures), pair_ttl),
            (over(from, limits.max_login_failures_per_source), from_ttl),
        ];
        Ok(waits
            .iter()
            .filter(|(refused, _)| *refused)
            .map(|&(_, ttl)| ttl.max(1) as u64)
            .max())
    }

    /// Counts a failed login for `user_id` from `source` in the current
    /// window, for the pair and for the source.
    pub async fn record_login_failure(
        &self,
        user_id: &str,
        source: std::net::IpAddr,
        window_secs: u64,
    ) -> Result<(), PresenceError> {
        let mut r = self.redis.clone();
        let keys = [
            self.keys.login_failures(user_id, source),
            self.keys.login_failures_from(source),
        ];
        // One transaction: a counter never exists without its expiry.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in &keys {
            pipe.incr(key, 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(key)
                .arg(window_secs.max(1))
                .arg("NX")
                .ignore();
        }
        let _: () = pipe.query_async(&mut r).await?;
        Ok(())
    }

    /// The kind of session a token was issued for.
    pub fn token_kind(token: &str) -> SessionKind {
        if token.starts_with('h') {
            SessionKind::Http
        } else {
            SessionKind::Tcp
        }
    }

    /// The user a session token belongs to, if the session is alive.
    pub async fn session_user(&self, token: &str) -> Result<Option<String>, PresenceError> {
        let mut r = self.redis.clone();
        Ok(r.get(self.keys.session(token)).await?)
    }

    /// Whether the user has a live TCP session anywhere.
    pub async fn has_live_session(&self, user_id: &str) -> Result<bool, PresenceError> {
        let mut r = self.redis.clone();
        let n: u64 = r.scard(self.keys.user_sessions(user_id)).await?;
        Ok(n > 0)
    }

    /// Writes presence to PostgreSQL, then to the cache; a change of a user
    /// who is in rooms goes into the presence stream too.
    pub async fn set_status(&self, user_id: &str, status: UserStatus) -> Result<(), PresenceError> {
        let change = db::set_status(&self.pg, user_id, status).await?;
        let mut r = self.redis.clone();
        let _: () = r
            .set_ex(
                self.keys.status(user_id),
                status.as_str(),
                self.status_ttl_secs,
            )
            .await?;
        // News for whoever watches presence in the user's rooms.
        if change.changed && !change.rooms.is_empty() {
            let news = PresenceChange {
                user: user_id.to_owned(),
                status,
                rooms: change.rooms,
            };
            presence_feed::record(&mut r, &self.keys, &news).await?;
        }
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
