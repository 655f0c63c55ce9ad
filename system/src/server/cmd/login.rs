//! `login`: checks the password (throttled per user and source address, and
//! per source; repeated failures close the connection), opens the session,
//! answers `login_ok` and, unless the session is publish-only, subscribes
//! it, replaying after `resume_from`. A v2 login (`protocol: 2`) also lists
//! the user's rooms in `login_ok` and subscribes the session to each,
//! replaying those named in `resume_rooms`.

use std::collections::BTreeMap;

use super::{resume, room_flow};
use crate::auth::{self, LoginRefused};
use crate::presence::SessionKind;
use crate::protocol::{
    quote_room, ErrorCode, RoomSummary, ServerFrame, SessionToken, StreamPosition,
    PROTOCOL_VERSION_ROOMS,
};
use crate::room::RoomId;
use crate::room_db;
use crate::server::node::NodeContext;
use crate::server::outbound::{frame, Outbound};
use crate::server::rooms::Begun;
use crate::server::session::{count_rejection, LoggedIn, Next, Session};
use crate::stream;

/// What a login asks for besides the credentials.
pub(super) struct Asked {
    /// The lobby's last `seq` the client has: replay after it.
    pub resume_from: Option<u64>,
    /// False for a publish-only session (no broadcasts at all).
    pub subscribe: bool,
    /// The protocol version (1 or 2; the parser refused others).
    pub protocol: u32,
    /// v2: per room, the last `seq` the client has.
    pub resume_rooms: BTreeMap<String, u64>,
}

/// Logs the session in. Longer than 60 lines for a reason: the steps of
/// a login in their order (checks, session, rooms, `login_ok`, the
/// subscriptions) read as one sequence.
pub(super) async fn apply(
    session: &mut Session,
    user_id: String,
    password: String,
    asked: Asked,
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
    session.protocol = asked.protocol;
    let stream = stream_position(&ctx).await;
    let Ok(rooms) = v2_rooms(session, &asked).await else {
        return Next::Continue;
    };
    // One read of the head serves both `login_ok.last_seq` and the
    // subscription point, so nothing can fall between them.
    let (rx, head) = ctx.fanout.subscribe();
    session
        .reply(ServerFrame::LoginOk {
            user_id,
            session_token: SessionToken::new(token),
            last_seq: head,
            heartbeat_interval_ms: ctx.cfg.server.heartbeat_interval_ms,
            protocol_version: asked.protocol,
            stream,
            rooms: rooms.clone(),
        })
        .await;
    if asked.subscribe {
        resume::subscribe_from(session, rx, head, asked.resume_from).await;
    }
    if let Some(rooms) = rooms {
        finish_rooms(session, &rooms, asked.resume_rooms).await;
    }
    Next::Continue
}

/// A v2 login's rooms (`None` for v1); `Err` after ending the session and
/// answering `internal` when they cannot be read.
async fn v2_rooms(session: &mut Session, asked: &Asked) -> Result<Option<Vec<RoomSummary>>, ()> {
    if asked.protocol != PROTOCOL_VERSION_ROOMS {
        return Ok(None);
    }
    match start_rooms(session, asked.subscribe).await {
        Ok(rooms) => Ok(Some(rooms)),
        Err(e) => {
            session.end().await;
            let message = format!("login unavailable: rooms: {e}");
            session.error(ErrorCode::Internal, message).await;
            Err(())
        }
    }
}

/// The user's rooms with their heads; a subscribing session is first
/// registered (membership changes from now on reach it) and each room's
/// subscription begun before its head is read (started again if a
/// membership entry subscribed it meanwhile: only what follows the head
/// `login_ok` names may reach the client); a room the user left on another
/// session meanwhile is neither subscribed nor listed.
async fn start_rooms(session: &Session, subscribe: bool) -> anyhow::Result<Vec<RoomSummary>> {
    let ctx = &session.ctx;
    let user = session.user_id();
    if subscribe {
        let (out, cut) = (session.out.clone(), session.cut.clone());
        ctx.rooms.register(session.id, &user, out, cut);
    }
    let mine = room_db::rooms_of(&ctx.pg, &user).await?;
    let mut redis = ctx.redis.clone();
    let mut rooms = Vec::with_capacity(mine.len());
    for r in mine {
        let id = RoomId::parse(&r.room)?;
        if ctx.rooms.begin_at_login(session.id, &r.room) == Begun::LeftAtLogin {
            continue;
        }
        let seq = stream::room_head(&mut redis, &ctx.keys, ctx.shards(), &id).await?;
        rooms.push(RoomSummary {
            room: r.room,
            kind: r.kind,
            role: r.role,
            seq,
        });
    }
    Ok(rooms)
}

/// After `login_ok`: lets held frames through, replays the rooms the
/// client resumes (each closed by its `resume_done`), and makes every room
/// live from its head in `login_ok`.
async fn finish_rooms(session: &Session, rooms: &[RoomSummary], mut resume: BTreeMap<String, u64>) {
    let ctx = &session.ctx;
    ctx.rooms.release(session.id);
    let subscribed = ctx.rooms.is_registered(session.id);
    for r in rooms {
        let after = resume.remove(&r.room);
        if let (Some(after), true) = (after, subscribed) {
            if let Ok(id) = RoomId::parse(&r.room) {
                if room_flow::replay_room(session, &id, after, r.seq).await {
                    let done = room_flow::resume_done(&id, r.seq);
                    let _ = session.out.send(Outbound::Frame(done)).await;
                }
            }
        }
        ctx.rooms.go_live(session.id, &r.room, r.seq);
    }
    for room in resume.keys() {
        let message = format!("you are not a member of {}", quote_room(room));
        session
            .room_error(ErrorCode::NotAMember, message, room)
            .await;
    }
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
