//! What the room commands share: the v2 gate, membership look-ups, the
//! subscribe flow that leaves no gap and no duplicate (register the
//! subscription, then read the point, then replay, then go live: the
//! registry drops buffered frames at or below the point), replays written
//! in coalesced chunks, and the answers to a store failure or a flood.

use bytes::{Bytes, BytesMut};

use crate::protocol::{ErrorCode, ServerFrame};
use crate::room::{RoomId, RoomKind, RoomRole};
use crate::room_db::{self, AddOutcome, MyRoom};
use crate::server::node::MAX_REPLAY_MESSAGES;
use crate::server::outbound::{frame, Outbound};
use crate::server::rooms::Begun;
use crate::server::session::{count_rejection, Session};
use crate::stream::{self, Delivery, MemberChange};

/// A replay is queued to the writer in chunks of about this many bytes.
const REPLAY_CHUNK_BYTES: usize = 64 * 1024;

/// Where a subscription starts: the room's head now, or the point a
/// membership entry just recorded.
pub(super) enum Point {
    /// The caller is a member already: live delivery follows the head.
    Head,
    /// The caller just became a member: record it and follow that point.
    Joined(RoomKind),
}

/// A room id the parser already checked (it only fails if the rules of
/// `protocol` and `room` ever drift apart: then `invalid_room`).
pub(super) async fn room_id(session: &Session, room: &str) -> Option<RoomId> {
    match RoomId::parse(room) {
        Ok(id) => Some(id),
        Err(e) => {
            session.error(ErrorCode::InvalidRoom, e.to_string()).await;
            None
        }
    }
}

/// Answers a failed store call with `internal` (and logs it).
pub(super) async fn store_failed(
    session: &Session,
    room: &str,
    what: &str,
    e: impl std::fmt::Display,
) {
    tracing::warn!(error = %e, %room, "{what} failed");
    let message = format!("{what} unavailable: {e}");
    session.room_error(ErrorCode::Internal, message, room).await;
}

/// Which per-connection room rate a command uses.
pub(super) enum Rate {
    /// `join` and `create_room`: `rooms.max_joins_per_sec`.
    Joins,
    /// `invite`: `rooms.max_invites_per_sec`.
    Invites,
}

/// Takes a token of `rate`; false (after refusing with `rate_limited`,
/// counted by kind) when the connection is over it.
pub(super) async fn within_rate(session: &mut Session, rate: Rate, room: &str) -> bool {
    let limits = &session.ctx.cfg.rooms;
    let (allowed, kind, rate_per_sec) = match rate {
        Rate::Joins => (session.joins.allow(), "join", limits.max_joins_per_sec),
        Rate::Invites => (
            session.invites.allow(),
            "invite",
            limits.max_invites_per_sec,
        ),
    };
    if allowed {
        return true;
    }
    metrics::counter!("rtmc_rate_limited_total", "kind" => kind).increment(1);
    let message = format!("more than {rate_per_sec} {kind}s per second");
    session
        .room_error(ErrorCode::RateLimited, message, room)
        .await;
    false
}
/// The caller's membership of `room` (kind and role), from PostgreSQL.
pub(super) async fn membership_of(
    session: &Session,
    room: &RoomId,
) -> sqlx::Result<Option<MyRoom>> {
    let mine = room_db::rooms_of(&session.ctx.pg, &session.user_id()).await?;
    Ok(mine.into_iter().find(|r| r.room == room.as_str()))
}

/// Whether the caller may read or post in `room`: it receives it here, or
/// PostgreSQL lists it as a member. Answers `unknown_room` /
/// `not_a_member` / `internal` itself when not.
pub(super) async fn check_member(session: &Session, room: &RoomId) -> bool {
    if session.ctx.rooms.is_subscribed(session.id, room.as_str()) {
        return true;
    }
    let pg = &session.ctx.pg;
    match room_db::is_member(pg, room, &session.user_id()).await {
        Ok(true) => true,
        Ok(false) => {
            refuse_non_member(session, room).await;
            false
        }
        Err(e) => {
            store_failed(session, room.as_str(), "membership check", e).await;
            false
        }
    }
}

/// `unknown_room` when the room does not exist, else `not_a_member`.
pub(super) async fn refuse_non_member(session: &Session, room: &RoomId) {
    let exists = room_db::room_kind(&session.ctx.pg, room).await;
    let shown = crate::protocol::quote_room(room.as_str());
    match exists {
        Ok(None) => {
            let message = format!("no room {shown}");
            session
                .room_error(ErrorCode::UnknownRoom, message, room.as_str())
                .await;
        }
        Ok(Some(_)) => {
            let message = format!("you are not a member of {shown}");
            session
                .room_error(ErrorCode::NotAMember, message, room.as_str())
                .await;
        }
        Err(e) => store_failed(session, room.as_str(), "room lookup", e).await,
    }
}

/// Subscribes the session to `room` from `point` (replaying after
/// `after` first, when given) and answers `joined`; returns the point, or
/// `None` after answering an error. Sessions that receive no rooms
/// (publish-only) only get the answer.
pub(super) async fn follow_room(
    session: &Session,
    room: &RoomId,
    kind: RoomKind,
    role: RoomRole,
    point: Point,
    after: Option<u64>,
) -> Option<u64> {
    let ctx = &session.ctx;
    let name = room.as_str();
    let begun = match after {
        Some(_) => ctx.rooms.restart(session.id, name),
        None => ctx.rooms.begin(session.id, name),
    };
    if begun == Begun::Already {
        // Live already (another join, or a membership entry): it stays so.
        let seq = ctx.rooms.live_seq(session.id, name).unwrap_or(0);
        session
            .reply(ServerFrame::Joined {
                room: name.to_owned(),
                kind,
                role,
                seq,
            })
            .await;
        return Some(seq);
    }
    let at = match read_point(session, room, point, role).await {
        Ok(at) => at,
        Err(e) => {
            ctx.rooms.abandon(session.id, name);
            store_failed(session, name, "room stream", e).await;
            return None;
        }
    };
    if let Some(after) = after {
        replay_room(session, room, after, at).await;
    }
    session
        .reply(ServerFrame::Joined {
            room: name.to_owned(),
            kind,
            role,
            seq: at,
        })
        .await;
    if begun == Begun::Started {
        ctx.rooms.go_live(session.id, name, at);
    }
    metrics::counter!("rtmc_room_joins_total").increment(1);
    Some(at)
}

/// The `seq` a subscription starts after: the room's head, or the point of
/// a membership entry recorded now (with the user's `role`).
async fn read_point(
    session: &Session,
    room: &RoomId,
    point: Point,
    role: RoomRole,
) -> redis::RedisResult<u64> {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    let (keys, shards) = (&ctx.keys, ctx.shards());
    match point {
        Point::Head => stream::room_head(&mut redis, keys, shards, room).await,
        Point::Joined(kind) => {
            let (user, joined) = (session.user_id(), MemberChange::Joined);
            let of = (kind, role);
            stream::record_membership_as(&mut redis, keys, shards, room, &user, joined, of).await
        }
    }
}

/// Queues the room's messages `after < seq <= up_to` to the session, in
/// order; a replay that cannot be produced is a `resume_unavailable` error
/// naming the room (the client then knows it has a gap). Returns whether
/// it was sent.
pub(super) async fn replay_room(session: &Session, room: &RoomId, after: u64, up_to: u64) -> bool {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    let (keys, shards) = (&ctx.keys, ctx.shards());
    let replayed = crate::replay::room_range(
        &mut redis,
        &ctx.pg,
        keys,
        shards,
        room,
        after,
        up_to,
        MAX_REPLAY_MESSAGES,
    )
    .await;
    match replayed {
        Ok(frames) => {
            metrics::counter!("rtmc_resume_replayed_total").increment(frames.len() as u64);
            queue_chunked(session, frames).await;
            true
        }
        Err(e) => {
            count_rejection(ErrorCode::ResumeUnavailable);
            let f =
                ServerFrame::room_error(ErrorCode::ResumeUnavailable, e.to_string(), room.as_str());
            session.reply(f).await;
            false
        }
    }
}

/// Queues replayed frames to the writer, coalesced into chunks.
async fn queue_chunked(session: &Session, frames: Vec<Delivery>) {
    let mut chunk = BytesMut::new();
    for d in frames {
        chunk.extend_from_slice(&d.frame);
        if chunk.len() >= REPLAY_CHUNK_BYTES {
            let full: Bytes = std::mem::take(&mut chunk).freeze();
            let _ = session.out.send(Outbound::Frame(full)).await;
        }
    }
    if !chunk.is_empty() {
        let _ = session.out.send(Outbound::Frame(chunk.freeze())).await;
    }
}

/// The `resume_done` closing a room's replay.
pub(super) fn resume_done(room: &RoomId, last_seq: u64) -> Bytes {
    frame(&ServerFrame::ResumeDone {
        last_seq,
        room: Some(room.as_str().to_owned()),
    })
}

/// Answers a membership that `room_db::add_member` refused for a limit:
/// `room_full`, or `too_many_rooms` naming `user` (the caller when `None`).
pub(super) async fn refuse_for_limits(
    session: &Session,
    room: &RoomId,
    outcome: AddOutcome,
    user: Option<&str>,
) {
    let limits = &session.ctx.cfg.rooms;
    let (code, message) = match (outcome, user) {
        (AddOutcome::RoomFull, _) => (
            ErrorCode::RoomFull,
            format!(
                "{} has {} members already",
                crate::protocol::quote_room(room.as_str()),
                limits.max_members_per_room
            ),
        ),
        (_, Some(user)) => (
            ErrorCode::TooManyRooms,
            format!(
                "{} is in {} rooms already",
                crate::protocol::quote_room(user),
                limits.max_rooms_per_user
            ),
        ),
        (_, None) => (
            ErrorCode::TooManyRooms,
            format!("you are in {} rooms already", limits.max_rooms_per_user),
        ),
    };
    session.room_error(code, message, room.as_str()).await;
}

/// Whether `user` is a user of this deployment; answers `invalid_field`
/// (unknown user, as `get_status` does) or `internal` itself when not.
pub(super) async fn user_exists(session: &Session, user: &str, room: &str) -> bool {
    match crate::db::get_status(&session.ctx.pg, user).await {
        Ok(Some(_)) => true,
        Ok(None) => {
            let message = format!("no user {}", crate::protocol::quote_room(user));
            session
                .room_error(ErrorCode::InvalidField, message, room)
                .await;
            false
        }
        Err(e) => {
            store_failed(session, room, "user lookup", e).await;
            false
        }
    }
}
