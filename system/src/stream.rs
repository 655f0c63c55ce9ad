//! The Redis message log. Each accepted message is one stream entry whose id
//! is `<seq>-0` and whose only field `f` holds the complete `broadcast` JSON,
//! so readers never re-serialize. Sequence numbers come from one counter
//! incremented inside the same Lua script as the append: gap-free and
//! globally ordered however many consumers run.

use bytes::Bytes;
use redis::aio::ConnectionLike;
use redis::{Script, Value};

use crate::protocol::encode_frame;

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
    Ok(raw
        .into_iter()
        .map(|n| {
            if n < 0 {
                Appended::Duplicate(n.unsigned_abs())
            } else {
                Appended::New(n as u64)
            }
        })
        .collect())
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
    let v: Value = redis::cmd("XRANGE")
        .arg(keys.stream())
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

/// The lowest sequence number still in the stream, if any.
pub async fn first_seq<C: ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
) -> redis::RedisResult<Option<u64>> {
    let v: Value = redis::cmd("XRANGE")
        .arg(keys.stream())
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
        let seq = std::str::from_utf8(&id)
            .ok()
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| unexpected(&Value::BulkString(id.clone())))?;
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
