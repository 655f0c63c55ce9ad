//! A room workload on a peer — Redis pub/sub (the floor), NATS core or
//! JetStream (a consumer per membership) — with the plan rtmc runs (same
//! seed: same rooms, members, schedule, bodies, churn), the same payloads
//! (rtmc's room broadcast JSON, `seq` stamped per room by its one
//! publisher), the same latency histograms and the same per-room ledger.
//! Channels and publishers come from [`PeerMap`]. A peer has no join point:
//! a subscription owes what was published after it was confirmed, and what
//! was in flight while it was on the way may come or not
//! ([`MembershipLedger::joined_unsure`]); an unsubscription owes what was
//! acknowledged before it was sent and allows what was published before it
//! was confirmed. Churn is unsubscribe and subscribe.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::dial::connect_from;
use crate::engine::room_accounting::{MembershipLedger, RoomAccounting};
use crate::engine::rooms::client::{now_us, LatencyShards, Settled};
use crate::engine::rooms::driver::RoomsOutcome;
use crate::engine::rooms::peer_map::PeerMap;
use crate::engine::rooms::summary::RoomsReport;
use crate::measure::cpu::{self, CpuWatch};
use crate::measure::histogram::{merge_into, new_histogram, record_us, LatencySummary};
use crate::wire::nats::{self, NatsOp};
use crate::wire::resp::{self, RespItem};
use crate::wire::rtmc_frames::{message_id, parse_room_broadcast, MessageOrigin};
use crate::workload::plan::WorkloadPlan;
use crate::workload::schedule::{ChurnAction, PublishEvent, Target};

/// Latency histogram shards (one lock per read batch each).
const LATENCY_SHARDS: usize = 16;
/// Connect failure reasons kept for the report.
const MAX_SAMPLES: usize = 5;
/// Initial subscriptions per second the setup deadline assumes the peer
/// takes at least (JetStream: a consumer created per membership).
const SUBSCRIBES_PER_SEC_FLOOR: f64 = 500.0;

/// Which pub/sub peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerWire {
    /// Redis pub/sub: `SUBSCRIBE`/`UNSUBSCRIBE` confirmations, `PUBLISH`'s
    /// integer reply as the ack.
    RedisPubSub,
    /// NATS core: `SUB`/`UNSUB`/`PUB` each followed by a `PING`, whose
    /// `PONG` (the server handled what came before) confirms it.
    NatsCore,
    /// NATS JetStream, one stream over `room.*`: a publish's `PubAck` is its
    /// ack; a membership is a push consumer filtered on its room's subject
    /// (`deliver_policy: new`), created and deleted through the JetStream
    /// API, whose answers confirm.
    JetStream,
}

/// The sid of a connection's reply inbox (API answers, `PubAck`s).
const INBOX_SID: u64 = 1;

/// The sid of channel `c`'s subscription on a subscriber.
fn channel_sid(c: usize) -> u64 {
    c as u64 + 2
}

/// JetStream: the consumer-create request of a membership — a durable push
/// consumer on `filter` delivering to `deliver` what is stored from now on,
/// unacknowledged, in memory.
pub fn consumer_create(stream: &str, durable: &str, deliver: &str, filter: &str) -> Vec<u8> {
    serde_json::json!({
        "stream_name": stream,
        "config": {
            "durable_name": durable,
            "deliver_subject": deliver,
            "deliver_policy": "new",
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": filter,
            "mem_storage": true,
            "num_replicas": 1,
        }
    })
    .to_string()
    .into_bytes()
}

impl PeerWire {
    /// The phase label, as the global-room rounds name these peers.
    pub fn label(self) -> &'static str {
        match self {
            PeerWire::RedisPubSub => "floor",
            PeerWire::NatsCore => "nats",
            PeerWire::JetStream => "jetstream",
        }
    }

    /// What a connection says first (NATS: `CONNECT`; JetStream also
    /// subscribes its reply inbox).
    fn hello(self, out: &mut Vec<u8>, inbox: &str) {
        match self {
            PeerWire::RedisPubSub => {}
            PeerWire::NatsCore => nats::connect(out),
            PeerWire::JetStream => {
                nats::connect(out);
                nats::sub(out, inbox, INBOX_SID);
            }
        }
    }

    /// Redis and NATS core (JetStream: [`PeerSub::consumer`]).
    fn subscribe(self, out: &mut Vec<u8>, subject: &str, sid: u64) {
        match self {
            PeerWire::JetStream => {}
            PeerWire::RedisPubSub => resp::command(out, &[b"SUBSCRIBE", subject.as_bytes()]),
            PeerWire::NatsCore => {
                nats::sub(out, subject, sid);
                out.extend_from_slice(b"PING\r\n");
            }
        }
    }

    /// Redis and NATS core (JetStream: [`PeerSub::consumer`]).
    fn unsubscribe(self, out: &mut Vec<u8>, subject: &str, sid: u64) {
        match self {
            PeerWire::JetStream => {}
            PeerWire::RedisPubSub => resp::command(out, &[b"UNSUBSCRIBE", subject.as_bytes()]),
            PeerWire::NatsCore => {
                nats::unsub(out, sid);
                out.extend_from_slice(b"PING\r\n");
            }
        }
    }

    fn publish(self, out: &mut Vec<u8>, subject: &str, inbox: &str, payload: &[u8]) {
        match self {
            PeerWire::JetStream => {
                nats::publish(out, subject.as_bytes(), Some(inbox.as_bytes()), payload)
            }
            PeerWire::RedisPubSub => resp::command(out, &[b"PUBLISH", subject.as_bytes(), payload]),
            PeerWire::NatsCore => {
                nats::publish(out, subject.as_bytes(), None, payload);
                out.extend_from_slice(b"PING\r\n");
            }
        }
    }

    /// The next item of the stream at `at`: `Ok(None)` when incomplete.
    fn next(self, buf: &[u8], at: usize) -> Result<Option<(Item<'_>, usize)>, String> {
        if self == PeerWire::RedisPubSub {
            let Some((item, next)) = resp::next_item(buf, at).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let item = match item {
                RespItem::Message(p) => Item::Message(p),
                RespItem::Subscribed(_) | RespItem::Unsubscribed(_) => Item::Confirm,
                RespItem::Integer(_) => Item::Confirm,
                RespItem::Error(e) => Item::Refused(e),
                RespItem::Other => Item::Other,
            };
            return Ok(Some((item, next)));
        }
        let Some((op, next)) = nats::next_op(buf, at).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let js = self == PeerWire::JetStream;
        let item = match op {
            NatsOp::Msg {
                sid: INBOX_SID,
                payload,
                ..
            } if js => api_answer(payload),
            NatsOp::Msg { payload, .. } => Item::Message(payload),
            NatsOp::Pong if js => Item::Other,
            NatsOp::Pong => Item::Confirm,
            NatsOp::Ping => Item::Ping,
            NatsOp::Err(e) => Item::Refused(e),
            _ => Item::Other,
        };
        Ok(Some((item, next)))
    }
}

/// A JetStream API answer or `PubAck`: confirmed, or refused with its error.
fn api_answer(payload: &[u8]) -> Item<'_> {
    let error = br#""error""#;
    if payload.windows(error.len()).any(|w| w == error) {
        Item::Refused(payload)
    } else {
        Item::Confirm
    }
}

/// One item the peer sent, as both connection kinds read it.
enum Item<'a> {
    /// A published payload.
    Message(&'a [u8]),
    /// The answer to the oldest unanswered command (subscribe, unsubscribe, publish).
    Confirm,
    /// An error answering the oldest unanswered command.
    Refused(&'a [u8]),
    /// The server's keep-alive (NATS): answered with `PONG`.
    Ping,
    Other,
}

/// Per channel: the highest `seq` handed to its publisher, and the highest
/// the peer acknowledged — the two bounds of a membership's uncertain edge.
#[derive(Debug)]
pub struct Counters {
    /// Highest `seq` handed to the channel's publisher, per channel.
    dispatched: Vec<AtomicU64>,
    /// Highest `seq` the peer acknowledged, per channel.
    acked: Vec<AtomicU64>,
}

impl Counters {
    fn new(channels: usize) -> Self {
        let zeros = || (0..channels).map(|_| AtomicU64::new(0)).collect();
        Self {
            dispatched: zeros(),
            acked: zeros(),
        }
    }
}

/// One room run on a peer.
#[derive(Debug, Clone)]
pub struct PeerRoomRun<'a> {
    /// The drawn workload (the same as rtmc's).
    pub plan: &'a WorkloadPlan,
    /// Which peer.
    pub wire: PeerWire,
    /// The Redis or nats-server every connection goes to.
    pub addr: SocketAddr,
    /// Names the users in direct rooms and `from` (as on rtmc).
    pub user_prefix: String,
    /// Local source addresses (empty: the OS's choice).
    pub source_addrs: Vec<IpAddr>,
    /// In every room id and message id, as on rtmc.
    pub run_id: u32,
    /// Connections opened per second.
    pub connects_per_sec: f64,
    /// How long a connect (and the initial subscriptions) may take.
    pub connect_timeout: Duration,
    /// After publishing: how long answers and deliveries may take.
    pub drain_timeout: Duration,
    /// The schedule's total rate, for the report.
    pub rate_per_sec: f64,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// The peer's server process(es), whose CPU the run reports.
    pub server_cpu: Vec<CpuWatch>,
    /// JetStream: the stream over `room.*` (created by the caller).
    pub stream: Option<String>,
}

/// What the driver asks of a subscriber.
#[derive(Debug, Clone)]
enum SubOrder {
    Subscribe(usize),
    Unsubscribe(usize),
    /// Settle once every open window holds its room's head, or at `deadline`.
    Drain {
        heads: Arc<HashMap<String, u64>>,
        deadline: Instant,
    },
}

/// One publish: channel, its `seq`, the payload.
#[derive(Debug)]
struct PubOrder {
    /// The channel (room or direct pair).
    channel: usize,
    /// The channel's sequence number of this message.
    seq: u64,
    /// The room broadcast JSON.
    payload: Vec<u8>,
}

/// An answer a connection tells the driver.
#[derive(Debug, Clone)]
enum PeerAnswer {
    Connected,
    ConnectFailed(String),
    /// Subscriber `sub` subscribed to `channel`.
    Subscribed {
        sub: usize,
        channel: usize,
    },
    Unsubscribed,
    /// A publish acknowledged.
    Acked,
    /// A publish (`publish` true) or a subscription command refused.
    Refused {
        publish: bool,
        why: String,
    },
    /// The connection ended (eof, an error, or bytes that are not the protocol).
    Closed,
}

/// What every connection shares.
#[derive(Clone)]
struct Shared {
    /// Which peer.
    wire: PeerWire,
    /// In inboxes, deliver subjects and consumer names.
    run_id: u32,
    /// JetStream's stream (empty for the others).
    stream: Arc<str>,
    /// Channels, publishers and subscriptions.
    map: Arc<PeerMap>,
    /// Per channel: handed out and acknowledged.
    counters: Arc<Counters>,
    /// Answers to the driver.
    events: mpsc::UnboundedSender<PeerAnswer>,
    /// Delivery latency, shared by every subscriber.
    latency: LatencyShards,
}

impl Shared {
    /// Connection `index`'s reply inbox (JetStream).
    fn inbox(&self, index: usize) -> String {
        format!("_INBOX.lg{:08x}.{index}", self.run_id)
    }
}

/// Connects to the peer from a source address, and says hello (NATS
/// `CONNECT`, JetStream's reply inbox).
async fn dial(
    wire: PeerWire,
    addr: SocketAddr,
    sources: &[IpAddr],
    index: usize,
    inbox: &str,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), String> {
    let stream = connect_from(addr, sources, index)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut out = Vec::new();
    wire.hello(&mut out, inbox);
    if !out.is_empty() {
        writer.write_all(&out).await.map_err(|e| e.to_string())?;
    }
    Ok((reader, writer))
}

/// A subscriber: one client of the workload.
struct PeerSub {
    /// Subscriber index: clients first, then the owners.
    index: usize,
    /// What every connection shares.
    shared: Shared,
    /// The read half.
    reader: OwnedReadHalf,
    /// The write half.
    writer: OwnedWriteHalf,
    /// Bytes read and not parsed yet.
    buf: BytesMut,
    /// Its membership windows and deliveries.
    ledger: MembershipLedger,
    /// Subscribe (true) or unsubscribe of a channel sent and not confirmed
    /// yet, with the channel's acknowledged `seq` when it went out.
    pending: VecDeque<(usize, bool, u64)>,
    /// JetStream: leaves waiting until everything acknowledged before them
    /// arrived (channel, that `seq`), since a deleted consumer may not
    /// have pushed all it stored.
    leaving: Vec<(usize, u64)>,
    /// JetStream: joins that came while the channel's leave was waiting:
    /// made right after its consumer is deleted, so windows stay in order.
    rejoins: Vec<usize>,
    /// JetStream: consumers made so far (each membership's name is new).
    consumers: u64,
    /// JetStream: each open membership's consumer.
    durables: HashMap<usize, String>,
    /// JetStream: the reply inbox.
    inbox: String,
    /// The heads to settle against and the deadline, once draining.
    drain: Option<(Arc<HashMap<String, u64>>, Instant)>,
    /// Payloads that were not a room broadcast.
    bad_frames: u64,
    /// Latencies of the read batch at hand, µs.
    batch_us: Vec<u64>,
    /// Replies owed to the server (`PONG`).
    out: Vec<u8>,
}

impl PeerSub {
    fn tell(&self, a: PeerAnswer) {
        let _ = self.shared.events.send(a);
    }

    /// Serves orders and reads until drained, closed or let go.
    async fn run(mut self, mut orders: mpsc::UnboundedReceiver<SubOrder>) -> Settled {
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let mut orders_open = true;
        loop {
            let deadline = self.drain.as_ref().map_or(far, |d| d.1);
            let alive = tokio::select! {
                r = self.reader.read_buf(&mut self.buf) => self.on_read(r).await,
                o = orders.recv(), if orders_open => match o {
                    Some(o) => self.on_order(o).await,
                    None => { orders_open = false; true }
                },
                _ = tokio::time::sleep_until(deadline) => false,
            };
            if !alive || self.drained() || (!orders_open && self.drain.is_none()) {
                return self.settle();
            }
        }
    }

    fn head(&self, room: &str) -> Option<u64> {
        self.drain.as_ref().and_then(|d| d.0.get(room).copied())
    }

    fn drained(&self) -> bool {
        self.drain.is_some()
            && self.pending.is_empty()
            && self.leaving.is_empty()
            && self.rejoins.is_empty()
            && self.ledger.complete(|r| self.head(r))
    }

    fn settle(self) -> Settled {
        Settled {
            index: self.index,
            complete: self.drained(),
            rooms: self.ledger.settle(|r| self.head(r)),
            lobby_deliveries: 0,
            bad_frames: self.bad_frames,
            unasked_left: self.ledger.unmatched_left,
            unasked_joined: 0,
            // A peer connection never logs in again.
            reconnects: 0,
        }
    }

    async fn on_order(&mut self, o: SubOrder) -> bool {
        let (c, join) = match o {
            SubOrder::Subscribe(c) => (c, true),
            SubOrder::Unsubscribe(c) => (c, false),
            SubOrder::Drain { heads, deadline } => {
                self.drain = Some((heads, deadline));
                return true;
            }
        };
        let Some(ch) = self.shared.map.channels.get(c) else {
            return true;
        };
        // Read before the command goes out: everything acknowledged by now
        // was handled by the peer before it.
        let acked = self.shared.counters.acked[c].load(Ordering::SeqCst);
        if self.shared.wire == PeerWire::JetStream {
            return self.consumer(c, join, acked).await;
        }
        let mut out = Vec::new();
        let sid = channel_sid(c);
        if join {
            self.shared.wire.subscribe(&mut out, &ch.subject, sid);
        } else {
            self.shared.wire.unsubscribe(&mut out, &ch.subject, sid);
        }
        self.pending.push_back((c, join, acked));
        self.writer.write_all(&out).await.is_ok()
    }

    /// JetStream: a membership's consumer created (after subscribing its
    /// deliver subject), or its leave queued until everything acknowledged
    /// before it arrived.
    async fn consumer(&mut self, c: usize, join: bool, acked: u64) -> bool {
        if !join {
            self.leaving.push((c, acked));
            return self.try_leave().await;
        }
        if self.leaving.iter().any(|l| l.0 == c) {
            self.rejoins.push(c);
            return true;
        }
        let mut out = Vec::new();
        self.create(c, acked, &mut out);
        self.writer.write_all(&out).await.is_ok()
    }

    /// JetStream: subscribes `c`'s deliver subject and asks for its
    /// consumer (`acked`: the channel's acknowledged `seq` read before).
    fn create(&mut self, c: usize, acked: u64, out: &mut Vec<u8>) {
        let run = self.shared.run_id;
        let durable = format!("lg{run:08x}_{}_{c}_{}", self.index, self.consumers);
        self.consumers += 1;
        let deliver = format!("lgd.{run:08x}.{}.{c}", self.index);
        let ch = &self.shared.map.channels[c];
        let req = consumer_create(&self.shared.stream, &durable, &deliver, &ch.subject);
        let api = format!(
            "$JS.API.CONSUMER.DURABLE.CREATE.{}.{durable}",
            self.shared.stream
        );
        nats::sub(out, &deliver, channel_sid(c));
        nats::publish(out, api.as_bytes(), Some(self.inbox.as_bytes()), &req);
        self.durables.insert(c, durable);
        self.pending.push_back((c, true, acked));
    }

    /// JetStream: deletes the consumer of every leave whose room holds all
    /// that was acknowledged before the leave (its window then owes no more
    /// than that) and drops its deliver subject.
    async fn try_leave(&mut self) -> bool {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.leaving.len() {
            let (c, acked) = self.leaving[i];
            let room = &self.shared.map.channels[c].room;
            if self.ledger.contiguous(room).is_some_and(|got| got < acked) {
                i += 1;
                continue;
            }
            self.leaving.swap_remove(i);
            let durable = self.durables.remove(&c).unwrap_or_default();
            let api = format!("$JS.API.CONSUMER.DELETE.{}.{durable}", self.shared.stream);
            nats::unsub(&mut out, channel_sid(c));
            nats::publish(&mut out, api.as_bytes(), Some(self.inbox.as_bytes()), b"");
            self.pending.push_back((c, false, acked));
            if let Some(k) = self.rejoins.iter().position(|&r| r == c) {
                self.rejoins.swap_remove(k);
                let acked = self.shared.counters.acked[c].load(Ordering::SeqCst);
                self.create(c, acked, &mut out);
            }
        }
        out.is_empty() || self.writer.write_all(&out).await.is_ok()
    }

    /// The confirmation of the oldest pending command: the window opens
    /// (or closes) between the acknowledged `seq` read when it went out and
    /// the `seq` handed to the publisher by now.
    fn confirmed(&mut self) {
        let Some((c, join, acked)) = self.pending.pop_front() else {
            return;
        };
        let dispatched = self.shared.counters.dispatched[c].load(Ordering::SeqCst);
        let room = self.shared.map.channels[c].room.clone();
        if join {
            self.ledger.joined_unsure(&room, acked, dispatched);
            self.tell(PeerAnswer::Subscribed {
                sub: self.index,
                channel: c,
            });
        } else if self.ledger.left_unsure(&room, acked, dispatched) {
            self.tell(PeerAnswer::Unsubscribed);
        }
    }

    async fn on_read(&mut self, r: std::io::Result<usize>) -> bool {
        match r {
            Ok(0) => {
                self.tell(PeerAnswer::Closed);
                return false;
            }
            Err(_) => {
                self.tell(PeerAnswer::Closed);
                return false;
            }
            Ok(_) => {}
        }
        let now = now_us();
        let buf = std::mem::take(&mut self.buf);
        let used = self.take_items(&buf, now);
        self.buf = buf;
        let Ok(used) = used else {
            self.tell(PeerAnswer::Closed);
            return false;
        };
        self.buf.advance(used);
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8 * 1024);
        }
        self.record_batch();
        let out = std::mem::take(&mut self.out);
        if !out.is_empty() && self.writer.write_all(&out).await.is_err() {
            return false;
        }
        self.leaving.is_empty() || self.try_leave().await
    }

    /// Takes every complete item of `buf`; the bytes used.
    fn take_items(&mut self, buf: &[u8], now: u64) -> Result<usize, String> {
        let mut at = 0;
        while let Some((item, next)) = self.shared.wire.next(buf, at)? {
            match item {
                Item::Message(p) => self.take(p, now),
                Item::Confirm => self.confirmed(),
                Item::Refused(e) => {
                    self.pending.pop_front();
                    let why = String::from_utf8_lossy(e).into_owned();
                    self.tell(PeerAnswer::Refused {
                        publish: false,
                        why,
                    });
                }
                Item::Ping => self.out.extend_from_slice(b"PONG\r\n"),
                Item::Other => {}
            }
            at = next;
        }
        Ok(at)
    }

    fn take(&mut self, p: &[u8], now: u64) {
        match parse_room_broadcast(p) {
            Some((b, Some(room))) => match std::str::from_utf8(room) {
                Ok(room) => {
                    self.ledger.delivered(room, b.seq);
                    self.batch_us.push(now.saturating_sub(b.sent_at_us));
                }
                Err(_) => self.bad_frames += 1,
            },
            _ => self.bad_frames += 1,
        }
    }

    fn record_batch(&mut self) {
        if self.batch_us.is_empty() {
            return;
        }
        let shard = &self.shared.latency[self.index % self.shared.latency.len()];
        if let Ok(mut h) = shard.lock() {
            for &us in &self.batch_us {
                record_us(&mut h, us);
            }
        }
        self.batch_us.clear();
    }
}

/// A publisher: writes its channels' payloads in order, pipelined, and
/// counts each answer as the channel's acknowledged `seq`.
struct PeerPub {
    /// What every connection shares.
    shared: Shared,
    /// JetStream: the reply inbox its `PubAck`s come to.
    inbox: String,
    /// The read half.
    reader: OwnedReadHalf,
    /// The write half.
    writer: OwnedWriteHalf,
    /// Bytes read and not parsed yet.
    buf: BytesMut,
    /// Publishes written and not answered: (channel, seq), in order.
    in_flight: VecDeque<(usize, u64)>,
}

impl PeerPub {
    /// Runs until its orders end and every publish is answered, or the
    /// connection ends (the driver aborts it past the drain deadline).
    async fn run(mut self, mut orders: mpsc::UnboundedReceiver<PubOrder>) {
        let mut orders_open = true;
        let mut out = Vec::new();
        loop {
            let alive = tokio::select! {
                r = self.reader.read_buf(&mut self.buf) => self.on_read(r, &mut out),
                o = orders.recv(), if orders_open => match o {
                    Some(first) => {
                        self.queue(first, &mut out);
                        while let Ok(o) = orders.try_recv() {
                            self.queue(o, &mut out);
                        }
                        true
                    }
                    None => { orders_open = false; true }
                },
            };
            let written = out.is_empty() || self.writer.write_all(&out).await.is_ok();
            out.clear();
            if !alive || !written || (!orders_open && self.in_flight.is_empty()) {
                return;
            }
        }
    }

    fn queue(&mut self, o: PubOrder, out: &mut Vec<u8>) {
        let subject = &self.shared.map.channels[o.channel].subject;
        self.shared
            .wire
            .publish(out, subject, &self.inbox, &o.payload);
        self.in_flight.push_back((o.channel, o.seq));
    }

    fn on_read(&mut self, r: std::io::Result<usize>, out: &mut Vec<u8>) -> bool {
        if !matches!(r, Ok(n) if n > 0) {
            let _ = self.shared.events.send(PeerAnswer::Closed);
            return false;
        }
        let mut at = 0;
        loop {
            match self.shared.wire.next(&self.buf, at) {
                Ok(Some((item, next))) => {
                    let answer = match item {
                        Item::Confirm => Some(PeerAnswer::Acked),
                        Item::Refused(e) => Some(PeerAnswer::Refused {
                            publish: true,
                            why: String::from_utf8_lossy(e).into_owned(),
                        }),
                        Item::Ping => {
                            out.extend_from_slice(b"PONG\r\n");
                            None
                        }
                        Item::Message(_) | Item::Other => None,
                    };
                    if let Some(a) = answer {
                        if let (Some((c, seq)), PeerAnswer::Acked) =
                            (self.in_flight.pop_front(), &a)
                        {
                            self.shared.counters.acked[c].fetch_max(seq, Ordering::SeqCst);
                        }
                        let _ = self.shared.events.send(a);
                    }
                    at = next;
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = self.shared.events.send(PeerAnswer::Closed);
                    return false;
                }
            }
        }
        self.buf.advance(at);
        true
    }
}

/// Every answer counted.
#[derive(Debug, Default)]
struct PeerTally {
    /// Initial subscriptions are confirmed until publishing starts.
    publishing: bool,
    /// Connections up.
    connected: usize,
    /// Connections that failed.
    connect_failed: usize,
    /// A few connect failures' reasons.
    samples: Vec<String>,
    /// Initial subscriptions confirmed: clients' to rooms.
    initial_rooms: u64,
    /// Initial subscriptions confirmed: the owners' to their rooms.
    initial_owners: u64,
    /// Initial subscriptions confirmed: clients' to their direct pairs.
    initial_direct: u64,
    /// Churn subscriptions confirmed.
    churn_joined: u64,
    /// Churn unsubscriptions confirmed.
    churn_left: u64,
    /// Publishes acknowledged.
    acked: u64,
    /// Publishes refused, by the peer's error text.
    refused: BTreeMap<String, u64>,
    /// Publishes refused in all.
    refused_sends: u64,
    /// Subscription commands refused, by the peer's error text.
    sub_refusals: BTreeMap<String, u64>,
    /// Connections that ended during the run.
    disconnects: u64,
}

impl PeerTally {
    /// Counts `a`; `clients` subscribers are clients, the rest owners.
    fn absorb(&mut self, a: PeerAnswer, (rooms, clients): (usize, usize)) {
        match a {
            PeerAnswer::Connected => self.connected += 1,
            PeerAnswer::ConnectFailed(why) => {
                self.connect_failed += 1;
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push(why);
                }
            }
            PeerAnswer::Subscribed { .. } if self.publishing => self.churn_joined += 1,
            PeerAnswer::Subscribed { sub, .. } if sub >= clients => self.initial_owners += 1,
            PeerAnswer::Subscribed { channel, .. } if channel < rooms => self.initial_rooms += 1,
            PeerAnswer::Subscribed { .. } => self.initial_direct += 1,
            PeerAnswer::Unsubscribed => self.churn_left += 1,
            PeerAnswer::Acked => self.acked += 1,
            PeerAnswer::Refused { publish: true, why } => {
                self.refused_sends += 1;
                *self.refused.entry(why).or_default() += 1;
            }
            PeerAnswer::Refused { why, .. } => *self.sub_refusals.entry(why).or_default() += 1,
            PeerAnswer::Closed => self.disconnects += 1,
        }
    }

    fn sub_refused(&self) -> u64 {
        self.sub_refusals.values().sum()
    }
}

/// The run in progress.
struct PeerDriver<'a> {
    /// The run.
    spec: &'a PeerRoomRun<'a>,
    /// What every connection shares.
    shared: Shared,
    /// Every connection's answers.
    answers: mpsc::UnboundedReceiver<PeerAnswer>,
    /// The answers counted.
    tally: PeerTally,
    /// Orders to subscriber `i`.
    subs: Vec<mpsc::UnboundedSender<SubOrder>>,
    /// Subscriber tasks, each settling its ledger.
    sub_handles: Vec<JoinHandle<Option<Settled>>>,
    /// Orders to publisher `k`.
    pubs: Vec<mpsc::UnboundedSender<PubOrder>>,
    /// Publisher tasks.
    pub_handles: Vec<JoinHandle<()>>,
    /// Messages handed to each channel's publisher: the next `seq` - 1.
    seqs: Vec<u64>,
    /// What was published, filled in as the run goes.
    report: RoomsReport,
    /// When the next live line is due, and the last one's time and
    /// deliveries.
    live: (Instant, Instant, u64),
}

/// Runs the room workload on the peer; never fails as a whole: what went
/// wrong is in the report's failures (a mapping that cannot be built too).
pub async fn run_peer_rooms(spec: &PeerRoomRun<'_>) -> RoomsOutcome {
    let map = match PeerMap::new(spec.plan, spec.run_id, &spec.user_prefix) {
        Ok(m) => m,
        Err(e) => {
            let report = RoomsReport {
                login_failures: 1,
                login_error_samples: vec![e.to_string()],
                ..Default::default()
            };
            return RoomsOutcome {
                report,
                latency: new_histogram(),
            };
        }
    };
    let say = |m: &str| {
        if !spec.quiet {
            eprintln!("rooms on {}: {m}", spec.wire.label());
        }
    };
    let mut d = PeerDriver::connect_all(spec, map);
    say(&format!("seed {}; connecting", spec.plan.seed));
    d.await_connects().await;
    say(&format!("{} connected; subscribing", d.tally.connected));
    d.subscribe_all().await;
    say(&format!(
        "{} subscriptions; publishing {} messages",
        d.tally.initial_rooms + d.tally.initial_direct + d.tally.initial_owners,
        spec.plan.schedule.ticks()
    ));
    d.tally.publishing = true;
    let cpu_start = cpu::read(&spec.server_cpu);
    let publish_secs = d.publish().await;
    say("draining");
    d.await_answers().await;
    let settled = d.drain().await;
    let cpu_end = cpu::read(&spec.server_cpu);
    let mut outcome = d.finish(settled, publish_secs);
    outcome.report.server_cpu = cpu::spent(
        &spec.server_cpu,
        &cpu_start,
        &cpu_end,
        outcome.latency.len(),
    );
    outcome
}

impl<'a> PeerDriver<'a> {
    /// Spawns the subscribers (paced at `connects_per_sec`), then the publishers.
    fn connect_all(spec: &'a PeerRoomRun<'a>, map: PeerMap) -> Self {
        let (events, answers) = mpsc::unbounded_channel();
        let shared = Shared {
            wire: spec.wire,
            run_id: spec.run_id,
            stream: Arc::from(spec.stream.as_deref().unwrap_or_default()),
            counters: Arc::new(Counters::new(map.channels.len())),
            map: Arc::new(map),
            events,
            latency: Arc::new(
                (0..LATENCY_SHARDS)
                    .map(|_| Mutex::new(new_histogram()))
                    .collect(),
            ),
        };
        // The clients, then one owner per publisher.
        let subscribers = shared.map.subscriptions.len();
        let sources = Arc::new(spec.source_addrs.clone());
        let start = Instant::now();
        let pace =
            |i: usize| start + Duration::from_secs_f64(i as f64 / spec.connects_per_sec.max(1.0));
        let (subs, sub_handles) = (0..subscribers)
            .map(|i| spawn_sub(i, pace(i), spec, sources.clone(), shared.clone()))
            .unzip();
        let (pubs, pub_handles) = (0..shared.map.publishers)
            .map(|k| {
                spawn_pub(
                    subscribers + k,
                    pace(subscribers + k),
                    spec,
                    sources.clone(),
                    shared.clone(),
                )
            })
            .unzip();
        Self {
            spec,
            seqs: vec![0; shared.map.channels.len()],
            shared,
            answers,
            tally: PeerTally::default(),
            subs,
            sub_handles,
            pubs,
            pub_handles,
            report: RoomsReport::default(),
            live: (start + Duration::from_secs(1), start, 0),
        }
    }

    /// (rooms, clients): how answers are told apart.
    fn kinds(&self) -> (usize, usize) {
        let a = &self.spec.plan.assignment;
        (a.sizes.len(), a.memberships.len())
    }

    async fn wait_for(&mut self, deadline: Instant, done: impl Fn(&PeerTally) -> bool) {
        while !done(&self.tally) {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Ok(Some(a)) => self.tally.absorb(a, self.kinds()),
                _ => return,
            }
        }
    }

    async fn await_connects(&mut self) {
        let n = self.subs.len() + self.pubs.len();
        let ramp = Duration::from_secs_f64(n as f64 / self.spec.connects_per_sec.max(1.0));
        let deadline = Instant::now() + ramp + self.spec.connect_timeout;
        self.wait_for(deadline, |t| t.connected + t.connect_failed >= n)
            .await;
    }

    /// Every client subscribes to its rooms and direct pairs.
    async fn subscribe_all(&mut self) {
        let mut n = 0u64;
        for (i, channels) in self.shared.map.subscriptions.iter().enumerate() {
            for &c in channels {
                let _ = self.subs[i].send(SubOrder::Subscribe(c));
                n += 1;
            }
        }
        // A bound, not a wait: JetStream creates a consumer per membership.
        let creates = Duration::from_secs_f64(n as f64 / SUBSCRIBES_PER_SEC_FLOOR);
        let deadline = Instant::now() + self.spec.connect_timeout + creates;
        self.wait_for(deadline, |t| {
            t.initial_rooms + t.initial_direct + t.initial_owners + t.sub_refused() >= n
        })
        .await;
    }

    /// The schedule open loop with the churn plan interleaved; the seconds
    /// it took.
    async fn publish(&mut self) -> f64 {
        let plan = self.spec.plan;
        let lead = Duration::from_millis(100);
        let (start, start_wall_us) = (Instant::now() + lead, now_us() + lead.as_micros() as u64);
        let mut churn = plan.churn.iter().peekable();
        self.live = (start + Duration::from_secs(1), start, 0);
        for i in 0..plan.schedule.ticks() {
            let e = plan.schedule.event(i);
            while let Some(c) = churn.next_if(|c| c.due_us <= e.due_us) {
                self.until(start + Duration::from_micros(c.due_us)).await;
                let order = match c.action {
                    ChurnAction::Leave => SubOrder::Unsubscribe(c.room as usize),
                    ChurnAction::Join => SubOrder::Subscribe(c.room as usize),
                };
                let _ = self.subs[c.client as usize].send(order);
            }
            self.until(start + Duration::from_micros(e.due_us)).await;
            self.send(&e, start_wall_us);
            self.live_line(start);
        }
        for c in churn {
            self.until(start + Duration::from_micros(c.due_us)).await;
            let order = match c.action {
                ChurnAction::Leave => SubOrder::Unsubscribe(c.room as usize),
                ChurnAction::Join => SubOrder::Subscribe(c.room as usize),
            };
            let _ = self.subs[c.client as usize].send(order);
        }
        start.elapsed().as_secs_f64()
    }

    /// Once a second while publishing (unless quiet), as rtmc's room run:
    /// sent, acknowledged, refused, room deliveries per second, p99 so far.
    fn live_line(&mut self, start: Instant) {
        let now = Instant::now();
        if self.spec.quiet || now < self.live.0 {
            return;
        }
        let mut merged = new_histogram();
        for shard in self.shared.latency.iter() {
            if let Ok(h) = shard.lock() {
                merge_into(&mut merged, &h);
            }
        }
        let secs = now.duration_since(self.live.1).as_secs_f64().max(1e-3);
        let r = &self.report;
        eprintln!(
            "[{:>4.0}s {} rooms] sent {} acked {} refused {} deliv {:.0}/s p99 so far {:.1} ms",
            now.duration_since(start).as_secs_f64(),
            self.spec.wire.label(),
            r.published_rooms + r.published_direct,
            self.tally.acked,
            self.tally.refused_sends,
            (merged.len() - self.live.2) as f64 / secs,
            merged.value_at_quantile(0.99) as f64 / 1000.0,
        );
        self.live = (now + Duration::from_secs(1), now, merged.len());
    }

    /// Takes answers until `at`.
    async fn until(&mut self, at: Instant) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                a = self.answers.recv() => match a {
                    Some(a) => self.tally.absorb(a, self.kinds()),
                    None => return tokio::time::sleep_until(at).await,
                },
            }
        }
    }

    /// One tick: its channel's next `seq`, handed out before the publisher
    /// writes it (a subscription confirmed after this owes nothing older).
    fn send(&mut self, e: &PublishEvent, start_wall_us: u64) {
        let clients = self.spec.plan.assignment.memberships.len();
        let Some(c) = self.shared.map.channel_of(e.target) else {
            self.report.unsent += 1;
            return;
        };
        let sender = match e.target {
            Target::Room(_) => {
                self.report.published_rooms += 1;
                clients + self.shared.map.channels[c].publisher
            }
            Target::Direct { from, .. } => {
                self.report.published_direct += 1;
                from as usize
            }
        };
        self.seqs[c] += 1;
        let seq = self.seqs[c];
        self.shared.counters.dispatched[c].store(seq, Ordering::SeqCst);
        let sent_at_us = start_wall_us + e.due_us;
        let payload = room_payload(&RoomMessage {
            room: &self.shared.map.channels[c].room,
            seq,
            message_id: message_id(MessageOrigin {
                run_id: self.spec.run_id,
                publisher: sender as u32,
                publisher_seq: e.index,
            }),
            from: format!("{}-{sender}", self.spec.user_prefix),
            body_bytes: e.body_bytes,
            sent_at_us,
        });
        let order = PubOrder {
            channel: c,
            seq,
            payload,
        };
        if self.pubs[self.shared.map.channels[c].publisher]
            .send(order)
            .is_err()
        {
            self.report.unsent += 1;
        }
    }

    /// Waits for every publish's answer and every churn confirmation.
    async fn await_answers(&mut self) {
        let r = &self.report;
        let sent = r.published_rooms + r.published_direct - r.unsent;
        let churn = self.spec.plan.churn.len() as u64;
        let before = self.tally.sub_refused();
        let deadline = Instant::now() + self.spec.drain_timeout;
        self.wait_for(deadline, |t| {
            t.acked + t.refused_sends >= sent
                && t.churn_left + t.churn_joined + t.sub_refused() - before >= churn
        })
        .await;
        self.report.unanswered = sent.saturating_sub(self.tally.acked + self.tally.refused_sends);
    }

    /// Hands every subscriber the heads and collects what each settled.
    async fn drain(&mut self) -> Vec<Settled> {
        for h in self.pub_handles.drain(..) {
            h.abort();
        }
        self.pubs.clear();
        let heads: HashMap<String, u64> = self
            .shared
            .map
            .channels
            .iter()
            .zip(&self.seqs)
            .map(|(ch, &n)| (ch.room.to_string(), n))
            .collect();
        let heads = Arc::new(heads);
        let deadline = Instant::now() + self.spec.drain_timeout;
        for s in &self.subs {
            let _ = s.send(SubOrder::Drain {
                heads: heads.clone(),
                deadline,
            });
        }
        let mut settled = Vec::with_capacity(self.sub_handles.len());
        for h in std::mem::take(&mut self.sub_handles) {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline + Duration::from_secs(5), h).await {
                Ok(Ok(Some(s))) => settled.push(s),
                Ok(_) => {}
                Err(_) => abort.abort(),
            }
        }
        while let Ok(a) = self.answers.try_recv() {
            self.tally.absorb(a, self.kinds());
        }
        settled
    }

    /// The report, in the shape of rtmc's room run.
    fn finish(self, settled: Vec<Settled>, publish_secs: f64) -> RoomsOutcome {
        let a = &self.spec.plan.assignment;
        let t = self.tally;
        let mut latency = new_histogram();
        for shard in self.shared.latency.iter() {
            if let Ok(h) = shard.lock() {
                merge_into(&mut latency, &h);
            }
        }
        let mut sizes = a.sizes.clone();
        sizes.sort_unstable();
        let conns = self.subs.len() + self.shared.map.publishers;
        let mut r = self.report;
        r.seed = self.spec.plan.seed;
        r.clients = a.memberships.len();
        r.publishers = self.shared.map.publishers;
        r.rooms = a.sizes.len();
        r.memberships = a.memberships.iter().map(|m| m.len() as u64).sum();
        r.room_size_min = sizes.first().copied().unwrap_or(0);
        r.room_size_median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
        r.room_size_max = sizes.last().copied().unwrap_or(0);
        r.rate_per_sec = self.spec.rate_per_sec;
        r.publish_secs = publish_secs;
        r.acked = t.acked;
        r.refused = t.refused;
        r.login_failures = conns.saturating_sub(t.connected);
        r.login_error_samples = t.samples;
        r.room_command_refusals = t.sub_refusals;
        // Nothing to create on a peer: a room is a channel name.
        r.rooms_created = a.sizes.len();
        r.initial_joins = t.initial_rooms;
        r.churn_planned = self.spec.plan.churn.len();
        r.churn_left = t.churn_left;
        r.churn_joined = t.churn_joined;
        r.disconnects = t.disconnects;
        r.incomplete = settled.iter().filter(|s| !s.complete).count()
            + self
                .subs
                .len()
                .saturating_sub(settled.len() + t.connect_failed);
        r.bad_frames = settled.iter().map(|s| s.bad_frames).sum();
        r.unasked_left = settled.iter().map(|s| s.unasked_left).sum();
        r.latency = LatencySummary::of(&latency);
        r.accounting = RoomAccounting::of(settled.into_iter().map(|s| s.rooms));
        RoomsOutcome { report: r, latency }
    }
}

/// Subscriber `i`'s task, connecting at `at`: its order channel and handle.
fn spawn_sub(
    i: usize,
    at: Instant,
    spec: &PeerRoomRun<'_>,
    sources: Arc<Vec<IpAddr>>,
    shared: Shared,
) -> (mpsc::UnboundedSender<SubOrder>, JoinHandle<Option<Settled>>) {
    let (orders, rx) = mpsc::unbounded_channel();
    let (addr, timeout) = (spec.addr, spec.connect_timeout);
    let handle = tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let inbox = shared.inbox(i);
        let dialled = dial(shared.wire, addr, &sources, i, &inbox);
        let dialled = tokio::time::timeout(timeout, dialled).await;
        let (reader, writer) = connected(&shared, dialled)?;
        let sub = PeerSub {
            leaving: Vec::new(),
            rejoins: Vec::new(),
            consumers: 0,
            durables: HashMap::new(),
            inbox,
            index: i,
            shared,
            reader,
            writer,
            buf: BytesMut::with_capacity(8 * 1024),
            ledger: MembershipLedger::new(),
            pending: VecDeque::new(),
            drain: None,
            bad_frames: 0,
            batch_us: Vec::with_capacity(64),
            out: Vec::new(),
        };
        Some(sub.run(rx).await)
    });
    (orders, handle)
}

/// Publisher connection `i`'s task, connecting at `at`.
fn spawn_pub(
    i: usize,
    at: Instant,
    spec: &PeerRoomRun<'_>,
    sources: Arc<Vec<IpAddr>>,
    shared: Shared,
) -> (mpsc::UnboundedSender<PubOrder>, JoinHandle<()>) {
    let (orders, rx) = mpsc::unbounded_channel();
    let (addr, timeout) = (spec.addr, spec.connect_timeout);
    let handle = tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let inbox = shared.inbox(i);
        let dialled = dial(shared.wire, addr, &sources, i, &inbox);
        let dialled = tokio::time::timeout(timeout, dialled).await;
        let Some((reader, writer)) = connected(&shared, dialled) else {
            return;
        };
        let publisher = PeerPub {
            inbox,
            shared,
            reader,
            writer,
            buf: BytesMut::with_capacity(8 * 1024),
            in_flight: VecDeque::new(),
        };
        publisher.run(rx).await;
    });
    (orders, handle)
}

/// Tells the driver how a dial went; the halves when it worked.
fn connected<T>(
    shared: &Shared,
    dialled: Result<Result<T, String>, tokio::time::error::Elapsed>,
) -> Option<T> {
    let answer = match dialled {
        Ok(Ok(halves)) => {
            let _ = shared.events.send(PeerAnswer::Connected);
            return Some(halves);
        }
        Ok(Err(e)) => PeerAnswer::ConnectFailed(e),
        Err(_) => PeerAnswer::ConnectFailed("connect timed out".into()),
    };
    let _ = shared.events.send(answer);
    None
}

/// One room message as a peer carries it.
pub struct RoomMessage<'a> {
    /// The room id the broadcast names.
    pub room: &'a str,
    /// The room's sequence number, stamped by its one publisher.
    pub seq: u64,
    /// rtmc's message id scheme: `lg<run>-<sender>-<tick>`.
    pub message_id: String,
    /// The sender as on rtmc: the room's owner or the direct message's client.
    pub from: String,
    /// Body size.
    pub body_bytes: usize,
    /// The intended send time, µs since the epoch.
    pub sent_at_us: u64,
}

/// The payload: byte for byte the room broadcast rtmc delivers for it.
pub fn room_payload(m: &RoomMessage<'_>) -> Vec<u8> {
    rtmc::protocol::ServerFrame::Broadcast(rtmc::protocol::BroadcastFrame {
        seq: m.seq,
        message_id: m.message_id.clone(),
        from: m.from.clone(),
        body: "x".repeat(m.body_bytes),
        received_at_us: m.sent_at_us,
        sent_at_us: m.sent_at_us,
        room: Some(m.room.to_owned()),
    })
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_a_room_broadcast_the_byte_scan_reads() {
        let p = room_payload(&RoomMessage {
            room: "dm:lg-1:lg-2",
            seq: 7,
            message_id: "lg0000002a-3-9".into(),
            from: "lg-3".into(),
            body_bytes: 5,
            sent_at_us: 1_700_000_000_000_000,
        });
        let (b, room) = parse_room_broadcast(&p).expect("the byte scan reads it");
        assert_eq!((b.seq, b.sent_at_us), (7, 1_700_000_000_000_000));
        assert_eq!(room, Some(&b"dm:lg-1:lg-2"[..]));
        let o = b.origin.expect("a loadgen message id");
        assert_eq!((o.run_id, o.publisher, o.publisher_seq), (42, 3, 9));
    }

    #[test]
    fn both_wires_read_messages_confirmations_and_refusals() {
        let mut redis = Vec::new();
        redis.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$6\r\nroom.a\r\n:1\r\n");
        redis.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n$6\r\nroom.a\r\n$2\r\nhi\r\n");
        redis.extend_from_slice(b":3\r\n-ERR no\r\n");
        let mut nats = Vec::new();
        nats.extend_from_slice(b"INFO {}\r\nPONG\r\nMSG room.a 1 2\r\nhi\r\nPING\r\n-ERR 'no'\r\n");
        for (wire, buf, want) in [
            (PeerWire::RedisPubSub, &redis, "C M C R"),
            (PeerWire::NatsCore, &nats, "O C M P R"),
        ] {
            let mut at = 0;
            let mut seen = Vec::new();
            while let Some((item, next)) = wire.next(buf, at).unwrap() {
                seen.push(match item {
                    Item::Message(p) => {
                        assert_eq!(p, b"hi");
                        "M"
                    }
                    Item::Confirm => "C",
                    Item::Refused(_) => "R",
                    Item::Ping => "P",
                    Item::Other => "O",
                });
                at = next;
            }
            assert_eq!(seen.join(" "), want, "{wire:?}");
            assert_eq!(at, buf.len());
        }
    }

    #[test]
    fn jetstream_reads_api_answers_on_its_inbox_and_deliveries_elsewhere() {
        let mut buf = Vec::new();
        let ack = br#"{"stream":"S","seq":1}"#;
        let err = br#"{"error":{"code":404}}"#;
        for (sid, payload) in [(INBOX_SID, &ack[..]), (INBOX_SID, &err[..]), (5, b"hi")] {
            buf.extend_from_slice(format!("MSG x {sid} {}\r\n", payload.len()).as_bytes());
            buf.extend_from_slice(payload);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"PONG\r\n");
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((item, next)) = PeerWire::JetStream.next(&buf, at).unwrap() {
            seen.push(match item {
                Item::Confirm => "C",
                Item::Refused(_) => "R",
                Item::Message(p) if p == b"hi" => "M",
                _ => "O",
            });
            at = next;
        }
        assert_eq!(seen, ["C", "R", "M", "O"]);
        let req = consumer_create("S", "d1", "lgd.1", "room.a");
        let v: serde_json::Value = serde_json::from_slice(&req).unwrap();
        assert_eq!(v["stream_name"], "S");
        let c = &v["config"];
        assert_eq!(
            (
                &c["durable_name"],
                &c["deliver_subject"],
                &c["filter_subject"]
            ),
            (&"d1".into(), &"lgd.1".into(), &"room.a".into())
        );
        assert_eq!(
            c["deliver_policy"], "new",
            "a membership owes what comes after it"
        );
        assert_eq!(c["ack_policy"], "none");
    }

    #[test]
    fn each_command_is_confirmable() {
        let mut out = Vec::new();
        PeerWire::NatsCore.subscribe(&mut out, "room.a", 3);
        PeerWire::NatsCore.unsubscribe(&mut out, "room.a", 3);
        PeerWire::NatsCore.publish(&mut out, "room.a", "_INBOX.x", b"hi");
        assert_eq!(
            out,
            b"SUB room.a 3\r\nPING\r\nUNSUB 3\r\nPING\r\nPUB room.a 2\r\nhi\r\nPING\r\n"
        );
        let mut out = Vec::new();
        PeerWire::RedisPubSub.unsubscribe(&mut out, "room.a", 3);
        assert_eq!(out, b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$6\r\nroom.a\r\n");
    }
}
