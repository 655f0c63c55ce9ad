//! The engine's opt-ins for drivers other than loadgen's own modes (the
//! chaos suites): a phase ended by a stop signal instead of its duration,
//! and an HTTP refusal named by the gateway's error code. Each against a
//! real stack (testkit), each shown to change nothing unless asked for.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtmc_loadgen::engine::fleet::Fleet;
use rtmc_loadgen::engine::fleet_options::FleetOptions;
use rtmc_loadgen::engine::live::LiveStats;
use rtmc_loadgen::engine::phase::{run_phase, HeadProbe, PhaseSpec};
use rtmc_loadgen::engine::publisher::{Channel, MessageShape};
use rtmc_loadgen::measure::observe::PublishObserver;
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use tokio_util::sync::CancellationToken;

use crate::client_faults::{quiet_profile, rtmc_readers};

/// Every answer a publisher reported, as `acked` or `refused <code>`.
#[derive(Debug, Default)]
struct Answers(Mutex<Vec<String>>);

impl Answers {
    fn push(&self, answer: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl PublishObserver for Answers {
    fn invoked(&self, _channel: u32, _message_id: &str) {}
    fn acked(&self, _channel: u32, _message_id: &str) {
        self.push("acked".into());
    }
    fn refused(&self, _channel: u32, _message_id: &str, code: &str) {
        self.push(format!("refused {code}"));
    }
    fn unanswered(&self, _channel: u32, _message_id: &str) {
        self.push("unanswered".into());
    }
}

/// `clients` readers on node 0 and a phase publishing at `rate_per_sec`
/// for `secs` over `channels(tcp_user)`.
async fn fleet_and_phase(
    p: &Pipeline,
    prefix: &str,
    clients: usize,
    rate_per_sec: f64,
    secs: f64,
    channels: impl FnOnce(&str) -> Vec<Channel>,
) -> (Fleet, PhaseSpec) {
    let users = p.add_users(prefix, clients + 2).await.expect("users");
    let server = p.server_addr(0).parse().expect("server address");
    let profile = quiet_profile(clients, rate_per_sec, secs);
    let protocol = rtmc_readers(&users[..clients]);
    let opts = FleetOptions::for_load(&profile.load, vec![server], protocol, 11).expect("opts");
    let fleet = Fleet::connect(opts, Arc::new(LiveStats::new())).await;
    assert_eq!(fleet.summary.connected, clients);
    let probe = HeadProbe::Rtmc {
        addr: server,
        user: users[clients + 1].clone(),
        password: TEST_PASSWORD.into(),
    };
    let head = fleet.summary.max_start_after;
    // A run id of its own: the gateway dedupes message ids across runs.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(11, |d| d.subsec_nanos());
    let shape = Arc::new(MessageShape::new(run_id, 100));
    let spec = PhaseSpec::new(
        "rtmc",
        &profile,
        channels(&users[clients]),
        shape,
        probe,
        head,
        vec![],
    );
    (fleet, spec)
}

/// A phase of at most 120 s, stopped after 2 s: both rtmc channels (TCP
/// and HTTP) stop publishing at the signal, every publish made is answered
/// and delivered, and the phase reports the time it really published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_phase_ends_at_the_signal_with_everything_delivered() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let server = p.server_addr(0).parse().expect("server address");
    let (gateway, api_key) = (p.gateway_url(), p.api_key().to_owned());
    let (mut fleet, mut spec) = fleet_and_phase(&p, "stop", 3, 40.0, 120.0, |user| {
        vec![
            Channel::Tcp {
                addr: server,
                user: user.to_owned(),
                password: TEST_PASSWORD.into(),
            },
            Channel::Http {
                base_url: gateway,
                api_key,
                concurrency: 8,
            },
        ]
    })
    .await;
    let stop = CancellationToken::new();
    spec.stop = Some(stop.clone());
    let started = Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
    });
    let r = run_phase(&mut fleet, spec, started).await;
    stopper.await.expect("stopper");
    let took = started.elapsed();
    let report = &r.report;
    assert!(
        took < Duration::from_secs(30),
        "the phase ran {took:?}, not stopped"
    );
    // 2 s at 40/s: about 80, whatever the scheduling on a busy machine.
    assert!(
        (40..=120).contains(&report.published),
        "published {} in 2 s at 40/s",
        report.published
    );
    assert_eq!(report.acked, report.published, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert!(
        report.duration_secs < 10.0,
        "reported {} s of publishing",
        report.duration_secs
    );
    let a = &report.accounting;
    assert_eq!((a.lost, a.gaps), (0, 0), "{a:?}");
    assert_eq!(a.received, a.expected, "{a:?}");
}

/// A refused HTTP publish is reported to the observer by the code in the
/// gateway's `{"error", "code"}` body (here `unauthorized`: a wrong API
/// key), not only by its status; the counts are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_refusal_is_named_by_the_gateways_code() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let gateway = p.gateway_url();
    let (mut fleet, mut spec) = fleet_and_phase(&p, "refused", 1, 20.0, 0.5, |_| {
        vec![Channel::Http {
            base_url: gateway,
            api_key: "not-the-key".into(),
            concurrency: 4,
        }]
    })
    .await;
    let answers = Arc::new(Answers::default());
    spec.publish_observer = Some(answers.clone());
    let r = run_phase(&mut fleet, spec, Instant::now()).await;
    let answers = answers.all();
    assert_eq!(answers.len() as u64, r.report.published, "{answers:?}");
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| a == "refused unauthorized"),
        "{answers:?}"
    );
    assert_eq!(r.report.acked, 0);
    assert_eq!(
        r.report.publish_errors, r.report.published,
        "{:?}",
        r.report
    );
}
