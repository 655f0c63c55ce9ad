//! One measured phase: publish on an open-loop schedule to a connected
//! fleet, print a live line every second, drain, account, and judge loadgen
//! itself. `run`, `ramp` and `floor` are sequences of phases.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::accounting::{acked_not_delivered, union_into, DeliveryTotals};
use crate::engine::fleet::{Fleet, SyncResult};
use crate::engine::live::LiveStats;
use crate::engine::publisher::{
    publish, Channel, ChannelShare, MessageShape, PublishError, PublishOutcome, Schedule,
};
use crate::measure::cpu::{self, CpuReading, CpuWatch, ServerCpu};
use crate::measure::histogram::{
    merge_into, new_histogram, Interval, LatencyHistogram, LatencySummary,
};
use crate::measure::observe::SharedPublishObserver;
use crate::measure::selfcheck::{sample_cpu, CpuSample, LagProbe, SelfCheck};
use crate::profile::Profile;

/// How long a publisher waits for the answers after its last tick.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its own drain timeout a coordinated phase waits for
/// the coordinator's final head (the coordinator probes for up to the drain
/// timeout once the last agent has published).
const COORDINATOR_GRACE: Duration = Duration::from_secs(60);
/// Publish error samples kept per phase.
const ERROR_SAMPLES: usize = 10;

/// How to learn the head sequence number after publishing.
#[derive(Debug, Clone)]
pub enum HeadProbe {
    /// Log in as `user` and read `login_ok.last_seq`.
    Rtmc {
        addr: SocketAddr,
        user: String,
        password: String,
    },
    /// Messages are numbered 1..=published by loadgen itself (the floor).
    Published,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// `rtmc` or `floor` (also the interval log tag).
    pub label: String,
    pub rate_per_sec: f64,
    pub duration_secs: f64,
    pub channels: Vec<Channel>,
    pub shape: Arc<MessageShape>,
    /// First publisher sequence of the phase (unique ids across ramp steps).
    pub seq_base: u64,
    /// How long receivers may take to get everything after publishing.
    pub drain: Duration,
    pub ack_timeout: Duration,
    pub head: HeadProbe,
    /// Head before publishing (floor: 0 at its first phase).
    pub head_before: u64,
    /// Close the fleet afterwards.
    pub last: bool,
    /// No live line.
    pub quiet: bool,
    /// The server processes whose CPU time the self-check reports (rtmc's;
    /// the floor's Redis).
    pub rtmc_pids: Vec<u32>,
    /// The server processes whose CPU-seconds per million deliveries the
    /// phase reports (rtmc's nodes, the peer's server); the first is the
    /// headline.
    pub server_cpu: Vec<CpuWatch>,
    /// Sees every publish attempt (the chaos recorder).
    pub publish_observer: SharedPublishObserver,
    /// Ends publishing when cancelled, before `duration_secs` (then only an
    /// upper bound) is up; the phase then drains as usual. Opt-in, for
    /// loads that last until something else happens (a chaos suite's fault
    /// repaired); honoured by the rtmc channels (TCP, HTTP).
    pub stop: Option<CancellationToken>,
    /// How this phase fits a run spread over several loadgen agents (its
    /// start time, its publishers' slots, the drain barrier, the live
    /// intervals); `None` for a run in one process.
    pub coordination: Option<Coordination>,
}

/// One agent's part of a coordinated run (`loadgen run --agents`): the
/// phase starts at an agreed moment, its publishers are slots of one global
/// schedule, and it drains only once every agent has published.
#[derive(Debug, Clone)]
pub struct Coordination {
    /// When publishing starts, on this process's monotonic clock.
    pub start_at: tokio::time::Instant,
    /// The same moment on the run's clock (the coordinator's wall clock, µs
    /// since the epoch): every message's `sent_at_us` is stamped on it.
    pub start_wall_us: u64,
    /// The first global channel index of this phase's publishers.
    pub first_channel: u32,
    /// Publishers of the whole run, over every agent.
    pub total_channels: u32,
    /// Said once publishing ended; answered with the head to drain to.
    pub drain_gate: DrainGate,
    /// Receives every finished one-second delivery interval (the live line
    /// merged over agents).
    pub interval_tap: Option<tokio::sync::mpsc::UnboundedSender<Interval>>,
}

/// What one agent's publishers did, as the drain barrier hears it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCounts {
    /// Messages handed to the transport.
    pub published: u64,
    /// Messages the server acknowledged.
    pub acked: u64,
}

/// The barrier between publishing and draining in a coordinated run: every
/// agent's receivers must wait for the head that covers what *all* agents'
/// publishers got acknowledged, not only their own. The coordinator alone
/// probes the head (once every agent has published) and hands it out.
#[derive(Debug, Clone)]
pub struct DrainGate {
    /// Set once this phase's publishers are done.
    pub published: Arc<tokio::sync::watch::Sender<Option<PublishedCounts>>>,
    /// Set by the coordinator: the head every receiver must reach.
    pub final_head: tokio::sync::watch::Receiver<Option<u64>>,
}

impl DrainGate {
    /// Reports `counts` and waits up to `bound` for the run's final head
    /// (`None` when the coordinator went away or never answered: the phase
    /// then probes the head itself, so an orphaned agent still finishes and
    /// can take the next work order).
    async fn pass(&self, counts: PublishedCounts, bound: Duration) -> Option<u64> {
        self.published.send_replace(Some(counts));
        let mut rx = self.final_head.clone();
        let head = tokio::time::timeout(bound, rx.wait_for(|v| v.is_some()))
            .await
            .ok()?
            .ok()?;
        *head
    }
}

impl PhaseSpec {
    /// A phase at the profile's rate for its duration, with its drain
    /// timeout, numbering messages from 0 and closing the fleet afterwards.
    pub fn new(
        label: &str,
        profile: &Profile,
        channels: Vec<Channel>,
        shape: Arc<MessageShape>,
        head: HeadProbe,
        head_before: u64,
        rtmc_pids: Vec<u32>,
    ) -> Self {
        Self {
            label: label.into(),
            rate_per_sec: profile.load.rate_per_sec,
            duration_secs: profile.load.duration_secs,
            channels,
            shape,
            seq_base: 0,
            drain: Duration::from_secs_f64(profile.load.drain_timeout_secs),
            ack_timeout: ACK_TIMEOUT,
            head,
            head_before,
            last: true,
            quiet: profile.output.quiet,
            rtmc_pids,
            server_cpu: Vec::new(),
            publish_observer: None,
            stop: None,
            coordination: None,
        }
    }
}

/// The outcome of a phase, as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    pub label: String,
    pub receivers: usize,
    pub rate_per_sec: f64,
    pub duration_secs: f64,
    pub published: u64,
    pub acked: u64,
    pub publish_errors: u64,
    pub unanswered: u64,
    pub publish_error_samples: Vec<String>,
    /// Deliveries counted by all receivers.
    pub deliveries: u64,
    /// Deliveries per second from the first scheduled publish to the last delivery.
    pub deliveries_per_sec: f64,
    /// Highest one-second delivery rate.
    pub peak_deliveries_per_sec: f64,
    pub head_before: u64,
    pub head_after: u64,
    pub accounting: DeliveryTotals,
    /// Receivers that did not answer the final sync.
    pub silent_clients: usize,
    /// Acknowledged messages a witness receiver never got (max over witnesses).
    pub acked_not_delivered: u64,
    pub witnesses: usize,
    pub disconnects: u64,
    pub slow_consumer_disconnects: u64,
    pub bad_frames: u64,
    pub latency: LatencySummary,
    pub ack_latency: LatencySummary,
    /// Publish→refusal latency of the explicit refusals (`overloaded`,
    /// HTTP 503…), from the intended send time (absent in older reports).
    #[serde(default)]
    pub refusal_latency: LatencySummary,
    pub selfcheck: SelfCheck,
    /// CPU-seconds of the server processes over the phase, and per million
    /// deliveries (absent in reports before schema 4).
    #[serde(default)]
    pub server_cpu: Vec<ServerCpu>,
    /// When the phase ran: publishing from/to and drained, in seconds since
    /// the run started and as wall-clock times (absent in older reports).
    #[serde(default)]
    pub timing: PhaseTiming,
}

/// When a phase published and drained, relative to the run's start (the
/// plots' time axis starts at `publish_started_secs`) and on the wall clock
/// (RFC 3339, local time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub publish_started_secs: f64,
    pub publish_ended_secs: f64,
    /// Every receiver answered the final sync (or the drain timed out).
    pub drained_secs: f64,
    pub publish_started_at: String,
    pub publish_ended_at: String,
    pub drained_at: String,
}

/// A moment as [`PhaseTiming`] reports it: seconds since `run_start`, and
/// the wall clock now.
fn moment(run_start: Instant) -> (f64, String) {
    (
        run_start.elapsed().as_secs_f64(),
        chrono::Local::now().to_rfc3339(),
    )
}

/// A phase's report with its histograms.
pub struct PhaseResult {
    pub report: PhaseReport,
    pub latency: LatencyHistogram,
    pub ack_latency: LatencyHistogram,
    /// One-second intervals, tagged `<label>` (delivery) and `<label>-ack`.
    pub intervals: Vec<Interval>,
    /// Acknowledged publisher sequences (bitset).
    pub acked_set: Vec<u64>,
    /// Per witness receiver, the publisher sequences it received (bitsets):
    /// a coordinated run checks them against every agent's acks.
    pub witness_sets: Vec<Vec<u64>>,
}

async fn probe_head(head: &HeadProbe) -> Option<u64> {
    match head {
        HeadProbe::Rtmc {
            addr,
            user,
            password,
        } => {
            let mut conn = rtmc::client::Connection::connect(
                &addr.to_string(),
                rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
            )
            .await
            .ok()?;
            let info = rtmc::client::login(&mut conn, user, password, None, Duration::from_secs(5))
                .await
                .ok()?;
            let _ = conn.send(&rtmc::protocol::ClientCommand::Logout {}).await;
            Some(info.last_seq)
        }
        HeadProbe::Published => None,
    }
}

/// Current head as seen by a fresh login (rtmc) — for the phase's start.
pub async fn current_head(head: &HeadProbe) -> Option<u64> {
    probe_head(head).await
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The live counters a phase reports the growth of.
#[derive(Debug, Clone, Copy)]
struct Counters {
    deliveries: u64,
    published: u64,
    acked: u64,
    publish_errors: u64,
    disconnects: u64,
    slow_consumer_disconnects: u64,
    bad_frames: u64,
}

impl Counters {
    fn read(live: &LiveStats) -> Self {
        let get = |c: &AtomicU64| LiveStats::get(c);
        Self {
            deliveries: get(&live.deliveries),
            published: get(&live.published),
            acked: get(&live.acked),
            publish_errors: get(&live.publish_errors),
            disconnects: get(&live.disconnects),
            slow_consumer_disconnects: get(&live.slow_consumer_disconnects),
            bad_frames: get(&live.bad_frames),
        }
    }

    /// What each counter gained since `start`.
    fn since(&self, start: &Counters) -> Counters {
        Counters {
            deliveries: self.deliveries - start.deliveries,
            published: self.published - start.published,
            acked: self.acked - start.acked,
            publish_errors: self.publish_errors - start.publish_errors,
            disconnects: self.disconnects - start.disconnects,
            slow_consumer_disconnects: self.slow_consumer_disconnects
                - start.slow_consumer_disconnects,
            bad_frames: self.bad_frames - start.bad_frames,
        }
    }
}

/// Takes the live histograms as one-second intervals (tagged `<label>` and
/// `<label>-ack`) and adds them up into the phase's histograms.
struct IntervalRecorder<'a> {
    live: &'a LiveStats,
    label: &'a str,
    /// Interval start times are offsets from this.
    run_start: Instant,
    last_tick: Instant,
    intervals: Vec<Interval>,
    latency: LatencyHistogram,
    ack_latency: LatencyHistogram,
    /// Also gets each delivery interval (a coordinated run's live line).
    tap: Option<tokio::sync::mpsc::UnboundedSender<Interval>>,
}

impl<'a> IntervalRecorder<'a> {
    fn new(live: &'a LiveStats, spec: &'a PhaseSpec, run_start: Instant) -> Self {
        Self {
            live,
            label: &spec.label,
            run_start,
            last_tick: Instant::now(),
            intervals: Vec::new(),
            latency: new_histogram(),
            ack_latency: new_histogram(),
            tap: spec
                .coordination
                .as_ref()
                .and_then(|c| c.interval_tap.clone()),
        }
    }

    /// Ends the current interval; returns its delivery latency and length.
    fn take(&mut self) -> (LatencySummary, Duration) {
        let (d, a) = self.live.take_interval();
        let now = Instant::now();
        let start = self.last_tick.duration_since(self.run_start);
        let length = now.duration_since(self.last_tick);
        self.last_tick = now;
        merge_into(&mut self.latency, &d);
        merge_into(&mut self.ack_latency, &a);
        let summary = LatencySummary::of(&d);
        let interval = Interval {
            start,
            length,
            tag: self.label.to_owned(),
            histogram: d,
        };
        if let Some(tap) = &self.tap {
            let _ = tap.send(interval.clone());
        }
        self.intervals.push(interval);
        self.intervals.push(Interval {
            start,
            length,
            tag: format!("{}-ack", self.label),
            histogram: a,
        });
        (summary, length)
    }
}

/// What the publishers of a phase did.
#[derive(Default)]
struct Publishing {
    /// One per channel that ran.
    outcomes: Vec<PublishOutcome>,
    /// Why channels could not start (or panicked).
    start_errors: Vec<String>,
    /// Highest one-second delivery rate seen meanwhile.
    peak_deliveries_per_sec: f64,
}

impl Publishing {
    fn published(&self) -> u64 {
        self.outcomes.iter().map(|o| o.published).sum()
    }

    fn acked(&self) -> u64 {
        self.outcomes.iter().map(|o| o.acked).sum()
    }

    /// Every acknowledged publisher sequence, over all channels.
    fn acked_set(&self) -> Vec<u64> {
        let mut acked_set = Vec::new();
        for o in &self.outcomes {
            union_into(&mut acked_set, &o.acked_set);
        }
        acked_set
    }

    /// The first error samples of the channels that failed, then of those that ran.
    fn all_error_samples(&self) -> Vec<String> {
        let mut samples = self.start_errors.clone();
        for o in &self.outcomes {
            samples.extend(o.error_samples.iter().cloned());
        }
        samples.truncate(ERROR_SAMPLES);
        samples
    }
}

/// Starts one publisher per channel, each on its share of the schedule.
fn spawn_publishers(
    spec: &PhaseSpec,
    schedule: Schedule,
    live: &Arc<LiveStats>,
) -> JoinSet<Result<PublishOutcome, PublishError>> {
    let (first, count) = match &spec.coordination {
        Some(c) => (c.first_channel, c.total_channels),
        None => (0, spec.channels.len() as u32),
    };
    let mut publishers = JoinSet::new();
    for (k, ch) in spec.channels.iter().cloned().enumerate() {
        let share = ChannelShare {
            index: first + k as u32,
            count,
            schedule,
            shape: spec.shape.clone(),
            live: live.clone(),
            ack_timeout: spec.ack_timeout,
            observer: spec.publish_observer.clone(),
            stop: spec.stop.clone(),
        };
        publishers.spawn(publish(ch, share));
    }
    // An agent that only receives still ends an interval every second while
    // the others publish (its live figures, its interval log): it waits out
    // the schedule as if it published.
    if spec.coordination.is_some() && spec.channels.is_empty() {
        let end = schedule.due(schedule.total);
        publishers.spawn(async move {
            tokio::time::sleep_until(end).await;
            Ok(PublishOutcome::default())
        });
    }
    publishers
}

/// Waits for every publisher to finish; meanwhile ends an interval and
/// prints the live line every second.
async fn watch_publishers(
    mut publishers: JoinSet<Result<PublishOutcome, PublishError>>,
    spec: &PhaseSpec,
    start: &Counters,
    recorder: &mut IntervalRecorder<'_>,
) -> Publishing {
    let live = recorder.live;
    let mut publishing = Publishing::default();
    let mut last_deliveries = start.deliveries;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let started = Instant::now();
    loop {
        tokio::select! {
            joined = publishers.join_next() => match joined {
                Some(Ok(Ok(o))) => publishing.outcomes.push(o),
                Some(Ok(Err(e))) => publishing.start_errors.push(e.to_string()),
                Some(Err(e)) => publishing.start_errors.push(e.to_string()),
                None => break,
            },
            _ = ticker.tick() => {
                let (latency, length) = recorder.take();
                let d = LiveStats::get(&live.deliveries);
                let rate = (d - last_deliveries) as f64 / length.as_secs_f64().max(1e-3);
                last_deliveries = d;
                publishing.peak_deliveries_per_sec = publishing.peak_deliveries_per_sec.max(rate);
                if !spec.quiet {
                    eprintln!("{}", live_line(spec, live, start, started, &latency, rate));
                }
            }
        }
    }
    publishing
}

/// `[   5s rtmc] pub 200/s  ack 1004  deliv 20.0k/s  p50 …` (README: the live line).
fn live_line(
    spec: &PhaseSpec,
    live: &LiveStats,
    start: &Counters,
    started: Instant,
    latency: &LatencySummary,
    deliveries_per_sec: f64,
) -> String {
    let get = |c: &AtomicU64| LiveStats::get(c);
    format!(
        "[{:>4}s {}] pub {}/s  ack {}  deliv {}/s  p50 {:.2}ms  p99 {:.2}ms  max {:.1}ms  clients {}  errs pub {} conn {} disc {}",
        started.elapsed().as_secs(),
        spec.label,
        si(spec.rate_per_sec),
        get(&live.acked) - start.acked,
        si(deliveries_per_sec),
        latency.p50_ms,
        latency.p99_ms,
        latency.max_ms,
        get(&live.connected),
        get(&live.publish_errors) - start.publish_errors,
        get(&live.connect_errors) + get(&live.login_errors),
        get(&live.disconnects) - start.disconnects,
    )
}

/// The head every receiver must reach: for the floor, what was published;
/// for rtmc, the probe's answer once it covers every ack (or whatever it
/// is at the drain deadline).
async fn await_head(
    spec: &PhaseSpec,
    publishing: &Publishing,
    drain_deadline: tokio::time::Instant,
) -> u64 {
    let probe = match &spec.head {
        HeadProbe::Published => return spec.head_before + publishing.published(),
        probe => probe,
    };
    if let Some(gate) = spec.coordination.as_ref().map(|c| &c.drain_gate) {
        let counts = PublishedCounts {
            published: publishing.published(),
            acked: publishing.acked(),
        };
        if let Some(head) = gate.pass(counts, spec.drain + COORDINATOR_GRACE).await {
            return head;
        }
    }
    let expected = spec.head_before + publishing.acked();
    let mut best = spec.head_before;
    loop {
        if let Some(h) = probe_head(probe).await {
            best = best.max(h);
        }
        if best >= expected || tokio::time::Instant::now() >= drain_deadline {
            return best;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one phase on `fleet`. `run_start` anchors interval timestamps.
pub async fn run_phase(fleet: &mut Fleet, spec: PhaseSpec, run_start: Instant) -> PhaseResult {
    let live: Arc<LiveStats> = fleet.live.clone();
    let mut schedule = Schedule::starting_now(spec.rate_per_sec, spec.duration_secs);
    if let Some(c) = &spec.coordination {
        tokio::time::sleep_until(c.start_at).await;
        schedule.start = c.start_at;
        schedule.start_wall_us = c.start_wall_us;
    }
    let begun = PhaseStart::now(&live, &spec);
    let (publish_started_secs, publish_started_at) = moment(run_start);
    schedule.seq_base = spec.seq_base;
    let publishers = spawn_publishers(&spec, schedule, &live);
    let mut recorder = IntervalRecorder::new(&live, &spec, run_start);
    let publishing = watch_publishers(publishers, &spec, &begun.counters, &mut recorder).await;
    let (publish_ended_secs, publish_ended_at) = moment(run_start);

    let drain_deadline = tokio::time::Instant::now() + spec.drain;
    let head_after = await_head(&spec, &publishing, drain_deadline).await;
    let left = drain_deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1));
    let sync = fleet.sync(head_after, left, spec.last).await;
    let (drained_secs, drained_at) = moment(run_start);
    let drained = Drained {
        receivers: fleet.summary.connected,
        head_after,
        sync,
        timing: PhaseTiming {
            publish_started_secs,
            publish_ended_secs,
            drained_secs,
            publish_started_at,
            publish_ended_at,
            drained_at,
        },
    };
    finish(
        &live, &spec, &schedule, begun, publishing, drained, recorder,
    )
}

/// What a phase reads before it publishes, to tell what it added.
struct PhaseStart {
    counters: Counters,
    lag: LagProbe,
    cpu: CpuSample,
    server_cpu: CpuReading,
}

impl PhaseStart {
    /// Reads the counters, empties the interval and refusal histograms and
    /// starts the CPU and scheduler-lag watches.
    fn now(live: &LiveStats, spec: &PhaseSpec) -> Self {
        let counters = Counters::read(live);
        let _ = live.take_interval();
        let _ = live.take_refusals();
        let lag = LagProbe::start();
        let cpu = sample_cpu(&spec.rtmc_pids);
        let server_cpu = cpu::read(&spec.server_cpu);
        PhaseStart {
            counters,
            lag,
            cpu,
            server_cpu,
        }
    }
}

/// What the drain ended with.
struct Drained {
    receivers: usize,
    head_after: u64,
    sync: SyncResult,
    timing: PhaseTiming,
}

// Over 60 lines: most of it is the report's one struct literal, field by field.
/// Ends a drained phase: the last interval, CPU and self-check, and the
/// phase's report from what the counters added since `begun`.
fn finish(
    live: &LiveStats,
    spec: &PhaseSpec,
    schedule: &Schedule,
    begun: PhaseStart,
    publishing: Publishing,
    drained: Drained,
    mut recorder: IntervalRecorder<'_>,
) -> PhaseResult {
    let _ = recorder.take();
    let cpu_end = sample_cpu(&spec.rtmc_pids);
    let server_cpu_end = cpu::read(&spec.server_cpu);
    let latency = LatencySummary::of(&recorder.latency);
    let selfcheck = SelfCheck::judge(&begun.cpu, &cpu_end, &begun.lag.take(), latency.p99_ms);

    let acked_set = publishing.acked_set();
    let added = Counters::read(live).since(&begun.counters);
    // Deliveries per second over the window from the first scheduled publish
    // to the last delivery (at least the publishing duration): a server that
    // falls behind delivers over a longer window, and gets a lower rate.
    let last_delivery_secs =
        LiveStats::get(&live.last_delivery_us).saturating_sub(schedule.start_wall_us) as f64 / 1e6;
    let Drained {
        receivers,
        head_after,
        sync,
        timing,
    } = drained;
    // A stopped phase published for as long as it ran, not its upper bound.
    let duration_secs = match &spec.stop {
        Some(_) => timing.publish_ended_secs - timing.publish_started_secs,
        None => spec.duration_secs,
    };
    let window_secs = duration_secs.max(last_delivery_secs).max(1e-3);
    let report = PhaseReport {
        label: spec.label.clone(),
        receivers,
        rate_per_sec: spec.rate_per_sec,
        duration_secs,
        published: added.published,
        acked: added.acked,
        publish_errors: added.publish_errors,
        unanswered: publishing.outcomes.iter().map(|o| o.unanswered).sum(),
        publish_error_samples: publishing.all_error_samples(),
        deliveries: added.deliveries,
        deliveries_per_sec: added.deliveries as f64 / window_secs,
        peak_deliveries_per_sec: publishing.peak_deliveries_per_sec,
        head_before: spec.head_before,
        head_after,
        accounting: sync.totals,
        silent_clients: sync.silent_clients,
        acked_not_delivered: witness_missing(&acked_set, &sync),
        witnesses: sync.witness_sets.len(),
        disconnects: added.disconnects,
        slow_consumer_disconnects: added.slow_consumer_disconnects,
        bad_frames: added.bad_frames,
        latency,
        ack_latency: LatencySummary::of(&recorder.ack_latency),
        refusal_latency: LatencySummary::of(&live.take_refusals()),
        selfcheck,
        server_cpu: cpu::spent(
            &spec.server_cpu,
            &begun.server_cpu,
            &server_cpu_end,
            added.deliveries,
        ),
        timing,
    };
    PhaseResult {
        report,
        latency: recorder.latency,
        ack_latency: recorder.ack_latency,
        intervals: recorder.intervals,
        acked_set,
        witness_sets: sync.witness_sets,
    }
}

/// Acknowledged messages the worst witness never received.
fn witness_missing(acked_set: &[u64], sync: &SyncResult) -> u64 {
    sync.witness_sets
        .iter()
        .map(|w| acked_not_delivered(acked_set, w))
        .max()
        .unwrap_or(0)
}
