//! Replay for resume: the messages after a client's last sequence number, from
//! the Redis stream, or from PostgreSQL for what Redis has already trimmed.

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::protocol::{encode_frame, BroadcastFrame, ServerFrame};
use crate::server::fanout::Delivery;
use crate::stream::{self, RedisKeys};

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

/// Every message with `after < seq <= up_to`, in order, framed for the wire.
pub async fn replay(
    redis: &mut ConnectionManager,
    pg: &PgPool,
    keys: &RedisKeys,
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
    let first_in_redis = stream::first_seq(redis, keys).await?.unwrap_or(u64::MAX);
    if first_in_redis > after + 1 {
        // The head of the range was trimmed from Redis: read it from PostgreSQL.
        let pg_up_to = up_to.min(first_in_redis.saturating_sub(1));
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, message_id, sender, body, sent_at_us FROM messages WHERE seq > $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(after as i64)
        .bind(pg_up_to as i64)
        .fetch_all(pg)
        .await?;
        for (seq, message_id, from, body, sent_at_us) in rows {
            let f = ServerFrame::Broadcast(BroadcastFrame {
                seq: seq as u64,
                message_id,
                from,
                body,
                sent_at_us: sent_at_us as u64,
            });
            out.push(Delivery {
                seq: seq as u64,
                frame: encode_frame(&f.to_json()),
            });
        }
    }
    let mut cursor = out.last().map(|d| d.seq).unwrap_or(after);
    while cursor < up_to {
        let batch = stream::range_after(redis, keys, cursor, up_to, 4096).await?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            cursor = e.seq;
            out.push(Delivery {
                seq: e.seq,
                frame: encode_frame(&e.payload),
            });
        }
    }
    // Gap check: the replay must be exactly after+1 ..= up_to.
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
    Ok(out)
}
