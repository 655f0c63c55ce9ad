//! `chaos run`: one scenario end to end. Brings up a [`ChaosStack`] with a
//! proxy on every link the scenario faults, drives the load with loadgen's
//! client engine (its fleet and publishers, observed into a [`Recording`](crate::history::Recording)),
//! runs the faults on their timeline ([`crate::scenario::timeline`]), drains, reads
//! PostgreSQL's rows, runs the history checker, and writes the report
//! directory: `report.txt`, `report.json`, `chaos.svg`, `history.json`
//! and `scenario.toml` (the schedule, replayable as a file). A scenario with
//! a room workload runs loadgen's room driver instead
//! ([`crate::scenario::room_load`]), on server node 0 in process and nodes
//! `1 ..` as `rtmc server` processes that its faults may kill.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rtmc_loadgen::engine::phase::PhaseReport;
use rtmc_loadgen::engine::rooms::summary::RoomsReport;
use rtmc_loadgen::workload::spec::WorkloadProfile;
use rtmc_testkit::{PipelineOptions, Role, Services};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::checker::Verdict;
use crate::history::{History, Recording};
use crate::scenario::file::{Scenario, TimedFault};
use crate::scenario::load::RecordedLoad;
use crate::scenario::report::{self, ChaosReport, FaultOutcome, SCHEMA_VERSION};
use crate::scenario::room_load::RecordedRooms;
use crate::scenario::timeline::{self, FaultTargets, FaultWindow};
use crate::stack::outage::ProcessFault;
use crate::stack::{ChaosStack, StackOptions};

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

/// What a failed start of the services says.
const NO_SERVICES: &str = "starting RabbitMQ, Redis and PostgreSQL (is Docker up?)";

/// Runs `scenario` and writes its report directory.
pub async fn run_scenario(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<ChaosOutcome> {
    let load = &scenario.load;
    let services = Arc::new(Services::start().await.context(NO_SERVICES)?);
    if let Some(w) = &scenario.workload {
        return run_room_scenario(scenario, w, opts, services).await;
    }
    let stack_opts = StackOptions::default()
        .pipeline(PipelineOptions::default().servers(load.servers))
        .links(scenario.links())
        .allow_service_outages();
    let stack = Arc::new(ChaosStack::start(services, stack_opts).await?);
    let mut driver = RecordedLoad::connect(&stack, &scenario.name, load, opts.quiet).await?;

    let started_at_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t0_us = driver.recording().now_us();
    let t0 = Instant::now();
    let faults = tokio::spawn(timeline::run(
        scenario.faults.clone(),
        stack.clone(),
        FaultTargets::of_clients(driver.client_faults()),
        tokio::time::Instant::now(),
    ));
    let phase = driver.publish(t0).await;
    let windows = faults.await.context("the fault timeline")?;
    let history = driver.finish(&stack, phase.report.head_after).await?;
    let verdict = history.check();

    let report = ChaosReport {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: opts.seed,
        started_at_unix_secs,
        load: phase.report.clone(),
        faults: fault_outcomes(&history, &windows, t0_us),
        failures: failures(&verdict, &windows),
        verdict,
        rooms: None,
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

/// A room scenario: server node 0 in process and nodes `1 ..` as
/// processes, the room driver recorded, the faults from when publishing
/// starts, then the history with PostgreSQL's `room_messages`, checked.
async fn run_room_scenario(
    scenario: &Scenario,
    workload: &WorkloadProfile,
    opts: &RunOptions,
    services: Arc<Services>,
) -> anyhow::Result<ChaosOutcome> {
    let stack_opts = StackOptions::default()
        .links(scenario.links())
        .allow_service_outages();
    let stack = Arc::new(ChaosStack::start(services, stack_opts).await?);
    let (nodes, servers) = server_nodes(&stack, scenario.load.servers).await?;
    let name = &scenario.name;
    let rooms =
        RecordedRooms::prepare(&stack, name, &scenario.load, workload, servers, opts.quiet).await?;
    let started_at_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let publishing = Arc::new(Notify::new());
    let never_published = CancellationToken::new();
    let timeline = tokio::spawn(timeline_from_publishing(
        scenario.faults.clone(),
        stack.clone(),
        Arc::new(nodes),
        (publishing.clone(), never_published.clone()),
        rooms.recording().clone(),
    ));
    let outcome = rooms.run(publishing).await;
    never_published.cancel();
    let (t0_us, windows) = timeline.await.context("the fault timeline")?;
    let history = rooms.finish(&stack, outcome.report.acked).await?;
    let verdict = history.check();
    let mut load = room_phase(&outcome.report);
    load.deliveries = verdict.totals.room_deliveries;
    let report = ChaosReport {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: opts.seed,
        started_at_unix_secs,
        load,
        faults: fault_outcomes(&history, &windows, t0_us),
        failures: failures(&verdict, &windows),
        verdict,
        rooms: Some(outcome.report),
    };
    let files = write_dir(&opts.out, scenario, &report, &history, t0_us, &[], &windows)?;
    Ok(ChaosOutcome {
        report,
        dir: opts.out.clone(),
        files,
    })
}

/// Server node 0 (in process) and `servers - 1` more as `rtmc server`
/// processes: the processes' fault handles, and every node's address.
async fn server_nodes(
    stack: &ChaosStack,
    servers: usize,
) -> anyhow::Result<(Vec<ProcessFault>, Vec<SocketAddr>)> {
    let mut nodes = Vec::new();
    let mut addrs = vec![stack.server_addr(0).parse()?];
    for _ in 1..servers {
        let node = stack.spawn(Role::Server).await?;
        let addr = node.target().addr().context("a server node's address")?;
        addrs.push(addr.parse()?);
        nodes.push(node);
    }
    Ok((nodes, addrs))
}

/// The faults, from when publishing starts (`.0` notified) — or none, if
/// the run ends first (`.1` cancelled); returns publishing's start on the
/// recording's clock and the windows.
async fn timeline_from_publishing(
    faults: Vec<TimedFault>,
    stack: Arc<ChaosStack>,
    nodes: Arc<Vec<ProcessFault>>,
    (publishing, never): (Arc<Notify>, CancellationToken),
    clock: Recording,
) -> (u64, Vec<FaultWindow>) {
    tokio::select! {
        _ = publishing.notified() => {}
        _ = never.cancelled() => return (0, Vec::new()),
    }
    let t0_us = clock.now_us();
    let targets = FaultTargets {
        clients: None,
        nodes,
    };
    let windows = timeline::run(faults, stack, targets, tokio::time::Instant::now()).await;
    (t0_us, windows)
}

/// A room run summed up as a load phase, for the report's first lines.
fn room_phase(r: &RoomsReport) -> PhaseReport {
    PhaseReport {
        label: "rooms".into(),
        receivers: r.clients,
        rate_per_sec: r.rate_per_sec,
        duration_secs: r.publish_secs,
        published: r.published_rooms + r.published_direct,
        acked: r.acked,
        publish_errors: r.refused.values().sum(),
        unanswered: r.unanswered,
        latency: r.latency,
        ..PhaseReport::default()
    }
}

/// Each fault window with its recovery times, measured from when it ended
/// (`t0_us`: the start of publishing on the recording's clock).
fn fault_outcomes(history: &History, windows: &[FaultWindow], t0_us: u64) -> Vec<FaultOutcome> {
    windows
        .iter()
        .map(|w| {
            let end = w.ended_secs.unwrap_or(w.planned_end_secs);
            let end_us = t0_us + (end * 1e6) as u64;
            let (first_ack, caught_up) = report::recovery(history, end_us);
            FaultOutcome {
                window: w.clone(),
                first_ack_after_end_secs: first_ack,
                last_client_caught_up_secs: caught_up,
            }
        })
        .collect()
}

/// Why the run failed: an invalid history, and each fault that could not
/// be applied or undone.
fn failures(verdict: &Verdict, windows: &[FaultWindow]) -> Vec<String> {
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
    failures
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
