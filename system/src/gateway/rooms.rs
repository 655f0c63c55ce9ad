//! The gateway's room routes: create a room, invite to it, list its
//! members, post to it and read a page of its history. Only members read
//! or post (a service with the API key may post to any room that exists,
//! at a route of its own: one credential per route, as for the lobby);
//! every refusal is the gateway's `{code, message}` body with a precise
//! status: 400 bad id or field, 401 credentials, 403 not a member or a
//! limit, 404 unknown room or user, 409 exists, 503 a store is down.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{authenticate, fail, json_rejection, sender, Caller, Gateway, PostMessage};
use crate::replay::ReplayError;
use crate::room::{RoomId, RoomKind, RoomRole};
use crate::room_db::{self, AddOutcome, CreateOutcome, MemberLimits};
use crate::stream::{self, MemberChange};

/// Messages a history page holds when the request names no `limit`.
pub const DEFAULT_PAGE_MESSAGES: u64 = 50;
/// The largest `limit` a history page accepts.
pub const MAX_PAGE_MESSAGES: u64 = 500;

/// Request body of `POST /v1/rooms`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub room: String,
    /// `public` or `private` (direct rooms are made by their first message).
    pub kind: RoomKind,
}

/// Response of `POST /v1/rooms`.
#[derive(Debug, Deserialize, Serialize)]
pub struct RoomCreated {
    pub room: String,
    pub kind: RoomKind,
}

/// Request body of `POST /v1/rooms/{room}/members`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub user_id: String,
}

/// Response of `POST /v1/rooms/{room}/members`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Invited {
    pub room: String,
    pub user_id: String,
}

/// One member in `GET /v1/rooms/{room}/members`.
#[derive(Debug, Deserialize, Serialize)]
pub struct MemberEntry {
    pub user_id: String,
    pub role: RoomRole,
    /// The member's presence when the list was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::protocol::UserStatus>,
}

/// Response of `GET /v1/rooms/{room}/members`.
#[derive(Debug, Deserialize, Serialize)]
pub struct MembersList {
    pub room: String,
    pub members: Vec<MemberEntry>,
}

/// Response of `POST /v1/rooms/{room}/messages`.
#[derive(Debug, Deserialize, Serialize)]
pub struct RoomAccepted {
    pub message_id: String,
    pub room: String,
}

/// Query of `GET /v1/rooms/{room}/messages`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// The page starts after this room seq (0: from the first message).
    #[serde(default)]
    pub after_seq: u64,
    /// Messages in the page at most (1..=500, default 50).
    pub limit: Option<u64>,
}

/// Response of `GET /v1/rooms/{room}/messages`.
#[derive(Debug, Deserialize, Serialize)]
pub struct HistoryPage {
    pub room: String,
    /// `broadcast` objects, oldest first, exactly as live delivery sends them.
    pub messages: Vec<serde_json::Value>,
    /// Whether messages after this page exist.
    pub more: bool,
}

/// `router` with the room routes that publish (under the publishing
/// routes' admission control).
pub fn with_publishing_routes(router: Router<Gateway>) -> Router<Gateway> {
    router
        .route("/v1/rooms/{room}/messages", post(post_room_message))
        .route(
            "/v1/service/rooms/{room}/messages",
            post(post_service_room_message),
        )
}

/// `router` with the other room routes.
pub fn with_routes(router: Router<Gateway>) -> Router<Gateway> {
    router
        .route("/v1/rooms", post(create_room))
        .route("/v1/rooms/{room}/members", post(invite).get(members))
        .route("/v1/rooms/{room}/messages", get(history))
}

/// A handler's answer, whichever way its steps ended.
fn answer(steps: Result<Response, Response>) -> Response {
    match steps {
        Ok(r) | Err(r) => r,
    }
}

/// PostgreSQL failed: 503 `store_unavailable`.
fn pg_down(e: sqlx::Error) -> Response {
    unavailable("PostgreSQL", e)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        format!("{what}: {e}"),
    )
}

/// The room a path names, or the refusal: 400 `invalid_room` for a bad id,
/// 400 `lobby_is_implicit` for the lobby (it has no room routes).
#[allow(clippy::result_large_err)] // a Response is the natural error of a handler step
fn room_of(path: Result<Path<String>, PathRejection>) -> Result<RoomId, Response> {
    let Path(raw) =
        path.map_err(|e| fail(StatusCode::BAD_REQUEST, "invalid_room", e.body_text()))?;
    parse_room(&raw)
}

/// `raw` as a room of the room routes (see [`room_of`]).
#[allow(clippy::result_large_err)] // a Response is the natural error of a handler step
fn parse_room(raw: &str) -> Result<RoomId, Response> {
    let room = RoomId::parse(raw)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, "invalid_room", e.to_string()))?;
    if room.is_lobby() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "lobby_is_implicit",
            "the lobby is every session's room: it is not created, joined or posted to here (POST /v1/messages posts to it)",
        ));
    }
    Ok(room)
}

/// Refuses with 404 `unknown_user` when `user` does not exist.
async fn require_user(g: &Gateway, user: &str) -> Result<(), Response> {
    let status = crate::db::get_status(&g.pg, user)
        .await
        .map_err(|e| unavailable("PostgreSQL", e))?;
    if status.is_none() {
        let why = format!("no user {:?}", crate::display::visible(user));
        return Err(fail(StatusCode::NOT_FOUND, "unknown_user", why));
    }
    Ok(())
}

/// The session's user, or 401: these routes take a session token.
async fn user_of(g: &Gateway, headers: &HeaderMap) -> Result<String, Response> {
    if headers.contains_key("x-api-key") {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route takes a session token (`Authorization: Bearer <token>`)",
        ));
    }
    match authenticate(g, headers).await? {
        Caller::User(user) => Ok(user),
        Caller::Service => Err(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route takes a session token",
        )),
    }
}

/// The room's kind, after checking that it exists (404) and that `user`
/// is a member (403).
async fn member_of(g: &Gateway, room: &RoomId, user: &str) -> Result<RoomKind, Response> {
    let kind = room_db::room_kind(&g.pg, room)
        .await
        .map_err(pg_down)?
        .ok_or_else(|| unknown_room(room))?;
    let member = room_db::is_member(&g.pg, room, user)
        .await
        .map_err(pg_down)?;
    if !member {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "not_a_member",
            format!("you are not a member of {room}"),
        ));
    }
    Ok(kind)
}

fn unknown_room(room: &RoomId) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "unknown_room",
        format!("no room {room}"),
    )
}

/// Tells every server node that `user` joined `room` with `role` (its shard
/// stream), so the user's live sessions follow it from now on.
async fn announce_join(
    g: &Gateway,
    room: &RoomId,
    user: &str,
    of: (RoomKind, RoomRole),
) -> Result<(), Response> {
    let mut redis = g.redis.clone();
    let shards = g.cfg.rooms.shards;
    stream::record_membership_as(
        &mut redis,
        &g.keys,
        shards,
        room,
        user,
        MemberChange::Joined,
        of,
    )
    .await
    .map(|_| ())
    .map_err(|e| unavailable("Redis", e))
}

/// The refusal for `user` being in `rooms.max_rooms_per_user` rooms already.
fn too_many_rooms(g: &Gateway, user: &str) -> Response {
    let max = g.cfg.rooms.max_rooms_per_user;
    fail(
        StatusCode::FORBIDDEN,
        "too_many_rooms",
        format!("{user} is in {max} rooms already, the most allowed"),
    )
}

/// `POST /v1/rooms`: a user creates a public or private room and is its owner.
pub async fn create_room(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Response {
    answer(try_create(g, headers, body).await)
}

async fn try_create(
    g: Gateway,
    headers: HeaderMap,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<Response, Response> {
    let user = user_of(&g, &headers).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let room = parse_room(&req.room)?;
    if req.kind == RoomKind::Direct || room.is_direct() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            "direct rooms are made by their first message (POST /v1/rooms/dm:<a>:<b>/messages); create public or private rooms",
        ));
    }
    let max = g.cfg.rooms.max_rooms_per_user;
    let outcome = room_db::create_room(&g.pg, &room, req.kind, &user, max)
        .await
        .map_err(pg_down)?;
    match outcome {
        CreateOutcome::Created => {}
        CreateOutcome::AlreadyExists => {
            let why = format!("room {room} exists already");
            return Err(fail(StatusCode::CONFLICT, "room_exists", why));
        }
        CreateOutcome::TooManyRooms => return Err(too_many_rooms(&g, &user)),
    }
    announce_join(&g, &room, &user, (req.kind, RoomRole::Owner)).await?;
    let created = RoomCreated {
        room: room.to_string(),
        kind: req.kind,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `POST /v1/rooms/{room}/members`: a member invites a user, who becomes a
/// member at once (201; 200 when already one).
pub async fn invite(
    State(g): State<Gateway>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Invite>, JsonRejection>,
) -> Response {
    answer(try_invite(g, headers, path, body).await)
}

async fn try_invite(
    g: Gateway,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Invite>, JsonRejection>,
) -> Result<Response, Response> {
    let user = user_of(&g, &headers).await?;
    let room = room_of(path)?;
    let Json(req) = body.map_err(json_rejection)?;
    if !crate::identity::valid_user_id(&req.user_id) {
        let rule = crate::identity::USER_ID_RULE;
        return Err(fail(StatusCode::BAD_REQUEST, "invalid_field", rule));
    }
    let kind = member_of(&g, &room, &user).await?;
    if kind == RoomKind::Direct {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            "a direct room has exactly its two users; nobody is invited to it",
        ));
    }
    require_user(&g, &req.user_id).await?;
    let invited = Invited {
        room: room.to_string(),
        user_id: req.user_id.clone(),
    };
    if room_db::is_member(&g.pg, &room, &req.user_id)
        .await
        .map_err(pg_down)?
    {
        return Ok((StatusCode::OK, Json(invited)).into_response());
    }
    let limits = MemberLimits::of(&g.cfg.rooms);
    let outcome = room_db::add_member(&g.pg, &room, &req.user_id, RoomRole::Member, limits)
        .await
        .map_err(pg_down)?;
    match outcome {
        AddOutcome::Added => {}
        AddOutcome::AlreadyMember => return Ok((StatusCode::OK, Json(invited)).into_response()),
        AddOutcome::RoomFull => {
            let max = g.cfg.rooms.max_members_per_room;
            let why = format!("{room} has {max} members, the most allowed");
            return Err(fail(StatusCode::FORBIDDEN, "room_full", why));
        }
        AddOutcome::TooManyRooms => return Err(too_many_rooms(&g, &req.user_id)),
    }
    announce_join(&g, &room, &req.user_id, (kind, RoomRole::Member)).await?;
    Ok((StatusCode::CREATED, Json(invited)).into_response())
}

/// `GET /v1/rooms/{room}/members`: a member lists the room's members.
pub async fn members(
    State(g): State<Gateway>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let listed = async {
        let user = user_of(&g, &headers).await?;
        let room = room_of(path)?;
        member_of(&g, &room, &user).await?;
        let members = room_db::members(&g.pg, &room).await.map_err(pg_down)?;
        let members = members
            .into_iter()
            .map(|m| MemberEntry {
                user_id: m.user_id,
                role: m.role,
                status: m.status,
            })
            .collect();
        let room = room.to_string();
        Ok::<_, Response>(Json(MembersList { room, members }).into_response())
    };
    answer(listed.await)
}

/// `POST /v1/rooms/{room}/messages`: a member posts with a session token
/// (a direct room is made by the first message of either of its users).
/// 202 once the broker confirmed.
pub async fn post_room_message(
    State(g): State<Gateway>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Response {
    let posted = async {
        let caller = Caller::User(user_of(&g, &headers).await?);
        try_post(&g, caller, path, body).await
    };
    answer(posted.await)
}

/// `POST /v1/service/rooms/{room}/messages`: a service posts with the API
/// key, as `service:<sender>`, to a room that exists (one credential per
/// route, as for the lobby's two publishing routes).
pub async fn post_service_room_message(
    State(g): State<Gateway>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Response {
    let posted = async {
        if !headers.contains_key("x-api-key") {
            return Err(fail(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `X-Api-Key`; members post with a session token at POST /v1/rooms/{room}/messages",
            ));
        }
        let caller = authenticate(&g, &headers).await?;
        try_post(&g, caller, path, body).await
    };
    answer(posted.await)
}

async fn try_post(
    g: &Gateway,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Result<Response, Response> {
    let room = room_of(path)?;
    let Json(mut req) = body.map_err(json_rejection)?;
    match &caller {
        Caller::User(user) => {
            ensure_direct_for(g, &room, user).await?;
            member_of(g, &room, user).await?;
        }
        Caller::Service => {
            let kind = room_db::room_kind(&g.pg, &room).await.map_err(pg_down)?;
            if kind.is_none() {
                return Err(unknown_room(&room));
            }
            if room.is_direct() {
                // As for a user's post: the memberships enter the stream
                // before the message can, whoever made the room.
                open_direct_stream(g, &room).await?;
            }
        }
    }
    let from = sender(caller, req.sender.take())
        .map_err(|why| fail(StatusCode::BAD_REQUEST, "invalid_field", why))?;
    let msg = req.into_message(from, Some(room.to_string()));
    super::publish_checked(g, msg).await.map(|message_id| {
        let accepted = RoomAccepted {
            message_id,
            room: room.to_string(),
        };
        (StatusCode::ACCEPTED, Json(accepted)).into_response()
    })
}

/// A direct room one of whose users posts to it exists afterwards, with
/// both users as members (its first message makes it); the other user
/// must exist. Other rooms are left as they are.
async fn ensure_direct_for(g: &Gateway, room: &RoomId, user: &str) -> Result<(), Response> {
    let Some((a, b)) = room.direct_members() else {
        return Ok(());
    };
    if user != a && user != b {
        return Ok(()); // member_of refuses it
    }
    let other = if user == a { b } else { a };
    require_user(g, other).await?;
    room_db::ensure_direct(&g.pg, room).await.map_err(pg_down)?;
    open_direct_stream(g, room).await
}

/// Whichever first message of a direct room gets here first records both
/// memberships in its stream, before either is published
/// (`stream::open_direct`).
async fn open_direct_stream(g: &Gateway, room: &RoomId) -> Result<(), Response> {
    let mut redis = g.redis.clone();
    stream::open_direct(&mut redis, &g.keys, g.cfg.rooms.shards, room)
        .await
        .map(|_| ())
        .map_err(|e| unavailable("Redis", e))
}

/// `GET /v1/rooms/{room}/messages?after_seq=&limit=`: a member reads a page
/// of the room's history, oldest first, from Redis or PostgreSQL.
pub async fn history(
    State(g): State<Gateway>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    answer(try_history(g, headers, path, query).await)
}

async fn try_history(
    g: Gateway,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, Response> {
    let user = user_of(&g, &headers).await?;
    let room = room_of(path)?;
    let Query(q) =
        query.map_err(|e| fail(StatusCode::BAD_REQUEST, "invalid_field", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_MESSAGES);
    if !(1..=MAX_PAGE_MESSAGES).contains(&limit) {
        let why = format!("limit must be 1..={MAX_PAGE_MESSAGES}");
        return Err(fail(StatusCode::BAD_REQUEST, "invalid_field", why));
    }
    member_of(&g, &room, &user).await?;
    let mut redis = g.redis.clone();
    let shards = g.cfg.rooms.shards;
    // One more than the page: whether there is more.
    let page = crate::replay::room_page(
        &mut redis,
        &g.pg,
        &g.keys,
        shards,
        &room,
        q.after_seq,
        limit + 1,
    )
    .await
    .map_err(|e| match e {
        ReplayError::Missing { .. } => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "history_lost",
            e.to_string(),
        ),
        other => unavailable("history", other),
    })?;
    let more = page.len() as u64 > limit;
    let messages = page
        .iter()
        .take(limit as usize)
        .map(|d| serde_json::from_slice(&d.frame[crate::protocol::FRAME_HEADER_BYTES..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            let why = format!("a stored message is not JSON: {e}");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "history_lost", why)
        })?;
    let page = HistoryPage {
        room: room.to_string(),
        messages,
        more,
    };
    Ok(Json(page).into_response())
}
