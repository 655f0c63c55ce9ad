//! The node's presence follower: reads the presence stream
//! (`presence_feed.rs`) from its end at start and hands each change to the
//! room registry, which tells the local sessions that watch presence and
//! share a room with the user. Presence is news: a change missed while
//! Redis was unreachable is not replayed (a client reads the current state
//! with `members`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::fanout::connected;
use super::rooms::RoomRegistry;
use crate::backoff::Backoff;
use crate::presence_feed::{self, FROM_NOW};
use crate::stream::RedisKeys;

/// How many changes one read returns at most.
const READ_BATCH: usize = 512;
/// XREAD BLOCK bound; only lets the loop notice shutdown.
const BLOCK_MS: u64 = 1_000;

/// Runs until `shutdown`. Redis errors are retried with back-off from the
/// last change read.
pub async fn follow_presence(
    redis_url: String,
    keys: RedisKeys,
    registry: RoomRegistry,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut conn = None;
    let mut after = FROM_NOW.to_owned();
    while !shutdown.is_cancelled() {
        let Some(c) = connected(&mut conn, &redis_url, &mut backoff, &shutdown, "presence").await
        else {
            break;
        };
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = presence_feed::read_after(c, &keys, &after, BLOCK_MS, READ_BATCH) => r,
        };
        match read {
            Ok(changes) => {
                backoff.reset();
                for (id, change) in changes {
                    registry.presence(&change);
                    after = id;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence follower: read failed");
                conn = None;
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}
