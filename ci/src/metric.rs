//! What the gate judges: the named metrics of one loadgen round, the
//! direction in which each is better, and their keys in `baseline.toml` and
//! the reports. Every other module speaks in these names.

use serde::{Deserialize, Serialize};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latencies: a ratio above 1 is a regression.
    Lower,
    /// Throughput: a ratio below 1 is a regression.
    Higher,
}

/// One judged metric of a round (the rtmc phase, or the floor phase as the
/// control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// publish→receive latency, 50th percentile (ms).
    RecvP50,
    /// publish→receive latency, 99th percentile (ms).
    RecvP99,
    /// publish→receive latency, 99.9th percentile (ms).
    #[serde(rename = "recv_p99_9")]
    RecvP99_9,
    /// publish→ack latency, 50th percentile (ms).
    AckP50,
    /// publish→ack latency, 99th percentile (ms).
    AckP99,
    /// publish→ack latency, 99.9th percentile (ms).
    #[serde(rename = "ack_p99_9")]
    AckP99_9,
    /// Deliveries per second over the publish window.
    DeliveriesPerSec,
    /// Server CPU-seconds (user + system, every server node) per million
    /// deliveries: what a delivery costs, far steadier than latency.
    #[serde(rename = "server_cpu_secs_per_million_deliveries")]
    ServerCpuSecsPerMillion,
    /// Server resident memory per idle client (KiB), from the first fleet's
    /// bring-up.
    ServerKibPerIdleClient,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 9] = [
        Metric::RecvP50,
        Metric::RecvP99,
        Metric::RecvP99_9,
        Metric::AckP50,
        Metric::AckP99,
        Metric::AckP99_9,
        Metric::DeliveriesPerSec,
        Metric::ServerCpuSecsPerMillion,
        Metric::ServerKibPerIdleClient,
    ];

    /// The name in `gate.json`; `baseline.toml` keys its threshold `<key>_pct`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::RecvP50 => "recv_p50",
            Metric::RecvP99 => "recv_p99",
            Metric::RecvP99_9 => "recv_p99_9",
            Metric::AckP50 => "ack_p50",
            Metric::AckP99 => "ack_p99",
            Metric::AckP99_9 => "ack_p99_9",
            Metric::DeliveriesPerSec => "deliveries_per_sec",
            Metric::ServerCpuSecsPerMillion => "server_cpu_secs_per_million_deliveries",
            Metric::ServerKibPerIdleClient => "server_kib_per_idle_client",
        }
    }

    /// What a person reads in the table, with the unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::RecvP50 => "publish→receive p50 ms",
            Metric::RecvP99 => "publish→receive p99 ms",
            Metric::RecvP99_9 => "publish→receive p99.9 ms",
            Metric::AckP50 => "publish→ack p50 ms",
            Metric::AckP99 => "publish→ack p99 ms",
            Metric::AckP99_9 => "publish→ack p99.9 ms",
            Metric::DeliveriesPerSec => "deliveries/s",
            Metric::ServerCpuSecsPerMillion => "server CPU-s per M deliveries",
            Metric::ServerKibPerIdleClient => "server KiB per idle client",
        }
    }

    /// Whether a round may lack the metric (older reports, a server loadgen
    /// cannot weigh): the gate then leaves it out rather than refusing the
    /// round. The latency and throughput metrics are always there.
    pub fn optional(self) -> bool {
        matches!(
            self,
            Metric::ServerCpuSecsPerMillion | Metric::ServerKibPerIdleClient
        )
    }

    pub fn better(self) -> Better {
        match self {
            Metric::DeliveriesPerSec => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// A stable small number per metric (seeds each metric's bootstrap, so
    /// one metric's interval does not depend on which others are judged).
    pub fn index(self) -> u64 {
        Metric::ALL.iter().position(|m| *m == self).unwrap_or(0) as u64
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_serde() {
        for m in Metric::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.key()));
            let back: Metric = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn only_throughput_is_better_higher() {
        let higher: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|m| m.better() == Better::Higher)
            .collect();
        assert_eq!(higher, [Metric::DeliveriesPerSec]);
    }
}
