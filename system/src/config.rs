//! Layered configuration: built-in defaults, then a TOML file, then `RTMC_…`
//! environment variables (`RTMC_SERVER__LISTEN=…`, `__` separates sections),
//! then command-line `--set section.key=value` flags. Every field has a
//! documented default so a component starts with no file at all.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::protocol::DEFAULT_MAX_FRAME_BYTES;
use crate::secret::Secret;

/// `host:port` of a service URL (`redis://:pw@127.0.0.1:6379/0` →
/// `127.0.0.1:6379`), without credentials, path or query, with the
/// scheme's default port when the URL names none: what an error may show.
pub fn service_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port || host_port.is_empty() {
        return host_port.to_owned();
    }
    let default_port = match url.split_once("://").map(|(s, _)| s) {
        Some("amqp") => 5672,
        Some("amqps") => 5671,
        Some("redis") | Some("rediss") => 6379,
        Some("postgres") | Some("postgresql") => 5432,
        _ => return host_port.to_owned(),
    };
    format!("{host_port}:{default_port}")
}

/// Configuration shared by every component. Sections a component does not
/// use are ignored by it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Name of this node in logs and metrics.
    pub node_id: String,
    pub rabbitmq: RabbitConfig,
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub server: ServerConfig,
    pub gateway: GatewayConfig,
    pub consumer: ConsumerConfig,
    pub sync: SyncConfig,
    pub rooms: RoomsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: "node-1".into(),
            rabbitmq: RabbitConfig::default(),
            redis: RedisConfig::default(),
            postgres: PostgresConfig::default(),
            server: ServerConfig::default(),
            gateway: GatewayConfig::default(),
            consumer: ConsumerConfig::default(),
            sync: SyncConfig::default(),
            rooms: RoomsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RabbitConfig {
    /// AMQP URL of the broker (it carries the broker's credentials). Used
    /// when `urls` is empty.
    pub url: Secret<String>,
    /// Every node's AMQP URL of a RabbitMQ cluster; when given, it replaces
    /// `url`. Publishers and the consumer connect to one node and move on to
    /// the next when a connect fails or the connection is lost. A TOML
    /// array, or one string of comma-separated URLs
    /// (`RTMC_RABBITMQ__URLS=amqp://…:5672,amqp://…:5673`).
    #[serde(deserialize_with = "one_or_many_urls")]
    pub urls: Vec<Secret<String>>,
    /// Durable queue every published message goes to.
    pub queue: String,
    /// Durable queue that receives malformed messages with their reason.
    pub dead_letter_queue: String,
    /// Unacknowledged deliveries the consumer holds at most.
    pub prefetch: u16,
    /// Bound on connect + publish + confirm; past it the publish fails.
    pub publish_timeout_ms: u64,
    /// `classic` or `quorum`: the type both durable queues are declared
    /// with. It cannot change for a queue that exists (RabbitMQ refuses the
    /// declare), so switching means new queue names or draining and deleting
    /// the old ones. Both types keep persistent messages and confirm after
    /// the write is on disk.
    pub queue_type: QueueType,
    /// Confirming channels a publisher (gateway, server node) opens on its
    /// one connection and spreads its publishes over, round robin. At least 1.
    pub publisher_channels: usize,
    /// Admission control: chat messages a publisher (one per gateway and per
    /// server node) may have awaiting the broker's confirm at once. A publish
    /// beyond it is refused at once with `overloaded` (HTTP 503 with
    /// `Retry-After`), so an overload is answered in microseconds instead of
    /// queueing until `publish_timeout_ms`. At least 1.
    pub max_inflight_publishes: usize,
    /// After a failed connect, publishes fail fast for this long.
    pub reconnect_backoff_ms: u64,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            urls: Vec::new(),
            queue: "rtmc.messages".into(),
            dead_letter_queue: "rtmc.messages.dead".into(),
            prefetch: 512,
            publish_timeout_ms: 2_000,
            queue_type: QueueType::Classic,
            publisher_channels: 4,
            max_inflight_publishes: 1024,
            reconnect_backoff_ms: 200,
        }
    }
}

impl RabbitConfig {
    /// The broker nodes to connect to, in order: `urls`, or `url` alone
    /// when `urls` is empty.
    pub fn node_urls(&self) -> Vec<Secret<String>> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }
}

/// `rabbitmq.urls` as a list, or as one comma-separated string (the form an
/// environment variable or `--set` gives); blanks between commas are dropped.
fn one_or_many_urls<'de, D>(deserializer: D) -> Result<Vec<Secret<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(one_or_many_strings(deserializer)?
        .into_iter()
        .map(Secret::new)
        .collect())
}

/// A list given as a TOML array or as one comma-separated string, each
/// entry trimmed, blanks dropped (`rabbitmq.urls`, `redis.sentinels`).
fn one_or_many_strings<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let urls = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(urls) => urls,
        OneOrMany::One(joined) => joined.split(',').map(str::to_owned).collect(),
    };
    Ok(urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect())
}

/// RabbitMQ queue type (`x-queue-type`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RedisConfig {
    /// Redis URL (it may carry a password).
    pub url: Secret<String>,
    /// Prefix of every key rtmc writes, so several deployments share a Redis.
    pub key_prefix: String,
    /// Lifetime of an HTTP session token (from `POST /v1/login`), refreshed
    /// by each use. TCP sessions live for `server.heartbeat_timeout_ms`.
    pub http_session_ttl_secs: u64,
    /// Lifetime of a cached presence entry.
    pub status_ttl_secs: u64,
    /// How long a message id is remembered for deduplication.
    pub dedupe_ttl_secs: u64,
    /// Sentinels (`host:port`) to find the primary through, a TOML array or
    /// one comma-separated string; empty means `url` is the Redis to use.
    #[serde(deserialize_with = "one_or_many_strings")]
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the primary by (`sentinel monitor <name>`).
    pub master_name: String,
    /// Replicas that must hold an append before the consumer acks it to
    /// RabbitMQ (`WAIT`); 0 acks once the primary has it.
    pub min_replicas_acked: u32,
    /// How long the consumer's `WAIT` waits for those replicas; below the
    /// connection's 2 s response timeout.
    pub replica_ack_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "rtmc".into(),
            http_session_ttl_secs: 3600,
            status_ttl_secs: 300,
            dedupe_ttl_secs: 24 * 3600,
            sentinels: Vec::new(),
            master_name: String::new(),
            min_replicas_acked: 0,
            replica_ack_timeout_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PostgresConfig {
    /// PostgreSQL URL (it may carry a password).
    pub url: Secret<String>,
    pub max_connections: u32,
    /// Every node of a primary + standby group, a TOML array or one
    /// comma-separated string; rtmc uses the one that takes writes and
    /// follows a failover. Empty means `url` is the database.
    #[serde(deserialize_with = "one_or_many_urls")]
    pub urls: Vec<Secret<String>>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/rtmc".into(),
            max_connections: 20,
            urls: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerConfig {
    /// TCP address the chat server listens on.
    pub listen: String,
    /// Address of the health/metrics HTTP endpoint; empty disables it.
    pub ops_listen: String,
    /// Largest frame payload accepted from a client, in bytes; broadcasts are
    /// kept within it too (messages whose escaped form would not fit are refused).
    pub max_frame_bytes: usize,
    /// Largest message body accepted in `send` and by the gateway, in bytes.
    /// The consumer dead-letters anything above this or `max_frame_bytes`.
    pub max_body_bytes: usize,
    /// A connection that has not logged in by then is closed.
    pub login_timeout_ms: u64,
    /// Interval the server asks clients to heartbeat at.
    pub heartbeat_interval_ms: u64,
    /// A session silent for this long is ended.
    pub heartbeat_timeout_ms: u64,
    /// Broadcast frames a session may have queued before it is cut off as a slow consumer.
    pub outbound_queue_frames: usize,
    /// A single socket write blocked this long cuts the session off as a slow consumer.
    pub write_timeout_ms: u64,
    /// The fan-out writes broadcasts to idle plain-TCP sessions itself instead of
    /// waking each session's writer task (one pump per runtime worker).
    pub direct_delivery: bool,
    /// Pump tasks of direct delivery (the sessions split between them); 0 = one
    /// per runtime worker.
    pub direct_pumps: usize,
    /// Connections accepted at once; more are refused with `too_many_connections`.
    pub max_connections: usize,
    /// `send`s a connection may have awaiting broker confirmation; more are
    /// refused at once with `overloaded` (with their `message_id`).
    pub max_inflight_sends: usize,
    /// `send`s per second a connection may make (bursts of one second's worth);
    /// more are refused with `rate_limited`.
    pub max_sends_per_sec: u32,
    /// Frames per second a connection may send at all; beyond it the
    /// connection is closed with `rate_limited` (a flood).
    pub max_frames_per_sec: u32,
    /// Failed logins for one user from one source address within
    /// `login_failure_window_secs` before further attempts of that pair are
    /// refused with `rate_limited` (password not checked). Other addresses
    /// are unaffected, so the owner is never locked out.
    pub max_login_failures: u32,
    /// Failed logins from one source address, all users together, within
    /// the window before every login from it is refused with `rate_limited`.
    pub max_login_failures_per_source: u32,
    pub login_failure_window_secs: u64,
    /// Failed logins on one connection before it is closed.
    pub max_login_failures_per_connection: u32,
    /// Kernel send buffer per client socket in bytes; 0 keeps the OS default.
    pub socket_send_buffer_bytes: usize,
    /// PEM certificate chain; with `tls_key_path`, clients must speak TLS.
    pub tls_cert_path: String,
    /// PEM private key.
    pub tls_key_path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7000".into(),
            ops_listen: "127.0.0.1:7001".into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_body_bytes: 16 * 1024,
            login_timeout_ms: 10_000,
            heartbeat_interval_ms: 10_000,
            heartbeat_timeout_ms: 30_000,
            outbound_queue_frames: 4096,
            write_timeout_ms: 10_000,
            direct_delivery: true,
            direct_pumps: 1,
            max_connections: 18_000,
            max_inflight_sends: 256,
            max_sends_per_sec: 1_000,
            max_frames_per_sec: 5_000,
            max_login_failures: 10,
            max_login_failures_per_source: 100,
            login_failure_window_secs: 60,
            max_login_failures_per_connection: 3,
            socket_send_buffer_bytes: 0,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayConfig {
    /// HTTP address of the gateway.
    pub listen: String,
    /// Keys accepted in `X-Api-Key` (services publishing on behalf of a `sender`).
    pub api_keys: Vec<Secret<String>>,
    /// Largest request body in bytes; larger gets 413.
    pub max_request_bytes: usize,
    /// Admission control: publishing requests (`POST /v1/messages`,
    /// `/v1/service/messages`) worked on at once; beyond it a post is
    /// refused at once, 503 `overloaded` with `Retry-After`. Caps the
    /// queueing inside the gateway at about this many ÷ its throughput.
    pub max_inflight_requests: usize,
    /// PEM certificate chain; with `tls_key_path`, the gateway serves HTTPS.
    pub tls_cert_path: String,
    /// PEM private key.
    pub tls_key_path: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            max_request_bytes: 64 * 1024,
            max_inflight_requests: 256,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Address of the health/metrics HTTP endpoint; empty disables it.
    pub ops_listen: String,
    /// Deliveries written to Redis in one round trip at most.
    pub batch_max: usize,
    /// First and largest delay between retries while Redis is unavailable.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Test-only fault (cargo feature `test-consumer-drop`, never in a
    /// release build): the message with this id is acknowledged to RabbitMQ
    /// but neither appended nor broadcast — a loss the history checker must
    /// flag. Empty (the default) disables it. Set it per process with
    /// `RTMC_CONSUMER__TEST_DROP_MESSAGE_ID`.
    #[cfg(feature = "test-consumer-drop")]
    pub test_drop_message_id: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            ops_listen: "127.0.0.1:7002".into(),
            batch_max: 256,
            retry_initial_ms: 50,
            retry_max_ms: 2_000,
            #[cfg(feature = "test-consumer-drop")]
            test_drop_message_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SyncConfig {
    /// Address of the health/metrics HTTP endpoint; empty disables it.
    pub ops_listen: String,
    /// Stream entries copied to PostgreSQL in one transaction at most.
    pub batch_max: usize,
    /// Entries already in PostgreSQL that stay in Redis for fast resume.
    pub retention_messages: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            ops_listen: "127.0.0.1:7003".into(),
            batch_max: 1_000,
            retention_messages: 100_000,
        }
    }
}

/// Rooms besides the lobby: how they are sharded and the per-user limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RoomsConfig {
    /// Shards the rooms are spread over (1..=64): each has its own queue
    /// (`<rabbitmq.queue>.s<k>`) and Redis stream. Every component of a
    /// deployment must use the same value (a room's shard is derived from
    /// it); changing it needs the shard queues and streams drained first.
    pub shards: u32,
    /// Rooms a user may be a member of at once; more: `too_many_rooms`.
    pub max_rooms_per_user: u32,
    /// Members a room may have; more: `room_full`.
    pub max_members_per_room: u32,
    /// `join`s per second a connection may make (bursts of one second's
    /// worth); more are refused with `rate_limited`.
    pub max_joins_per_sec: u32,
    /// `invite`s per second a connection may make; more: `rate_limited`.
    pub max_invites_per_sec: u32,
}

/// The most shards `rooms.shards` may name.
pub const MAX_ROOM_SHARDS: u32 = 64;

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            max_rooms_per_user: 100,
            max_members_per_room: 10_000,
            max_joins_per_sec: 20,
            max_invites_per_sec: 10,
        }
    }
}

/// Error while assembling the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults ← `file` (if given) ← `RTMC_` environment ← `overrides`
    /// (`section.key=value` pairs; values are parsed as TOML scalars when they
    /// can be, so `server.max_connections=10` is a number).
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} not found",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("RTMC_").split("__"));
        for o in overrides {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--set expects key=value, got {o:?}")))?;
            let value: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.to_string()));
            figment = figment.merge((key.trim(), value));
        }
        let cfg: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The rules a value's type cannot state.
    fn check(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ROOM_SHARDS).contains(&self.rooms.shards) {
            return Err(ConfigError(format!(
                "rooms.shards must be 1..={MAX_ROOM_SHARDS}, got {}",
                self.rooms.shards
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_address_leaves_credentials_out() {
        assert_eq!(
            service_address("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(service_address("redis://:pw@10.0.0.2/0"), "10.0.0.2:6379");
        assert_eq!(
            service_address("postgres://rtmc:pw@db.example:5433/rtmc?sslmode=disable"),
            "db.example:5433"
        );
    }

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("rtmc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 5\n\
             [postgres]\nurl = \"postgres://rtmc:pw@127.0.0.1/rtmc\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&file), &["server.max_connections=7".into()]).unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:1");
        assert_eq!(
            cfg.postgres.url.expose_secret(),
            "postgres://rtmc:pw@127.0.0.1/rtmc"
        );
        assert_eq!(cfg.server.max_connections, 7);
        assert_eq!(cfg.redis, RedisConfig::default());
        assert!(Config::load(Some(&dir.join("missing.toml")), &[]).is_err());
        assert!(Config::load(None, &["nonsense".into()]).is_err());
    }

    #[test]
    fn broker_urls_come_as_a_list_or_one_comma_separated_string() {
        let a = "amqp://guest:guest@127.0.0.1:5701/%2f";
        let b = "amqp://guest:guest@127.0.0.1:5702/%2f";
        let urls = |cfg: &Config| {
            cfg.rabbitmq
                .node_urls()
                .iter()
                .map(|u| u.expose_secret().clone())
                .collect::<Vec<_>>()
        };
        let single = Config::load(None, &[format!("rabbitmq.url={a}")]).unwrap();
        assert_eq!(urls(&single), [a]);
        let joined = Config::load(None, &[format!("rabbitmq.urls={a}, {b},")]).unwrap();
        assert_eq!(urls(&joined), [a, b]);
        let dir = std::env::temp_dir().join(format!("rtmc-cfg-urls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, format!("[rabbitmq]\nurls = [\"{b}\", \"{a}\"]\n")).unwrap();
        let listed = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(urls(&listed), [b, a]);
    }

    #[test]
    fn rooms_section_layers_and_checks_its_shards() {
        let cfg = Config::load(None, &["rooms.shards=8".into()]).unwrap();
        assert_eq!(cfg.rooms.shards, 8);
        assert_eq!(cfg.rooms.max_rooms_per_user, 100);
        for bad in ["rooms.shards=0", "rooms.shards=65"] {
            let e = Config::load(None, &[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("rooms.shards must be 1..=64"), "{e}");
        }
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let mut cfg = Config::default();
        cfg.postgres.url = "postgres://rtmc:pg-password@127.0.0.1/rtmc".into();
        cfg.redis.url = "redis://:redis-password@127.0.0.1:6379".into();
        cfg.gateway.api_keys = vec!["the-api-key".into()];
        let shown = format!("{cfg:?}");
        for secret in [
            "pg-password",
            "redis-password",
            "the-api-key",
            "guest:guest",
        ] {
            assert!(!shown.contains(secret), "{secret} printed in {shown}");
        }
        assert!(shown.contains("url: [redacted]"));
        assert!(shown.contains("api_keys: [[redacted]]"));
    }
}
