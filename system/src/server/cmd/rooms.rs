//! `rooms`: the caller's rooms with their kind, the caller's role and each
//! room's head (`rooms_list`). `login_ok.rooms` of a v2 login is the same
//! list.

use crate::protocol::{RoomSummary, ServerFrame};
use crate::room::RoomId;
use crate::room_db;
use crate::server::node::NodeContext;
use crate::server::session::{Next, Session};
use crate::stream;

pub(super) async fn apply(session: &mut Session) -> Next {
    let ctx = session.ctx.clone();
    match my_rooms(&ctx, &session.user_id()).await {
        Ok(rooms) => session.reply(ServerFrame::RoomsList { rooms }).await,
        Err(e) => {
            let message = format!("room list unavailable: {e}");
            session
                .error(crate::protocol::ErrorCode::Internal, message)
                .await;
        }
    }
    Next::Continue
}

/// The user's rooms, each with its head read now.
pub(super) async fn my_rooms(ctx: &NodeContext, user: &str) -> anyhow::Result<Vec<RoomSummary>> {
    let mine = room_db::rooms_of(&ctx.pg, user).await?;
    let mut redis = ctx.redis.clone();
    let mut out = Vec::with_capacity(mine.len());
    for r in mine {
        let id = RoomId::parse(&r.room)?;
        let seq = stream::room_head(&mut redis, &ctx.keys, ctx.shards(), &id).await?;
        out.push(RoomSummary {
            room: r.room,
            kind: r.kind,
            role: r.role,
            seq,
        });
    }
    Ok(out)
}
