//! `chaos`: the fault injector's command line. `chaos proxy` serves the
//! Toxiproxy-compatible API (default 127.0.0.1:8474, Toxiproxy's port),
//! optionally loading proxies from a JSON file first (the format of
//! toxiproxy-server's `-config`: a `/populate` body), until Ctrl-C or SIGTERM.
//! `chaos run FILE` runs a scenario (or `--random --seed N` draws one) and
//! writes its report (`chaos check HISTORY` checks a saved history again);
//! the exit code is 1 when the run fails (the history
//! checker found it invalid, or a fault could not be applied), 2 for a bad
//! scenario.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtmc_chaos::api::{self, request};
use rtmc_chaos::scenario::runner::{run_scenario, RunOptions};
use rtmc_chaos::scenario::{parse_span, Scenario};
use rtmc_chaos::ProxyCollection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "chaos", version, about = "rtmc fault injector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Toxiproxy-compatible fault proxy API.
    Proxy(ProxyArgs),
    /// Run a scenario: load with faults on a timeline, checked and reported.
    Run(RunArgs),
    /// Check a saved history (a run's history.json) again: exit 1 when invalid.
    Check {
        /// The history file.
        history: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (TOML); see chaos/scenarios/.
    #[arg(required_unless_present = "random", conflicts_with = "random")]
    file: Option<PathBuf>,
    /// Draw the schedule from a seed instead of a file.
    #[arg(long)]
    random: bool,
    /// The seed of --random [default: random, printed].
    #[arg(long, requires = "random")]
    seed: Option<u64>,
    /// The load's duration with --random.
    #[arg(long, default_value = "30s", requires = "random")]
    duration: String,
    /// Report directory [default: reports/<unix time>-chaos].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the checked schedule as scenario TOML and exit without running.
    #[arg(long)]
    dry_run: bool,
    /// No live line.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:8474")]
    api: String,
    /// JSON file of proxies to create at start (a /populate body)
    /// [default: none, start empty].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed for the proxies' randomness (toxicity, jitter, slicing)
    /// [default: random, logged].
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Proxy(args) => proxy(args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run(args).await,
        Command::Check { history } => check(&history),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("chaos: {e:#}");
        ExitCode::FAILURE
    })
}

/// `chaos check`: the verdict on a saved history; exit 1 when it is invalid.
fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let history = rtmc_chaos::History::load(path)?;
    let verdict = history.check();
    print!("{verdict}");
    Ok(if verdict.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `chaos run`: exit 0 when the run passed, 1 when it failed, 2 for a bad
/// scenario.
async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (scenario, seed) = if args.random {
        let seed = args.seed.unwrap_or_else(rand::random);
        println!("chaos: random schedule, seed {seed} (replay with --random --seed {seed})");
        let duration = match parse_span(&args.duration) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("chaos: --duration: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        (Scenario::random(seed, duration), Some(seed))
    } else {
        (
            Scenario::from_path(&args.file.clone().unwrap_or_default()),
            None,
        )
    };
    let scenario = match scenario {
        Ok(s) => s,
        Err(e) => {
            let file = args.file.as_ref().map(|f| format!(" {}", f.display()));
            eprintln!("chaos: bad scenario{}: {e}", file.unwrap_or_default());
            return Ok(ExitCode::from(2));
        }
    };
    if args.dry_run || args.random {
        println!("# the schedule as a scenario file:\n{}", scenario.to_toml());
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("reports").join(format!("{now}-chaos"))
    });
    let opts = RunOptions {
        out,
        seed,
        quiet: args.quiet,
    };
    let outcome = run_scenario(&scenario, &opts).await?;
    print!(
        "{}",
        rtmc_chaos::scenario::report::render_text(&outcome.report)
    );
    println!("report: {}", outcome.dir.display());
    Ok(if outcome.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    tracing::info!(seed, "chaos proxy seed (replay with --seed)");
    let token = CancellationToken::new();
    let proxies = Arc::new(ProxyCollection::new(&token, Some(seed)));
    if let Some(path) = &args.config {
        let text = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
        let specs = request::parse_body(&text)
            .and_then(|v| request::proxy_list(&v))
            .with_context(|| format!("config {path:?}"))?;
        let (done, result) = proxies.populate(specs).await;
        result.with_context(|| format!("config {path:?}"))?;
        tracing::info!(proxies = done.len(), config = ?path, "populated proxies from config");
    }
    let listener = TcpListener::bind(&args.api)
        .await
        .with_context(|| format!("binding the API to {:?}", args.api))?;
    tracing::info!(addr = %listener.local_addr()?, "chaos proxy API listening");
    tokio::spawn(stop_on_signal(token.clone()));
    api::serve(listener, proxies.clone(), token.clone()).await?;
    proxies.shutdown().await;
    tracing::info!("chaos proxy stopped");
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag says what it is for and, unless it is required or a
    /// switch, what its default is (the rule `rtmc` and `loadgen` keep).
    #[test]
    fn every_argument_has_help_naming_its_default() {
        rtmc::cli_help::assert_documented(Cli::command());
    }
}
