//! Drives rtmc with a room workload, in the order the protocol needs: every
//! connection logs in with protocol 2 (clients, then the publishers that own
//! the rooms); the publishers create the rooms (public); each client joins
//! its rooms; then the open-loop schedule is published — room messages by
//! the rooms' owners, direct messages (`send` with `to`) by clients to
//! clients — while the churn plan makes members leave and rejoin; then every
//! send is waited for, each room's head is its acknowledged count (the rooms
//! are the run's own), and every connection settles its ledger against the
//! heads (or the higher head each connection lists). Connection `i` is
//! user `<prefix>-i`: clients first, publishers after.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::room_accounting::RoomAccounting;
use crate::engine::rooms::client::{
    connect, now_us, Answer, Event, LatencyShards, Login, Order, Reconnect, Settled,
};
use crate::engine::rooms::summary::RoomsReport;
use crate::measure::cpu::{self, CpuWatch};
use crate::measure::histogram::{merge_into, new_histogram, LatencyHistogram, LatencySummary};
use crate::measure::observe::{RoomFleetObserver, RoomObserver};
use crate::wire::rtmc_frames::{message_id, MessageOrigin};
use crate::workload::plan::{room_id, WorkloadPlan, ROOMS_PER_PUBLISHER};
use crate::workload::schedule::{ChurnAction, ChurnEvent, PublishEvent, Target};

/// Latency histogram shards (one lock per read batch each).
const LATENCY_SHARDS: usize = 16;
/// Login failure reasons kept for the report.
const MAX_SAMPLES: usize = 5;

/// Where a room run connects and as whom.
#[derive(Debug, Clone)]
pub struct RoomTarget {
    /// Connection `i` logs in at `servers[i % len]`.
    pub servers: Vec<SocketAddr>,
    pub user_prefix: String,
    pub password: String,
    pub max_frame_bytes: usize,
    /// Local source addresses (empty: the OS's choice).
    pub source_addrs: Vec<IpAddr>,
}

/// One room run.
#[derive(Debug, Clone)]
pub struct RoomRun<'a> {
    pub plan: &'a WorkloadPlan,
    pub target: RoomTarget,
    /// In every message id and room id, so runs never collide.
    pub run_id: u32,
    pub connects_per_sec: f64,
    pub connect_timeout: Duration,
    /// After publishing: how long answers and deliveries may take.
    pub drain_timeout: Duration,
    /// The schedule's total rate, for the report.
    pub rate_per_sec: f64,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// The server processes whose CPU the run reports (publish to drained).
    pub server_cpu: Vec<CpuWatch>,
}

/// What a harness may add to a room run: an observer of every connection
/// (the chaos recorder), and logging in again after a lost connection.
#[derive(Debug, Clone, Default)]
pub struct RoomRunHooks {
    /// Sees each connection's events.
    pub observer: Option<Arc<dyn RoomFleetObserver>>,
    /// A connection that loses its server logs in again (any of the
    /// target's servers, in turn) for up to this long, resuming its rooms.
    pub reconnect_within: Option<Duration>,
    /// Notified once, when publishing starts (after logins, rooms and
    /// joins): a fault timeline starts from it.
    pub publishing: Option<Arc<tokio::sync::Notify>>,
}

/// Which step of the run answers belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Step {
    #[default]
    Create,
    Join,
    Publish,
}

/// Every answer counted.
#[derive(Debug, Default)]
struct Tally {
    step: Step,
    logged_in: usize,
    login_failed: usize,
    login_samples: Vec<String>,
    created: usize,
    /// `joined` answers of the owners after `room_created`.
    owner_joins: usize,
    initial_joins: u64,
    churn_left: u64,
    churn_joined: u64,
    acked_by_room: HashMap<String, u64>,
    acked: u64,
    refused_sends: u64,
    report: RoomsReport,
}

impl Tally {
    fn absorb(&mut self, e: Event) {
        let direct = |r: &str| r.starts_with("dm:");
        match e.answer {
            Answer::LoggedIn => self.logged_in += 1,
            Answer::LoginFailed(why) => {
                self.login_failed += 1;
                if self.login_samples.len() < MAX_SAMPLES {
                    self.login_samples.push(why);
                }
            }
            Answer::RoomCreated(_) => self.created += 1,
            Answer::Joined(r) if direct(&r) => {}
            Answer::Joined(_) => match self.step {
                Step::Create => self.owner_joins += 1,
                Step::Join => self.initial_joins += 1,
                Step::Publish => self.churn_joined += 1,
            },
            Answer::Left(_) => self.churn_left += 1,
            Answer::Acked { room } => {
                self.acked += 1;
                *self
                    .acked_by_room
                    .entry(room.unwrap_or_default())
                    .or_default() += 1;
            }
            Answer::Refused {
                code,
                message_id: Some(_),
                ..
            } => {
                self.refused_sends += 1;
                *self
                    .report
                    .refused
                    .entry(code.as_str().to_owned())
                    .or_default() += 1;
            }
            Answer::Refused { code, .. } => {
                let codes = &mut self.report.room_command_refusals;
                *codes.entry(code.as_str().to_owned()).or_default() += 1;
            }
            Answer::Closed(_) => self.report.disconnects += 1,
        }
    }

    fn room_refusals(&self) -> u64 {
        self.report.room_command_refusals.values().sum()
    }
}

/// The run in progress.
struct Driver<'a> {
    spec: &'a RoomRun<'a>,
    events: mpsc::UnboundedReceiver<Event>,
    tally: Tally,
    /// Orders to connection `i`.
    orders: Vec<mpsc::UnboundedSender<Order>>,
    handles: Vec<JoinHandle<Option<Settled>>>,
    rooms: Vec<Arc<str>>,
    users: Vec<Arc<str>>,
    latency: LatencyShards,
    live: LiveLine,
}

/// When the next live line is due and what the last one counted.
struct LiveLine {
    next_at: Instant,
    last_at: Instant,
    last_deliveries: u64,
}

/// A finished room run: its report and every room delivery's latency.
pub struct RoomsOutcome {
    pub report: RoomsReport,
    /// Publish (intended send time) → receive, µs.
    pub latency: LatencyHistogram,
}

/// Runs the room workload against the target; never fails as a whole: what
/// went wrong is in the report's failures.
pub async fn run_rooms(spec: &RoomRun<'_>) -> RoomsOutcome {
    run_rooms_with(spec, &RoomRunHooks::default()).await
}

/// [`run_rooms`] with a harness's hooks.
pub async fn run_rooms_with(spec: &RoomRun<'_>, hooks: &RoomRunHooks) -> RoomsOutcome {
    let mut d = Driver::connect_all(spec, hooks);
    let say = |m: &str| {
        if !spec.quiet {
            eprintln!("rooms: {m}");
        }
    };
    say(&format!(
        "seed {}; connecting {} connections",
        spec.plan.seed,
        d.orders.len()
    ));
    d.await_logins().await;
    say(&format!(
        "{} logged in; creating {} rooms",
        d.tally.logged_in,
        d.rooms.len()
    ));
    d.create_rooms().await;
    say(&format!("{} rooms created; joining", d.tally.created));
    d.join_rooms().await;
    say(&format!(
        "{} joins; publishing {} messages",
        d.tally.initial_joins,
        spec.plan.schedule.ticks()
    ));
    d.tally.step = Step::Publish;
    let cpu_start = cpu::read(&spec.server_cpu);
    if let Some(publishing) = &hooks.publishing {
        publishing.notify_one();
    }
    let publish_secs = d.publish().await;
    say("draining");
    d.await_answers().await;
    let settled = d.drain().await;
    let cpu_end = cpu::read(&spec.server_cpu);
    let mut outcome = d.finish(settled, publish_secs);
    outcome.report.server_cpu = cpu::spent(
        &spec.server_cpu,
        &cpu_start,
        &cpu_end,
        outcome.latency.len(),
    );
    outcome
}

impl<'a> Driver<'a> {
    /// Spawns every connection's task, paced at `connects_per_sec`.
    fn connect_all(spec: &'a RoomRun<'a>, hooks: &RoomRunHooks) -> Self {
        let a = &spec.plan.assignment;
        let clients = a.memberships.len();
        let conns = clients + a.sizes.len().div_ceil(ROOMS_PER_PUBLISHER);
        let (tx, events) = mpsc::unbounded_channel();
        let latency: LatencyShards = Arc::new(
            (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        );
        let start = Instant::now();
        let (orders, handles) = (0..conns)
            .map(|i| {
                let at = start + Duration::from_secs_f64(i as f64 / spec.connects_per_sec.max(1.0));
                let login = login_of(spec, hooks, i);
                let observer = hooks
                    .observer
                    .as_ref()
                    .map(|o| o.connection(i, &login.user));
                spawn_connection(i, login, at, tx.clone(), latency.clone(), observer)
            })
            .unzip();
        let rooms = (0..a.sizes.len() as u32)
            .map(|k| Arc::from(room_id(spec.run_id, k)))
            .collect();
        let users = (0..clients)
            .map(|i| Arc::from(format!("{}-{i}", spec.target.user_prefix)))
            .collect();
        Self {
            spec,
            events,
            tally: Tally::default(),
            orders,
            handles,
            rooms,
            users,
            latency,
            live: LiveLine {
                next_at: start + Duration::from_secs(1),
                last_at: start,
                last_deliveries: 0,
            },
        }
    }

    /// Takes answers until `done` or `deadline`.
    async fn wait_for(&mut self, deadline: Instant, done: impl Fn(&Tally) -> bool) {
        while !done(&self.tally) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => self.tally.absorb(e),
                _ => return,
            }
        }
    }

    /// Sends `order` to connection `i`; false when it has no connection.
    fn order(&self, i: usize, order: Order) -> bool {
        self.orders[i].send(order).is_ok()
    }

    async fn await_logins(&mut self) {
        let n = self.orders.len();
        let ramp = Duration::from_secs_f64(n as f64 / self.spec.connects_per_sec.max(1.0));
        let deadline = Instant::now() + ramp + self.spec.connect_timeout;
        self.wait_for(deadline, |t| t.logged_in + t.login_failed >= n)
            .await;
    }

    /// The owners create their rooms (paced by each connection).
    async fn create_rooms(&mut self) {
        let clients = self.users.len();
        for k in 0..self.rooms.len() {
            self.order(
                clients + k / ROOMS_PER_PUBLISHER,
                Order::CreateRoom(self.rooms[k].clone()),
            );
        }
        let n = self.rooms.len();
        let deadline = Instant::now() + setup_time(ROOMS_PER_PUBLISHER, n);
        // The owner's `joined` follows `room_created`: wait for it too, so
        // that it is not taken for a client's join.
        self.wait_for(deadline, |t| {
            t.owner_joins as u64 + t.room_refusals() >= n as u64
        })
        .await;
        self.tally.step = Step::Join;
    }

    /// Every client joins its rooms.
    async fn join_rooms(&mut self) {
        let a = &self.spec.plan.assignment;
        let mut n = 0u64;
        for (c, rooms) in a.memberships.iter().enumerate() {
            for &k in rooms {
                self.order(c, Order::Join(self.rooms[k as usize].clone()));
                n += 1;
            }
        }
        let before = self.tally.room_refusals();
        let per_client = a.memberships.first().map_or(0, Vec::len);
        let deadline = Instant::now() + setup_time(per_client, n as usize);
        self.wait_for(deadline, |t| {
            t.initial_joins + t.room_refusals() - before >= n
        })
        .await;
    }

    /// Sends the schedule open loop with the churn plan interleaved; returns
    /// the seconds it took.
    async fn publish(&mut self) -> f64 {
        let plan = self.spec.plan;
        let lead = Duration::from_millis(100);
        let (start, start_wall_us) = (Instant::now() + lead, now_us() + lead.as_micros() as u64);
        let mut churn = plan.churn.iter().peekable();
        self.live = LiveLine {
            next_at: start + Duration::from_secs(1),
            last_at: start,
            last_deliveries: 0,
        };
        for i in 0..plan.schedule.ticks() {
            let e = plan.schedule.event(i);
            while let Some(c) = churn.next_if(|c| c.due_us <= e.due_us) {
                self.until(start + Duration::from_micros(c.due_us)).await;
                self.churn(c);
            }
            self.until(start + Duration::from_micros(e.due_us)).await;
            self.send(&e, start_wall_us);
            self.live_line(start);
        }
        for c in churn {
            self.until(start + Duration::from_micros(c.due_us)).await;
            self.churn(c);
        }
        start.elapsed().as_secs_f64()
    }

    /// Once a second while publishing (unless quiet): the live line —
    /// sent, acknowledged, refused, room deliveries per second and the p99
    /// of the run so far.
    fn live_line(&mut self, start: Instant) {
        let now = Instant::now();
        if self.spec.quiet || now < self.live.next_at {
            return;
        }
        let mut merged = new_histogram();
        for shard in self.latency.iter() {
            if let Ok(h) = shard.lock() {
                merge_into(&mut merged, &h);
            }
        }
        let r = &self.tally.report;
        let secs = now
            .duration_since(self.live.last_at)
            .as_secs_f64()
            .max(1e-3);
        let deliveries_per_sec = (merged.len() - self.live.last_deliveries) as f64 / secs;
        eprintln!(
            "[{:>4.0}s rooms] sent {} acked {} refused {} deliv {:.0}/s p99 so far {:.1} ms",
            now.duration_since(start).as_secs_f64(),
            r.published_rooms + r.published_direct,
            self.tally.acked,
            self.tally.refused_sends,
            deliveries_per_sec,
            merged.value_at_quantile(0.99) as f64 / 1000.0,
        );
        self.live = LiveLine {
            next_at: now + Duration::from_secs(1),
            last_at: now,
            last_deliveries: merged.len(),
        };
    }

    /// Takes answers until `at`.
    async fn until(&mut self, at: Instant) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                e = self.events.recv() => match e {
                    Some(e) => self.tally.absorb(e),
                    None => return tokio::time::sleep_until(at).await,
                },
            }
        }
    }

    fn churn(&mut self, c: &ChurnEvent) {
        let room = self.rooms[c.room as usize].clone();
        let order = match c.action {
            ChurnAction::Leave => Order::Leave(room),
            ChurnAction::Join => Order::Join(room),
        };
        self.order(c.client as usize, order);
    }

    /// One tick of the schedule to its sender.
    fn send(&mut self, e: &PublishEvent, start_wall_us: u64) {
        let clients = self.users.len();
        let (conn, room, to) = match e.target {
            Target::Room(k) => (
                clients + k as usize / ROOMS_PER_PUBLISHER,
                Some(self.rooms[k as usize].clone()),
                None,
            ),
            Target::Direct { from, to } => {
                (from as usize, None, Some(self.users[to as usize].clone()))
            }
        };
        let r = &mut self.tally.report;
        match e.target {
            Target::Room(_) => r.published_rooms += 1,
            Target::Direct { .. } => r.published_direct += 1,
        }
        let id = message_id(MessageOrigin {
            run_id: self.spec.run_id,
            publisher: conn as u32,
            publisher_seq: e.index,
        });
        let order = Order::Send {
            room,
            to,
            message_id: id,
            body_bytes: e.body_bytes,
            sent_at_us: start_wall_us + e.due_us,
        };
        if !self.order(conn, order) {
            self.tally.report.unsent += 1;
        }
    }

    /// Waits for every send's answer and every churn answer.
    async fn await_answers(&mut self) {
        let r = &self.tally.report;
        let sent = r.published_rooms + r.published_direct - r.unsent;
        let churn = self.spec.plan.churn.len() as u64;
        let before = self.tally.room_refusals();
        let deadline = Instant::now() + self.spec.drain_timeout;
        self.wait_for(deadline, |t| {
            t.acked + t.refused_sends >= sent
                && t.churn_left + t.churn_joined + t.room_refusals() - before >= churn
        })
        .await;
        self.tally.report.unanswered =
            sent.saturating_sub(self.tally.acked + self.tally.refused_sends);
    }

    /// Hands every connection the heads and collects what each settled.
    async fn drain(&mut self) -> Vec<Settled> {
        let heads = Arc::new(std::mem::take(&mut self.tally.acked_by_room));
        let deadline = Instant::now() + self.spec.drain_timeout;
        for i in 0..self.orders.len() {
            self.order(
                i,
                Order::Drain {
                    heads: heads.clone(),
                    deadline,
                },
            );
        }
        let mut settled = Vec::with_capacity(self.handles.len());
        for h in std::mem::take(&mut self.handles) {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline + Duration::from_secs(5), h).await {
                Ok(Ok(Some(s))) => settled.push(s),
                Ok(_) => {}
                Err(_) => abort.abort(),
            }
        }
        while let Ok(e) = self.events.try_recv() {
            self.tally.absorb(e);
        }
        settled
    }

    /// The report: shape, counts, latency and the accounting.
    fn finish(self, settled: Vec<Settled>, publish_secs: f64) -> RoomsOutcome {
        let a = &self.spec.plan.assignment;
        let t = self.tally;
        let mut sizes = a.sizes.clone();
        sizes.sort_unstable();
        let mut latency = new_histogram();
        for shard in self.latency.iter() {
            if let Ok(h) = shard.lock() {
                merge_into(&mut latency, &h);
            }
        }
        let mut r = t.report;
        r.seed = self.spec.plan.seed;
        r.clients = a.memberships.len();
        r.publishers = self.orders.len() - r.clients;
        r.rooms = a.sizes.len();
        r.memberships = a.memberships.iter().map(|m| m.len() as u64).sum();
        r.room_size_min = sizes.first().copied().unwrap_or(0);
        r.room_size_median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
        r.room_size_max = sizes.last().copied().unwrap_or(0);
        r.rate_per_sec = self.spec.rate_per_sec;
        r.publish_secs = publish_secs;
        r.acked = t.acked;
        r.login_failures = t.login_failed + (self.orders.len() - t.logged_in - t.login_failed);
        r.login_error_samples = t.login_samples;
        r.rooms_created = t.created;
        r.initial_joins = t.initial_joins;
        r.churn_planned = self.spec.plan.churn.len();
        r.churn_left = t.churn_left;
        r.churn_joined = t.churn_joined;
        r.incomplete = settled.iter().filter(|s| !s.complete).count()
            + (self.orders.len() - settled.len()).saturating_sub(r.login_failures);
        r.lobby_deliveries = settled.iter().map(|s| s.lobby_deliveries).sum();
        r.bad_frames = settled.iter().map(|s| s.bad_frames).sum();
        r.unasked_left = settled.iter().map(|s| s.unasked_left).sum();
        r.unasked_joined = settled.iter().map(|s| s.unasked_joined).sum();
        r.latency = LatencySummary::of(&latency);
        r.accounting = RoomAccounting::of(settled.into_iter().map(|s| s.rooms));
        RoomsOutcome { report: r, latency }
    }
}

/// Where and as whom connection `i` logs in.
fn login_of(spec: &RoomRun<'_>, hooks: &RoomRunHooks, i: usize) -> Login {
    Login {
        target: spec.target.servers[i % spec.target.servers.len()],
        sources: Arc::new(spec.target.source_addrs.clone()),
        user: format!("{}-{i}", spec.target.user_prefix),
        password: Arc::from(spec.target.password.as_str()),
        max_frame_bytes: spec.target.max_frame_bytes,
        timeout: spec.connect_timeout,
        reconnect: hooks.reconnect_within.map(|within| Reconnect {
            servers: Arc::new(spec.target.servers.clone()),
            within,
        }),
    }
}

/// Connection `i`'s task, started at `at`: its order channel and its handle.
fn spawn_connection(
    i: usize,
    login: Login,
    at: Instant,
    events: mpsc::UnboundedSender<Event>,
    latency: LatencyShards,
    observer: Option<Box<dyn RoomObserver>>,
) -> (mpsc::UnboundedSender<Order>, JoinHandle<Option<Settled>>) {
    let (orders, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let conn = connect(i, &login, events, latency, observer).await?;
        Some(conn.run(rx).await)
    });
    (orders, handle)
}

/// Room commands per second the setup deadlines assume the server takes
/// at least (each is a PostgreSQL write and a shard stream entry): a bound,
/// not a target; the wait ends as soon as every answer is in.
const SETUP_COMMANDS_PER_SEC_FLOOR: f64 = 200.0;

/// How long setup may take: `per_conn` paced room commands on each
/// connection, `total` in all, plus a margin for a loaded server.
fn setup_time(per_conn: usize, total: usize) -> Duration {
    let pacing = per_conn as f64 / 10.0;
    let server = total as f64 / SETUP_COMMANDS_PER_SEC_FLOOR;
    Duration::from_secs(30) + Duration::from_secs_f64(pacing.max(server))
}
