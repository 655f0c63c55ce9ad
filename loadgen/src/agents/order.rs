//! The agents' control API, JSON over HTTP: the coordinator's work order
//! and start/drain orders, the agent's answers (hello, clock, status,
//! results) and its errors, each with a machine-readable code. Histograms
//! travel as HdrHistogram V2 + deflate, base64 (what interval logs hold).

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

use crate::engine::accounting::DeliveryTotals;
use crate::engine::phase::{PhaseReport, PublishedCounts};
use crate::measure::histogram::{merge_into, new_histogram, LatencyHistogram};
use crate::report::types::ConnectReport;

/// Version of this API; an agent and a coordinator must speak the same.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;
/// Largest message body a work order may ask for, bytes.
pub const MAX_BODY_BYTES: usize = 60 * 1024;

/// `GET /v1/hello`: who the agent is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`AGENT_PROTOCOL_VERSION`] of the agent.
    pub protocol_version: u32,
    /// The agent's loadgen crate version.
    pub loadgen_version: String,
    /// What the agent is doing (`idle`, `preparing`, `ready`, `running`,
    /// `finished`, `failed`).
    pub stage: String,
}

/// `GET /v1/clock`: the agent's wall clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ClockReading {
    /// µs since the epoch, read when the request was handled.
    pub now_us: u64,
}

/// `POST /v1/prepare`: one agent's part of a run. The agent connects its
/// receivers and publishers' targets, then waits for the start order.
#[derive(Clone, Serialize, Deserialize)]
pub struct WorkOrder {
    /// The coordinator's [`AGENT_PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The agent's name in the run (its address as the coordinator knows it).
    pub agent: String,
    /// The run's id: in every message id, the same on every agent.
    pub run_id: u32,
    /// rtmc server nodes (`host:port`); client `i` uses `servers[i % n]`.
    pub servers: Vec<String>,
    /// Users are `<user_prefix>-<index>`.
    pub user_prefix: String,
    /// Their password (never logged).
    pub password: String,
    /// Index of the first receiving client's user.
    pub first_client: usize,
    /// Receiving clients this agent runs.
    pub clients: usize,
    /// Global index of this agent's first TCP publisher.
    pub first_channel: u32,
    /// TCP publishers this agent runs.
    pub channels: u32,
    /// TCP publishers of the whole run (the schedule's slots).
    pub total_channels: u32,
    /// Publisher `k` logs in as user `publisher_user_base + k`.
    pub publisher_user_base: usize,
    /// The whole run's publish rate, messages per second.
    pub rate_per_sec: f64,
    /// Seconds of publishing.
    pub duration_secs: f64,
    /// Bytes of each message body.
    pub body_bytes: usize,
    /// Client connections started per second on this agent.
    pub connects_per_sec: f64,
    /// Bound on one client's connect + login, ms.
    pub connect_timeout_ms: u64,
    /// Seconds the receivers may take to drain after publishing.
    pub drain_timeout_secs: f64,
    /// Receivers (the first n) that record which publisher sequences arrived.
    pub witnesses: usize,
    /// Local source addresses for client sockets; empty = the OS's choice.
    pub source_addrs: Vec<String>,
    /// Largest frame a client accepts, bytes.
    pub max_frame_bytes: usize,
}

impl std::fmt::Debug for WorkOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkOrder")
            .field("agent", &self.agent)
            .field("run_id", &self.run_id)
            .field("servers", &self.servers)
            .field("clients", &(self.first_client, self.clients))
            .field("channels", &(self.first_channel, self.channels))
            .field("rate_per_sec", &self.rate_per_sec)
            .finish_non_exhaustive()
    }
}

/// Why the agent refused a request; `code()` is what goes on the wire.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrderError {
    #[error("agent speaks control protocol {agent}, the coordinator {coordinator}")]
    VersionMismatch { agent: u32, coordinator: u32 },
    #[error("bad work order: {0}")]
    BadWorkOrder(String),
    #[error("the agent is {stage}; {wanted}")]
    WrongStage { stage: String, wanted: String },
}

impl OrderError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::VersionMismatch { .. } => "version_mismatch",
            OrderError::BadWorkOrder(_) => "bad_work_order",
            OrderError::WrongStage { .. } => "wrong_stage",
        }
    }

    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            OrderError::VersionMismatch { .. } | OrderError::WrongStage { .. } => 409,
            OrderError::BadWorkOrder(_) => 400,
        }
    }
}

/// An error answer: `{"code": …, "message": …}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable: `version_mismatch`, `bad_work_order`, `wrong_stage`, `bad_json`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl WorkOrder {
    /// The order's server addresses, or why it cannot be run.
    pub fn validate(&self) -> Result<Vec<SocketAddr>, OrderError> {
        if self.protocol_version != AGENT_PROTOCOL_VERSION {
            return Err(OrderError::VersionMismatch {
                agent: AGENT_PROTOCOL_VERSION,
                coordinator: self.protocol_version,
            });
        }
        let bad = |m: String| Err(OrderError::BadWorkOrder(m));
        if self.clients == 0 && self.channels == 0 {
            return bad("neither clients nor publishers".into());
        }
        if self.total_channels == 0 || self.first_channel + self.channels > self.total_channels {
            return bad(format!(
                "publishers {}..{} outside the run's {}",
                self.first_channel,
                self.first_channel + self.channels,
                self.total_channels
            ));
        }
        for (name, v) in [
            ("rate_per_sec", self.rate_per_sec),
            ("duration_secs", self.duration_secs),
            ("connects_per_sec", self.connects_per_sec),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, not {v}"));
            }
        }
        if !(self.drain_timeout_secs.is_finite() && self.drain_timeout_secs >= 0.0) {
            return bad("drain_timeout_secs must be ≥ 0".into());
        }
        if self.body_bytes > MAX_BODY_BYTES {
            return bad(format!(
                "body_bytes {} above {MAX_BODY_BYTES}",
                self.body_bytes
            ));
        }
        if self.servers.is_empty() {
            return bad("no server address".into());
        }
        self.servers
            .iter()
            .map(|s| {
                s.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| OrderError::BadWorkOrder(format!("server {s:?} is no address")))
            })
            .collect()
    }
}

/// `POST /v1/prepare`'s answer: the agent's fleet is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    /// The receivers' bring-up.
    pub connect: ConnectReport,
}

/// `POST /v1/start`: when to publish.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StartOrder {
    /// Publishing starts at this time on the agent's own clock (the
    /// coordinator's start time plus the agent's measured offset), µs.
    pub start_at_agent_us: u64,
    /// The same moment on the run's (coordinator's) clock, µs: messages
    /// are stamped, and latencies read, on that clock.
    pub start_at_run_us: u64,
    /// Agent clock minus the run's clock, µs (the measured skew).
    pub clock_offset_us: i64,
    /// The head before publishing, as the coordinator's probe read it.
    pub head_before: u64,
}

/// `POST /v1/drain`: every agent has published; drain to this head.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DrainOrder {
    /// The head every receiver must reach.
    pub final_head: u64,
}

/// `GET /v1/status` while a run is on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    /// `idle`, `preparing`, `ready`, `running`, `finished` or `failed`.
    pub stage: String,
    /// Set once this agent's publishers are done.
    pub published: Option<PublishedCounts>,
    /// Counters since the fleet connected.
    pub live: LiveFigures,
    /// Why the agent failed, when it did.
    pub failure: Option<String>,
}

/// An agent's counters and its latest finished one-second interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveFigures {
    /// Messages received by this agent's clients.
    pub deliveries: u64,
    /// Messages its publishers sent.
    pub published: u64,
    /// Of those, acknowledged.
    pub acked: u64,
    /// Publishes refused or failed.
    pub publish_errors: u64,
    /// Receivers connected now.
    pub connected: u64,
    /// Receivers the server disconnected.
    pub disconnects: u64,
    /// Number of the latest interval (1, 2, …; 0 = none yet).
    pub interval_number: u64,
    /// That interval's publish→receive histogram, encoded.
    pub interval: Option<EncodedHistogram>,
}

/// `GET /v1/results`: the finished phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentResults {
    /// The agent's name in the run.
    pub agent: String,
    /// The receivers' bring-up.
    pub connect: ConnectReport,
    /// The phase as this agent measured it (its receivers, its publishers).
    pub phase: PhaseReport,
    /// Its whole interval log (tags `rtmc`, `rtmc-ack`), the `latency.hlog` format.
    pub interval_log: String,
    /// Publisher sequences its publishers got acknowledged (bitset).
    pub acked_set: Vec<u64>,
    /// Per witness receiver, the publisher sequences it got (bitsets).
    pub witness_sets: Vec<Vec<u64>>,
    /// CPU-seconds the agent process spent from the start to the drain.
    pub cpu_seconds: Option<f64>,
    /// The agent's clock at the start and when drained, µs.
    pub clock: AgentClockReadings,
}

/// When the agent started and finished, on its own clock.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct AgentClockReadings {
    /// When publishing started, µs since the epoch.
    pub started_us: u64,
    /// When the receivers drained, µs since the epoch.
    pub drained_us: u64,
}

impl AgentResults {
    /// The accounting of this agent's receivers.
    pub fn accounting(&self) -> DeliveryTotals {
        self.phase.accounting
    }
}

/// A histogram as V2 + deflate, base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncodedHistogram(pub String);

/// Failure to decode an [`EncodedHistogram`].
#[derive(Debug, thiserror::Error)]
#[error("histogram: {0}")]
pub struct HistogramCodecError(String);

impl EncodedHistogram {
    /// Encodes `h`.
    pub fn of(h: &LatencyHistogram) -> Result<Self, HistogramCodecError> {
        use base64::Engine as _;
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| HistogramCodecError(format!("{e:?}")))?;
        Ok(Self(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ))
    }

    /// Decodes it into loadgen's histogram range.
    pub fn decode(&self) -> Result<LatencyHistogram, HistogramCodecError> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.0)
            .map_err(|e| HistogramCodecError(e.to_string()))?;
        let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(raw))
            .map_err(|e| HistogramCodecError(format!("{e:?}")))?;
        let mut out = new_histogram();
        merge_into(&mut out, &h);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn order() -> WorkOrder {
        WorkOrder {
            protocol_version: AGENT_PROTOCOL_VERSION,
            agent: "a".into(),
            run_id: 1,
            servers: vec!["127.0.0.1:7000".into()],
            user_prefix: "lg".into(),
            password: "secret".into(),
            first_client: 0,
            clients: 10,
            first_channel: 0,
            channels: 1,
            total_channels: 2,
            publisher_user_base: 20,
            rate_per_sec: 100.0,
            duration_secs: 1.0,
            body_bytes: 16,
            connects_per_sec: 1000.0,
            connect_timeout_ms: 5000,
            drain_timeout_secs: 5.0,
            witnesses: 2,
            source_addrs: vec![],
            max_frame_bytes: 65536,
        }
    }

    #[test]
    fn each_class_of_bad_order_gets_its_code() {
        assert!(order().validate().is_ok());
        let cases: Vec<(WorkOrder, &str)> = vec![
            (
                WorkOrder {
                    protocol_version: 99,
                    ..order()
                },
                "version_mismatch",
            ),
            (
                WorkOrder {
                    clients: 0,
                    channels: 0,
                    ..order()
                },
                "bad_work_order",
            ),
            (
                WorkOrder {
                    first_channel: 2,
                    ..order()
                },
                "bad_work_order",
            ),
            (
                WorkOrder {
                    rate_per_sec: f64::NAN,
                    ..order()
                },
                "bad_work_order",
            ),
            (
                WorkOrder {
                    servers: vec!["nowhere".into()],
                    ..order()
                },
                "bad_work_order",
            ),
            (
                WorkOrder {
                    body_bytes: MAX_BODY_BYTES + 1,
                    ..order()
                },
                "bad_work_order",
            ),
        ];
        for (o, code) in cases {
            let e = o.validate().expect_err("refused");
            assert_eq!(e.code(), code, "{e}");
        }
        assert!(!format!("{:?}", order()).contains("secret"));
    }

    #[test]
    fn a_histogram_survives_the_wire() {
        let mut h = new_histogram();
        for v in [10u64, 200, 3_000, 45_000] {
            h.record(v).unwrap();
        }
        let back = EncodedHistogram::of(&h).unwrap().decode().unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(EncodedHistogram("!!".into()).decode().is_err());
    }
}
