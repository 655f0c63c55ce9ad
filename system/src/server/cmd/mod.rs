//! The client commands, one file each. The reader loop (`connection.rs`)
//! parses a frame into a `ClientCommand`; [`dispatch`] checks that the
//! command may run in the session's state and hands it to its file's
//! `apply`, which does the work and answers.

mod heartbeat;
mod login;
mod logout;
mod resume;
mod send;
mod status;

use super::session::{Next, Session};
use crate::protocol::{ClientCommand, ErrorCode};

/// Runs one command: `login` only before logging in, every other command
/// only after.
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
    match cmd {
        ClientCommand::Login {
            user_id,
            password,
            resume_from,
            subscribe,
            ..
        } => login::apply(session, user_id, password, resume_from, subscribe).await,
        ClientCommand::Heartbeat {} => heartbeat::apply(session).await,
        ClientCommand::Send {
            body,
            message_id,
            sent_at_us,
            ..
        } => send::apply(session, body, message_id, sent_at_us).await,
        ClientCommand::Resume { last_seq, .. } => resume::apply(session, last_seq).await,
        ClientCommand::Status { status } => status::set(session, status).await,
        ClientCommand::GetStatus { user_id } => status::get(session, user_id).await,
        ClientCommand::Logout {} => logout::apply(session).await,
        other => {
            let message = format!("`{}` is not available yet", other.name());
            session.error(ErrorCode::UnknownCommand, message).await;
            Next::Continue
        }
    }
}
