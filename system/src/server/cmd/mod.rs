//! The client commands, one file each. The reader loop (`connection.rs`)
//! parses a frame into a `ClientCommand`; [`dispatch`] checks that the
//! command may run in the session's state and hands it to its file's
//! `apply`, which does the work and answers.

mod create_room;
mod heartbeat;
mod history;
mod invite;
mod join;
mod leave;
mod login;
mod logout;
mod members;
mod resume;
mod room_flow;
mod rooms;
mod send;
mod status;
mod watch_presence;

use super::session::{Next, Session};
use crate::protocol::{ClientCommand, ErrorCode, PROTOCOL_VERSION, PROTOCOL_VERSION_ROOMS};

/// Runs one command: `login` only before logging in, every other command
/// only after, and the room commands only on a v2 session. Longer than 60
/// lines for a reason: one arm per command is the whole table of commands,
/// read best in one place.
pub(super) async fn dispatch(session: &mut Session, cmd: ClientCommand) -> Next {
    metrics::counter!("rtmc_commands_total", "command" => cmd.name()).increment(1);
    let is_login = matches!(cmd, ClientCommand::Login { .. });
    match (session.logged_in.is_some(), is_login) {
        (false, true) | (true, false) => {}
        (false, false) => {
            let message = format!("log in before `{}`", cmd.name());
            session.error(ErrorCode::NotLoggedIn, message).await;
            return Next::Continue;
        }
        (true, true) => {
            let message = "this connection is already logged in";
            session.error(ErrorCode::AlreadyLoggedIn, message).await;
            return Next::Continue;
        }
    }
    if !cmd.is_v1() && session.protocol < PROTOCOL_VERSION_ROOMS {
        let message = format!("`{}` needs a login with protocol 2", cmd.name());
        session.error(ErrorCode::UnknownCommand, message).await;
        return Next::Continue;
    }
    match cmd {
        ClientCommand::Login {
            user_id,
            password,
            resume_from,
            subscribe,
            protocol,
            resume_rooms,
        } => {
            let asked = login::Asked {
                resume_from,
                subscribe,
                protocol: protocol.unwrap_or(PROTOCOL_VERSION),
                resume_rooms: resume_rooms.unwrap_or_default(),
            };
            login::apply(session, user_id, password, asked).await
        }
        ClientCommand::Heartbeat {} => heartbeat::apply(session).await,
        ClientCommand::Send {
            body,
            room,
            to,
            message_id,
            sent_at_us,
        } => {
            let target = send::Target { room, to };
            send::apply(session, body, target, message_id, sent_at_us).await
        }
        ClientCommand::Resume { last_seq, room } => resume::apply(session, last_seq, room).await,
        ClientCommand::Status { status } => status::set(session, status).await,
        ClientCommand::GetStatus { user_id } => status::get(session, user_id).await,
        ClientCommand::Logout {} => logout::apply(session).await,
        ClientCommand::CreateRoom { room, kind } => create_room::apply(session, room, kind).await,
        ClientCommand::Join { room, after_seq } => join::apply(session, room, after_seq).await,
        ClientCommand::Leave { room } => leave::apply(session, room).await,
        ClientCommand::Invite { room, user_id } => invite::apply(session, room, user_id).await,
        ClientCommand::Rooms {} => rooms::apply(session).await,
        ClientCommand::Members { room } => members::apply(session, room).await,
        ClientCommand::History {
            room,
            after_seq,
            before_seq,
            limit,
        } => {
            let req = history::PageRequest {
                after_seq,
                before_seq,
                limit,
            };
            history::apply(session, room, req).await
        }
        ClientCommand::WatchPresence { on } => watch_presence::apply(session, on).await,
    }
}
