//! Errors shared by several components. An error only one module returns
//! lives in that module (`ReplayError` in `replay`, `BrokerError` in
//! `broker`…); this file holds the few that two components share, so
//! neither has to borrow the other's.

/// Why a component (the TCP server, the HTTP gateway) could not start:
/// a dependency was unreachable, the listener failed, or the TLS files
/// could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A dependency could not be reached at start-up: which one, where.
    #[error("could not connect to {service} at {addr}: {reason}")]
    Connect {
        service: &'static str,
        addr: String,
        reason: String,
    },
    #[error("postgres: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl StartError {
    /// `service` (as people name it: "PostgreSQL") at the address of `url`
    /// (credentials left out) failed with `reason`.
    pub fn connect(service: &'static str, url: &str, reason: impl std::fmt::Display) -> Self {
        StartError::Connect {
            service,
            addr: crate::config::service_address(url),
            reason: reason.to_string(),
        }
    }
}
