//! Room administration for operators (`rtmc room …`): create rooms, add and
//! remove members, list rooms and members, straight on the deployment's
//! PostgreSQL and Redis. Every membership change is recorded in the room's
//! shard stream too, like a client's `join`/`leave`/`invite`, so the live
//! sessions of the user on every server node follow it at once.

use redis::aio::ConnectionLike;
use sqlx::PgPool;

use crate::display::visible;
use crate::room::{RoomId, RoomKind, RoomRole};
use crate::room_db::{self, AddOutcome, CreateOutcome, MemberLimits};
use crate::stream::{self, MemberChange, RedisKeys};

/// Why an administrative change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomAdminError {
    #[error("{0}")]
    Refused(String),
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What an administrative change needs: the deployment's stores, key names,
/// shard count and room limits.
pub struct RoomAdmin<'a, C> {
    /// The deployment's database (rooms and members).
    pub pg: &'a PgPool,
    /// A connection to the deployment's Redis (the shard streams).
    pub redis: &'a mut C,
    /// The deployment's key names (`redis.key_prefix`).
    pub keys: &'a RedisKeys,
    /// `rooms.shards`: which shard stream a room's changes go to.
    pub shards: u32,
    /// `rooms.max_members_per_room`, kept by operators as by clients.
    pub max_members_per_room: u32,
    /// `rooms.max_rooms_per_user`, likewise.
    pub max_rooms_per_user: u32,
}

fn refused(message: String) -> RoomAdminError {
    RoomAdminError::Refused(message)
}

/// A room id an operator typed, checked like a client's.
pub fn parse_room(raw: &str) -> Result<RoomId, RoomAdminError> {
    let room = RoomId::parse(raw).map_err(|e| refused(format!("{}: {e}", visible(raw))))?;
    if room.is_lobby() {
        return Err(refused(
            "the lobby has every user in it implicitly; it is not administered".into(),
        ));
    }
    Ok(room)
}

impl<C: ConnectionLike + Send> RoomAdmin<'_, C> {
    /// Creates a public or private room with `owner` as its owner.
    pub async fn create(
        &mut self,
        room: &RoomId,
        kind: RoomKind,
        owner: &str,
    ) -> Result<(), RoomAdminError> {
        if kind == RoomKind::Direct || room.is_direct() {
            return Err(refused(
                "direct rooms are made by their two users' first message, not by an operator"
                    .into(),
            ));
        }
        self.user_exists(owner).await?;
        match room_db::create_room(self.pg, room, kind, owner, self.max_rooms_per_user).await? {
            CreateOutcome::Created => {}
            CreateOutcome::AlreadyExists => {
                return Err(refused(format!("room {} exists already", room.as_str())));
            }
            CreateOutcome::TooManyRooms => return Err(self.too_many_rooms(owner)),
        }
        self.record(room, owner, MemberChange::Joined, (kind, RoomRole::Owner))
            .await
    }

    /// Makes `user` a member of `room` with `role`.
    pub async fn add(
        &mut self,
        room: &RoomId,
        user: &str,
        role: RoomRole,
    ) -> Result<(), RoomAdminError> {
        let kind = self.kind_of(room).await?;
        if kind == RoomKind::Direct {
            return Err(refused("a direct room has exactly its two users".into()));
        }
        if room_db::is_member(self.pg, room, user).await? {
            return Err(refused(format!(
                "{} is a member of {} already",
                visible(user),
                room.as_str()
            )));
        }
        self.user_exists(user).await?;
        let limits = MemberLimits {
            max_members_per_room: self.max_members_per_room,
            max_rooms_per_user: self.max_rooms_per_user,
        };
        match room_db::add_member(self.pg, room, user, role, limits).await? {
            AddOutcome::Added => {}
            AddOutcome::AlreadyMember => {
                return Err(refused(format!(
                    "{} is a member of {} already",
                    visible(user),
                    room.as_str()
                )));
            }
            AddOutcome::RoomFull => {
                return Err(refused(format!(
                    "{} has {} members, the most rooms.max_members_per_room allows",
                    room.as_str(),
                    self.max_members_per_room
                )));
            }
            AddOutcome::TooManyRooms => return Err(self.too_many_rooms(user)),
        }
        self.record(room, user, MemberChange::Joined, (kind, role))
            .await
    }

    /// Ends `user`'s membership of `room`.
    pub async fn remove(&mut self, room: &RoomId, user: &str) -> Result<(), RoomAdminError> {
        let kind = self.kind_of(room).await?;
        if !room_db::remove_member(self.pg, room, user).await? {
            return Err(refused(format!(
                "{} is not a member of {}",
                visible(user),
                room.as_str()
            )));
        }
        self.record(room, user, MemberChange::Left, (kind, RoomRole::Member))
            .await
    }

    async fn kind_of(&self, room: &RoomId) -> Result<RoomKind, RoomAdminError> {
        room_db::room_kind(self.pg, room)
            .await?
            .ok_or_else(|| refused(format!("no room {}", room.as_str())))
    }

    async fn user_exists(&self, user: &str) -> Result<(), RoomAdminError> {
        if crate::db::get_status(self.pg, user)
            .await
            .map_err(|e| refused(format!("user lookup: {e}")))?
            .is_none()
        {
            return Err(refused(format!("no user {}", visible(user))));
        }
        Ok(())
    }

    fn too_many_rooms(&self, user: &str) -> RoomAdminError {
        refused(format!(
            "{} is in {} rooms, the most rooms.max_rooms_per_user allows",
            visible(user),
            self.max_rooms_per_user
        ))
    }

    /// The change in the room's shard stream: every node's follower applies
    /// it to the user's live sessions.
    async fn record(
        &mut self,
        room: &RoomId,
        user: &str,
        change: MemberChange,
        of: (RoomKind, RoomRole),
    ) -> Result<(), RoomAdminError> {
        let (redis, keys) = (&mut *self.redis, self.keys);
        stream::record_membership_as(redis, keys, self.shards, room, user, change, of).await?;
        Ok(())
    }
}

/// Every room with its kind and member count, by id (the lobby aside).
pub async fn all_rooms(pg: &PgPool) -> sqlx::Result<Vec<(String, RoomKind, i64)>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.room_id, r.kind, count(m.user_id) FROM rooms r \
         LEFT JOIN room_members m USING (room_id) GROUP BY r.room_id, r.kind ORDER BY r.room_id",
    )
    .fetch_all(pg)
    .await?;
    rows.into_iter()
        .map(|(room, kind, members)| {
            let kind = kind.parse().map_err(|_| sqlx::Error::ColumnDecode {
                index: "kind".into(),
                source: format!("unknown room kind {kind:?}").into(),
            })?;
            Ok((room, kind, members))
        })
        .collect()
}
