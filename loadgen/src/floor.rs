//! The Redis pub/sub floor, rtmc's yardstick (design.md §7): the same number
//! of subscribers on one Redis channel and one publisher `PUBLISH`ing at the
//! same rate payloads byte for byte like rtmc's broadcasts, measured with
//! the same parser, histograms and accounting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clients::{Fleet, FleetError, FleetOptions, Protocol};
use crate::live::LiveStats;
use crate::phase::{run_phase, HeadProbe, PhaseResult, PhaseSpec};
use crate::profile::Profile;
use crate::publisher::{Channel, MessageShape};
use crate::report::{ConnectReport, RunReport};

/// The Redis the floor runs against.
#[derive(Debug, Clone, Copy)]
pub struct FloorRedis {
    pub addr: SocketAddr,
    /// Ours to reconfigure (the embedded stack's), not someone else's.
    pub ours: bool,
}

/// Runs the floor at the profile's load: connects the subscribers, publishes,
/// and records the connect report, the phase and its notes in `report`.
pub async fn run_floor(
    profile: &Profile,
    redis: FloorRedis,
    shape: Arc<MessageShape>,
    run_id: u32,
    run_start: Instant,
    report: &mut RunReport,
) -> Result<PhaseResult, FleetError> {
    if redis.ours {
        let _ = unlimit_pubsub_buffers(redis.addr).await;
    }
    let load = &profile.load;
    let channel = format!("{}-{run_id:08x}", profile.floor.channel);
    if !profile.output.quiet {
        eprintln!(
            "loadgen: floor — {} Redis subscribers on {} at {} msg/s…",
            load.clients, redis.addr, load.rate_per_sec
        );
    }
    let protocol = Protocol::RedisPubSub {
        channel: channel.clone(),
    };
    let opts = FleetOptions::for_load(load, vec![redis.addr], protocol, run_id)?;
    let mut fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    let c = ConnectReport::of(load.clients, &fleet.summary);
    report.judge_connect("floor", &c, profile.slo.max_connect_error_pct);
    report.floor_connect = Some(c);
    let channels = vec![Channel::Redis {
        addr: redis.addr,
        channel,
    }];
    let spec = PhaseSpec::new(
        "floor",
        profile,
        channels,
        shape,
        HeadProbe::Published,
        0,
        Vec::new(),
    );
    let r = run_phase(&mut fleet, spec, run_start).await;
    report.note_peer(&r.report);
    report.floor = Some(r.report.clone());
    Ok(r)
}

/// Asks our own Redis to never cut a slow subscriber off (the floor must
/// measure fan-out, not the output-buffer policy).
async fn unlimit_pubsub_buffers(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut out = Vec::new();
    crate::resp::command(
        &mut out,
        &[
            b"CONFIG",
            b"SET",
            b"client-output-buffer-limit",
            b"pubsub 0 0 0",
        ],
    );
    s.write_all(&out).await?;
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    Ok(())
}
