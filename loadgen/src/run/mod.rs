//! Composes a whole invocation: bring the target up (or resolve it), run
//! rtmc and its peers (the Redis [`floor`](crate::yardstick::floor), the
//! [NATS peers](crate::yardstick::nats_peer) against one nats-server for the run) at
//! the profile's load in interleaved [`rounds`](crate::run::rounds) — each
//! kind's fleet connected once, or per phase when the open-file limit
//! cannot hold them all — or hand the rtmc fleet to the [`ramp`](crate::run::ramp);
//! optionally the [`blaster`](crate::yardstick::blaster) reference; then write the
//! report directory with its plots.

pub mod hops;
pub mod ramp;
pub mod rounds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::fleet::Fleet;
use crate::engine::fleet_options::{FleetError, FleetOptions, Protocol};
use crate::engine::live::LiveStats;
use crate::engine::phase::{
    current_head, run_phase, HeadProbe, PhaseReport, PhaseResult, PhaseSpec,
};
use crate::engine::publisher::{Channel, MessageShape};
use crate::engine::rooms::driver::{run_rooms, RoomRun, RoomTarget, RoomsOutcome};
use crate::engine::rooms::peer::{run_peer_rooms, PeerRoomRun, PeerWire};
use crate::engine::rooms::summary::RoomsReport;
use crate::measure::cpu::CpuWatch;
use crate::measure::histogram::{merge_into, new_histogram, Interval, LatencyHistogram};
use crate::profile::{Profile, PublishVia};
use crate::report::files;
use crate::report::files::{ReportError, ReportHistograms};
use crate::report::plots;
use crate::report::rounds::{round_order, RoundPhases, RoundsSummary};
use crate::report::types::BlasterReport;
use crate::report::types::{ConnectReport, FloorComparison, RoomPhase, RunReport};
use crate::run::ramp::run_ramp;
use crate::run::rounds::{fleet_sockets, plan_fleets, Contender, FleetPlan, PhaseKind};
use crate::stack::{self, EmbeddedStack, StackError, Target};
use crate::workload::plan::WorkloadPlan;
use crate::workload::rng::fresh_seed;
use crate::workload::spec::{WorkloadError, WorkloadProfile};
use crate::yardstick::blaster::{blast, BlasterError, BlasterSpec};
use crate::yardstick::floor::{connect_floor, unlimit_pubsub_buffers, FloorRedis};
use crate::yardstick::nats_peer::{
    connect_peer, create_stream, delete_stream, disconnect_peer, record_peer, start_server,
    NatsPeer, NatsServer, PeerError, PeerRun,
};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// rtmc and the floor at the profile's rate, in interleaved rounds.
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
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("no server address to connect clients to")]
    NoServer,
    #[error("HTTP publishing needs --{0}")]
    HttpNeeds(&'static str),
    #[error("the floor needs a Redis (give --floor-redis)")]
    NoFloorRedis,
    #[error("one phase kind's fleet needs about {needed} sockets, but the open-file limit is {limit} (raise it, or lower --clients)")]
    FdBudget { needed: usize, limit: usize },
    #[error(transparent)]
    Blaster(#[from] BlasterError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// A finished run: its report and where the files are.
pub struct RunOutcome {
    pub report: RunReport,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// One invocation's identity and time anchors.
struct RunStart {
    /// Random; in every message id, so runs never collide in the server's
    /// dedupe window.
    id: u32,
    /// Local time (RFC 3339), for the report.
    started_at: String,
    /// The interval log's start time.
    wall: SystemTime,
    /// Interval offsets are measured from here.
    instant: Instant,
}

impl RunStart {
    fn now() -> Self {
        let uuid = uuid::Uuid::new_v4();
        let b = uuid.as_bytes();
        Self {
            id: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            started_at: chrono::Local::now().to_rfc3339(),
            wall: SystemTime::now(),
            instant: Instant::now(),
        }
    }
}

/// Runs `mode` with `profile` and writes the report directory.
pub async fn execute(profile: Profile, mode: Mode) -> Result<RunOutcome, RunError> {
    let run = RunStart::now();
    if let Some(w) = profile.workload.clone() {
        if mode != Mode::Run {
            return Err(RunError::Workload(WorkloadError(format!(
                "a [workload] runs with `loadgen run`, not `{}`",
                mode.name()
            ))));
        }
        return execute_rooms(profile, &w, run).await;
    }
    let (stack, target) = bring_up(&profile).await?;
    let mut report = RunReport::new(
        mode.name(),
        profile.clone(),
        target.mode.clone(),
        run.started_at.clone(),
        format!("{:08x}", run.id),
    );
    let shape = Arc::new(MessageShape::new(run.id, profile.load.body_bytes));
    let mut histograms = RunHistograms::default();
    if mode == Mode::Ramp {
        for r in ramp_up(&profile, &target, shape.clone(), &run, &mut report).await? {
            histograms.add(PhaseKind::Rtmc, &r);
        }
    } else {
        let kinds = phase_kinds(&profile, &target, mode, &mut report);
        let rounds = match mode {
            Mode::Run => profile.load.rounds.max(1),
            _ => 1,
        };
        let arena = Arena {
            profile: &profile,
            target: &target,
            shape: shape.clone(),
            run: &run,
            nats: None,
        };
        arena
            .with_nats_if_needed(&kinds, rounds, &mut report, &mut histograms)
            .await?;
    }
    if mode == Mode::Run && profile.blaster.enabled {
        blaster_reference(&profile, shape, &mut report).await;
    }
    if report.rounds.len() <= 1 {
        if let (Some(a), Some(b)) = (&report.rtmc, &report.floor) {
            report.comparison = Some(FloorComparison::of(a, b));
        }
    }
    let dir = finish_stack(stack, &profile, mode.name()).await;
    let files = histograms.write(&dir, &report, run.wall)?;
    Ok(RunOutcome { report, dir, files })
}

/// Shuts the embedded stack down (if the run brought one up) and names the
/// directory the run's files go to: the profile's `output.out`, else a
/// fresh one for `mode`.
async fn finish_stack(stack: Option<EmbeddedStack>, profile: &Profile, mode: &str) -> PathBuf {
    if let Some(s) = stack {
        s.shutdown().await;
    }
    profile
        .output
        .out
        .clone()
        .unwrap_or_else(|| files::default_dir(mode))
}

/// `loadgen run` with a room workload: draws the plan (before anything is
/// brought up, so a bad table costs nothing), runs it on rtmc and on each
/// peer asked for — the Redis floor, NATS core — in interleaved rounds
/// (the order rotating as the global room's), and writes the report.
async fn execute_rooms(
    profile: Profile,
    w: &WorkloadProfile,
    run: RunStart,
) -> Result<RunOutcome, RunError> {
    let load = &profile.load;
    let seed = w.seed.unwrap_or_else(fresh_seed);
    let plan = WorkloadPlan::draw(w, load.clients, load.rate_per_sec, load.duration_secs, seed)?;
    say(
        &profile,
        &format!("room workload: seed {seed} (`seed = {seed}` in [workload] repeats it)"),
    );
    let (stack, target) = bring_up(&profile).await?;
    let mut report = RunReport::new(
        "run",
        profile.clone(),
        target.mode.clone(),
        run.started_at.clone(),
        format!("{:08x}", run.id),
    );
    let kinds = room_kinds(&profile, &target, &mut report);
    let (nats, nats_container) = if kinds.iter().any(|k| nats_peer_of(*k).is_some()) {
        let (server, container) = start_server(&profile).await?;
        (Some(server), container)
    } else {
        (None, None)
    };
    if let (Some(addr), true) = (target.floor_redis, target.floor_is_ours) {
        let _ = unlimit_pubsub_buffers(addr).await;
    }
    let arena = RoomArena {
        profile: &profile,
        target: &target,
        plan: &plan,
        nats: nats.as_ref(),
        run_id: run.id,
    };
    let latency = arena.rounds(&kinds, &mut report).await?;
    judge_room_rounds(&mut report);
    drop(nats_container);
    let dir = finish_stack(stack, &profile, "run").await;
    let h = ReportHistograms {
        run_start: run.wall,
        intervals: &[],
        merged: kinds
            .iter()
            .zip(&latency)
            .map(|(k, h)| (room_histogram_stem(*k), h))
            .collect(),
    };
    let files = files::write_dir(&dir, &report, &h)?;
    Ok(RunOutcome { report, dir, files })
}

/// The `.hgrm` stem of a kind's room deliveries (rtmc's stays `latency`).
fn room_histogram_stem(kind: PhaseKind) -> &'static str {
    match kind {
        PhaseKind::Rtmc => "latency",
        PhaseKind::RedisFloor => "floor",
        PhaseKind::NatsCore => "nats",
        PhaseKind::JetStream => "jetstream",
    }
}

/// The systems a room workload runs on: rtmc, then, when asked for, the
/// floor (a channel per room; needs a Redis), NATS core (a subject per
/// room) and JetStream (one stream over the rooms' subjects).
fn room_kinds(profile: &Profile, target: &Target, report: &mut RunReport) -> Vec<PhaseKind> {
    let mut kinds = vec![PhaseKind::Rtmc];
    if profile.floor.enabled {
        match target.floor_redis {
            Some(_) => kinds.push(PhaseKind::RedisFloor),
            None => report
                .notes
                .push("floor skipped: no Redis to run it against (give --floor-redis)".into()),
        }
    }
    if profile.nats.core {
        kinds.push(PhaseKind::NatsCore);
    }
    if profile.nats.jetstream {
        kinds.push(PhaseKind::JetStream);
    }
    kinds
}

/// What every phase of a room workload's rounds needs.
struct RoomArena<'a> {
    /// The run's profile.
    profile: &'a Profile,
    /// rtmc, and the floor's Redis.
    target: &'a Target,
    /// The workload every system runs.
    plan: &'a WorkloadPlan,
    /// The nats-server of the NATS peers, when one runs.
    nats: Option<&'a NatsServer>,
    /// The run's id; round `r` uses it + `r`.
    run_id: u32,
}

impl RoomArena<'_> {
    /// `load.rounds` rounds of `kinds` in the rotating order; every phase
    /// into `report.room_rounds`; each kind's room deliveries' latency
    /// merged over its rounds (in `kinds`' order).
    async fn rounds(
        &self,
        kinds: &[PhaseKind],
        report: &mut RunReport,
    ) -> Result<Vec<LatencyHistogram>, RunError> {
        let rounds = self.profile.load.rounds.max(1);
        let mut latency: Vec<LatencyHistogram> = kinds.iter().map(|_| new_histogram()).collect();
        for round in 0..rounds {
            for k in round_order(kinds.len(), round) {
                let kind = kinds[k];
                if rounds > 1 || kinds.len() > 1 {
                    say(
                        self.profile,
                        &format!(
                            "round {}/{rounds}: {} (room workload)",
                            round + 1,
                            kind.label()
                        ),
                    );
                }
                // A run id per round: rtmc's rooms and message ids are new
                // each round, and so are the peers' channels.
                let run_id = self.run_id.wrapping_add(round as u32);
                let outcome = self.phase(kind, run_id).await?;
                merge_into(&mut latency[k], &outcome.latency);
                report.room_rounds.push(RoomPhase {
                    round: round + 1,
                    system: kind.label().to_owned(),
                    rooms: outcome.report,
                });
            }
        }
        Ok(latency)
    }

    /// One system running the whole workload once.
    async fn phase(&self, kind: PhaseKind, run_id: u32) -> Result<RoomsOutcome, RunError> {
        let rtmc = room_run(self.profile, self.target, self.plan, run_id)?;
        let (wire, addr, cpu) = match (kind, self.nats) {
            (PhaseKind::RedisFloor, _) => {
                let addr = self.target.floor_redis.ok_or(RunError::NoFloorRedis)?;
                let cpu = match self.target.floor_redis_pid {
                    Some(pid) => CpuWatch::of("redis-server", vec![pid]),
                    None => CpuWatch::not_measured("redis-server", "give --floor-redis-pid"),
                };
                (PeerWire::RedisPubSub, addr, cpu)
            }
            (PhaseKind::NatsCore | PhaseKind::JetStream, Some(server)) => {
                let wire = match kind {
                    PhaseKind::JetStream => PeerWire::JetStream,
                    _ => PeerWire::NatsCore,
                };
                let cpu = match server.pids.is_empty() {
                    false => CpuWatch::of("nats-server", server.pids.clone()),
                    true => CpuWatch::not_measured("nats-server", "a server given by --nats"),
                };
                (wire, server.addr, cpu)
            }
            _ => return Ok(run_rooms(&rtmc).await),
        };
        let stream = (wire == PeerWire::JetStream).then(|| format!("RTMC_ROOMS_{run_id:08X}"));
        let spec = PeerRoomRun {
            plan: self.plan,
            wire,
            addr,
            user_prefix: rtmc.target.user_prefix,
            source_addrs: rtmc.target.source_addrs,
            run_id,
            connects_per_sec: rtmc.connects_per_sec,
            connect_timeout: rtmc.connect_timeout,
            drain_timeout: rtmc.drain_timeout,
            rate_per_sec: rtmc.rate_per_sec,
            quiet: rtmc.quiet,
            server_cpu: vec![cpu],
            stream: stream.clone(),
        };
        let (Some(stream), Some(server)) = (stream, self.nats) else {
            return Ok(run_peer_rooms(&spec).await);
        };
        // A stream per phase over every room's subject, file-backed as the
        // global room's JetStream peer; deleted with its consumers after.
        let url = server.url();
        create_stream(&url, &stream, "room.*").await?;
        let outcome = run_peer_rooms(&spec).await;
        if let Err(e) = delete_stream(&url, &stream).await {
            say(
                self.profile,
                &format!("jetstream: stream {stream} not deleted: {e}"),
            );
        }
        Ok(outcome)
    }
}

/// The room driver's spec for this profile and target.
fn room_run<'a>(
    profile: &Profile,
    target: &Target,
    plan: &'a WorkloadPlan,
    run_id: u32,
) -> Result<RoomRun<'a>, RunError> {
    let load = &profile.load;
    let source_addrs = load
        .source_addrs
        .iter()
        .map(|s| s.parse().map_err(|_| FleetError::SourceAddr(s.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoomRun {
        plan,
        target: RoomTarget {
            servers: target.servers.clone(),
            user_prefix: target.user_prefix.clone(),
            password: target.password.clone(),
            max_frame_bytes: target.max_frame_bytes,
            source_addrs,
        },
        run_id,
        connects_per_sec: load.connects_per_sec,
        connect_timeout: Duration::from_millis(load.connect_timeout_ms),
        drain_timeout: Duration::from_secs_f64(load.drain_timeout_secs),
        rate_per_sec: load.rate_per_sec,
        quiet: profile.output.quiet,
        server_cpu: rtmc_cpu_watches(target),
    })
}

/// The room rounds' verdict: every rtmc phase judged (its round named when
/// there are several), round 1's as the report's `rooms`; a peer's
/// anomalies and failures are notes, as the global room's yardsticks'.
fn judge_room_rounds(report: &mut RunReport) {
    let rounds = report
        .room_rounds
        .iter()
        .map(|p| p.round)
        .max()
        .unwrap_or(1);
    let phases = report.room_rounds.clone();
    for p in &phases {
        let name = match rounds {
            1 => p.system.clone(),
            _ => format!("{} round {}", p.system, p.round),
        };
        let failures = p.rooms.failures().into_iter();
        if p.system != PhaseKind::Rtmc.label() {
            report
                .notes
                .extend(failures.map(|f| format!("{name} (peer, not judged): {f}")));
        } else if report.rooms.is_none() {
            judge_rooms(p.rooms.clone(), report);
        } else {
            report
                .failures
                .extend(failures.map(|f| format!("{name}: {f}")));
        }
    }
}

/// A room run's failures and notes into the report, and the run itself.
fn judge_rooms(rooms: RoomsReport, report: &mut RunReport) {
    report.failures.extend(rooms.failures());
    if rooms.unasked_joined > 0 {
        report.notes.push(format!(
            "rooms: {} `joined` frames answered no `join` (after a leave): ignored, so what followed them counts as leaks",
            rooms.unasked_joined
        ));
    }
    if rooms.unasked_left > 0 {
        report.notes.push(format!(
            "rooms: {} `left` frames answered no `leave` (repeated, or stale after a rejoin): ignored",
            rooms.unasked_left
        ));
    }
    report.rooms = Some(rooms);
}

/// Measures the blaster's raw loopback reference into `report`. It runs
/// after the rounds: its failure (e.g. no file descriptors left for
/// 2 × clients sockets) must not throw the rounds' report away, so it
/// becomes a note and the run goes on.
async fn blaster_reference(profile: &Profile, shape: Arc<MessageShape>, report: &mut RunReport) {
    say(profile, "blaster: the raw loopback reference…");
    match reference(profile, shape).await {
        Ok(r) => report.reference = Some(r),
        Err(e) => {
            let note = format!("blaster reference not measured: {e}");
            say(profile, &note);
            report.notes.push(note);
        }
    }
}

/// The phase kinds of a `run` (rtmc, then its peers: floor, nats,
/// jetstream) or of `floor`; a peer that cannot run is noted.
fn phase_kinds(
    profile: &Profile,
    target: &Target,
    mode: Mode,
    report: &mut RunReport,
) -> Vec<PhaseKind> {
    let mut kinds = Vec::new();
    if mode == Mode::Run {
        kinds.push(PhaseKind::Rtmc);
    }
    if mode == Mode::FloorOnly || profile.floor.enabled {
        match target.floor_redis {
            Some(_) => kinds.push(PhaseKind::RedisFloor),
            None => report
                .notes
                .push("floor skipped: no Redis to run it against (give --floor-redis)".into()),
        }
    }
    if mode == Mode::Run {
        kinds.extend(NatsPeer::wanted(profile).into_iter().map(nats_kind));
    }
    kinds
}

/// The phase kind that runs a NATS peer.
fn nats_kind(peer: NatsPeer) -> PhaseKind {
    match peer {
        NatsPeer::Core => PhaseKind::NatsCore,
        NatsPeer::JetStream => PhaseKind::JetStream,
    }
}

/// The NATS peer a phase kind runs, if it is one.
fn nats_peer_of(kind: PhaseKind) -> Option<NatsPeer> {
    match kind {
        PhaseKind::NatsCore => Some(NatsPeer::Core),
        PhaseKind::JetStream => Some(NatsPeer::JetStream),
        PhaseKind::Rtmc | PhaseKind::RedisFloor => None,
    }
}

/// What connecting a phase kind's fleet needs: the run's profile, target,
/// message shape, time anchors and nats-server.
struct Arena<'a> {
    profile: &'a Profile,
    target: &'a Target,
    shape: Arc<MessageShape>,
    run: &'a RunStart,
    nats: Option<&'a NatsServer>,
}

impl Arena<'_> {
    /// Starts one nats-server for the whole run when a kind needs it (the
    /// container goes at the end), then runs the interleaved rounds.
    async fn with_nats_if_needed(
        mut self,
        kinds: &[PhaseKind],
        rounds: usize,
        report: &mut RunReport,
        histograms: &mut RunHistograms,
    ) -> Result<(), RunError> {
        let (nats, _nats) = if kinds.iter().any(|k| nats_peer_of(*k).is_some()) {
            let (server, container) = start_server(self.profile).await?;
            (Some(server), container)
        } else {
            (None, None)
        };
        self.nats = nats.as_ref();
        self.interleave(kinds, rounds, report, histograms).await
    }

    /// `rounds` rounds of `kinds` (rounds::round_order: rotating), each
    /// kind's fleet connected before its first phase and closed after its
    /// last — or, when the open-file limit cannot hold every fleet at once,
    /// connected and closed around each of its phases; every phase judged
    /// (rtmc) or noted (a peer) and recorded.
    async fn interleave(
        &mut self,
        kinds: &[PhaseKind],
        rounds: usize,
        report: &mut RunReport,
        histograms: &mut RunHistograms,
    ) -> Result<(), RunError> {
        let per_phase = self.per_phase_fleets(kinds, rounds, report)?;
        let mut contenders: Vec<Option<Contender>> = kinds.iter().map(|_| None).collect();
        // A NATS peer's first connect, for the report's `peers` entry.
        let mut first_connect: Vec<Option<ConnectReport>> = kinds.iter().map(|_| None).collect();
        for round in 0..rounds {
            let mut phases = Vec::new();
            for k in round_order(kinds.len(), round) {
                let kind = kinds[k];
                if rounds > 1 {
                    say(
                        self.profile,
                        &format!("round {}/{rounds}: {}", round + 1, kind.label()),
                    );
                }
                let contender = self
                    .ready_contender(
                        &mut contenders[k],
                        kind,
                        round,
                        &mut first_connect[k],
                        report,
                    )
                    .await?;
                let last = per_phase || round + 1 == rounds;
                let spec = contender.spec(last);
                let mut fleet = contender.fleet.take().expect("connected above");
                let r = run_phase(&mut fleet, spec, self.run.instant).await;
                if last {
                    drop(fleet);
                    self.disconnect(kind, report).await;
                } else {
                    contender.fleet = Some(fleet);
                }
                let phase = contender.finished(r.report.clone());
                judge(self.profile, kind, &phase, round, rounds, report);
                if let (Some(server), Some(connect)) = (self.nats, first_connect[k].take()) {
                    record_peer(report, server, connect, &phase);
                }
                histograms.add(kind, &r);
                phases.push(phase);
            }
            report.rounds.push(RoundPhases {
                round: round + 1,
                phases,
            });
        }
        let labels: Vec<&str> = kinds.iter().map(|k| k.label()).collect();
        report.rounds_summary = Some(RoundsSummary::of(&report.rounds, &labels));
        Ok(())
    }

    /// Whether each fleet is connected and closed around each of its phases
    /// (several rounds and an open-file limit too low for every fleet at
    /// once); if so with rtmc among the kinds, the report notes that idle
    /// memory is weighed on round 1's fleet only.
    fn per_phase_fleets(
        &self,
        kinds: &[PhaseKind],
        rounds: usize,
        report: &mut RunReport,
    ) -> Result<bool, RunError> {
        let per_phase = rounds > 1 && self.fleets_per_phase(kinds.len(), report)?;
        if per_phase && kinds.contains(&PhaseKind::Rtmc) {
            report.notes.push(
                "server memory per idle client: weighed on round 1's rtmc fleet only (the server's first); each later fleet's is null, with the reason in its fleet_connects entry".into(),
            );
        }
        Ok(per_phase)
    }

    /// A kind's contender with its fleet connected: its first fleet (kept
    /// for a NATS peer's `peers` entry in `first_connect`), or a
    /// replacement when the last phase closed it; each bring-up recorded.
    async fn ready_contender<'c>(
        &mut self,
        slot: &'c mut Option<Contender>,
        kind: PhaseKind,
        round: usize,
        first_connect: &mut Option<ConnectReport>,
        report: &mut RunReport,
    ) -> Result<&'c mut Contender, RunError> {
        Ok(match slot {
            Some(c) => {
                if c.fleet.is_none() {
                    let (fleet, spec, connect) =
                        self.connect(kind, FleetOrigin::Replacement, report).await?;
                    report.record_fleet_connect(kind.label(), round + 1, connect);
                    c.reconnected(fleet, spec);
                }
                c
            }
            empty => {
                let (fleet, spec, connect) = self.connect(kind, FleetOrigin::First, report).await?;
                report.record_fleet_connect(kind.label(), round + 1, connect.clone());
                if nats_peer_of(kind).is_some() {
                    *first_connect = Some(connect);
                }
                empty.insert(Contender::new(kind, fleet, spec))
            }
        })
    }

    /// Whether the open-file limit makes the rounds connect each kind's
    /// fleet per phase (said on stderr and in the report's notes).
    fn fleets_per_phase(&self, kinds: usize, report: &mut RunReport) -> Result<bool, RunError> {
        let load = &self.profile.load;
        let per_kind = fleet_sockets(load.clients, load.tcp_publishers as usize);
        let limit = open_file_limit();
        match plan_fleets(limit, per_kind, kinds) {
            Ok(FleetPlan::KeepAll) if !load.fleets_per_phase => Ok(false),
            Ok(FleetPlan::KeepAll) => {
                let note = "fleets connected per phase (load.fleets_per_phase): each kind's fleet is connected at the start of its phase and closed after it";
                say(self.profile, note);
                report.notes.push(note.into());
                Ok(true)
            }
            Ok(FleetPlan::PerPhase) => {
                let note = format!(
                    "fleets connected per phase: {kinds} kinds × about {per_kind} sockets do not fit the open-file limit {}, so each kind's fleet is connected at the start of its phase and closed after it (a peer's payload sequence and a JetStream stream start over with each fleet)",
                    limit.unwrap_or(0)
                );
                say(self.profile, &note);
                report.notes.push(note);
                Ok(true)
            }
            Err(needed) => Err(RunError::FdBudget {
                needed,
                limit: limit.unwrap_or(0),
            }),
        }
    }

    /// Connects `kind`'s fleet (weighing rtmc's server only for its first)
    /// and prepares its first phase.
    async fn connect(
        &self,
        kind: PhaseKind,
        origin: FleetOrigin,
        report: &mut RunReport,
    ) -> Result<(Fleet, PhaseSpec, ConnectReport), RunError> {
        Ok(match kind {
            PhaseKind::Rtmc => {
                prepare_rtmc(
                    self.profile,
                    self.target,
                    self.shape.clone(),
                    self.run.id,
                    origin,
                    report,
                )
                .await?
            }
            PhaseKind::RedisFloor => {
                let addr = self.target.floor_redis.ok_or(RunError::NoFloorRedis)?;
                let redis = FloorRedis {
                    addr,
                    ours: self.target.floor_is_ours,
                    pid: self.target.floor_redis_pid,
                };
                connect_floor(self.profile, redis, self.shape.clone(), self.run.id, report).await?
            }
            PhaseKind::NatsCore | PhaseKind::JetStream => {
                let peer = nats_peer_of(kind).expect("a NATS kind");
                connect_peer(&self.peer_run(), peer, report).await?
            }
        })
    }

    /// Tears down what connecting `kind` set up, once its fleet is closed.
    async fn disconnect(&self, kind: PhaseKind, report: &mut RunReport) {
        if let Some(peer) = nats_peer_of(kind) {
            disconnect_peer(&self.peer_run(), peer, report).await;
        }
    }

    fn peer_run(&self) -> PeerRun<'_> {
        PeerRun {
            profile: self.profile,
            server: self
                .nats
                .expect("the run's nats-server is started before the rounds"),
            shape: self.shape.clone(),
            run_id: self.run.id,
        }
    }
}

/// Records a finished phase: round 1's as the report's `rtmc` / `floor`
/// (a NATS peer's as its `peers` entry, by the caller);
/// rtmc's judged, a peer's problems noted (its loss is the yardstick's).
fn judge(
    profile: &Profile,
    kind: PhaseKind,
    phase: &PhaseReport,
    round: usize,
    rounds: usize,
    report: &mut RunReport,
) {
    let mut named = phase.clone();
    if rounds > 1 {
        named.label = format!("{} round {}", phase.label, round + 1);
    }
    match kind {
        PhaseKind::Rtmc => {
            report.judge_phase(
                &named,
                profile.slo.p99_ms,
                profile.slo.max_publish_error_pct,
            );
            report.rtmc.get_or_insert_with(|| phase.clone());
        }
        PhaseKind::RedisFloor => {
            report.note_peer(&named);
            report.floor.get_or_insert_with(|| phase.clone());
        }
        // Round 1's phase becomes the report's `peers` entry (record_peer).
        PhaseKind::NatsCore | PhaseKind::JetStream => report.note_peer(&named),
    }
}

/// The rtmc processes whose CPU each rtmc phase reports: the server nodes
/// (the headline) and every rtmc process of the embedded stack.
fn rtmc_cpu_watches(target: &Target) -> Vec<CpuWatch> {
    if target.mode == "embedded" {
        vec![
            CpuWatch::of("rtmc server nodes", target.server_node_pids.clone()),
            CpuWatch::of(
                "all rtmc processes (server, consumer, sync, gateway)",
                target.rtmc_pids.clone(),
            ),
        ]
    } else if target.server_node_pids.is_empty() {
        vec![CpuWatch::not_measured("rtmc server", "give --server-pid")]
    } else {
        vec![CpuWatch::of(
            "rtmc server (--server-pid)",
            target.server_node_pids.clone(),
        )]
    }
}

/// The process's soft open-file limit (RLIMIT_NOFILE, from
/// /proc/self/limits), `None` when unreadable.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
}

/// The blaster at the run's fan-out: as many sockets as clients, as many
/// messages as one phase publishes; one frame per write, then coalesced.
async fn reference(profile: &Profile, shape: Arc<MessageShape>) -> Result<BlasterReport, RunError> {
    let load = &profile.load;
    let b = &profile.blaster;
    let mut runs = Vec::new();
    for frames_per_write in [1, b.frames_per_write.max(1)] {
        let spec = BlasterSpec {
            sockets: load.clients,
            messages: (load.rate_per_sec * load.duration_secs).ceil().max(1.0) as u64,
            frames_per_write,
            time_limit: Duration::from_secs_f64(b.time_limit_secs.max(0.1)),
        };
        runs.push(blast(spec, shape.clone()).await?);
    }
    Ok(BlasterReport { runs })
}

/// Prints a progress line on stderr unless the profile is quiet.
pub fn say(profile: &Profile, line: &str) {
    if !profile.output.quiet {
        eprintln!("loadgen: {line}");
    }
}

/// Brings the embedded stack up, or resolves the running deployment.
pub async fn bring_up(profile: &Profile) -> Result<(Option<EmbeddedStack>, Target), RunError> {
    let (stack, target) = if profile.embedded() {
        say(profile, "bringing up the embedded stack (containers + rtmc consumer, gateway, server as child processes)…");
        let (s, t) = stack::embedded(profile).await?;
        (Some(s), t)
    } else {
        (None, stack::external(profile)?)
    };
    say(
        profile,
        &format!(
            "target: {} — servers {:?}, gateway {:?}, floor redis {:?}",
            target.mode, target.servers, target.gateway, target.floor_redis
        ),
    );
    Ok((stack, target))
}

/// `loadgen ramp`: the steps on one fleet; the last step stands for rtmc.
async fn ramp_up(
    profile: &Profile,
    target: &Target,
    shape: Arc<MessageShape>,
    run: &RunStart,
    report: &mut RunReport,
) -> Result<Vec<PhaseResult>, RunError> {
    let (mut fleet, template, connect) =
        prepare_rtmc(profile, target, shape, run.id, FleetOrigin::First, report).await?;
    report.record_fleet_connect("rtmc", 1, connect);
    let ramp = run_ramp(&mut fleet, profile, template, run.instant).await;
    let max_sustainable_rate_per_sec = ramp.report.max_sustainable_rate_per_sec;
    report.rtmc = ramp.report.steps.last().map(|s| s.phase.clone());
    report.ramp = Some(ramp.report);
    report.judge_ramp(max_sustainable_rate_per_sec);
    Ok(ramp.steps)
}

/// Connects the rtmc fleet and prepares the phase it runs at the profile's
/// rate: its publishers, the head probe with the head before publishing,
/// and the server processes whose CPU it reports.
async fn prepare_rtmc(
    profile: &Profile,
    target: &Target,
    shape: Arc<MessageShape>,
    run_id: u32,
    origin: FleetOrigin,
    report: &mut RunReport,
) -> Result<(Fleet, PhaseSpec, ConnectReport), RunError> {
    let load = &profile.load;
    let (fleet, connect) = connect_rtmc_fleet(profile, target, run_id, origin, report).await?;
    let channels = publish_channels(profile, target)?;
    let probe = HeadProbe::Rtmc {
        addr: target.servers[0],
        user: target.user(load.clients + load.tcp_publishers as usize),
        password: target.password.clone(),
    };
    let head = current_head(&probe)
        .await
        .unwrap_or(fleet.summary.max_start_after);
    let rtmc_pids = target.rtmc_pids.clone();
    let mut spec = PhaseSpec::new("rtmc", profile, channels, shape, probe, head, rtmc_pids);
    spec.server_cpu = rtmc_cpu_watches(target);
    Ok((fleet, spec, connect))
}

/// Which of a kind's fleets is connecting; it decides whether rtmc's server
/// is weighed (memory per idle client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetOrigin {
    /// The kind's first fleet of the run: rtmc's server is weighed before
    /// and after the bring-up.
    First,
    /// A fleet that replaces a closed one (fleets connected per phase): not
    /// weighed, see [`RECONNECT_NOT_WEIGHED`].
    Replacement,
}

/// Why a fleet that replaced a closed one is not weighed.
pub const RECONNECT_NOT_WEIGHED: &str = "this fleet replaced a closed one (fleets connected per phase): the server keeps the memory the closed fleet freed, so its resident memory before and after this bring-up does not weigh an idle client; round 1's fleet, the server's first, is the one weighed";

/// The memory per idle client from the server's resident memory `before`
/// and `after` a bring-up of `connected` clients, or why it was not
/// measured.
pub fn weigh_clients(
    origin: FleetOrigin,
    before: Option<u64>,
    after: Option<u64>,
    connected: usize,
    c: &mut ConnectReport,
) {
    if origin == FleetOrigin::Replacement {
        c.server_memory_not_measured = Some(RECONNECT_NOT_WEIGHED.into());
        return;
    }
    match (before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            c.server_rss_kib_before = Some(b);
            c.server_rss_kib_after = Some(a);
            c.server_kib_per_client = Some(a.saturating_sub(b) as f64 / connected as f64);
        }
        (Some(_), Some(_)) => {
            c.server_memory_not_measured = Some("no client connected".into());
        }
        _ => {
            c.server_memory_not_measured = Some(
                "the server processes' memory is unreadable here (a running deployment needs --server-pid)"
                    .into(),
            );
        }
    }
}

/// Connects and logs in the receivers, judges the bring-up, and (as
/// `origin` allows) weighs the server nodes before and after (memory per idle
/// client).
async fn connect_rtmc_fleet(
    profile: &Profile,
    target: &Target,
    run_id: u32,
    origin: FleetOrigin,
    report: &mut RunReport,
) -> Result<(Fleet, ConnectReport), RunError> {
    let load = &profile.load;
    if target.servers.is_empty() {
        return Err(RunError::NoServer);
    }
    let users: Vec<String> = (0..load.clients).map(|i| target.user(i)).collect();
    let live = Arc::new(LiveStats::new());
    say(
        profile,
        &format!(
            "connecting {} clients at {}/s…",
            load.clients, load.connects_per_sec
        ),
    );
    let rss_before = rss_kib(&target.server_node_pids);
    let protocol = Protocol::Rtmc {
        users: Arc::new(users),
        password: target.password.clone(),
        max_frame_bytes: target.max_frame_bytes,
    };
    let opts = FleetOptions::for_load(load, target.servers.clone(), protocol, run_id)?;
    let fleet = Fleet::connect(opts, live).await;
    let mut c = ConnectReport::of(load.clients, &fleet.summary);
    // Let the server settle (login bursts free their transient buffers),
    // then weigh it with every client connected and idle.
    if origin == FleetOrigin::First {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rss_after = rss_kib(&target.server_node_pids);
    weigh_clients(origin, rss_before, rss_after, c.connected, &mut c);
    report.judge_connect("rtmc", &c, profile.slo.max_connect_error_pct);
    Ok((fleet, c))
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

/// The publishers the profile asks for: TCP publisher sessions (spread over
/// the servers), the HTTP gateway, or both.
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
            .ok_or(RunError::HttpNeeds("gateway"))?;
        let api_key = target
            .api_key
            .clone()
            .ok_or(RunError::HttpNeeds("api-key"))?;
        channels.push(Channel::Http {
            base_url,
            api_key,
            concurrency: load.http_concurrency,
        });
    }
    Ok(channels)
}

/// Whole-run publish→receive and publish→ack histograms of one side.
struct SideHistograms {
    latency: LatencyHistogram,
    ack: LatencyHistogram,
}

impl Default for SideHistograms {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            ack: new_histogram(),
        }
    }
}

/// The run's histograms, gathered phase by phase for the report directory.
#[derive(Default)]
struct RunHistograms {
    /// Every phase's one-second intervals.
    intervals: Vec<Interval>,
    rtmc: SideHistograms,
    floor: SideHistograms,
    /// The NATS peers', in the order they first ran.
    peers: Vec<(NatsPeer, SideHistograms)>,
}

impl SideHistograms {
    fn add(&mut self, r: &PhaseResult) {
        merge_into(&mut self.latency, &r.latency);
        merge_into(&mut self.ack, &r.ack_latency);
    }
}

impl RunHistograms {
    fn add(&mut self, kind: PhaseKind, r: &PhaseResult) {
        self.intervals.extend(r.intervals.iter().cloned());
        match nats_peer_of(kind) {
            None if kind == PhaseKind::Rtmc => self.rtmc.add(r),
            None => self.floor.add(r),
            Some(peer) => match self.peers.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, side)) => side.add(r),
                None => {
                    let mut side = SideHistograms::default();
                    side.add(r);
                    self.peers.push((peer, side));
                }
            },
        }
    }

    /// Writes the report directory: the report and histogram files, then the plots.
    fn write(
        &self,
        dir: &Path,
        report: &RunReport,
        run_start: SystemTime,
    ) -> Result<Vec<PathBuf>, ReportError> {
        let mut merged: Vec<(&'static str, &LatencyHistogram)> = Vec::new();
        if !self.rtmc.latency.is_empty() {
            merged.push(("latency", &self.rtmc.latency));
            merged.push(("ack", &self.rtmc.ack));
        }
        if !self.floor.latency.is_empty() {
            merged.push(("floor", &self.floor.latency));
            merged.push(("floor-ack", &self.floor.ack));
        }
        for (peer, side) in &self.peers {
            merged.push((peer.label(), &side.latency));
            merged.push((peer.ack_stem(), &side.ack));
        }
        let h = ReportHistograms {
            run_start,
            intervals: &self.intervals,
            merged,
        };
        let mut files = files::write_dir(dir, report, &h)?;
        files.extend(plots::write_all(
            dir,
            h.intervals,
            &h.merged,
            report.ramp.as_ref(),
        ));
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_rounds_judge_rtmc_by_round_and_note_the_peers() {
        let mut report = RunReport::new(
            "run",
            Profile::default(),
            "embedded".into(),
            "t".into(),
            "id".into(),
        );
        let clean = RoomsReport::default();
        let mut lossy = RoomsReport::default();
        lossy.accounting.rooms.lost = 3;
        for (round, system, rooms) in [
            (1, "rtmc", &clean),
            (1, "floor", &lossy),
            (2, "floor", &clean),
            (2, "rtmc", &lossy),
        ] {
            report.room_rounds.push(RoomPhase {
                round,
                system: system.into(),
                rooms: rooms.clone(),
            });
        }
        judge_room_rounds(&mut report);
        assert_eq!(report.rooms.as_ref(), Some(&clean), "rtmc's round 1");
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(
            report.failures[0].starts_with("rtmc round 2: rooms run: rooms: 3 lost"),
            "{:?}",
            report.failures
        );
        assert!(
            report.notes.iter().any(
                |n| n.starts_with("floor round 1 (peer, not judged): rooms run: rooms: 3 lost")
            ),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn only_a_kinds_first_fleet_weighs_the_server() {
        let mut first = ConnectReport::default();
        weigh_clients(FleetOrigin::First, Some(1000), Some(3000), 100, &mut first);
        assert_eq!(first.server_kib_per_client, Some(20.0));
        assert_eq!(first.server_memory_not_measured, None);
        // A replacement after the server held a fleet: RSS hardly moves
        // (the freed memory is kept), which read as "0.0 KiB per client".
        let mut again = ConnectReport::default();
        weigh_clients(
            FleetOrigin::Replacement,
            Some(3000),
            Some(3000),
            100,
            &mut again,
        );
        assert_eq!(again.server_kib_per_client, None);
        assert_eq!(again.server_rss_kib_after, None);
        assert_eq!(
            again.server_memory_not_measured.as_deref(),
            Some(RECONNECT_NOT_WEIGHED)
        );
        let mut blind = ConnectReport::default();
        weigh_clients(FleetOrigin::First, None, None, 100, &mut blind);
        assert!(blind
            .server_memory_not_measured
            .unwrap()
            .contains("--server-pid"));
    }
}
