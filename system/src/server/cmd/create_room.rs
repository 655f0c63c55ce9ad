//! `create_room`: a public or private room, its creator its owner (within
//! `rooms.max_rooms_per_user`); answered `room_created`, then `joined`.

use super::room_flow::{self, Point};
use crate::protocol::{quote_room, ErrorCode, ServerFrame};
use crate::room::{RoomKind, RoomRole};
use crate::room_db::{self, CreateOutcome};
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session, room: String, kind: RoomKind) -> Next {
    if !room_flow::within_rate(session, room_flow::Rate::Joins, &room).await {
        return Next::Continue;
    }
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    let ctx = session.ctx.clone();
    let user = session.user_id();
    let max = ctx.cfg.rooms.max_rooms_per_user;
    match room_db::create_room(&ctx.pg, &id, kind, &user, max).await {
        Ok(CreateOutcome::Created) => {}
        Ok(CreateOutcome::TooManyRooms) => {
            let message = format!("you are in {max} rooms already");
            session
                .room_error(ErrorCode::TooManyRooms, message, &room)
                .await;
            return Next::Continue;
        }
        Ok(CreateOutcome::AlreadyExists) => {
            let message = format!("a room {} exists already", quote_room(&room));
            session
                .room_error(ErrorCode::RoomExists, message, &room)
                .await;
            return Next::Continue;
        }
        Err(e) => {
            room_flow::store_failed(session, &room, "room creation", e).await;
            return Next::Continue;
        }
    }
    metrics::counter!("rtmc_rooms_created_total").increment(1);
    session
        .reply(ServerFrame::RoomCreated {
            room: room.clone(),
            kind,
        })
        .await;
    room_flow::follow_room(
        session,
        &id,
        kind,
        RoomRole::Owner,
        Point::Joined(kind),
        None,
    )
    .await;
    Next::Continue
}
