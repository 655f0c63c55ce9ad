//! Presence news for rooms: a change of a user's presence, with the rooms
//! the user is in, goes into one capped Redis stream that every server node
//! follows; each node tells its sessions that watch presence and share one
//! of those rooms (`server/presence_watch.rs`). News, not history: a node
//! follows from the stream's end, and nothing is replayed.

use redis::aio::ConnectionLike;
use redis::streams::StreamReadReply;
use serde::{Deserialize, Serialize};

use crate::protocol::UserStatus;
use crate::stream::RedisKeys;

/// About how many entries the presence stream keeps (`MAXLEN ~`).
pub const PRESENCE_STREAM_MAX_ENTRIES: usize = 10_000;

/// The follower's position before it has read an entry: what arrives from
/// now on.
pub const FROM_NOW: &str = "$";

/// One change of a user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// Whose presence changed.
    pub user: String,
    /// What it is now.
    pub status: UserStatus,
    /// The user's rooms (the lobby aside) when it changed.
    pub rooms: Vec<String>,
}

/// Appends `change` to the presence stream.
pub async fn record<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    change: &PresenceChange,
) -> redis::RedisResult<()> {
    let json = serde_json::to_vec(change).expect("presence changes always serialize");
    let _: String = redis::cmd("XADD")
        .arg(keys.presence_stream())
        .arg("MAXLEN")
        .arg("~")
        .arg(PRESENCE_STREAM_MAX_ENTRIES)
        .arg("*")
        .arg("p")
        .arg(json)
        .query_async(conn)
        .await?;
    Ok(())
}

/// The changes after entry `after` (an entry id, or [`FROM_NOW`]), waiting
/// up to `block_ms` for the first, at most `count`; each with its entry id.
/// An entry that is not a presence change (written by something else) is
/// skipped and counted in `rtmc_presence_entries_skipped_total`.
pub async fn read_after<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    after: &str,
    block_ms: u64,
    count: usize,
) -> redis::RedisResult<Vec<(String, PresenceChange)>> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block_ms)
        .arg("STREAMS")
        .arg(keys.presence_stream())
        .arg(after)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        let change = entry
            .get::<Vec<u8>>("p")
            .and_then(|json| serde_json::from_slice::<PresenceChange>(&json).ok());
        match change {
            Some(c) => out.push((entry.id, c)),
            None => metrics::counter!("rtmc_presence_entries_skipped_total").increment(1),
        }
    }
    Ok(out)
}
