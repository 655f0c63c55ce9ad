//! The Redis pub/sub floor, rtmc's yardstick (design.md §7): the same number
//! of subscribers on one Redis channel and one publisher `PUBLISH`ing at the
//! same rate payloads byte for byte like rtmc's broadcasts, measured with
//! the same parser, histograms and accounting, and Redis's CPU per delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::fleet::Fleet;
use crate::engine::fleet_options::{FleetError, FleetOptions, Protocol};
use crate::engine::live::LiveStats;
use crate::engine::phase::{HeadProbe, PhaseSpec};
use crate::engine::publisher::{Channel, MessageShape};
use crate::measure::cpu::CpuWatch;
use crate::profile::Profile;
use crate::report::types::{ConnectReport, RunReport};

/// The Redis the floor runs against.
#[derive(Debug, Clone, Copy)]
pub struct FloorRedis {
    pub addr: SocketAddr,
    /// Ours to reconfigure (the embedded stack's), not someone else's.
    pub ours: bool,
    /// The redis-server process whose CPU the floor reports (the embedded
    /// container's host pid, or `--floor-redis-pid`).
    pub pid: Option<u32>,
}

/// Connects the floor's subscribers at the profile's load (judging their
/// bring-up in `report`) and returns them, their connect report and the
/// floor's phase:
/// one publisher `PUBLISH`ing at the profile's rate, the Redis server's CPU
/// watched.
pub async fn connect_floor(
    profile: &Profile,
    redis: FloorRedis,
    shape: Arc<MessageShape>,
    run_id: u32,
    report: &mut RunReport,
) -> Result<(Fleet, PhaseSpec, ConnectReport), FleetError> {
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
    let fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    let c = ConnectReport::of(load.clients, &fleet.summary);
    report.judge_connect("floor", &c, profile.slo.max_connect_error_pct);
    let channels = vec![Channel::Redis {
        addr: redis.addr,
        channel,
    }];
    let mut spec = PhaseSpec::new(
        "floor",
        profile,
        channels,
        shape,
        HeadProbe::Published,
        0,
        redis.pid.into_iter().collect(),
    );
    spec.server_cpu = vec![match redis.pid {
        Some(pid) => CpuWatch::of("redis-server", vec![pid]),
        None => CpuWatch::not_measured("redis-server", "pid unknown: give --floor-redis-pid"),
    }];
    Ok((fleet, spec, c))
}

/// Asks our own Redis to never cut a slow subscriber off (the floor must
/// measure fan-out, not the output-buffer policy).
pub async fn unlimit_pubsub_buffers(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut out = Vec::new();
    crate::wire::resp::command(
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
