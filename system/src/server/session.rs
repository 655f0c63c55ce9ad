//! One client connection: reads and validates frames, runs the command, and
//! queues replies for the writer. Every rejected input gets an `error` frame
//! with its code; abuse (oversized frames, missed deadlines) also closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::limits::TokenBucket;
use super::outbound::{self, frame, Outbound, Subscription};
use super::{NodeContext, MAX_REPLAY_MESSAGES};
use crate::broker::PublishedMessage;
use crate::presence::SessionKind;
use crate::protocol::now_us;
use crate::protocol::{
    ClientCommand, ErrorCode, FrameCodec, ProtocolError, ServerFrame, PROTOCOL_VERSION,
};

/// Control messages queued for the writer before the reader waits.
const CONTROL_QUEUE: usize = 256;

/// A logged-in session.
struct LoggedIn {
    user_id: String,
    token: String,
}

fn reject(code: ErrorCode) {
    metrics::counter!("rtmc_rejected_total", "code" => code_name(code)).increment(1);
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Error messages may quote client input; keep them far below any frame limit.
const MAX_ERROR_MESSAGE_BYTES: usize = 512;

fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut cut = MAX_ERROR_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// Runs one connection given its read and write halves (plain TCP or TLS).
pub(super) async fn handle<R, W>(
    ctx: Arc<NodeContext>,
    rd: R,
    wr: W,
    peer: SocketAddr,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, control) = mpsc::channel(CONTROL_QUEUE);
    let conn = CancellationToken::new();
    let writer = tokio::spawn(outbound::run(
        wr,
        control,
        Duration::from_millis(ctx.cfg.server.write_timeout_ms),
        conn.clone(),
    ));
    let mut session = Session {
        ctx: ctx.clone(),
        out,
        logged_in: None,
        inflight: Arc::new(Semaphore::new(ctx.cfg.server.max_inflight_sends.max(1))),
        sends: TokenBucket::new(ctx.cfg.server.max_sends_per_sec),
        login_failures: 0,
    };
    session.read_loop(rd, &stop, &conn).await;
    if let Some(s) = session.logged_in.take() {
        if let Err(e) = ctx.presence.close_session(&s.token, &s.user_id).await {
            tracing::warn!(error = %e, user = %s.user_id, "session cleanup failed; TTL will expire it");
        }
    }
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::debug!(%peer, "connection closed");
}

struct Session {
    ctx: Arc<NodeContext>,
    out: mpsc::Sender<Outbound>,
    logged_in: Option<LoggedIn>,
    /// Bounds the sends awaiting broker confirmation on this connection.
    inflight: Arc<Semaphore>,
    /// `send` rate limit.
    sends: TokenBucket,
    /// Failed logins on this connection.
    login_failures: u32,
}

enum Next {
    Continue,
    Close,
}

impl Session {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        rd: R,
        stop: &CancellationToken,
        conn: &CancellationToken,
    ) {
        let cfg = &self.ctx.cfg.server;
        // Small initial buffer: idle sessions stay cheap; it grows per frame as needed.
        let mut frames = FramedRead::with_capacity(rd, FrameCodec::new(cfg.max_frame_bytes), 256);
        let login_deadline = Instant::now() + Duration::from_millis(cfg.login_timeout_ms);
        let heartbeat_timeout = Duration::from_millis(cfg.heartbeat_timeout_ms);
        let mut frames_allowed = TokenBucket::new(cfg.max_frames_per_sec);
        let mut last_frame = Instant::now();
        let mut last_refresh = Instant::now();
        let refresh_every = Duration::from_millis(cfg.heartbeat_interval_ms / 2);
        loop {
            let deadline = match self.logged_in {
                None => login_deadline,
                Some(_) => last_frame + heartbeat_timeout,
            };
            let next = tokio::select! {
                _ = stop.cancelled() => {
                    self.close(ErrorCode::ShuttingDown, "server is shutting down").await;
                    return;
                }
                _ = conn.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    let (code, msg) = match self.logged_in {
                        None => (ErrorCode::LoginTimeout, "no login before the deadline"),
                        Some(_) => (ErrorCode::HeartbeatTimeout, "no heartbeat within the timeout"),
                    };
                    reject(code);
                    self.close(code, msg).await;
                    return;
                }
                f = frames.next() => f,
            };
            match next {
                None => return,
                Some(Err(e @ ProtocolError::FrameTooLarge { .. })) => {
                    reject(e.code());
                    self.close(e.code(), &e.to_string()).await;
                    return;
                }
                Some(Err(_)) => return,
                Some(Ok(payload)) => {
                    if !frames_allowed.allow() {
                        metrics::counter!("rtmc_rate_limited_total", "kind" => "frames")
                            .increment(1);
                        reject(ErrorCode::RateLimited);
                        self.close(
                            ErrorCode::RateLimited,
                            "frame flood: too many frames per second",
                        )
                        .await;
                        return;
                    }
                    last_frame = Instant::now();
                    // Any frame proves the client alive; refresh the session
                    // in Redis at most twice per heartbeat interval.
                    if let Some(s) = &self.logged_in {
                        if last_frame.duration_since(last_refresh) >= refresh_every {
                            last_refresh = last_frame;
                            if let Err(e) = self
                                .ctx
                                .presence
                                .refresh_session(&s.token, &s.user_id, SessionKind::Tcp)
                                .await
                            {
                                tracing::warn!(error = %e, "session refresh failed");
                            }
                        }
                    }
                    let step = match ClientCommand::parse(&payload) {
                        Ok(cmd) => self.dispatch(cmd).await,
                        Err(e) => {
                            reject(e.code());
                            self.reply(ServerFrame::error(e.code(), truncate(e.to_string())))
                                .await;
                            Next::Continue
                        }
                    };
                    if let Next::Close = step {
                        return;
                    }
                }
            }
        }
    }

    async fn reply(&self, f: ServerFrame) {
        let _ = self.out.send(Outbound::Frame(frame(&f))).await;
    }

    async fn error(&self, code: ErrorCode, message: impl Into<String>) {
        reject(code);
        self.reply(ServerFrame::error(code, truncate(message.into())))
            .await;
    }

    async fn close(&self, code: ErrorCode, message: &str) {
        let _ = self
            .out
            .send(Outbound::Close(frame(&ServerFrame::error(code, message))))
            .await;
    }

    async fn dispatch(&mut self, cmd: ClientCommand) -> Next {
        metrics::counter!("rtmc_commands_total", "command" => cmd.name()).increment(1);
        let user = match (&self.logged_in, &cmd) {
            (None, ClientCommand::Login { .. }) => None,
            (None, _) => {
                self.error(
                    ErrorCode::NotLoggedIn,
                    format!("log in before `{}`", cmd.name()),
                )
                .await;
                return Next::Continue;
            }
            (Some(_), ClientCommand::Login { .. }) => {
                self.error(
                    ErrorCode::AlreadyLoggedIn,
                    "this connection is already logged in",
                )
                .await;
                return Next::Continue;
            }
            (Some(s), _) => Some(s.user_id.clone()),
        };
        match cmd {
            ClientCommand::Login {
                user_id,
                password,
                resume_from,
                subscribe,
            } => self.login(user_id, password, resume_from, subscribe).await,
            ClientCommand::Heartbeat {} => {
                // The session itself is refreshed for any frame, in read_loop.
                self.reply(ServerFrame::HeartbeatAck {}).await;
                Next::Continue
            }
            ClientCommand::Send {
                body,
                message_id,
                sent_at_us,
            } => {
                self.send(user.unwrap_or_default(), body, message_id, sent_at_us)
                    .await
            }
            ClientCommand::Resume { last_seq } => {
                // Re-subscribe: replay after `last_seq`, then live.
                self.subscribe(Some(last_seq)).await;
                Next::Continue
            }
            ClientCommand::Status { status } => {
                let user = user.unwrap_or_default();
                match self.ctx.presence.set_status(&user, status).await {
                    Ok(()) => {
                        self.reply(ServerFrame::Status {
                            user_id: user,
                            status,
                        })
                        .await
                    }
                    Err(e) => self.error(ErrorCode::Internal, e.to_string()).await,
                }
                Next::Continue
            }
            ClientCommand::GetStatus { user_id } => {
                match self.ctx.presence.get_status(&user_id).await {
                    Ok(Some(status)) => self.reply(ServerFrame::Status { user_id, status }).await,
                    Ok(None) => {
                        self.error(ErrorCode::InvalidField, format!("unknown user {user_id:?}"))
                            .await
                    }
                    Err(e) => self.error(ErrorCode::Internal, e.to_string()).await,
                }
                Next::Continue
            }
            ClientCommand::Logout {} => {
                if let Some(s) = self.logged_in.take() {
                    if let Err(e) = self.ctx.presence.close_session(&s.token, &s.user_id).await {
                        tracing::warn!(error = %e, "logout cleanup failed");
                    }
                }
                let _ = self
                    .out
                    .send(Outbound::Close(frame(&ServerFrame::LogoutOk {})))
                    .await;
                Next::Close
            }
        }
    }

    async fn login(
        &mut self,
        user_id: String,
        password: String,
        resume_from: Option<u64>,
        subscribe: bool,
    ) -> Next {
        if user_id.is_empty() || user_id.len() > 128 {
            self.error(ErrorCode::InvalidField, "user_id must be 1-128 bytes")
                .await;
            return Next::Continue;
        }
        let ctx = self.ctx.clone();
        let Ok(_gate) = ctx.login_gate.acquire().await else {
            return Next::Close;
        };
        let limits = &self.ctx.cfg.server;
        match self
            .ctx
            .presence
            .login_throttled(&user_id, limits.max_login_failures)
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                metrics::counter!("rtmc_rate_limited_total", "kind" => "login").increment(1);
                metrics::counter!("rtmc_logins_total", "result" => "throttled").increment(1);
                self.error(
                    ErrorCode::RateLimited,
                    "too many failed logins for this user; try again later",
                )
                .await;
                return self.count_login_failure();
            }
            Err(e) => {
                self.error(ErrorCode::Internal, format!("login unavailable: {e}"))
                    .await;
                return Next::Continue;
            }
        }
        match crate::db::check_login(&self.ctx.pg, &user_id, &password).await {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("rtmc_logins_total", "result" => "auth_failed").increment(1);
                let window = limits.login_failure_window_secs;
                if let Err(e) = self
                    .ctx
                    .presence
                    .record_login_failure(&user_id, window)
                    .await
                {
                    tracing::warn!(error = %e, "could not record a failed login");
                }
                self.error(ErrorCode::AuthFailed, "wrong user id or password")
                    .await;
                return self.count_login_failure();
            }
            Err(e) => {
                metrics::counter!("rtmc_logins_total", "result" => "error").increment(1);
                self.error(ErrorCode::Internal, format!("login unavailable: {e}"))
                    .await;
                return Next::Continue;
            }
        }
        let token = match self
            .ctx
            .presence
            .open_session(&user_id, SessionKind::Tcp)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    ErrorCode::Internal,
                    format!("session store unavailable: {e}"),
                )
                .await;
                return Next::Continue;
            }
        };
        metrics::counter!("rtmc_logins_total", "result" => "ok").increment(1);
        self.logged_in = Some(super::session::LoggedIn {
            user_id: user_id.clone(),
            token: token.clone(),
        });
        // One read of the head serves both `login_ok.last_seq` and the
        // subscription point, so nothing can fall between them.
        let (rx, head) = self.ctx.fanout.subscribe();
        self.reply(ServerFrame::LoginOk {
            user_id,
            session_token: token,
            last_seq: head,
            heartbeat_interval_ms: self.ctx.cfg.server.heartbeat_interval_ms,
            protocol_version: PROTOCOL_VERSION,
        })
        .await;
        if subscribe {
            self.subscribe_from(rx, head, resume_from).await;
        }
        Next::Continue
    }

    /// Closes a connection that keeps failing to log in.
    fn count_login_failure(&mut self) -> Next {
        self.login_failures += 1;
        if self.login_failures >= self.ctx.cfg.server.max_login_failures_per_connection {
            metrics::counter!("rtmc_rate_limited_total", "kind" => "login_connection").increment(1);
            let out = self.out.clone();
            let bye = frame(&ServerFrame::error(
                ErrorCode::RateLimited,
                "too many failed logins on this connection",
            ));
            tokio::spawn(async move {
                let _ = out.send(Outbound::Close(bye)).await;
            });
            return Next::Close;
        }
        Next::Continue
    }

    /// Starts (or restarts) live delivery at the current head, replaying
    /// everything after `after` first.
    async fn subscribe(&mut self, after: Option<u64>) {
        let (rx, head) = self.ctx.fanout.subscribe();
        self.subscribe_from(rx, head, after).await;
    }

    /// Hands the writer the subscription: with `after`, the replay of
    /// `after+1..=head` and `resume_done` go first, in the same message, so no
    /// live frame can overtake them. A replay that cannot be produced is an
    /// `resume_unavailable` error (no `resume_done`): the client knows it has a gap.
    async fn subscribe_from(
        &mut self,
        rx: tokio::sync::broadcast::Receiver<super::fanout::Delivery>,
        head: u64,
        after: Option<u64>,
    ) {
        let mut replay = Vec::new();
        let mut done = None;
        if let Some(after) = after {
            let mut redis = self.ctx.redis.clone();
            match crate::history::replay(
                &mut redis,
                &self.ctx.pg,
                &self.ctx.keys,
                after,
                head,
                MAX_REPLAY_MESSAGES,
            )
            .await
            {
                Ok(r) => {
                    metrics::counter!("rtmc_resume_replayed_total").increment(r.len() as u64);
                    replay = r;
                    done = Some(frame(&ServerFrame::ResumeDone { last_seq: head }));
                }
                Err(e) => {
                    self.error(ErrorCode::ResumeUnavailable, e.to_string())
                        .await
                }
            }
        }
        let _ = self
            .out
            .send(Outbound::Subscribe(Box::new(Subscription {
                replay,
                done,
                rx,
                up_to: head,
            })))
            .await;
    }

    async fn send(
        &mut self,
        from: String,
        body: String,
        message_id: Option<String>,
        sent_at_us: Option<u64>,
    ) -> Next {
        let msg = PublishedMessage {
            message_id: message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            from,
            body,
            sent_at_us: sent_at_us.unwrap_or_else(now_us),
        };
        let limits = &self.ctx.cfg.server;
        if let Err(reason) = msg.check_limits(limits.max_body_bytes, limits.max_frame_bytes) {
            self.error(ErrorCode::InvalidField, reason).await;
            return Next::Continue;
        }
        if !self.sends.allow() {
            metrics::counter!("rtmc_rate_limited_total", "kind" => "send").increment(1);
            reject(ErrorCode::RateLimited);
            self.reply(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: format!(
                    "more than {} sends per second; not published",
                    limits.max_sends_per_sec
                ),
                message_id: Some(msg.message_id),
            })
            .await;
            return Next::Continue;
        }
        // Wait for a slot: a client sending faster than the broker confirms
        // is slowed down here rather than buffered without bound.
        let Ok(permit) = self.inflight.clone().acquire_owned().await else {
            return Next::Close;
        };
        let publisher = self.ctx.publisher.clone();
        let out = self.out.clone();
        tokio::spawn(async move {
            let reply = match publisher.publish(&msg).await {
                Ok(()) => {
                    metrics::counter!("rtmc_sends_total", "result" => "ack").increment(1);
                    ServerFrame::SendAck {
                        message_id: msg.message_id,
                    }
                }
                Err(e) => {
                    reject(ErrorCode::BrokerUnavailable);
                    ServerFrame::Error {
                        code: ErrorCode::BrokerUnavailable,
                        message: e.to_string(),
                        message_id: Some(msg.message_id),
                    }
                }
            };
            let _ = out.send(Outbound::Frame(frame(&reply))).await;
            drop(permit);
        });
        Next::Continue
    }
}
