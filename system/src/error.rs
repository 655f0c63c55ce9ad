//! Errors shared by several components. An error only one module returns
//! lives in that module (`ReplayError` in `replay`, `BrokerError` in
//! `broker`…); this file holds the few that two components share, so
//! neither has to borrow the other's.

/// Why a component (the TCP server, the HTTP gateway) could not start:
/// a dependency was unreachable, the listener failed, or the TLS files
/// could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("postgres: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}
