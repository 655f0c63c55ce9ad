//! The consumer: takes messages from RabbitMQ (manual acks, bounded
//! prefetch), validates them, dead-letters the malformed ones with their
//! reason, appends the valid ones to the Redis stream (dedupe + sequence
//! numbers in one atomic script) and only then acks. A Redis outage stalls
//! the batch with exponential back-off; nothing is nacked in a hot loop.
//! It consumes the lobby's queue and every room shard's queue, a channel
//! each; a room message is appended to its room's shard (its room sequence,
//! its room log and the shard stream, in one script per shard and batch).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::broker::{declare_topology, shard_queue, BrokerAddresses, PublishedMessage, Publisher};
use crate::config::Config;
use crate::error::StartError;
use crate::room::shard_of;
use crate::stream::{self, Appended, RedisKeys, RoomItem};

#[cfg(feature = "test-consumer-drop")]
mod test_drop;

/// Why a message was rejected into the dead-letter queue.
/// Same limits as at the publishing edge (`server.max_body_bytes`,
/// `server.max_frame_bytes`): a message the edge accepted is never rejected here.
pub fn validate(
    raw: &[u8],
    max_body_bytes: usize,
    max_frame_bytes: usize,
) -> Result<PublishedMessage, String> {
    let mut msg: PublishedMessage =
        serde_json::from_slice(raw).map_err(|e| format!("not a valid message: {e}"))?;
    msg.check_limits(max_body_bytes, max_frame_bytes)?;
    // A message published without a receive time (by an older publisher)
    // gets the consumer's: every stored message carries a server's clock.
    if msg.received_at_us == 0 {
        msg.received_at_us = crate::protocol::now_us();
    }
    Ok(msg)
}

/// The message's JSON without its opening brace: what the append script
/// splices after `{"command":"broadcast","seq":N,`.
pub fn broadcast_tail(msg: &PublishedMessage) -> Vec<u8> {
    msg.broadcast_tail()
}

/// Consumes until `shutdown`, reconnecting to the broker with back-off: to
/// the next of `rabbitmq.urls` when a node refuses or the connection is lost.
/// The batch in hand when shutdown comes is finished and acked first.
pub async fn run(cfg: Arc<Config>, shutdown: CancellationToken) -> Result<(), StartError> {
    crate::telemetry::metrics();
    let (cfg, _relay) = crate::redis_ha::follow_master(cfg).await?;
    let redis_url = cfg.redis.url.expose_secret();
    let redis = stream::managed_connection(redis_url)
        .await
        .map_err(|e| StartError::connect("Redis", redis_url, e))?;
    let broker = crate::config::service_address(cfg.rabbitmq.url.expose_secret());
    let keys = RedisKeys::new(&cfg.redis.key_prefix);
    let dead_letters = Publisher::for_config(&cfg);
    let addresses = BrokerAddresses::new(&cfg.rabbitmq);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    if !shutdown.is_cancelled() {
        let attach = || consume(&cfg, &addresses, &redis, &keys, &dead_letters, &shutdown);
        let on_error = |e: &lapin::Error, _| {
            metrics::counter!("rtmc_consumer_broker_errors_total").increment(1);
            tracing::warn!(error = %e, "consumer: no connection to RabbitMQ at {broker}; reconnecting");
        };
        backoff.retry(&shutdown, attach, on_error).await;
    }
    tracing::info!("consumer stopped");
    Ok(())
}

/// The queues the consumer takes from: the lobby's, then every shard's.
fn consumed_queues(cfg: &Config) -> Vec<String> {
    std::iter::once(cfg.rabbitmq.queue.clone())
        .chain((0..cfg.rooms.shards).map(|k| shard_queue(&cfg.rabbitmq, k)))
        .collect()
}

/// One connection with a consuming channel per queue.
struct Attached {
    /// Kept so the connection lives as long as its channels.
    _conn: Connection,
    /// A channel and its consumer per queue of [`consumed_queues`].
    queues: Vec<(Channel, lapin::Consumer)>,
}

/// Consuming channels on the first broker node that answers, and the
/// index of that node. Each node gets `rabbitmq.publish_timeout_ms`: a
/// paused node (it accepts, then says nothing) moves the consumer on.
async fn open(
    cfg: &Config,
    addresses: &BrokerAddresses,
) -> Result<(Attached, usize), lapin::Error> {
    let limit = Duration::from_millis(cfg.rabbitmq.publish_timeout_ms);
    addresses
        .connect_in_turn(|url| async move {
            tokio::time::timeout(limit, open_on(cfg, &url))
                .await
                .unwrap_or_else(|_| Err(connect_timed_out(limit)))
        })
        .await
}

/// The error of a consumer connect abandoned at `limit`.
fn connect_timed_out(limit: Duration) -> lapin::Error {
    let e = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no consuming channel within {limit:?}"),
    );
    lapin::ErrorKind::IOError(Arc::new(e)).into()
}

async fn open_on(cfg: &Config, url: &str) -> Result<Attached, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let mut queues = Vec::new();
    for (i, queue) in consumed_queues(cfg).into_iter().enumerate() {
        let channel = conn.create_channel().await?;
        if i == 0 {
            declare_topology(&channel, &cfg.rabbitmq, cfg.rooms.shards).await?;
        }
        channel
            .basic_qos(cfg.rabbitmq.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                format!("rtmc-consumer-{}-{queue}", cfg.node_id)
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        queues.push((channel, consumer));
    }
    Ok(Attached {
        _conn: conn,
        queues,
    })
}

/// Consumes every queue (a channel each, same prefetch and batching) until
/// shutdown, or until the broker fails on any of them.
async fn consume(
    cfg: &Config,
    addresses: &BrokerAddresses,
    redis: &redis::aio::ConnectionManager,
    keys: &RedisKeys,
    dead_letters: &Publisher,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let (attached, node) = open(cfg, addresses).await?;
    tracing::info!(queue = %cfg.rabbitmq.queue, shards = cfg.rooms.shards, node, "consumer attached");
    let loops = attached
        .queues
        .into_iter()
        .map(|(channel, consumer)| async move {
            consume_from(cfg, redis, keys, dead_letters, &channel, consumer, shutdown).await
        });
    let consumed = futures::future::try_join_all(loops).await.map(|_| ());
    if consumed.is_err() {
        addresses.lost(node);
    }
    consumed
}

/// Takes batches from `consumer` and processes them until shutdown (`Ok`)
/// or the broker fails.
async fn consume_from(
    cfg: &Config,
    redis: &redis::aio::ConnectionManager,
    keys: &RedisKeys,
    dead_letters: &Publisher,
    channel: &Channel,
    mut consumer: lapin::Consumer,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            d = consumer.next() => d,
        };
        let Some(first) = first else {
            return Err(lapin::Error::from(
                lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
            ));
        };
        let mut batch = vec![first?];
        while batch.len() < cfg.consumer.batch_max {
            match futures::FutureExt::now_or_never(consumer.next()) {
                Some(Some(d)) => batch.push(d?),
                _ => break,
            }
        }
        process_batch(cfg, redis, keys, dead_letters, channel, batch, shutdown).await?;
    }
}

/// A batch's valid messages, sorted by where they are appended.
#[derive(Default)]
struct Sorted {
    /// Lobby messages: (message id, tail) for the global stream.
    lobby: Vec<(String, Vec<u8>)>,
    /// Room messages by shard.
    rooms: BTreeMap<u32, Vec<RoomItem>>,
}

impl Sorted {
    fn push(&mut self, msg: PublishedMessage, shards: u32) {
        let tail = broadcast_tail(&msg);
        match msg.room {
            None => self.lobby.push((msg.message_id, tail)),
            Some(room) => self
                .rooms
                .entry(shard_of(&room, shards))
                .or_default()
                .push(RoomItem {
                    message_id: msg.message_id,
                    room,
                    tail,
                }),
        }
    }
}

/// Dead-letters the malformed deliveries of a batch, appends the valid ones
/// (lobby messages to the stream, room messages to their shard), then acks
/// the whole batch. Returns early, acking nothing, when shutdown interrupts
/// a retry: the deliveries return to the queue.
async fn process_batch(
    cfg: &Config,
    redis: &redis::aio::ConnectionManager,
    keys: &RedisKeys,
    dead_letters: &Publisher,
    channel: &Channel,
    batch: Vec<Delivery>,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let last_tag = batch.last().map(|d| d.delivery_tag).unwrap_or(0);
    let mut sorted = Sorted::default();
    let redelivered = batch.iter().filter(|d| d.redelivered).count() as u64;
    metrics::counter!("rtmc_consumer_redelivered_total").increment(redelivered);
    metrics::counter!("rtmc_consumer_received_total").increment(batch.len() as u64);
    let limits = &cfg.server;
    for d in &batch {
        match validate(&d.data, limits.max_body_bytes, limits.max_frame_bytes) {
            Ok(msg) => sorted.push(msg, cfg.rooms.shards),
            Err(reason) => {
                tracing::warn!(%reason, "dead-lettering a malformed message");
                let backoff = retry_backoff(cfg);
                if !dead_letter_confirmed(dead_letters, &d.data, &reason, backoff, shutdown).await {
                    return Ok(());
                }
            }
        }
    }
    #[cfg(feature = "test-consumer-drop")]
    test_drop::drop_configured(&cfg.consumer, &mut sorted.lobby);
    let ttl_secs = cfg.redis.dedupe_ttl_secs;
    if !sorted.lobby.is_empty() {
        let append = || {
            let mut conn = redis.clone();
            let items = &sorted.lobby;
            async move {
                let mark = crate::redis_ha::mark_connection(&mut conn, &cfg.redis).await?;
                let appended = stream::append_batch(&mut conn, keys, ttl_secs, items).await?;
                crate::redis_ha::replicas_acked(&mut conn, &cfg.redis, &mark).await?;
                Ok(appended)
            }
        };
        if !append_stored(append, retry_backoff(cfg), shutdown).await {
            return Ok(());
        }
    }
    for (&shard, items) in &sorted.rooms {
        let append = || {
            let mut conn = redis.clone();
            async move {
                let mark = crate::redis_ha::mark_connection(&mut conn, &cfg.redis).await?;
                let appended =
                    stream::append_room_batch(&mut conn, keys, shard, ttl_secs, items).await?;
                crate::redis_ha::replicas_acked(&mut conn, &cfg.redis, &mark).await?;
                Ok(appended)
            }
        };
        if !append_stored(append, retry_backoff(cfg), shutdown).await {
            return Ok(());
        }
    }
    channel
        .basic_ack(last_tag, BasicAckOptions { multiple: true })
        .await?;
    metrics::counter!("rtmc_consumer_acks_total").increment(batch.len() as u64);
    Ok(())
}

/// The back-off between retries of one dead letter or one append.
fn retry_backoff(cfg: &Config) -> Backoff {
    Backoff::new(
        Duration::from_millis(cfg.consumer.retry_initial_ms),
        Duration::from_millis(cfg.consumer.retry_max_ms),
    )
}

/// Publishes a malformed delivery to the dead-letter queue with its reason,
/// retrying until the broker confirms it: the dead letter must be confirmed
/// before the original is acked. False when shutdown came first; the
/// original then stays unacked and returns to the queue.
async fn dead_letter_confirmed(
    dead_letters: &Publisher,
    raw: &[u8],
    reason: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
) -> bool {
    let publish = || dead_letters.dead_letter(raw, reason);
    let on_error = |e: &crate::broker::BrokerError, _| {
        tracing::warn!(error = %e, "dead-letter publish failed; retrying");
    };
    if backoff.retry(shutdown, publish, on_error).await.is_none() {
        tracing::warn!("shutdown before dead letter was confirmed; message stays unacked");
        return false;
    }
    metrics::counter!("rtmc_consumer_dead_letters_total").increment(1);
    true
}

/// Runs `append` (one script: the lobby's batch or one shard's; with
/// `redis.min_replicas_acked`, followed by the `WAIT` for that many
/// replicas), retrying with back-off while Redis is unavailable or too few
/// replicas acknowledged (never a nack loop; a retry is deduplicated). False when
/// shutdown came first; the unacked deliveries then return to the queue for
/// the next consumer.
async fn append_stored<F, Fut>(
    append: F,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<Vec<Appended>>>,
{
    let on_error = |e: &redis::RedisError, retry_in: Duration| {
        metrics::counter!("rtmc_consumer_redis_retries_total").increment(1);
        tracing::warn!(error = %e, retry_in = ?retry_in, "redis append failed; backing off");
    };
    let started = std::time::Instant::now();
    let Some(outcomes) = backoff.retry(shutdown, append, on_error).await else {
        return false;
    };
    let dups = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Duplicate(_)))
        .count() as u64;
    metrics::counter!("rtmc_consumer_appended_total").increment(outcomes.len() as u64 - dups);
    metrics::counter!("rtmc_consumer_duplicates_total").increment(dups);
    metrics::histogram!("rtmc_consumer_append_seconds").record(started.elapsed().as_secs_f64());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_splices_into_a_valid_broadcast() {
        let msg = PublishedMessage {
            message_id: "m1".into(),
            from: "alice".into(),
            body: "quote \" and \\ and \u{1F600}".into(),
            received_at_us: 43,
            sent_at_us: 42,
            room: None,
        };
        let mut frame = br#"{"command":"broadcast","seq":9,"#.to_vec();
        frame.extend(broadcast_tail(&msg));
        let parsed = crate::protocol::ServerFrame::parse(&frame).unwrap();
        let crate::protocol::ServerFrame::Broadcast(b) = parsed else {
            panic!("not a broadcast")
        };
        assert_eq!((b.seq, b.body.as_str()), (9, msg.body.as_str()));
    }

    #[test]
    fn rejects_malformed_messages_with_a_reason() {
        assert!(validate(b"{", 10, 1000)
            .unwrap_err()
            .contains("not a valid message"));
        let long = format!(
            r#"{{"message_id":"a","from":"b","body":"{}","sent_at_us":1}}"#,
            "x".repeat(11)
        );
        assert!(validate(long.as_bytes(), 10, 1000)
            .unwrap_err()
            .contains("body exceeds"));
        let no_id = br#"{"message_id":"","from":"b","body":"","sent_at_us":1}"#;
        assert!(validate(no_id, 10, 1000).is_err());
        // Ten control characters escape to sixty bytes: too big for a 100-byte frame.
        let ctl = r#"{"message_id":"a","from":"b","body":"\u0001\u0001\u0001\u0001\u0001\u0001\u0001\u0001\u0001\u0001","sent_at_us":1}"#;
        assert!(validate(ctl.as_bytes(), 10, 100)
            .unwrap_err()
            .contains("would not fit"));
    }

    /// A "broker" on loopback that hangs up on every connection, so every
    /// publish to it fails at once.
    async fn hanging_up_broker() -> crate::config::RabbitConfig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                drop(sock);
            }
        });
        crate::config::RabbitConfig {
            url: format!("amqp://guest:guest@{addr}/%2f").into(),
            publish_timeout_ms: 1_000,
            reconnect_backoff_ms: 0,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_broker_that_accepts_and_says_nothing_fails_the_connect_at_its_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let mut cfg = Config::default();
        cfg.rabbitmq.url = format!("amqp://guest:guest@{addr}/%2f").into();
        cfg.rabbitmq.publish_timeout_ms = 300;
        let addresses = BrokerAddresses::new(&cfg.rabbitmq);
        let opened = tokio::time::timeout(Duration::from_secs(10), open(&cfg, &addresses))
            .await
            .expect("the connect is bounded");
        let Err(e) = opened else {
            panic!("a silent broker gives no channel")
        };
        assert!(e.to_string().contains("no consuming channel"), "{e}");
    }

    #[tokio::test]
    async fn shutdown_during_a_dead_letter_retry_returns_promptly() {
        let dead_letters = Publisher::new(hanging_up_broker().await);
        // A retry delay far longer than the test: only shutdown can end it.
        let backoff = Backoff::new(Duration::from_secs(600), Duration::from_secs(600));
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.cancel();
        });
        let retried = dead_letter_confirmed(&dead_letters, b"{", "not JSON", backoff, &shutdown);
        let confirmed = tokio::time::timeout(Duration::from_secs(10), retried)
            .await
            .expect("shutdown ends the dead-letter retry within the publish timeout");
        assert!(
            !confirmed,
            "nothing was confirmed: the message stays unacked"
        );
    }
}
