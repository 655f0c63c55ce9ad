//! One protocol v2 connection of a room run: logs in with `protocol: 2`,
//! heartbeats, carries out the driver's orders (create, join, leave, send)
//! and tells it every answer, and keeps its [`MembershipLedger`] from the
//! `joined`, `left` and `broadcast` frames it reads. Room commands go out
//! paced under the server's per-connection join limit, in order. When told
//! to ([`Reconnect`]), a connection whose server went away logs in again
//! (another node, or the same one back) resuming each of its rooms from the
//! last seq it holds; an observer ([`RoomObserver`]) may see every event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use rtmc::room::RoomKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::engine::dial::{connect_from, read_frame};
use crate::engine::fleet_client::heartbeat_frame;
use crate::engine::room_accounting::{final_head, MembershipLedger, RoomTotals};
use crate::measure::histogram::{record_us, LatencyHistogram};
use crate::measure::observe::RoomObserver;
use crate::wire::rtmc_frames::{self, parse_room_broadcast};

/// Room commands a connection sends per second at most: under the server's
/// default `max_joins_per_sec` of 20 (joins and creates together), so a
/// setup burst is never refused.
const ROOM_COMMANDS_PER_SEC: f64 = 15.0;

/// Between two tries to log in again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// What the driver asks of a connection.
#[derive(Debug, Clone)]
pub enum Order {
    CreateRoom(Arc<str>),
    Join(Arc<str>),
    Leave(Arc<str>),
    /// `send` to `room`, or to user `to` (a direct message).
    Send {
        room: Option<Arc<str>>,
        to: Option<Arc<str>>,
        message_id: String,
        body_bytes: usize,
        /// The intended send time (µs since the epoch): latency is measured from it.
        sent_at_us: u64,
    },
    /// Publishing is over: list the user's rooms (`rooms`), then settle
    /// once every open window holds its room's head
    /// ([`final_head`]: the head at login plus the acknowledged count
    /// `heads`, or the listed head if higher) — or at `deadline`, and close.
    Drain {
        heads: Arc<HashMap<String, u64>>,
        deadline: tokio::time::Instant,
    },
}

/// An answer the driver tallies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    LoggedIn,
    LoginFailed(String),
    RoomCreated(String),
    Joined(String),
    Left(String),
    /// `send_ack`; `room` is the direct room for a `to` send.
    Acked {
        room: Option<String>,
    },
    /// An `error` frame (for a send when `message_id` is set, else for a
    /// room command when `room` is).
    Refused {
        code: ErrorCode,
        message_id: Option<String>,
        room: Option<String>,
    },
    /// The connection ended before the driver let it go.
    Closed(String),
}

/// One answer of connection `index`.
#[derive(Debug, Clone)]
pub struct Event {
    pub index: usize,
    pub answer: Answer,
}

/// What a connection hands back at the end.
#[derive(Debug, Clone)]
pub struct Settled {
    pub index: usize,
    /// Every open window held its room's head before the deadline.
    pub complete: bool,
    /// Per room: this connection's totals.
    pub rooms: Vec<(String, RoomTotals)>,
    /// Lobby broadcasts (a v2 session is in the lobby implicitly); not owed.
    pub lobby_deliveries: u64,
    /// Frames that were not JSON the protocol knows.
    pub bad_frames: u64,
    /// `left` frames that answered no `leave` of this connection.
    pub unasked_left: u64,
    /// `joined` frames of a room that answered no `join` of this connection.
    pub unasked_joined: u64,
    /// Logins again after the connection was lost.
    pub reconnects: u64,
}

/// Latency histograms shared by every connection, one lock per read batch.
pub type LatencyShards = Arc<Vec<Mutex<LatencyHistogram>>>;

/// Where and as whom a connection logs in.
#[derive(Debug, Clone)]
pub struct Login {
    pub target: std::net::SocketAddr,
    pub sources: Arc<Vec<std::net::IpAddr>>,
    pub user: String,
    pub password: Arc<str>,
    pub max_frame_bytes: usize,
    pub timeout: Duration,
    /// Whether (and where) to log in again when the connection is lost.
    pub reconnect: Option<Reconnect>,
}

/// How a connection that lost its server comes back.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Tried in turn, from the one after the connection's own.
    pub servers: Arc<Vec<std::net::SocketAddr>>,
    /// How long it keeps trying (each try bounded by the login timeout).
    pub within: Duration,
}

/// A logged-in socket: its halves, the bytes read past `login_ok`, the
/// heartbeat interval and the user's rooms with their heads.
struct Dialed {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    heartbeat_ms: u64,
    rooms: Vec<(String, u64)>,
}

/// Microseconds since the Unix epoch now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One logged-in v2 connection and what it has seen.
pub struct RoomConn {
    index: usize,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    max_frame_bytes: usize,
    heartbeat_ms: u64,
    ledger: MembershipLedger,
    lobby_deliveries: u64,
    bad_frames: u64,
    /// `leave`s sent per room and not answered yet.
    pending_leaves: HashMap<String, u32>,
    unasked_left: u64,
    /// `join`s and `create_room`s sent per room and not answered yet.
    pending_joins: HashMap<String, u32>,
    unasked_joined: u64,
    events: mpsc::UnboundedSender<Event>,
    latency: LatencyShards,
    /// Room commands waiting for their turn under [`ROOM_COMMANDS_PER_SEC`].
    room_cmds: VecDeque<ClientCommand>,
    next_room_cmd_at: tokio::time::Instant,
    /// The drain order, once given.
    drain: Option<(Arc<HashMap<String, u64>>, tokio::time::Instant)>,
    /// The heads of this user's rooms as `rooms_list` gave them after the
    /// drain order: a message whose send was never answered but that the
    /// server stored is owed too.
    listed_heads: Option<HashMap<String, u64>>,
    /// The heads `login_ok` listed for the rooms the user was in already
    /// (direct rooms of an earlier round): their messages of this run
    /// follow these.
    login_heads: HashMap<String, u64>,
    /// Latencies of the read batch at hand, µs.
    batch_us: Vec<u64>,
    /// How it logged in, to log in again.
    login: Login,
    observer: Option<Box<dyn RoomObserver>>,
    /// What the last login's `resume_rooms` asked for, per room.
    asked_resume: HashMap<String, u64>,
    reconnects: u64,
}

/// Connects and logs in with `protocol: 2`; tells the driver either way.
pub async fn connect(
    index: usize,
    login: &Login,
    events: mpsc::UnboundedSender<Event>,
    latency: LatencyShards,
    mut observer: Option<Box<dyn RoomObserver>>,
) -> Option<RoomConn> {
    match tokio::time::timeout(login.timeout, dial(index, login, login.target, None)).await {
        Ok(Ok(d)) => {
            let _ = events.send(Event {
                index,
                answer: Answer::LoggedIn,
            });
            if let Some(o) = &mut observer {
                o.connected(&borrowed(&d.rooms), &[]);
            }
            // A room the user is in already (a direct room of an earlier
            // run or round, made again by this run's first message to it)
            // gets no `joined`: its window opens at the head login gave.
            let mut ledger = MembershipLedger::new();
            for (room, seq) in &d.rooms {
                ledger.joined(room, *seq);
            }
            Some(RoomConn {
                index,
                reader: d.reader,
                writer: d.writer,
                buf: d.buf,
                max_frame_bytes: login.max_frame_bytes,
                heartbeat_ms: d.heartbeat_ms,
                ledger,
                lobby_deliveries: 0,
                bad_frames: 0,
                pending_leaves: HashMap::new(),
                unasked_left: 0,
                pending_joins: HashMap::new(),
                unasked_joined: 0,
                events,
                latency,
                room_cmds: VecDeque::new(),
                next_room_cmd_at: tokio::time::Instant::now(),
                drain: None,
                listed_heads: None,
                login_heads: d.rooms.into_iter().collect(),
                batch_us: Vec::with_capacity(64),
                login: login.clone(),
                observer,
                asked_resume: HashMap::new(),
                reconnects: 0,
            })
        }
        Ok(Err(e)) => fail(&events, index, e),
        Err(_) => fail(&events, index, format!("{}: timed out", login.target)),
    }
}

fn borrowed(list: &[(String, u64)]) -> Vec<(&str, u64)> {
    list.iter().map(|(r, s)| (r.as_str(), *s)).collect()
}

fn fail(events: &mpsc::UnboundedSender<Event>, index: usize, why: String) -> Option<RoomConn> {
    let _ = events.send(Event {
        index,
        answer: Answer::LoginFailed(why),
    });
    None
}

/// Connect to `target` and `login` with `protocol: 2` (resuming
/// `resume_rooms`, if any).
async fn dial(
    index: usize,
    login: &Login,
    target: std::net::SocketAddr,
    resume_rooms: Option<BTreeMap<String, u64>>,
) -> Result<Dialed, String> {
    let stream = connect_from(target, &login.sources, index)
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let cmd = ClientCommand::Login {
        user_id: login.user.clone(),
        password: login.password.to_string(),
        resume_from: None,
        subscribe: true,
        protocol: Some(rtmc::protocol::PROTOCOL_VERSION_ROOMS),
        resume_rooms,
    };
    let mut out = Vec::new();
    rtmc_frames::put_frame(&mut out, &cmd.to_json());
    writer.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        let payload = read_frame(&mut reader, &mut buf, login.max_frame_bytes).await?;
        match ServerFrame::parse(&payload) {
            Ok(ServerFrame::LoginOk {
                heartbeat_interval_ms,
                protocol_version,
                rooms,
                ..
            }) if protocol_version == rtmc::protocol::PROTOCOL_VERSION_ROOMS => {
                let rooms = rooms.unwrap_or_default();
                return Ok(Dialed {
                    reader,
                    writer,
                    buf,
                    heartbeat_ms: heartbeat_interval_ms,
                    rooms: rooms.into_iter().map(|r| (r.room, r.seq)).collect(),
                });
            }
            Ok(ServerFrame::LoginOk {
                protocol_version, ..
            }) => {
                return Err(format!(
                    "server answered protocol {protocol_version}, not 2"
                ))
            }
            Ok(ServerFrame::Error { code, message, .. }) => {
                return Err(format!("{code:?}: {message}"))
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl RoomConn {
    /// Serves orders and reads until drained (or the connection or the
    /// driver is gone); returns what this connection owes and got.
    pub async fn run(mut self, mut orders: mpsc::UnboundedReceiver<Order>) -> Settled {
        let period = Duration::from_millis(self.heartbeat_ms.max(100));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hb = heartbeat_frame();
        let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        let mut orders_open = true;
        loop {
            let deadline = self.drain.as_ref().map_or(far, |d| d.1);
            let paced = !self.room_cmds.is_empty();
            let mut alive = tokio::select! {
                r = self.reader.read_buf(&mut self.buf) => self.on_read(r),
                order = orders.recv(), if orders_open => match order {
                    Some(o) => self.on_order(o).await,
                    None => { orders_open = false; true }
                },
                _ = tokio::time::sleep_until(self.next_room_cmd_at), if paced => self.send_room_cmd().await,
                _ = heartbeat.tick() => self.writer.write_all(&hb).await.is_ok(),
                _ = tokio::time::sleep_until(deadline) => return self.settle(),
            };
            if !alive && !self.drained() {
                alive = self.reconnect(deadline).await;
            }
            if !alive || self.drained() || (!orders_open && self.drain.is_none()) {
                return self.settle();
            }
        }
    }

    /// A room's final head ([`final_head`]) from the driver's acknowledged
    /// count, the head the server listed and the head at login.
    fn head(&self, room: &str) -> Option<u64> {
        let acked = self.drain.as_ref().and_then(|d| d.0.get(room).copied());
        let listed = self
            .listed_heads
            .as_ref()
            .and_then(|h| h.get(room).copied());
        final_head(acked, listed, self.login_heads.get(room).copied())
    }

    fn drained(&self) -> bool {
        self.drain.is_some()
            && self.listed_heads.is_some()
            && self.ledger.complete(|r| self.head(r))
    }

    fn settle(self) -> Settled {
        Settled {
            index: self.index,
            complete: self.drained(),
            rooms: self.ledger.settle(|r| self.head(r)),
            lobby_deliveries: self.lobby_deliveries,
            bad_frames: self.bad_frames,
            unasked_left: self.unasked_left + self.ledger.unmatched_left,
            unasked_joined: self.unasked_joined,
            reconnects: self.reconnects,
        }
    }

    fn tell(&self, answer: Answer) {
        let _ = self.events.send(Event {
            index: self.index,
            answer,
        });
    }

    /// The connection was lost: logs in again — each server in turn from
    /// the next one, until `deadline` or the reconnect window ends —
    /// resuming every open room from the highest seq held. False when it
    /// could not (or is not to).
    async fn reconnect(&mut self, deadline: tokio::time::Instant) -> bool {
        let Some(rc) = self.login.reconnect.clone() else {
            return false;
        };
        let give_up = deadline.min(tokio::time::Instant::now() + rc.within);
        let resume: BTreeMap<String, u64> = self.ledger.resume_points().collect();
        let mut k = self.index + self.reconnects as usize + 1;
        while !rc.servers.is_empty() && tokio::time::Instant::now() < give_up {
            let target = rc.servers[k % rc.servers.len()];
            k += 1;
            let dialing = dial(self.index, &self.login, target, Some(resume.clone()));
            if let Ok(Ok(d)) = tokio::time::timeout(self.login.timeout, dialing).await {
                self.take_over(d, &resume);
                if self.drain.is_some() {
                    // The heads listed before may be stale: list again.
                    return self.write(&ClientCommand::Rooms {}).await;
                }
                return true;
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
        false
    }

    /// Carries on over a new login: its socket, a window from the listed
    /// head for every room `login_ok` lists that has none, and what the
    /// lost connection left unanswered settled against those rooms — a
    /// `leave` whose room is gone took effect (closed at the highest seq
    /// held), a `join` whose room is listed did; the others are sent again.
    fn take_over(&mut self, d: Dialed, resume: &BTreeMap<String, u64>) {
        (self.reader, self.writer, self.buf) = (d.reader, d.writer, d.buf);
        self.reconnects += 1;
        let listed: HashMap<String, u64> = d.rooms.iter().cloned().collect();
        self.asked_resume = resume
            .iter()
            .filter(|(r, _)| listed.contains_key(*r))
            .map(|(r, s)| (r.clone(), *s))
            .collect();
        if let Some(o) = &mut self.observer {
            let asked: Vec<(String, u64)> = resume.iter().map(|(r, s)| (r.clone(), *s)).collect();
            o.connected(&borrowed(&d.rooms), &borrowed(&asked));
        }
        for (room, n) in std::mem::take(&mut self.pending_leaves) {
            if n == 0 {
                continue;
            }
            match listed.get(&room) {
                Some(_) => self.room_cmds.push_back(ClientCommand::Leave { room }),
                None => {
                    let held = resume.get(&room).copied().unwrap_or(0);
                    if self.ledger.left(&room, held) {
                        self.tell(Answer::Left(room));
                    }
                }
            }
        }
        // Every listed room is this session's from its head on, also one
        // joined while the connection was gone (a direct room created
        // then); an open window stays as it is.
        for (room, head) in &d.rooms {
            self.ledger.joined(room, *head);
        }
        for (room, n) in std::mem::take(&mut self.pending_joins) {
            if n == 0 {
                continue;
            }
            match listed.get(&room) {
                Some(_) => self.tell(Answer::Joined(room)),
                None => self.room_cmds.push_back(ClientCommand::Join {
                    room,
                    after_seq: None,
                }),
            }
        }
    }

    /// Carries out one order; false when the connection is gone.
    async fn on_order(&mut self, order: Order) -> bool {
        let cmd = match order {
            Order::CreateRoom(room) => ClientCommand::CreateRoom {
                room: room.to_string(),
                kind: RoomKind::Public,
            },
            Order::Join(room) => ClientCommand::Join {
                room: room.to_string(),
                after_seq: None,
            },
            Order::Leave(room) => ClientCommand::Leave {
                room: room.to_string(),
            },
            Order::Send {
                room,
                to,
                message_id,
                body_bytes,
                sent_at_us,
            } => {
                if let Some(o) = &mut self.observer {
                    o.invoked(room.as_deref(), &message_id);
                }
                let send = ClientCommand::Send {
                    body: "x".repeat(body_bytes),
                    room: room.map(|r| r.to_string()),
                    to: to.map(|t| t.to_string()),
                    message_id: Some(message_id),
                    sent_at_us: Some(sent_at_us),
                };
                return self.write(&send).await;
            }
            Order::Drain { heads, deadline } => {
                self.drain = Some((heads, deadline));
                return self.write(&ClientCommand::Rooms {}).await;
            }
        };
        self.room_cmds.push_back(cmd);
        true
    }

    /// Sends the next paced room command; false when the connection is gone.
    async fn send_room_cmd(&mut self) -> bool {
        let Some(cmd) = self.room_cmds.pop_front() else {
            return true;
        };
        self.next_room_cmd_at =
            tokio::time::Instant::now() + Duration::from_secs_f64(1.0 / ROOM_COMMANDS_PER_SEC);
        match &cmd {
            ClientCommand::Leave { room } => {
                *self.pending_leaves.entry(room.clone()).or_default() += 1
            }
            ClientCommand::Join { room, .. } | ClientCommand::CreateRoom { room, .. } => {
                *self.pending_joins.entry(room.clone()).or_default() += 1
            }
            _ => {}
        }
        self.write(&cmd).await
    }

    async fn write(&mut self, cmd: &ClientCommand) -> bool {
        let mut out = Vec::new();
        rtmc_frames::put_frame(&mut out, &cmd.to_json());
        self.writer.write_all(&out).await.is_ok()
    }

    /// Takes a read's frames; false when the connection ended.
    fn on_read(&mut self, r: std::io::Result<usize>) -> bool {
        let closed = match r {
            Ok(0) => "eof".to_owned(),
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        if !closed.is_empty() {
            if let Some(o) = &mut self.observer {
                o.disconnected(&closed);
            }
            self.tell(Answer::Closed(closed));
            return false;
        }
        let now = now_us();
        self.batch_us.clear();
        let buf = std::mem::take(&mut self.buf);
        let used = rtmc_frames::for_each_frame(&buf, self.max_frame_bytes, |p| self.take(p, now));
        self.buf = buf;
        let Ok(used) = used else {
            self.tell(Answer::Closed("unparseable stream".into()));
            return false;
        };
        self.buf.advance(used);
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8 * 1024);
        }
        if !self.batch_us.is_empty() {
            let shard = &self.latency[self.index % self.latency.len()];
            if let Ok(mut h) = shard.lock() {
                for &us in &self.batch_us {
                    record_us(&mut h, us);
                }
            }
        }
        true
    }

    /// A `joined` answers this connection's oldest unanswered `join` or
    /// `create_room` of the room, or (direct rooms) comes unasked when the
    /// room is created by either user's first message. Any other is
    /// counted and opens nothing: what follows it is then a leak.
    fn on_joined(&mut self, room: String, seq: u64) {
        let asked = match self.pending_joins.get_mut(room.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        if let Some(o) = &mut self.observer {
            o.joined(&room, seq);
        }
        if asked || room.starts_with("dm:") {
            self.ledger.joined(&room, seq);
            self.tell(Answer::Joined(room));
        } else {
            self.unasked_joined += 1;
        }
    }

    /// A `left` answers this connection's oldest unanswered `leave` of the
    /// room; one that answers none (each user has this one session, and
    /// nobody else removes it) is a repeat or a stale one: counted, and it
    /// closes nothing.
    fn on_left(&mut self, room: String, seq: u64) {
        if let Some(o) = &mut self.observer {
            o.left(&room, seq);
        }
        match self.pending_leaves.get_mut(room.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if self.ledger.left(&room, seq) {
                    self.tell(Answer::Left(room));
                }
            }
            _ => self.unasked_left += 1,
        }
    }

    /// One frame: a broadcast by the byte scan, anything else through serde.
    fn take(&mut self, p: &[u8], now: u64) {
        if let Some((b, room)) = parse_room_broadcast(p) {
            let room = room.and_then(|r| std::str::from_utf8(r).ok());
            if let (Some(o), Some(room), Some(origin)) = (&mut self.observer, room, b.origin) {
                o.delivered(room, b.seq, &rtmc_frames::message_id(origin));
            } else if let (Some(_), Some(_)) = (&self.observer, room) {
                // Not loadgen's id: the slow path reads it.
                return self.take_parsed(p, now);
            }
            match room {
                Some(room) => {
                    self.ledger.delivered(room, b.seq);
                    self.batch_us.push(now.saturating_sub(b.sent_at_us));
                }
                None => self.lobby_deliveries += 1,
            }
            return;
        }
        self.take_parsed(p, now);
    }

    /// One frame through serde.
    fn take_parsed(&mut self, p: &[u8], now: u64) {
        match ServerFrame::parse(p) {
            Ok(ServerFrame::Broadcast(b)) => match b.room {
                Some(room) => {
                    if let Some(o) = &mut self.observer {
                        o.delivered(&room, b.seq, &b.message_id);
                    }
                    self.ledger.delivered(&room, b.seq);
                    self.batch_us.push(now.saturating_sub(b.sent_at_us));
                }
                None => self.lobby_deliveries += 1,
            },
            Ok(ServerFrame::Joined { room, seq, .. }) => self.on_joined(room, seq),
            Ok(ServerFrame::Left { room, seq }) => self.on_left(room, seq),
            Ok(ServerFrame::RoomCreated { room, .. }) => self.tell(Answer::RoomCreated(room)),
            Ok(ServerFrame::RoomsList { rooms }) => {
                self.listed_heads = Some(rooms.into_iter().map(|r| (r.room, r.seq)).collect());
            }
            Ok(ServerFrame::SendAck { room, message_id }) => {
                if let Some(o) = &mut self.observer {
                    o.acked(&message_id, room.as_deref());
                }
                self.tell(Answer::Acked { room })
            }
            Ok(ServerFrame::ResumeDone {
                last_seq,
                room: Some(room),
            }) => {
                let from = self.asked_resume.remove(&room);
                if let (Some(o), Some(from)) = (&mut self.observer, from) {
                    o.resumed(&room, from, last_seq);
                }
            }
            Ok(ServerFrame::Error {
                code,
                message_id,
                room,
                ..
            }) => {
                if let (Some(o), Some(id)) = (&mut self.observer, &message_id) {
                    o.refused(id, code.as_str());
                }
                self.tell(Answer::Refused {
                    code,
                    message_id,
                    room,
                })
            }
            Ok(_) => {}
            Err(_) => self.bad_frames += 1,
        }
    }
}
