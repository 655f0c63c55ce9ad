//! `heartbeat`: answered with `heartbeat_ack`. The session itself is kept
//! alive by any frame, in the reader loop, so there is nothing else to do.

use crate::protocol::ServerFrame;
use crate::server::session::{Next, Session};

pub(super) async fn apply(session: &mut Session) -> Next {
    session.reply(ServerFrame::HeartbeatAck {}).await;
    Next::Continue
}
