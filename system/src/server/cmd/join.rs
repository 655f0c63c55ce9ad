//! `join`: a member (of any room kind) re-follows the room; anyone else
//! becomes a member of a public room, within `rooms.max_rooms_per_user` and
//! `rooms.max_members_per_room`. With `after_seq` the replay up to the
//! point comes first; `joined` says from which `seq` live messages follow.

use super::room_flow::{self, Point};
use crate::protocol::{quote_room, ErrorCode};
use crate::room::{RoomId, RoomKind, RoomRole};
use crate::room_db::{self, AddOutcome, MemberLimits};
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session, room: String, after_seq: Option<u64>) -> Next {
    if !room_flow::within_rate(session, room_flow::Rate::Joins, &room).await {
        return Next::Continue;
    }
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    let mine = match room_db::rooms_of(&session.ctx.pg, &session.user_id()).await {
        Ok(m) => m,
        Err(e) => {
            room_flow::store_failed(session, &room, "room lookup", e).await;
            return Next::Continue;
        }
    };
    let (kind, role, point) = match mine.iter().find(|r| r.room == room) {
        Some(r) => (r.kind, r.role, Point::Head),
        None => match admit(session, &id).await {
            Some(admitted) => admitted,
            None => return Next::Continue,
        },
    };
    room_flow::follow_room(session, &id, kind, role, point, after_seq).await;
    Next::Continue
}

/// Makes the caller a member of a public room it is not in; `None` after
/// answering why not.
async fn admit(session: &Session, room: &RoomId) -> Option<(RoomKind, RoomRole, Point)> {
    let ctx = &session.ctx;
    let name = room.as_str();
    let kind = match room_db::room_kind(&ctx.pg, room).await {
        Ok(k) => k,
        Err(e) => {
            room_flow::store_failed(session, name, "room lookup", e).await;
            return None;
        }
    };
    let shown = quote_room(name);
    match kind {
        None => {
            let message = format!("no room {shown}");
            session
                .room_error(ErrorCode::UnknownRoom, message, name)
                .await;
            return None;
        }
        Some(RoomKind::Private | RoomKind::Direct) => {
            let message = format!("{shown} is not public: a member must invite you");
            session
                .room_error(ErrorCode::NotAMember, message, name)
                .await;
            return None;
        }
        Some(RoomKind::Public) => {}
    }
    let limits = MemberLimits::of(&ctx.cfg.rooms);
    let user = session.user_id();
    match room_db::add_member(&ctx.pg, room, &user, RoomRole::Member, limits).await {
        // Added just now: the membership entry marks the point.
        Ok(AddOutcome::Added) => Some((
            RoomKind::Public,
            RoomRole::Member,
            Point::Joined(RoomKind::Public),
        )),
        // Another session of the user joined meanwhile: follow the head.
        Ok(AddOutcome::AlreadyMember) => Some((RoomKind::Public, RoomRole::Member, Point::Head)),
        Ok(refused) => {
            room_flow::refuse_for_limits(session, room, refused, None).await;
            None
        }
        Err(e) => {
            room_flow::store_failed(session, name, "membership", e).await;
            None
        }
    }
}
