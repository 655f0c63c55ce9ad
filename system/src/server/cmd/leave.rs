//! `leave`: the caller stops being a member. Direct rooms cannot be left
//! (they have exactly their two users). Every local session of the user
//! that receives the room gets its messages up to the leave point, then
//! `left` from the shard follower, in stream order; a session that does
//! not receive it (publish-only) is answered here.

use super::room_flow;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::room_db;
use crate::server::session::{Next, Session};
use crate::stream::{self, MemberChange};

pub(super) async fn apply(session: &mut Session, room: String) -> Next {
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    if id.is_direct() {
        let message = "a direct room cannot be left: it has exactly its two users";
        session
            .room_error(ErrorCode::InvalidField, message, &room)
            .await;
        return Next::Continue;
    }
    let ctx = session.ctx.clone();
    let user = session.user_id();
    let kind = match room_flow::membership_of(session, &id).await {
        Ok(Some(m)) => m.kind,
        Ok(None) => {
            room_flow::refuse_non_member(session, &id).await;
            return Next::Continue;
        }
        Err(e) => {
            room_flow::store_failed(session, &room, "room lookup", e).await;
            return Next::Continue;
        }
    };
    match room_db::remove_member(&ctx.pg, &id, &user).await {
        Ok(true) => {}
        Ok(false) => {
            // Another session of the user left meanwhile.
            room_flow::refuse_non_member(session, &id).await;
            return Next::Continue;
        }
        Err(e) => {
            room_flow::store_failed(session, &room, "membership", e).await;
            return Next::Continue;
        }
    }
    // Whether this session receives the room, asked before the leave is in
    // the shard stream: then the follower tells it `left` (it may have by
    // the time the entry's seq is back here), else nobody does but this
    // answer. Asked after, a follower that was quick looks like no
    // subscription and the session would get `left` twice.
    let receives = ctx.rooms.is_subscribed(session.id, &room);
    let mut redis = ctx.redis.clone();
    let left = MemberChange::Left;
    let at = stream::record_membership(&mut redis, &ctx.keys, ctx.shards(), &id, &user, left, kind)
        .await;
    let at = match at {
        Ok(at) => at,
        Err(e) => {
            room_flow::store_failed(session, &room, "room stream", e).await;
            return Next::Continue;
        }
    };
    let follower_tells = ctx.rooms.leaving(session.id, &room, at) || receives;
    if !follower_tells {
        session.reply(ServerFrame::Left { room, seq: at }).await;
    }
    Next::Continue
}
