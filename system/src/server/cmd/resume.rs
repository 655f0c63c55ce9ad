//! `resume`: restarts live delivery at the current head, replaying
//! everything after the client's `last_seq` first: of the lobby (v1), or
//! (v2) of one room the caller is a member of. `login` with `resume_from`
//! subscribes through the same [`subscribe_from`], and a v2 login's
//! `resume_rooms` through [`resume_room`].

use bytes::Bytes;
use tokio::sync::broadcast;

use super::room_flow;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::room::RoomId;
use crate::server::node::MAX_REPLAY_MESSAGES;
use crate::server::outbound::{frame, Outbound, Subscription};
use crate::server::rooms::Begun;
use crate::server::session::{Next, Session};
use crate::stream::{self, Delivery};

/// Replays `room` after `after` up to its head read now, then `resume_done`
/// and live delivery (when `begun` started a subscription: the caller
/// called the registry's `begin`/`restart` before, so nothing falls
/// between the head and live delivery).
pub(super) async fn resume_room(session: &Session, room: &RoomId, after: u64, begun: Begun) {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    let head = match stream::room_head(&mut redis, &ctx.keys, ctx.shards(), room).await {
        Ok(h) => h,
        Err(e) => {
            ctx.rooms.abandon(session.id, room.as_str());
            room_flow::store_failed(session, room.as_str(), "room stream", e).await;
            return;
        }
    };
    if room_flow::replay_room(session, room, after, head).await {
        let _ = session
            .out
            .send(Outbound::Frame(room_flow::resume_done(room, head)))
            .await;
    }
    if begun == Begun::Started {
        ctx.rooms.go_live(session.id, room.as_str(), head);
    }
}

pub(super) async fn apply(session: &mut Session, last_seq: u64, room: Option<String>) -> Next {
    if let Some(room) = room {
        let Some(id) = room_flow::room_id(session, &room).await else {
            return Next::Continue;
        };
        if room_flow::check_member(session, &id).await {
            let begun = session.ctx.rooms.restart(session.id, &room);
            resume_room(session, &id, last_seq, begun).await;
        }
        return Next::Continue;
    }
    let (rx, head) = session.ctx.fanout.subscribe();
    subscribe_from(session, rx, head, Some(last_seq)).await;
    Next::Continue
}

/// Hands the writer the subscription: with `after`, the replay of
/// `after+1..=head` and `resume_done` go first, in the same message, so no
/// live frame can overtake them. A replay that cannot be produced is a
/// `resume_unavailable` error (no `resume_done`): the client knows it has a gap.
pub(super) async fn subscribe_from(
    session: &Session,
    rx: broadcast::Receiver<Delivery>,
    head: u64,
    after: Option<u64>,
) {
    let (replay, done) = match after {
        Some(after) => replay(session, after, head).await,
        None => (Vec::new(), None),
    };
    let _ = session
        .out
        .send(Outbound::Subscribe(Box::new(Subscription {
            replay,
            done,
            rx,
            up_to: head,
        })))
        .await;
}

/// The frames after `after` up to `head` and the `resume_done` that follows
/// them; nothing (after an error frame) when the replay cannot be produced.
async fn replay(session: &Session, after: u64, head: u64) -> (Vec<Delivery>, Option<Bytes>) {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    let replayed = crate::replay::range(
        &mut redis,
        &ctx.pg,
        &ctx.keys,
        after,
        head,
        MAX_REPLAY_MESSAGES,
    )
    .await;
    match replayed {
        Ok(r) => {
            metrics::counter!("rtmc_resume_replayed_total").increment(r.len() as u64);
            let done = frame(&ServerFrame::ResumeDone {
                last_seq: head,
                room: None,
            });
            (r, Some(done))
        }
        Err(e) => {
            session
                .error(ErrorCode::ResumeUnavailable, e.to_string())
                .await;
            (Vec::new(), None)
        }
    }
}
