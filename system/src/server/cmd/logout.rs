//! `logout`: ends the session (user offline if it was their last), answers
//! `logout_ok` and closes the connection.

use crate::protocol::ServerFrame;
use crate::server::outbound::{frame, Outbound};
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session) -> Next {
    session.end().await;
    let _ = session
        .out
        .send(Outbound::Close(frame(&ServerFrame::LogoutOk {})))
        .await;
    Next::Close
}
