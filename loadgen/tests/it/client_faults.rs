//! Client faults acted out by loadgen's own clients against a real stack
//! (testkit: RabbitMQ, Redis, PostgreSQL in containers, the components in
//! process): each fault is shown to happen, and the system to answer it as
//! its policies say.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtmc_loadgen::engine::faults::FleetFaults;
use rtmc_loadgen::engine::fleet::Fleet;
use rtmc_loadgen::engine::fleet_options::{FleetOptions, Protocol};
use rtmc_loadgen::engine::live::LiveStats;
use rtmc_loadgen::engine::phase::{run_phase, HeadProbe, PhaseResult, PhaseSpec};
use rtmc_loadgen::engine::publisher::{Channel, MessageShape};
use rtmc_loadgen::measure::observe::{ClientObserver, FleetObserver};
use rtmc_loadgen::profile::Profile;
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};

/// Session events of every client, as `(client, event)`, and how many
/// broadcasts each client has read.
#[derive(Debug, Default)]
struct Events(Mutex<Vec<(usize, String)>>, Mutex<Vec<u64>>);

impl Events {
    fn delivered(&self, client: usize) {
        let mut counts = self.1.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() <= client {
            counts.resize(client + 1, 0);
        }
        counts[client] += 1;
    }

    fn deliveries(&self) -> Vec<u64> {
        self.1
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn push(&self, client: usize, e: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((client, e));
    }

    fn count(&self, prefix: &str) -> usize {
        let events = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        events.iter().filter(|(_, e)| e.starts_with(prefix)).count()
    }
}

#[derive(Debug, Default)]
struct Watch(Arc<Events>);

struct ClientWatch(usize, Arc<Events>);

impl FleetObserver for Watch {
    fn client(&self, index: usize, _user: &str) -> Box<dyn ClientObserver> {
        Box::new(ClientWatch(index, self.0.clone()))
    }
}

impl ClientObserver for ClientWatch {
    fn connected(&mut self, head: u64, resume_from: Option<u64>) {
        self.1
            .push(self.0, format!("connected {head} {resume_from:?}"));
    }
    fn resumed(&mut self, from: u64, head: u64) {
        self.1.push(self.0, format!("resumed {from} {head}"));
    }
    fn delivered(&mut self, _seq: u64, _message_id: &str) {
        self.1.delivered(self.0);
    }
    fn disconnected(&mut self, reason: &str) {
        self.1.push(self.0, format!("disconnected {reason}"));
    }
}

/// A fleet of `clients` on server node 0 and the phase that publishes to it
/// over TCP at `rate_per_sec` for `secs`.
async fn fleet_and_phase(
    p: &Pipeline,
    prefix: &str,
    clients: usize,
    rate_per_sec: f64,
    secs: f64,
    body_bytes: usize,
    observer: Arc<Watch>,
) -> (Fleet, PhaseSpec) {
    let users = p.add_users(prefix, clients + 2).await.expect("users");
    let server = p.server_addr(0).parse().expect("server address");
    let mut profile = quiet_profile(clients, rate_per_sec, secs);
    profile.load.body_bytes = body_bytes;
    let protocol = rtmc_readers(&users[..clients]);
    let mut opts = FleetOptions::for_load(&profile.load, vec![server], protocol, 7).expect("opts");
    opts.observer = Some(observer);
    let fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    assert_eq!(
        fleet.summary.connected, clients,
        "{:?}",
        fleet.summary.error_samples
    );
    let channel = Channel::Tcp {
        addr: server,
        user: users[clients].clone(),
        password: TEST_PASSWORD.into(),
    };
    let probe = HeadProbe::Rtmc {
        addr: server,
        user: users[clients + 1].clone(),
        password: TEST_PASSWORD.into(),
    };
    let head = fleet.summary.max_start_after;
    let shape = Arc::new(MessageShape::new(7, body_bytes));
    let spec = PhaseSpec::new("rtmc", &profile, vec![channel], shape, probe, head, vec![]);
    (fleet, spec)
}

/// A quiet profile of `clients` readers and `rate_per_sec` publishes for
/// `secs`, drained within 15 s.
pub(crate) fn quiet_profile(clients: usize, rate_per_sec: f64, secs: f64) -> Profile {
    let mut profile = Profile::default();
    profile.load.clients = clients;
    profile.load.rate_per_sec = rate_per_sec;
    profile.load.duration_secs = secs;
    profile.load.drain_timeout_secs = 15.0;
    profile.output.quiet = true;
    profile
}

/// rtmc readers logging in as `users` with the test password.
pub(crate) fn rtmc_readers(users: &[String]) -> Protocol {
    Protocol::Rtmc {
        users: Arc::new(users.to_vec()),
        password: TEST_PASSWORD.into(),
        max_frame_bytes: rtmc::protocol::DEFAULT_MAX_FRAME_BYTES,
    }
}

/// Runs the phase while `faults` acts on the fleet.
async fn run_with<F, Fut>(mut fleet: Fleet, spec: PhaseSpec, faults: F) -> PhaseResult
where
    F: FnOnce(FleetFaults) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let injector = tokio::spawn(faults(fleet.faults()));
    let r = run_phase(&mut fleet, spec, Instant::now()).await;
    injector.await.expect("fault task");
    r
}

/// A disconnect storm drops half the clients at once; the reconnect flood
/// brings them all back at once, each resuming after its last seq: the
/// server replays what they missed (each gets `resume_done`), so no client
/// has a gap or a loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_then_a_resuming_flood_leaves_no_gap() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let watch = Arc::new(Watch::default());
    let events = watch.0.clone();
    let (fleet, spec) = fleet_and_phase(&p, "storm", 10, 100.0, 4.0, 100, watch).await;
    let live = fleet.live.clone();
    let r = run_with(fleet, spec, |f| async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let dropped = f.disconnect_storm(0.5);
        assert_eq!(dropped.len(), 5);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(f.reconnect_flood(&dropped, true), 5);
    })
    .await;
    let a = &r.report.accounting;
    assert_eq!(events.count("disconnected chaos: dropped"), 5, "{events:?}");
    assert_eq!(LiveStats::get(&live.disconnects), 5);
    assert_eq!(events.count("resumed"), 5, "every resume done: {events:?}");
    assert!(r.report.acked > 300, "{:?}", r.report);
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.gaps, 0, "{a:?}");
    assert_eq!(a.received, a.expected, "{a:?}");
}

/// A reconnect without resume joins at the head: what was published while
/// the client was down is missing, as gaps (the fault really happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_without_resume_shows_the_gap() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let watch = Arc::new(Watch::default());
    let (fleet, spec) = fleet_and_phase(&p, "noresume", 4, 100.0, 3.0, 100, watch).await;
    let r = run_with(fleet, spec, |f| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let dropped = f.disconnect_storm(0.25);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        f.reconnect_flood(&dropped, false);
    })
    .await;
    let a = &r.report.accounting;
    assert_eq!(a.receivers_with_loss, 1, "{a:?}");
    assert!(a.gaps >= 1 && a.lost > 0, "{a:?}");
}

/// A half-open client stops reading with its socket open: the server's
/// socket write for it blocks (a 16 KiB send buffer here) and its
/// slow-consumer policy cuts it once a write is blocked for
/// `write_timeout_ms` (well before the 30 s heartbeat timeout), while the
/// client that reads loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_client_is_cut_as_a_slow_consumer() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|cfg| {
        cfg.server.socket_send_buffer_bytes = 16 * 1024;
        cfg.server.write_timeout_ms = 2000;
    }))
    .await
    .expect("a stack (is Docker up?)");
    let watch = Arc::new(Watch::default());
    let events = watch.0.clone();
    // 300 msg/s of ~4 KB for 3 s: 3.6 MB, beyond any socket buffer.
    let (fleet, spec) = fleet_and_phase(&p, "halfopen", 2, 300.0, 4.0, 4000, watch).await;
    let live = fleet.live.clone();
    let r = run_with(fleet, spec, |f| async move {
        f.half_open(&[0]);
        tokio::time::sleep(Duration::from_millis(4500)).await;
        f.read_normally(&[0]);
    })
    .await;
    // The cut closes the socket; the `slow_consumer` frame cannot get past
    // the full buffer, so the client sees the end of the stream.
    assert_eq!(LiveStats::get(&live.disconnects), 1, "{events:?}");
    let cut: Vec<(usize, String)> = events
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, e)| e.starts_with("disconnected") && !e.ends_with("closed by the fleet"))
        .cloned()
        .collect();
    assert_eq!(cut, vec![(0, "disconnected eof".to_owned())], "{events:?}");
    let a = &r.report.accounting;
    assert_eq!(
        a.receivers_with_loss, 1,
        "only the half-open client misses messages: {a:?}"
    );
}

/// A slow reader (2 KB/s against about 15 KB/s of broadcasts) falls behind
/// while the fault lasts — it has read far less than a normal reader when
/// publishing ends — and, reading normally again, catches up with nothing
/// lost: the server's buffers (default limits) held its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_falls_behind_then_catches_up() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let watch = Arc::new(Watch::default());
    let events = watch.0.clone();
    let (fleet, spec) = fleet_and_phase(&p, "slowread", 2, 100.0, 3.0, 100, watch).await;
    let seen = events.clone();
    let r = run_with(fleet, spec, |f| async move {
        f.slow_readers(&[0], 2_000);
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let at_end = seen.deliveries();
        f.read_normally(&[0]);
        assert!(
            at_end.len() == 2 && at_end[0] * 2 < at_end[1],
            "the slow reader kept up: {at_end:?}"
        );
    })
    .await;
    let a = &r.report.accounting;
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.received, a.expected, "{a:?}");
    assert_eq!(events.deliveries(), vec![a.expected / 2; 2]);
}
