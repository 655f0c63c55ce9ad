//! The chaos load driver: loadgen's client engine (its fleet and open-loop
//! publishers) driving a [`ChaosStack`], observed through the recorder
//! hooks ([`crate::history::hooks`]) into a [`Recording`], so that the run
//! ends as a [`History`] the checker judges. `chaos run` drives its load
//! with it; library users and tests can too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtmc_loadgen::engine::faults::FleetFaults;
use rtmc_loadgen::engine::fleet::Fleet;
use rtmc_loadgen::engine::fleet_options::{FleetOptions, Protocol};
use rtmc_loadgen::engine::live::LiveStats;
use rtmc_loadgen::engine::phase::{current_head, run_phase, HeadProbe, PhaseResult, PhaseSpec};
use rtmc_loadgen::engine::publisher::{Channel, MessageShape};
use rtmc_loadgen::profile::Profile;
use rtmc_testkit::TEST_PASSWORD;

use crate::history::hooks::{FleetRecorder, PublishRecorder};
use crate::history::{History, Recording};
use crate::scenario::file::{Load, PublishPath};
use crate::stack::ChaosStack;

/// How long receivers may take to get everything after publishing ends.
pub const DRAIN: Duration = Duration::from_secs(60);
/// How long PostgreSQL may take to hold every sequenced message.
const STORED_WAIT: Duration = Duration::from_secs(60);
/// How long client tasks may take to hand their logs back.
const LOGS_BACK: Duration = Duration::from_secs(10);

/// A load connected to a stack and recording: connect, [`publish`](Self::publish)
/// (the client faults go through [`client_faults`](Self::client_faults)
/// meanwhile), then [`finish`](Self::finish) into a [`History`].
pub struct RecordedLoad {
    recording: Recording,
    fleet: Fleet,
    /// The publishing phase, until [`publish`](Self::publish) runs it.
    phase: Option<PhaseSpec>,
    publishes: Arc<PublishRecorder>,
}

impl RecordedLoad {
    /// Adds `load.clients` users (and two more: the TCP publisher and the
    /// head probe), connects them spread over the stack's server nodes
    /// (through their proxies if any) and prepares the publishers. Fails
    /// when not every client connects.
    pub async fn connect(
        stack: &ChaosStack,
        name: &str,
        load: &Load,
        quiet: bool,
    ) -> anyhow::Result<RecordedLoad> {
        let users = stack
            .pipeline()
            .add_users("chaos", load.clients + 2)
            .await?;
        let targets = (0..load.servers)
            .map(|i| stack.server_addr(i).parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let profile = profile(name, load, quiet);
        let run_id: u32 = rand::random();
        let recording = Recording::start();
        let protocol = Protocol::Rtmc {
            users: Arc::new(users[..load.clients].to_vec()),
            password: TEST_PASSWORD.into(),
            max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
        };
        let mut fleet_opts =
            FleetOptions::for_load(&profile.load, targets.clone(), protocol, run_id)?;
        fleet_opts.observer = Some(Arc::new(FleetRecorder(recording.clone())));
        let fleet = Fleet::connect(fleet_opts, Arc::new(LiveStats::new())).await;
        anyhow::ensure!(
            fleet.summary.connected == load.clients,
            "only {} of {} clients connected: {:?}",
            fleet.summary.connected,
            load.clients,
            fleet.summary.error_samples
        );
        let channel = publish_channel(stack, load, targets[0], &users[load.clients]);
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
        let mut phase = PhaseSpec::new("rtmc", &profile, vec![channel], shape, probe, head, vec![]);
        phase.last = false;
        phase.publish_observer = Some(publishes.clone());
        Ok(RecordedLoad {
            recording,
            fleet,
            phase: Some(phase),
            publishes,
        })
    }

    /// The recording the load goes into (its clock times the run).
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Disconnect storms, half-open and slow readers on the fleet's clients.
    pub fn client_faults(&self) -> FleetFaults {
        self.fleet.faults()
    }

    /// Publishes for the load's duration (timed from `run_start`) and
    /// returns loadgen's account of the phase.
    ///
    /// # Panics
    /// When called twice.
    pub async fn publish(&mut self, run_start: Instant) -> PhaseResult {
        let phase = self.phase.take().expect("RecordedLoad::publish runs once");
        run_phase(&mut self.fleet, phase, run_start).await
    }

    /// Marks the run drained, lets the clients catch up to `head_after`,
    /// adds PostgreSQL's rows and returns the recorded history.
    pub async fn finish(self, stack: &ChaosStack, head_after: u64) -> anyhow::Result<History> {
        let RecordedLoad {
            recording,
            mut fleet,
            publishes,
            ..
        } = self;
        publishes.close();
        recording.drained();
        let _ = fleet.sync(head_after, Duration::from_secs(2), true).await;
        drop(fleet);
        let rows = stored_rows(stack, head_after).await;
        recording.stored(rows.iter().map(|(seq, id)| (*seq as u64, id.as_str())));
        handed_back(recording).await
    }
}

/// How the load publishes: over the gateway, or as `user` over TCP at `tcp_addr`.
fn publish_channel(stack: &ChaosStack, load: &Load, tcp_addr: SocketAddr, user: &str) -> Channel {
    match load.publish {
        PublishPath::Http => Channel::Http {
            base_url: stack.pipeline().gateway_url(),
            api_key: stack.pipeline().api_key().to_owned(),
            concurrency: 64,
        },
        PublishPath::Tcp => Channel::Tcp {
            addr: tcp_addr,
            user: user.to_owned(),
            password: TEST_PASSWORD.into(),
        },
    }
}

/// loadgen's profile of `load`: its clients, rate, duration and body size.
fn profile(name: &str, load: &Load, quiet: bool) -> Profile {
    let mut profile = Profile {
        name: name.to_owned(),
        ..Default::default()
    };
    profile.load.clients = load.clients;
    profile.load.rate_per_sec = load.rate_per_sec;
    profile.load.duration_secs = load.duration.as_secs_f64();
    profile.load.body_bytes = load.body_bytes;
    profile.load.drain_timeout_secs = DRAIN.as_secs_f64();
    profile.output.quiet = quiet;
    profile
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
async fn handed_back(recording: Recording) -> anyhow::Result<History> {
    let deadline = Instant::now() + LOGS_BACK;
    loop {
        match recording.clone().finish() {
            Ok(h) => return Ok(h),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
