//! `send`: checks the message against the limits and the connection's send
//! rate, then publishes it with a broker confirm in its own task, so the
//! reader keeps reading; the `send_ack` (or `broker_unavailable`) follows
//! the confirm. At most `server.max_inflight_sends` of a connection (and
//! `rabbitmq.max_inflight_publishes` of the node) await a confirm at once;
//! a send beyond either is refused at once with `overloaded`. v2: a message
//! to a `room` needs the sender's membership; one `to` a user goes to their
//! direct room, created (both users members) on first use.

use super::room_flow;
use crate::broker::{BrokerError, PublishedMessage, Publisher};
use crate::protocol::{now_us, ErrorCode, ServerFrame, PROTOCOL_VERSION_ROOMS};
use crate::room::RoomId;
use crate::room_db::{self, CreateOutcome};
use crate::server::outbound::{frame, Outbound};
use crate::server::session::{count_rejection, Next, Session};
use crate::stream;

/// Where a `send` goes: the lobby (both `None`), a room, or a user.
pub(super) struct Target {
    /// v2: a room the sender is a member of.
    pub room: Option<String>,
    /// v2: a user; the message goes to their direct room with the sender.
    pub to: Option<String>,
}

pub(super) async fn apply(
    session: &mut Session,
    body: String,
    target: Target,
    message_id: Option<String>,
    sent_at_us: Option<u64>,
) -> Next {
    // The server's own clock stamps the message; the sender's claim is
    // carried as its field only.
    let received_at_us = now_us();
    let msg = PublishedMessage {
        message_id: message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        from: session.user_id(),
        body,
        sent_at_us: sent_at_us.unwrap_or(received_at_us),
        received_at_us,
        room: None,
    };
    let limits = &session.ctx.cfg.server;
    if (target.room.is_some() || target.to.is_some()) && session.protocol < PROTOCOL_VERSION_ROOMS {
        let why = "`room` and `to` need a login with protocol 2";
        session.error(ErrorCode::InvalidField, why).await;
        return Next::Continue;
    }
    if let Err(reason) = msg.check_limits(limits.max_body_bytes, limits.max_frame_bytes) {
        session.error(ErrorCode::InvalidField, reason).await;
        return Next::Continue;
    }
    if !session.sends.allow() {
        refuse_over_rate(session, msg.message_id).await;
        return Next::Continue;
    }
    let mut msg = msg;
    match resolve(session, target).await {
        Some(room) => msg.room = room.map(|r| r.as_str().to_owned()),
        None => return Next::Continue,
    }
    // A client sending faster than the broker confirms is refused at once
    // rather than buffered: waiting here would stop the reader, and the
    // client would see silence instead of an answer.
    let Ok(permit) = session.inflight.clone().try_acquire_owned() else {
        let bound = limits.max_inflight_sends.max(1);
        let why = format!(
            "{bound} sends of this connection already await the broker's confirm; not published"
        );
        refuse_overloaded(session, msg.message_id, why).await;
        return Next::Continue;
    };
    let publisher = session.ctx.publisher.clone();
    let out = session.out.clone();
    tokio::spawn(async move {
        let reply = publish(&publisher, msg).await;
        let _ = out.send(Outbound::Frame(frame(&reply))).await;
        drop(permit);
    });
    Next::Continue
}

/// Refuses a send over `server.max_sends_per_sec`, naming the message.
async fn refuse_over_rate(session: &Session, message_id: String) {
    metrics::counter!("rtmc_rate_limited_total", "kind" => "send").increment(1);
    count_rejection(ErrorCode::RateLimited);
    let max_sends_per_sec = session.ctx.cfg.server.max_sends_per_sec;
    session
        .reply(ServerFrame::send_error(
            ErrorCode::RateLimited,
            format!("more than {max_sends_per_sec} sends per second; not published"),
            message_id,
        ))
        .await;
}

/// Refuses a send with `overloaded`, naming the message.
async fn refuse_overloaded(session: &Session, message_id: String, message: String) {
    metrics::counter!("rtmc_sends_total", "result" => "overloaded").increment(1);
    count_rejection(ErrorCode::Overloaded);
    session
        .reply(ServerFrame::send_error(
            ErrorCode::Overloaded,
            message,
            message_id,
        ))
        .await;
}

/// Publishes and waits for the confirm; the frame that answers the send.
async fn publish(publisher: &Publisher, msg: PublishedMessage) -> ServerFrame {
    match publisher.publish(&msg).await {
        Ok(()) => {
            metrics::counter!("rtmc_sends_total", "result" => "ack").increment(1);
            ServerFrame::SendAck {
                message_id: msg.message_id,
                room: msg.room,
            }
        }
        Err(e) => {
            let code = match &e {
                BrokerError::Overloaded { .. } => {
                    metrics::counter!("rtmc_sends_total", "result" => "overloaded").increment(1);
                    ErrorCode::Overloaded
                }
                _ => ErrorCode::BrokerUnavailable,
            };
            count_rejection(code);
            ServerFrame::send_error(code, e.to_string(), msg.message_id)
        }
    }
}

/// The room a send goes to (`Some(None)`: the lobby), after checking the
/// sender may post there; `None` after answering why not.
async fn resolve(session: &Session, target: Target) -> Option<Option<RoomId>> {
    if let Some(room) = target.room {
        let id = room_flow::room_id(session, &room).await?;
        if !room_flow::check_member(session, &id).await {
            return None;
        }
        // A direct room named by its id takes the same first-use step as one
        // named by `to`: its memberships enter its stream before this
        // message can (the other user's first message may have made the
        // room in PostgreSQL and not yet reached Redis).
        if id.is_direct() && !session.ctx.rooms.is_subscribed(session.id, id.as_str()) {
            return open_direct_stream(session, &id).await.then_some(Some(id));
        }
        return Some(Some(id));
    }
    let Some(to) = target.to else {
        return Some(None);
    };
    let me = session.user_id();
    let Some(id) = RoomId::direct(&me, &to) else {
        let why = "`to` must be another user than yourself";
        session.error(ErrorCode::InvalidField, why).await;
        return None;
    };
    if session.ctx.rooms.is_subscribed(session.id, id.as_str()) {
        return Some(Some(id));
    }
    if !room_flow::user_exists(session, &to, id.as_str()).await {
        return None;
    }
    open_direct(session, &id).await.then_some(Some(id))
}

/// Creates the direct room on first use and tells both users' sessions
/// (membership entries, recorded by whichever of the two first messages
/// gets there first, before either is published); false after answering a
/// store failure.
async fn open_direct(session: &Session, room: &RoomId) -> bool {
    let created = match room_db::ensure_direct(&session.ctx.pg, room).await {
        Ok(made) => made == CreateOutcome::Created,
        Err(e) => {
            room_flow::store_failed(session, room.as_str(), "direct room", e).await;
            return false;
        }
    };
    if !open_direct_stream(session, room).await {
        return false;
    }
    if created {
        metrics::counter!("rtmc_rooms_created_total").increment(1);
    }
    true
}

/// Records the direct room's two memberships in its shard stream unless
/// they are there (`stream::open_direct`); false after answering a Redis
/// failure.
async fn open_direct_stream(session: &Session, room: &RoomId) -> bool {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    match stream::open_direct(&mut redis, &ctx.keys, ctx.shards(), room).await {
        Ok(_) => true,
        Err(e) => {
            room_flow::store_failed(session, room.as_str(), "room stream", e).await;
            false
        }
    }
}
