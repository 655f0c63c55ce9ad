//! `chaos run`: one scenario end to end. Brings up a [`ChaosStack`] with a
//! proxy on every link the scenario faults, drives the load with loadgen's
//! client engine (its fleet and publishers, observed into a [`Recording`](crate::history::Recording)),
//! runs the faults on their timeline ([`crate::scenario::timeline`]), drains, reads
//! PostgreSQL's rows, runs the history checker, and writes the report
//! directory: `report.txt`, `report.json`, `chaos.svg`, `history.json`
//! and `scenario.toml` (the schedule, replayable as a file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rtmc_testkit::{PipelineOptions, Services};

use crate::checker::Verdict;
use crate::history::History;
use crate::scenario::file::Scenario;
use crate::scenario::load::RecordedLoad;
use crate::scenario::report::{self, ChaosReport, FaultOutcome, SCHEMA_VERSION};
use crate::scenario::timeline::{self, FaultWindow};
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
        driver.client_faults(),
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
