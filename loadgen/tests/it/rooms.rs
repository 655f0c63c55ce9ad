//! A room workload end to end against the real stack: `loadgen run` with
//! `profiles/rooms-smoke.toml` (30 protocol v2 clients in Zipf-sized rooms,
//! direct messages, churn) must deliver every message of every membership
//! window exactly once, in order, and nothing outside one; and the same
//! workload on the Redis floor, NATS core and JetStream in interleaved
//! rounds with rtmc. Needs Docker and the `rtmc` binary, which it builds.

use std::path::Path;

use rtmc_loadgen::engine::rooms::summary::RoomsReport;
use rtmc_loadgen::profile::Profile;
use rtmc_loadgen::report::text::render_text;
use rtmc_loadgen::run::{execute, Mode};

use crate::embedded_run::build_rtmc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_workload_with_churn_and_direct_messages_is_exact() {
    build_rtmc();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut profile = Profile::load(&dir.join("rooms-smoke.toml")).expect("the smoke profile");
    let out = std::env::temp_dir().join(format!("loadgen-rooms-{}", std::process::id()));
    profile.output.out = Some(out.clone());
    profile.output.quiet = true;

    let outcome = execute(profile, Mode::Run)
        .await
        .unwrap_or_else(|e| panic!("loadgen could not run (is Docker up?): {e}"));
    let text = render_text(&outcome.report);
    let r = outcome.report.rooms.as_ref().expect("a rooms section");
    assert!(outcome.report.passed(), "the run failed:\n{text}");
    assert_eq!(
        r.seed, 7,
        "the profile's seed is used and reported:\n{text}"
    );
    assert!(text.contains("seed 7"), "{text}");
    assert_eq!((r.clients, r.rooms, r.rooms_created), (30, 8, 8), "{text}");
    assert_eq!(r.initial_joins, 90, "{text}");
    // 60 msg/s for 4 s, a fifth of them direct; all acknowledged.
    assert_eq!(r.published_rooms + r.published_direct, 240, "{text}");
    assert!(r.published_direct > 20, "{text}");
    assert_eq!(r.acked, 240, "{text}");
    // Churn happened and was answered: 20 events, leaves and rejoins.
    assert_eq!(r.churn_planned, 20, "{text}");
    assert!(r.churn_left > 0 && r.churn_joined > 0, "{text}");
    assert_eq!(r.churn_left + r.churn_joined, 20, "{text}");
    let a = &r.accounting;
    assert!(a.rooms.expected > 240, "{text}");
    // A direct message is owed to both its sender and its recipient.
    assert_eq!(a.direct.expected, 2 * r.published_direct, "{text}");
    assert_eq!(a.total.received, a.total.expected, "{text}");
    assert_eq!(a.total.anomalies(), 0, "{text}");
    // A window per initial join, per owner (the publishers) and per rejoin.
    assert_eq!(a.rooms.windows, 90 + 8 + r.churn_joined, "{text}");
    assert_eq!(r.latency.count, a.total.received, "{text}");
    // Every `joined` answered a join (or opened a direct room): none was
    // ignored, which would have turned what followed into leaks.
    assert_eq!(r.unasked_joined, 0, "{text}");
    for file in ["report.json", "report.txt", "latency.hgrm"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    assert!(json.contains("\"seed\": 7"), "{json}");
    let _ = std::fs::remove_dir_all(&out);
}

/// What every phase of `rooms-smoke` must show, on rtmc or a peer: all
/// connected, joined, sent, acknowledged, churned, and every delivery in
/// the histogram.
fn assert_ran(name: &str, r: &RoomsReport, text: &str) {
    assert_eq!(r.seed, 7, "{name}: the same draw\n{text}");
    assert_eq!((r.clients, r.rooms), (30, 8), "{name}\n{text}");
    assert_eq!(r.login_failures, 0, "{name}: connected\n{text}");
    assert_eq!(r.initial_joins, 90, "{name}: joined\n{text}");
    assert_eq!(
        r.published_rooms + r.published_direct,
        240,
        "{name}\n{text}"
    );
    assert!(r.published_direct > 20, "{name}\n{text}");
    assert_eq!(r.acked, 240, "{name}: acknowledged\n{text}");
    assert_eq!(r.churn_planned, 20, "{name}\n{text}");
    assert_eq!(r.churn_left + r.churn_joined, 20, "{name}: churned\n{text}");
    assert!(r.churn_left > 0 && r.churn_joined > 0, "{name}\n{text}");
    assert_eq!(
        (r.incomplete, r.bad_frames, r.disconnects),
        (0, 0, 0),
        "{name}\n{text}"
    );
    assert!(
        r.latency.count >= r.accounting.total.received,
        "{name}: every delivery received in the histogram\n{text}"
    );
    let cpu = r.server_cpu.first().expect("a server CPU watch");
    assert!(
        cpu.cpu_secs.is_some(),
        "{name}: server CPU measured\n{text}"
    );
}

/// [`assert_ran`], and every window exact: nothing lost, duplicated,
/// reordered or leaked. (`logins_reopen`: rtmc after round 1, whose logins
/// open empty windows in the earlier rounds' rooms.)
fn assert_exact(name: &str, r: &RoomsReport, logins_reopen: bool, text: &str) {
    assert_ran(name, r, text);
    let a = &r.accounting;
    assert!(a.rooms.expected > 240, "{name}\n{text}");
    assert_eq!(a.direct.expected, 2 * r.published_direct, "{name}\n{text}");
    // A window per initial join, per owner (rtmc's publishers are members
    // of their rooms; a peer's owners subscribe to them) and per rejoin.
    if !logins_reopen {
        assert_eq!(a.rooms.windows, 90 + 8 + r.churn_joined, "{name}\n{text}");
    }
    assert_eq!(
        a.total.received, a.total.expected,
        "{name}: nothing lost\n{text}"
    );
    assert_eq!(
        (
            a.total.duplicated,
            a.total.out_of_order,
            a.total.gaps,
            a.total.leaks
        ),
        (0, 0, 0, 0),
        "{name}: nothing duplicated, reordered or leaked\n{text}"
    );
    assert_eq!(
        r.latency.count,
        a.total.received + a.total.unsure,
        "{name}: every delivery in the histogram, once\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_workload_runs_on_the_floor_nats_core_and_jetstream_in_interleaved_rounds() {
    build_rtmc();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut profile = Profile::load(&dir.join("rooms-smoke.toml")).expect("the smoke profile");
    let out = std::env::temp_dir().join(format!("loadgen-rooms-peers-{}", std::process::id()));
    profile.output.out = Some(out.clone());
    profile.output.quiet = true;
    profile.floor.enabled = true;
    profile.nats.core = true;
    profile.nats.jetstream = true;
    profile.load.rounds = 2;

    let outcome = execute(profile, Mode::Run)
        .await
        .unwrap_or_else(|e| panic!("loadgen could not run (is Docker up?): {e}"));
    let report = &outcome.report;
    let text = render_text(report);
    assert!(report.passed(), "the run failed:\n{text}");
    let order: Vec<(usize, &str)> = report
        .room_rounds
        .iter()
        .map(|p| (p.round, p.system.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (1, "rtmc"),
            (1, "floor"),
            (1, "nats"),
            (1, "jetstream"),
            (2, "jetstream"),
            (2, "nats"),
            (2, "floor"),
            (2, "rtmc")
        ],
        "every system each round, the order rotating\n{text}"
    );
    // rtmc's phases are exact (its second round re-uses the users: their
    // direct rooms of round 1 exist already and open at login, so nothing
    // is a leak). A peer's phase must run in full, but a peer promises no
    // exactness at a window's edges (JetStream may deliver once more around
    // a consumer's deletion on a loaded machine): its anomalies are the
    // report's notes, never its verdict.
    for p in &report.room_rounds {
        let name = format!("{} round {}", p.system, p.round);
        if p.system == "rtmc" {
            assert_exact(&name, &p.rooms, p.round > 1, &text);
            continue;
        }
        assert_ran(&name, &p.rooms, &text);
        if p.rooms.accounting.total.anomalies() > 0 {
            let noted = format!("{} round {} (peer, not judged)", p.system, p.round);
            assert!(
                report.notes.iter().any(|n| n.contains(&noted)),
                "{name}: its anomalies are a note\n{text}"
            );
        }
    }
    assert!(text.contains("== median over the rounds"), "{text}");
    for file in [
        "report.json",
        "latency.hgrm",
        "floor.hgrm",
        "nats.hgrm",
        "jetstream.hgrm",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    assert!(json.contains("\"room_rounds\""), "{json}");
    let _ = std::fs::remove_dir_all(&out);
}
