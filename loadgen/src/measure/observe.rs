//! Hooks that let a caller see every event of a run as it happens: each
//! publish attempt and its answer, and each receiving client's sessions and
//! deliveries. loadgen itself only counts; the chaos runner implements these
//! to record a history for its checker (design §8) from loadgen's own client
//! engine instead of a copy of it. Without an observer nothing changes on
//! the hot path: deliveries are only parsed in full when one is set.

use std::fmt::Debug;
use std::sync::Arc;

/// Sees the publish attempts of every channel of a phase. Called from the
/// publisher tasks; cheap calls only.
pub trait PublishObserver: Send + Sync + Debug {
    /// Channel `channel` is sending `message_id` now.
    fn invoked(&self, channel: u32, message_id: &str);
    /// The attempt was acknowledged (`send_ack`, HTTP 202).
    fn acked(&self, channel: u32, message_id: &str);
    /// The attempt was refused with `code`: the server's error code
    /// (`broker_unavailable`, `rate_limited`…), `http_<status>` for an
    /// HTTP refusal whose body names none.
    fn refused(&self, channel: u32, message_id: &str, code: &str);
    /// The attempt got no answer (timeout, connection lost).
    fn unanswered(&self, channel: u32, message_id: &str);
}

/// Hands each receiving client its own observer as it starts.
pub trait FleetObserver: Send + Sync + Debug {
    /// The observer of client `index`, who logs in as `user`.
    fn client(&self, index: usize, user: &str) -> Box<dyn ClientObserver>;
}

/// Sees one receiving client's sessions and deliveries, in order.
pub trait ClientObserver: Send {
    /// `login_ok` with `last_seq = head`; `resume_from` as the login asked.
    fn connected(&mut self, head: u64, resume_from: Option<u64>);
    /// `resume_done`: the replay after `from` is complete up to `head`.
    fn resumed(&mut self, from: u64, head: u64);
    /// A `broadcast` arrived (every one, duplicates included).
    fn delivered(&mut self, seq: u64, message_id: &str);
    /// The connection ended; `reason` as the client knows it.
    fn disconnected(&mut self, reason: &str);
}

/// An optional shared observer, as the options carry it.
pub type SharedFleetObserver = Option<Arc<dyn FleetObserver>>;
/// An optional shared publish observer.
pub type SharedPublishObserver = Option<Arc<dyn PublishObserver>>;

/// Sees one protocol v2 connection of a room run, both what it publishes
/// and what it receives, in order. Called from the connection's task.
pub trait RoomObserver: Send {
    /// `login_ok`: the user's rooms with their heads; `resume` is what the
    /// login's `resume_rooms` asked for (empty for a first login).
    fn connected(&mut self, rooms: &[(&str, u64)], resume: &[(&str, u64)]);
    /// `joined {room, seq}`, asked for or not.
    fn joined(&mut self, room: &str, seq: u64);
    /// `left {room, seq}`.
    fn left(&mut self, room: &str, seq: u64);
    /// `resume_done {room}`: the replay of `room` after `from` is complete
    /// up to `head`.
    fn resumed(&mut self, room: &str, from: u64, head: u64);
    /// A room `broadcast` (every one, duplicates included).
    fn delivered(&mut self, room: &str, seq: u64, message_id: &str);
    /// The connection ended; `reason` as the client knows it.
    fn disconnected(&mut self, reason: &str);
    /// A `send` is going out to `room`, or (`None`) as a direct message.
    fn invoked(&mut self, room: Option<&str>, message_id: &str);
    /// Its `send_ack`, naming the room it went to.
    fn acked(&mut self, message_id: &str, room: Option<&str>);
    /// Its `error` frame's code.
    fn refused(&mut self, message_id: &str, code: &str);
}

/// Hands each connection of a room run its own observer as it starts.
pub trait RoomFleetObserver: Send + Sync + Debug {
    /// The observer of connection `index`, who logs in as `user`.
    fn connection(&self, index: usize, user: &str) -> Box<dyn RoomObserver>;
}
