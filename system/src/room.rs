//! What a room is: its id (validated charset and length; direct rooms in a
//! canonical `dm:<a>:<b>` form), its kind, a member's role, and which shard
//! carries it. A lowest-layer module: the broker's message check, the
//! consumer, the stores and the server all use the same rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::identity::valid_user_id;

/// The global room of protocol v1: every session is in it implicitly; it
/// keeps the original pipeline (main queue, global stream and sequence).
pub const LOBBY: &str = "lobby";

/// Longest public or private room id, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 64;

/// How a direct room's id starts.
pub const DIRECT_PREFIX: &str = "dm:";

/// The room-id rule, as error messages state it.
pub const ROOM_ID_RULE: &str =
    "a room id is 1-64 bytes of a-z, 0-9, `_`, `.`, `-`, starting with a letter or digit, or `dm:<a>:<b>` for a direct room";

/// Who may join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// Anyone may join.
    Public,
    /// Only members invite; joining needs an invitation.
    Private,
    /// Exactly two users, both members from the start.
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::Direct => "direct",
        }
    }
}

impl FromStr for RoomKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(RoomKind::Public),
            "private" => Ok(RoomKind::Private),
            "direct" => Ok(RoomKind::Direct),
            _ => Err(UnknownName),
        }
    }
}

impl fmt::Display for RoomKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomRole {
    /// The creator of a public or private room.
    Owner,
    /// Everyone else (both users of a direct room too).
    Member,
}

impl RoomRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomRole::Owner => "owner",
            RoomRole::Member => "member",
        }
    }
}

impl FromStr for RoomRole {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(RoomRole::Owner),
            "member" => Ok(RoomRole::Member),
            _ => Err(UnknownName),
        }
    }
}

impl fmt::Display for RoomRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind or role name that is none of the known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown name")]
pub struct UnknownName;

/// Why a string is not a room id. The offending id is quoted made visible
/// (see [`crate::display::visible`]) and truncated, never echoed raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    #[error("the room id is empty")]
    Empty,
    #[error("room id {0} is longer than 64 bytes")]
    TooLong(String),
    #[error("room id {0} is not valid: {ROOM_ID_RULE}")]
    Charset(String),
    #[error("direct room id {0} must be `dm:<a>:<b>` with two distinct user ids, a < b")]
    Direct(String),
}

/// `raw` as an error message may show it: visible escapes, at most 64
/// characters, quoted.
fn shown(raw: &str) -> String {
    const SHOWN_CHARS: usize = 64;
    let cut: String = raw.chars().take(SHOWN_CHARS).collect();
    let ellipsis = if cut.len() < raw.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", crate::display::visible(&cut))
}

/// A valid room id: a public/private id, the lobby, or a canonical direct id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// Checks `raw` against the room-id rules (see [`ROOM_ID_RULE`]).
    pub fn parse(raw: &str) -> Result<RoomId, RoomIdError> {
        if raw.is_empty() {
            return Err(RoomIdError::Empty);
        }
        if let Some(pair) = raw.strip_prefix(DIRECT_PREFIX) {
            let (a, b) = pair
                .split_once(':')
                .ok_or_else(|| RoomIdError::Direct(shown(raw)))?;
            if !(valid_user_id(a) && valid_user_id(b) && a < b) {
                return Err(RoomIdError::Direct(shown(raw)));
            }
            return Ok(RoomId(raw.to_owned()));
        }
        if raw.len() > MAX_ROOM_ID_BYTES {
            return Err(RoomIdError::TooLong(shown(raw)));
        }
        let bytes = raw.as_bytes();
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let starts_well = allowed(&bytes[0]);
        let rest_ok = bytes
            .iter()
            .all(|b| allowed(b) || matches!(b, b'_' | b'.' | b'-'));
        if !(starts_well && rest_ok) {
            return Err(RoomIdError::Charset(shown(raw)));
        }
        Ok(RoomId(raw.to_owned()))
    }

    /// The direct room of two users, in canonical order; `None` when either
    /// is not a valid user id or both are the same.
    pub fn direct(x: &str, y: &str) -> Option<RoomId> {
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        if a == b || !valid_user_id(a) || !valid_user_id(b) {
            return None;
        }
        Some(RoomId(format!("{DIRECT_PREFIX}{a}:{b}")))
    }

    /// The lobby.
    pub fn lobby() -> RoomId {
        RoomId(LOBBY.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_lobby(&self) -> bool {
        self.0 == LOBBY
    }

    pub fn is_direct(&self) -> bool {
        self.0.starts_with(DIRECT_PREFIX)
    }

    /// The two users of a direct room (`None` for other rooms).
    pub fn direct_members(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix(DIRECT_PREFIX)?.split_once(':')
    }

    /// Its shard among `shards` (see [`shard_of`]).
    pub fn shard(&self, shards: u32) -> u32 {
        shard_of(&self.0, shards)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        RoomId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The shard of `room`: FNV-1a (64-bit) of its bytes modulo `shards` (0
/// counts as 1). Stable across versions and nodes: every publisher,
/// consumer and server node must agree, so this function never changes.
pub fn shard_of(room: &str, shards: u32) -> u32 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = room.bytes().fold(FNV_OFFSET_BASIS, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    (hash % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_room_ids_follow_the_charset() {
        for ok in ["a", "0", "general", "team-42", "a.b_c-d", &"z".repeat(64)] {
            assert_eq!(RoomId::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(RoomId::parse(""), Err(RoomIdError::Empty));
        assert!(matches!(
            RoomId::parse(&"z".repeat(65)),
            Err(RoomIdError::TooLong(_))
        ));
        for bad in [
            "General",
            "-start",
            "_start",
            ".start",
            "a b",
            "a\nb",
            "a\u{1b}[2J",
            "a:b",
            "a\u{202e}b",
            "a\u{200b}b",
            "café",
            "ｆｕｌｌ",
        ] {
            assert!(
                matches!(RoomId::parse(bad), Err(RoomIdError::Charset(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn errors_never_echo_the_raw_id() {
        let e = RoomId::parse("x\u{1b}[2J\u{202e}").unwrap_err().to_string();
        assert!(!e.chars().any(|c| c.is_control() || c == '\u{202e}'), "{e}");
        let long = format!("{}\u{1b}", "y".repeat(500));
        let e = RoomId::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 300 && !e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn direct_rooms_are_canonical_pairs_of_user_ids() {
        let dm = RoomId::direct("bob", "alice").unwrap();
        assert_eq!(dm.as_str(), "dm:alice:bob");
        assert_eq!(RoomId::direct("alice", "bob"), Some(dm.clone()));
        assert!(dm.is_direct() && !dm.is_lobby());
        assert_eq!(dm.direct_members(), Some(("alice", "bob")));
        assert_eq!(RoomId::parse("dm:alice:bob"), Ok(dm));
        assert_eq!(RoomId::direct("alice", "alice"), None);
        assert_eq!(RoomId::direct("al:ice", "bob"), None);
        assert_eq!(RoomId::direct("", "bob"), None);
        for bad in [
            "dm:bob:alice",
            "dm:alice:alice",
            "dm:alice",
            "dm:alice:",
            "dm::bob",
            "dm:a:b:c",
            "dm:a\u{1}:b",
        ] {
            assert!(
                matches!(RoomId::parse(bad), Err(RoomIdError::Direct(_))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(RoomId::parse("general").unwrap().direct_members(), None);
    }

    #[test]
    fn the_lobby_is_a_room_id() {
        let lobby = RoomId::parse(LOBBY).unwrap();
        assert!(lobby.is_lobby() && !lobby.is_direct());
        assert_eq!(lobby, RoomId::lobby());
    }

    #[test]
    fn shard_of_is_pinned() {
        // FNV-1a 64 of "" is the offset basis; the rest pin the function so
        // that no change of it can move existing rooms to another shard.
        assert_eq!(shard_of("", 64), (0xcbf2_9ce4_8422_2325u64 % 64) as u32);
        assert_eq!(
            shard_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(shard_of("general", 4), shard_of("general", 4));
        let pinned: Vec<u32> = ["lobby", "general", "dm:alice:bob", "team-42"]
            .iter()
            .map(|r| shard_of(r, 4))
            .collect();
        assert_eq!(pinned, PINNED_SHARDS_OF_4);
        assert_eq!(shard_of("general", 64), 11);
        assert_eq!(shard_of("dm:alice:bob", 64), 17);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "no shards counts as one");
    }

    /// The shards of `lobby`, `general`, `dm:alice:bob`, `team-42` among 4.
    const PINNED_SHARDS_OF_4: [u32; 4] = [3, 3, 1, 1];

    #[test]
    fn kinds_and_roles_have_stable_names() {
        for k in [RoomKind::Public, RoomKind::Private, RoomKind::Direct] {
            assert_eq!(k.as_str().parse::<RoomKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for r in [RoomRole::Owner, RoomRole::Member] {
            assert_eq!(r.as_str().parse::<RoomRole>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("Public".parse::<RoomKind>().is_err());
        let id: Result<RoomId, _> = serde_json::from_str("\"Bad Room\"");
        assert!(id.is_err());
    }
}
