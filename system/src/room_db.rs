//! Rooms and their members in PostgreSQL (`rooms`, `room_members`): the
//! durable truth of who may read and post where. The lobby has no row: every
//! session is in it implicitly. Limits (rooms per user, members per room)
//! are checked in the transaction that adds the membership, under advisory
//! locks, so concurrent requests cannot overshoot them.

use sqlx::{PgConnection, PgPool};

use crate::protocol::UserStatus;
use crate::room::{RoomId, RoomKind, RoomRole};

/// What [`create_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The room is new, with its creator (or both users of a direct room) in it.
    Created,
    /// A room of that id existed already; nothing changed.
    AlreadyExists,
    /// The creator is in `rooms.max_rooms_per_user` rooms already; nothing
    /// changed.
    TooManyRooms,
}

/// The limits a new membership is held to (`rooms.max_members_per_room`,
/// `rooms.max_rooms_per_user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLimits {
    /// The most members a room may have.
    pub max_members_per_room: u32,
    /// The most rooms a user may be in (direct rooms count, the lobby not).
    pub max_rooms_per_user: u32,
}

impl MemberLimits {
    /// The deployment's limits.
    pub fn of(cfg: &crate::config::RoomsConfig) -> Self {
        Self {
            max_members_per_room: cfg.max_members_per_room,
            max_rooms_per_user: cfg.max_rooms_per_user,
        }
    }
}

/// What [`add_member`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// The user is a member now.
    Added,
    /// The user was a member already (the role is left as it was).
    AlreadyMember,
    /// The room has `max_members_per_room` members; nothing changed.
    RoomFull,
    /// The user is in `max_rooms_per_user` rooms; nothing changed.
    TooManyRooms,
}

/// Advisory-lock namespaces (the first key of `pg_advisory_xact_lock`):
/// additions to one room, and new memberships of one user, run one at a
/// time. A transaction takes a room's lock before a user's, never the
/// other way round, so two never wait on each other.
const ROOM_LOCK: i32 = 0x726d_0001;
const USER_LOCK: i32 = 0x726d_0002;

/// Holds `key`'s lock in `space` until the transaction ends (rooms or users
/// whose ids hash alike merely wait for each other).
async fn lock(tx: &mut PgConnection, space: i32, key: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(space)
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

/// Writes one membership row on `tx`.
async fn insert_member(
    tx: &mut PgConnection,
    room: &RoomId,
    user: &str,
    role: RoomRole,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO room_members (room_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(room.as_str())
        .bind(user)
        .bind(role.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

/// How many rooms `user` is in, read on `tx`.
async fn rooms_held(tx: &mut PgConnection, user: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM room_members WHERE user_id = $1")
        .bind(user)
        .fetch_one(tx)
        .await?;
    Ok(n)
}

/// One of a user's rooms, with the user's role in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MyRoom {
    /// The room's id.
    pub room: String,
    /// Its kind.
    pub kind: RoomKind,
    /// The user's role in it.
    pub role: RoomRole,
}

fn decode<T: std::str::FromStr>(column: &str, raw: &str) -> sqlx::Result<T> {
    raw.parse().map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("unknown value {raw:?}").into(),
    })
}

/// Creates `room` of `kind`, in one transaction with its first members: the
/// creator as owner (unless the creator is in `max_rooms_per_user` rooms
/// already, counted under the creator's lock), or, for a direct room, both
/// of its users as members (direct rooms are never refused for the count).
pub async fn create_room(
    pg: &PgPool,
    room: &RoomId,
    kind: RoomKind,
    creator: &str,
    max_rooms_per_user: u32,
) -> sqlx::Result<CreateOutcome> {
    let mut tx = pg.begin().await?;
    if kind != RoomKind::Direct {
        lock(&mut tx, USER_LOCK, creator).await?;
        if rooms_held(&mut tx, creator).await? >= i64::from(max_rooms_per_user) {
            return Ok(CreateOutcome::TooManyRooms);
        }
    }
    let created = sqlx::query(
        "INSERT INTO rooms (room_id, kind, created_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(room.as_str())
    .bind(kind.as_str())
    .bind(creator)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !created {
        return Ok(CreateOutcome::AlreadyExists);
    }
    let first_members: Vec<(&str, RoomRole)> = match room.direct_members() {
        Some((a, b)) if kind == RoomKind::Direct => {
            vec![(a, RoomRole::Member), (b, RoomRole::Member)]
        }
        _ => vec![(creator, RoomRole::Owner)],
    };
    for (user, role) in first_members {
        insert_member(&mut tx, room, user, role).await?;
    }
    tx.commit().await?;
    Ok(CreateOutcome::Created)
}

/// The kind of `room`, or `None` when no such room exists.
pub async fn room_kind(pg: &PgPool, room: &RoomId) -> sqlx::Result<Option<RoomKind>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT kind FROM rooms WHERE room_id = $1")
        .bind(room.as_str())
        .fetch_optional(pg)
        .await?;
    row.map(|(k,)| decode("kind", &k)).transpose()
}

/// Adds `user` to `room` with `role` within `limits`, in one transaction
/// that holds the room's and then the user's lock while it counts and
/// inserts: racing additions cannot take a room past its members or a user
/// past its rooms. The room must exist.
pub async fn add_member(
    pg: &PgPool,
    room: &RoomId,
    user: &str,
    role: RoomRole,
    limits: MemberLimits,
) -> sqlx::Result<AddOutcome> {
    let mut tx = pg.begin().await?;
    lock(&mut tx, ROOM_LOCK, room.as_str()).await?;
    lock(&mut tx, USER_LOCK, user).await?;
    let (member, members): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2), \
         (SELECT count(*) FROM room_members WHERE room_id = $1)",
    )
    .bind(room.as_str())
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    if member {
        return Ok(AddOutcome::AlreadyMember);
    }
    if members >= i64::from(limits.max_members_per_room) {
        return Ok(AddOutcome::RoomFull);
    }
    if rooms_held(&mut tx, user).await? >= i64::from(limits.max_rooms_per_user) {
        return Ok(AddOutcome::TooManyRooms);
    }
    insert_member(&mut tx, room, user, role).await?;
    tx.commit().await?;
    Ok(AddOutcome::Added)
}

/// Removes `user` from `room`; false when the user was not a member.
pub async fn remove_member(pg: &PgPool, room: &RoomId, user: &str) -> sqlx::Result<bool> {
    let removed = sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
        .bind(room.as_str())
        .bind(user)
        .execute(pg)
        .await?
        .rows_affected();
    Ok(removed == 1)
}

/// Whether `user` is a member of `room`.
pub async fn is_member(pg: &PgPool, room: &RoomId, user: &str) -> sqlx::Result<bool> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind(room.as_str())
            .bind(user)
            .fetch_optional(pg)
            .await?;
    Ok(row.is_some())
}

/// Every room `user` is a member of (the lobby aside), by room id.
pub async fn rooms_of(pg: &PgPool, user: &str) -> sqlx::Result<Vec<MyRoom>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT m.room_id, r.kind, m.role FROM room_members m JOIN rooms r USING (room_id) \
         WHERE m.user_id = $1 ORDER BY m.room_id",
    )
    .bind(user)
    .fetch_all(pg)
    .await?;
    rows.into_iter()
        .map(|(room, kind, role)| {
            Ok(MyRoom {
                room,
                kind: decode("kind", &kind)?,
                role: decode("role", &role)?,
            })
        })
        .collect()
}

/// One member of a room as [`members`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's user id.
    pub user_id: String,
    /// Owner or member.
    pub role: RoomRole,
    /// The user's presence as PostgreSQL holds it (`users.status`, written
    /// on every change before the cache); `None` for a user not in `users`.
    pub status: Option<UserStatus>,
}

/// The members of `room` with their roles and presence, in the order they
/// joined (one query).
pub async fn members(pg: &PgPool, room: &RoomId) -> sqlx::Result<Vec<Member>> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT m.user_id, m.role, u.status FROM room_members m \
         LEFT JOIN users u USING (user_id) WHERE m.room_id = $1 ORDER BY m.joined_at, m.user_id",
    )
    .bind(room.as_str())
    .fetch_all(pg)
    .await?;
    rows.into_iter()
        .map(|(user_id, role, status)| {
            Ok(Member {
                user_id,
                role: decode("role", &role)?,
                status: status.as_deref().and_then(UserStatus::parse),
            })
        })
        .collect()
}

/// How many members `room` has.
pub async fn member_count(pg: &PgPool, room: &RoomId) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM room_members WHERE room_id = $1")
        .bind(room.as_str())
        .fetch_one(pg)
        .await?;
    Ok(n)
}

/// How many rooms `user` is a member of (the lobby not counted).
pub async fn room_count_of(pg: &PgPool, user: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM room_members WHERE user_id = $1")
        .bind(user)
        .fetch_one(pg)
        .await?;
    Ok(n)
}

/// Creates the direct room `room` with both of its users as members, unless
/// it exists (idempotent; two first messages racing create it once). An id
/// that is not a direct one is refused (a caller's mistake, never stored).
pub async fn ensure_direct(pg: &PgPool, room: &RoomId) -> sqlx::Result<CreateOutcome> {
    let Some((a, _)) = room.direct_members() else {
        return Err(sqlx::Error::Protocol(format!(
            "ensure_direct: {room} is not a direct room"
        )));
    };
    create_room(pg, room, RoomKind::Direct, a, u32::MAX).await
}
