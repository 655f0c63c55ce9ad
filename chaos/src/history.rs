//! The recorded history of a chaos or load run, as the history checker
//! (the `checker` module, design §8) reads it: every publish attempt as an
//! operation (invoked, then ok, fail with the error code, or unknown), and per
//! receiving client its sessions (connected, resumed, disconnected) and every
//! `broadcast` it received in arrival order, duplicates included; optionally
//! the rows PostgreSQL holds once the run drained.
//!
//! It is recorded while the run goes on through a [`Recording`]: each
//! publisher and client task owns a log and hands it back when it drops it
//! (see [`recorder`]; the record itself is in [`record`], loadgen's observer
//! hooks into a recording in [`hooks`]). It is compact enough for a few hundred clients times
//! a hundred thousand deliveries each: message ids are interned once into a
//! dense [`MessageIx`], a delivery is 16 bytes, and nothing on the recording
//! path allocates a string per event. [`History::save`] and [`History::load`]
//! keep a failing run's history as JSON so it can be checked again.
//!
//! A v2 (rooms) client also has room events (its rooms at login, `joined`,
//! `left`, per-room `resume_done`, the end of its connection) and room
//! deliveries, each carrying its room ([`room_record`]); the lobby's records
//! keep their form, so a lobby-only history reads as it always did.
//!
//! Times are microseconds since the recording started (`*_us`), except a
//! delivery's receive time, kept in milliseconds (`received_at_ms`, a `u32`:
//! 49 days) so that a delivery stays at 16 bytes; the checker orders
//! deliveries and session events by their recorded positions, never by time.

pub mod hooks;
pub mod ids;
pub mod record;
pub mod recorder;
pub mod room_record;

pub use record::{
    ClientHistory, CodeIx, Delivery, History, HistoryError, MessageIx, Outcome, Publish,
    PublisherHistory, RoomIx, SessionEvent, SessionEventKind, StoredRow, HISTORY_FORMAT,
};
pub use recorder::{ClientLog, OpId, PublishLog, Recording};
pub use room_record::{RoomDelivery, RoomEvent, RoomEventKind, StoredRoomRow};

#[cfg(test)]
mod tests;
