//! Load profiles: a TOML file where every field has a default, so a profile
//! names only what differs; command-line flags override it. The shipped
//! profiles live in `loadgen/profiles/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::spec::WorkloadProfile;

/// Everything a run needs to know.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Shown in reports.
    pub name: String,
    pub load: LoadProfile,
    pub target: TargetProfile,
    pub floor: FloorProfile,
    pub nats: NatsProfile,
    pub slo: SloProfile,
    pub ramp: RampProfile,
    pub blaster: BlasterProfile,
    pub output: OutputProfile,
    /// Rooms, direct messages and churn (`[workload]`); absent = every
    /// client in the global room, as protocol v1 has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadProfile>,
}

/// How publishers reach the system.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    /// Pipelined `send` commands on logged-in TCP connections.
    #[default]
    Tcp,
    /// `POST /v1/service/messages` on the HTTP gateway with an API key.
    Http,
    /// Both, ticks split between them.
    Both,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoadProfile {
    /// Simulated receiving clients.
    pub clients: usize,
    /// Connection attempts started per second during bring-up.
    pub connects_per_sec: f64,
    /// Aggregate publish rate, messages per second.
    pub rate_per_sec: f64,
    /// How long publishing lasts.
    pub duration_secs: f64,
    /// Message body size.
    pub body_bytes: usize,
    pub publish_via: PublishVia,
    /// TCP publisher connections (they share the rate).
    pub tcp_publishers: u32,
    /// HTTP requests in flight at most.
    pub http_concurrency: usize,
    /// After publishing, how long receivers may take to get everything.
    pub drain_timeout_secs: f64,
    /// Bound on connect + login of one client.
    pub connect_timeout_ms: u64,
    /// Receivers that also check every acknowledged message arrived.
    pub witnesses: usize,
    /// Local source addresses for client sockets (e.g. 127.0.0.2); empty =
    /// the OS's choice, with 127.0.0.2.. as fallback when ports run out.
    pub source_addrs: Vec<String>,
    /// `run`: interleaved rounds — rtmc and each peer take turns this many
    /// times each, every fleet connected once (1 = one phase each).
    pub rounds: usize,
    /// `run` with rounds: connect each kind's fleet at the start of each of
    /// its phases and close it after, even when the open-file limit could
    /// hold every fleet at once (it is done anyway when it cannot).
    pub fleets_per_phase: bool,
}

impl Default for LoadProfile {
    fn default() -> Self {
        Self {
            clients: 100,
            connects_per_sec: 1000.0,
            rate_per_sec: 200.0,
            duration_secs: 10.0,
            body_bytes: 16,
            publish_via: PublishVia::Tcp,
            tcp_publishers: 2,
            http_concurrency: 256,
            drain_timeout_secs: 10.0,
            connect_timeout_ms: 20_000,
            witnesses: 4,
            source_addrs: Vec::new(),
            rounds: 1,
            fleets_per_phase: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TargetProfile {
    /// Server addresses of a running deployment; empty = bring up an embedded stack.
    pub servers: Vec<String>,
    /// Gateway base URL of a running deployment (for HTTP publishing).
    pub gateway: Option<String>,
    /// API key for the gateway.
    pub api_key: Option<String>,
    /// Users are `<user_prefix>-<i>`: receivers 0..clients, then publishers, then a probe.
    pub user_prefix: String,
    /// Their password (embedded: the kit's test password).
    pub password: Option<String>,
    /// Server nodes of the embedded stack.
    pub server_nodes: usize,
    /// Server process ids to include in the self-check (target mode).
    pub server_pids: Vec<u32>,
}

impl Default for TargetProfile {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            gateway: None,
            api_key: None,
            user_prefix: "lg".into(),
            password: None,
            server_nodes: 1,
            server_pids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FloorProfile {
    /// Run the Redis pub/sub floor after the rtmc phase.
    pub enabled: bool,
    /// `host:port` of a Redis to use; unset = the embedded stack's Redis.
    pub redis: Option<String>,
    /// The pub/sub channel.
    pub channel: String,
    /// The redis-server pid whose CPU the floor reports when the Redis is
    /// not the embedded one (the embedded container's is found by itself).
    pub redis_pid: Option<u32>,
}

impl Default for FloorProfile {
    fn default() -> Self {
        Self {
            enabled: true,
            redis: None,
            channel: "rtmc-loadgen-floor".into(),
            redis_pid: None,
        }
    }
}

/// A yardstick measured after rtmc at the same load (design.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// The Redis pub/sub floor.
    Floor,
    /// NATS core pub/sub.
    Nats,
    /// NATS JetStream: a file-backed stream, publishes awaited for their ack.
    #[value(name = "jetstream")]
    JetStream,
}

/// The NATS peers (loadgen/README.md, "The NATS peers"); off unless asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsProfile {
    /// Run the NATS core pub/sub peer after the floor.
    pub core: bool,
    /// Run the NATS JetStream peer after that.
    pub jetstream: bool,
    /// `nats://host:port` of a nats-server (with JetStream for that peer);
    /// unset = loadgen starts one in a container (the test kit's image).
    pub url: Option<String>,
    /// Subjects are `<subject>.<run id>.…`; the stream is named after the run.
    pub subject: String,
}

impl Default for NatsProfile {
    fn default() -> Self {
        Self {
            core: false,
            jetstream: false,
            url: None,
            subject: "rtmc-loadgen".into(),
        }
    }
}

impl Profile {
    /// Runs exactly the peers listed (`--peers floor,nats,jetstream`).
    pub fn set_peers(&mut self, peers: &[Peer]) {
        self.floor.enabled = peers.contains(&Peer::Floor);
        self.nats.core = peers.contains(&Peer::Nats);
        self.nats.jetstream = peers.contains(&Peer::JetStream);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SloProfile {
    /// Publish→receive p99 the run must meet (and ramp steps must meet).
    pub p99_ms: Option<f64>,
    /// Connect + login failures tolerated, in percent of clients.
    pub max_connect_error_pct: f64,
    /// Publish failures tolerated, in percent of messages.
    pub max_publish_error_pct: f64,
}

impl Default for SloProfile {
    fn default() -> Self {
        Self {
            p99_ms: None,
            max_connect_error_pct: 0.0,
            max_publish_error_pct: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RampProfile {
    pub start_rate_per_sec: f64,
    /// Added per step (ignored when `factor` is set).
    pub step_rate_per_sec: f64,
    /// Multiplies the rate per step instead, e.g. 1.5.
    pub factor: Option<f64>,
    pub max_rate_per_sec: f64,
    pub step_duration_secs: f64,
    /// The SLO a step must meet when `slo.p99_ms` is unset.
    pub default_p99_ms: f64,
    /// Steps run at most (a bound on the run's length).
    pub max_steps: usize,
    /// Keep stepping past the first step that fails, up to `max_rate_per_sec`
    /// (or `max_steps`): an ingest ramp that shows the plateau beyond the knee.
    pub through: bool,
}

impl Default for RampProfile {
    fn default() -> Self {
        Self {
            start_rate_per_sec: 100.0,
            step_rate_per_sec: 100.0,
            factor: None,
            max_rate_per_sec: 5_000.0,
            step_duration_secs: 10.0,
            default_p99_ms: 50.0,
            max_steps: 20,
            through: false,
        }
    }
}

/// The raw loopback blaster, the physical reference for CPU per delivery
/// (`run --blaster`, `loadgen blaster`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlasterProfile {
    /// `run`: blast after the rounds, one frame per write and coalesced.
    pub enabled: bool,
    /// Frames per write of the coalesced blast.
    pub frames_per_write: usize,
    /// Each blast stops sending after this long.
    pub time_limit_secs: f64,
}

impl Default for BlasterProfile {
    fn default() -> Self {
        Self {
            enabled: false,
            frames_per_write: 16,
            time_limit_secs: 30.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputProfile {
    /// Report directory; unset = `reports/<timestamp>` under the current directory.
    pub out: Option<PathBuf>,
    /// Suppress the live line.
    pub quiet: bool,
}

/// A profile that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Profile {
    /// Reads a profile file; absent fields keep their defaults.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut p: Profile = toml::from_str(&text).map_err(|e| ProfileError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if p.name.is_empty() {
            p.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(p)
    }

    /// True when loadgen brings up its own stack.
    pub fn embedded(&self) -> bool {
        self.target.servers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::plan::WorkloadPlan;

    #[test]
    fn shipped_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        for name in ["smoke", "1k", "5k", "10k"] {
            let p = Profile::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(p.name, name);
            assert!(p.load.clients >= 100);
            assert!(p.workload.is_none(), "{name} is a global-room profile");
        }
    }

    #[test]
    fn shipped_room_workloads_draw_a_plan() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let global = Profile::load(&dir.join("global.toml")).unwrap();
        assert!(global.workload.is_none(), "global is today's workload");
        for name in [
            "many-small-rooms",
            "few-huge-rooms",
            "dm-heavy",
            "rooms-smoke",
        ] {
            let p = Profile::load(&dir.join(format!("{name}.toml"))).unwrap();
            let w = p
                .workload
                .as_ref()
                .unwrap_or_else(|| panic!("{name} has a [workload]"));
            let seed = w.seed.unwrap_or_else(|| panic!("{name} pins its seed"));
            let plan = WorkloadPlan::draw(
                w,
                p.load.clients,
                p.load.rate_per_sec,
                p.load.duration_secs,
                seed,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plan.assignment.memberships.len(), p.load.clients);
            // Under the server's default limits (docs/PROTOCOL.md §17.1).
            assert!(
                plan.assignment.sizes.iter().all(|&s| s <= 10_000),
                "{name}: room_full"
            );
            assert!(w.memberships_per_client <= 20, "{name}: join burst");
        }
    }

    #[test]
    fn a_profile_without_workload_serializes_as_before() {
        let p: Profile = toml::from_str("[load]\nclients = 7\n").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("workload"), "{json}");
        let p: Profile = toml::from_str("[workload]\nrooms = 3\n").unwrap();
        assert_eq!(p.workload.map(|w| w.rooms), Some(3));
    }

    #[test]
    fn absent_fields_keep_defaults_and_unknown_ones_fail() {
        let p: Profile = toml::from_str("[load]\nclients = 7\n").unwrap();
        assert_eq!(p.load.clients, 7);
        assert_eq!(p.load.rate_per_sec, LoadProfile::default().rate_per_sec);
        assert!(p.floor.enabled);
        assert!(
            !p.nats.core && !p.nats.jetstream,
            "the NATS peers are opt-in"
        );
        assert!(toml::from_str::<Profile>("[load]\nclientz = 7\n").is_err());
    }

    #[test]
    fn peers_select_exactly_the_yardsticks_listed() {
        let mut p: Profile =
            toml::from_str("[nats]\njetstream = true\nurl = \"nats://127.0.0.1:4222\"\n").unwrap();
        assert!(p.nats.jetstream && !p.nats.core);
        assert_eq!(p.nats.url.as_deref(), Some("nats://127.0.0.1:4222"));
        p.set_peers(&[Peer::Nats, Peer::JetStream]);
        assert!(!p.floor.enabled && p.nats.core && p.nats.jetstream);
        p.set_peers(&[Peer::Floor]);
        assert!(p.floor.enabled && !p.nats.core && !p.nats.jetstream);
        assert!(toml::from_str::<Profile>("[nats]\ncore = 1\n").is_err());
    }
}
