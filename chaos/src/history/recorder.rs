//! Recording a [`History`] while a run goes on, from many tokio tasks at once.
//!
//! A [`Recording`] starts the clock and holds the one shared table of message
//! ids. Each publisher task takes a [`PublishLog`], each receiving client a
//! [`ClientLog`]; a log is owned by its task, so recording is a push onto a
//! local vector. Dropping a log hands it back to the recording (also when the
//! task panics or is aborted), and [`Recording::finish`] assembles the
//! history once every log is back.
//!
//! The only shared step on the hot path is interning a message id: a publish
//! takes the table's write lock once per attempt, a delivery its read lock
//! (the id is nearly always known by then), so a delivery costs one hash
//! lookup and a 16-byte push. Every method reads the recording's clock; the
//! `*_at` forms take a time (µs since the recording started) instead, for
//! tasks that already read it and for hand-built histories.

use std::collections::HashMap;
use std::mem;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use super::record::{
    ClientHistory, CodeIx, Delivery, History, HistoryError, MessageIx, Outcome, Publish,
    PublisherHistory, RoomIx, SessionEvent, SessionEventKind, StoredRow, HISTORY_FORMAT,
};
use super::room_record::{RoomDelivery, RoomEvent, RoomEventKind, StoredRoomRow};

/// The run being recorded: its clock, its message ids, and the logs handed
/// back so far. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Recording {
    shared: Arc<Shared>,
}

struct Shared {
    /// Time zero of every `*_us` in the history.
    started: Instant,
    /// Message id ↔ dense index, shared by every log.
    messages: RwLock<MessageTable>,
    /// Room id ↔ dense index, shared by every log.
    rooms: RwLock<MessageTable>,
    /// Logs handed back, and the stored rows.
    returned: Mutex<Returned>,
    /// Gives each log its place in the history (the order logs were opened).
    next_log: AtomicU64,
    /// Logs opened and not yet handed back.
    open_logs: AtomicUsize,
}

/// Strings interned into dense indices (message ids, room ids).
#[derive(Default)]
struct MessageTable {
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, MessageIx>,
}

impl MessageTable {
    fn get(&self, id: &str) -> Option<MessageIx> {
        self.index.get(id).copied()
    }

    fn intern(&mut self, id: &str) -> MessageIx {
        if let Some(ix) = self.get(id) {
            return ix;
        }
        // Four billion distinct ids would need hundreds of GiB first.
        let ix = MessageIx(u32::try_from(self.ids.len()).expect("fewer than 2^32 message ids"));
        let id: Arc<str> = Arc::from(id);
        self.ids.push(Arc::clone(&id));
        self.index.insert(id, ix);
        ix
    }
}

#[derive(Default)]
struct Returned {
    publishers: Vec<(u64, PublisherLogParts)>,
    clients: Vec<(u64, ClientHistory)>,
    stored: Option<Vec<StoredRow>>,
    stored_rooms: Option<Vec<StoredRoomRow>>,
    drained_at_us: Option<u64>,
}

/// A returned publish log; its failure codes are still local to it.
struct PublisherLogParts {
    history: PublisherHistory,
    codes: Vec<String>,
}

impl Recording {
    /// Starts a recording; its clock starts now.
    pub fn start() -> Recording {
        Recording {
            shared: Arc::new(Shared {
                started: Instant::now(),
                messages: RwLock::default(),
                rooms: RwLock::default(),
                returned: Mutex::default(),
                next_log: AtomicU64::new(0),
                open_logs: AtomicUsize::new(0),
            }),
        }
    }

    /// Microseconds since the recording started.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// A log for one publisher task (`name`: its user id, `http-3`…).
    pub fn publisher(&self, name: impl Into<String>) -> PublishLog {
        PublishLog {
            shared: Arc::clone(&self.shared),
            order: self.shared.open_log(),
            history: PublisherHistory {
                name: name.into(),
                publishes: Vec::new(),
            },
            codes: Vec::new(),
        }
    }

    /// A log for one receiving client (`name`: its user id).
    pub fn client(&self, name: impl Into<String>) -> ClientLog {
        ClientLog {
            shared: Arc::clone(&self.shared),
            order: self.shared.open_log(),
            history: ClientHistory {
                name: name.into(),
                events: Vec::new(),
                deliveries: Vec::new(),
                room_events: Vec::new(),
                room_deliveries: Vec::new(),
            },
        }
    }

    /// Adds rows read from PostgreSQL's `messages` table after the run
    /// drained, as `(seq, message_id)` in the table's insertion order (so
    /// that rows out of seq order show); call it again to add more.
    pub fn stored<'a>(&self, rows: impl IntoIterator<Item = (u64, &'a str)>) {
        let rows: Vec<StoredRow> = {
            let mut table = self.shared.write_messages();
            rows.into_iter()
                .map(|(seq, id)| StoredRow {
                    seq,
                    message: table.intern(id),
                })
                .collect()
        };
        let mut returned = self.shared.returned();
        returned.stored.get_or_insert_with(Vec::new).extend(rows);
    }

    /// Adds rows read from PostgreSQL's `room_messages` table after the run
    /// drained, as `(room, seq, message_id)` in each room's insertion order;
    /// call it again to add more.
    pub fn stored_rooms<'a>(&self, rows: impl IntoIterator<Item = (&'a str, u64, &'a str)>) {
        let rows: Vec<StoredRoomRow> = rows
            .into_iter()
            .map(|(room, seq, id)| StoredRoomRow {
                room: self.shared.room(room),
                seq,
                message: self.shared.intern(id),
            })
            .collect();
        let mut returned = self.shared.returned();
        returned
            .stored_rooms
            .get_or_insert_with(Vec::new)
            .extend(rows);
    }

    /// Marks the run drained: every delivery that will come has come.
    /// Disconnects recorded from now on are teardown, not clients leaving,
    /// so clients stay owed everything through the end. Call it before
    /// stopping the clients; without it every recorded disconnect is a
    /// client leaving.
    pub fn drained(&self) {
        self.drained_at(self.now_us());
    }

    /// [`drained`](Self::drained) at a given time.
    pub fn drained_at(&self, at_us: u64) {
        self.shared.returned().drained_at_us = Some(at_us);
    }

    /// The history, once every log has been dropped (handed back).
    pub fn finish(self) -> Result<History, HistoryError> {
        let count = self.shared.open_logs.load(Ordering::Acquire);
        if count > 0 {
            return Err(HistoryError::LogsStillOpen { count });
        }
        let Returned {
            mut publishers,
            mut clients,
            stored,
            stored_rooms,
            drained_at_us,
        } = mem::take(&mut *self.shared.returned());
        publishers.sort_by_key(|(order, _)| *order);
        clients.sort_by_key(|(order, _)| *order);
        let table = mem::take(&mut *self.shared.write_messages());
        let message_ids = table.ids.iter().map(|id| id.to_string()).collect();
        let rooms = mem::take(&mut *self.shared.write_rooms());
        let rooms = rooms.ids.iter().map(|id| id.to_string()).collect();
        let (codes, publishers) = merge_codes(publishers.into_iter().map(|(_, p)| p));
        // Every index was made by this recording's tables: valid by construction.
        Ok(History {
            format: HISTORY_FORMAT.to_owned(),
            message_ids,
            codes,
            publishers,
            clients: clients.into_iter().map(|(_, c)| c).collect(),
            stored,
            rooms,
            stored_rooms,
            drained_at_us,
        })
    }
}

/// One table of failure codes for the whole history, each log's local code
/// indices rewritten into it.
fn merge_codes(
    logs: impl Iterator<Item = PublisherLogParts>,
) -> (Vec<String>, Vec<PublisherHistory>) {
    let mut codes: Vec<String> = Vec::new();
    let mut histories = Vec::new();
    for PublisherLogParts {
        mut history,
        codes: local,
    } in logs
    {
        let global: Vec<CodeIx> = local
            .into_iter()
            .map(|code| match codes.iter().position(|c| *c == code) {
                Some(i) => CodeIx(i as u32),
                None => {
                    codes.push(code);
                    CodeIx(codes.len() as u32 - 1)
                }
            })
            .collect();
        for op in &mut history.publishes {
            if let Outcome::Fail { code } = &mut op.outcome {
                *code = global[code.0 as usize];
            }
        }
        histories.push(history);
    }
    (codes, histories)
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn open_log(&self) -> u64 {
        self.open_logs.fetch_add(1, Ordering::AcqRel);
        self.next_log.fetch_add(1, Ordering::Relaxed)
    }

    // A panic elsewhere cannot leave these half-updated (each update is one
    // push or insert), so a poisoned lock is still good to use.
    fn returned(&self) -> MutexGuard<'_, Returned> {
        self.returned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_messages(&self) -> std::sync::RwLockWriteGuard<'_, MessageTable> {
        self.messages
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn intern(&self, id: &str) -> MessageIx {
        self.write_messages().intern(id)
    }

    fn write_rooms(&self) -> std::sync::RwLockWriteGuard<'_, MessageTable> {
        self.rooms.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A room id's index; the read lock first, as for deliveries.
    fn room(&self, id: &str) -> RoomIx {
        let known = self
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id);
        RoomIx(known.unwrap_or_else(|| self.write_rooms().intern(id)).0)
    }

    /// The read lock first: a delivered id is nearly always known already.
    fn lookup_or_intern(&self, id: &str) -> MessageIx {
        let known = self
            .messages
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id);
        known.unwrap_or_else(|| self.intern(id))
    }
}

/// One publish attempt in a [`PublishLog`], to complete later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(usize);

/// One publisher task's attempts. Dropping it hands it back to the
/// [`Recording`].
pub struct PublishLog {
    shared: Arc<Shared>,
    order: u64,
    history: PublisherHistory,
    /// Failure codes seen by this log; `Outcome::Fail` indexes this until
    /// [`Recording::finish`] merges the tables.
    codes: Vec<String>,
}

impl PublishLog {
    /// Microseconds since the recording started.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// Records that `message_id` is being published now; complete the
    /// returned operation with [`ok`](Self::ok), [`fail`](Self::fail) or
    /// [`unknown`](Self::unknown). Never completed, it stays unknown.
    pub fn invoke(&mut self, message_id: &str) -> OpId {
        self.invoke_at(self.now_us(), message_id)
    }

    /// [`invoke`](Self::invoke) at a given time.
    pub fn invoke_at(&mut self, at_us: u64, message_id: &str) -> OpId {
        let message = self.shared.intern(message_id);
        self.history.publishes.push(Publish {
            message,
            invoked_at_us: at_us,
            completed_at_us: None,
            outcome: Outcome::Unknown,
            room: None,
        });
        OpId(self.history.publishes.len() - 1)
    }

    /// [`invoke_at`](Self::invoke_at) of a send to `room` (`None`: the
    /// lobby).
    pub fn invoke_in_at(&mut self, at_us: u64, room: Option<&str>, message_id: &str) -> OpId {
        let op = self.invoke_at(at_us, message_id);
        self.set_room(op, room);
        op
    }

    /// Names the room an attempt went to, once known (a direct message's
    /// room is named by its `send_ack`).
    pub fn set_room(&mut self, op: OpId, room: Option<&str>) {
        let room = room.map(|r| self.shared.room(r));
        if let (Some(publish), Some(room)) = (self.history.publishes.get_mut(op.0), room) {
            publish.room = Some(room);
        }
    }

    /// The attempt was acknowledged (`send_ack`, HTTP 202).
    pub fn ok(&mut self, op: OpId) {
        self.ok_at(op, self.now_us());
    }

    /// [`ok`](Self::ok) at a given time.
    pub fn ok_at(&mut self, op: OpId, at_us: u64) {
        self.complete(op, at_us, Outcome::Ok);
    }

    /// The attempt was refused with `code` (`broker_unavailable`,
    /// `rate_limited`, `http_503`…).
    pub fn fail(&mut self, op: OpId, code: &str) {
        self.fail_at(op, self.now_us(), code);
    }

    /// [`fail`](Self::fail) at a given time.
    pub fn fail_at(&mut self, op: OpId, at_us: u64, code: &str) {
        let placeholder = Outcome::Fail { code: CodeIx(0) };
        if !self.publish(op).is_some_and(|p| replaces(p, placeholder)) {
            return;
        }
        let i = match self.codes.iter().position(|c| c == code) {
            Some(i) => i,
            None => {
                self.codes.push(code.to_owned());
                self.codes.len() - 1
            }
        };
        let code = CodeIx(i as u32);
        self.complete(op, at_us, Outcome::Fail { code });
    }

    /// The publisher gave up without an answer (timeout, connection lost).
    pub fn unknown(&mut self, op: OpId) {
        self.unknown_at(op, self.now_us());
    }

    /// [`unknown`](Self::unknown) at a given time.
    pub fn unknown_at(&mut self, op: OpId, at_us: u64) {
        self.complete(op, at_us, Outcome::Unknown);
    }

    fn complete(&mut self, op: OpId, at_us: u64, outcome: Outcome) {
        if let Some(publish) = self.history.publishes.get_mut(op.0) {
            if replaces(publish, outcome) {
                publish.outcome = outcome;
                publish.completed_at_us = Some(at_us);
            }
        }
    }

    fn publish(&self, op: OpId) -> Option<&Publish> {
        let publish = self.history.publishes.get(op.0);
        debug_assert!(publish.is_some(), "an OpId from another log");
        publish
    }
}

/// Whether `answer` replaces what `publish` recorded so far. A later answer
/// replaces `Unknown` (an ack that arrives after the publisher's timeout
/// still counts), a later refusal an earlier one, but nothing replaces `Ok`,
/// so a loss is never hidden by a late error.
fn replaces(publish: &Publish, answer: Outcome) -> bool {
    match (publish.outcome, answer) {
        (Outcome::Ok, _) | (Outcome::Fail { .. }, Outcome::Unknown) => false,
        (Outcome::Unknown, Outcome::Unknown) => publish.completed_at_us.is_none(),
        _ => true,
    }
}

impl Drop for PublishLog {
    fn drop(&mut self) {
        let parts = PublisherLogParts {
            history: mem::take(&mut self.history),
            codes: mem::take(&mut self.codes),
        };
        self.shared.returned().publishers.push((self.order, parts));
        self.shared.open_logs.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One receiving client's sessions and deliveries. Dropping it hands it back
/// to the [`Recording`].
pub struct ClientLog {
    shared: Arc<Shared>,
    order: u64,
    history: ClientHistory,
}

impl ClientLog {
    /// Microseconds since the recording started.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// `login_ok` arrived with `last_seq = head`; `resume_from` is what the
    /// login asked for (`None` for a fresh login).
    pub fn connected(&mut self, head: u64, resume_from: Option<u64>) {
        self.connected_at(self.now_us(), head, resume_from);
    }

    /// [`connected`](Self::connected) at a given time.
    pub fn connected_at(&mut self, at_us: u64, head: u64, resume_from: Option<u64>) {
        self.event(at_us, SessionEventKind::Connected { head, resume_from });
    }

    /// `resume_done` arrived with `last_seq = head`, ending the replay of a
    /// resume from `from` (the login's `resume_from` or the `resume`
    /// command's `last_seq`).
    pub fn resumed(&mut self, from: u64, head: u64) {
        self.resumed_at(self.now_us(), from, head);
    }

    /// [`resumed`](Self::resumed) at a given time.
    pub fn resumed_at(&mut self, at_us: u64, from: u64, head: u64) {
        self.event(at_us, SessionEventKind::Resumed { from, head });
    }

    /// The connection ended; `reason` as the client knows it.
    pub fn disconnected(&mut self, reason: &str) {
        self.disconnected_at(self.now_us(), reason);
    }

    /// [`disconnected`](Self::disconnected) at a given time.
    /// A v2 client's connection ends its room memberships' live delivery
    /// too: recorded among its room events as well (once it has any).
    pub fn disconnected_at(&mut self, at_us: u64, reason: &str) {
        if !self.history.room_events.is_empty() {
            let reason = reason.to_owned();
            self.room_event(at_us, RoomEventKind::Disconnected { reason });
        }
        let reason = reason.to_owned();
        self.event(at_us, SessionEventKind::Disconnected { reason });
    }

    /// A `broadcast` frame arrived (record every one, before deduping by seq).
    pub fn delivered(&mut self, seq: u64, message_id: &str) {
        self.delivered_at(self.now_us(), seq, message_id);
    }

    /// [`delivered`](Self::delivered) at a given time (kept in milliseconds).
    pub fn delivered_at(&mut self, at_us: u64, seq: u64, message_id: &str) {
        let message = self.shared.lookup_or_intern(message_id);
        self.history.deliveries.push(Delivery {
            seq,
            message,
            received_at_ms: u32::try_from(at_us / 1000).unwrap_or(u32::MAX),
        });
    }

    /// `login_ok` of a v2 session: `rooms` as `(room, seq)` from
    /// `login_ok.rooms`, `resume` the login's `resume_rooms`.
    pub fn rooms_connected_at(
        &mut self,
        at_us: u64,
        rooms: &[(&str, u64)],
        resume: &[(&str, u64)],
    ) {
        let ix = |list: &[(&str, u64)]| -> Vec<(RoomIx, u64)> {
            list.iter()
                .map(|&(r, s)| (self.shared.room(r), s))
                .collect()
        };
        let (rooms, resume) = (ix(rooms), ix(resume));
        self.room_event(at_us, RoomEventKind::Connected { rooms, resume });
    }

    /// `joined {room, seq}` at a given time.
    pub fn joined_at(&mut self, at_us: u64, room: &str, seq: u64) {
        let room = self.shared.room(room);
        self.room_event(at_us, RoomEventKind::Joined { room, seq });
    }

    /// `left {room, seq}` at a given time.
    pub fn left_at(&mut self, at_us: u64, room: &str, seq: u64) {
        let room = self.shared.room(room);
        self.room_event(at_us, RoomEventKind::Left { room, seq });
    }

    /// `resume_done {room, last_seq: head}` after a resume of `room` from
    /// `from`, at a given time.
    pub fn room_resumed_at(&mut self, at_us: u64, room: &str, from: u64, head: u64) {
        let room = self.shared.room(room);
        self.room_event(at_us, RoomEventKind::Resumed { room, from, head });
    }

    /// A room `broadcast` arrived (record every one, before deduping).
    pub fn room_delivered_at(&mut self, at_us: u64, room: &str, seq: u64, message_id: &str) {
        let room = self.shared.room(room);
        let message = self.shared.lookup_or_intern(message_id);
        self.history.room_deliveries.push(RoomDelivery {
            room,
            seq,
            message,
            received_at_ms: u32::try_from(at_us / 1000).unwrap_or(u32::MAX),
        });
    }

    fn room_event(&mut self, at_us: u64, kind: RoomEventKind) {
        self.history.room_events.push(RoomEvent {
            at_us,
            deliveries_before: self.history.room_deliveries.len() as u64,
            kind,
        });
    }

    fn event(&mut self, at_us: u64, kind: SessionEventKind) {
        self.history.events.push(SessionEvent {
            at_us,
            deliveries_before: self.history.deliveries.len() as u64,
            kind,
        });
    }
}

impl Drop for ClientLog {
    fn drop(&mut self) {
        let mut history = mem::take(&mut self.history);
        // The run is over for this log: give back the growth slack.
        history.deliveries.shrink_to_fit();
        history.room_deliveries.shrink_to_fit();
        self.shared.returned().clients.push((self.order, history));
        self.shared.open_logs.fetch_sub(1, Ordering::AcqRel);
    }
}
