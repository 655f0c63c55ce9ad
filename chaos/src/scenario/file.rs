//! Scenario files (`chaos/scenarios/*.toml`): a load and the faults put on a
//! timeline while it runs. A file is read as [`ScenarioFile`] (its raw,
//! serde shape, written back as-is for a replay) and checked into a
//! [`Scenario`] whose faults are typed, or a [`ScenarioError`] that names
//! the fault and the field that is wrong. [`Scenario::random`] draws a
//! schedule from a seed: the same seed gives the same schedule. A
//! `[workload]` table (loadgen's room workload) makes the clients run the
//! protocol v2 room driver instead; such a scenario may kill server nodes
//! (`target = "server-<i>"`).
//!
//! ```toml
//! name = "broker-sigkill"
//! [load]
//! clients = 20
//! rate_per_sec = 50
//! duration = "20s"
//! publish = "http"
//! faults = [
//!   { at = "5s", for = "5s", fault = "sigkill", target = "rabbitmq" },
//!   { at = "12s", for = "4s", fault = "latency", link = "consumer-redis", latency_ms = 200 },
//! ]
//! ```

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rtmc_loadgen::workload::spec::WorkloadProfile;
use rtmc_testkit::services::Kind;
use serde::{Deserialize, Serialize};

use crate::proxy::toxics::Direction;
use crate::stack::Link;

/// The longest load a scenario may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// A scenario file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Shown in the report.
    #[serde(default)]
    pub name: String,
    /// The load that runs throughout.
    pub load: LoadFile,
    /// The faults, each with its window.
    #[serde(default)]
    pub faults: Vec<FaultFile>,
    /// A room workload (loadgen's `[workload]` table): the clients run the
    /// protocol v2 room driver with churn instead of the global room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadProfile>,
}

/// The `[load]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadFile {
    /// Receiving clients.
    #[serde(default = "default_clients")]
    pub clients: usize,
    /// Messages published per second (open loop).
    #[serde(default = "default_rate")]
    pub rate_per_sec: f64,
    /// How long publishing lasts (`"20s"`, `"1m"`, `"500ms"`).
    pub duration: String,
    /// `http` (the gateway) or `tcp` (a server session).
    #[serde(default = "default_publish")]
    pub publish: String,
    /// Server nodes; clients spread over them.
    #[serde(default = "default_servers")]
    pub servers: usize,
    /// Bytes of each message body.
    #[serde(default = "default_body_bytes")]
    pub body_bytes: usize,
}

fn default_clients() -> usize {
    20
}
fn default_rate() -> f64 {
    50.0
}
fn default_publish() -> String {
    "http".into()
}
fn default_servers() -> usize {
    1
}
fn default_body_bytes() -> usize {
    100
}

/// One `faults` entry as written: every field any fault takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// When it starts, from the start of publishing.
    pub at: String,
    /// How long it lasts; then it is undone.
    #[serde(rename = "for")]
    pub lasts: String,
    /// What: see [`FAULT_NAMES`].
    pub fault: String,
    /// A service (`rabbitmq`, `redis`, `postgres`), a server node
    /// (`server-<i>`, room scenarios) or `clients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A link (`consumer-redis`, `client-server-0`, …) for proxy faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_kb_per_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_size_bytes: Option<u64>,
    /// `upstream` or `downstream` (partition, hold); both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Share of the clients a client fault acts on (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Whether dropped clients resume when they come back (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
}

/// Every fault a scenario can name.
pub const FAULT_NAMES: [&str; 13] = [
    "sigkill",
    "stop",
    "pause",
    "latency",
    "bandwidth",
    "black_hole",
    "down",
    "hold",
    "partition",
    "slicer",
    "disconnect_storm",
    "half_open",
    "slow_readers",
];

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub load: Load,
    /// In file order.
    pub faults: Vec<TimedFault>,
    /// What it was read from, for the replayable copy.
    pub file: ScenarioFile,
    /// The room workload, if the clients run one.
    pub workload: Option<WorkloadProfile>,
}

/// How publishing travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishPath {
    Http,
    Tcp,
}

/// The checked load.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub clients: usize,
    pub rate_per_sec: f64,
    pub duration: Duration,
    pub publish: PublishPath,
    pub servers: usize,
    pub body_bytes: usize,
}

/// One fault with its window.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedFault {
    /// From the start of publishing.
    pub at: Duration,
    pub lasts: Duration,
    pub fault: FaultSpec,
}

impl TimedFault {
    /// When it is undone.
    pub fn end(&self) -> Duration {
        self.at + self.lasts
    }
}

/// An outage of a service container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// SIGKILL, started again at the end.
    Sigkill,
    /// Graceful stop, started again at the end.
    Stop,
    /// Paused, unpaused at the end.
    Pause,
}

/// A fault on a link's proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkFault {
    Latency {
        latency_ms: u64,
        jitter_ms: u64,
    },
    Bandwidth {
        rate_kb_per_sec: u64,
    },
    /// `timeout` 0 both ways: bytes vanish until removed.
    BlackHole,
    /// The proxy refuses and closes connections.
    Down,
    /// Bytes held, released at once at the end.
    Hold {
        direction: Option<Direction>,
    },
    /// Bytes dropped one way (or both), healed at the end.
    Partition {
        direction: Option<Direction>,
    },
    /// Chunks cut into pieces of about this size.
    Slicer {
        average_size_bytes: u64,
    },
}

/// A fault loadgen's clients act out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientFaultSpec {
    /// Dropped at once, reconnecting at once at the end.
    DisconnectStorm { fraction: f64, resume: bool },
    /// Stop reading (socket open), read again at the end.
    HalfOpen { fraction: f64 },
    /// Read at a bounded rate, normally again at the end.
    SlowReaders { fraction: f64, bytes_per_sec: u64 },
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultSpec {
    Outage {
        service: Kind,
        outage: Outage,
    },
    /// An outage of server node `node` (an `rtmc server` process).
    Node {
        node: usize,
        outage: Outage,
    },
    Link {
        link: Link,
        fault: LinkFault,
    },
    Clients(ClientFaultSpec),
}

impl FaultSpec {
    /// What it acts on, for overlap checks and the report
    /// (`rabbitmq`, `consumer-redis`, `clients`).
    pub fn target(&self) -> String {
        match self {
            FaultSpec::Outage { service, .. } => {
                crate::stack::outage::service_name(*service).to_owned()
            }
            FaultSpec::Node { node, .. } => format!("server-{node}"),
            FaultSpec::Link { link, .. } => link.name(),
            FaultSpec::Clients(_) => "clients".into(),
        }
    }

    /// Two faults on the same target can run together only when both are
    /// toxics of different kinds on one link.
    fn compatible(&self, other: &FaultSpec) -> bool {
        if self.target() != other.target() {
            return true;
        }
        let toxic = |f: &FaultSpec| match f {
            FaultSpec::Link { fault, .. } => match fault {
                LinkFault::Latency { .. } => Some("latency"),
                LinkFault::Bandwidth { .. } => Some("bandwidth"),
                LinkFault::BlackHole => Some("black_hole"),
                LinkFault::Slicer { .. } => Some("slicer"),
                _ => None,
            },
            _ => None,
        };
        matches!((toxic(self), toxic(other)), (Some(a), Some(b)) if a != b)
    }
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read it: {message}")]
    Read { message: String },
    #[error("scenario TOML: {0}")]
    Toml(String),
    #[error("load: {0}")]
    Load(String),
    #[error("fault {index} ({fault}): {message}")]
    Fault {
        /// 1-based, in file order.
        index: usize,
        fault: String,
        message: String,
    },
    #[error("faults {first} and {second} both act on {target} during overlapping windows ({first_window} and {second_window}); one of them cannot take effect")]
    Overlap {
        first: usize,
        second: usize,
        target: String,
        first_window: String,
        second_window: String,
    },
}

/// Parses `"5s"`, `"500ms"`, `"1.5s"`, `"2m"`.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => return Err(format!("{s:?} has no unit (use ms, s or m)")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"5s\" or \"500ms\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s or m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `5s`, `1.5s`, `250ms` — the inverse of [`parse_span`].
pub fn format_span(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The link named `name` among a stack with `servers` server nodes.
pub fn parse_link(name: &str, servers: usize) -> Result<Link, String> {
    let all: Vec<Link> = Link::SERVICE_LINKS
        .into_iter()
        .chain((0..servers).map(Link::ClientServer))
        .collect();
    all.iter()
        .copied()
        .find(|l| l.name() == name)
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(|l| l.name()).collect();
            format!("unknown link {name:?}; links: {}", names.join(", "))
        })
}

fn parse_service(name: &str) -> Result<Kind, String> {
    match name {
        "rabbitmq" => Ok(Kind::RabbitMq),
        "redis" => Ok(Kind::Redis),
        "postgres" | "postgresql" => Ok(Kind::Postgres),
        other => Err(format!(
            "unknown target {other:?}; targets: rabbitmq, redis, postgres"
        )),
    }
}

/// A server node that can be taken down: `1 ..< servers` (node 0 runs in
/// the runner's process, the others as `rtmc server` processes).
fn parse_node(node: &str, servers: usize) -> Result<usize, String> {
    match node.parse::<usize>() {
        Ok(n) if n >= 1 && n < servers => Ok(n),
        _ if servers < 2 => Err(format!(
            "unknown server node {node:?}: node 0 runs in process and cannot fail; raise load.servers"
        )),
        _ => Err(format!(
            "unknown server node {node:?}; nodes that can fail: server-1 to server-{}",
            servers - 1
        )),
    }
}

fn parse_direction(d: Option<&str>) -> Result<Option<Direction>, String> {
    match d {
        None => Ok(None),
        Some("upstream") => Ok(Some(Direction::Upstream)),
        Some("downstream") => Ok(Some(Direction::Downstream)),
        Some(other) => Err(format!(
            "unknown direction {other:?}; use upstream or downstream"
        )),
    }
}

impl FaultFile {
    /// The typed fault, for a stack with `servers` server nodes.
    fn spec(&self, servers: usize) -> Result<FaultSpec, String> {
        if let Some(outage) = self.outage() {
            if let Some(node) = self.target()?.strip_prefix("server-") {
                return Ok(FaultSpec::Node {
                    node: parse_node(node, servers)?,
                    outage,
                });
            }
            let service = parse_service(self.target()?)?;
            return Ok(FaultSpec::Outage { service, outage });
        }
        if let Some(fault) = self.link_fault()? {
            let link = self.link(servers)?;
            return Ok(FaultSpec::Link { link, fault });
        }
        if let Some(fault) = self.client_fault()? {
            return Ok(FaultSpec::Clients(fault));
        }
        Err(format!(
            "unknown fault {:?}; faults: {}",
            self.fault,
            FAULT_NAMES.join(", ")
        ))
    }

    /// The outage this fault names, if it names one.
    fn outage(&self) -> Option<Outage> {
        match self.fault.as_str() {
            "sigkill" => Some(Outage::Sigkill),
            "stop" => Some(Outage::Stop),
            "pause" => Some(Outage::Pause),
            _ => None,
        }
    }

    /// The proxy fault this fault names with its parameters, if it names one.
    fn link_fault(&self) -> Result<Option<LinkFault>, String> {
        let fault = match self.fault.as_str() {
            "latency" => LinkFault::Latency {
                latency_ms: self.positive(self.latency_ms, "latency_ms")?,
                jitter_ms: self.jitter_ms.unwrap_or(0),
            },
            "bandwidth" => LinkFault::Bandwidth {
                rate_kb_per_sec: self.positive(self.rate_kb_per_sec, "rate_kb_per_sec")?,
            },
            "black_hole" => LinkFault::BlackHole,
            "down" => LinkFault::Down,
            "hold" => LinkFault::Hold {
                direction: parse_direction(self.direction.as_deref())?,
            },
            "partition" => LinkFault::Partition {
                direction: parse_direction(self.direction.as_deref())?,
            },
            "slicer" => LinkFault::Slicer {
                average_size_bytes: self.average_size_bytes.unwrap_or(1),
            },
            _ => return Ok(None),
        };
        Ok(Some(fault))
    }

    /// The client fault this fault names with its parameters, if it names one.
    fn client_fault(&self) -> Result<Option<ClientFaultSpec>, String> {
        let fault = match self.fault.as_str() {
            "disconnect_storm" => ClientFaultSpec::DisconnectStorm {
                fraction: self.fraction()?,
                resume: self.resume.unwrap_or(true),
            },
            "half_open" => ClientFaultSpec::HalfOpen {
                fraction: self.fraction()?,
            },
            "slow_readers" => ClientFaultSpec::SlowReaders {
                fraction: self.fraction()?,
                bytes_per_sec: self.positive(self.bytes_per_sec, "bytes_per_sec")?,
            },
            _ => return Ok(None),
        };
        Ok(Some(fault))
    }

    fn target(&self) -> Result<&str, String> {
        self.target
            .as_deref()
            .ok_or_else(|| format!("{} needs a target", self.fault))
    }

    fn link(&self, servers: usize) -> Result<Link, String> {
        let name = self
            .link
            .as_deref()
            .ok_or_else(|| format!("{} needs a link", self.fault))?;
        parse_link(name, servers)
    }

    /// The fraction of clients a client fault hits (0.5 when not given).
    fn fraction(&self) -> Result<f64, String> {
        if self.target()? != "clients" {
            return Err(format!("{} needs target = \"clients\"", self.fault));
        }
        let f = self.fraction.unwrap_or(0.5);
        if !(f > 0.0 && f <= 1.0) {
            return Err(format!("fraction {f} is not in (0, 1]"));
        }
        Ok(f)
    }

    /// A parameter that must be given and above zero.
    fn positive(&self, value: Option<u64>, name: &str) -> Result<u64, String> {
        value
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{} needs {name} > 0", self.fault))
    }
}

impl LoadFile {
    fn check(&self) -> Result<Load, String> {
        let duration = parse_span(&self.duration)?;
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(format!(
                "duration {} must be above 0 and at most {}",
                self.duration,
                format_span(MAX_DURATION)
            ));
        }
        if self.clients == 0 {
            return Err("clients must be at least 1".into());
        }
        if !(self.rate_per_sec > 0.0 && self.rate_per_sec.is_finite()) {
            return Err(format!(
                "rate_per_sec {} must be above 0",
                self.rate_per_sec
            ));
        }
        if self.servers == 0 {
            return Err("servers must be at least 1".into());
        }
        let publish = match self.publish.as_str() {
            "http" => PublishPath::Http,
            "tcp" => PublishPath::Tcp,
            other => return Err(format!("unknown publish path {other:?}; use http or tcp")),
        };
        Ok(Load {
            clients: self.clients,
            rate_per_sec: self.rate_per_sec,
            duration,
            publish,
            servers: self.servers,
            body_bytes: self.body_bytes,
        })
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_path(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            message: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks scenario TOML.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        Self::check(file)
    }

    /// Checks a scenario as written: the load, each fault (its name,
    /// target or link, parameters, and window within the load's duration),
    /// and that no two faults on one target overlap unless both are toxics
    /// of different kinds on one link.
    pub fn check(file: ScenarioFile) -> Result<Scenario, ScenarioError> {
        let load = file.load.check().map_err(ScenarioError::Load)?;
        let mut faults = Vec::new();
        for (k, f) in file.faults.iter().enumerate() {
            let err = |message: String| ScenarioError::Fault {
                index: k + 1,
                fault: f.fault.clone(),
                message,
            };
            let at = parse_span(&f.at).map_err(|m| err(format!("at: {m}")))?;
            let lasts = parse_span(&f.lasts).map_err(|m| err(format!("for: {m}")))?;
            let fault = f.spec(load.servers).map_err(err)?;
            if lasts.is_zero() {
                return Err(err("for must be above 0".into()));
            }
            if at + lasts > load.duration {
                return Err(err(format!(
                    "its window {}–{} ends beyond the load's duration {}",
                    format_span(at),
                    format_span(at + lasts),
                    format_span(load.duration)
                )));
            }
            faults.push(TimedFault { at, lasts, fault });
        }
        check_overlaps(&faults)?;
        check_workload(&file, &load, &faults)?;
        Ok(Scenario {
            name: file.name.clone(),
            load,
            faults,
            workload: file.workload.clone(),
            file,
        })
    }

    /// The scenario as TOML, to replay as a file.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.file).unwrap_or_else(|e| format!("# not serializable: {e}\n"))
    }

    /// The links the faults act on (each needs a proxy).
    pub fn links(&self) -> Vec<Link> {
        let mut links: Vec<Link> = self
            .faults
            .iter()
            .filter_map(|f| match f.fault {
                FaultSpec::Link { link, .. } => Some(link),
                _ => None,
            })
            .collect();
        links.sort();
        links.dedup();
        links
    }

    /// A schedule drawn from `seed`: 20 clients at 50 msg/s over HTTP for
    /// `duration`, and one to three faults from a catalogue of safe ones,
    /// one after the other with quiet time between (the same seed gives
    /// the same schedule).
    pub fn random(seed: u64, duration: Duration) -> Result<Scenario, ScenarioError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let total_ms = duration.as_millis() as u64;
        let count = rng.random_range(1..=3u64);
        let slot_ms = total_ms / count;
        let mut faults = Vec::new();
        for k in 0..count {
            // Each fault sits in its own slot: quiet at both ends.
            let lasts_ms = (slot_ms * rng.random_range(25..=50u64) / 100).max(1000);
            let slack = slot_ms.saturating_sub(lasts_ms + 1000).max(1);
            let at_ms = k * slot_ms + 500 + rng.random_range(0..slack);
            let mut f = random_fault(&mut rng);
            f.at = format_span(Duration::from_millis(at_ms));
            f.lasts = format_span(Duration::from_millis(lasts_ms));
            faults.push(f);
        }
        Self::check(ScenarioFile {
            name: format!("random-{seed}"),
            load: LoadFile {
                clients: default_clients(),
                rate_per_sec: default_rate(),
                duration: format_span(duration),
                publish: default_publish(),
                servers: default_servers(),
                body_bytes: default_body_bytes(),
            },
            faults,
            workload: None,
        })
    }
}

/// One fault from the random catalogue, without its window.
fn random_fault(rng: &mut impl Rng) -> FaultFile {
    let service = |s: &str| Some(s.to_owned());
    let f = |fault: &str| FaultFile {
        fault: fault.into(),
        ..Default::default()
    };
    match rng.random_range(0..7u32) {
        0 => FaultFile {
            target: service(["rabbitmq", "redis"][rng.random_range(0..2)]),
            ..f("sigkill")
        },
        1 => FaultFile {
            target: service(["rabbitmq", "redis", "postgres"][rng.random_range(0..3)]),
            ..f("pause")
        },
        2 => FaultFile {
            link: service("consumer-redis"),
            latency_ms: Some(rng.random_range(50..=300)),
            ..f("latency")
        },
        3 => FaultFile {
            link: service("gateway-rabbitmq"),
            ..f("black_hole")
        },
        4 => FaultFile {
            link: service(["consumer-rabbitmq", "server-redis"][rng.random_range(0..2)]),
            ..f("hold")
        },
        5 => FaultFile {
            target: service("clients"),
            fraction: Some(0.5),
            ..f("disconnect_storm")
        },
        _ => FaultFile {
            target: service("clients"),
            fraction: Some(0.25),
            bytes_per_sec: Some(20_000),
            ..f("slow_readers")
        },
    }
}

/// A room workload must suit the load's clients; it publishes over TCP
/// (its rooms' owners), and its clients are the room driver's, so client
/// faults need the global room. Server node outages need a room workload
/// (its driver logs in again after losing its node).
fn check_workload(
    file: &ScenarioFile,
    load: &Load,
    faults: &[TimedFault],
) -> Result<(), ScenarioError> {
    let fault_err = |k: usize, message: &str| ScenarioError::Fault {
        index: k + 1,
        fault: file.faults[k].fault.clone(),
        message: message.to_owned(),
    };
    for (k, f) in faults.iter().enumerate() {
        match (&f.fault, &file.workload) {
            (FaultSpec::Clients(_), Some(_)) => {
                return Err(fault_err(
                    k,
                    "client faults need the global room (no [workload])",
                ))
            }
            (FaultSpec::Node { .. }, None) => {
                return Err(fault_err(
                    k,
                    "server node outages need a room workload ([workload])",
                ))
            }
            _ => {}
        }
    }
    if let Some(w) = &file.workload {
        w.validate(load.clients)
            .map_err(|e| ScenarioError::Load(format!("workload: {}", e.0)))?;
    }
    Ok(())
}

fn check_overlaps(faults: &[TimedFault]) -> Result<(), ScenarioError> {
    let window = |f: &TimedFault| format!("{}–{}", format_span(f.at), format_span(f.end()));
    for (i, a) in faults.iter().enumerate() {
        for (j, b) in faults.iter().enumerate().skip(i + 1) {
            let overlap = a.at < b.end() && b.at < a.end();
            if overlap && !a.fault.compatible(&b.fault) {
                return Err(ScenarioError::Overlap {
                    first: i + 1,
                    second: j + 1,
                    target: a.fault.target(),
                    first_window: window(a),
                    second_window: window(b),
                });
            }
        }
    }
    Ok(())
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        let way = |d: &Option<Direction>| match d {
            Some(Direction::Upstream) => " upstream",
            Some(Direction::Downstream) => " downstream",
            None => "",
        };
        let target = self.target();
        match self {
            FaultSpec::Outage { outage, .. } | FaultSpec::Node { outage, .. } => {
                write!(f, "{target} {}", format!("{outage:?}").to_lowercase())
            }
            FaultSpec::Link { fault, .. } => match fault {
                LinkFault::Latency {
                    latency_ms,
                    jitter_ms,
                } => write!(f, "{target} latency {latency_ms} ms ± {jitter_ms} ms"),
                LinkFault::Bandwidth { rate_kb_per_sec } => {
                    write!(f, "{target} bandwidth {rate_kb_per_sec} KB/s")
                }
                LinkFault::BlackHole => write!(f, "{target} black hole"),
                LinkFault::Down => write!(f, "{target} down"),
                LinkFault::Hold { direction } => write!(f, "{target} hold{}", way(direction)),
                LinkFault::Partition { direction } => {
                    write!(f, "{target} partition{}", way(direction))
                }
                LinkFault::Slicer { average_size_bytes } => {
                    write!(f, "{target} slicer {average_size_bytes} B")
                }
            },
            FaultSpec::Clients(c) => match c {
                ClientFaultSpec::DisconnectStorm { fraction, resume } => write!(
                    f,
                    "disconnect storm {} of clients, {}",
                    pct(*fraction),
                    if *resume { "resuming" } else { "not resuming" }
                ),
                ClientFaultSpec::HalfOpen { fraction } => {
                    write!(f, "half-open {} of clients", pct(*fraction))
                }
                ClientFaultSpec::SlowReaders {
                    fraction,
                    bytes_per_sec,
                } => write!(
                    f,
                    "slow readers {} of clients at {bytes_per_sec} B/s",
                    pct(*fraction)
                ),
            },
        }
    }
}

impl fmt::Display for TimedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} for {}",
            self.fault,
            format_span(self.at),
            format_span(self.lasts)
        )
    }
}

#[cfg(test)]
mod tests;
