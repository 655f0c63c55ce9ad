//! RabbitMQ: the durable topology and a publisher that only reports success
//! once the broker confirmed the message. A broker that is down or slow gives
//! a bounded, explicit failure, never a hang; a publisher that already awaits
//! `rabbitmq.max_inflight_publishes` confirms refuses the next message at once
//! (admission control), so an overload is answered, not queued. With
//! several broker nodes (`rabbitmq.urls`, a cluster), publishers and the
//! consumer connect to one node at a time and move on to the next
//! ([`BrokerAddresses`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{Config, QueueType, RabbitConfig, RoomsConfig};
use crate::room::{shard_of, RoomId};
use crate::secret::Secret;

/// A message as it travels through RabbitMQ, before it has a sequence number.
/// Its JSON is, byte for byte, the tail of the `broadcast` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMessage {
    pub message_id: String,
    pub from: String,
    pub body: String,
    /// The taking server's or gateway's receive time, by its own clock.
    #[serde(default)]
    pub received_at_us: u64,
    /// The sender's claimed send time (its field only; see [`crate::protocol::BroadcastFrame`]).
    pub sent_at_us: u64,
    /// The room it is posted to; absent for the lobby (whose messages and
    /// broadcasts never carry the field, byte for byte as in protocol v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// A message id is 1–128 printable ASCII characters.
pub fn valid_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Bytes a `broadcast` frame adds around the message JSON:
/// `{"command":"broadcast","seq":<20 digits>,` minus the brace it replaces.
pub const BROADCAST_OVERHEAD_BYTES: usize = 48;

/// The one rule for empty messages, the same over TCP, HTTP and in the
/// terminal client: a body must hold something besides whitespace.
pub const EMPTY_BODY_RULE: &str = "body must not be empty or only whitespace";

impl PublishedMessage {
    /// Checks the message against the limits every hop enforces: a body
    /// that is not blank and not oversized, the id shape, a sender that is a
    /// user id or `service:<name>` (see [`crate::identity::valid_sender`]), and that its `broadcast` frame —
    /// after JSON escaping, which can grow a body sixfold — fits a frame.
    pub fn check_limits(
        &self,
        max_body_bytes: usize,
        max_frame_bytes: usize,
    ) -> Result<(), String> {
        if !valid_message_id(&self.message_id) {
            return Err("message_id must be 1-128 printable ASCII characters".into());
        }
        if !crate::identity::valid_sender(&self.from) {
            return Err(
                "from must be a user id or `service:<name>` (1-128 bytes each, no other `:`, no control characters)"
                    .into(),
            );
        }
        if self.body.trim().is_empty() {
            return Err(EMPTY_BODY_RULE.into());
        }
        if let Some(room) = &self.room {
            let room = RoomId::parse(room).map_err(|e| e.to_string())?;
            if room.is_lobby() {
                return Err("a lobby message carries no `room` field".into());
            }
        }
        if self.body.len() > max_body_bytes {
            return Err(format!("body exceeds {max_body_bytes} bytes"));
        }
        let encoded = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if encoded.saturating_add(BROADCAST_OVERHEAD_BYTES) > max_frame_bytes {
            return Err(format!(
                "the escaped message ({encoded} bytes) would not fit a {max_frame_bytes}-byte frame"
            ));
        }
        Ok(())
    }

    /// The message's JSON without its opening brace: what a `broadcast`
    /// frame's JSON continues with after `{"command":"broadcast","seq":N,`.
    pub fn broadcast_tail(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec(self).expect("messages always serialize");
        json.remove(0);
        json
    }

    /// The complete `broadcast` JSON of the message under `seq` (no length
    /// prefix): the same bytes the append scripts store.
    pub fn broadcast_json(&self, seq: u64) -> Vec<u8> {
        let mut json = format!(r#"{{"command":"broadcast","seq":{seq},"#).into_bytes();
        json.extend(self.broadcast_tail());
        json
    }
}

/// The queue that carries the messages of rooms in shard `shard`:
/// `<rabbitmq.queue>.s<shard>`.
pub fn shard_queue(cfg: &RabbitConfig, shard: u32) -> String {
    format!("{}.s{shard}", cfg.queue)
}

/// Why a publish did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unreachable: {0}")]
    Unavailable(String),
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    /// Admission control: `bound` confirms were awaited already; the
    /// message was not published. Retrying later may succeed.
    #[error("overloaded: {bound} messages already await the broker's confirm; not published")]
    Overloaded { bound: usize },
}

/// AMQP delivery mode for messages that survive a broker restart.
const PERSISTENT: u8 = 2;

/// Declares the durable message queue, the `room_shards` shard queues and
/// the dead-letter queue, all of `rabbitmq.queue_type`.
pub async fn declare_topology(
    channel: &Channel,
    cfg: &RabbitConfig,
    room_shards: u32,
) -> Result<(), lapin::Error> {
    // Classic is declared without the argument, as before it existed, so a
    // queue an older version declared stays equivalent.
    let mut args = FieldTable::default();
    if cfg.queue_type == QueueType::Quorum {
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(cfg.queue_type.as_str().into()),
        );
    }
    let shard_queues = (0..room_shards).map(|k| shard_queue(cfg, k));
    let queues = [cfg.queue.clone(), cfg.dead_letter_queue.clone()]
        .into_iter()
        .chain(shard_queues);
    for queue in queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args.clone(),
            )
            .await?;
    }
    Ok(())
}

/// Which broker node a client tries first: the one it is connected to
/// while that works, the next one in the list once a connect to it failed,
/// was abandoned (timed out) or its connection was lost. Pure bookkeeping,
/// shared by the clients of one [`BrokerAddresses`].
#[derive(Debug)]
pub struct NodeRotation {
    nodes: usize,
    /// Index of the node the next connect starts with.
    first: AtomicUsize,
}

impl NodeRotation {
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes: nodes.max(1),
            first: AtomicUsize::new(0),
        }
    }

    /// Every node once, starting with the preferred one.
    pub fn in_turn(&self) -> impl Iterator<Item = usize> {
        let (first, nodes) = (self.first.load(Ordering::Relaxed), self.nodes);
        (0..nodes).map(move |k| (first + k) % nodes)
    }

    /// Before connecting to `node`: the next connect starts after it,
    /// unless this one succeeds. So an attempt cut off by a timeout (a node
    /// that hangs) moves the next one on.
    pub fn trying(&self, node: usize) {
        self.first.store((node + 1) % self.nodes, Ordering::Relaxed);
    }

    /// `node` took the connection: later connects start with it.
    pub fn connected(&self, node: usize) {
        self.first.store(node % self.nodes, Ordering::Relaxed);
    }

    /// The connection to `node` was lost: start with the next one, unless a
    /// connect since has already moved on.
    pub fn lost(&self, node: usize) {
        let _ = self.first.compare_exchange(
            node % self.nodes,
            (node + 1) % self.nodes,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// The broker's nodes (`rabbitmq.urls`, or `rabbitmq.url` alone) and which
/// to try first. Any node of a cluster serves every queue (a quorum queue's
/// leader may be elsewhere; the node forwards), so any of them will do.
#[derive(Debug)]
pub struct BrokerAddresses {
    urls: Vec<Secret<String>>,
    rotation: NodeRotation,
}

impl BrokerAddresses {
    pub fn new(cfg: &RabbitConfig) -> Self {
        let urls = cfg.node_urls();
        Self {
            rotation: NodeRotation::new(urls.len()),
            urls,
        }
    }

    /// `connect` to each node in turn until one succeeds; the connection
    /// and the index of its node, or the last node's error. Logs each
    /// failed node by index (a URL carries credentials).
    pub async fn connect_in_turn<T, F, Fut>(
        &self,
        mut connect: F,
    ) -> Result<(T, usize), lapin::Error>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    {
        let mut last_error = None;
        for node in self.rotation.in_turn() {
            self.rotation.trying(node);
            match connect(self.urls[node].expose_secret().clone()).await {
                Ok(connected) => {
                    self.rotation.connected(node);
                    return Ok((connected, node));
                }
                Err(e) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(node, error = %e, "broker node unreachable; trying the next");
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("there is at least one broker node"))
    }

    /// The connection to `node` was lost: the next connect starts elsewhere.
    pub fn lost(&self, node: usize) {
        self.rotation.lost(node);
    }
}

/// One connection to `url` with `rabbitmq.publisher_channels` channels (at
/// least one) in confirm mode and the topology declared, or why not.
async fn open_confirming(
    cfg: &RabbitConfig,
    room_shards: u32,
    url: &str,
) -> Result<Link, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let mut channels = Vec::with_capacity(cfg.publisher_channels.max(1));
    for _ in 0..cfg.publisher_channels.max(1) {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    declare_topology(&channels[0], cfg, room_shards).await?;
    Ok(Link {
        _conn: conn,
        channels,
        next: AtomicUsize::new(0),
        node: 0,
    })
}

/// A confirming connection to the first broker node that answers (see
/// [`BrokerAddresses`]), all bounded by `publish_timeout_ms`, its error as a
/// publish failure.
async fn connect_within(
    cfg: RabbitConfig,
    room_shards: u32,
    addresses: Arc<BrokerAddresses>,
) -> Result<Link, BrokerError> {
    let limit = Duration::from_millis(cfg.publish_timeout_ms);
    let connect = addresses.connect_in_turn(|url| {
        let cfg = &cfg;
        async move { open_confirming(cfg, room_shards, &url).await }
    });
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok((mut connected, node))) => {
            connected.node = node;
            Ok(connected)
        }
        Ok(Err(e)) => Err(BrokerError::Unavailable(e.to_string())),
        Err(_) => Err(BrokerError::Unavailable(format!(
            "no connection within {limit:?}"
        ))),
    }
}

/// One connection with a pool of confirming channels. A channel's confirms
/// are handled in order by one broker process, so publishes spread over
/// several channels are confirmed in parallel.
pub struct Link {
    /// Kept so the connection lives as long as its channels.
    _conn: Connection,
    channels: Vec<Channel>,
    /// Round robin over `channels`.
    next: AtomicUsize,
    /// Index of the broker node it is connected to.
    node: usize,
}

impl Link {
    /// The next channel of the pool, if every channel is still open (one
    /// that closed, say after a broker error, makes the link reconnect).
    fn pick(&self) -> Option<Channel> {
        if !self.channels.iter().all(|c| c.status().connected()) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        Some(self.channels[i].clone())
    }
}

/// The publisher's connection to the broker.
enum LinkState {
    /// No link; the next publish connects (after the back-off).
    Down,
    /// A connect in flight, in a task of its own, bounded by
    /// `publish_timeout_ms`. Publishes wait for it instead of starting
    /// another, and one that gives up leaves it running for the next.
    Connecting(JoinHandle<Result<Link, BrokerError>>),
    /// Connected, with channels in confirm mode.
    Up(Box<Link>),
}

/// Shared, lazily (re)connecting publisher with publisher confirms.
pub struct Publisher {
    cfg: RabbitConfig,
    /// `rooms.shards`: a room's messages go to its shard's queue.
    room_shards: u32,
    /// The broker's nodes and which one to connect to next.
    addresses: Arc<BrokerAddresses>,
    /// The link, or the one connect in flight.
    link: Mutex<LinkState>,
    /// When the last connect attempt failed: publishes fail fast until the back-off passed.
    last_failure: std::sync::Mutex<Option<Instant>>,
    /// Admission control: one permit per chat message awaiting its confirm.
    admission: Arc<Semaphore>,
}

/// A chat message admitted past the in-flight bound; dropping it frees the slot.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!("rtmc_publish_inflight").decrement(1.0);
    }
}

impl Publisher {
    /// A publisher for `cfg`'s broker, routing rooms over the default
    /// number of shards (`rooms.shards`' default); see [`Publisher::for_config`].
    pub fn new(cfg: RabbitConfig) -> Self {
        Self::with_room_shards(cfg, RoomsConfig::default().shards)
    }

    /// A publisher for the deployment `cfg` describes (broker and
    /// `rooms.shards`): what every component that publishes should use.
    pub fn for_config(cfg: &Config) -> Self {
        Self::with_room_shards(cfg.rabbitmq.clone(), cfg.rooms.shards)
    }

    /// A publisher whose room messages go to `room_shards` shard queues.
    pub fn with_room_shards(cfg: RabbitConfig, room_shards: u32) -> Self {
        Self {
            admission: Arc::new(Semaphore::new(cfg.max_inflight_publishes.max(1))),
            addresses: Arc::new(BrokerAddresses::new(&cfg)),
            room_shards: room_shards.max(1),
            cfg,
            link: Mutex::new(LinkState::Down),
            last_failure: std::sync::Mutex::new(None),
        }
    }

    /// Takes one of the `max_inflight_publishes` slots, or refuses at once
    /// with [`BrokerError::Overloaded`] (counted in
    /// `rtmc_publish_overloaded_total`). Never waits.
    pub fn admit(&self) -> Result<Admitted, BrokerError> {
        match self.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("rtmc_publish_inflight").increment(1.0);
                Ok(Admitted { _permit: permit })
            }
            Err(_) => {
                metrics::counter!("rtmc_publish_overloaded_total").increment(1);
                Err(BrokerError::Overloaded {
                    bound: self.cfg.max_inflight_publishes.max(1),
                })
            }
        }
    }

    fn in_backoff(&self) -> bool {
        let last = *self.last_failure.lock().expect("not poisoned");
        last.is_some_and(|t| t.elapsed() < Duration::from_millis(self.cfg.reconnect_backoff_ms))
    }

    /// The confirmed channel: the open link's, or one from the connect in
    /// flight, or from a new connect. At most one connect runs at a time:
    /// when each publish started its own and abandoned it at its timeout, a
    /// 10 s broker stall (`docker pause`) left ~65 half-open AMQP handshakes
    /// that all completed at the thaw, and recovery took 5–7 s.
    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut link = self.link.lock().await;
        if let LinkState::Up(l) = &*link {
            if let Some(channel) = l.pick() {
                return Ok(channel);
            }
            self.addresses.lost(l.node);
            *link = LinkState::Down;
        }
        if let LinkState::Down = &*link {
            if self.in_backoff() {
                return Err(BrokerError::Unavailable("reconnect back-off".into()));
            }
            let connect =
                connect_within(self.cfg.clone(), self.room_shards, self.addresses.clone());
            *link = LinkState::Connecting(tokio::spawn(connect));
        }
        let LinkState::Connecting(connecting) = &mut *link else {
            unreachable!("the link is connecting by now");
        };
        // Cancel-safe: a publish that gives up here leaves the handle in place.
        let connected = connecting.await;
        *link = LinkState::Down;
        match connected {
            Ok(Ok(connected)) => {
                *self.last_failure.lock().expect("not poisoned") = None;
                let channel = connected.channels[0].clone();
                *link = LinkState::Up(Box::new(connected));
                metrics::counter!("rtmc_broker_connects_total").increment(1);
                Ok(channel)
            }
            Ok(Err(e)) => {
                *self.last_failure.lock().expect("not poisoned") = Some(Instant::now());
                Err(e)
            }
            Err(e) => {
                *self.last_failure.lock().expect("not poisoned") = Some(Instant::now());
                Err(BrokerError::Unavailable(format!("connect task: {e}")))
            }
        }
    }

    /// Forgets the open link after a failed publish, without waiting: when
    /// the lock is busy, another publish is connecting or taking a channel
    /// (which checks the link's health itself). Waiting here made a refusal
    /// take up to twice `publish_timeout_ms` behind a connect hung in a
    /// black hole. A connect in flight is kept: it is the next link.
    fn drop_link(&self) {
        if let Ok(mut link) = self.link.try_lock() {
            if let LinkState::Up(l) = &*link {
                self.addresses.lost(l.node);
                *link = LinkState::Down;
            }
        }
    }

    /// Publishes `payload` persistently to `queue` and waits for the broker's
    /// confirm, all within `publish_timeout_ms`.
    pub async fn publish_to(
        &self,
        queue: &str,
        payload: &[u8],
        headers: FieldTable,
    ) -> Result<(), BrokerError> {
        let limit = Duration::from_millis(self.cfg.publish_timeout_ms);
        let attempt = async {
            let channel = self.channel().await?;
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default()
                        .with_delivery_mode(PERSISTENT)
                        .with_content_type("application/json".into())
                        .with_headers(headers),
                )
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            if confirm.is_ack() {
                Ok(())
            } else {
                Err(BrokerError::Nacked)
            }
        };
        let result = match tokio::time::timeout(limit, attempt).await {
            Ok(r) => r,
            Err(_) => Err(BrokerError::Timeout(limit)),
        };
        match &result {
            Ok(()) => metrics::counter!("rtmc_publish_confirmed_total").increment(1),
            Err(e) => {
                metrics::counter!("rtmc_publish_failed_total").increment(1);
                tracing::warn!(error = %e, "publish failed");
                // A nack drops the link too: after the leader of a quorum
                // queue died, a channel on a surviving node kept nacking
                // every publish for as long as we looked (10 s, RabbitMQ
                // 3.10) while a new link published at once.
                self.drop_link();
            }
        }
        result
    }

    /// The queue a message goes to: the lobby's (`rabbitmq.queue`) without
    /// a room, else its room's shard queue.
    pub fn queue_of(&self, msg: &PublishedMessage) -> String {
        match &msg.room {
            None => self.cfg.queue.clone(),
            Some(room) => shard_queue(&self.cfg, shard_of(room, self.room_shards)),
        }
    }

    /// Publishes a chat message to its queue ([`Publisher::queue_of`]), if
    /// admitted (see [`Publisher::admit`]): an overload is refused before
    /// anything is sent.
    pub async fn publish(&self, msg: &PublishedMessage) -> Result<(), BrokerError> {
        let _admitted = self.admit()?;
        let payload = serde_json::to_vec(msg).expect("messages always serialize");
        let started = Instant::now();
        let done = self
            .publish_to(&self.queue_of(msg), &payload, FieldTable::default())
            .await;
        metrics::histogram!("rtmc_publish_confirm_seconds").record(started.elapsed().as_secs_f64());
        done
    }

    /// Publishes a rejected payload to the dead-letter queue with its reason.
    pub async fn dead_letter(&self, payload: &[u8], reason: &str) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-rtmc-reason"),
            AMQPValue::LongString(reason.into()),
        );
        self.publish_to(&self.cfg.dead_letter_queue, payload, headers)
            .await
    }

    /// Opens the confirmed channel unless it is open already (readiness):
    /// this connects, within the same reconnect back-off as a publish.
    pub async fn ensure_connected(&self) -> Result<(), BrokerError> {
        self.channel().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::NodeRotation;

    fn order(rotation: &NodeRotation) -> Vec<usize> {
        rotation.in_turn().collect()
    }

    #[test]
    fn a_failed_or_abandoned_connect_moves_on_to_the_next_node() {
        let rotation = NodeRotation::new(3);
        assert_eq!(order(&rotation), [0, 1, 2]);
        rotation.trying(0);
        assert_eq!(order(&rotation), [1, 2, 0], "node 0 failed or hung");
        rotation.trying(1);
        rotation.trying(2);
        assert_eq!(order(&rotation), [0, 1, 2], "wraps around");
    }

    #[test]
    fn the_node_that_took_the_connection_stays_first() {
        let rotation = NodeRotation::new(3);
        rotation.trying(0);
        rotation.trying(1);
        rotation.connected(1);
        assert_eq!(order(&rotation), [1, 2, 0]);
    }

    #[test]
    fn a_lost_connection_moves_on_once() {
        let rotation = NodeRotation::new(3);
        rotation.connected(2);
        rotation.lost(2);
        assert_eq!(order(&rotation), [0, 1, 2]);
        // A second report of the same loss (publisher and channel check)
        // does not skip a node.
        rotation.lost(2);
        assert_eq!(order(&rotation), [0, 1, 2]);
    }

    #[test]
    fn a_single_node_is_always_the_one() {
        let rotation = NodeRotation::new(1);
        rotation.trying(0);
        rotation.lost(0);
        assert_eq!(order(&rotation), [0]);
        assert_eq!(order(&NodeRotation::new(0)), [0], "no node counts as one");
    }
}
