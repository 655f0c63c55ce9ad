//! The record of a run: its publish attempts, each client's sessions and
//! deliveries, PostgreSQL's rows, and how it is saved and loaded (the parts
//! of [`History`]; the parent module says how it is recorded and read).
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::ids::{CodeIx, MessageIx, RoomIx};
use super::room_record::{RoomDelivery, RoomEvent, RoomEventKind, StoredRoomRow};

/// The `format` of histories this code writes.
pub const HISTORY_FORMAT: &str = "rtmc-history/2";

/// Formats read as well: `rtmc-history/1` is the lobby-only format, the same
/// document without the rooms' fields (which it never has).
const READABLE_FORMATS: &[&str] = &[HISTORY_FORMAT, "rtmc-history/1"];

/// How a publish attempt ended (Jepsen's ok / fail / info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: `send_ack` or HTTP 202. The message must not be lost.
    Ok,
    /// Refused with an error code (`broker_unavailable`, `rate_limited`, an
    /// HTTP status…): it may still have been published (at-least-once).
    Fail {
        /// The code the refusal carried.
        code: CodeIx,
    },
    /// No answer: timed out, or the connection was lost first. Also the
    /// outcome of an attempt that never completed before the history ended.
    Unknown,
}

/// One publish attempt. A message id may be attempted several times (a retry
/// of a failed or timed-out `send` keeps its id); each attempt is one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The message id published.
    pub message: MessageIx,
    /// When the `send` / POST was issued.
    pub invoked_at_us: u64,
    /// When the answer came or the publisher gave up; `None` if it never
    /// completed (then `outcome` is `Unknown`).
    pub completed_at_us: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The room it was sent to (for a direct message, the room its
    /// `send_ack` named); `None` for the lobby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomIx>,
}

/// Everything one publisher attempted, in invocation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherHistory {
    /// The publisher's name (a user id, `http-3`…), for reports.
    pub name: String,
    /// Its attempts.
    pub publishes: Vec<Publish>,
}

/// A change in a receiving client's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// When the client saw it.
    pub at_us: u64,
    /// How many deliveries the client had recorded before it: the event sits
    /// between `deliveries[deliveries_before - 1]` and
    /// `deliveries[deliveries_before]`.
    pub deliveries_before: u64,
    /// What happened.
    pub kind: SessionEventKind,
}

/// What happened to a receiving client's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEventKind {
    /// `login_ok`: live delivery on this connection starts after `head`
    /// (`login_ok.last_seq`). `resume_from` is what the login asked for, if
    /// anything: the client claims to hold every seq up to it.
    Connected {
        /// The server's head when it subscribed this connection.
        head: u64,
        /// The login's `resume_from`.
        resume_from: Option<u64>,
    },
    /// `resume_done`: the replay of `from + 1 ..= head` is complete (after a
    /// login with `resume_from = from`, or a `resume` command with
    /// `last_seq = from`).
    Resumed {
        /// The seq the replay started after.
        from: u64,
        /// `resume_done.last_seq`.
        head: u64,
    },
    /// The connection ended (logout, error frame, socket error, the client's
    /// own choice).
    Disconnected {
        /// Why, as the client knows it (an error code, `eof`, `chaos`…).
        reason: String,
    },
}

/// One `broadcast` frame as a client received it, before any dedupe.
/// Serialized as `[seq, message, received_at_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, MessageIx, u32)", into = "(u64, MessageIx, u32)")]
pub struct Delivery {
    /// The frame's `seq`.
    pub seq: u64,
    /// The frame's `message_id`.
    pub message: MessageIx,
    /// When it arrived, in milliseconds since the recording started.
    pub received_at_ms: u32,
}

impl From<(u64, MessageIx, u32)> for Delivery {
    fn from((seq, message, received_at_ms): (u64, MessageIx, u32)) -> Self {
        Delivery {
            seq,
            message,
            received_at_ms,
        }
    }
}

impl From<Delivery> for (u64, MessageIx, u32) {
    fn from(d: Delivery) -> Self {
        (d.seq, d.message, d.received_at_ms)
    }
}

/// One receiving client: its session events and its deliveries, each in the
/// order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHistory {
    /// The client's name (its user id), for reports.
    pub name: String,
    /// Session events, in order.
    pub events: Vec<SessionEvent>,
    /// Every `broadcast` received, in arrival order, duplicates included.
    pub deliveries: Vec<Delivery>,
    /// Room memberships and the v2 sessions carrying them, in order (empty
    /// for a v1 client).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_events: Vec<RoomEvent>,
    /// Every room `broadcast` received, in arrival order, duplicates
    /// included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_deliveries: Vec<RoomDelivery>,
}

/// One row of PostgreSQL's `messages` table. Serialized as `[seq, message]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, MessageIx)", into = "(u64, MessageIx)")]
pub struct StoredRow {
    /// The row's seq.
    pub seq: u64,
    /// The row's message id.
    pub message: MessageIx,
}

impl From<(u64, MessageIx)> for StoredRow {
    fn from((seq, message): (u64, MessageIx)) -> Self {
        StoredRow { seq, message }
    }
}

impl From<StoredRow> for (u64, MessageIx) {
    fn from(r: StoredRow) -> Self {
        (r.seq, r.message)
    }
}

/// The recorded history of a run. Built by `Recording::finish` or
/// [`History::load`], both of which guarantee that every index in it points
/// into its tables; read-only afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// [`HISTORY_FORMAT`].
    pub(super) format: String,
    /// Every message id seen (published, delivered or stored), once each.
    pub(super) message_ids: Vec<String>,
    /// Every error code a failed publish carried, once each.
    pub(super) codes: Vec<String>,
    /// Publishers, in the order their logs were opened.
    pub(super) publishers: Vec<PublisherHistory>,
    /// Receiving clients, in the order their logs were opened.
    pub(super) clients: Vec<ClientHistory>,
    /// PostgreSQL's rows in the order they were read (the table's insertion
    /// order), when they were read.
    pub(super) stored: Option<Vec<StoredRow>>,
    /// Every room id seen (joined, delivered, published to or stored), once
    /// each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) rooms: Vec<String>,
    /// PostgreSQL's `room_messages` rows, in each room's insertion order,
    /// when they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) stored_rooms: Option<Vec<StoredRoomRow>>,
    /// When the run had drained (every delivery that would come had come):
    /// disconnects from then on are the harness tearing clients down, not
    /// clients leaving.
    pub(super) drained_at_us: Option<u64>,
}

/// Why a history could not be finished, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `Recording::finish` was called while some logs were still alive.
    #[error("{count} publisher or client log(s) still open; drop them before finishing")]
    LogsStillOpen {
        /// How many.
        count: usize,
    },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is malformed or not a history.
    #[error("history JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A history of another format version.
    #[error("history format {found:?}, expected {HISTORY_FORMAT:?} or rtmc-history/1")]
    Format {
        /// What the file says.
        found: String,
    },
    /// Well-formed JSON whose contents contradict each other.
    #[error("inconsistent history: {0}")]
    Inconsistent(String),
}

impl History {
    /// Every interned message id; `MessageIx(i)` is `message_ids()[i]`.
    pub fn message_ids(&self) -> &[String] {
        &self.message_ids
    }

    /// The message id behind an index.
    pub fn message_id(&self, message: MessageIx) -> &str {
        &self.message_ids[message.index()]
    }

    /// The index of a message id (a linear search: for tests and tools).
    pub fn message_ix(&self, message_id: &str) -> Option<MessageIx> {
        let i = self.message_ids.iter().position(|m| m == message_id)?;
        Some(MessageIx(i as u32))
    }

    /// The error code behind an index.
    pub fn code(&self, code: CodeIx) -> &str {
        &self.codes[code.0 as usize]
    }

    /// Every publisher's attempts.
    pub fn publishers(&self) -> &[PublisherHistory] {
        &self.publishers
    }

    /// Every receiving client.
    pub fn clients(&self) -> &[ClientHistory] {
        &self.clients
    }

    /// A receiving client by name (the first of that name).
    pub fn client(&self, name: &str) -> Option<&ClientHistory> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// PostgreSQL's rows, if they were recorded.
    pub fn stored(&self) -> Option<&[StoredRow]> {
        self.stored.as_deref()
    }

    /// Every interned room id; `RoomIx(i)` is `rooms()[i]`.
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    /// The room id behind an index.
    pub fn room(&self, room: RoomIx) -> &str {
        &self.rooms[room.index()]
    }

    /// The index of a room id (a linear search: for tests and tools).
    pub fn room_ix(&self, room: &str) -> Option<RoomIx> {
        let i = self.rooms.iter().position(|r| r == room)?;
        Some(RoomIx(i as u32))
    }

    /// PostgreSQL's `room_messages` rows, if they were recorded.
    pub fn stored_rooms(&self) -> Option<&[StoredRoomRow]> {
        self.stored_rooms.as_deref()
    }

    /// When the run had drained, if that was recorded
    /// (`Recording::drained`).
    pub fn drained_at_us(&self) -> Option<u64> {
        self.drained_at_us
    }

    /// Writes the history as one JSON document to `path`.
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        let io = |source| HistoryError::Io {
            path: path.to_owned(),
            source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        self.write_json(&mut out)?;
        out.flush().map_err(io)
    }

    /// Reads a history [`History::save`] wrote, and checks that it is
    /// consistent (every index points into its table).
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let file = File::open(path).map_err(|source| HistoryError::Io {
            path: path.to_owned(),
            source,
        })?;
        History::read_json(BufReader::new(file))
    }

    /// Writes the history as one JSON document.
    pub fn write_json(&self, out: impl Write) -> Result<(), HistoryError> {
        Ok(serde_json::to_writer(out, self)?)
    }

    /// Reads a history written by [`History::write_json`], checked as in
    /// [`History::load`].
    pub fn read_json(input: impl Read) -> Result<History, HistoryError> {
        let history: History = serde_json::from_reader(input)?;
        history.validate()?;
        Ok(history)
    }

    /// Everything the checker relies on: the format, unique message ids, and
    /// every index and delivery position in range.
    fn validate(&self) -> Result<(), HistoryError> {
        if !READABLE_FORMATS.contains(&self.format.as_str()) {
            return Err(HistoryError::Format {
                found: self.format.clone(),
            });
        }
        let bad = |what: String| Err(HistoryError::Inconsistent(what));
        let mut distinct = HashSet::with_capacity(self.message_ids.len());
        if let Some(dup) = self.message_ids.iter().find(|m| !distinct.insert(*m)) {
            return bad(format!("message id {dup:?} interned twice"));
        }
        if u32::try_from(self.message_ids.len()).is_err() {
            return bad("more than 2^32 message ids".to_owned());
        }
        let messages = self.message_ids.len();
        let message_ok = |m: MessageIx| m.index() < messages;
        for p in &self.publishers {
            for op in &p.publishes {
                let code_ok = match op.outcome {
                    Outcome::Fail { code } => (code.0 as usize) < self.codes.len(),
                    Outcome::Ok | Outcome::Unknown => true,
                };
                if !message_ok(op.message) || !code_ok {
                    return bad(format!("publisher {:?}: index out of range", p.name));
                }
            }
        }
        for c in &self.clients {
            if !c.deliveries.iter().all(|d| message_ok(d.message)) {
                return bad(format!("client {:?}: message index out of range", c.name));
            }
            let mut before = 0;
            for e in &c.events {
                if e.deliveries_before < before || e.deliveries_before > c.deliveries.len() as u64 {
                    return bad(format!("client {:?}: event positions out of order", c.name));
                }
                before = e.deliveries_before;
            }
        }
        let rows = self.stored.as_deref().unwrap_or_default();
        if !rows.iter().all(|r| message_ok(r.message)) {
            return bad("stored row: message index out of range".to_owned());
        }
        self.validate_rooms(message_ok)
    }

    /// The rooms' part: unique room ids, every room index in range, room
    /// event positions in order.
    fn validate_rooms(&self, message_ok: impl Fn(MessageIx) -> bool) -> Result<(), HistoryError> {
        let bad = |what: String| Err(HistoryError::Inconsistent(what));
        let mut distinct = HashSet::with_capacity(self.rooms.len());
        if let Some(dup) = self.rooms.iter().find(|r| !distinct.insert(*r)) {
            return bad(format!("room id {dup:?} interned twice"));
        }
        let room_ok = |r: RoomIx| r.index() < self.rooms.len();
        let publishes = self.publishers.iter().flat_map(|p| &p.publishes);
        if !publishes.filter_map(|op| op.room).all(room_ok) {
            return bad("publish: room index out of range".to_owned());
        }
        for c in &self.clients {
            let deliveries_ok = c
                .room_deliveries
                .iter()
                .all(|d| room_ok(d.room) && message_ok(d.message));
            let events_ok = c.room_events.iter().all(|e| match &e.kind {
                RoomEventKind::Connected { rooms, resume } => {
                    rooms.iter().chain(resume).all(|&(r, _)| room_ok(r))
                }
                RoomEventKind::Joined { room, .. }
                | RoomEventKind::Left { room, .. }
                | RoomEventKind::Resumed { room, .. } => room_ok(*room),
                RoomEventKind::Disconnected { .. } => true,
            });
            let positions = c.room_events.iter().map(|e| e.deliveries_before);
            let in_order = positions
                .clone()
                .zip(positions.skip(1))
                .all(|(a, b)| a <= b)
                && c.room_events
                    .last()
                    .is_none_or(|e| e.deliveries_before <= c.room_deliveries.len() as u64);
            if !(deliveries_ok && events_ok && in_order) {
                return bad(format!("client {:?}: room records out of range", c.name));
            }
        }
        let rows = self.stored_rooms.as_deref().unwrap_or_default();
        if !rows
            .iter()
            .all(|r| room_ok(r.room) && message_ok(r.message))
        {
            return bad("stored room row: index out of range".to_owned());
        }
        Ok(())
    }
}
