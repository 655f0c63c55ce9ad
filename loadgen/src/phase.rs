//! One measured phase: publish on an open-loop schedule to a connected
//! fleet, print a live line every second, drain, account, and judge loadgen
//! itself. `run`, `ramp` and `floor` are sequences of phases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::accounting::{acked_not_delivered, union_into, DeliveryTotals};
use crate::clients::Fleet;
use crate::histogram::{merge_into, new_histogram, Interval, LatencyHistogram, LatencySummary};
use crate::live::LiveStats;
use crate::publisher::{publish, Channel, MessageShape, PublishOutcome, Schedule};
use crate::selfcheck::{sample_cpu, LagProbe, SelfCheck};

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
pub struct PhaseSpec {
    /// `rtmc` or `floor` (also the interval log tag).
    pub label: String,
    pub rate_per_sec: f64,
    pub duration_secs: f64,
    pub channels: Vec<Channel>,
    pub shape: Arc<MessageShape>,
    /// First publisher sequence of the phase (unique ids across ramp steps).
    pub seq_base: u64,
    pub drain: Duration,
    pub ack_timeout: Duration,
    pub head: HeadProbe,
    /// Head before publishing (floor: 0 at its first phase).
    pub head_before: u64,
    /// Close the fleet afterwards.
    pub last: bool,
    pub quiet: bool,
    pub server_pids: Vec<u32>,
}

/// The outcome of a phase, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub selfcheck: SelfCheck,
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

/// Runs one phase on `fleet`. `run_start` anchors interval timestamps.
pub async fn run_phase(fleet: &mut Fleet, spec: PhaseSpec, run_start: Instant) -> PhaseResult {
    let live: Arc<LiveStats> = fleet.live.clone();
    let base = |c: &std::sync::atomic::AtomicU64| LiveStats::get(c);
    let (d0, p0, a0, e0) = (
        base(&live.deliveries),
        base(&live.published),
        base(&live.acked),
        base(&live.publish_errors),
    );
    let (disc0, slow0, bad0) = (
        base(&live.disconnects),
        base(&live.slow_consumer_disconnects),
        base(&live.bad_frames),
    );
    let _ = live.take_interval();
    let lag = LagProbe::start();
    let cpu_start = sample_cpu(&spec.server_pids);
    let mut schedule = Schedule::starting_now(spec.rate_per_sec, spec.duration_secs);
    schedule.seq_base = spec.seq_base;
    let count = spec.channels.len() as u32;
    let mut publishers = tokio::task::JoinSet::new();
    for (k, ch) in spec.channels.iter().cloned().enumerate() {
        let (shape, live) = (spec.shape.clone(), live.clone());
        let ack_timeout = spec.ack_timeout;
        publishers.spawn(async move {
            publish(ch, k as u32, count, schedule, shape, live, ack_timeout).await
        });
    }

    let mut intervals = Vec::new();
    let mut latency = new_histogram();
    let mut ack_latency = new_histogram();
    let mut outcomes: Vec<PublishOutcome> = Vec::new();
    let mut error_samples = Vec::new();
    let mut peak = 0.0f64;
    let mut last_tick = Instant::now();
    let mut last_deliveries = d0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let take = |intervals: &mut Vec<Interval>,
                latency: &mut LatencyHistogram,
                ack_latency: &mut LatencyHistogram,
                last_tick: &mut Instant| {
        let (d, a) = live.take_interval();
        let now = Instant::now();
        let start = last_tick.duration_since(run_start);
        let length = now.duration_since(*last_tick);
        *last_tick = now;
        merge_into(latency, &d);
        merge_into(ack_latency, &a);
        let summary = LatencySummary::of(&d);
        intervals.push(Interval {
            start,
            length,
            tag: spec.label.clone(),
            histogram: d,
        });
        intervals.push(Interval {
            start,
            length,
            tag: format!("{}-ack", spec.label),
            histogram: a,
        });
        (summary, length)
    };
    let started = Instant::now();
    loop {
        tokio::select! {
            joined = publishers.join_next() => match joined {
                Some(Ok(Ok(o))) => { outcomes.push(o); }
                Some(Ok(Err(e))) => { error_samples.push(e.to_string()); }
                Some(Err(e)) => { error_samples.push(e.to_string()); }
                None => break,
            },
            _ = ticker.tick() => {
                let (s, length) = take(&mut intervals, &mut latency, &mut ack_latency, &mut last_tick);
                let d = base(&live.deliveries);
                let rate = (d - last_deliveries) as f64 / length.as_secs_f64().max(1e-3);
                last_deliveries = d;
                peak = peak.max(rate);
                if !spec.quiet {
                    eprintln!(
                        "[{:>4}s {}] pub {}/s  ack {}  deliv {}/s  p50 {:.2}ms  p99 {:.2}ms  max {:.1}ms  clients {}  errs pub {} conn {} disc {}",
                        started.elapsed().as_secs(),
                        spec.label,
                        si(spec.rate_per_sec),
                        base(&live.acked) - a0,
                        si(rate),
                        s.p50_ms, s.p99_ms, s.max_ms,
                        base(&live.connected),
                        base(&live.publish_errors) - e0,
                        base(&live.connect_errors) + base(&live.login_errors),
                        base(&live.disconnects) - disc0,
                    );
                }
            }
        }
    }
    let acked: u64 = outcomes.iter().map(|o| o.acked).sum();
    // The head everyone must reach.
    let drain_deadline = tokio::time::Instant::now() + spec.drain;
    let head_after = match &spec.head {
        HeadProbe::Published => {
            spec.head_before + outcomes.iter().map(|o| o.published).sum::<u64>()
        }
        probe => {
            let expected = spec.head_before + acked;
            let mut best = spec.head_before;
            loop {
                if let Some(h) = probe_head(probe).await {
                    best = best.max(h);
                }
                if best >= expected || tokio::time::Instant::now() >= drain_deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            best
        }
    };
    let left = drain_deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1));
    let sync = fleet.sync(head_after, left, spec.last).await;
    let (s, _) = take(
        &mut intervals,
        &mut latency,
        &mut ack_latency,
        &mut last_tick,
    );
    let _ = s;
    let cpu_end = sample_cpu(&spec.server_pids);
    let lat_summary = LatencySummary::of(&latency);
    let selfcheck = SelfCheck::judge(&cpu_start, &cpu_end, &lag.take(), lat_summary.p99_ms);

    let mut acked_set: Vec<u64> = Vec::new();
    for o in &outcomes {
        union_into(&mut acked_set, &o.acked_set);
        error_samples.extend(o.error_samples.iter().cloned());
    }
    error_samples.truncate(10);
    let witness_missing = sync
        .witness_sets
        .iter()
        .map(|w| acked_not_delivered(&acked_set, w))
        .max()
        .unwrap_or(0);
    let deliveries = base(&live.deliveries) - d0;
    // Deliveries per second over the window from the first scheduled publish
    // to the last delivery (at least the publishing duration): a server that
    // falls behind delivers over a longer window, and gets a lower rate.
    let last_delivery_secs =
        base(&live.last_delivery_us).saturating_sub(schedule.start_wall_us) as f64 / 1e6;
    let window_secs = spec.duration_secs.max(last_delivery_secs).max(1e-3);
    let report = PhaseReport {
        label: spec.label.clone(),
        receivers: fleet.summary.connected,
        rate_per_sec: spec.rate_per_sec,
        duration_secs: spec.duration_secs,
        published: base(&live.published) - p0,
        acked: base(&live.acked) - a0,
        publish_errors: base(&live.publish_errors) - e0,
        unanswered: outcomes.iter().map(|o| o.unanswered).sum(),
        publish_error_samples: error_samples,
        deliveries,
        deliveries_per_sec: deliveries as f64 / window_secs,
        peak_deliveries_per_sec: peak,
        head_before: spec.head_before,
        head_after,
        accounting: sync.totals,
        silent_clients: sync.silent_clients,
        acked_not_delivered: witness_missing,
        witnesses: sync.witness_sets.len(),
        disconnects: base(&live.disconnects) - disc0,
        slow_consumer_disconnects: base(&live.slow_consumer_disconnects) - slow0,
        bad_frames: base(&live.bad_frames) - bad0,
        latency: lat_summary,
        ack_latency: LatencySummary::of(&ack_latency),
        selfcheck,
    };
    PhaseResult {
        report,
        latency,
        ack_latency,
        intervals,
        acked_set,
    }
}
