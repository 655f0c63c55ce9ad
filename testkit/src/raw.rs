//! Frame-level access to a server node, for suites that test the protocol
//! itself (bad input, limits, resume frames, TLS, stalled readers): they need
//! a bare framed [`Connection`] rather than a [`ChatClient`], and all of them
//! share one step — logging a kit user in and reading its `login_ok`.
//!
//! [`ChatClient`]: rtmc::client::ChatClient

use std::time::Duration;

use rtmc::client::{ClientError, Connection, LoginInfo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::credentials::TEST_PASSWORD;

/// Largest frame a raw connection accepts from the server (well above the
/// server's own limit, so oversized replies are the server's fault).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// How long a login waits for `login_ok` (or the server's refusal).
pub const LOGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a framed connection to `addr` without logging in.
pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
    Connection::connect(addr, MAX_FRAME_BYTES).await
}

/// Opens a framed connection to `addr` and logs `user` in (subscribed).
pub async fn connect_and_login(
    addr: &str,
    user: &str,
) -> Result<(Connection, LoginInfo), ClientError> {
    let mut conn = connect(addr).await?;
    let info = login(&mut conn, user).await?;
    Ok((conn, info))
}

/// Logs `user` in with [`TEST_PASSWORD`] on an open connection of any kind
/// (plain, TLS, a socket with tuned buffers) and waits for `login_ok`.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    user: &str,
) -> Result<LoginInfo, ClientError> {
    rtmc::client::login(conn, user, TEST_PASSWORD, None, LOGIN_REPLY_TIMEOUT).await
}

/// Like [`login`], asking the server to replay everything after `from_seq`
/// first (the replay and `resume_done` follow `login_ok` on the connection).
pub async fn login_resuming<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    user: &str,
    from_seq: u64,
) -> Result<LoginInfo, ClientError> {
    rtmc::client::login(
        conn,
        user,
        TEST_PASSWORD,
        Some(from_seq),
        LOGIN_REPLY_TIMEOUT,
    )
    .await
}

/// Like [`login`], for a publish-only session (acks, no broadcasts).
pub async fn login_publish_only<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    user: &str,
) -> Result<LoginInfo, ClientError> {
    rtmc::client::login_publisher(conn, user, TEST_PASSWORD, LOGIN_REPLY_TIMEOUT).await
}
