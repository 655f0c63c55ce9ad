//! The NATS peers end to end: `loadgen run --rounds 2` in-process with
//! rtmc, the Redis floor, NATS core and JetStream as the four phase kinds
//! of interleaved rounds at one small load (20 clients × 50 msg/s × 2 s),
//! against an embedded stack and one embedded nats-server. Every phase of
//! every round must deliver every message to every subscriber, with its
//! histograms filled and written. Needs Docker and the `rtmc` binary.

use std::path::PathBuf;

use rtmc_loadgen::engine::phase::PhaseReport;
use rtmc_loadgen::measure::histogram::read_interval_log;
use rtmc_loadgen::profile::{Peer, Profile};
use rtmc_loadgen::report::rounds::round_order;
use rtmc_loadgen::report::text::render_text;
use rtmc_loadgen::report::types::RunReport;
use rtmc_loadgen::run::{execute, Mode};

use crate::embedded_run::build_rtmc;

const CLIENTS: usize = 20;
const MESSAGES: u64 = 100;
const ROUNDS: usize = 2;
const KINDS: [&str; 4] = ["rtmc", "floor", "nats", "jetstream"];

fn assert_delivered_everything(p: &PhaseReport, acked: bool, text: &str) {
    let label = &p.label;
    assert_eq!(p.receivers, CLIENTS, "{label}: receivers\n{text}");
    assert_eq!(p.published, MESSAGES, "{label}: published\n{text}");
    if acked {
        assert_eq!(p.acked, MESSAGES, "{label}: acked\n{text}");
        assert_eq!(
            p.ack_latency.count, MESSAGES,
            "{label}: ack histogram\n{text}"
        );
    }
    let a = &p.accounting;
    assert_eq!(
        a.expected,
        CLIENTS as u64 * MESSAGES,
        "{label}: expected\n{text}"
    );
    assert_eq!(
        a.received,
        CLIENTS as u64 * MESSAGES,
        "{label}: received\n{text}"
    );
    assert_eq!(
        (a.lost, a.duplicates, a.out_of_order),
        (0, 0, 0),
        "{label}\n{text}"
    );
    assert_eq!(p.bad_frames, 0, "{label}: bad frames\n{text}");
    assert_eq!(
        p.latency.count,
        CLIENTS as u64 * MESSAGES,
        "{label}: latency histogram\n{text}"
    );
    assert!(p.latency.p50_ms > 0.0, "{label}: p50\n{text}");
}

fn peer<'a>(r: &'a RunReport, label: &str) -> &'a PhaseReport {
    &r.peers
        .iter()
        .find(|p| p.label == label)
        .unwrap_or_else(|| panic!("no {label} peer in the report"))
        .phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmc_and_every_peer_deliver_every_message_side_by_side() {
    build_rtmc();
    let out: PathBuf =
        std::env::temp_dir().join(format!("loadgen-e2e-peers-{}", std::process::id()));
    let mut profile = Profile {
        name: "e2e-peers".into(),
        ..Default::default()
    };
    profile.load.clients = CLIENTS;
    profile.load.rate_per_sec = 50.0;
    profile.load.duration_secs = 2.0;
    profile.load.drain_timeout_secs = 10.0;
    profile.output.out = Some(out.clone());
    profile.output.quiet = true;
    profile.load.rounds = ROUNDS;
    profile.set_peers(&[Peer::Floor, Peer::Nats, Peer::JetStream]);

    let outcome = execute(profile, Mode::Run)
        .await
        .unwrap_or_else(|e| panic!("loadgen could not run (is Docker up?): {e}"));
    let r = &outcome.report;
    let text = render_text(r);
    assert!(r.passed(), "the run failed:\n{text}");

    // Every kind has a phase in every round, in the documented order
    // (round 2: the listed order reversed), each with its own accounting.
    assert_eq!(r.rounds.len(), ROUNDS, "{text}");
    for (i, round) in r.rounds.iter().enumerate() {
        let order: Vec<&str> = round.phases.iter().map(|p| p.label.as_str()).collect();
        let want: Vec<&str> = round_order(KINDS.len(), i)
            .into_iter()
            .map(|k| KINDS[k])
            .collect();
        assert_eq!(order, want, "round {}\n{text}", round.round);
        for p in &round.phases {
            assert_delivered_everything(p, true, &text);
        }
    }
    let order2: Vec<&str> = r.rounds[1]
        .phases
        .iter()
        .map(|p| p.label.as_str())
        .collect();
    assert_eq!(order2, ["jetstream", "nats", "floor", "rtmc"], "{text}");
    let s = r.rounds_summary.as_ref().expect("a rounds summary");
    let sides: Vec<&str> = s.sides.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(sides, KINDS, "{text}");
    let ratio_peers: Vec<&str> = s.ratios.iter().map(|x| x.peer.as_str()).collect();
    assert_eq!(ratio_peers, KINDS[1..], "{text}");
    for ratios in &s.ratios {
        let p99 = ratios
            .metrics
            .iter()
            .find(|m| m.metric == "recv_p99")
            .unwrap();
        assert_eq!(p99.values.len(), ROUNDS, "rtmc÷{}\n{text}", ratios.peer);
        assert!(p99.spread.unwrap().median > 0.0, "{p99:?}");
        let cpu = ratios
            .metrics
            .iter()
            .find(|m| m.metric == "server_cpu_secs_per_million_deliveries")
            .unwrap();
        assert_eq!(
            cpu.spread.map(|s| s.n),
            Some(ROUNDS),
            "rtmc÷{} CPU\n{text}",
            ratios.peer
        );
    }
    for label in ["rtmc÷nats", "rtmc÷jetstream", "2 interleaved rounds"] {
        assert!(text.contains(label), "{label}\n{text}");
    }
    assert_delivered_everything(r.rtmc.as_ref().expect("rtmc"), true, &text);
    assert_delivered_everything(r.floor.as_ref().expect("floor"), true, &text);
    let labels: Vec<&str> = r.peers.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["nats", "jetstream"], "{text}");
    // Core NATS: the PONG after each PUB is its ack; JetStream: the PubAck.
    assert_delivered_everything(peer(r, "nats"), true, &text);
    assert_delivered_everything(peer(r, "jetstream"), true, &text);
    for p in &r.peers {
        assert_eq!(
            p.connect.connected, CLIENTS,
            "{}: connected\n{text}",
            p.label
        );
    }
    // The embedded nats-server's CPU time is the peers' server CPU.
    assert!(
        peer(r, "jetstream").selfcheck.server_cpu_cores > 0.0,
        "no server CPU for the embedded nats-server\n{text}"
    );

    for f in [
        "nats.hgrm",
        "nats-ack.hgrm",
        "jetstream.hgrm",
        "jetstream-ack.hgrm",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("report.json parses");
    assert_eq!(
        json["schema_version"],
        rtmc_loadgen::report::types::SCHEMA_VERSION
    );
    assert_eq!(json["peers"][1]["phase"]["label"], "jetstream");
    assert_eq!(json["rounds"][1]["phases"][0]["label"], "jetstream");
    let log = std::fs::read(out.join("latency.hlog")).expect("latency.hlog");
    let intervals = read_interval_log(&log).expect("the interval log reads");
    for tag in ["nats", "nats-ack", "jetstream", "jetstream-ack"] {
        let n: u64 = intervals
            .iter()
            .filter(|i| i.tag == tag)
            .map(|i| i.histogram.len())
            .sum();
        let want = ROUNDS as u64
            * if tag.ends_with("-ack") {
                MESSAGES
            } else {
                CLIENTS as u64 * MESSAGES
            };
        assert_eq!(n, want, "{tag} intervals in latency.hlog");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// An image that is not there is a failure that says so, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_nats_image_is_a_clear_error() {
    rtmc_testkit::docker::ensure_engine_and_images();
    let err = match rtmc_testkit::Nats::start_image("rtmc-nats-does-not-exist", "0").await {
        Ok(_) => panic!("a container started from an image that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("nats: container:"), "{err}");
    assert!(err.contains("rtmc-nats-does-not-exist"), "{err}");
}
