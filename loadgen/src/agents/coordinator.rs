//! `loadgen run --agents A,B,…`: the coordinator. It asks each agent who
//! it is (same control protocol or refuse), compares clocks (refusing a
//! skew above the bound), brings the target up (or resolves it), splits
//! the receivers and publishers over the agents ([`split`]), has each
//! connect its fleet, starts them all on one schedule (a moment in the
//! future on each agent's clock, corrected for its skew), prints one live
//! line per second merged from all, probes the final head once every agent
//! has published and hands it out for the drain, then merges the agents'
//! interval logs and accounting into one report, the same files as a run in
//! one process plus a per-agent section. An agent that fails or stops
//! answering mid-run ends the run with an error that names it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures::future::join_all;

use crate::agents::client::{AgentClient, AgentError};
use crate::agents::clock::{best_skew, ClockSkew};
use crate::agents::order::{
    AgentResults, AgentStatus, DrainOrder, StartOrder, WorkOrder, AGENT_PROTOCOL_VERSION,
};
use crate::agents::split::{split, AgentShare};
use crate::engine::accounting::{acked_not_delivered, union_into};
use crate::engine::phase::{current_head, HeadProbe, PhaseReport};
use crate::measure::cpu::{self, CpuWatch};
use crate::measure::histogram::{
    merge_into, new_histogram, read_interval_log, LatencyHistogram, LatencySummary,
};
use crate::profile::{Profile, PublishVia};
use crate::report::files::{self, ReportHistograms};
use crate::report::merge::{merge_intervals, merge_phases};
use crate::report::plots;
use crate::report::rounds::{RoundPhases, RoundsSummary};
use crate::report::types::{AgentReport, ConnectReport, RunReport};
use crate::run::{bring_up, rss_kib, say, weigh_clients, FleetOrigin, RunError, RunOutcome};
use crate::stack::Target;

/// Refuse agents whose clock is further than this from the coordinator's, ms.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: f64 = 50.0;
/// Clock exchanges per agent; the shortest round trip's is kept.
const CLOCK_SAMPLES: usize = 7;
/// How far ahead of now the common start is set.
const START_LEAD: Duration = Duration::from_secs(2);
/// Status polls an agent may miss in a row before it counts as lost.
const MISSED_POLLS_TOLERATED: u32 = 3;

/// What `run --agents` adds to a profile.
#[derive(Debug, Clone)]
pub struct AgentRunOptions {
    /// The agents' `host:port`s.
    pub agents: Vec<String>,
    /// The largest clock skew accepted, ms.
    pub max_clock_skew_ms: f64,
}

/// Why a run over agents could not be done.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("--agents: {0}")]
    Unsupported(String),
    #[error("agent {agent}: speaks control protocol {theirs} (loadgen {version}), this coordinator {AGENT_PROTOCOL_VERSION}: run the same loadgen build on every agent")]
    VersionMismatch {
        agent: String,
        theirs: u32,
        version: String,
    },
    #[error("agent {agent}: clock {offset_ms:+.3} ms off the coordinator's (± {uncertainty_ms:.3} ms), above the bound of {bound_ms} ms: synchronise the clocks (chrony/NTP) or raise --max-clock-skew-ms")]
    ClockSkew {
        agent: String,
        offset_ms: f64,
        uncertainty_ms: f64,
        bound_ms: f64,
    },
    #[error("agent {agent} failed mid-run: {why}")]
    AgentFailed { agent: String, why: String },
    #[error("agent {agent} stopped answering mid-run: {why}")]
    AgentLost { agent: String, why: String },
    #[error("agent {agent}: {why}")]
    BadResults { agent: String, why: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One agent of the run: its client, clock skew and share.
struct Member {
    /// Its control API.
    client: AgentClient,
    /// Its clock against the coordinator's.
    skew: ClockSkew,
    /// Its clients and publishers.
    share: AgentShare,
}

/// Runs `profile` spread over the agents and writes the merged report.
pub async fn run_with_agents(
    profile: Profile,
    opts: AgentRunOptions,
) -> Result<RunOutcome, CoordinatorError> {
    check_supported(&profile, &opts)?;
    let clients = opts
        .agents
        .iter()
        .map(|a| AgentClient::new(a))
        .collect::<Result<Vec<_>, _>>()?;
    greet(&clients).await?;
    let skews = compare_clocks(&clients, opts.max_clock_skew_ms).await?;
    let (stack, target) = bring_up(&profile).await?;
    if let Some(why) = unreachable_servers(&opts.agents, &target.servers) {
        return Err(CoordinatorError::Unsupported(why));
    }
    let total_channels = profile.load.tcp_publishers.max(1);
    let members: Vec<Member> = clients
        .into_iter()
        .zip(skews)
        .zip(split(
            profile.load.clients,
            total_channels,
            opts.agents.len(),
        ))
        .map(|((client, skew), share)| Member {
            client,
            skew,
            share,
        })
        .collect();
    let run = CoordinatedRun::new(&profile, &target, members);
    let outcome = run.execute().await;
    if let Some(s) = stack {
        s.shutdown().await;
    }
    outcome
}

/// Refuses what a run over agents does not do (yet).
fn check_supported(profile: &Profile, opts: &AgentRunOptions) -> Result<(), CoordinatorError> {
    let no = |m: &str| Err(CoordinatorError::Unsupported(m.into()));
    if opts.agents.is_empty() {
        return no("no agent given");
    }
    let mut names = opts.agents.clone();
    names.sort();
    names.dedup();
    if names.len() != opts.agents.len() {
        return no("an agent is listed twice");
    }
    if profile.load.rounds > 1 {
        return no("--rounds is not supported over agents (one rtmc phase)");
    }
    if profile.load.publish_via != PublishVia::Tcp {
        return no("only TCP publishing (--publish-via tcp) is spread over agents");
    }
    if profile.blaster.enabled {
        return no("--blaster runs in one process; leave it out with --agents");
    }
    Ok(())
}

/// Why agents on other hosts could not reach the servers, if they could
/// not: an agent address that is not loopback while a server address is
/// (the embedded stack listens on 127.0.0.1 only).
fn unreachable_servers(agents: &[String], servers: &[std::net::SocketAddr]) -> Option<String> {
    use std::net::ToSocketAddrs;
    let local_server = servers.iter().find(|s| s.ip().is_loopback())?;
    let remote_agent = agents.iter().find(|a| {
        a.to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .is_some_and(|addr| !addr.ip().is_loopback())
    })?;
    Some(format!(
        "agent {remote_agent} is not on loopback but the server {local_server} is: agents on other hosts need --server addresses they can reach (a running deployment)"
    ))
}

/// Asks every agent who it is; refuses a different control protocol.
async fn greet(clients: &[AgentClient]) -> Result<(), CoordinatorError> {
    let hellos = join_all(clients.iter().map(|c| c.hello())).await;
    for (c, h) in clients.iter().zip(hellos) {
        let h = h?;
        if h.protocol_version != AGENT_PROTOCOL_VERSION {
            return Err(CoordinatorError::VersionMismatch {
                agent: c.name.clone(),
                theirs: h.protocol_version,
                version: h.loadgen_version,
            });
        }
        if h.stage == "preparing" || h.stage == "running" {
            return Err(CoordinatorError::Unsupported(format!(
                "agent {} is busy ({})",
                c.name, h.stage
            )));
        }
    }
    Ok(())
}

/// Each agent's clock skew (midpoint method, shortest round trip of
/// [`CLOCK_SAMPLES`]); refuses one whose bound exceeds `max_ms`.
async fn compare_clocks(
    clients: &[AgentClient],
    max_ms: f64,
) -> Result<Vec<ClockSkew>, CoordinatorError> {
    let mut out = Vec::new();
    for c in clients {
        let mut samples = Vec::new();
        for _ in 0..CLOCK_SAMPLES {
            samples.push(c.clock_sample().await?);
        }
        let skew = best_skew(&samples).ok_or_else(|| CoordinatorError::BadResults {
            agent: c.name.clone(),
            why: "no clock sample".into(),
        })?;
        if skew.bound_us() as f64 / 1000.0 > max_ms {
            return Err(CoordinatorError::ClockSkew {
                agent: c.name.clone(),
                offset_ms: skew.offset_us as f64 / 1000.0,
                uncertainty_ms: skew.round_trip_us as f64 / 2000.0,
                bound_ms: max_ms,
            });
        }
        out.push(skew);
    }
    Ok(out)
}

/// A run over agents under way.
struct CoordinatedRun<'a> {
    /// The run's load.
    profile: &'a Profile,
    /// Where the clients connect.
    target: &'a Target,
    /// The agents, in `--agents` order.
    members: Vec<Member>,
    /// In every message id; the same on every agent.
    run_id: u32,
    /// Local time (RFC 3339), for the report.
    started_at: String,
}

impl<'a> CoordinatedRun<'a> {
    fn new(profile: &'a Profile, target: &'a Target, members: Vec<Member>) -> Self {
        let uuid = uuid::Uuid::new_v4();
        let b = uuid.as_bytes();
        Self {
            profile,
            target,
            members,
            run_id: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            started_at: chrono::Local::now().to_rfc3339(),
        }
    }

    /// Prepare, start, watch, drain, collect, merge, write.
    async fn execute(self) -> Result<RunOutcome, CoordinatorError> {
        let rss_before = rss_kib(&self.target.server_node_pids);
        let connects = self.prepare_all().await?;
        let probe = self.probe();
        let head_before = current_head(&probe).await.unwrap_or(0);
        let server_cpu = server_cpu_watches(self.target);
        let cpu_start = cpu::read(&server_cpu);
        let start_at_run_us = rtmc::protocol::now_us() + START_LEAD.as_micros() as u64;
        self.start_all(start_at_run_us, head_before).await?;
        let final_head = self.watch(&probe, head_before).await?;
        let results = self.collect().await?;
        let cpu_end = cpu::read(&server_cpu);
        let mut connect = merge_connects(self.profile.load.clients, &connects);
        let rss_after = rss_kib(&self.target.server_node_pids);
        weigh_clients(
            FleetOrigin::First,
            rss_before,
            rss_after,
            connect.connected,
            &mut connect,
        );
        let mut merged = self.merge(&results, connect, final_head)?;
        if let Some(rtmc) = merged.report.rtmc.as_mut() {
            rtmc.server_cpu = cpu::spent(&server_cpu, &cpu_start, &cpu_end, rtmc.deliveries);
            rtmc.head_before = head_before;
        }
        self.write(merged, &results, start_at_run_us)
    }

    fn probe(&self) -> HeadProbe {
        let load = &self.profile.load;
        HeadProbe::Rtmc {
            addr: self.target.servers[0],
            user: self
                .target
                .user(load.clients + load.tcp_publishers.max(1) as usize),
            password: self.target.password.clone(),
        }
    }

    /// The work order of `m`.
    fn order(&self, m: &Member) -> WorkOrder {
        let load = &self.profile.load;
        let agents = self.members.len().max(1) as f64;
        WorkOrder {
            protocol_version: AGENT_PROTOCOL_VERSION,
            agent: m.client.name.clone(),
            run_id: self.run_id,
            servers: self.target.servers.iter().map(|s| s.to_string()).collect(),
            user_prefix: self.target.user_prefix.clone(),
            password: self.target.password.clone(),
            first_client: m.share.first_client,
            clients: m.share.clients,
            first_channel: m.share.first_channel,
            channels: m.share.channels,
            total_channels: load.tcp_publishers.max(1),
            publisher_user_base: load.clients,
            rate_per_sec: load.rate_per_sec,
            duration_secs: load.duration_secs,
            body_bytes: load.body_bytes,
            connects_per_sec: load.connects_per_sec / agents,
            connect_timeout_ms: load.connect_timeout_ms,
            drain_timeout_secs: load.drain_timeout_secs,
            witnesses: load.witnesses,
            source_addrs: load.source_addrs.clone(),
            max_frame_bytes: self.target.max_frame_bytes,
        }
    }

    /// Every agent connects its fleet, at once; the answers in agent order.
    async fn prepare_all(&self) -> Result<Vec<ConnectReport>, CoordinatorError> {
        let load = &self.profile.load;
        say(
            self.profile,
            &format!(
                "connecting {} clients over {} agents…",
                load.clients,
                self.members.len()
            ),
        );
        let ramp_secs = load.clients as f64 / load.connects_per_sec.max(1.0);
        let bound = Duration::from_secs_f64(ramp_secs + 60.0)
            + Duration::from_millis(load.connect_timeout_ms);
        let orders: Vec<WorkOrder> = self.members.iter().map(|m| self.order(m)).collect();
        let answers = join_all(
            self.members
                .iter()
                .zip(&orders)
                .map(|(m, o)| m.client.prepare(o, bound)),
        )
        .await;
        answers
            .into_iter()
            .map(|a| a.map(|p| p.connect).map_err(CoordinatorError::from))
            .collect()
    }

    /// Sends each agent the common start, on its own clock.
    async fn start_all(
        &self,
        start_at_run_us: u64,
        head_before: u64,
    ) -> Result<(), CoordinatorError> {
        let starts = self.members.iter().map(|m| {
            let order = StartOrder {
                start_at_agent_us: start_at_run_us.saturating_add_signed(m.skew.offset_us),
                start_at_run_us,
                clock_offset_us: m.skew.offset_us,
                head_before,
            };
            async move { m.client.start(&order).await }
        });
        for r in join_all(starts).await {
            r?;
        }
        Ok(())
    }

    /// Polls every agent each second, prints the merged live line, hands
    /// out the final head once all have published, and returns it when all
    /// have drained.
    async fn watch(&self, probe: &HeadProbe, head_before: u64) -> Result<u64, CoordinatorError> {
        let load = &self.profile.load;
        let limit = START_LEAD
            + Duration::from_secs_f64(load.duration_secs + 2.0 * load.drain_timeout_secs + 60.0);
        let deadline = tokio::time::Instant::now() + limit;
        let mut missed = vec![0u32; self.members.len()];
        let mut line = LiveLine::new();
        let mut final_head = None;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let statuses = self.poll(&mut missed).await?;
            if !self.profile.output.quiet {
                eprintln!("{}", line.render(&statuses, self.members.len()));
            }
            if final_head.is_none() && statuses.iter().all(|s| s.published.is_some()) {
                let acked: u64 = statuses
                    .iter()
                    .filter_map(|s| s.published)
                    .map(|p| p.acked)
                    .sum();
                let head = self.final_head(probe, head_before + acked).await;
                self.drain_all(head).await?;
                final_head = Some(head);
            }
            if let Some(head) = final_head {
                if statuses.iter().all(|s| s.stage == "finished") {
                    return Ok(head);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let late = self
                    .members
                    .iter()
                    .zip(&statuses)
                    .find(|(_, s)| s.stage != "finished");
                let (agent, stage) = late.map_or(("?".into(), "?".into()), |(m, s)| {
                    (m.client.name.clone(), s.stage.clone())
                });
                return Err(CoordinatorError::AgentLost {
                    agent,
                    why: format!("still {stage} {} s after the start", limit.as_secs()),
                });
            }
        }
    }

    /// Every agent's status; an agent that failed, or missed
    /// [`MISSED_POLLS_TOLERATED`] polls in a row, ends the run.
    async fn poll(&self, missed: &mut [u32]) -> Result<Vec<AgentStatus>, CoordinatorError> {
        let answers = join_all(self.members.iter().map(|m| m.client.status())).await;
        let mut out = Vec::with_capacity(answers.len());
        for ((m, a), miss) in self.members.iter().zip(answers).zip(missed.iter_mut()) {
            match a {
                Ok(s) if s.stage == "failed" => {
                    return Err(CoordinatorError::AgentFailed {
                        agent: m.client.name.clone(),
                        why: s.failure.unwrap_or_default(),
                    })
                }
                Ok(s) if s.stage == "idle" || s.stage == "ready" => {
                    return Err(CoordinatorError::AgentFailed {
                        agent: m.client.name.clone(),
                        why: format!("it is {} although the run started (restarted?)", s.stage),
                    })
                }
                Ok(s) => {
                    *miss = 0;
                    out.push(s);
                }
                Err(e) => {
                    *miss += 1;
                    if *miss >= MISSED_POLLS_TOLERATED {
                        return Err(CoordinatorError::AgentLost {
                            agent: m.client.name.clone(),
                            why: e.problem,
                        });
                    }
                    out.push(AgentStatus {
                        stage: "unanswered".into(),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(out)
    }

    /// The head once it covers every acknowledged message (or whatever it
    /// is at the drain timeout).
    async fn final_head(&self, probe: &HeadProbe, expected: u64) -> u64 {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(self.profile.load.drain_timeout_secs);
        let mut best = 0;
        loop {
            if let Some(h) = current_head(probe).await {
                best = best.max(h);
            }
            if best >= expected || tokio::time::Instant::now() >= deadline {
                return best;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn drain_all(&self, final_head: u64) -> Result<(), CoordinatorError> {
        let order = DrainOrder { final_head };
        for r in join_all(self.members.iter().map(|m| m.client.drain(&order))).await {
            r?;
        }
        Ok(())
    }

    async fn collect(&self) -> Result<Vec<AgentResults>, CoordinatorError> {
        join_all(self.members.iter().map(|m| m.client.results()))
            .await
            .into_iter()
            .map(|r| r.map_err(CoordinatorError::from))
            .collect()
    }
}

/// The server processes whose CPU the merged phase reports.
fn server_cpu_watches(target: &Target) -> Vec<CpuWatch> {
    if target.server_node_pids.is_empty() {
        vec![CpuWatch::not_measured("rtmc server", "give --server-pid")]
    } else {
        vec![CpuWatch::of(
            "rtmc server nodes",
            target.server_node_pids.clone(),
        )]
    }
}

/// The agents' bring-ups as one: counts summed; the connect and login
/// latency of the agent with the highest login p99 (the summaries cannot
/// be merged), the longest ramp.
pub fn merge_connects(clients: usize, connects: &[ConnectReport]) -> ConnectReport {
    let worst = connects
        .iter()
        .max_by(|a, b| a.login.p99_ms.total_cmp(&b.login.p99_ms));
    let mut m = worst.cloned().unwrap_or_default();
    m.clients = clients;
    m.connected = connects.iter().map(|c| c.connected).sum();
    m.connect_errors = connects.iter().map(|c| c.connect_errors).sum();
    m.login_errors = connects.iter().map(|c| c.login_errors).sum();
    m.error_samples = connects
        .iter()
        .flat_map(|c| c.error_samples.iter().cloned())
        .take(5)
        .collect();
    m.ramp_secs = connects.iter().map(|c| c.ramp_secs).fold(0.0, f64::max);
    m
}

/// One merged live line a second over the agents' latest figures.
struct LiveLine {
    /// When watching began (the line's seconds).
    started: Instant,
    /// The previous line's time and summed deliveries (its rate).
    last: Option<(Instant, u64)>,
}

impl LiveLine {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: None,
        }
    }

    /// `[  5s rtmc × 2 agents] pub 200  ack 1004  deliv 20.0k/s  p50 …`.
    fn render(&mut self, statuses: &[AgentStatus], agents: usize) -> String {
        let sum = |f: fn(&AgentStatus) -> u64| statuses.iter().map(f).sum::<u64>();
        let deliveries = sum(|s| s.live.deliveries);
        let now = Instant::now();
        let rate = match self.last {
            Some((t, d)) => deliveries.saturating_sub(d) as f64 / (now - t).as_secs_f64().max(1e-3),
            None => 0.0,
        };
        self.last = Some((now, deliveries));
        let mut h = new_histogram();
        for s in statuses {
            if let Some(Ok(i)) = s.live.interval.as_ref().map(|e| e.decode()) {
                merge_into(&mut h, &i);
            }
        }
        let l = LatencySummary::of(&h);
        let up = statuses.iter().filter(|s| s.stage != "unanswered").count();
        format!(
            "[{:>4}s rtmc × {up}/{agents} agents] pub {}  ack {}  deliv {:.0}/s  p50 {:.2}ms  p99 {:.2}ms  max {:.1}ms  clients {}  errs pub {} disc {}",
            self.started.elapsed().as_secs(),
            sum(|s| s.live.published),
            sum(|s| s.live.acked),
            rate,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            sum(|s| s.live.connected),
            sum(|s| s.live.publish_errors),
            sum(|s| s.live.disconnects),
        )
    }
}

/// The merged report and what its files need.
struct MergedRun {
    /// rtmc's phase merged, the agents' rows.
    report: RunReport,
    /// The agents' intervals summed per tag and second.
    intervals: Vec<crate::measure::histogram::Interval>,
    /// Whole-run histogram per tag, merged over the agents.
    by_tag: std::collections::BTreeMap<String, LatencyHistogram>,
}

impl CoordinatedRun<'_> {
    /// One report from the agents' results: their interval logs merged
    /// (latency from the merged histograms), their accounting summed, the
    /// witnesses checked against every agent's acks, one row per agent.
    fn merge(
        &self,
        results: &[AgentResults],
        connect: ConnectReport,
        final_head: u64,
    ) -> Result<MergedRun, CoordinatorError> {
        let mut logs = Vec::new();
        for r in results {
            let log = read_interval_log(r.interval_log.as_bytes()).map_err(|e| {
                CoordinatorError::BadResults {
                    agent: r.agent.clone(),
                    why: format!("interval log: {e}"),
                }
            })?;
            logs.push(log);
        }
        let (intervals, by_tag) = merge_intervals(&logs);
        // The peak of the summed seconds, not the sum of each agent's peak.
        let peak_deliveries_per_sec = intervals
            .iter()
            .filter(|i| i.tag == "rtmc")
            .map(|i| i.histogram.len() as f64 / i.length.as_secs_f64().max(1e-3))
            .fold(0.0, f64::max);
        let phases: Vec<PhaseReport> = results.iter().map(|r| r.phase.clone()).collect();
        let mut phase =
            merge_phases(&phases, by_tag.get("rtmc"), by_tag.get("rtmc-ack")).unwrap_or_default();
        phase.head_after = final_head;
        phase.peak_deliveries_per_sec = peak_deliveries_per_sec;
        phase.acked_not_delivered = witnesses_missing(results);
        let mut report = RunReport::new(
            "run",
            self.profile.clone(),
            self.target.mode.clone(),
            self.started_at.clone(),
            format!("{:08x}", self.run_id),
        );
        report.record_fleet_connect("rtmc", 1, connect.clone());
        report.judge_connect("rtmc", &connect, self.profile.slo.max_connect_error_pct);
        report.judge_phase(
            &phase,
            self.profile.slo.p99_ms,
            self.profile.slo.max_publish_error_pct,
        );
        report.rounds = vec![RoundPhases {
            round: 1,
            phases: vec![phase.clone()],
        }];
        report.rounds_summary = Some(RoundsSummary::of(&report.rounds, &["rtmc"]));
        report.rtmc = Some(phase);
        report.agents = self.agent_rows(results);
        report.notes.push(format!(
            "spread over {} loadgen agents; latency read on the coordinator's clock (each agent's measured skew subtracted); the floor and peers are not run over agents",
            results.len()
        ));
        Ok(MergedRun {
            report,
            intervals,
            by_tag,
        })
    }

    fn agent_rows(&self, results: &[AgentResults]) -> Vec<AgentReport> {
        self.members
            .iter()
            .zip(results)
            .map(|(m, r)| AgentReport {
                agent: m.client.name.clone(),
                clock_offset_ms: m.skew.offset_us as f64 / 1000.0,
                clock_round_trip_ms: m.skew.round_trip_us as f64 / 1000.0,
                clients: m.share.clients,
                connected: r.connect.connected,
                publishers: m.share.channels,
                rate_per_sec: r.phase.rate_per_sec,
                published: r.phase.published,
                acked: r.phase.acked,
                deliveries: r.phase.deliveries,
                accounting: r.phase.accounting,
                latency: r.phase.latency,
                cpu_seconds: r.cpu_seconds,
            })
            .collect()
    }

    /// Writes the report directory (as a run in one process does) and each
    /// agent's interval log under `agents/`.
    fn write(
        &self,
        merged: MergedRun,
        results: &[AgentResults],
        start_at_run_us: u64,
    ) -> Result<RunOutcome, CoordinatorError> {
        let dir = self
            .profile
            .output
            .out
            .clone()
            .unwrap_or_else(|| files::default_dir("agents"));
        let mut hist: Vec<(&'static str, &LatencyHistogram)> = Vec::new();
        for (stem, tag) in [("latency", "rtmc"), ("ack", "rtmc-ack")] {
            if let Some(h) = merged.by_tag.get(tag) {
                hist.push((stem, h));
            }
        }
        let h = ReportHistograms {
            run_start: UNIX_EPOCH + Duration::from_micros(start_at_run_us),
            intervals: &merged.intervals,
            merged: hist,
        };
        let mut written = files::write_dir(&dir, &merged.report, &h).map_err(RunError::from)?;
        written.extend(plots::write_all(&dir, h.intervals, &h.merged, None));
        written.extend(write_agent_logs(&dir, results)?);
        Ok(RunOutcome {
            report: merged.report,
            dir,
            files: written,
        })
    }
}

/// Acknowledged messages (over every agent's publishers) the worst witness
/// (on any agent) never got.
fn witnesses_missing(results: &[AgentResults]) -> u64 {
    let mut acked = Vec::new();
    for r in results {
        union_into(&mut acked, &r.acked_set);
    }
    results
        .iter()
        .flat_map(|r| r.witness_sets.iter())
        .map(|w| acked_not_delivered(&acked, w))
        .max()
        .unwrap_or(0)
}

/// `agents/<host>_<port>.hlog`: each agent's own interval log, so that the
/// merge can be checked independently (ci/measure/agents.sh does, with
/// Python's `hdrh`).
fn write_agent_logs(
    dir: &Path,
    results: &[AgentResults],
) -> Result<Vec<PathBuf>, CoordinatorError> {
    let sub = dir.join("agents");
    std::fs::create_dir_all(&sub).map_err(|source| CoordinatorError::Write {
        path: sub.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for r in results {
        let name: String = r
            .agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = sub.join(format!("{name}.hlog"));
        std::fs::write(&path, &r.interval_log).map_err(|source| CoordinatorError::Write {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_agents_are_refused_loopback_servers() {
        let local = vec!["127.0.0.1:7000".parse().unwrap()];
        let remote = vec!["10.0.0.5:7000".parse().unwrap()];
        let here = vec!["127.0.0.1:7701".to_string(), "127.0.0.1:7702".to_string()];
        let away = vec!["127.0.0.1:7701".to_string(), "10.0.0.12:7700".to_string()];
        assert_eq!(unreachable_servers(&here, &local), None);
        assert_eq!(unreachable_servers(&away, &remote), None);
        let why = unreachable_servers(&away, &local).expect("refused");
        assert!(
            why.contains("10.0.0.12:7700") && why.contains("127.0.0.1:7000"),
            "{why}"
        );
    }

    #[test]
    fn connects_add_up_and_keep_the_worst_latency() {
        let mut a = ConnectReport {
            clients: 10,
            connected: 9,
            login_errors: 1,
            ramp_secs: 1.0,
            ..Default::default()
        };
        a.login.p99_ms = 5.0;
        let mut b = ConnectReport {
            clients: 10,
            connected: 10,
            ramp_secs: 2.0,
            ..Default::default()
        };
        b.login.p99_ms = 9.0;
        let m = merge_connects(20, &[a, b]);
        assert_eq!((m.clients, m.connected, m.login_errors), (20, 19, 1));
        assert_eq!(m.login.p99_ms, 9.0);
        assert_eq!(m.ramp_secs, 2.0);
    }

    #[test]
    fn a_witness_missing_another_agents_ack_is_counted() {
        let result = |acked: Vec<u64>, witness: Vec<Vec<u64>>| AgentResults {
            agent: "a".into(),
            connect: ConnectReport::default(),
            phase: PhaseReport::default(),
            interval_log: String::new(),
            acked_set: acked,
            witness_sets: witness,
            cpu_seconds: None,
            clock: Default::default(),
        };
        // Agent 1 acked ticks 0 and 2, agent 2 tick 1; agent 2's witness
        // missed tick 2 (agent 1's).
        let one = result(vec![0b101], vec![vec![0b111]]);
        let two = result(vec![0b010], vec![vec![0b011]]);
        assert_eq!(witnesses_missing(&[one.clone(), two]), 1);
        assert_eq!(witnesses_missing(&[one]), 0);
    }
}
