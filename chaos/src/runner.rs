//! `chaos run`: one scenario end to end. Brings up a [`ChaosStack`] with a
//! proxy on every link the scenario faults, drives the load with loadgen's
//! client engine (its fleet and publishers, observed into a [`Recording`]),
//! runs the faults on their timeline ([`crate::timeline`]), drains, reads
//! PostgreSQL's rows, runs the history checker, and writes the report
//! directory: `report.txt`, `report.json`, `chaos.svg`, `history.json`
//! and `scenario.toml` (the schedule, replayable as a file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rtmc_loadgen::engine::fleet::Fleet;
use rtmc_loadgen::engine::fleet_options::{FleetOptions, Protocol};
use rtmc_loadgen::engine::live::LiveStats;
use rtmc_loadgen::engine::phase::{current_head, run_phase, HeadProbe, PhaseSpec};
use rtmc_loadgen::engine::publisher::{Channel, MessageShape};
use rtmc_loadgen::profile::Profile;
use rtmc_testkit::{PipelineOptions, Services, TEST_PASSWORD};

use crate::history::{History, Recording};
use crate::recorder_hooks::{FleetRecorder, PublishRecorder};
use crate::report::{self, ChaosReport, FaultOutcome, SCHEMA_VERSION};
use crate::scenario::{PublishPath, Scenario};
use crate::stack::{ChaosStack, StackOptions};
use crate::timeline::{self, FaultWindow};

/// How long receivers may take to get everything after publishing ends.
const DRAIN: Duration = Duration::from_secs(60);
/// How long PostgreSQL may take to hold every sequenced message.
const STORED_WAIT: Duration = Duration::from_secs(60);
/// How long client tasks may take to hand their logs back.
const LOGS_BACK: Duration = Duration::from_secs(10);

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The report directory.
    pub out: PathBuf,
    /// The seed a random schedule came from, for the report.
    pub seed: Option<u64>,
    /// No live line.
    pub quiet: bool,
}

/// A finished run.
pub struct ChaosOutcome {
    pub report: ChaosReport,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Runs `scenario` and writes its report directory.
pub async fn run_scenario(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<ChaosOutcome> {
    let load = &scenario.load;
    let services = Arc::new(
        Services::start()
            .await
            .context("starting RabbitMQ, Redis and PostgreSQL (is Docker up?)")?,
    );
    let stack_opts = StackOptions::default()
        .pipeline(PipelineOptions::default().servers(load.servers))
        .links(scenario.links());
    let stack = Arc::new(ChaosStack::start(services, true, stack_opts).await?);
    let users = stack
        .pipeline()
        .add_users("chaos", load.clients + 2)
        .await?;
    let targets = (0..load.servers)
        .map(|i| stack.server_addr(i).parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut profile = Profile {
        name: scenario.name.clone(),
        ..Default::default()
    };
    profile.load.clients = load.clients;
    profile.load.rate_per_sec = load.rate_per_sec;
    profile.load.duration_secs = load.duration.as_secs_f64();
    profile.load.body_bytes = load.body_bytes;
    profile.load.drain_timeout_secs = DRAIN.as_secs_f64();
    profile.output.quiet = opts.quiet;
    let run_id: u32 = rand::random();

    let recording = Recording::start();
    let protocol = Protocol::Rtmc {
        users: Arc::new(users[..load.clients].to_vec()),
        password: TEST_PASSWORD.into(),
        max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
    };
    let mut fleet_opts = FleetOptions::for_load(&profile.load, targets.clone(), protocol, run_id)?;
    fleet_opts.observer = Some(Arc::new(FleetRecorder(recording.clone())));
    let mut fleet = Fleet::connect(fleet_opts, Arc::new(LiveStats::new())).await;
    anyhow::ensure!(
        fleet.summary.connected == load.clients,
        "only {} of {} clients connected: {:?}",
        fleet.summary.connected,
        load.clients,
        fleet.summary.error_samples
    );
    let channel = match load.publish {
        PublishPath::Http => Channel::Http {
            base_url: stack.pipeline().gateway_url(),
            api_key: stack.pipeline().api_key().to_owned(),
            concurrency: 64,
        },
        PublishPath::Tcp => Channel::Tcp {
            addr: targets[0],
            user: users[load.clients].clone(),
            password: TEST_PASSWORD.into(),
        },
    };
    // The head is read from node 0 directly, past any proxy.
    let probe = HeadProbe::Rtmc {
        addr: stack.pipeline().server_addr(0).parse()?,
        user: users[load.clients + 1].clone(),
        password: TEST_PASSWORD.into(),
    };
    let head = current_head(&probe)
        .await
        .unwrap_or(fleet.summary.max_start_after);
    let publishes = Arc::new(PublishRecorder::new(recording.clone()));
    let shape = Arc::new(MessageShape::new(run_id, load.body_bytes));
    let mut spec = PhaseSpec::new("rtmc", &profile, vec![channel], shape, probe, head, vec![]);
    spec.last = false;
    spec.publish_observer = Some(publishes.clone());

    let started_at_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t0_us = recording.now_us();
    let t0 = Instant::now();
    let faults = tokio::spawn(timeline::run(
        scenario.faults.clone(),
        stack.clone(),
        fleet.faults(),
        tokio::time::Instant::now(),
    ));
    let phase = run_phase(&mut fleet, spec, t0).await;
    let windows = faults.await.context("the fault timeline")?;
    publishes.close();
    recording.drained();
    let _ = fleet
        .sync(phase.report.head_after, Duration::from_secs(2), true)
        .await;
    drop(fleet);

    let rows = stored_rows(&stack, phase.report.head_after).await;
    recording.stored(rows.iter().map(|(seq, id)| (*seq as u64, id.as_str())));
    let history = finish(recording).await?;
    let verdict = history.check();

    let faults = windows
        .iter()
        .map(|w| {
            let end = w.ended_secs.unwrap_or(w.planned_end_secs);
            let end_us = t0_us + (end * 1e6) as u64;
            let (first_ack, caught_up) = report::recovery(&history, end_us);
            FaultOutcome {
                window: w.clone(),
                first_ack_after_end_secs: first_ack,
                last_client_caught_up_secs: caught_up,
            }
        })
        .collect();
    let mut failures = Vec::new();
    if !verdict.valid {
        failures.push("the history checker found the run invalid".to_owned());
    }
    for w in windows.iter().filter(|w| w.error.is_some()) {
        failures.push(format!(
            "fault {} ({}): {}",
            w.index,
            w.label,
            w.error.as_deref().unwrap_or_default()
        ));
    }
    let report = ChaosReport {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: opts.seed,
        started_at_unix_secs,
        load: phase.report.clone(),
        faults,
        verdict,
        failures,
    };
    let files = write_dir(
        &opts.out,
        scenario,
        &report,
        &history,
        t0_us,
        &phase.intervals,
        &windows,
    )?;
    if let Ok(stack) = Arc::try_unwrap(stack) {
        drop(stack);
    }
    Ok(ChaosOutcome {
        report,
        dir: opts.out.clone(),
        files,
    })
}

/// PostgreSQL's rows once it holds `head` of them (or whatever it holds
/// after [`STORED_WAIT`]).
async fn stored_rows(stack: &ChaosStack, head: u64) -> Vec<(i64, String)> {
    let p = stack.pipeline();
    match p.await_stored_messages(head as usize, STORED_WAIT).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "PostgreSQL did not catch up; checking what it holds");
            p.await_stored_messages(0, Duration::ZERO)
                .await
                .unwrap_or_default()
        }
    }
}

/// The history, once every client task has handed its log back.
async fn finish(recording: Recording) -> anyhow::Result<History> {
    let deadline = Instant::now() + LOGS_BACK;
    loop {
        match recording.clone().finish() {
            Ok(h) => return Ok(h),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn write_dir(
    dir: &Path,
    scenario: &Scenario,
    report: &ChaosReport,
    history: &History,
    t0_us: u64,
    intervals: &[rtmc_loadgen::measure::histogram::Interval],
    windows: &[FaultWindow],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {p:?}"))?;
        files.push(p);
        Ok(())
    };
    write("report.txt", report::render_text(report).as_bytes())?;
    write("report.json", &serde_json::to_vec_pretty(report)?)?;
    write("scenario.toml", scenario.to_toml().as_bytes())?;
    let h = dir.join("history.json");
    history.save(&h)?;
    files.push(h);
    let svg = dir.join("chaos.svg");
    match report::plot(&svg, intervals, history, t0_us, windows) {
        Ok(()) => files.push(svg),
        Err(e) => eprintln!("chaos: plot skipped: {e}"),
    }
    Ok(files)
}
