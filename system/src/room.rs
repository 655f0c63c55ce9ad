//! PLACEHOLDER until wip-rooms-store's interface commit is merged: the room
//! model's names exactly as the rooms contract fixes them, so the protocol
//! and server halves compile meanwhile. Replaced wholesale by the merge.

use serde::{Deserialize, Serialize};

/// The global room of protocol v1: implicit, never created, joined or left.
pub const LOBBY: &str = "lobby";

/// Who may join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    Public,
    Private,
    Direct,
}

impl RoomKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::Direct => "direct",
        }
    }
}

impl std::str::FromStr for RoomKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(RoomKind::Public),
            "private" => Ok(RoomKind::Private),
            "direct" => Ok(RoomKind::Direct),
            _ => Err(format!("unknown room kind {s:?}")),
        }
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomRole {
    Owner,
    Member,
}

impl RoomRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomRole::Owner => "owner",
            RoomRole::Member => "member",
        }
    }
}

/// Why a string is not a room id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoomIdError(String);

/// A valid room id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    pub fn parse(s: &str) -> Result<RoomId, RoomIdError> {
        if let Some(rest) = s.strip_prefix("dm:") {
            let Some((a, b)) = rest.split_once(':') else {
                return Err(RoomIdError("direct room id must be dm:<a>:<b>".into()));
            };
            if !crate::identity::valid_user_id(a) || !crate::identity::valid_user_id(b) || a >= b {
                return Err(RoomIdError(
                    "direct room id must name two users in order".into(),
                ));
            }
            return Ok(RoomId(s.to_owned()));
        }
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
            });
        if ok {
            Ok(RoomId(s.to_owned()))
        } else {
            Err(RoomIdError(
                "room id must match [a-z0-9][a-z0-9_.-]{0,63}".into(),
            ))
        }
    }

    pub fn direct(x: &str, y: &str) -> Result<RoomId, RoomIdError> {
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        RoomId::parse(&format!("dm:{a}:{b}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_lobby(&self) -> bool {
        self.0 == LOBBY
    }

    pub fn is_direct(&self) -> bool {
        self.0.starts_with("dm:")
    }

    pub fn direct_members(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix("dm:")?.split_once(':')
    }
}

/// The shard a room's messages go through.
pub fn shard_of(room: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}
