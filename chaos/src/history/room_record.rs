//! The rooms part of a recorded history (protocol v2): a client's room
//! memberships as the server announced them (`login_ok.rooms`, `joined`,
//! `left`, `resume_done {room}`), each room delivery with its room, and
//! PostgreSQL's `room_messages` rows. Kept apart from the lobby's records so
//! that a lobby-only history stays exactly what it was (the lobby's seq is
//! global, each room's is its own).
use serde::{Deserialize, Serialize};

use super::ids::{MessageIx, RoomIx};

/// One room `broadcast` as a client received it, before any dedupe.
/// Serialized as `[room, seq, message, received_at_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "(RoomIx, u64, MessageIx, u32)",
    into = "(RoomIx, u64, MessageIx, u32)"
)]
pub struct RoomDelivery {
    /// The frame's `room`.
    pub room: RoomIx,
    /// The frame's `seq` (the room's own sequence).
    pub seq: u64,
    /// The frame's `message_id`.
    pub message: MessageIx,
    /// When it arrived, in milliseconds since the recording started.
    pub received_at_ms: u32,
}

impl From<(RoomIx, u64, MessageIx, u32)> for RoomDelivery {
    fn from((room, seq, message, received_at_ms): (RoomIx, u64, MessageIx, u32)) -> Self {
        RoomDelivery {
            room,
            seq,
            message,
            received_at_ms,
        }
    }
}

impl From<RoomDelivery> for (RoomIx, u64, MessageIx, u32) {
    fn from(d: RoomDelivery) -> Self {
        (d.room, d.seq, d.message, d.received_at_ms)
    }
}

/// A change in a client's room memberships or in the v2 session carrying
/// them, positioned among its room deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// When the client saw it.
    pub at_us: u64,
    /// How many room deliveries the client had recorded before it.
    pub deliveries_before: u64,
    /// What happened.
    pub kind: RoomEventKind,
}

/// What happened to a client's room memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEventKind {
    /// `login_ok` of a v2 session: `rooms` are its rooms with each room's
    /// head (live delivery follows after it); `resume` is what the login's
    /// `resume_rooms` asked for (the client claims every seq up to it).
    Connected {
        /// `login_ok.rooms` as `(room, seq)`.
        rooms: Vec<(RoomIx, u64)>,
        /// The login's `resume_rooms` as `(room, last seq held)`.
        resume: Vec<(RoomIx, u64)>,
    },
    /// `joined {room, seq}`: the room's messages after `seq` follow.
    Joined {
        /// The room.
        room: RoomIx,
        /// The join point.
        seq: u64,
    },
    /// `left {room, seq}`: nothing of the room after `seq` follows.
    Left {
        /// The room.
        room: RoomIx,
        /// The leave point.
        seq: u64,
    },
    /// `resume_done {room, last_seq: head}` ending the replay of
    /// `from + 1 ..= head`.
    Resumed {
        /// The room.
        room: RoomIx,
        /// The seq the replay started after.
        from: u64,
        /// `resume_done.last_seq`.
        head: u64,
    },
    /// The v2 connection ended.
    Disconnected {
        /// Why, as the client knows it.
        reason: String,
    },
}

/// One row of PostgreSQL's `room_messages` table. Serialized as
/// `[room, seq, message]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(RoomIx, u64, MessageIx)", into = "(RoomIx, u64, MessageIx)")]
pub struct StoredRoomRow {
    /// The row's room.
    pub room: RoomIx,
    /// The row's seq in its room.
    pub seq: u64,
    /// The row's message id.
    pub message: MessageIx,
}

impl From<(RoomIx, u64, MessageIx)> for StoredRoomRow {
    fn from((room, seq, message): (RoomIx, u64, MessageIx)) -> Self {
        StoredRoomRow { room, seq, message }
    }
}

impl From<StoredRoomRow> for (RoomIx, u64, MessageIx) {
    fn from(r: StoredRoomRow) -> Self {
        (r.room, r.seq, r.message)
    }
}
