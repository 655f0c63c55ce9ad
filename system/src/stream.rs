//! The Redis message log. Each accepted message is one stream entry whose id
//! is `<seq>-0` and whose only field `f` holds the complete `broadcast` JSON,
//! so readers never re-serialize. Sequence numbers come from one counter
//! incremented inside the same Lua script as the append: gap-free and
//! globally ordered however many consumers run.
//!
//! Rooms other than the lobby live in shards (see [`crate::room::shard_of`]):
//! each shard has its own stream, which server nodes follow, and each room
//! its own gap-free sequence and history stream ("room log"); every key of
//! a shard carries the hash tag `{s<k>}`.

use bytes::Bytes;
use redis::aio::ConnectionLike;
use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use crate::protocol::encode_frame;
use crate::room::{RoomId, RoomKind, RoomRole};

/// Names of every Redis key rtmc uses, under one prefix.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// The message stream.
    pub fn stream(&self) -> String {
        format!("{}:stream", self.prefix)
    }
    /// The last assigned sequence number.
    pub fn seq(&self) -> String {
        format!("{}:seq", self.prefix)
    }
    /// The stream's epoch: made once, and made anew when Redis lost its data
    /// (and so the stream's history and sequence counter).
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    /// The stream of presence changes of users who are in rooms, which
    /// every server node follows for its sessions watching presence
    /// (capped: presence is news, not history).
    pub fn presence_stream(&self) -> String {
        format!("{}:presence", self.prefix)
    }
    /// Prefix of the per-message-id dedupe keys (value: the assigned seq).
    pub fn dedupe_prefix(&self) -> String {
        format!("{}:dedupe:", self.prefix)
    }
    /// A session token → user id.
    pub fn session(&self, token: &str) -> String {
        format!("{}:session:{}", self.prefix, token)
    }
    /// Sorted set of live TCP sessions (`<token>:<user>`, score = expiry ms).
    pub fn sessions(&self) -> String {
        format!("{}:sessions", self.prefix)
    }
    /// Set of a user's live TCP session tokens.
    pub fn user_sessions(&self, user_id: &str) -> String {
        format!("{}:user_sessions:{}", self.prefix, user_id)
    }
    /// Failed login attempts for a user from one source address in the
    /// current window (an address has no `@`, so the last `@` splits the key
    /// unambiguously).
    pub fn login_failures(&self, user_id: &str, source: std::net::IpAddr) -> String {
        format!("{}:login_failures:{}@{}", self.prefix, user_id, source)
    }
    /// Failed login attempts from one source address, all users together.
    pub fn login_failures_from(&self, source: std::net::IpAddr) -> String {
        format!("{}:login_failures_from:{}", self.prefix, source)
    }
    /// The sync worker's lock (one worker copies at a time).
    pub fn sync_lock(&self) -> String {
        format!("{}:sync_lock", self.prefix)
    }
    /// A user's cached presence.
    pub fn status(&self, user_id: &str) -> String {
        format!("{}:status:{}", self.prefix, user_id)
    }
    /// Common start of every key of shard `k`: the hash tag `{s<k>}` puts
    /// all of them in one Redis Cluster slot, so one script may touch them.
    fn shard_tag(&self, k: u32) -> String {
        format!("{}:{{s{k}}}", self.prefix)
    }
    /// Shard `k`'s stream: every room message and membership change of its
    /// rooms, in the order server nodes follow them.
    pub fn shard_stream(&self, k: u32) -> String {
        format!("{}:stream", self.shard_tag(k))
    }
    /// Shard `k`'s stream counter (its entry ids are `<shard_seq>-0`).
    pub fn shard_seq(&self, k: u32) -> String {
        format!("{}:seq", self.shard_tag(k))
    }
    /// The last sequence number assigned in `room` (of shard `k`).
    pub fn room_seq(&self, k: u32, room: &str) -> String {
        format!("{}:room:{room}:seq", self.shard_tag(k))
    }
    /// Set once a direct `room`'s two memberships are in its shard stream
    /// (see [`open_direct`]).
    pub fn room_opened(&self, k: u32, room: &str) -> String {
        format!("{}:room:{room}:opened", self.shard_tag(k))
    }
    /// `room`'s history stream (entry ids `<room_seq>-0`, field `f`).
    pub fn room_log(&self, k: u32, room: &str) -> String {
        format!("{}:room:{room}:log", self.shard_tag(k))
    }
    /// Prefix of shard `k`'s per-message-id dedupe keys (value: room seq).
    pub fn shard_dedupe_prefix(&self, k: u32) -> String {
        format!("{}:dedupe:", self.shard_tag(k))
    }
}

/// One stored message: its sequence number and its ready-made frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub seq: u64,
    /// The `broadcast` JSON object (no length prefix).
    pub payload: Bytes,
}

impl StreamEntry {
    /// The entry framed for the wire (length prefix added).
    pub fn framed(&self) -> Delivery {
        Delivery {
            seq: self.seq,
            frame: encode_frame(&self.payload),
        }
    }
}

/// A message ready for the wire: the same bytes go to every session that
/// receives it, live (through the fan-out ring) or replayed on resume.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    /// Complete frame, length prefix included.
    pub frame: Bytes,
}

/// Outcome of appending one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this new sequence number.
    New(u64),
    /// The message id was seen before, under this sequence number.
    Duplicate(u64),
}

const APPEND_LUA: &str = r#"
-- KEYS[1] seq counter, KEYS[2] stream
-- ARGV[1] dedupe key prefix, ARGV[2] dedupe ttl seconds, then (message_id, json tail) pairs
local out = {}
for i = 3, #ARGV, 2 do
  local dkey = ARGV[1] .. ARGV[i]
  local seen = redis.call('GET', dkey)
  if seen then
    out[#out + 1] = -tonumber(seen)
  else
    local seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], seq .. '-0', 'f', '{"command":"broadcast","seq":' .. seq .. ',' .. ARGV[i + 1])
    redis.call('SET', dkey, seq, 'EX', ARGV[2])
    out[#out + 1] = seq
  end
end
return out
"#;

/// Appends messages atomically, deduplicating by message id. `items` are
/// `(message_id, tail)` where tail is the message JSON without its opening
/// brace. Returns one outcome per item, in order.
pub async fn append_batch<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    dedupe_ttl_secs: u64,
    items: &[(String, Vec<u8>)],
) -> redis::RedisResult<Vec<Appended>> {
    let script = Script::new(APPEND_LUA);
    let mut inv = script.prepare_invoke();
    inv.key(keys.seq())
        .key(keys.stream())
        .arg(keys.dedupe_prefix())
        .arg(dedupe_ttl_secs);
    for (id, tail) in items {
        inv.arg(id).arg(tail.as_slice());
    }
    let raw: Vec<i64> = inv.invoke_async(conn).await?;
    Ok(raw.into_iter().map(appended).collect())
}

/// The stream's epoch, made (a random id) by the first caller that finds
/// none: one `SET NX GET` (Redis 7), so every node of a deployment reads the
/// same one, and a Redis that lost its data hands out a new one.
pub async fn epoch<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
) -> redis::RedisResult<String> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    let before: Option<String> = redis::cmd("SET")
        .arg(keys.epoch())
        .arg(&fresh)
        .arg("NX")
        .arg("GET")
        .query_async(conn)
        .await?;
    Ok(before.unwrap_or(fresh))
}

/// The last assigned sequence number (0 when none yet).
pub async fn head<C: ConnectionLike>(conn: &mut C, keys: &RedisKeys) -> redis::RedisResult<u64> {
    let v: Option<u64> = redis::cmd("GET").arg(keys.seq()).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

/// Blocks up to `block_ms` for entries after `after_seq` (XREAD BLOCK: no
/// polling interval, returns as soon as one arrives).
pub async fn read_after<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    after_seq: u64,
    block_ms: u64,
    count: usize,
) -> redis::RedisResult<Vec<StreamEntry>> {
    let v: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block_ms)
        .arg("STREAMS")
        .arg(keys.stream())
        .arg(format!("{after_seq}-0"))
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    match v {
        Value::Nil => {}
        Value::Array(streams) => {
            for s in streams {
                if let Value::Array(mut kv) = s {
                    if kv.len() == 2 {
                        parse_entries(kv.pop().expect("len 2"), &mut out)?;
                    }
                }
            }
        }
        Value::Map(streams) => {
            for (_, entries) in streams {
                parse_entries(entries, &mut out)?;
            }
        }
        other => return Err(unexpected(&other)),
    }
    Ok(out)
}

/// Entries with `after_seq < seq <= up_to_seq`, at most `count` (XRANGE).
pub async fn range_after<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    after_seq: u64,
    up_to_seq: u64,
    count: usize,
) -> redis::RedisResult<Vec<StreamEntry>> {
    xrange_after(conn, &keys.stream(), after_seq, up_to_seq, count).await
}

/// The lowest sequence number still in the stream, if any.
pub async fn first_seq<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
) -> redis::RedisResult<Option<u64>> {
    first_seq_of(conn, &keys.stream()).await
}

/// Entries of the `<seq>-0`-keyed stream `key` with `after_seq < seq <=
/// up_to_seq`, at most `count`.
async fn xrange_after<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
    after_seq: u64,
    up_to_seq: u64,
    count: usize,
) -> redis::RedisResult<Vec<StreamEntry>> {
    let v: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({after_seq}-0"))
        .arg(format!("{up_to_seq}-0"))
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    parse_entries(v, &mut out)?;
    Ok(out)
}

/// The lowest sequence number still in the stream `key`, if any.
async fn first_seq_of<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
) -> redis::RedisResult<Option<u64>> {
    let v: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    parse_entries(v, &mut out)?;
    Ok(out.first().map(|e| e.seq))
}

fn unexpected(v: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected stream reply",
        format!("{v:?}"),
    ))
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// Parses `[[id, [field, value, ...]], ...]` into entries.
fn parse_entries(v: Value, out: &mut Vec<StreamEntry>) -> redis::RedisResult<()> {
    let entries = match v {
        Value::Array(e) => e,
        Value::Nil => return Ok(()),
        other => return Err(unexpected(&other)),
    };
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(unexpected(&entry));
        };
        if parts.len() != 2 {
            return Err(unexpected(&Value::Array(parts)));
        }
        let fields = parts.pop().expect("len 2");
        let id = bytes_of(parts.pop().expect("len 2")).ok_or_else(|| unexpected(&Value::Nil))?;
        let seq = seq_of_id(&id)?;
        let payload = match fields {
            Value::Array(f) if f.len() >= 2 => f.into_iter().nth(1).and_then(bytes_of),
            Value::Map(m) => m.into_iter().next().and_then(|(_, v)| bytes_of(v)),
            _ => None,
        }
        .ok_or_else(|| unexpected(&Value::Nil))?;
        out.push(StreamEntry {
            seq,
            payload: Bytes::from(payload),
        });
    }
    Ok(())
}

/// Opens a Redis connection for blocking reads (no response timeout: a
/// blocked XREAD is not a dead server).
pub async fn blocking_connection(
    url: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// Opens the shared, auto-reconnecting connection for ordinary commands.
pub async fn managed_connection(url: &str) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(2)))
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(2);
    client.get_connection_manager_with_config(cfg).await
}

// ---- Rooms: shard streams, room logs and membership events ----

/// A room membership change, as a shard stream records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberChange {
    Joined,
    Left,
}

/// What one shard stream entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// A room message: its room, its room sequence number and the ready
    /// `broadcast` JSON (no length prefix), the same bytes as in the room log.
    Message {
        room: String,
        seq: u64,
        payload: Bytes,
    },
    /// `user` joined or left `room` when the room's head was `seq`: a member
    /// receives exactly the room's messages with a greater seq (until it leaves).
    Member {
        room: String,
        seq: u64,
        user: String,
        change: MemberChange,
        kind: RoomKind,
        /// The user's role (`member` for a leave).
        role: RoomRole,
    },
}

/// One entry of a shard stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntry {
    /// The shard whose stream holds it.
    pub shard: u32,
    /// Its place in that shard stream (entry id `<shard_seq>-0`).
    pub shard_seq: u64,
    pub event: ShardEvent,
}

/// A room message to append: its id (dedupe), its room and its JSON tail
/// (the `PublishedMessage` JSON without its opening brace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomItem {
    pub message_id: String,
    pub room: String,
    pub tail: Vec<u8>,
}

/// The JSON of a membership event (field `m` of its shard stream entry).
#[derive(Debug, Serialize, Deserialize)]
struct MemberJson {
    change: MemberChange,
    user: String,
    kind: RoomKind,
    /// The joiner's role; entries written before roles were recorded say
    /// nothing and read as `member`.
    #[serde(default = "member_role")]
    role: RoomRole,
}

fn member_role() -> RoomRole {
    RoomRole::Member
}

const APPEND_ROOMS_LUA: &str = r#"
-- KEYS[1] shard seq counter, KEYS[2] shard stream, then per item:
--   (room seq counter, room log, dedupe key)
-- ARGV[1] dedupe ttl seconds, then per item: (room, json tail)
local out = {}
local n = (#ARGV - 1) / 2
for i = 1, n do
  local room_seq_key, room_log, dkey = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  local room, tail = ARGV[2 * i], ARGV[2 * i + 1]
  local seen = redis.call('GET', dkey)
  if seen then
    out[#out + 1] = -tonumber(seen)
  else
    local seq = redis.call('INCR', room_seq_key)
    local json = '{"command":"broadcast","seq":' .. seq .. ',' .. tail
    redis.call('XADD', room_log, seq .. '-0', 'f', json)
    local shard_seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], shard_seq .. '-0', 'r', room, 's', seq, 'f', json)
    redis.call('SET', dkey, seq, 'EX', ARGV[1])
    out[#out + 1] = seq
  end
end
return out
"#;

/// Appends room messages of shard `shard` atomically, deduplicating by
/// message id within the shard: per message, the room's next sequence
/// number, an entry in the room log and one in the shard stream. Every
/// item's room must be of this shard. One outcome per item, in order.
pub async fn append_room_batch<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shard: u32,
    dedupe_ttl_secs: u64,
    items: &[RoomItem],
) -> redis::RedisResult<Vec<Appended>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let script = Script::new(APPEND_ROOMS_LUA);
    let mut inv = script.prepare_invoke();
    inv.key(keys.shard_seq(shard))
        .key(keys.shard_stream(shard))
        .arg(dedupe_ttl_secs);
    let dedupe_prefix = keys.shard_dedupe_prefix(shard);
    for item in items {
        inv.key(keys.room_seq(shard, &item.room))
            .key(keys.room_log(shard, &item.room))
            .key(format!("{dedupe_prefix}{}", item.message_id))
            .arg(&item.room)
            .arg(item.tail.as_slice());
    }
    let raw: Vec<i64> = inv.invoke_async(conn).await?;
    Ok(raw.into_iter().map(appended).collect())
}

fn appended(n: i64) -> Appended {
    if n < 0 {
        Appended::Duplicate(n.unsigned_abs())
    } else {
        Appended::New(n as u64)
    }
}

const RECORD_MEMBERSHIP_LUA: &str = r#"
-- KEYS[1] shard seq counter, KEYS[2] shard stream, KEYS[3] room seq counter
-- ARGV[1] room, ARGV[2] event JSON
local s = tonumber(redis.call('GET', KEYS[3]) or '0')
local shard_seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], shard_seq .. '-0', 'r', ARGV[1], 's', s, 'm', ARGV[2])
return s
"#;

/// Records that `user` joined or left `room` in the room's shard stream
/// (not in the room log) and returns the room's head at that point, `s`:
/// atomic with the appends of that shard, so a member receives exactly the
/// messages with seq > `s` (until a later `left`).
pub async fn record_membership<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    user: &str,
    change: MemberChange,
    kind: RoomKind,
) -> redis::RedisResult<u64> {
    let member = (kind, RoomRole::Member);
    record_membership_as(conn, keys, shards, room, user, change, member).await
}

/// [`record_membership`] for a user whose role is not `member` (a room's
/// creator): the user's other sessions are told `joined` with that role.
pub async fn record_membership_as<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    user: &str,
    change: MemberChange,
    (kind, role): (RoomKind, RoomRole),
) -> redis::RedisResult<u64> {
    let shard = room.shard(shards);
    let event = MemberJson {
        change,
        user: user.to_owned(),
        kind,
        role,
    };
    let json = serde_json::to_vec(&event).expect("membership events always serialize");
    Script::new(RECORD_MEMBERSHIP_LUA)
        .key(keys.shard_seq(shard))
        .key(keys.shard_stream(shard))
        .key(keys.room_seq(shard, room.as_str()))
        .arg(room.as_str())
        .arg(json)
        .invoke_async(conn)
        .await
}

const OPEN_DIRECT_LUA: &str = r#"
-- KEYS[1] shard seq counter, KEYS[2] shard stream, KEYS[3] room seq counter,
-- KEYS[4] the room's opened mark
-- ARGV[1] room, ARGV[2] and ARGV[3] the two members' joined event JSON
if not redis.call('SET', KEYS[4], '1', 'NX') then
  return -1
end
local s = tonumber(redis.call('GET', KEYS[3]) or '0')
for i = 2, 3 do
  local shard_seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], shard_seq .. '-0', 'r', ARGV[1], 's', s, 'm', ARGV[i])
end
return s
"#;

/// Records both users of the direct room `room` as joined, once: the first
/// call (whichever of the two users' first messages makes it) records
/// both memberships at the room's head and returns it; later calls record
/// nothing and return `None`. Every sender calls it before publishing to a
/// direct room it does not receive yet, so no message of the room can come
/// before its memberships (were the creator alone to record them, the
/// other user's first message, sent while the creator was between
/// PostgreSQL and Redis, could take seq 1 before a membership recorded at
/// 1, and that user would never receive it). A room made before the mark
/// existed gets its memberships again at its head once; sessions that
/// receive it already ignore a repeated `joined` entry.
pub async fn open_direct<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
) -> redis::RedisResult<Option<u64>> {
    let Some((a, b)) = room.direct_members() else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "open_direct: not a direct room",
        )));
    };
    let shard = room.shard(shards);
    let joined = |user: &str| {
        let event = MemberJson {
            change: MemberChange::Joined,
            user: user.to_owned(),
            kind: RoomKind::Direct,
            role: RoomRole::Member,
        };
        serde_json::to_vec(&event).expect("membership events always serialize")
    };
    let s: i64 = Script::new(OPEN_DIRECT_LUA)
        .key(keys.shard_seq(shard))
        .key(keys.shard_stream(shard))
        .key(keys.room_seq(shard, room.as_str()))
        .key(keys.room_opened(shard, room.as_str()))
        .arg(room.as_str())
        .arg(joined(a))
        .arg(joined(b))
        .invoke_async(conn)
        .await?;
    Ok(u64::try_from(s).ok())
}

/// The last sequence number assigned in `room` (0 when none yet).
pub async fn room_head<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
) -> redis::RedisResult<u64> {
    let key = keys.room_seq(room.shard(shards), room.as_str());
    let v: Option<u64> = redis::cmd("GET").arg(key).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

/// Each shard stream's last shard seq, shard 0 first: where a follower
/// that starts now begins (it reads entries after these).
pub async fn shard_heads<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
) -> redis::RedisResult<Vec<u64>> {
    let mut pipe = redis::pipe();
    for k in 0..shards.max(1) {
        pipe.cmd("GET").arg(keys.shard_seq(k));
    }
    let heads: Vec<Option<u64>> = pipe.query_async(conn).await?;
    Ok(heads.into_iter().map(|h| h.unwrap_or(0)).collect())
}

/// Reads the entries after `after[k]` of every shard stream `k` (one per
/// shard, shard 0 first), at most `count` per stream: XREAD BLOCK over all
/// of them at once, returning as soon as any has one, or after `block_ms`
/// with nothing (`block_ms` 0 = do not block). In shard order, each
/// shard's entries in stream order.
pub async fn read_shards<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    after: &[u64],
    block_ms: u64,
    count: usize,
) -> redis::RedisResult<Vec<ShardEntry>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if block_ms > 0 {
        cmd.arg("BLOCK").arg(block_ms);
    }
    cmd.arg("STREAMS");
    let names: Vec<String> = (0..after.len() as u32)
        .map(|k| keys.shard_stream(k))
        .collect();
    for name in &names {
        cmd.arg(name);
    }
    for a in after {
        cmd.arg(format!("{a}-0"));
    }
    let v: Value = cmd.query_async(conn).await?;
    let per_stream: Vec<(Value, Value)> = match v {
        Value::Nil => Vec::new(),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => {
                    let mut kv = kv.into_iter();
                    Ok((kv.next().expect("len 2"), kv.next().expect("len 2")))
                }
                other => Err(unexpected(&other)),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(streams) => streams,
        other => return Err(unexpected(&other)),
    };
    let mut out = Vec::new();
    for (name, entries) in per_stream {
        let name = bytes_of(name).ok_or_else(|| unexpected(&Value::Nil))?;
        let shard = names
            .iter()
            .position(|n| n.as_bytes() == name.as_slice())
            .ok_or_else(|| unexpected(&Value::BulkString(name.clone())))?;
        parse_shard_entries(shard as u32, entries, &mut out)?;
    }
    out.sort_by_key(|e| e.shard);
    Ok(out)
}

/// Shard `shard`'s entries with `after < shard_seq`, at most `count` (XRANGE).
pub async fn shard_range_after<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shard: u32,
    after: u64,
    count: usize,
) -> redis::RedisResult<Vec<ShardEntry>> {
    let v: Value = redis::cmd("XRANGE")
        .arg(keys.shard_stream(shard))
        .arg(format!("({after}-0"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    parse_shard_entries(shard, v, &mut out)?;
    Ok(out)
}

/// The room log's entries with `after < seq <= up_to_seq`, at most `count`.
pub async fn room_range_after<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
    after_seq: u64,
    up_to_seq: u64,
    count: usize,
) -> redis::RedisResult<Vec<StreamEntry>> {
    let log = keys.room_log(room.shard(shards), room.as_str());
    xrange_after(conn, &log, after_seq, up_to_seq, count).await
}

/// The lowest sequence number still in the room's log, if any.
pub async fn room_first_seq<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    shards: u32,
    room: &RoomId,
) -> redis::RedisResult<Option<u64>> {
    let log = keys.room_log(room.shard(shards), room.as_str());
    first_seq_of(conn, &log).await
}

/// The value of each field of one stream entry, by name.
fn entry_fields(fields: Value) -> redis::RedisResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(f) => {
            let mut it = f.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(m) => m,
        other => return Err(unexpected(&other)),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match (bytes_of(k), bytes_of(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(unexpected(&Value::Nil)),
        })
        .collect()
}

/// Parses a shard stream's `[[id, [r, room, s, seq, f|m, json]], ...]`.
fn parse_shard_entries(shard: u32, v: Value, out: &mut Vec<ShardEntry>) -> redis::RedisResult<()> {
    let entries = match v {
        Value::Array(e) => e,
        Value::Nil => return Ok(()),
        other => return Err(unexpected(&other)),
    };
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(unexpected(&entry));
        };
        let [id, fields]: [Value; 2] = parts
            .try_into()
            .map_err(|p: Vec<Value>| unexpected(&Value::Array(p)))?;
        let id = bytes_of(id).ok_or_else(|| unexpected(&Value::Nil))?;
        let shard_seq = seq_of_id(&id)?;
        let event = shard_event(entry_fields(fields)?)
            .ok_or_else(|| unexpected(&Value::BulkString(id.clone())))?;
        out.push(ShardEntry {
            shard,
            shard_seq,
            event,
        });
    }
    Ok(())
}

/// The event of a shard stream entry's fields; `None` when malformed.
fn shard_event(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Option<ShardEvent> {
    let field = |name: &[u8]| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let room = String::from_utf8(field(b"r")?.clone()).ok()?;
    let seq: u64 = std::str::from_utf8(field(b"s")?).ok()?.parse().ok()?;
    if let Some(json) = field(b"f") {
        return Some(ShardEvent::Message {
            room,
            seq,
            payload: Bytes::from(json.clone()),
        });
    }
    let m: MemberJson = serde_json::from_slice(field(b"m")?).ok()?;
    Some(ShardEvent::Member {
        room,
        seq,
        user: m.user,
        change: m.change,
        kind: m.kind,
        role: m.role,
    })
}

/// The sequence number of an entry id `<seq>-0`.
fn seq_of_id(id: &[u8]) -> redis::RedisResult<u64> {
    std::str::from_utf8(id)
        .ok()
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| unexpected(&Value::BulkString(id.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster would use: the text between the first `{`
    /// and the first `}` after it, when not empty.
    fn hash_tag(key: &str) -> Option<&str> {
        let open = key.find('{')?;
        let close = key[open + 1..].find('}')? + open + 1;
        (close > open + 1).then(|| &key[open + 1..close])
    }

    #[test]
    fn every_key_of_a_shard_carries_its_one_hash_tag() {
        let keys = RedisKeys::new("rtmc");
        // User ids may hold braces: a direct room's keys still hash by shard.
        for (k, room) in [(0, "general"), (3, "dm:a{x}:b}"), (63, "r")] {
            let tag = format!("s{k}");
            let shard_keys = [
                keys.shard_stream(k),
                keys.shard_seq(k),
                keys.room_seq(k, room),
                keys.room_log(k, room),
                format!("{}some-message-id", keys.shard_dedupe_prefix(k)),
            ];
            for key in &shard_keys {
                assert_eq!(hash_tag(key), Some(tag.as_str()), "{key}");
                assert!(key.starts_with("rtmc:{"), "{key}");
            }
        }
        assert_eq!(keys.shard_stream(2), "rtmc:{s2}:stream");
        assert_eq!(keys.room_log(1, "x"), "rtmc:{s1}:room:x:log");
        assert_ne!(keys.room_seq(1, "x"), keys.room_log(1, "x"));
        assert_eq!(
            hash_tag(&keys.stream()),
            None,
            "the lobby's keys keep their names"
        );
    }

    #[test]
    fn shard_entries_parse_into_messages_and_membership_events() {
        let field = |k: &str, v: &str| {
            [
                Value::BulkString(k.as_bytes().to_vec()),
                Value::BulkString(v.as_bytes().to_vec()),
            ]
        };
        let entry = |id: &str, fields: Vec<[Value; 2]>| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                Value::Array(fields.into_iter().flatten().collect()),
            ])
        };
        let reply = Value::Array(vec![
            entry(
                "7-0",
                vec![field("r", "a"), field("s", "3"), field("f", "{}")],
            ),
            entry(
                "8-0",
                vec![
                    field("r", "a"),
                    field("s", "3"),
                    field("m", r#"{"change":"left","user":"bob","kind":"private"}"#),
                ],
            ),
            entry(
                "9-0",
                vec![
                    field("r", "b"),
                    field("s", "0"),
                    field(
                        "m",
                        r#"{"change":"joined","user":"carol","kind":"public","role":"owner"}"#,
                    ),
                ],
            ),
        ]);
        let mut out = Vec::new();
        parse_shard_entries(2, reply, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        // The role is read when present; an entry without one (written
        // before roles were recorded: `out[1]` below) reads as `member`.
        assert!(matches!(
            &out[2].event,
            ShardEvent::Member { role: RoomRole::Owner, user, .. } if user == "carol"
        ));
        assert_eq!((out[0].shard, out[0].shard_seq), (2, 7));
        assert!(matches!(&out[0].event, ShardEvent::Message { room, seq: 3, .. } if room == "a"));
        assert_eq!(
            out[1].event,
            ShardEvent::Member {
                room: "a".into(),
                seq: 3,
                user: "bob".into(),
                change: MemberChange::Left,
                kind: RoomKind::Private,
                role: RoomRole::Member,
            }
        );
        let broken = Value::Array(vec![entry("9-0", vec![field("r", "a")])]);
        assert!(parse_shard_entries(0, broken, &mut Vec::new()).is_err());
    }
}
