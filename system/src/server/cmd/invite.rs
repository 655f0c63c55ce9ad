//! `invite`: a member of a public or private room makes another user a
//! member (within that user's `rooms.max_rooms_per_user` and the room's
//! `rooms.max_members_per_room`); the invitee's sessions on every node get
//! `joined` from their shard followers. Rate: `rooms.max_invites_per_sec`.

use super::room_flow;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::room::{RoomId, RoomKind, RoomRole};
use crate::room_db::{self, AddOutcome, MemberLimits};
use crate::server::session::{Next, Session};
use crate::stream::{self, MemberChange};

pub(super) async fn apply(session: &mut Session, room: String, invitee: String) -> Next {
    if !room_flow::within_rate(session, room_flow::Rate::Invites, &room).await {
        return Next::Continue;
    }
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    let Some(kind) = inviters_room(session, &id).await else {
        return Next::Continue;
    };
    let ctx = session.ctx.clone();
    match room_db::is_member(&ctx.pg, &id, &invitee).await {
        // A member already: nothing to do, and no limit applies.
        Ok(true) => return invited(session, room, invitee).await,
        Ok(false) => {}
        Err(e) => {
            room_flow::store_failed(session, &room, "membership check", e).await;
            return Next::Continue;
        }
    }
    if !room_flow::user_exists(session, &invitee, &room).await {
        return Next::Continue;
    }
    let limits = MemberLimits::of(&ctx.cfg.rooms);
    let added = match room_db::add_member(&ctx.pg, &id, &invitee, RoomRole::Member, limits).await {
        Ok(AddOutcome::Added) => true,
        Ok(AddOutcome::AlreadyMember) => false,
        Ok(refused) => {
            room_flow::refuse_for_limits(session, &id, refused, Some(&invitee)).await;
            return Next::Continue;
        }
        Err(e) => {
            room_flow::store_failed(session, &room, "membership", e).await;
            return Next::Continue;
        }
    };
    if added {
        let mut redis = ctx.redis.clone();
        let joined = MemberChange::Joined;
        let (keys, shards) = (&ctx.keys, ctx.shards());
        let recorded =
            stream::record_membership(&mut redis, keys, shards, &id, &invitee, joined, kind).await;
        if let Err(e) = recorded {
            room_flow::store_failed(session, &room, "room stream", e).await;
            return Next::Continue;
        }
        metrics::counter!("rtmc_room_invites_total").increment(1);
    }
    invited(session, room, invitee).await
}

/// The kind of a room the inviter is a member of and may invite to (not a
/// direct room); `None` after answering why not.
async fn inviters_room(session: &Session, id: &RoomId) -> Option<RoomKind> {
    let room = id.as_str();
    let kind = match room_flow::membership_of(session, id).await {
        Ok(Some(m)) => m.kind,
        Ok(None) => {
            room_flow::refuse_non_member(session, id).await;
            return None;
        }
        Err(e) => {
            room_flow::store_failed(session, room, "room lookup", e).await;
            return None;
        }
    };
    if kind == RoomKind::Direct {
        let message = "a direct room has exactly its two users";
        session
            .room_error(ErrorCode::InvalidField, message, room)
            .await;
        return None;
    }
    Some(kind)
}

async fn invited(session: &Session, room: String, user_id: String) -> Next {
    session.reply(ServerFrame::Invited { room, user_id }).await;
    Next::Continue
}
