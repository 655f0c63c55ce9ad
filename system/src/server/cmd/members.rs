//! `members`: a room's members, their roles and presence, for its members
//! only.

use super::room_flow;
use crate::protocol::{MemberSummary, ServerFrame};
use crate::room_db;
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session, room: String) -> Next {
    let Some(id) = room_flow::room_id(session, &room).await else {
        return Next::Continue;
    };
    if !room_flow::check_member(session, &id).await {
        return Next::Continue;
    }
    match room_db::members(&session.ctx.pg, &id).await {
        Ok(list) => {
            let members = list
                .into_iter()
                .map(|m| MemberSummary {
                    user_id: m.user_id,
                    role: m.role,
                    status: m.status,
                })
                .collect();
            session
                .reply(ServerFrame::MembersList { room, members })
                .await;
        }
        Err(e) => room_flow::store_failed(session, &room, "member list", e).await,
    }
    Next::Continue
}
