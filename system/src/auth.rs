//! Password logins, the same for the TCP server and the HTTP gateway: the
//! user-id shape and the sender namespaces, the login throttle, the argon2
//! check, and counting a failure. Each edge turns a [`LoginRefused`] into
//! its own answer (an `error` frame, an HTTP status).
//!
//! Throttling never locks an owner out: failures are counted per
//! (user, source address) and per source address over all users, never per
//! user alone, so guessing from one address cannot stop the user logging in
//! from another.

use std::net::IpAddr;

use sqlx::PgPool;

use crate::config::ServerConfig;
use crate::db::DbError;
use crate::presence::{Presence, PresenceError};

pub use crate::identity::{
    service_sender, valid_sender, valid_user_id, MAX_USER_ID_BYTES, SERVICE_SENDER_PREFIX,
    USER_ID_RULE,
};

/// Compares a presented API key with the configured ones in time that does
/// not depend on where they differ.
pub fn api_key_matches<'a>(presented: &str, keys: impl IntoIterator<Item = &'a str>) -> bool {
    use subtle::ConstantTimeEq;
    let mut found = subtle::Choice::from(0);
    for k in keys {
        found |= k.as_bytes().ct_eq(presented.as_bytes());
    }
    found.into()
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginRefused {
    /// Too many recent failures for this user from this address, or from
    /// this address at all; the password was not checked.
    #[error("too many failed logins from this address; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
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

/// Checks `password` for `user_id` coming from `source`, unless that pair
/// or that source is throttled; a wrong password is counted for both.
pub async fn check_password(
    presence: &Presence,
    pg: &PgPool,
    limits: &ServerConfig,
    user_id: &str,
    password: &str,
    source: IpAddr,
) -> Result<(), LoginRefused> {
    match presence.login_throttled(user_id, source, limits).await {
        Ok(None) => {}
        Ok(Some(retry_after_secs)) => {
            metrics::counter!("rtmc_rate_limited_total", "kind" => "login").increment(1);
            return Err(LoginRefused::Throttled { retry_after_secs });
        }
        Err(e) => return Err(LoginRefused::ThrottleUnavailable(e)),
    }
    match crate::db::check_login(pg, user_id, password).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            let window = limits.login_failure_window_secs;
            if let Err(e) = presence.record_login_failure(user_id, source, window).await {
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
    fn api_keys_compare_whole() {
        let keys = ["k1-secret", "k2-secret"];
        assert!(api_key_matches("k2-secret", keys));
        assert!(!api_key_matches("k2-secre", keys));
        assert!(!api_key_matches("k2-secrett", keys));
        assert!(!api_key_matches("", keys));
        assert!(!api_key_matches("k1-secret", []));
    }
}
