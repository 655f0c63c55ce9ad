//! `loadgen agent`: one loadgen process taking orders from a coordinator
//! over HTTP (JSON). It connects the receivers and publishers a work order
//! gives it, waits for the start order, publishes its slots of the run's
//! schedule at the agreed moment, reports live figures, drains to the head
//! the coordinator hands out once every agent has published, and serves
//! its results: the interval log, the accounting, the witness and ack
//! bitsets, its CPU and its clock readings. One run at a time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::agents::order::{
    AgentClockReadings, AgentResults, AgentStatus, ClockReading, DrainOrder, EncodedHistogram,
    ErrorBody, Hello, LiveFigures, OrderError, Prepared, StartOrder, WorkOrder,
    AGENT_PROTOCOL_VERSION,
};
use crate::engine::fleet::Fleet;
use crate::engine::fleet_options::{FleetOptions, Protocol};
use crate::engine::live::LiveStats;
use crate::engine::phase::{
    run_phase, Coordination, DrainGate, HeadProbe, PhaseResult, PhaseSpec, PublishedCounts,
};
use crate::engine::publisher::{Channel, MessageShape};
use crate::measure::cpu::{self, CpuWatch};
use crate::measure::histogram::{write_interval_log, Interval};
use crate::profile::{LoadProfile, Profile};
use crate::report::types::ConnectReport;

/// Where the agent is in a run.
enum Stage {
    /// Waiting for a work order.
    Idle,
    /// Connecting the fleet of a work order.
    Preparing,
    /// Fleet connected; waiting for the start order.
    Ready(Box<ReadyFleet>),
    /// Publishing or draining.
    Running(RunningPhase),
    /// Done; the results are served until the next work order.
    Finished(Box<AgentResults>),
    /// The run broke on this agent.
    Failed(String),
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::Preparing => "preparing",
            Stage::Ready(_) => "ready",
            Stage::Running(_) => "running",
            Stage::Finished(_) => "finished",
            Stage::Failed(_) => "failed",
        }
    }
}

/// A connected fleet and what it will run.
struct ReadyFleet {
    /// The order it came from.
    order: WorkOrder,
    /// The order's server addresses.
    servers: Vec<SocketAddr>,
    /// The receivers, connected and idle.
    fleet: Fleet,
    /// Their bring-up.
    connect: ConnectReport,
}

/// A phase under way.
struct RunningPhase {
    /// Set by the phase once its publishers are done.
    published: watch::Receiver<Option<PublishedCounts>>,
    /// The coordinator's final head, for the phase's drain.
    final_head: watch::Sender<Option<u64>>,
    /// The fleet's counters.
    live: Arc<LiveStats>,
    /// Finished delivery intervals as the phase ends them.
    intervals: mpsc::UnboundedReceiver<Interval>,
    /// The latest of them and its number.
    latest: Option<(u64, Interval)>,
}

/// The agent's state, shared by the handlers.
struct AgentState {
    /// Where the run is.
    stage: Mutex<Stage>,
    /// Refused requests by error code (the `/metrics` counter).
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

type Shared = Arc<AgentState>;

impl AgentState {
    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a refusal and turns it into its answer.
    fn refuse(&self, e: OrderError) -> Response {
        *self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(e.code())
            .or_default() += 1;
        error_response(e.http_status(), e.code(), &e.to_string())
    }
}

fn error_response(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = ErrorBody {
        code: code.into(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Serves the control API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state: Shared = Arc::new(AgentState {
        stage: Mutex::new(Stage::Idle),
        refused: Mutex::new(BTreeMap::new()),
    });
    let app = Router::new()
        .route("/v1/hello", get(hello))
        .route("/v1/clock", get(clock))
        .route("/v1/prepare", post(prepare))
        .route("/v1/start", post(start))
        .route("/v1/status", get(status))
        .route("/v1/drain", post(drain))
        .route("/v1/results", get(results))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn hello(State(s): State<Shared>) -> Json<Hello> {
    Json(Hello {
        protocol_version: AGENT_PROTOCOL_VERSION,
        loadgen_version: env!("CARGO_PKG_VERSION").into(),
        stage: s.stage().name().into(),
    })
}

async fn clock() -> Json<ClockReading> {
    Json(ClockReading {
        now_us: rtmc::protocol::now_us(),
    })
}

/// Parses a JSON body; a body that is not the expected JSON is refused
/// with `bad_json`, counted.
fn parse<T: DeserializeOwned>(s: &AgentState, body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        *s.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry("bad_json")
            .or_default() += 1;
        Box::new(error_response(400, "bad_json", &e.to_string()))
    })
}

fn wrong_stage(stage: &Stage, wanted: &str) -> OrderError {
    OrderError::WrongStage {
        stage: stage.name().into(),
        wanted: wanted.into(),
    }
}

/// `POST /v1/prepare`: validates the order, connects its fleet (the answer
/// comes once every client is up or failed).
async fn prepare(State(s): State<Shared>, body: Bytes) -> Response {
    let order: WorkOrder = match parse(&s, &body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let servers = match order.validate() {
        Ok(a) => a,
        Err(e) => return s.refuse(e),
    };
    let opts = match fleet_options(&order, &servers) {
        Ok(o) => o,
        Err(e) => return s.refuse(e),
    };
    {
        let mut stage = s.stage();
        // A Ready fleet whose coordinator never started it is replaced (one
        // coordinator at a time); a run in progress is not.
        if matches!(*stage, Stage::Preparing | Stage::Running(_)) {
            let e = wrong_stage(&stage, "a work order needs an agent not in a run");
            drop(stage);
            return s.refuse(e);
        }
        *stage = Stage::Preparing;
    }
    let fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    let connect = ConnectReport::of(order.clients, &fleet.summary);
    *s.stage() = Stage::Ready(Box::new(ReadyFleet {
        order,
        servers,
        fleet,
        connect: connect.clone(),
    }));
    Json(Prepared { connect }).into_response()
}

/// The receivers' fleet an order asks for.
fn fleet_options(order: &WorkOrder, servers: &[SocketAddr]) -> Result<FleetOptions, OrderError> {
    let load = LoadProfile {
        clients: order.clients,
        connects_per_sec: order.connects_per_sec,
        connect_timeout_ms: order.connect_timeout_ms,
        witnesses: order.witnesses,
        source_addrs: order.source_addrs.clone(),
        ..LoadProfile::default()
    };
    let users = (0..order.clients)
        .map(|i| user(order, order.first_client + i))
        .collect();
    let protocol = Protocol::Rtmc {
        users: Arc::new(users),
        password: order.password.clone(),
        max_frame_bytes: order.max_frame_bytes,
    };
    FleetOptions::for_load(&load, servers.to_vec(), protocol, order.run_id)
        .map_err(|e| OrderError::BadWorkOrder(e.to_string()))
}

fn user(order: &WorkOrder, i: usize) -> String {
    format!("{}-{i}", order.user_prefix)
}

/// `POST /v1/start`: starts the phase at the agreed moment.
async fn start(State(s): State<Shared>, body: Bytes) -> Response {
    let order: StartOrder = match parse(&s, &body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let mut stage = s.stage();
    let ready = match std::mem::replace(&mut *stage, Stage::Idle) {
        Stage::Ready(r) => r,
        other => {
            let e = wrong_stage(&other, "start needs a prepared agent");
            *stage = other;
            drop(stage);
            return s.refuse(e);
        }
    };
    let ReadyFleet {
        order: work,
        servers,
        fleet,
        connect,
    } = *ready;
    fleet.live.set_clock_offset_us(order.clock_offset_us);
    let (coordination, links) = coordination(&work, &order);
    let start_at = coordination.start_at;
    let spec = phase_spec(&work, &servers, order.head_before, coordination);
    *stage = Stage::Running(RunningPhase {
        published: links.published,
        final_head: links.final_head,
        live: fleet.live.clone(),
        intervals: links.intervals,
        latest: None,
    });
    drop(stage);
    let run = PhaseRun {
        work,
        fleet,
        connect,
        spec,
        start: order,
        start_at,
    };
    tokio::spawn(run.execute(s.clone()));
    StatusCode::ACCEPTED.into_response()
}

/// The agent's ends of a coordinated phase's channels.
struct PhaseLinks {
    /// Set by the phase once its publishers are done.
    published: watch::Receiver<Option<PublishedCounts>>,
    /// The coordinator's final head, for the phase's drain.
    final_head: watch::Sender<Option<u64>>,
    /// Finished delivery intervals.
    intervals: mpsc::UnboundedReceiver<Interval>,
}

/// How the phase of `work` fits the run: the start moment on this
/// process's clock (the agent-clock start converted to a monotonic
/// instant) and on the run's, its publisher slots, the drain gate and the
/// live tap; with the agent's ends of those channels.
fn coordination(work: &WorkOrder, order: &StartOrder) -> (Coordination, PhaseLinks) {
    let (published_tx, published) = watch::channel(None);
    let (final_head, final_head_rx) = watch::channel(None);
    let (tap, intervals) = mpsc::unbounded_channel();
    let wait = Duration::from_micros(
        order
            .start_at_agent_us
            .saturating_sub(rtmc::protocol::now_us()),
    );
    let coordination = Coordination {
        start_at: tokio::time::Instant::now() + wait,
        start_wall_us: order.start_at_run_us,
        first_channel: work.first_channel,
        total_channels: work.total_channels,
        drain_gate: DrainGate {
            published: Arc::new(published_tx),
            final_head: final_head_rx,
        },
        interval_tap: Some(tap),
    };
    let links = PhaseLinks {
        published,
        final_head,
        intervals,
    };
    (coordination, links)
}

/// The phase an order runs: its publishers' slots of the run's schedule,
/// at the whole run's rate (each publisher takes every `total_channels`-th
/// tick).
fn phase_spec(
    work: &WorkOrder,
    servers: &[SocketAddr],
    head_before: u64,
    coordination: Coordination,
) -> PhaseSpec {
    let mut profile = Profile::default();
    profile.load.rate_per_sec = work.rate_per_sec;
    profile.load.duration_secs = work.duration_secs;
    profile.load.drain_timeout_secs = work.drain_timeout_secs;
    profile.output.quiet = true;
    let channels = (0..work.channels)
        .map(|k| {
            let global = (work.first_channel + k) as usize;
            Channel::Tcp {
                addr: servers[global % servers.len()],
                user: user(work, work.publisher_user_base + global),
                password: work.password.clone(),
            }
        })
        .collect();
    // Only used should the coordinator vanish before handing out the head.
    let probe = HeadProbe::Rtmc {
        addr: servers[0],
        user: user(
            work,
            work.publisher_user_base + work.total_channels as usize,
        ),
        password: work.password.clone(),
    };
    let shape = Arc::new(MessageShape::new(work.run_id, work.body_bytes));
    let mut spec = PhaseSpec::new(
        "rtmc",
        &profile,
        channels,
        shape,
        probe,
        head_before,
        vec![],
    );
    spec.coordination = Some(coordination);
    spec
}

/// One started phase and what its results need.
struct PhaseRun {
    /// The order it runs.
    work: WorkOrder,
    /// Its receivers.
    fleet: Fleet,
    /// Their bring-up.
    connect: ConnectReport,
    /// The phase, coordinated.
    spec: PhaseSpec,
    /// The start order (clock readings).
    start: StartOrder,
    /// When publishing starts, on this process's clock.
    start_at: tokio::time::Instant,
}

impl PhaseRun {
    /// Runs the phase (a panic in it fails the agent, never wedges it) and
    /// leaves its results, or the failure, in the state.
    async fn execute(self, s: Shared) {
        let Self {
            work,
            mut fleet,
            connect,
            spec,
            start,
            start_at,
        } = self;
        let share = f64::from(work.channels) / f64::from(work.total_channels.max(1));
        let measured = tokio::spawn(async move {
            let me = [CpuWatch::of("loadgen agent", vec![std::process::id()])];
            let cpu_start = cpu::read(&me);
            let run_start = start_at.into_std();
            let r = run_phase(&mut fleet, spec, run_start).await;
            let cpu_end = cpu::read(&me);
            let spent = cpu::spent(&me, &cpu_start, &cpu_end, r.report.deliveries);
            let cpu_seconds = spent.first().and_then(|c| c.cpu_secs);
            (r, cpu_seconds)
        })
        .await;
        let next = match measured {
            Ok((r, cpu_seconds)) => {
                match finished_results(work, connect, r, share, cpu_seconds, &start) {
                    Ok(res) => Stage::Finished(Box::new(res)),
                    Err(e) => Stage::Failed(e),
                }
            }
            Err(e) => Stage::Failed(format!("the phase task failed: {e}")),
        };
        *s.stage() = next;
    }
}

/// The results of a finished phase; its rate is this agent's share of
/// the run's (so that the agents' rates add up).
fn finished_results(
    work: WorkOrder,
    connect: ConnectReport,
    r: PhaseResult,
    share: f64,
    cpu_seconds: Option<f64>,
    start: &StartOrder,
) -> Result<AgentResults, String> {
    let mut log = Vec::new();
    let run_start = UNIX_EPOCH + Duration::from_micros(start.start_at_run_us);
    write_interval_log(&mut log, run_start, &r.intervals).map_err(|e| e.to_string())?;
    let interval_log = String::from_utf8(log).map_err(|e| e.to_string())?;
    let mut phase = r.report;
    phase.rate_per_sec *= share;
    Ok(AgentResults {
        agent: work.agent,
        connect,
        phase,
        interval_log,
        acked_set: r.acked_set,
        witness_sets: r.witness_sets,
        cpu_seconds,
        clock: AgentClockReadings {
            started_us: start.start_at_agent_us,
            drained_us: rtmc::protocol::now_us(),
        },
    })
}

/// `GET /v1/status`.
async fn status(State(s): State<Shared>) -> Json<AgentStatus> {
    let mut stage = s.stage();
    let mut out = AgentStatus {
        stage: stage.name().into(),
        ..Default::default()
    };
    match &mut *stage {
        Stage::Running(r) => {
            out.published = *r.published.borrow();
            while let Ok(i) = r.intervals.try_recv() {
                let n = r.latest.as_ref().map_or(0, |(n, _)| n + 1);
                r.latest = Some((n.max(1), i));
            }
            out.live = live_figures(&r.live, r.latest.as_ref());
        }
        Stage::Ready(f) => out.live.connected = LiveStats::get(&f.fleet.live.connected),
        Stage::Finished(res) => {
            out.published = Some(PublishedCounts {
                published: res.phase.published,
                acked: res.phase.acked,
            });
        }
        Stage::Failed(why) => out.failure = Some(why.clone()),
        Stage::Idle | Stage::Preparing => {}
    }
    Json(out)
}

fn live_figures(live: &LiveStats, latest: Option<&(u64, Interval)>) -> LiveFigures {
    let get = LiveStats::get;
    LiveFigures {
        deliveries: get(&live.deliveries),
        published: get(&live.published),
        acked: get(&live.acked),
        publish_errors: get(&live.publish_errors),
        connected: get(&live.connected),
        disconnects: get(&live.disconnects),
        interval_number: latest.map_or(0, |(n, _)| *n),
        interval: latest.and_then(|(_, i)| EncodedHistogram::of(&i.histogram).ok()),
    }
}

/// `POST /v1/drain`: hands the phase its final head.
async fn drain(State(s): State<Shared>, body: Bytes) -> Response {
    let order: DrainOrder = match parse(&s, &body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let stage = s.stage();
    match &*stage {
        Stage::Running(r) => {
            r.final_head.send_replace(Some(order.final_head));
            StatusCode::ACCEPTED.into_response()
        }
        other => {
            let e = wrong_stage(other, "drain needs a running phase");
            drop(stage);
            s.refuse(e)
        }
    }
}

/// `GET /v1/results`: the finished phase's results.
async fn results(State(s): State<Shared>) -> Response {
    let stage = s.stage();
    match &*stage {
        Stage::Finished(r) => Json(r.as_ref().clone()).into_response(),
        Stage::Failed(why) => error_response(500, "agent_failed", why),
        other => {
            let e = wrong_stage(other, "results need a finished phase");
            drop(stage);
            s.refuse(e)
        }
    }
}

/// `GET /metrics`: refused requests by code, Prometheus text.
async fn metrics(State(s): State<Shared>) -> String {
    let refused = s.refused.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::from(
        "# HELP loadgen_agent_refused_total Requests the agent refused, by error code.\n# TYPE loadgen_agent_refused_total counter\n",
    );
    for (code, n) in refused.iter() {
        out.push_str(&format!(
            "loadgen_agent_refused_total{{code=\"{code}\"}} {n}\n"
        ));
    }
    out
}
