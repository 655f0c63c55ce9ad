//! `status` and `get_status`: set the caller's presence, or read anyone's
//! (cache-aside through `Presence`); both are answered with a `status` frame.

use crate::protocol::{ErrorCode, ServerFrame, UserStatus};
use crate::server::session::{Next, Session};

/// `status`: sets the caller's presence.
pub(super) async fn set(session: &mut Session, status: UserStatus) -> Next {
    let user_id = session.user_id();
    match session.ctx.presence.set_status(&user_id, status).await {
        Ok(()) => session.reply(ServerFrame::Status { user_id, status }).await,
        Err(e) => session.error(ErrorCode::Internal, e.to_string()).await,
    }
    Next::Continue
}

/// `get_status`: reads a user's presence.
pub(super) async fn get(session: &mut Session, user_id: String) -> Next {
    match session.ctx.presence.get_status(&user_id).await {
        Ok(Some(status)) => session.reply(ServerFrame::Status { user_id, status }).await,
        Ok(None) => {
            let message = format!("unknown user {user_id:?}");
            session.error(ErrorCode::InvalidField, message).await
        }
        Err(e) => session.error(ErrorCode::Internal, e.to_string()).await,
    }
    Next::Continue
}
