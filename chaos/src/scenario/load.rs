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
use tokio_util::sync::CancellationToken;

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

/// What a caller may choose beyond a scenario's [`Load`] (the stack suites
/// do); the default is what `chaos run` drives.
#[derive(Debug, Clone, Default)]
pub struct LoadChoices {
    /// The run id that names every message, `lg<run_id:08x>-<channel>-<seq>`
    /// (`rtmc_loadgen::wire::rtmc_frames::message_id`): chosen, every id is
    /// known in advance. Random by default.
    pub run_id: Option<u32>,
    /// Where each client logs in: client `i` at `reader_addrs[i % len]`
    /// (give one per client to place each). Empty: spread over the load's
    /// server nodes, through their proxies if any.
    pub reader_addrs: Vec<SocketAddr>,
    /// Publish until this is cancelled; the load's duration is then only
    /// an upper bound.
    pub stop: Option<CancellationToken>,
    /// Also publish over one TCP session on server node 0 (channel 1),
    /// beside the load's publish path (channel 0), sharing its rate.
    pub tcp_beside: bool,
}

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
    /// Adds `load.clients` users `chaos-<name>-<i>` (and two more: the TCP
    /// publisher and the head probe), connects them spread over the stack's server nodes
    /// (through their proxies if any) and prepares the publishers. Fails
    /// when not every client connects.
    pub async fn connect(
        stack: &ChaosStack,
        name: &str,
        load: &Load,
        quiet: bool,
    ) -> anyhow::Result<RecordedLoad> {
        Self::connect_with(stack, name, load, quiet, LoadChoices::default()).await
    }

    /// [`connect`](Self::connect) with the caller's [`LoadChoices`].
    pub async fn connect_with(
        stack: &ChaosStack,
        name: &str,
        load: &Load,
        quiet: bool,
        choices: LoadChoices,
    ) -> anyhow::Result<RecordedLoad> {
        let users = stack
            .pipeline()
            .add_users(
                &format!("chaos-{name}"),
                load.clients + 2 + usize::from(choices.tcp_beside),
            )
            .await?;
        let spread = (0..load.servers)
            .map(|i| stack.server_addr(i).parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let targets = match choices.reader_addrs.is_empty() {
            true => spread.clone(),
            false => choices.reader_addrs.clone(),
        };
        let profile = profile(name, load, quiet);
        let run_id: u32 = choices.run_id.unwrap_or_else(rand::random);
        let recording = Recording::start();
        let readers = Arc::new(users[..load.clients].to_vec());
        let fleet = connect_fleet(&profile, targets, readers, run_id, &recording).await?;
        let mut channels = vec![publish_channel(
            stack,
            load,
            spread[0],
            &users[load.clients],
        )];
        if choices.tcp_beside {
            channels.push(tcp_channel(spread[0], &users[load.clients + 2]));
        }
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
        let mut phase = PhaseSpec::new("rtmc", &profile, channels, shape, probe, head, vec![]);
        phase.last = false;
        phase.publish_observer = Some(publishes.clone());
        phase.stop = choices.stop;
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

/// The recorded fleet of `readers` (one per client of the profile), client
/// `i` at `targets[i % len]`. Fails when not every client connects.
async fn connect_fleet(
    profile: &Profile,
    targets: Vec<SocketAddr>,
    readers: Arc<Vec<String>>,
    run_id: u32,
    recording: &Recording,
) -> anyhow::Result<Fleet> {
    let clients = readers.len();
    let protocol = Protocol::Rtmc {
        users: readers,
        password: TEST_PASSWORD.into(),
        max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
    };
    let mut fleet_opts = FleetOptions::for_load(&profile.load, targets, protocol, run_id)?;
    fleet_opts.observer = Some(Arc::new(FleetRecorder(recording.clone())));
    let fleet = Fleet::connect(fleet_opts, Arc::new(LiveStats::new())).await;
    anyhow::ensure!(
        fleet.summary.connected == clients,
        "only {} of {clients} clients connected: {:?}",
        fleet.summary.connected,
        fleet.summary.error_samples
    );
    Ok(fleet)
}

/// How the load publishes: over the gateway, or as `user` over TCP at `tcp_addr`.
fn publish_channel(stack: &ChaosStack, load: &Load, tcp_addr: SocketAddr, user: &str) -> Channel {
    match load.publish {
        PublishPath::Http => Channel::Http {
            base_url: stack.pipeline().gateway_url(),
            api_key: stack.pipeline().api_key().to_owned(),
            concurrency: 64,
        },
        PublishPath::Tcp => tcp_channel(tcp_addr, user),
    }
}

/// Publishing as `user` over one TCP session at `addr`.
fn tcp_channel(addr: SocketAddr, user: &str) -> Channel {
    Channel::Tcp {
        addr,
        user: user.to_owned(),
        password: TEST_PASSWORD.into(),
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
