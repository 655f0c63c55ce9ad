//! loadgen's event hooks ([`rtmc_loadgen::measure::observe`]) written into a
//! [`Recording`]: each publish channel gets a [`PublishLog`], each receiving
//! client a [`ClientLog`], and each connection of a room run one of each
//! ([`RoomRecorder`]), so a run driven by loadgen's own client engine
//! leaves the history the checker reads.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rtmc_loadgen::measure::observe::{
    ClientObserver, FleetObserver, PublishObserver, RoomFleetObserver, RoomObserver,
};

use crate::history::recorder::{ClientLog, OpId, PublishLog, Recording};

/// The publish side: one log per channel, attempts found by message id.
pub struct PublishRecorder {
    recording: Recording,
    /// `None` once [`close`](Self::close)d.
    channels: Mutex<Option<HashMap<u32, ChannelLog>>>,
}

struct ChannelLog {
    log: PublishLog,
    /// The latest attempt of each message id.
    ops: HashMap<String, OpId>,
}

impl std::fmt::Debug for PublishRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishRecorder")
    }
}

impl PublishRecorder {
    pub fn new(recording: Recording) -> Self {
        Self {
            recording,
            channels: Mutex::new(Some(HashMap::new())),
        }
    }

    /// Hands the logs back to the recording; later events are ignored.
    pub fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u32, ChannelLog>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with(&self, channel: u32, f: impl FnOnce(&mut ChannelLog)) {
        let mut guard = self.lock();
        let Some(channels) = guard.as_mut() else {
            return;
        };
        let entry = channels.entry(channel).or_insert_with(|| ChannelLog {
            log: self.recording.publisher(format!("publisher-{channel}")),
            ops: HashMap::new(),
        });
        f(entry);
    }
}

impl PublishObserver for PublishRecorder {
    fn invoked(&self, channel: u32, message_id: &str) {
        self.with(channel, |c| {
            let op = c.log.invoke(message_id);
            c.ops.insert(message_id.to_owned(), op);
        });
    }

    fn acked(&self, channel: u32, message_id: &str) {
        self.with(channel, |c| {
            if let Some(&op) = c.ops.get(message_id) {
                c.log.ok(op);
            }
        });
    }

    fn refused(&self, channel: u32, message_id: &str, code: &str) {
        self.with(channel, |c| {
            if let Some(&op) = c.ops.get(message_id) {
                c.log.fail(op, code);
            }
        });
    }

    fn unanswered(&self, channel: u32, message_id: &str) {
        self.with(channel, |c| {
            if let Some(&op) = c.ops.get(message_id) {
                c.log.unknown(op);
            }
        });
    }
}

/// The receiving side: a [`ClientLog`] per client, named by its user.
#[derive(Clone)]
pub struct FleetRecorder(pub Recording);

impl std::fmt::Debug for FleetRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetRecorder")
    }
}

impl FleetObserver for FleetRecorder {
    fn client(&self, _index: usize, user: &str) -> Box<dyn ClientObserver> {
        Box::new(ClientRecorder(self.0.client(user)))
    }
}

struct ClientRecorder(ClientLog);

impl ClientObserver for ClientRecorder {
    fn connected(&mut self, head: u64, resume_from: Option<u64>) {
        self.0.connected(head, resume_from);
    }

    fn resumed(&mut self, from: u64, head: u64) {
        self.0.resumed(from, head);
    }

    fn delivered(&mut self, seq: u64, message_id: &str) {
        self.0.delivered(seq, message_id);
    }

    fn disconnected(&mut self, reason: &str) {
        self.0.disconnected(reason);
    }
}

/// A room run's connections (protocol v2): each records its room events and
/// deliveries in a [`ClientLog`] and its sends in a [`PublishLog`], both
/// named by its user.
#[derive(Clone)]
pub struct RoomRecorder(pub Recording);

impl std::fmt::Debug for RoomRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomRecorder")
    }
}

impl RoomFleetObserver for RoomRecorder {
    fn connection(&self, _index: usize, user: &str) -> Box<dyn RoomObserver> {
        Box::new(RoomConnectionRecorder {
            client: self.0.client(user),
            publishes: self.0.publisher(user),
            ops: HashMap::new(),
        })
    }
}

/// One connection's logs.
struct RoomConnectionRecorder {
    client: ClientLog,
    publishes: PublishLog,
    /// The latest attempt of each message id.
    ops: HashMap<String, OpId>,
}

impl RoomObserver for RoomConnectionRecorder {
    fn connected(&mut self, rooms: &[(&str, u64)], resume: &[(&str, u64)]) {
        let at = self.client.now_us();
        self.client.rooms_connected_at(at, rooms, resume);
    }

    fn joined(&mut self, room: &str, seq: u64) {
        let at = self.client.now_us();
        self.client.joined_at(at, room, seq);
    }

    fn left(&mut self, room: &str, seq: u64) {
        let at = self.client.now_us();
        self.client.left_at(at, room, seq);
    }

    fn resumed(&mut self, room: &str, from: u64, head: u64) {
        let at = self.client.now_us();
        self.client.room_resumed_at(at, room, from, head);
    }

    fn delivered(&mut self, room: &str, seq: u64, message_id: &str) {
        let at = self.client.now_us();
        self.client.room_delivered_at(at, room, seq, message_id);
    }

    fn disconnected(&mut self, reason: &str) {
        self.client.disconnected(reason);
    }

    fn invoked(&mut self, room: Option<&str>, message_id: &str) {
        let at = self.publishes.now_us();
        let op = self.publishes.invoke_in_at(at, room, message_id);
        self.ops.insert(message_id.to_owned(), op);
    }

    fn acked(&mut self, message_id: &str, room: Option<&str>) {
        if let Some(&op) = self.ops.get(message_id) {
            self.publishes.set_room(op, room);
            self.publishes.ok(op);
        }
    }

    fn refused(&mut self, message_id: &str, code: &str) {
        if let Some(&op) = self.ops.get(message_id) {
            self.publishes.fail(op, code);
        }
    }
}
