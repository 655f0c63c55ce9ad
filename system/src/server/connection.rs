//! One client connection from accept to close: starts its writer, reads and
//! checks frames (login and heartbeat deadlines, the frame-flood limit, the
//! frame size), keeps the session alive in Redis, and hands each command to
//! `cmd::dispatch`. Abuse (oversized frames, floods, missed deadlines)
//! closes the connection with a reason; on the way out the session ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::cmd;
use super::direct::LaneHandle;
use super::limits::TokenBucket;
use super::node::NodeContext;
use super::outbound;
use super::session::{count_rejection, truncate, Next, Session};
use crate::config::ServerConfig;
use crate::presence::SessionKind;
use crate::protocol::{ClientCommand, ErrorCode, FrameCodec, ProtocolError, ServerFrame};

/// Control messages queued for the writer before the reader waits.
const CONTROL_QUEUE_MESSAGES: usize = 256;
/// Initial read buffer: idle sessions stay cheap; it grows per frame as needed.
const READ_BUFFER_BYTES: usize = 256;
/// How long a closing connection waits for its writer to flush.
const WRITER_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Runs one connection given its read and write halves (plain TCP or TLS).
pub(super) async fn handle<R, W>(
    ctx: Arc<NodeContext>,
    rd: R,
    wr: W,
    peer: SocketAddr,
    stop: CancellationToken,
    lane: Option<LaneHandle<W>>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, control) = mpsc::channel(CONTROL_QUEUE_MESSAGES);
    let conn = CancellationToken::new();
    let writer = tokio::spawn(outbound::run(
        wr,
        control,
        Duration::from_millis(ctx.cfg.server.write_timeout_ms),
        conn.clone(),
        lane,
    ));
    let mut session = Session::new(ctx, out, peer);
    read_loop(&mut session, rd, &stop, &conn).await;
    Box::pin(session.end()).await;
    drop(session);
    let _ = tokio::time::timeout(WRITER_FLUSH_LIMIT, writer).await;
    tracing::debug!(%peer, "connection closed");
}

/// When the client must next be heard from, and when the session was last
/// refreshed in Redis.
struct Liveness {
    login_deadline: Instant,
    heartbeat_timeout: Duration,
    last_frame: Instant,
    last_refresh: Instant,
    /// Any frame proves the client alive; the session in Redis is refreshed
    /// at most twice per heartbeat interval.
    refresh_every: Duration,
}

impl Liveness {
    fn new(cfg: &ServerConfig) -> Self {
        let now = Instant::now();
        Self {
            login_deadline: now + Duration::from_millis(cfg.login_timeout_ms),
            heartbeat_timeout: Duration::from_millis(cfg.heartbeat_timeout_ms),
            last_frame: now,
            last_refresh: now,
            refresh_every: Duration::from_millis(cfg.heartbeat_interval_ms / 2),
        }
    }

    fn deadline(&self, logged_in: bool) -> Instant {
        if logged_in {
            self.last_frame + self.heartbeat_timeout
        } else {
            self.login_deadline
        }
    }

    /// Notes a frame; true when a logged-in session is due for a refresh.
    fn heard(&mut self, logged_in: bool) -> bool {
        self.last_frame = Instant::now();
        if !logged_in || self.last_frame.duration_since(self.last_refresh) < self.refresh_every {
            return false;
        }
        self.last_refresh = self.last_frame;
        true
    }
}

/// Reads frames until the client leaves, a command closes the session, a
/// deadline passes, or the server shuts down.
async fn read_loop<R: AsyncRead + Unpin>(
    session: &mut Session,
    rd: R,
    stop: &CancellationToken,
    conn: &CancellationToken,
) {
    let cfg = &session.ctx.cfg.server;
    let mut frames =
        FramedRead::with_capacity(rd, FrameCodec::new(cfg.max_frame_bytes), READ_BUFFER_BYTES);
    let mut liveness = Liveness::new(cfg);
    let mut frames_allowed = TokenBucket::new(cfg.max_frames_per_sec);
    loop {
        let deadline = liveness.deadline(session.logged_in.is_some());
        let next = tokio::select! {
            _ = stop.cancelled() => {
                session.close(ErrorCode::ShuttingDown, "server is shutting down").await;
                return;
            }
            _ = conn.cancelled() => return,
            _ = session.cut.cancelled() => {
                // The room registry found this session's queue full.
                count_rejection(ErrorCode::SlowConsumer);
                let why = "client did not read fast enough; disconnected";
                session.close(ErrorCode::SlowConsumer, why).await;
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                close_silent(session).await;
                return;
            }
            f = frames.next() => f,
        };
        let payload = match next {
            None => return,
            Some(Err(e @ ProtocolError::FrameTooLarge { .. })) => {
                count_rejection(e.code());
                session.close(e.code(), &e.to_string()).await;
                return;
            }
            Some(Err(_)) => return,
            Some(Ok(payload)) => payload,
        };
        if !frames_allowed.allow() {
            close_flood(session).await;
            return;
        }
        if liveness.heard(session.logged_in.is_some()) {
            Box::pin(refresh(session)).await;
        }
        if let Next::Close = run_frame(session, payload).await {
            return;
        }
    }
}

/// Closes a connection that missed its login or heartbeat deadline.
async fn close_silent(session: &Session) {
    let (code, msg) = match session.logged_in {
        None => (ErrorCode::LoginTimeout, "no login before the deadline"),
        Some(_) => (
            ErrorCode::HeartbeatTimeout,
            "no heartbeat within the timeout",
        ),
    };
    count_rejection(code);
    session.close(code, msg).await;
}

/// Closes a connection that sends more frames per second than allowed.
async fn close_flood(session: &Session) {
    metrics::counter!("rtmc_rate_limited_total", "kind" => "frames").increment(1);
    count_rejection(ErrorCode::RateLimited);
    session
        .close(
            ErrorCode::RateLimited,
            "frame flood: too many frames per second",
        )
        .await;
}

/// Keeps a logged-in session alive in Redis for another TTL.
async fn refresh(session: &Session) {
    let Some(s) = &session.logged_in else {
        return;
    };
    if let Err(e) = session
        .ctx
        .presence
        .refresh_session(&s.token, &s.user_id, SessionKind::Tcp)
        .await
    {
        tracing::warn!(error = %e, "session refresh failed");
    }
}

/// Parses one frame and runs its command; a frame that is not a valid
/// command is answered with an error and the connection stays open.
async fn run_frame(session: &mut Session, payload: Bytes) -> Next {
    match ClientCommand::parse(&payload) {
        // Boxed: a command's future (login's queries above all) is far
        // larger than the idle reader; inline, every idle connection's task
        // would carry its size (design.md §7's memory per idle client).
        Ok(cmd) => Box::pin(cmd::dispatch(session, cmd)).await,
        Err(e) => {
            count_rejection(e.code());
            session
                .reply(ServerFrame::error(e.code(), truncate(e.to_string())))
                .await;
            Next::Continue
        }
    }
}
