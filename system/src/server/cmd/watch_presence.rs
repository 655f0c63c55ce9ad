//! `watch_presence`: the session asks for (or stops) `presence` events of
//! its rooms' members; answered `watching_presence` with what holds now
//! (always off for a publish-only session, which receives no rooms).

use crate::protocol::ServerFrame;
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session, on: bool) -> Next {
    let registered = session.ctx.rooms.watch_presence(session.id, on);
    session
        .reply(ServerFrame::WatchingPresence {
            on: on && registered,
        })
        .await;
    Next::Continue
}
