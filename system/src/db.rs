//! PostgreSQL: the connection pool, migrations, and the users table
//! (argon2 password hashes, presence).

use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, PasswordHash};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::PostgresConfig;
use crate::protocol::UserStatus;

/// Failure talking to PostgreSQL or hashing a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
}

/// Connects a pool and applies pending migrations.
pub async fn connect(cfg: &PostgresConfig) -> Result<PgPool, DbError> {
    let pool = connect_unmigrated(cfg).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Connects a pool and leaves the schema as it is: for a harness that lets
/// the `rtmc` binary under test (`rtmc migrate`) own the schema, so a test
/// kit built from newer sources never migrates an older binary's database.
pub async fn connect_unmigrated(cfg: &PostgresConfig) -> Result<PgPool, DbError> {
    let url = cfg.url.expose_secret();
    let pool = match PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
    {
        Ok(pool) => pool,
        // The pool only says it timed out; one direct attempt says why
        // (connection refused, authentication, no such database).
        Err(sqlx::Error::PoolTimedOut) => {
            use sqlx::Connection;
            return Err(match sqlx::PgConnection::connect(url).await {
                Err(e) => e.into(),
                Ok(_) => sqlx::Error::PoolTimedOut.into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(pool)
}

/// Applies this build's pending migrations. A database already migrated by
/// a newer rtmc (a rolling upgrade, where old nodes still run beside new
/// ones; or the latency gate running an older build) is accepted: this
/// build's own migrations are checked and applied, newer ones are left
/// alone. Migrations are additive (new tables, columns with defaults) so
/// that an older build keeps working on a newer schema.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// The id the deployment keeps for `stream` (made once, then read back by
/// every node): `login_ok.stream.id`. PostgreSQL keeps it across a loss of
/// Redis, so a client can tell "the same deployment lost its history" (a new
/// epoch) from "another deployment".
pub async fn stream_id(pool: &PgPool, stream: &str) -> Result<String, DbError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query("INSERT INTO stream_identity (stream, id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(stream)
        .bind(&fresh)
        .execute(pool)
        .await?;
    let (id,): (String,) = sqlx::query_as("SELECT id FROM stream_identity WHERE stream = $1")
        .bind(stream)
        .fetch_one(pool)
        .await?;
    Ok(id)
}

/// Cost of the argon2id hash stored for a new user. The verifier reads the
/// parameters from the stored hash, so users of different costs coexist.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
}

impl HashCost {
    /// argon2's recommended defaults (19 MiB, 2 passes).
    pub const DEFAULT: HashCost = HashCost {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
    /// For simulated users in tests and load runs: cheap on purpose, so ten
    /// thousand logins do not take minutes. Never for real accounts.
    pub const LOAD_TEST: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
}

pub fn hash_password(password: &str, cost: HashCost) -> Result<String, DbError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| DbError::Hash(e.to_string()))?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| DbError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Creates a user; fails with [`DbError::UserExists`] on a taken id.
pub async fn add_user(
    pool: &PgPool,
    user_id: &str,
    password: &str,
    cost: HashCost,
) -> Result<(), DbError> {
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw, cost))
        .await
        .map_err(|e| DbError::Hash(e.to_string()))??;
    let done = sqlx::query(
        "INSERT INTO users (user_id, password_hash) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(hash)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::UserExists(user_id.to_owned()));
    }
    Ok(())
}

/// Checks a password; `Ok(false)` for an unknown user or a wrong password.
/// The hash runs on the blocking pool so it never stalls the reactor.
pub async fn check_login(pool: &PgPool, user_id: &str, password: &str) -> Result<bool, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT password_hash FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    let Some((hash,)) = row else {
        return Ok(false);
    };
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .map_err(|e| DbError::Hash(e.to_string()))
}

/// Records a presence change; `offline` also stamps `last_seen`.
pub async fn set_status(
    pool: &PgPool,
    user_id: &str,
    status: UserStatus,
) -> Result<StatusChange, DbError> {
    // One round trip: the update, the status before it (every part of the
    // statement sees the same snapshot) and the user's rooms.
    let (before, rooms): (Option<String>, Vec<String>) = sqlx::query_as(
        "WITH before AS (SELECT status FROM users WHERE user_id = $1), \
         changed AS (UPDATE users SET status = $2, \
           last_seen = CASE WHEN $2 = 'offline' THEN now() ELSE last_seen END \
           WHERE user_id = $1 RETURNING 1) \
         SELECT (SELECT status FROM before), \
           COALESCE(ARRAY(SELECT room_id FROM room_members WHERE user_id = $1 ORDER BY room_id), '{}')",
    )
    .bind(user_id)
    .bind(status.as_str())
    .fetch_one(pool)
    .await?;
    Ok(StatusChange {
        changed: before.as_deref() != Some(status.as_str()),
        rooms,
    })
}

/// What [`set_status`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Whether the stored status was another one (or the user unknown).
    pub changed: bool,
    /// The user's rooms (the lobby aside): who shares a room with them may
    /// watch their presence.
    pub rooms: Vec<String>,
}

/// A user's stored presence, `None` for an unknown user.
pub async fn get_status(pool: &PgPool, user_id: &str) -> Result<Option<UserStatus>, DbError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT status FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.and_then(|(s,)| UserStatus::parse(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_reject() {
        let h = hash_password("secret", HashCost::LOAD_TEST).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert!(!verify_password("secret", "not a hash"));
    }
}
