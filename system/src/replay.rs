//! Replay for resume: the messages after a client's last sequence number, from
//! the Redis stream, or from PostgreSQL for what Redis has already trimmed.
//! (Named for what it does; "history" is the chaos checker's word for its
//! recorded operations.)

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::broker::PublishedMessage;
use crate::protocol::{encode_frame, BroadcastFrame, ServerFrame};
use crate::room::RoomId;
use crate::stream::{self, Delivery, RedisKeys, StreamEntry};

/// Why a replay could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{missing} messages after seq {after} are stored nowhere")]
    Missing { after: u64, missing: u64 },
    #[error("replay of {0} messages exceeds the limit of {1}")]
    TooLarge(u64, u64),
}

/// Entries XRANGE returns per round trip.
const REDIS_BATCH_MESSAGES: usize = 4096;

/// Which log a replay reads.
#[derive(Clone, Copy)]
enum Log<'a> {
    /// The lobby's: the global stream, then `messages`.
    Lobby,
    /// One room's: its room log, then `room_messages`.
    Room { shards: u32, room: &'a RoomId },
}

/// Every message with `after < seq <= up_to`, in order, framed for the wire.
pub async fn range(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
    after: u64,
    up_to: u64,
    max_messages: u64,
) -> Result<Vec<Delivery>, ReplayError> {
    log_range(redis, pg, keys, Log::Lobby, after, up_to, max_messages).await
}

/// Every message of `log` with `after < seq <= up_to`, at most
/// `max_messages`, from Redis, or from PostgreSQL for the head of the range
/// Redis has trimmed; then the gap check.
async fn log_range(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
    log: Log<'_>,
    after: u64,
    up_to: u64,
    max_messages: u64,
) -> Result<Vec<Delivery>, ReplayError> {
    if up_to <= after {
        return Ok(Vec::new());
    }
    if up_to - after > max_messages {
        return Err(ReplayError::TooLarge(up_to - after, max_messages));
    }
    let mut out = Vec::with_capacity((up_to - after) as usize);
    let first_in_redis = match log {
        Log::Lobby => stream::first_seq(redis, keys).await?,
        Log::Room { shards, room } => stream::room_first_seq(redis, keys, shards, room).await?,
    }
    .unwrap_or(u64::MAX);
    if first_in_redis > after + 1 {
        // The head of the range was trimmed from Redis: read it from PostgreSQL.
        let pg_up_to = up_to.min(first_in_redis.saturating_sub(1));
        match log {
            Log::Lobby => from_postgres(pg, after, pg_up_to, &mut out).await?,
            Log::Room { room, .. } => {
                room_from_postgres(pg, room, after, pg_up_to, &mut out).await?
            }
        }
    }
    let cursor = out.last().map(|d| d.seq).unwrap_or(after);
    from_redis(redis, keys, log, cursor, up_to, &mut out).await?;
    check_contiguous(&out, after, up_to)?;
    Ok(out)
}

/// Appends the stored messages with `after < seq <= up_to` from PostgreSQL.
async fn from_postgres(
    pg: &PgPool,
    after: u64,
    up_to: u64,
    out: &mut Vec<Delivery>,
) -> Result<(), ReplayError> {
    let rows: Vec<(i64, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT seq, message_id, sender, body, sent_at_us, received_at_us FROM messages WHERE seq > $1 AND seq <= $2 ORDER BY seq",
    )
    .bind(after as i64)
    .bind(up_to as i64)
    .fetch_all(pg)
    .await?;
    for (seq, message_id, from, body, sent_at_us, received_at_us) in rows {
        let f = ServerFrame::Broadcast(BroadcastFrame {
            room: None,
            seq: seq as u64,
            message_id,
            from,
            body,
            sent_at_us: sent_at_us as u64,
            received_at_us: received_at_us as u64,
        });
        out.push(Delivery {
            seq: seq as u64,
            frame: f.to_frame(),
        });
    }
    Ok(())
}

/// Appends the entries of `log` with `after < seq <= up_to` from Redis.
async fn from_redis(
    redis: &mut ConnectionManager,
    keys: &RedisKeys,
    log: Log<'_>,
    after: u64,
    up_to: u64,
    out: &mut Vec<Delivery>,
) -> Result<(), ReplayError> {
    let mut cursor = after;
    while cursor < up_to {
        let batch = match log {
            Log::Lobby => {
                stream::range_after(redis, keys, cursor, up_to, REDIS_BATCH_MESSAGES).await?
            }
            Log::Room { shards, room } => {
                stream::room_range_after(
                    redis,
                    keys,
                    shards,
                    room,
                    cursor,
                    up_to,
                    REDIS_BATCH_MESSAGES,
                )
                .await?
            }
        };
        let Some(last) = batch.last() else { break };
        cursor = last.seq;
        out.extend(batch.iter().map(StreamEntry::framed));
    }
    Ok(())
}

/// Every message of `room` with `after < seq <= up_to`, in order, framed for
/// the wire: from the room log, or from `room_messages` for what Redis has
/// trimmed; gap-checked like [`range`]. The frames are byte for byte the
/// live ones (they carry `room`).
#[allow(clippy::too_many_arguments)]
pub async fn room_range(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    after: u64,
    up_to: u64,
    max_messages: u64,
) -> Result<Vec<Delivery>, ReplayError> {
    let log = Log::Room { shards, room };
    log_range(redis, pg, keys, log, after, up_to, max_messages).await
}

/// Up to `limit` messages of `room` after `after_seq` (oldest first), up to
/// the room's head: a history page forwards. Ask for one more than you show
/// to know whether there are more.
pub async fn room_page(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    after_seq: u64,
    limit: u64,
) -> Result<Vec<Delivery>, ReplayError> {
    let head = stream::room_head(redis, keys, shards, room).await?;
    let up_to = head.min(after_seq.saturating_add(limit));
    room_range(redis, pg, keys, shards, room, after_seq, up_to, limit).await
}

/// Up to `limit` messages of `room` before `before_seq` (the newest of
/// them, oldest first): a history page backwards, "load older". `before_seq`
/// beyond the head means "the latest".
pub async fn room_page_before(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    before_seq: u64,
    limit: u64,
) -> Result<Vec<Delivery>, ReplayError> {
    let head = stream::room_head(redis, keys, shards, room).await?;
    let up_to = head.min(before_seq.saturating_sub(1));
    let after = up_to.saturating_sub(limit);
    room_range(redis, pg, keys, shards, room, after, up_to, limit).await
}

/// Appends `room`'s stored messages with `after < seq <= up_to` from
/// PostgreSQL, framed exactly as the consumer framed them.
async fn room_from_postgres(
    pg: &PgPool,
    room: &RoomId,
    after: u64,
    up_to: u64,
    out: &mut Vec<Delivery>,
) -> Result<(), ReplayError> {
    let rows: Vec<(i64, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT seq, message_id, sender, body, sent_at_us, received_at_us FROM room_messages \
         WHERE room_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
    )
    .bind(room.as_str())
    .bind(after as i64)
    .bind(up_to as i64)
    .fetch_all(pg)
    .await?;
    for (seq, message_id, from, body, sent_at_us, received_at_us) in rows {
        let msg = PublishedMessage {
            message_id,
            from,
            body,
            received_at_us: received_at_us as u64,
            sent_at_us: sent_at_us as u64,
            room: Some(room.as_str().to_owned()),
        };
        out.push(Delivery {
            seq: seq as u64,
            frame: encode_frame(&msg.broadcast_json(seq as u64)),
        });
    }
    Ok(())
}

/// Gap check: the replay must be exactly `after+1 ..= up_to`.
fn check_contiguous(out: &[Delivery], after: u64, up_to: u64) -> Result<(), ReplayError> {
    let expected = up_to - after;
    let contiguous = out
        .iter()
        .enumerate()
        .all(|(i, d)| d.seq == after + 1 + i as u64);
    if out.len() as u64 != expected || !contiguous {
        return Err(ReplayError::Missing {
            after,
            missing: expected.saturating_sub(out.len() as u64),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: u64) -> Delivery {
        Delivery {
            seq,
            frame: bytes::Bytes::new(),
        }
    }

    #[test]
    fn a_replay_must_be_exactly_the_range() {
        let full: Vec<_> = (4..=6).map(delivery).collect();
        assert!(check_contiguous(&full, 3, 6).is_ok());
        let gap = vec![delivery(4), delivery(6)];
        assert!(matches!(
            check_contiguous(&gap, 3, 6),
            Err(ReplayError::Missing { missing: 1, .. })
        ));
        assert!(check_contiguous(&full[..2], 3, 6).is_err());
    }
}
