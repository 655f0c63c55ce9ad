//! Composes a whole invocation: bring the target up (or resolve it), connect
//! the fleet, run the rtmc phase (or the ramp's steps), run the Redis floor
//! at the same load, judge everything and write the report directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clients::{Fleet, FleetOptions, Protocol};
use crate::histogram::{merge_into, new_histogram, Interval, LatencyHistogram};
use crate::live::LiveStats;
use crate::phase::{current_head, run_phase, HeadProbe, PhaseResult, PhaseSpec};
use crate::plot;
use crate::profile::{Profile, PublishVia};
use crate::publisher::{Channel, MessageShape};
use crate::report::{
    self, ConnectReport, FloorComparison, RampReport, RampStep, ReportError, ReportHistograms,
    RunReport,
};
use crate::stack::{self, StackError, Target};
use crate::verdict::phase_violations;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One phase at the profile's rate, then the floor.
    Run,
    /// Steps of increasing rate until the SLO or loss is violated.
    Ramp,
    /// Only the Redis floor.
    FloorOnly,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Ramp => "ramp",
            Mode::FloorOnly => "floor",
        }
    }
}

/// Failure of the run as a whole (not a failed measurement: that is a report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Setup(String),
}

/// A finished run: its report and where the files are.
pub struct RunOutcome {
    pub report: RunReport,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Summed resident memory (VmRSS) of `pids` in KiB; `None` if any is unreadable.
pub fn rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn source_addrs(p: &Profile) -> Result<Vec<std::net::IpAddr>, RunError> {
    let mut v = p
        .load
        .source_addrs
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| RunError::Setup(format!("source address {s:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Past ~25k clients one source address runs out of ephemeral ports.
    if v.is_empty() && p.load.clients > 25_000 {
        v = (1..=8u8)
            .map(|n| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n)))
            .collect();
    }
    Ok(v)
}

/// Runs `mode` with `profile` and writes the report directory.
pub async fn execute(profile: Profile, mode: Mode) -> Result<RunOutcome, RunError> {
    let run_id: u32 = {
        let b = uuid::Uuid::new_v4();
        let bytes = b.as_bytes();
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    };
    let started_at = chrono::Local::now().to_rfc3339();
    let run_start_sys = SystemTime::now();
    let run_start = Instant::now();
    let quiet = profile.output.quiet;
    let say = |s: String| {
        if !quiet {
            eprintln!("loadgen: {s}");
        }
    };

    // Floor-only against a given Redis needs no stack.
    let need_stack =
        profile.embedded() && !(mode == Mode::FloorOnly && profile.floor.redis.is_some());
    let (stack, target) = if need_stack {
        say("bringing up the embedded stack (containers + rtmc consumer, gateway, server as child processes)…".into());
        let (s, t) = stack::embedded(&profile).await?;
        (Some(s), t)
    } else if profile.embedded() {
        (None, floor_only_target(&profile)?)
    } else {
        (None, stack::external(&profile)?)
    };
    say(format!(
        "target: {} — servers {:?}, gateway {:?}, floor redis {:?}",
        target.mode, target.servers, target.gateway, target.floor_redis
    ));

    let mut report = RunReport {
        kind: mode.name().into(),
        profile: profile.clone(),
        target_mode: target.mode.clone(),
        started_at,
        run_id: format!("{run_id:08x}"),
        connect: None,
        rtmc: None,
        floor_connect: None,
        floor: None,
        comparison: None,
        ramp: None,
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let shape = Arc::new(MessageShape::new(run_id, profile.load.body_bytes));
    let mut intervals: Vec<Interval> = Vec::new();
    let mut rtmc_hist = new_histogram();
    let mut rtmc_ack = new_histogram();
    let mut floor_hist = new_histogram();
    let mut floor_ack = new_histogram();

    if mode != Mode::FloorOnly {
        let result = rtmc_phases(
            &profile,
            mode,
            &target,
            shape.clone(),
            run_id,
            run_start,
            &mut report,
        )
        .await?;
        for r in &result {
            intervals.extend(r.intervals.iter().cloned());
            merge_into(&mut rtmc_hist, &r.latency);
            merge_into(&mut rtmc_ack, &r.ack_latency);
        }
    }
    let floor_wanted = mode == Mode::FloorOnly || (mode == Mode::Run && profile.floor.enabled);
    if floor_wanted {
        match floor_phase(
            &profile,
            &target,
            shape.clone(),
            run_id,
            run_start,
            &mut report,
        )
        .await?
        {
            Some(r) => {
                intervals.extend(r.intervals.iter().cloned());
                merge_into(&mut floor_hist, &r.latency);
                merge_into(&mut floor_ack, &r.ack_latency);
            }
            None => report
                .notes
                .push("floor skipped: no Redis to run it against (give --floor-redis)".into()),
        }
    }
    if let (Some(a), Some(b)) = (&report.rtmc, &report.floor) {
        report.comparison = Some(FloorComparison::of(a, b));
    }
    if let Some(s) = stack {
        s.shutdown().await;
    }

    let dir = profile
        .output
        .out
        .clone()
        .unwrap_or_else(|| report::default_dir(mode.name()));
    let mut merged: Vec<(&'static str, &LatencyHistogram)> = Vec::new();
    if !rtmc_hist.is_empty() {
        merged.push(("latency", &rtmc_hist));
        merged.push(("ack", &rtmc_ack));
    }
    if !floor_hist.is_empty() {
        merged.push(("floor", &floor_hist));
        merged.push(("floor-ack", &floor_ack));
    }
    let h = ReportHistograms {
        run_start: run_start_sys,
        intervals: &intervals,
        merged,
    };
    let mut files = report::write_dir(&dir, &report, &h)?;
    files.extend(plot::write_all(
        &dir,
        h.intervals,
        &h.merged,
        report.ramp.as_ref(),
    ));
    Ok(RunOutcome { report, dir, files })
}

fn floor_only_target(p: &Profile) -> Result<Target, RunError> {
    Err(RunError::Setup(format!(
        "floor-only without an embedded stack needs --floor-redis (profile {:?})",
        p.name
    )))
}

#[allow(clippy::too_many_arguments)]
async fn rtmc_phases(
    profile: &Profile,
    mode: Mode,
    target: &Target,
    shape: Arc<MessageShape>,
    run_id: u32,
    run_start: Instant,
    report: &mut RunReport,
) -> Result<Vec<PhaseResult>, RunError> {
    let load = &profile.load;
    if target.servers.is_empty() {
        return Err(RunError::Setup(
            "no server address to connect clients to".into(),
        ));
    }
    let users: Vec<String> = (0..load.clients).map(|i| target.user(i)).collect();
    let live = Arc::new(LiveStats::new());
    if !profile.output.quiet {
        eprintln!(
            "loadgen: connecting {} clients at {}/s…",
            load.clients, load.connects_per_sec
        );
    }
    let rss_before = rss_kib(&target.server_node_pids);
    let mut fleet = Fleet::connect(
        FleetOptions {
            clients: load.clients,
            connects_per_sec: load.connects_per_sec,
            targets: target.servers.clone(),
            protocol: Protocol::Rtmc {
                users: Arc::new(users),
                password: target.password.clone(),
                max_frame_bytes: target.max_frame_bytes,
            },
            source_addrs: source_addrs(profile)?,
            connect_timeout_ms: load.connect_timeout_ms,
            witnesses: load.witnesses,
            run_id,
        },
        live,
    )
    .await;
    let mut c = ConnectReport::of(load.clients, &fleet.summary);
    // Let the server settle (login bursts free their transient buffers),
    // then weigh it with every client connected and idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(&target.server_node_pids);
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        c.server_rss_kib_before = Some(b);
        c.server_rss_kib_after = Some(a);
        c.server_kib_per_client =
            (c.connected > 0).then(|| a.saturating_sub(b) as f64 / c.connected as f64);
    }
    report.judge_connect("rtmc", &c, profile.slo.max_connect_error_pct);
    report.connect = Some(c);

    let channels = publish_channels(profile, target)?;
    let probe = HeadProbe::Rtmc {
        addr: target.servers[0],
        user: target.user(load.clients + load.tcp_publishers as usize),
        password: target.password.clone(),
    };
    let mut head = current_head(&probe)
        .await
        .unwrap_or(fleet.summary.max_start_after);
    let drain = Duration::from_secs_f64(load.drain_timeout_secs);
    let ack_timeout = Duration::from_secs(10);
    let mut results = Vec::new();
    match mode {
        Mode::Run | Mode::FloorOnly => {
            let r = run_phase(
                &mut fleet,
                PhaseSpec {
                    label: "rtmc".into(),
                    rate_per_sec: load.rate_per_sec,
                    duration_secs: load.duration_secs,
                    channels,
                    shape,
                    seq_base: 0,
                    drain,
                    ack_timeout,
                    head: probe,
                    head_before: head,
                    last: true,
                    quiet: profile.output.quiet,
                    server_pids: target.server_pids.clone(),
                },
                run_start,
            )
            .await;
            report.judge_phase(
                &r.report,
                profile.slo.p99_ms,
                profile.slo.max_publish_error_pct,
            );
            report.rtmc = Some(r.report.clone());
            results.push(r);
        }
        Mode::Ramp => {
            let ramp = &profile.ramp;
            let slo = profile.slo.p99_ms.unwrap_or(ramp.default_p99_ms);
            let mut steps = Vec::new();
            let mut rate = ramp.start_rate_per_sec;
            let mut seq_base = 0u64;
            let mut best: Option<(f64, f64)> = None;
            let mut prev_cumulative = crate::accounting::DeliveryTotals::default();
            for _ in 0..ramp.max_steps.max(1) {
                if rate > ramp.max_rate_per_sec {
                    break;
                }
                if !profile.output.quiet {
                    eprintln!(
                        "loadgen: ramp step at {rate:.0} msg/s for {} s",
                        ramp.step_duration_secs
                    );
                }
                let r = run_phase(
                    &mut fleet,
                    PhaseSpec {
                        label: "rtmc".into(),
                        rate_per_sec: rate,
                        duration_secs: ramp.step_duration_secs,
                        channels: channels.clone(),
                        shape: shape.clone(),
                        seq_base,
                        drain,
                        ack_timeout,
                        head: probe.clone(),
                        head_before: head,
                        last: false,
                        quiet: profile.output.quiet,
                        server_pids: target.server_pids.clone(),
                    },
                    run_start,
                )
                .await;
                seq_base += (rate * ramp.step_duration_secs).ceil() as u64 + 1;
                head = r.report.head_after;
                // Accounting is cumulative over the fleet's life: take this step's share.
                let mut phase = r.report.clone();
                let cumulative = phase.accounting;
                phase.accounting = cumulative.since(&prev_cumulative);
                prev_cumulative = cumulative;
                let violations =
                    phase_violations(&phase, Some(slo), profile.slo.max_publish_error_pct);
                let sustainable = violations.is_empty();
                if sustainable {
                    best = Some((rate, phase.deliveries_per_sec));
                }
                steps.push(RampStep {
                    rate_per_sec: rate,
                    phase,
                    sustainable,
                    violation: (!sustainable).then(|| violations.join("; ")),
                });
                results.push(r);
                if !sustainable {
                    break;
                }
                rate = match ramp.factor {
                    Some(f) if f > 1.0 => rate * f,
                    _ => rate + ramp.step_rate_per_sec.max(1.0),
                };
            }
            let _ = fleet.sync(head, Duration::from_secs(2), true).await;
            report.ramp = Some(RampReport {
                slo_p99_ms: slo,
                max_sustainable_rate_per_sec: best.map(|b| b.0),
                max_sustainable_deliveries_per_sec: best.map(|b| b.1),
                steps,
            });
            report.judge_ramp(best.map(|b| b.0));
            if let Some(last) = report.ramp.as_ref().and_then(|r| r.steps.last()) {
                report.rtmc = Some(last.phase.clone());
            }
        }
    }
    Ok(results)
}

fn publish_channels(profile: &Profile, target: &Target) -> Result<Vec<Channel>, RunError> {
    let load = &profile.load;
    let mut channels = Vec::new();
    if matches!(load.publish_via, PublishVia::Tcp | PublishVia::Both) {
        for k in 0..load.tcp_publishers.max(1) as usize {
            channels.push(Channel::Tcp {
                addr: target.servers[k % target.servers.len()],
                user: target.user(load.clients + k),
                password: target.password.clone(),
            });
        }
    }
    if matches!(load.publish_via, PublishVia::Http | PublishVia::Both) {
        let base_url = target
            .gateway
            .clone()
            .ok_or_else(|| RunError::Setup("HTTP publishing needs --gateway".into()))?;
        let api_key = target
            .api_key
            .clone()
            .ok_or_else(|| RunError::Setup("HTTP publishing needs --api-key".into()))?;
        channels.push(Channel::Http {
            base_url,
            api_key,
            concurrency: load.http_concurrency,
        });
    }
    Ok(channels)
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

async fn floor_phase(
    profile: &Profile,
    target: &Target,
    shape: Arc<MessageShape>,
    run_id: u32,
    run_start: Instant,
    report: &mut RunReport,
) -> Result<Option<PhaseResult>, RunError> {
    let Some(redis) = target.floor_redis else {
        return Ok(None);
    };
    if target.floor_is_ours {
        let _ = unlimit_pubsub_buffers(redis).await;
    }
    let load = &profile.load;
    let channel = format!("{}-{run_id:08x}", profile.floor.channel);
    if !profile.output.quiet {
        eprintln!(
            "loadgen: floor — {} Redis subscribers on {redis} at {} msg/s…",
            load.clients, load.rate_per_sec
        );
    }
    let live = Arc::new(LiveStats::new());
    let mut fleet = Fleet::connect(
        FleetOptions {
            clients: load.clients,
            connects_per_sec: load.connects_per_sec,
            targets: vec![redis],
            protocol: Protocol::RedisPubSub {
                channel: channel.clone(),
            },
            source_addrs: source_addrs(profile)?,
            connect_timeout_ms: load.connect_timeout_ms,
            witnesses: load.witnesses,
            run_id,
        },
        live,
    )
    .await;
    let c = ConnectReport::of(load.clients, &fleet.summary);
    report.judge_connect("floor", &c, profile.slo.max_connect_error_pct);
    report.floor_connect = Some(c);
    let r = run_phase(
        &mut fleet,
        PhaseSpec {
            label: "floor".into(),
            rate_per_sec: load.rate_per_sec,
            duration_secs: load.duration_secs,
            channels: vec![Channel::Redis {
                addr: redis,
                channel,
            }],
            shape,
            seq_base: 0,
            drain: Duration::from_secs_f64(load.drain_timeout_secs),
            ack_timeout: Duration::from_secs(10),
            head: HeadProbe::Published,
            head_before: 0,
            last: true,
            quiet: profile.output.quiet,
            server_pids: Vec::new(),
        },
        run_start,
    )
    .await;
    report.note_floor(&r.report);
    report.floor = Some(r.report.clone());
    Ok(Some(r))
}
