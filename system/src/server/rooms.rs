//! The node's room registry and its shard follower. The registry knows the
//! local v2 sessions of each user and, per room, the local sessions that
//! receive it (a replay being fetched: `Pending`, buffering; or `Live`,
//! with the last `seq` sent). The follower reads every shard stream at once
//! and hands each room message, framed once, to that room's local
//! subscribers only: a message costs O(the room's members on this node).
//! Membership entries of the shard streams subscribe or unsubscribe the
//! user's local sessions at the exact point the consumer left for them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fanout::connected;
use super::outbound::{frame, Outbound};
use crate::backoff::Backoff;
use crate::presence_feed::PresenceChange;
use crate::protocol::{encode_frame, ServerFrame};
use crate::room::{RoomKind, RoomRole};
use crate::stream::{self, MemberChange, RedisKeys, ShardEntry, ShardEvent};

/// A session's id on this node (unique while the node runs).
pub type SessionId = u64;

/// Live frames a room subscriber may buffer while its replay is fetched;
/// more and it is cut off as a slow consumer.
pub const PENDING_BUFFER_FRAMES: usize = 10_000;

/// How one local session receives one room.
enum Subscription {
    /// A replay is being fetched: live frames wait here, in order.
    Pending { buffer: Vec<(u64, Bytes)> },
    /// Frames with a `seq` above `last_seq` are sent as they come.
    Live { last_seq: u64 },
    /// The session asked to leave at `at_seq`: frames up to it still go
    /// out, then the membership entry ends it with `left`.
    Leaving { last_seq: u64, at_seq: u64 },
}

/// A local v2 session, as the registry reaches it.
struct LocalSession {
    /// The user it belongs to.
    user: String,
    /// The session's queue to its writer.
    out: mpsc::Sender<Outbound>,
    /// Cancelled to cut the session off (its queue was full).
    cut: CancellationToken,
    /// The rooms it is subscribed to (keys of `State::rooms`).
    rooms: HashSet<String>,
    /// Frames held back until [`RoomRegistry::release`], each with its
    /// room and kind: nothing may reach the session before its `login_ok`.
    held: Option<Vec<(String, Bytes, FrameKind)>>,
    /// Whether it asked for `presence` events (`watch_presence`).
    watches_presence: bool,
    /// Rooms the user left (on another session) while this one was held
    /// and did not receive them yet: its login must not subscribe them.
    left_at_login: HashSet<String>,
}

/// What [`RoomRegistry::begin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// A pending subscription now buffers the room's live frames.
    Started,
    /// The session receives the room already; nothing changed.
    Already,
    /// The session is not registered (publish-only): it receives no room.
    NotRegistered,
    /// The user left the room during the login (its `left` entry came
    /// before the login reached it): not subscribed, not to be listed.
    LeftAtLogin,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, LocalSession>,
    /// Each user's local v2 sessions.
    users: HashMap<String, HashSet<SessionId>>,
    /// Each room's local subscribers.
    rooms: HashMap<String, HashMap<SessionId, Subscription>>,
}

/// The node's rooms: who receives what. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct RoomRegistry {
    state: Arc<Mutex<State>>,
}

/// What a membership entry of a shard stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    /// The room.
    pub room: String,
    /// The user who joined or left.
    pub user: String,
    /// The room's kind.
    pub kind: RoomKind,
    /// The user's role in the room (a creator's other sessions learn
    /// they own it).
    pub role: RoomRole,
    /// Joined or left.
    pub change: MemberChange,
    /// The room's `seq` at that point: a joiner gets what follows it, a
    /// leaver got everything up to it.
    pub seq: u64,
}

impl RoomRegistry {
    /// An empty registry; `rtmc_rooms_local` is exported (at 0) from here
    /// on, not only once a session first subscribes.
    pub fn new() -> Self {
        let registry = Self::default();
        rooms_gauge(&registry.lock());
        registry
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a logged-in v2 session that receives its rooms. Frames for it
    /// are held until [`RoomRegistry::release`].
    pub fn register(
        &self,
        id: SessionId,
        user: &str,
        out: mpsc::Sender<Outbound>,
        cut: CancellationToken,
    ) {
        let mut st = self.lock();
        st.users.entry(user.to_owned()).or_default().insert(id);
        st.sessions.insert(
            id,
            LocalSession {
                user: user.to_owned(),
                out,
                cut,
                rooms: HashSet::new(),
                held: Some(Vec::new()),
                watches_presence: false,
                left_at_login: HashSet::new(),
            },
        );
    }

    /// Lets frames reach the session (after its `login_ok`), the held ones
    /// first.
    pub fn release(&self, id: SessionId) {
        let mut st = self.lock();
        let Some(session) = st.sessions.get_mut(&id) else {
            return;
        };
        session.left_at_login.clear();
        let Some(held) = session.held.take() else {
            return;
        };
        let mut sent = Sent::default();
        for (room, f, kind) in held {
            if queue(&mut st, id, &room, f, kind) == Queued::Refused {
                cut_off(&mut st, id);
                break;
            }
            sent.add(kind);
        }
        sent.record();
    }

    /// Removes a session from every room (it ended).
    pub fn unregister(&self, id: SessionId) {
        let mut st = self.lock();
        remove_session(&mut st, id);
    }

    /// Whether the session is registered (a v2 session receiving rooms).
    pub fn is_registered(&self, id: SessionId) -> bool {
        self.lock().sessions.contains_key(&id)
    }

    /// Whether the session receives `room` (then its user is a member).
    pub fn is_subscribed(&self, id: SessionId, room: &str) -> bool {
        self.lock()
            .rooms
            .get(room)
            .is_some_and(|subs| subs.contains_key(&id))
    }

    /// Starts a subscription that buffers live frames until
    /// [`RoomRegistry::go_live`], unless the session receives the room
    /// already. Call it before reading the room's head: every message after
    /// that head then reaches the buffer.
    pub fn begin(&self, id: SessionId, room: &str) -> Begun {
        self.start(id, room, false)
    }

    /// Like [`RoomRegistry::begin`], but restarts a live subscription too:
    /// only for a caller that replays up to the head it reads next (frames
    /// in flight are then covered by the replay).
    pub fn restart(&self, id: SessionId, room: &str) -> Begun {
        self.start(id, room, true)
    }

    /// At login, before reading `room`'s head for `login_ok`: like
    /// [`RoomRegistry::begin`], but a subscription that a membership entry
    /// made since [`RoomRegistry::register`] (a direct room created, or an
    /// invite, during the login) starts again, and what the session holds
    /// of the room (its `joined`, the messages so far) is dropped, all
    /// under the registry's lock: `login_ok` names the head read next, and
    /// only what follows it may reach the client (docs/PROTOCOL.md §17.3).
    /// Once the session is released it is [`RoomRegistry::begin`].
    pub fn begin_at_login(&self, id: SessionId, room: &str) -> Begun {
        let mut st = self.lock();
        let Some(session) = st.sessions.get_mut(&id) else {
            return Begun::NotRegistered;
        };
        let Some(held) = session.held.as_mut() else {
            drop(st);
            return self.begin(id, room);
        };
        held.retain(|(r, _, _)| r != room);
        if session.left_at_login.contains(room) {
            return Begun::LeftAtLogin;
        }
        session.rooms.insert(room.to_owned());
        let subs = st.rooms.entry(room.to_owned()).or_default();
        subs.insert(id, Subscription::Pending { buffer: Vec::new() });
        rooms_gauge(&st);
        Begun::Started
    }

    fn start(&self, id: SessionId, room: &str, restart: bool) -> Begun {
        let mut st = self.lock();
        let Some(session) = st.sessions.get_mut(&id) else {
            return Begun::NotRegistered;
        };
        if !session.rooms.insert(room.to_owned()) && !restart {
            return Begun::Already;
        }
        let subs = st.rooms.entry(room.to_owned()).or_default();
        subs.insert(id, Subscription::Pending { buffer: Vec::new() });
        rooms_gauge(&st);
        Begun::Started
    }

    /// The last `seq` sent to a live subscriber of `room`.
    pub fn live_seq(&self, id: SessionId, room: &str) -> Option<u64> {
        match self.lock().rooms.get(room)?.get(&id)? {
            Subscription::Live { last_seq } | Subscription::Leaving { last_seq, .. } => {
                Some(*last_seq)
            }
            Subscription::Pending { .. } => None,
        }
    }

    /// Ends a pending subscription that will not go live (its join failed).
    pub fn abandon(&self, id: SessionId, room: &str) {
        let mut st = self.lock();
        unsubscribe(&mut st, id, room);
    }

    /// Sends the frames buffered since [`RoomRegistry::begin`] with a `seq`
    /// above `head` (the replay covered the rest) and goes live after the
    /// newest sent. Frames the session's queue cannot take cut it off.
    pub fn go_live(&self, id: SessionId, room: &str, head: u64) {
        let mut st = self.lock();
        let Some(sub) = st.rooms.get_mut(room).and_then(|s| s.get_mut(&id)) else {
            return;
        };
        let buffer = match sub {
            Subscription::Pending { buffer } => std::mem::take(buffer),
            _ => return,
        };
        let mut last_seq = head;
        let mut frames = Vec::new();
        for (seq, f) in buffer {
            if seq > last_seq {
                last_seq = seq;
                frames.push(f);
            }
        }
        *sub = Subscription::Live { last_seq };
        let mut sent = Sent::default();
        for f in frames {
            match queue(&mut st, id, room, f, FrameKind::Message) {
                Queued::Sent => sent.add(FrameKind::Message),
                Queued::Held => {}
                Queued::Refused => {
                    cut_off(&mut st, id);
                    break;
                }
            }
        }
        sent.record();
    }

    /// Marks the session's subscription as leaving at `at_seq`; returns
    /// false when the session does not receive the room (then nobody will
    /// tell it `left`: the caller answers itself).
    pub fn leaving(&self, id: SessionId, room: &str, at_seq: u64) -> bool {
        let mut st = self.lock();
        let Some(sub) = st.rooms.get_mut(room).and_then(|s| s.get_mut(&id)) else {
            return false;
        };
        let last_seq = match sub {
            Subscription::Live { last_seq } | Subscription::Leaving { last_seq, .. } => *last_seq,
            Subscription::Pending { .. } => at_seq,
        };
        *sub = Subscription::Leaving { last_seq, at_seq };
        true
    }

    /// Hands one room message to the room's local subscribers. `payload`
    /// is the broadcast JSON; it is framed once, only if someone is here.
    pub fn deliver(&self, room: &str, seq: u64, payload: &[u8]) {
        let mut st = self.lock();
        let Some(subs) = st.rooms.get_mut(room) else {
            return;
        };
        let f = encode_frame(payload);
        let mut due = Vec::new();
        let mut overflow = Vec::new();
        for (&id, sub) in subs.iter_mut() {
            match sub {
                Subscription::Pending { buffer } if buffer.len() >= PENDING_BUFFER_FRAMES => {
                    overflow.push(id)
                }
                Subscription::Pending { buffer } => buffer.push((seq, f.clone())),
                Subscription::Live { last_seq } => {
                    if seq > *last_seq {
                        *last_seq = seq;
                        due.push(id);
                    }
                }
                // Nothing after the leave point, though the entry that
                // ends the subscription may not have come yet.
                Subscription::Leaving { last_seq, at_seq } => {
                    if seq > *last_seq && seq <= *at_seq {
                        *last_seq = seq;
                        due.push(id);
                    }
                }
            }
        }
        let mut sent = Sent::default();
        for id in due {
            match queue(&mut st, id, room, f.clone(), FrameKind::Message) {
                Queued::Sent => sent.add(FrameKind::Message),
                Queued::Held => {}
                Queued::Refused => overflow.push(id),
            }
        }
        for id in overflow {
            cut_off(&mut st, id);
        }
        sent.record();
    }

    /// Makes the session receive (`on`) or stop receiving `presence`
    /// events; false when it is not registered (a publish-only session
    /// receives nothing of rooms).
    pub fn watch_presence(&self, id: SessionId, on: bool) -> bool {
        let mut st = self.lock();
        let Some(s) = st.sessions.get_mut(&id) else {
            return false;
        };
        s.watches_presence = on;
        true
    }

    /// Tells every local session that watches presence, receives one of
    /// `change.rooms` and is not the changed user's own, once per such
    /// room. A session whose queue is full is cut off, as for messages.
    pub fn presence(&self, change: &PresenceChange) {
        let mut st = self.lock();
        let mut due = Vec::new();
        for room in &change.rooms {
            let Some(subs) = st.rooms.get(room) else {
                continue;
            };
            for id in subs.keys() {
                let watching = st
                    .sessions
                    .get(id)
                    .is_some_and(|s| s.watches_presence && s.user != change.user);
                if watching {
                    due.push((*id, room));
                }
            }
        }
        let mut overflow = Vec::new();
        let mut sent = Sent::default();
        for (id, room) in due {
            let news = ServerFrame::Presence {
                room: room.clone(),
                user_id: change.user.clone(),
                status: change.status,
            };
            match queue(&mut st, id, room, frame(&news), FrameKind::Presence) {
                Queued::Sent => sent.add(FrameKind::Presence),
                Queued::Held => {}
                Queued::Refused => overflow.push(id),
            }
        }
        for id in overflow {
            cut_off(&mut st, id);
        }
        sent.record();
    }

    /// Applies a membership entry to the user's local sessions: a join
    /// subscribes those not subscribed yet (live after `seq`) and tells
    /// them `joined`; a leave unsubscribes them all and tells them `left`.
    pub fn membership(&self, ev: &MembershipEvent) {
        let mut st = self.lock();
        let Some(ids) = st.users.get(&ev.user) else {
            return;
        };
        let ids: Vec<SessionId> = ids.iter().copied().collect();
        let mut overflow = Vec::new();
        for id in ids {
            let subscribed = st
                .rooms
                .get(&ev.room)
                .is_some_and(|subs| subs.contains_key(&id));
            let told = match ev.change {
                MemberChange::Joined if subscribed => continue,
                MemberChange::Joined => {
                    if let Some(s) = st.sessions.get_mut(&id) {
                        s.left_at_login.remove(&ev.room);
                    }
                    subscribe_live(&mut st, id, &ev.room, ev.seq);
                    ServerFrame::Joined {
                        room: ev.room.clone(),
                        kind: ev.kind,
                        role: ev.role,
                        seq: ev.seq,
                    }
                }
                MemberChange::Left if !subscribed => {
                    left_while_held(&mut st, id, &ev.room);
                    continue;
                }
                MemberChange::Left => {
                    unsubscribe(&mut st, id, &ev.room);
                    ServerFrame::Left {
                        room: ev.room.clone(),
                        seq: ev.seq,
                    }
                }
            };
            if queue(&mut st, id, &ev.room, frame(&told), FrameKind::Membership) == Queued::Refused
            {
                overflow.push(id);
            }
        }
        for id in overflow {
            cut_off(&mut st, id);
        }
        rooms_gauge(&st);
    }
}

/// What a frame is, for the counter it moves once it reaches a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// A room message (`rtmc_room_deliveries_total`).
    Message,
    /// A `presence` event (`rtmc_presence_events_total`).
    Presence,
    /// `joined` or `left` (no counter).
    Membership,
}

/// What [`queue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// In the session's queue to its writer.
    Sent,
    /// Held until the session's `login_ok` is out: counted when released
    /// (a login that restarts the room drops it uncounted).
    Held,
    /// The queue (or the hold) is full, or the session is gone.
    Refused,
}

/// Frames that reached sessions' queues, counted once per call that
/// queued them rather than once per frame.
#[derive(Debug, Default)]
struct Sent {
    messages: u64,
    presence: u64,
}

impl Sent {
    fn add(&mut self, kind: FrameKind) {
        match kind {
            FrameKind::Message => self.messages += 1,
            FrameKind::Presence => self.presence += 1,
            FrameKind::Membership => {}
        }
    }

    fn record(self) {
        if self.messages > 0 {
            metrics::counter!("rtmc_room_deliveries_total").increment(self.messages);
        }
        if self.presence > 0 {
            metrics::counter!("rtmc_presence_events_total").increment(self.presence);
        }
    }
}

/// Queues one frame of `room` for a session without waiting, or holds it
/// before the session's `login_ok`.
fn queue(st: &mut State, id: SessionId, room: &str, f: Bytes, kind: FrameKind) -> Queued {
    let Some(s) = st.sessions.get_mut(&id) else {
        return Queued::Refused;
    };
    match &mut s.held {
        Some(held) if held.len() < PENDING_BUFFER_FRAMES => {
            held.push((room.to_owned(), f, kind));
            Queued::Held
        }
        Some(_) => Queued::Refused,
        None if s.out.try_send(Outbound::Frame(f)).is_ok() => Queued::Sent,
        None => Queued::Refused,
    }
}

/// Remembers that the user left `room` while session `id` was logging in
/// (held) without receiving it: its login must not subscribe it.
fn left_while_held(st: &mut State, id: SessionId, room: &str) {
    if let Some(s) = st.sessions.get_mut(&id) {
        if s.held.is_some() {
            s.left_at_login.insert(room.to_owned());
        }
    }
}

fn subscribe_live(st: &mut State, id: SessionId, room: &str, last_seq: u64) {
    if let Some(s) = st.sessions.get_mut(&id) {
        s.rooms.insert(room.to_owned());
        let subs = st.rooms.entry(room.to_owned()).or_default();
        subs.insert(id, Subscription::Live { last_seq });
    }
}

fn unsubscribe(st: &mut State, id: SessionId, room: &str) {
    if let Some(s) = st.sessions.get_mut(&id) {
        s.rooms.remove(room);
    }
    if let Some(subs) = st.rooms.get_mut(room) {
        subs.remove(&id);
        if subs.is_empty() {
            st.rooms.remove(room);
        }
    }
    rooms_gauge(st);
}

fn remove_session(st: &mut State, id: SessionId) -> Option<LocalSession> {
    let session = st.sessions.remove(&id)?;
    for room in &session.rooms {
        if let Some(subs) = st.rooms.get_mut(room) {
            subs.remove(&id);
            if subs.is_empty() {
                st.rooms.remove(room);
            }
        }
    }
    if let Some(ids) = st.users.get_mut(&session.user) {
        ids.remove(&id);
        if ids.is_empty() {
            st.users.remove(&session.user);
        }
    }
    rooms_gauge(st);
    Some(session)
}

/// Cuts off a session whose queue is full: it leaves the registry at once
/// (nothing more is queued for it) and its reader closes it with
/// `slow_consumer`.
fn cut_off(st: &mut State, id: SessionId) {
    if let Some(s) = remove_session(st, id) {
        metrics::counter!("rtmc_room_slow_consumers_total").increment(1);
        s.cut.cancel();
    }
}

fn rooms_gauge(st: &State) {
    metrics::gauge!("rtmc_rooms_local").set(st.rooms.len() as f64);
}

/// How many entries one read of the shard streams returns at most.
const READ_BATCH: usize = 1024;
/// XREAD BLOCK bound; only lets the loop notice shutdown.
const BLOCK_MS: u64 = 1_000;

/// Runs until `shutdown`: follows every shard stream from its head at
/// start and applies each entry to the registry. Redis errors are retried
/// with back-off, from where the follower was (nothing is skipped).
pub async fn follow_shards(
    redis_url: String,
    keys: RedisKeys,
    shards: u32,
    registry: RoomRegistry,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut conn = None;
    let mut after: Option<Vec<u64>> = None;
    let entries_read = metrics::counter!("rtmc_shard_entries_read_total");
    while !shutdown.is_cancelled() {
        let Some(c) = connected(&mut conn, &redis_url, &mut backoff, &shutdown, "shard").await
        else {
            break;
        };
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = read_step(c, &keys, shards, &mut after) => r,
        };
        match read {
            Ok(entries) => {
                backoff.reset();
                entries_read.increment(entries.len() as u64);
                for e in entries {
                    apply(&registry, &mut after, e);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "shard follower: read failed");
                conn = None;
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

/// One read: the heads first (once), then the entries after `after`.
async fn read_step(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &RedisKeys,
    shards: u32,
    after: &mut Option<Vec<u64>>,
) -> redis::RedisResult<Vec<ShardEntry>> {
    let from = match after {
        Some(a) => a,
        None => after.insert(stream::shard_heads(conn, keys, shards).await?),
    };
    stream::read_shards(conn, keys, from, BLOCK_MS, READ_BATCH).await
}

/// Applies one shard entry and moves that shard's read position past it.
fn apply(registry: &RoomRegistry, after: &mut Option<Vec<u64>>, e: ShardEntry) {
    if let Some(pos) = after.as_mut().and_then(|a| a.get_mut(e.shard as usize)) {
        if e.shard_seq <= *pos {
            return;
        }
        *pos = e.shard_seq;
    }
    match e.event {
        ShardEvent::Message { room, seq, payload } => registry.deliver(&room, seq, &payload),
        ShardEvent::Member {
            room,
            seq,
            user,
            change,
            kind,
            role,
        } => registry.membership(&MembershipEvent {
            room,
            user,
            kind,
            role,
            change,
            seq,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(reg: &RoomRegistry, id: SessionId, user: &str) -> mpsc::Receiver<Outbound> {
        session_with(reg, id, user, 64).0
    }

    fn session_with(
        reg: &RoomRegistry,
        id: SessionId,
        user: &str,
        capacity: usize,
    ) -> (mpsc::Receiver<Outbound>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity);
        let cut = CancellationToken::new();
        reg.register(id, user, tx, cut.clone());
        reg.release(id);
        (rx, cut)
    }

    /// The JSON of every frame queued so far.
    fn drain(rx: &mut mpsc::Receiver<Outbound>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Outbound::Frame(f)) = rx.try_recv() {
            out.push(String::from_utf8(f[4..].to_vec()).unwrap());
        }
        out
    }

    fn msg(seq: u64) -> Vec<u8> {
        format!(r#"{{"command":"broadcast","seq":{seq},"room":"r"}}"#).into_bytes()
    }

    #[test]
    fn a_message_reaches_the_rooms_live_subscribers_only() {
        let reg = RoomRegistry::default();
        let mut a = session(&reg, 1, "alice");
        let mut b = session(&reg, 2, "bob");
        reg.begin(1, "r");
        reg.go_live(1, "r", 0);
        reg.deliver("r", 1, &msg(1));
        reg.deliver("other", 1, &msg(1));
        assert_eq!(drain(&mut a).len(), 1);
        assert!(drain(&mut b).is_empty(), "bob is not in the room");
    }

    #[test]
    fn a_pending_subscriber_gets_what_follows_the_head_once_in_order() {
        let reg = RoomRegistry::default();
        let mut a = session(&reg, 1, "alice");
        reg.begin(1, "r");
        for seq in [4, 5, 6] {
            reg.deliver("r", seq, &msg(seq));
        }
        assert!(drain(&mut a).is_empty(), "nothing before go_live");
        // The replay covered up to 5.
        reg.go_live(1, "r", 5);
        reg.deliver("r", 6, &msg(6));
        reg.deliver("r", 7, &msg(7));
        let got = drain(&mut a);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains(r#""seq":6"#) && got[1].contains(r#""seq":7"#));
    }

    #[test]
    fn membership_subscribes_and_unsubscribes_every_local_session_of_the_user() {
        let reg = RoomRegistry::default();
        let mut a1 = session(&reg, 1, "alice");
        let mut a2 = session(&reg, 2, "alice");
        let joined = MembershipEvent {
            room: "r".into(),
            user: "alice".into(),
            kind: RoomKind::Private,
            role: RoomRole::Owner,
            change: MemberChange::Joined,
            seq: 3,
        };
        reg.membership(&joined);
        reg.deliver("r", 3, &msg(3));
        reg.deliver("r", 4, &msg(4));
        for rx in [&mut a1, &mut a2] {
            let got = drain(rx);
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(got[0].starts_with(r#"{"command":"joined","room":"r""#));
            assert!(got[0].contains(r#""role":"owner""#), "{}", got[0]);
            assert!(got[1].contains(r#""seq":4"#));
        }
        // The session that asked to leave still gets what precedes the point.
        assert!(reg.leaving(1, "r", 5));
        reg.deliver("r", 5, &msg(5));
        reg.membership(&MembershipEvent {
            change: MemberChange::Left,
            seq: 5,
            ..joined
        });
        reg.deliver("r", 6, &msg(6));
        for rx in [&mut a1, &mut a2] {
            let got = drain(rx);
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(got[0].contains(r#""seq":5"#));
            assert_eq!(got[1], r#"{"command":"left","room":"r","seq":5}"#);
        }
        assert!(!reg.is_subscribed(1, "r") && !reg.is_subscribed(2, "r"));
    }

    #[test]
    fn presence_reaches_watching_members_of_the_users_rooms_only() {
        let reg = RoomRegistry::default();
        let mut watcher = session(&reg, 1, "alice");
        let mut idle = session(&reg, 2, "carol");
        let mut own = session(&reg, 3, "bob");
        for id in [1, 2, 3] {
            reg.release(id);
            reg.begin(id, "r");
            reg.go_live(id, "r", 0);
        }
        assert!(reg.watch_presence(1, true) && reg.watch_presence(3, true));
        assert!(!reg.watch_presence(9, true), "not registered");
        let change = |rooms: &[&str]| PresenceChange {
            user: "bob".into(),
            status: crate::protocol::UserStatus::Away,
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        };
        reg.presence(&change(&["r", "elsewhere"]));
        assert_eq!(
            drain(&mut watcher),
            [r#"{"command":"presence","room":"r","user_id":"bob","status":"away"}"#]
        );
        assert!(drain(&mut idle).is_empty(), "did not ask");
        assert!(drain(&mut own).is_empty(), "bob's own session");
        reg.presence(&change(&["elsewhere"]));
        assert!(drain(&mut watcher).is_empty(), "no shared room");
        reg.watch_presence(1, false);
        reg.presence(&change(&["r"]));
        assert!(drain(&mut watcher).is_empty(), "stopped watching");
    }

    /// `rtmc_room_deliveries_total` as `f` moves it, on this thread only.
    fn deliveries_counted(f: impl FnOnce()) -> u64 {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, f);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == "rtmc_room_deliveries_total")
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => n,
                other => panic!("not a counter: {other:?}"),
            })
            .sum()
    }

    #[test]
    fn room_deliveries_count_what_reaches_a_session_and_never_a_dropped_held_frame() {
        let mut rx = None;
        let counted = deliveries_counted(|| {
            let reg = RoomRegistry::default();
            let (tx, r) = mpsc::channel(16);
            reg.register(1, "bob", tx, CancellationToken::new());
            reg.membership(&MembershipEvent {
                room: "r".into(),
                user: "bob".into(),
                kind: RoomKind::Public,
                role: RoomRole::Member,
                change: MemberChange::Joined,
                seq: 0,
            });
            reg.membership(&MembershipEvent {
                room: "s".into(),
                user: "bob".into(),
                kind: RoomKind::Public,
                role: RoomRole::Member,
                change: MemberChange::Joined,
                seq: 0,
            });
            // Held while bob logs in: `r`'s two are dropped when the login
            // restarts it at its head, `s`'s one reaches him on release.
            reg.deliver("r", 1, &msg(1));
            reg.deliver("r", 2, &msg(2));
            reg.deliver("s", 1, &msg(1));
            assert_eq!(reg.begin_at_login(1, "r"), Begun::Started);
            reg.go_live(1, "r", 2);
            reg.release(1);
            reg.deliver("r", 3, &msg(3));
            rx = Some(r);
        });
        let frames = drain(rx.as_mut().unwrap());
        let messages = frames.iter().filter(|f| f.contains("broadcast")).count();
        assert_eq!(messages, 2, "{frames:?}");
        assert_eq!(counted, 2, "counted as delivered: {frames:?}");
    }

    #[test]
    fn a_full_queue_cuts_the_session_off_and_spares_the_others() {
        let reg = RoomRegistry::default();
        let (mut slow, cut) = session_with(&reg, 1, "slow", 2);
        let mut fast = session(&reg, 2, "fast");
        for id in [1, 2] {
            reg.begin(id, "r");
            reg.go_live(id, "r", 0);
        }
        for seq in 1..=5 {
            reg.deliver("r", seq, &msg(seq));
        }
        assert!(cut.is_cancelled());
        assert!(!reg.is_registered(1));
        assert_eq!(drain(&mut slow).len(), 2);
        assert_eq!(drain(&mut fast).len(), 5);
    }

    #[test]
    fn nothing_reaches_a_session_before_it_is_released_and_a_live_one_is_kept() {
        let reg = RoomRegistry::default();
        let (tx, mut rx) = mpsc::channel(8);
        reg.register(1, "alice", tx, CancellationToken::new());
        reg.membership(&MembershipEvent {
            room: "r".into(),
            user: "alice".into(),
            kind: RoomKind::Public,
            role: RoomRole::Member,
            change: MemberChange::Joined,
            seq: 0,
        });
        reg.deliver("r", 1, &msg(1));
        assert!(drain(&mut rx).is_empty(), "held until login_ok is out");
        // Already live: begin leaves it, so nothing in flight is dropped.
        assert_eq!(reg.begin(1, "r"), Begun::Already);
        reg.release(1);
        reg.deliver("r", 2, &msg(2));
        assert_eq!(drain(&mut rx).len(), 3);
        assert_eq!(reg.live_seq(1, "r"), Some(2));
        assert_eq!(reg.begin(9, "r"), Begun::NotRegistered);
    }

    #[test]
    fn a_room_made_live_during_login_restarts_at_the_head_login_ok_names() {
        let reg = RoomRegistry::default();
        let (tx, mut rx) = mpsc::channel(16);
        reg.register(1, "bob", tx, CancellationToken::new());
        // The follower: a direct room with bob appears (joined at 0), and
        // its first two messages come, before the login reaches the room.
        reg.membership(&MembershipEvent {
            room: "dm:alice:bob".into(),
            user: "bob".into(),
            kind: RoomKind::Direct,
            role: RoomRole::Member,
            change: MemberChange::Joined,
            seq: 0,
        });
        reg.deliver("dm:alice:bob", 1, &msg(1));
        reg.deliver("dm:alice:bob", 2, &msg(2));
        reg.membership(&MembershipEvent {
            room: "other".into(),
            user: "bob".into(),
            kind: RoomKind::Public,
            role: RoomRole::Member,
            change: MemberChange::Joined,
            seq: 5,
        });
        // The login: the room starts again, then its head (2) is read and
        // named in login_ok; 3 comes meanwhile.
        assert_eq!(reg.begin_at_login(1, "dm:alice:bob"), Begun::Started);
        reg.deliver("dm:alice:bob", 3, &msg(3));
        reg.release(1);
        reg.go_live(1, "dm:alice:bob", 2);
        reg.deliver("dm:alice:bob", 4, &msg(4));
        let got = drain(&mut rx);
        assert_eq!(got.len(), 3, "{got:?}");
        // The room login_ok does not list keeps its `joined`.
        assert!(got[0].starts_with(r#"{"command":"joined","room":"other""#));
        assert!(got[1].contains(r#""seq":3"#) && got[2].contains(r#""seq":4"#));
        // After login it is begin: a live subscription stays.
        assert_eq!(reg.begin_at_login(1, "dm:alice:bob"), Begun::Already);
        assert_eq!(reg.begin_at_login(9, "r"), Begun::NotRegistered);
    }

    #[test]
    fn a_room_left_during_login_is_not_subscribed_and_a_rejoin_undoes_it() {
        let reg = RoomRegistry::default();
        let (tx, mut rx) = mpsc::channel(16);
        reg.register(1, "bob", tx, CancellationToken::new());
        let left = MembershipEvent {
            room: "r".into(),
            user: "bob".into(),
            kind: RoomKind::Public,
            role: RoomRole::Member,
            change: MemberChange::Left,
            seq: 4,
        };
        // Bob's other session leaves r and s after this login listed them
        // (PostgreSQL) and before it reached them; he rejoins s at once.
        reg.membership(&left);
        reg.membership(&MembershipEvent {
            room: "s".into(),
            ..left.clone()
        });
        reg.membership(&MembershipEvent {
            room: "s".into(),
            change: MemberChange::Joined,
            seq: 6,
            ..left.clone()
        });
        assert_eq!(reg.begin_at_login(1, "r"), Begun::LeftAtLogin);
        assert!(!reg.is_subscribed(1, "r"));
        assert_eq!(reg.begin_at_login(1, "s"), Begun::Started);
        reg.release(1);
        reg.go_live(1, "s", 6);
        reg.deliver("r", 5, &msg(5));
        reg.deliver("s", 7, &msg(7));
        let got = drain(&mut rx);
        assert_eq!(got.len(), 1, "nothing of r: {got:?}");
        assert!(got[0].contains(r#""seq":7"#));
        // A leave after the login is an ordinary one: nothing remembered.
        reg.membership(&left);
        assert!(reg.lock().sessions[&1].left_at_login.is_empty());
    }

    #[test]
    fn an_ended_session_leaves_every_room() {
        let reg = RoomRegistry::default();
        let _a = session(&reg, 1, "alice");
        reg.begin(1, "r");
        reg.begin(1, "s");
        reg.unregister(1);
        assert!(!reg.is_subscribed(1, "r") && !reg.is_subscribed(1, "s"));
        assert!(reg.lock().rooms.is_empty() && reg.lock().users.is_empty());
    }
}
