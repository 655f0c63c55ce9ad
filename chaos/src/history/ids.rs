//! The dense indices a history uses instead of strings: message ids, error
//! codes and room ids are each interned once into a table of the history,
//! so a delivery is a few integers.
use serde::{Deserialize, Serialize};

/// A message id, interned: an index into [`History::message_ids`](super::History::message_ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageIx(pub(crate) u32);

impl MessageIx {
    /// The position in [`History::message_ids`](super::History::message_ids).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An error code, interned: an index into the history's code table ([`History::code`](super::History::code)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeIx(pub(crate) u32);

/// A room id, interned: an index into the history's room table
/// ([`History::room`](super::History::room)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomIx(pub(crate) u32);

impl RoomIx {
    /// The position in the history's room table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
