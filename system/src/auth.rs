//! Password logins, the same for the TCP server and the HTTP gateway: the
//! user-id shape, the per-user throttle after repeated failures, the argon2
//! check, and counting a failure. Each edge turns a [`LoginRefused`] into
//! its own answer (an `error` frame, an HTTP status).

use sqlx::PgPool;

use crate::config::ServerConfig;
use crate::db::DbError;
use crate::presence::{Presence, PresenceError};

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

/// A user id is 1–128 bytes.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty() && user_id.len() <= MAX_USER_ID_BYTES
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginRefused {
    /// Too many recent failures for this user; the password was not checked.
    #[error("too many failed logins for this user; try again later")]
    Throttled,
    /// Unknown user or wrong password; counted towards the throttle.
    #[error("wrong user id or password")]
    WrongPassword,
    /// The throttle counters (Redis) did not answer.
    #[error("{0}")]
    ThrottleUnavailable(PresenceError),
    /// The users table (PostgreSQL) did not answer.
    #[error("{0}")]
    DatabaseUnavailable(DbError),
}

/// Checks `password` for `user_id`, unless the user is throttled; a wrong
/// password is counted in the user's failure window.
pub async fn check_password(
    presence: &Presence,
    pg: &PgPool,
    limits: &ServerConfig,
    user_id: &str,
    password: &str,
) -> Result<(), LoginRefused> {
    match presence
        .login_throttled(user_id, limits.max_login_failures)
        .await
    {
        Ok(false) => {}
        Ok(true) => {
            metrics::counter!("rtmc_rate_limited_total", "kind" => "login").increment(1);
            return Err(LoginRefused::Throttled);
        }
        Err(e) => return Err(LoginRefused::ThrottleUnavailable(e)),
    }
    match crate::db::check_login(pg, user_id, password).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            let window = limits.login_failure_window_secs;
            if let Err(e) = presence.record_login_failure(user_id, window).await {
                tracing::warn!(error = %e, "could not record a failed login");
            }
            Err(LoginRefused::WrongPassword)
        }
        Err(e) => Err(LoginRefused::DatabaseUnavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_one_to_128_bytes() {
        assert!(!valid_user_id(""));
        assert!(valid_user_id("a"));
        assert!(valid_user_id(&"a".repeat(128)));
        assert!(!valid_user_id(&"a".repeat(129)));
    }
}
