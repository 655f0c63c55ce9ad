//! The `loadgen` binary: thin clap subcommands over the library. Exit code 0
//! when the run passed, 1 when it measured a failure (loss, errors, SLO), 2
//! when it could not run, 143 / 130 when SIGTERM / SIGINT stopped it (after
//! tearing the embedded stack down).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rtmc_loadgen::agents::coordinator::{run_with_agents, AgentRunOptions};
use rtmc_loadgen::engine::publisher::MessageShape;
use rtmc_loadgen::profile::{Peer, Profile, PublishVia};
use rtmc_loadgen::report::files;
use rtmc_loadgen::report::files::ReportHistograms;
use rtmc_loadgen::report::merge::{merge_dirs, start_time_of};
use rtmc_loadgen::report::plots;
use rtmc_loadgen::report::text::blaster_text;
use rtmc_loadgen::report::text::render_text;
use rtmc_loadgen::report::types::BlasterReport;
use rtmc_loadgen::run::{execute, Mode};
use rtmc_loadgen::yardstick::blaster::{blast, BlasterSpec};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "rtmc load generator: simulated clients, open-loop publishing, honest latency, capacity planning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A load test at a fixed rate and the Redis pub/sub floor at the same load, in interleaved rounds.
    Run {
        #[command(flatten)]
        load: LoadArgs,
        /// Rounds: rtmc and each peer take turns (the order rotating each round) this many times each; medians and min–max reported [default: profile, else 1].
        #[arg(long)]
        rounds: Option<usize>,
        /// With --rounds: connect each kind's fleet per phase, not once (done anyway when the open-file limit cannot hold every fleet).
        #[arg(long)]
        fleets_per_phase: bool,
        /// After the rounds, blast the same frames to as many plain loopback sockets (one frame per write, then coalesced): the physical reference for server CPU per delivery.
        #[arg(long)]
        blaster: bool,
        /// Spread the run over running `loadgen agent`s (host:port, comma-separated): receivers split into contiguous blocks, TCP publishers into slots of one schedule (an agent's rate share = its share of --tcp-publishers), remainders to the first agents; one merged report [default: none, one process].
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// With --agents: refuse an agent whose clock differs from this process's by more than this (offset + half the round trip), milliseconds.
        #[arg(long, default_value_t = rtmc_loadgen::agents::coordinator::DEFAULT_MAX_CLOCK_SKEW_MS)]
        max_clock_skew_ms: f64,
    },
    /// Serve as a loadgen agent: take a coordinator's work orders (`loadgen run --agents`) over HTTP.
    Agent {
        /// Address of the control API; loopback unless the agent is on another host than the coordinator (then its own routable address).
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
    },
    /// Step the publish rate up until the p99 SLO or delivery breaks; report the capacity.
    Ramp {
        #[command(flatten)]
        load: LoadArgs,
        /// First step's rate, messages per second [default: profile, else 100].
        #[arg(long)]
        start_rate: Option<f64>,
        /// Messages per second added per step [default: profile, else 100].
        #[arg(long)]
        step_rate: Option<f64>,
        /// Multiply the rate per step instead (e.g. 1.5) [default: add --step-rate].
        #[arg(long)]
        factor: Option<f64>,
        /// Stop before exceeding this rate, messages per second [default: profile, else 5000].
        #[arg(long)]
        max_rate: Option<f64>,
        /// Seconds per step [default: profile, else 10].
        #[arg(long)]
        step_duration_secs: Option<f64>,
        /// Go on past the first failing step up to --max-rate (the plateau beyond the knee).
        #[arg(long)]
        through: bool,
    },
    /// Only the Redis pub/sub floor.
    Floor(LoadArgs),
    /// Only the raw loopback blaster: rtmc's frames to plain TCP sockets, one per write and coalesced.
    Blaster {
        /// Receiving sockets.
        #[arg(long, default_value_t = 100)]
        sockets: usize,
        /// Messages, each written to every socket.
        #[arg(long, default_value_t = 2000)]
        messages: u64,
        /// Frames per write of the coalesced blast.
        #[arg(long, default_value_t = 16)]
        frames_per_write: usize,
        /// Bytes of each message body.
        #[arg(long, default_value_t = 16)]
        body_bytes: usize,
        /// Each blast stops sending after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        time_limit_secs: f64,
    },
    /// Each ingest hop alone at its ceiling (RabbitMQ, Redis append script,
    /// gateway, TCP server, consumer) on a stack of its own; names the bottleneck.
    Hops(HopsArgs),
    /// Merge the report directories of several loadgen processes into one report.
    Merge {
        /// Report directories (each with latency.hlog, and report.json if present).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes [default: reports/<timestamp>-merge].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Flags of `loadgen hops`.
#[derive(Args)]
struct HopsArgs {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// RabbitMQ channel counts to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
    channels: Vec<usize>,
    /// Confirms in flight per RabbitMQ channel.
    #[arg(long, default_value_t = 256)]
    confirm_window: usize,
    /// Messages per append-script call to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64, 256])]
    batch_sizes: Vec<usize>,
    /// Concurrent HTTP requests against the gateway.
    #[arg(long, default_value_t = 128)]
    http_concurrency: usize,
    /// Publish-only TCP connections.
    #[arg(long, default_value_t = 8)]
    tcp_connections: usize,
    /// Sends in flight per TCP connection.
    #[arg(long, default_value_t = 64)]
    tcp_window: usize,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 16)]
    body_bytes: usize,
    /// `rabbitmq.publisher_channels` of the gateway and server node [default: rtmc's].
    #[arg(long)]
    publisher_channels: Option<usize>,
    /// `rabbitmq.queue_type` of the stack: classic or quorum [default: rtmc's].
    #[arg(long, value_parser = parse_queue_type)]
    queue_type: Option<rtmc::config::QueueType>,
    /// Measure every hop this many times, one round after another; each row
    /// reports the median and min–max over the rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also write the report as JSON to this file [default: none].
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_queue_type(s: &str) -> Result<rtmc::config::QueueType, String> {
    match s {
        "classic" => Ok(rtmc::config::QueueType::Classic),
        "quorum" => Ok(rtmc::config::QueueType::Quorum),
        other => Err(format!("{other:?}: expected classic or quorum")),
    }
}

async fn hops(a: HopsArgs) -> anyhow::Result<bool> {
    let opts = rtmc_loadgen::run::hops::HopsOptions {
        duration_secs: a.duration_secs,
        channels: a.channels,
        confirm_window: a.confirm_window,
        batch_sizes: a.batch_sizes,
        http_concurrency: a.http_concurrency,
        tcp_connections: a.tcp_connections,
        tcp_window: a.tcp_window,
        body_bytes: a.body_bytes,
        publisher_channels: a.publisher_channels,
        queue_type: a.queue_type,
        rounds: a.rounds,
        ..Default::default()
    };
    let report = rtmc_loadgen::run::hops::run(&opts, |r| {
        eprintln!("  {} [{}]: {:.0} msg/s", r.hop, r.setting, r.rate_per_sec)
    })
    .await?;
    print!("{}", rtmc_loadgen::run::hops::render(&report));
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

/// Flags shared by run, ramp and floor; each overrides the profile.
#[derive(Args)]
struct LoadArgs {
    /// TOML profile (e.g. loadgen/profiles/1k.toml); flags override it [default: built-in defaults].
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Simulated receiving clients [default: profile, else 100].
    #[arg(long)]
    clients: Option<usize>,
    /// Aggregate publish rate, messages per second [default: profile, else 200].
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of publishing, per phase of each round [default: profile, else 10].
    #[arg(long, visible_alias = "duration")]
    duration_secs: Option<f64>,
    /// Client connections started per second [default: profile, else 1000].
    #[arg(long)]
    connects_per_sec: Option<f64>,
    /// Bytes of each message body [default: profile, else 16].
    #[arg(long)]
    body_bytes: Option<usize>,
    /// How messages are published [default: profile, else tcp].
    #[arg(long, value_enum)]
    publish_via: Option<PublishVia>,
    /// TCP publishing connections (publish-only sessions) [default: profile, else 2].
    #[arg(long)]
    tcp_publishers: Option<u32>,
    /// Seconds to wait for the last deliveries after publishing ends [default: profile, else 10].
    #[arg(long)]
    drain_timeout_secs: Option<f64>,
    /// Local source address for client sockets (repeatable), e.g. 127.0.0.2 [default: the OS picks].
    #[arg(long = "source-addr")]
    source_addrs: Vec<String>,
    /// Target a running deployment: a server address (repeatable). Without it
    /// loadgen brings up its own stack [default: an embedded stack].
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Gateway base URL of the running deployment [default: the embedded stack's].
    #[arg(long)]
    gateway: Option<String>,
    /// Gateway API key for --publish-via http (also LOADGEN_API_KEY; never shown) [default: the embedded stack's].
    #[arg(long, env = "LOADGEN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Users are <prefix>-0 … <prefix>-(clients + publishers) [default: profile, else lg].
    #[arg(long)]
    user_prefix: Option<String>,
    /// Password of those users (target mode; also LOADGEN_PASSWORD, never shown) [default: the embedded stack's].
    #[arg(long, env = "LOADGEN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Server nodes of the embedded stack [default: profile, else 1].
    #[arg(long)]
    server_nodes: Option<usize>,
    /// Server pids to include in the self-check (target mode, repeatable) [default: none].
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Redis host:port for the floor [default: the embedded stack's].
    #[arg(long)]
    floor_redis: Option<String>,
    /// pid of the --floor-redis server, for its CPU per delivery [default: the embedded container's; else not measured].
    #[arg(long)]
    floor_redis_pid: Option<u32>,
    /// Skip the Redis floor.
    #[arg(long)]
    no_floor: bool,
    /// The yardsticks measured after rtmc at the same load, e.g.
    /// floor,nats,jetstream (run: in that order) [default: profile, else floor].
    #[arg(long, value_enum, value_delimiter = ',')]
    peers: Vec<Peer>,
    /// nats-server for the NATS peers, nats://host:port [default: profile, else one loadgen starts in a container].
    #[arg(long)]
    nats: Option<String>,
    /// p99 SLO in milliseconds [default: profile; ramp: 50].
    #[arg(long)]
    slo_p99_ms: Option<f64>,
    /// Tolerated connect/login failures, percent [default: profile, else 0].
    #[arg(long)]
    max_connect_error_pct: Option<f64>,
    /// Report directory [default: reports/<timestamp>-<profile>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// No live line.
    #[arg(long)]
    quiet: bool,
    /// The room workload's seed, to repeat a run whose report printed it
    /// (the profile needs a [workload]) [default: profile, else a fresh one].
    #[arg(long)]
    seed: Option<u64>,
}

impl LoadArgs {
    // Over 60 lines: one line per flag that overrides the profile, in flag order.
    fn profile(&self) -> anyhow::Result<Profile> {
        let mut p = match &self.profile {
            Some(path) => Profile::load(path)?,
            None => Profile {
                name: "default".into(),
                ..Default::default()
            },
        };
        let l = &mut p.load;
        macro_rules! set {
            ($dst:expr, $src:expr) => {
                if let Some(v) = $src.clone() {
                    $dst = v;
                }
            };
        }
        set!(l.clients, self.clients);
        set!(l.rate_per_sec, self.rate);
        set!(l.duration_secs, self.duration_secs);
        set!(l.connects_per_sec, self.connects_per_sec);
        set!(l.body_bytes, self.body_bytes);
        set!(l.publish_via, self.publish_via);
        set!(l.tcp_publishers, self.tcp_publishers);
        set!(l.drain_timeout_secs, self.drain_timeout_secs);
        if !self.source_addrs.is_empty() {
            l.source_addrs = self.source_addrs.clone();
        }
        let t = &mut p.target;
        if !self.servers.is_empty() {
            t.servers = self.servers.clone();
        }
        if self.gateway.is_some() {
            t.gateway = self.gateway.clone();
        }
        if self.api_key.is_some() {
            t.api_key = self.api_key.clone();
        }
        set!(t.user_prefix, self.user_prefix);
        if self.password.is_some() {
            t.password = self.password.clone();
        }
        set!(t.server_nodes, self.server_nodes);
        if !self.server_pids.is_empty() {
            t.server_pids = self.server_pids.clone();
        }
        if self.floor_redis.is_some() {
            p.floor.redis = self.floor_redis.clone();
        }
        if self.floor_redis_pid.is_some() {
            p.floor.redis_pid = self.floor_redis_pid;
        }
        if !self.peers.is_empty() {
            p.set_peers(&self.peers);
        }
        if self.no_floor {
            p.floor.enabled = false;
        }
        if self.nats.is_some() {
            p.nats.url = self.nats.clone();
        }
        if self.slo_p99_ms.is_some() {
            p.slo.p99_ms = self.slo_p99_ms;
        }
        set!(p.slo.max_connect_error_pct, self.max_connect_error_pct);
        if self.out.is_some() {
            p.output.out = self.out.clone();
        }
        p.output.quiet |= self.quiet;
        if let Some(seed) = self.seed {
            let w = p
                .workload
                .as_mut()
                .context("--seed draws a room workload: the profile has no [workload]")?;
            w.seed = Some(seed);
        }
        Ok(p)
    }
}

async fn load(profile: Profile, mode: Mode) -> anyhow::Result<bool> {
    report_outcome(execute(profile, mode).await?)
}

/// `loadgen agent`: serves until SIGTERM / Ctrl-C (main's select drops it).
async fn agent(listen: &str) -> anyhow::Result<bool> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the agent's control API to {listen}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port (with :0).
    println!("loadgen agent listening on {addr}");
    rtmc_loadgen::agents::server::serve(listener, tokio_util::sync::CancellationToken::new())
        .await
        .context("serving the agent's control API")?;
    Ok(true)
}

/// Prints a finished run's report and says whether it passed.
fn report_outcome(outcome: rtmc_loadgen::run::RunOutcome) -> anyhow::Result<bool> {
    print!("{}", render_text(&outcome.report));
    println!("report: {}", outcome.dir.display());
    for f in &outcome.files {
        println!("  {}", f.display());
    }
    if !outcome.report.passed() {
        eprintln!(
            "\nloadgen: RUN FAILED — {}",
            outcome.report.failures.join(" | ")
        );
    }
    Ok(outcome.report.passed())
}

async fn merge(dirs: Vec<PathBuf>, out: Option<PathBuf>) -> anyhow::Result<bool> {
    let m = merge_dirs(&dirs).context("merging report directories")?;
    let out = out.unwrap_or_else(|| files::default_dir("merge"));
    let start = dirs
        .first()
        .and_then(|d| start_time_of(d))
        .unwrap_or_else(std::time::SystemTime::now);
    let mut merged = Vec::new();
    for (stem, tag) in [
        ("latency", "rtmc"),
        ("ack", "rtmc-ack"),
        ("floor", "floor"),
        ("floor-ack", "floor-ack"),
        ("nats", "nats"),
        ("nats-ack", "nats-ack"),
        ("jetstream", "jetstream"),
        ("jetstream-ack", "jetstream-ack"),
    ] {
        if let Some(h) = m.by_tag.get(tag) {
            merged.push((stem, h));
        }
    }
    let h = ReportHistograms {
        run_start: start,
        intervals: &m.intervals,
        merged,
    };
    let mut files = files::write_dir(&out, &m.report, &h)?;
    files.extend(plots::write_all(&out, h.intervals, &h.merged, None));
    print!("{}", render_text(&m.report));
    println!("merged report: {}", out.display());
    for f in &files {
        println!("  {}", f.display());
    }
    Ok(m.report.passed())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let work = async move { command(cli.command).await };
        // SIGTERM (the gate's round timeout) or Ctrl-C: dropping the run
        // drops its embedded stack, which stops the rtmc processes and
        // removes the containers, then loadgen exits non-zero.
        tokio::select! {
            r = work => r.map(Outcome::Finished),
            s = stop_signal() => s.map(Outcome::Stopped),
        }
    });
    // The embedded stack's containers are removed on drop; give the runtime
    // a moment to finish that before exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(Outcome::Finished(true)) => ExitCode::SUCCESS,
        Ok(Outcome::Finished(false)) => ExitCode::from(1),
        Ok(Outcome::Stopped(signal)) => {
            eprintln!(
                "loadgen: stopped by {}; the embedded stack was torn down",
                signal.name
            );
            ExitCode::from(signal.exit_code)
        }
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How the process ended.
enum Outcome {
    /// The command ran; whether it passed.
    Finished(bool),
    /// A signal stopped it.
    Stopped(StopSignal),
}

/// A signal that stops loadgen and the exit code it leaves (128 + number).
struct StopSignal {
    name: &'static str,
    exit_code: u8,
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() -> anyhow::Result<StopSignal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => StopSignal { name: "SIGTERM", exit_code: 143 },
        _ = int.recv() => StopSignal { name: "SIGINT", exit_code: 130 },
    })
}

// Over 60 lines: one arm per subcommand, each a few calls into the library.
async fn command(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Run {
            load: a,
            rounds,
            fleets_per_phase,
            blaster,
            agents,
            max_clock_skew_ms,
        } => {
            let mut p = a.profile()?;
            if let Some(n) = rounds {
                anyhow::ensure!(n >= 1, "--rounds must be at least 1");
                p.load.rounds = n;
            }
            p.blaster.enabled |= blaster;
            p.load.fleets_per_phase |= fleets_per_phase;
            if agents.is_empty() {
                load(p, Mode::Run).await
            } else {
                anyhow::ensure!(
                    p.workload.is_none(),
                    "a [workload] runs in one loadgen process: --agents does not split room workloads yet"
                );
                let opts = AgentRunOptions {
                    agents,
                    max_clock_skew_ms,
                };
                report_outcome(run_with_agents(p, opts).await?)
            }
        }
        Command::Agent { listen } => agent(&listen).await,
        Command::Blaster {
            sockets,
            messages,
            frames_per_write,
            body_bytes,
            time_limit_secs,
        } => {
            let shape = std::sync::Arc::new(MessageShape::new(std::process::id(), body_bytes));
            let mut report = BlasterReport { runs: Vec::new() };
            for k in [1, frames_per_write.max(1)] {
                let spec = BlasterSpec {
                    sockets,
                    messages,
                    frames_per_write: k,
                    time_limit: std::time::Duration::from_secs_f64(time_limit_secs.max(0.1)),
                };
                report.runs.push(blast(spec, shape.clone()).await?);
            }
            let mut out = String::new();
            blaster_text(&mut out, &report);
            print!("{out}");
            Ok(true)
        }
        Command::Floor(a) => load(a.profile()?, Mode::FloorOnly).await,
        Command::Ramp {
            load: a,
            start_rate,
            step_rate,
            factor,
            max_rate,
            step_duration_secs,
            through,
        } => {
            let mut p = a.profile()?;
            let r = &mut p.ramp;
            if let Some(v) = start_rate {
                r.start_rate_per_sec = v;
            }
            if let Some(v) = step_rate {
                r.step_rate_per_sec = v;
            }
            if factor.is_some() {
                r.factor = factor;
            }
            if let Some(v) = max_rate {
                r.max_rate_per_sec = v;
            }
            if let Some(v) = step_duration_secs {
                r.step_duration_secs = v;
            }
            r.through |= through;
            load(p, Mode::Ramp).await
        }
        Command::Merge { dirs, out } => merge(dirs, out).await,
        Command::Hops(a) => hops(a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it is for and, unless it
    /// is required or a switch, what its default is.
    #[test]
    fn every_argument_has_help_naming_its_default() {
        rtmc::cli_help::assert_documented(Cli::command());
    }

    /// The help of each argument of `help`, one entry per flag or
    /// positional (its lines joined).
    fn argument_entries(help: &str) -> Vec<String> {
        let mut entries: Vec<String> = Vec::new();
        for line in help.lines() {
            let t = line.trim_start();
            let starts_entry = line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'));
            match entries.last_mut() {
                Some(e) if !starts_entry && line.starts_with(' ') => e.push_str(t),
                _ if starts_entry => entries.push(t.to_owned()),
                _ => {}
            }
        }
        entries
    }

    /// clap appends `[default: …]` itself for a default it knows; a doc
    /// comment that says it too printed it twice.
    #[test]
    fn no_help_prints_a_default_twice() {
        let mut cli = Cli::command();
        cli.build();
        let names: Vec<String> = cli
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert!(names.len() >= 6, "{names:?}");
        let mut doubled = Vec::new();
        for name in &names {
            let sub = cli.find_subcommand_mut(name).expect("listed subcommand");
            let help = sub.render_help().to_string();
            for entry in argument_entries(&help) {
                if entry.matches("[default:").count() > 1 {
                    doubled.push(format!("{name}: {entry}"));
                }
            }
        }
        assert!(
            doubled.is_empty(),
            "defaults said twice:\n{}",
            doubled.join("\n")
        );
    }

    #[test]
    fn the_help_check_sees_a_doubled_default() {
        let help = "Options:\n      --rounds <ROUNDS>\n          Rounds [default: 5] [default: 5]\n      --quiet\n          No line\n";
        let entries = argument_entries(help);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0].matches("[default:").count(), 2);
    }

    #[test]
    fn peers_are_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "run",
            "--peers",
            "floor,nats,jetstream",
            "--nats",
            "nats://127.0.0.1:4222",
        ])
        .unwrap();
        let Command::Run { load: a, .. } = cli.command else {
            panic!("run")
        };
        let p = a.profile().unwrap();
        assert!(p.floor.enabled && p.nats.core && p.nats.jetstream);
        assert_eq!(p.nats.url.as_deref(), Some("nats://127.0.0.1:4222"));
        let Command::Run { load: a, .. } =
            Cli::try_parse_from(["loadgen", "run", "--peers", "jetstream"])
                .unwrap()
                .command
        else {
            panic!("run")
        };
        let p = a.profile().unwrap();
        assert!(!p.floor.enabled && !p.nats.core && p.nats.jetstream);
        let Command::Run { load: a, .. } = Cli::try_parse_from(["loadgen", "run"]).unwrap().command
        else {
            panic!("run")
        };
        let p = a.profile().unwrap();
        assert!(
            p.floor.enabled && !p.nats.core && !p.nats.jetstream,
            "the default is unchanged"
        );
        assert!(Cli::try_parse_from(["loadgen", "run", "--peers", "floor,kafka"]).is_err());
    }

    #[test]
    fn seed_sets_the_room_workloads_seed_and_needs_one() {
        let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/rooms-smoke.toml");
        let args = ["loadgen", "run", "--profile", smoke, "--seed", "99"];
        let Command::Run { load: a, .. } = Cli::try_parse_from(args).unwrap().command else {
            panic!("run")
        };
        let p = a.profile().unwrap();
        assert_eq!(p.workload.and_then(|w| w.seed), Some(99));
        let Command::Run { load: a, .. } = Cli::try_parse_from(["loadgen", "run", "--seed", "99"])
            .unwrap()
            .command
        else {
            panic!("run")
        };
        let e = a.profile().expect_err("no [workload]");
        assert!(e.to_string().contains("[workload]"), "{e}");
    }

    #[test]
    fn duration_is_an_alias_and_fleets_per_phase_a_flag() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "run",
            "--duration",
            "20",
            "--rounds",
            "3",
            "--fleets-per-phase",
        ])
        .unwrap();
        let Command::Run {
            load: a,
            rounds,
            fleets_per_phase,
            ..
        } = cli.command
        else {
            panic!("run")
        };
        assert_eq!(a.profile().unwrap().load.duration_secs, 20.0);
        assert_eq!((rounds, fleets_per_phase), (Some(3), true));
        assert!(Cli::try_parse_from(["loadgen", "run", "--duration", "x"]).is_err());
    }
}
