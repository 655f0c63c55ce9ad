//! The NATS peers (design.md §7): NATS core pub/sub and NATS JetStream,
//! phase kinds of the interleaved [rounds](crate::run::rounds) like rtmc and the
//! Redis floor, at the same load the way the floor is — the same
//! number of subscribers (fleet clients speaking NATS, [`crate::engine::nats_sub`]),
//! one publisher at the same rate sending payloads byte for byte like rtmc's
//! broadcasts, the same parser, histograms and accounting. JetStream is the
//! durable analogue of rtmc: a file-backed stream, each publish awaited for
//! its `PubAck`, every subscriber reading the stream through its own
//! consumer.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::engine::fleet::Fleet;
use crate::engine::fleet_options::{FleetError, FleetOptions, Protocol};
use crate::engine::live::LiveStats;
use crate::engine::phase::{HeadProbe, PhaseReport, PhaseSpec};
use crate::engine::publisher::{Channel, MessageShape};
use crate::measure::cpu::CpuWatch;
use crate::profile::Profile;
use crate::report::types::{ConnectReport, PeerReport, RunReport};

/// Which NATS peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsPeer {
    Core,
    JetStream,
}

impl NatsPeer {
    /// The phase label and interval-log tag.
    pub fn label(self) -> &'static str {
        match self {
            NatsPeer::Core => "nats",
            NatsPeer::JetStream => "jetstream",
        }
    }

    /// The stem of its publish→ack histogram file (`<label>-ack.hgrm`).
    pub fn ack_stem(self) -> &'static str {
        match self {
            NatsPeer::Core => "nats-ack",
            NatsPeer::JetStream => "jetstream-ack",
        }
    }

    /// The peers `profile` asks for, in listed order.
    pub fn wanted(profile: &Profile) -> Vec<NatsPeer> {
        let n = &profile.nats;
        [(n.core, NatsPeer::Core), (n.jetstream, NatsPeer::JetStream)]
            .into_iter()
            .filter_map(|(on, peer)| on.then_some(peer))
            .collect()
    }
}

/// The nats-server the peers run against.
#[derive(Debug, Clone)]
pub struct NatsServer {
    pub addr: SocketAddr,
    /// Its process ids on this host (the embedded container's), for the
    /// self-check's server CPU; empty for a server given by URL.
    pub pids: Vec<u32>,
    /// How the report names it.
    pub description: String,
}

impl NatsServer {
    /// `nats://…` for async-nats.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

/// A NATS peer that could not run (not a failed measurement).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("--nats {0:?}: expected nats://host:port or host:port")]
    BadUrl(String),
    #[error("starting nats-server: {0}")]
    Start(String),
    #[error("JetStream at {url}: {message}")]
    JetStream { url: String, message: String },
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// The address in `nats://host:port` or `host:port` (the first it resolves to).
pub fn parse_nats_url(url: &str) -> Result<SocketAddr, PeerError> {
    let bad = || PeerError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || !rest.contains(':') {
        return Err(bad());
    }
    rest.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Starts the run's nats-server: the profile's (`--nats URL`), or one in a
/// container, returned with it (the container goes when it is dropped).
/// Started once per run, before the rounds.
pub async fn start_server(
    profile: &Profile,
) -> Result<(NatsServer, Option<rtmc_testkit::Nats>), PeerError> {
    if let Some(url) = &profile.nats.url {
        let server = NatsServer {
            addr: parse_nats_url(url)?,
            pids: Vec::new(),
            description: url.clone(),
        };
        return Ok((server, None));
    }
    if !profile.output.quiet {
        eprintln!("loadgen: starting nats-server (JetStream, file storage) in a container…");
    }
    let nats = rtmc_testkit::Nats::start()
        .await
        .map_err(|e| PeerError::Start(e.to_string()))?;
    let server = NatsServer {
        addr: nats.addr(),
        pids: nats.pid().into_iter().collect(),
        description: format!("embedded nats-server (rtmc-nats image) at {}", nats.addr()),
    };
    Ok((server, Some(nats)))
}

/// What a NATS peer's fleet needs from the run.
pub struct PeerRun<'a> {
    pub profile: &'a Profile,
    pub server: &'a NatsServer,
    pub shape: Arc<MessageShape>,
    pub run_id: u32,
}

impl PeerRun<'_> {
    /// The JetStream stream of the run (one at a time: created when the
    /// JetStream fleet connects, deleted when it closes).
    fn stream(&self) -> String {
        format!("RTMC_LOADGEN_{:08X}", self.run_id)
    }

    fn base(&self) -> String {
        format!("{}.{:08x}", self.profile.nats.subject, self.run_id)
    }
}

/// Sets `peer` up (JetStream: a fresh stream, so its subscribers' consumers
/// start empty and the payload sequence starts over with the fleet),
/// connects its subscribers at the profile's load (judging the connect in
/// `report`) and returns the fleet with its first phase: one publisher at
/// the profile's rate, the nats-server's CPU watched.
pub async fn connect_peer(
    run: &PeerRun<'_>,
    peer: NatsPeer,
    report: &mut RunReport,
) -> Result<(Fleet, PhaseSpec, ConnectReport), PeerError> {
    let profile = run.profile;
    let load = &profile.load;
    let (protocol, channel) = peer_wiring(run, peer).await?;
    if !profile.output.quiet {
        eprintln!(
            "loadgen: {} — {} subscribers on {} at {} msg/s…",
            peer.label(),
            load.clients,
            run.server.addr,
            load.rate_per_sec
        );
    }
    let opts = FleetOptions::for_load(load, vec![run.server.addr], protocol, run.run_id)?;
    let fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    let connect = ConnectReport::of(load.clients, &fleet.summary);
    report.judge_connect(peer.label(), &connect, profile.slo.max_connect_error_pct);
    let mut spec = PhaseSpec::new(
        peer.label(),
        profile,
        vec![channel],
        run.shape.clone(),
        HeadProbe::Published,
        0,
        run.server.pids.clone(),
    );
    spec.server_cpu = vec![if run.server.pids.is_empty() {
        CpuWatch::not_measured("nats-server", "given by --nats: pid unknown")
    } else {
        CpuWatch::of("nats-server", run.server.pids.clone())
    }];
    Ok((fleet, spec, connect))
}

/// How `peer`'s subscribers and publisher reach the server: the fleet's
/// protocol and the publishing channel (JetStream: its stream created).
async fn peer_wiring(run: &PeerRun<'_>, peer: NatsPeer) -> Result<(Protocol, Channel), PeerError> {
    let base = run.base();
    let url = run.server.url();
    Ok(match peer {
        NatsPeer::Core => {
            let subject = format!("{base}.core");
            let channel = Channel::Nats {
                addr: run.server.addr,
                subject: subject.clone(),
            };
            (Protocol::Nats { subject }, channel)
        }
        NatsPeer::JetStream => {
            let subject = format!("{base}.js");
            let stream = run.stream();
            create_stream(&url, &stream, &subject).await?;
            let protocol = Protocol::JetStream {
                stream,
                deliver_prefix: format!("{base}.jsd"),
            };
            (
                protocol,
                Channel::JetStream {
                    url: url.clone(),
                    subject,
                },
            )
        }
    })
}

/// Tears down what [`connect_peer`] set up once its fleet is closed
/// (JetStream: the stream, its consumers and stored messages); a failure
/// is a note.
pub async fn disconnect_peer(run: &PeerRun<'_>, peer: NatsPeer, report: &mut RunReport) {
    if peer == NatsPeer::JetStream {
        let stream = run.stream();
        if let Err(e) = delete_stream(&run.server.url(), &stream).await {
            report
                .notes
                .push(format!("jetstream: stream {stream} not deleted: {e}"));
        }
    }
}

/// Records round 1's phase of `peer` as the report's `peers` entry.
pub fn record_peer(
    report: &mut RunReport,
    server: &NatsServer,
    connect: ConnectReport,
    phase: &PhaseReport,
) {
    if report.peers.iter().any(|p| p.label == phase.label) {
        return;
    }
    report.peers.push(PeerReport {
        label: phase.label.clone(),
        server: server.description.clone(),
        connect,
        phase: phase.clone(),
    });
}

async fn jetstream(url: &str) -> Result<async_nats::jetstream::Context, PeerError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| js_error(url, e))?;
    Ok(async_nats::jetstream::new(client))
}

fn js_error(url: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::JetStream {
        url: url.to_owned(),
        message: e.to_string(),
    }
}

/// The run's stream: file storage, one replica, no limits (nothing is
/// discarded during a phase), capturing `subject`.
pub async fn create_stream(url: &str, name: &str, subject: &str) -> Result<(), PeerError> {
    use async_nats::jetstream::stream::{Config, StorageType};
    let js = jetstream(url).await?;
    js.create_stream(Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| js_error(url, format!("creating stream {name}: {e}")))?;
    Ok(())
}

/// Deletes the run's stream and with it its consumers and stored messages.
pub async fn delete_stream(url: &str, name: &str) -> Result<(), PeerError> {
    let js = jetstream(url).await?;
    js.delete_stream(name).await.map_err(|e| js_error(url, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_name_an_address() {
        let want: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        assert_eq!(parse_nats_url("nats://127.0.0.1:4222").unwrap(), want);
        assert_eq!(parse_nats_url("127.0.0.1:4222").unwrap(), want);
        assert!(parse_nats_url("localhost:4222").unwrap().ip().is_loopback());
        for bad in [
            "",
            "nats://",
            "127.0.0.1",
            "nats://u:p@127.0.0.1:4222",
            "http://127.0.0.1:4222/x",
            "nats://127.0.0.1:notaport",
        ] {
            let e = parse_nats_url(bad).unwrap_err();
            assert!(e.to_string().contains("nats://host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn peers_run_in_a_fixed_order() {
        let mut p = Profile::default();
        assert!(NatsPeer::wanted(&p).is_empty());
        p.nats.jetstream = true;
        p.nats.core = true;
        assert_eq!(NatsPeer::wanted(&p), [NatsPeer::Core, NatsPeer::JetStream]);
        assert_eq!(NatsPeer::JetStream.label(), "jetstream");
    }
}
