//! `history`: one page of a room's messages for a member, oldest first:
//! after `after_seq` (forwards), before `before_seq` (backwards), or the
//! newest. From the room log in Redis, falling back to PostgreSQL for what
//! sync trimmed; a page that cannot be produced gapless is
//! `resume_unavailable`.

use super::room_flow;
use crate::protocol::{BroadcastFrame, ErrorCode, ServerFrame, FRAME_HEADER_BYTES};
use crate::replay;
use crate::server::session::{Next, Session};
use crate::stream::Delivery;

/// Messages in a page when `limit` is not given.
const DEFAULT_PAGE_MESSAGES: u32 = 50;

/// What a `history` asks for.
pub(super) struct PageRequest {
    /// Forwards: the messages after this seq.
    pub after_seq: Option<u64>,
    /// Backwards: the messages before this seq.
    pub before_seq: Option<u64>,
    /// At most this many.
    pub limit: Option<u32>,
}

pub(super) async fn apply(session: &mut Session, room: String, req: PageRequest) -> Next {
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    if !room_flow::check_member(session, &id).await {
        return Next::Continue;
    }
    let ctx = session.ctx.clone();
    let limit = u64::from(req.limit.unwrap_or(DEFAULT_PAGE_MESSAGES));
    let mut redis = ctx.redis.clone();
    let (keys, shards) = (&ctx.keys, ctx.shards());
    // One more than shown, to know whether there are more.
    let page = match req.after_seq {
        Some(after) => {
            replay::room_page(&mut redis, &ctx.pg, keys, shards, &id, after, limit + 1).await
        }
        None => {
            let before = req.before_seq.unwrap_or(u64::MAX);
            replay::room_page_before(&mut redis, &ctx.pg, keys, shards, &id, before, limit + 1)
                .await
        }
    };
    let page = match page {
        Ok(p) => p,
        Err(e) => {
            let message = format!("history unavailable: {e}");
            session
                .room_error(ErrorCode::ResumeUnavailable, message, &room)
                .await;
            return Next::Continue;
        }
    };
    let more = page.len() as u64 > limit;
    let mut messages = decode(&page);
    if more {
        // Forwards the extra one is the newest, backwards the oldest.
        match req.after_seq {
            Some(_) => drop(messages.pop()),
            None => drop(messages.remove(0)),
        }
    }
    session
        .reply(ServerFrame::HistoryPage {
            room,
            messages,
            more,
        })
        .await;
    Next::Continue
}

/// The broadcasts inside replayed frames (they are ours: a frame that
/// does not parse is skipped and logged, not sent).
fn decode(page: &[Delivery]) -> Vec<BroadcastFrame> {
    page.iter()
        .filter_map(
            |d| match d.frame.get(FRAME_HEADER_BYTES..).map(ServerFrame::parse) {
                Some(Ok(ServerFrame::Broadcast(b))) => Some(b),
                _ => {
                    tracing::warn!(seq = d.seq, "history: a stored frame is not a broadcast");
                    None
                }
            },
        )
        .collect()
}
