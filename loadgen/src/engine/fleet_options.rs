//! What a fleet is asked to be: the protocol its clients speak
//! ([`Protocol`]: rtmc, Redis pub/sub, NATS core or JetStream) and its
//! options ([`FleetOptions`], from a load profile).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::measure::observe::SharedFleetObserver;
use crate::profile::LoadProfile;

/// Past this many clients one source address runs out of ephemeral ports.
const ONE_SOURCE_ADDR_MAX_CLIENTS: usize = 25_000;

/// What the simulated clients speak.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// rtmc protocol v1: log in as `users[i]`.
    Rtmc {
        users: Arc<Vec<String>>,
        password: String,
        max_frame_bytes: usize,
    },
    /// Redis pub/sub: `SUBSCRIBE channel`.
    RedisPubSub { channel: String },
    /// NATS core: `SUB subject`.
    Nats { subject: String },
    /// NATS JetStream: client `i` creates a push consumer on `stream`
    /// delivering to `<deliver_prefix>.<i>` ([`crate::engine::nats_sub`]).
    JetStream {
        stream: String,
        deliver_prefix: String,
    },
}

/// How to bring a fleet up.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub clients: usize,
    /// Connection attempts started per second.
    pub connects_per_sec: f64,
    /// Server addresses; client `i` uses `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    pub protocol: Protocol,
    /// Local addresses to bind before connecting, rotated; empty = the OS's choice.
    pub source_addrs: Vec<IpAddr>,
    /// Bound on connect + login of one client.
    pub connect_timeout_ms: u64,
    /// Clients (the first n) that also record which publisher sequences arrived.
    pub witnesses: usize,
    /// Only this run's messages count for the witnesses.
    pub run_id: u32,
    /// Sees every client's sessions and deliveries (the chaos recorder).
    pub observer: SharedFleetObserver,
}

/// A profile's fleet settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("source address {0:?} is not an IP address")]
    SourceAddr(String),
}

impl FleetOptions {
    /// The fleet a load profile describes, speaking `protocol` to `targets`.
    /// Without explicit source addresses, more clients than one address has
    /// ports for are spread over 127.0.0.1 … 127.0.0.8.
    pub fn for_load(
        load: &LoadProfile,
        targets: Vec<SocketAddr>,
        protocol: Protocol,
        run_id: u32,
    ) -> Result<Self, FleetError> {
        let mut source_addrs = load
            .source_addrs
            .iter()
            .map(|s| s.parse().map_err(|_| FleetError::SourceAddr(s.clone())))
            .collect::<Result<Vec<IpAddr>, _>>()?;
        if source_addrs.is_empty() && load.clients > ONE_SOURCE_ADDR_MAX_CLIENTS {
            source_addrs = (1..=8u8)
                .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .collect();
        }
        Ok(Self {
            clients: load.clients,
            connects_per_sec: load.connects_per_sec,
            targets,
            protocol,
            source_addrs,
            connect_timeout_ms: load.connect_timeout_ms,
            witnesses: load.witnesses,
            run_id,
            observer: None,
        })
    }

    /// How long bring-up may take: the connect ramp, one connect timeout
    /// for the last client started, and a margin.
    pub(super) fn bring_up_bound(&self) -> Duration {
        let ramp = Duration::from_secs_f64(self.clients as f64 / self.connects_per_sec.max(1.0));
        ramp + Duration::from_millis(self.connect_timeout_ms) + Duration::from_secs(5)
    }
}
