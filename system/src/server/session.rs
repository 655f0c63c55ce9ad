//! One client session: the state commands act on (who is logged in, the
//! queue to the connection's writer, the per-connection limits) and the
//! three ways a command answers — a reply, an `error` frame, or a last
//! frame before closing. Every rejected input is counted by its code.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::limits::TokenBucket;
use super::node::NodeContext;
use super::outbound::{frame, Outbound};
use super::rooms::SessionId;
use crate::protocol::{ErrorCode, ServerFrame, PROTOCOL_VERSION};

/// Error messages may quote client input; keep them far below any frame limit.
const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// Who a logged-in session belongs to.
pub(super) struct LoggedIn {
    pub user_id: String,
    pub token: String,
}

/// What the reader loop does after a command.
pub(super) enum Next {
    Continue,
    Close,
}

pub(super) struct Session {
    pub ctx: Arc<NodeContext>,
    /// Queue to this connection's writer task.
    pub out: mpsc::Sender<Outbound>,
    /// `None` until `login` succeeds (and again after `logout`).
    pub logged_in: Option<LoggedIn>,
    /// Bounds the sends awaiting broker confirmation on this connection.
    pub inflight: Arc<Semaphore>,
    /// `send` rate limit.
    pub sends: TokenBucket,
    /// Failed logins on this connection.
    pub login_failures: u32,
    /// The client's address: login throttling counts failures per source.
    pub peer: std::net::SocketAddr,
    /// The protocol version the login asked for (1 until then).
    pub protocol: u32,
    /// This session's id in the node's room registry.
    pub id: SessionId,
    /// `join` / `create_room` rate limit (`rooms.max_joins_per_sec`).
    pub joins: TokenBucket,
    /// `invite` rate limit (`rooms.max_invites_per_sec`).
    pub invites: TokenBucket,
    /// Cancelled by the room registry when this session's queue was full:
    /// the reader then closes it with `slow_consumer`.
    pub cut: CancellationToken,
}

impl Session {
    pub fn new(
        ctx: Arc<NodeContext>,
        out: mpsc::Sender<Outbound>,
        peer: std::net::SocketAddr,
    ) -> Self {
        let limits = &ctx.cfg.server;
        Self {
            inflight: Arc::new(Semaphore::new(limits.max_inflight_sends.max(1))),
            sends: TokenBucket::new(limits.max_sends_per_sec),
            protocol: PROTOCOL_VERSION,
            id: ctx.session_id(),
            joins: TokenBucket::new(ctx.cfg.rooms.max_joins_per_sec),
            invites: TokenBucket::new(ctx.cfg.rooms.max_invites_per_sec),
            cut: CancellationToken::new(),
            ctx,
            out,
            logged_in: None,
            login_failures: 0,
            peer,
        }
    }

    /// The logged-in user's id (empty before login; commands that need a
    /// user only run after it).
    pub fn user_id(&self) -> String {
        self.logged_in
            .as_ref()
            .map(|s| s.user_id.clone())
            .unwrap_or_default()
    }

    pub async fn reply(&self, f: ServerFrame) {
        let _ = self.out.send(Outbound::Frame(frame(&f))).await;
    }

    /// Answers an `error` frame with `code` (and counts it).
    pub async fn error(&self, code: ErrorCode, message: impl Into<String>) {
        count_rejection(code);
        self.reply(ServerFrame::error(code, truncate(message.into())))
            .await;
    }

    /// Answers an `error` frame about one room (v2), naming it (and counts it).
    pub async fn room_error(&self, code: ErrorCode, message: impl Into<String>, room: &str) {
        count_rejection(code);
        let f = ServerFrame::room_error(code, truncate(message.into()), room);
        self.reply(f).await;
    }

    /// Sends a last `error` frame; the writer closes the connection after it.
    pub async fn close(&self, code: ErrorCode, message: &str) {
        let _ = self
            .out
            .send(Outbound::Close(frame(&ServerFrame::error(code, message))))
            .await;
    }

    /// Ends a logged-in session in the presence store (session deleted,
    /// user offline if it was their last). A failure is logged: the
    /// session's TTL ends it anyway.
    pub async fn end(&mut self) {
        self.ctx.rooms.unregister(self.id);
        let Some(s) = self.logged_in.take() else {
            return;
        };
        if let Err(e) = self.ctx.presence.close_session(&s.token, &s.user_id).await {
            tracing::warn!(error = %e, user = %s.user_id, "session cleanup failed; TTL will expire it");
        }
    }
}

/// Counts a rejected input in `rtmc_rejected_total{code}`.
pub(super) fn count_rejection(code: ErrorCode) {
    metrics::counter!("rtmc_rejected_total", "code" => code.as_str()).increment(1);
}

/// Cuts `message` to [`MAX_ERROR_MESSAGE_BYTES`] on a character boundary.
pub(super) fn truncate(mut message: String) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".into()), "short");
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
