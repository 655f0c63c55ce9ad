//! The chaos room load: loadgen's protocol v2 room driver (its workload
//! plan: rooms, memberships, churn, direct messages) on a [`ChaosStack`],
//! every connection observed into a [`Recording`] ([`RoomRecorder`]) and
//! logging in again, resuming its rooms, when its server node goes away.
//! The run ends as a [`History`] with PostgreSQL's `room_messages` rows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rtmc_loadgen::engine::rooms::driver::{
    run_rooms_with, RoomRun, RoomRunHooks, RoomTarget, RoomsOutcome,
};
use rtmc_loadgen::workload::plan::{room_publishers, WorkloadPlan};
use rtmc_loadgen::workload::spec::WorkloadProfile;
use rtmc_testkit::TEST_PASSWORD;
use tokio::sync::Notify;

use crate::history::hooks::RoomRecorder;
use crate::history::{History, Recording};
use crate::scenario::file::Load;
use crate::stack::ChaosStack;

/// How long a connection that lost its node keeps trying to log in again.
const RECONNECT_WITHIN: Duration = Duration::from_secs(30);
/// After publishing: how long answers and deliveries may take.
const DRAIN: Duration = Duration::from_secs(30);
/// How long PostgreSQL may take to hold every acknowledged room message.
const STORED_WAIT: Duration = Duration::from_secs(60);
/// How long PostgreSQL's row count must stay put, once it reached the
/// acknowledged count, before the rows are taken as all there is.
const STORED_SETTLE: Duration = Duration::from_millis(1_500);
/// How long connection tasks may take to hand their logs back.
const LOGS_BACK: Duration = Duration::from_secs(10);

/// A room load ready to run on a stack.
pub struct RecordedRooms {
    recording: Recording,
    plan: WorkloadPlan,
    servers: Vec<SocketAddr>,
    user_prefix: String,
    run_id: u32,
    rate_per_sec: f64,
    quiet: bool,
}

impl RecordedRooms {
    /// Draws the workload's plan for `load`, adds its users
    /// (`chaos-<name>-<i>`: clients, then the rooms' owners) and spreads
    /// the connections over `servers`.
    pub async fn prepare(
        stack: &ChaosStack,
        name: &str,
        load: &Load,
        workload: &WorkloadProfile,
        servers: Vec<SocketAddr>,
        quiet: bool,
    ) -> anyhow::Result<RecordedRooms> {
        let seed = workload.seed.unwrap_or_else(rand::random);
        let duration_secs = load.duration.as_secs_f64();
        let plan = WorkloadPlan::draw(
            workload,
            load.clients,
            load.rate_per_sec,
            duration_secs,
            seed,
        )
        .map_err(|e| anyhow::anyhow!("workload: {}", e.0))?;
        let user_prefix = format!("chaos-{name}");
        let users = load.clients + room_publishers(workload.rooms);
        stack.pipeline().add_users(&user_prefix, users).await?;
        Ok(RecordedRooms {
            recording: Recording::start(),
            plan,
            servers,
            user_prefix,
            run_id: rand::random(),
            rate_per_sec: load.rate_per_sec,
            quiet,
        })
    }

    /// The recording, for its clock.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// The plan's seed (the report prints it).
    pub fn seed(&self) -> u64 {
        self.plan.seed
    }

    /// Runs the workload to its end (logins, rooms, joins, publishing with
    /// churn, drain); `publishing` is notified when publishing starts.
    pub async fn run(&self, publishing: Arc<Notify>) -> RoomsOutcome {
        let spec = RoomRun {
            plan: &self.plan,
            target: RoomTarget {
                servers: self.servers.clone(),
                user_prefix: self.user_prefix.clone(),
                password: TEST_PASSWORD.into(),
                max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
                source_addrs: Vec::new(),
            },
            run_id: self.run_id,
            connects_per_sec: 200.0,
            connect_timeout: Duration::from_secs(10),
            drain_timeout: DRAIN,
            rate_per_sec: self.rate_per_sec,
            quiet: self.quiet,
            // A chaos run judges deliveries, not the servers' CPU.
            server_cpu: Vec::new(),
        };
        let hooks = RoomRunHooks {
            observer: Some(Arc::new(RoomRecorder(self.recording.clone()))),
            reconnect_within: Some(RECONNECT_WITHIN),
            publishing: Some(publishing),
        };
        run_rooms_with(&spec, &hooks).await
    }

    /// Marks the run drained, adds PostgreSQL's `room_messages` rows of the
    /// run's rooms once it holds `acked` of them and their count stayed put
    /// for [`STORED_SETTLE`] (or what it holds after [`STORED_WAIT`]) and
    /// returns the recorded history.
    pub async fn finish(self, stack: &ChaosStack, acked: u64) -> anyhow::Result<History> {
        self.recording.drained();
        let patterns = [
            format!("lg{:08x}-r%", self.run_id),
            format!("dm:{}-%", self.user_prefix),
        ];
        // `acked` rows are not enough on their own: a send that failed
        // (`broker_unavailable`) may have been stored all the same, so the
        // count can reach `acked` while the newest acknowledged messages are
        // still on their way. Wait for the count to stop moving too.
        let started = tokio::time::Instant::now();
        let mut seen: Option<usize> = None;
        let mut unchanged_since = started;
        let rows = loop {
            let rows = stack.pipeline().stored_room_messages(&patterns).await;
            let count = rows.as_ref().ok().map(Vec::len);
            if count != seen {
                seen = count;
                unchanged_since = tokio::time::Instant::now();
            }
            let enough = count.is_some_and(|n| n as u64 >= acked)
                && unchanged_since.elapsed() >= STORED_SETTLE;
            if enough || started.elapsed() >= STORED_WAIT {
                break rows.context("reading room_messages")?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let rows = rows
            .iter()
            .map(|(r, s, m)| (r.as_str(), *s as u64, m.as_str()));
        self.recording.stored_rooms(rows);
        let deadline = tokio::time::Instant::now() + LOGS_BACK;
        loop {
            match self.recording.clone().finish() {
                Ok(h) => return Ok(h),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
