//! `login`: checks the password (throttled per user and source address, and
//! per source; repeated failures close the connection), opens the session, answers `login_ok` and, unless the
//! session is publish-only, subscribes it, replaying after `resume_from`.

use super::resume;
use crate::auth::{self, LoginRefused};
use crate::presence::SessionKind;
use crate::protocol::{ErrorCode, ServerFrame, SessionToken, StreamPosition, PROTOCOL_VERSION};
use crate::server::node::NodeContext;
use crate::server::outbound::{frame, Outbound};
use crate::server::session::{count_rejection, LoggedIn, Next, Session};

pub(super) async fn apply(
    session: &mut Session,
    user_id: String,
    password: String,
    resume_from: Option<u64>,
    subscribe: bool,
) -> Next {
    if !auth::valid_user_id(&user_id) {
        session
            .error(ErrorCode::InvalidField, crate::auth::USER_ID_RULE)
            .await;
        return Next::Continue;
    }
    let ctx = session.ctx.clone();
    // Held until the session is subscribed.
    let Ok(_gate) = ctx.login_gate.acquire().await else {
        return Next::Close;
    };
    let source = session.peer.ip();
    let limits = &ctx.cfg.server;
    let checked =
        auth::check_password(&ctx.presence, &ctx.pg, limits, &user_id, &password, source).await;
    if let Err(refused) = checked {
        return refuse(session, refused).await;
    }
    let token = match ctx.presence.open_session(&user_id, SessionKind::Tcp).await {
        Ok(t) => t,
        Err(e) => {
            let message = format!("session store unavailable: {e}");
            session.error(ErrorCode::Internal, message).await;
            return Next::Continue;
        }
    };
    metrics::counter!("rtmc_logins_total", "result" => "ok").increment(1);
    session.logged_in = Some(LoggedIn {
        user_id: user_id.clone(),
        token: token.clone(),
    });
    let stream = stream_position(&ctx).await;
    // One read of the head serves both `login_ok.last_seq` and the
    // subscription point, so nothing can fall between them.
    let (rx, head) = ctx.fanout.subscribe();
    session
        .reply(ServerFrame::LoginOk {
            user_id,
            session_token: SessionToken::new(token),
            last_seq: head,
            heartbeat_interval_ms: ctx.cfg.server.heartbeat_interval_ms,
            protocol_version: PROTOCOL_VERSION,
            stream,
            rooms: None,
        })
        .await;
    if subscribe {
        resume::subscribe_from(session, rx, head, resume_from).await;
    }
    Next::Continue
}

/// The deployment's stream and its current epoch; `None` (the client then
/// keeps no resume state) when Redis cannot say.
async fn stream_position(ctx: &NodeContext) -> Option<StreamPosition> {
    let mut redis = ctx.redis.clone();
    match crate::stream::epoch(&mut redis, &ctx.keys).await {
        Ok(epoch) => Some(StreamPosition {
            id: ctx.stream_id.clone(),
            epoch,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "login: cannot read the stream epoch");
            None
        }
    }
}

/// Answers a refused login; wrong passwords and throttled users count
/// towards closing the connection.
async fn refuse(session: &mut Session, refused: LoginRefused) -> Next {
    let message = refused.to_string();
    match refused {
        LoginRefused::Throttled { retry_after_secs } => {
            metrics::counter!("rtmc_logins_total", "result" => "throttled").increment(1);
            count_rejection(ErrorCode::RateLimited);
            let refusal = ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message,
                message_id: None,
                retry_after_secs: Some(retry_after_secs),
                room: None,
            };
            session.reply(refusal).await;
            count_login_failure(session)
        }
        LoginRefused::WrongPassword => {
            metrics::counter!("rtmc_logins_total", "result" => "auth_failed").increment(1);
            session.error(ErrorCode::AuthFailed, message).await;
            count_login_failure(session)
        }
        LoginRefused::ThrottleUnavailable(_) => {
            let message = format!("login unavailable: {message}");
            session.error(ErrorCode::Internal, message).await;
            Next::Continue
        }
        LoginRefused::DatabaseUnavailable(_) => {
            metrics::counter!("rtmc_logins_total", "result" => "error").increment(1);
            let message = format!("login unavailable: {message}");
            session.error(ErrorCode::Internal, message).await;
            Next::Continue
        }
    }
}

/// Closes a connection that keeps failing to log in.
fn count_login_failure(session: &mut Session) -> Next {
    session.login_failures += 1;
    if session.login_failures < session.ctx.cfg.server.max_login_failures_per_connection {
        return Next::Continue;
    }
    metrics::counter!("rtmc_rate_limited_total", "kind" => "login_connection").increment(1);
    let out = session.out.clone();
    let bye = frame(&ServerFrame::error(
        ErrorCode::RateLimited,
        "too many failed logins on this connection",
    ));
    tokio::spawn(async move {
        let _ = out.send(Outbound::Close(bye)).await;
    });
    Next::Close
}
