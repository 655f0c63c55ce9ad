//! `chaos/scenarios/rooms-kill.toml` end to end through the library: a room
//! workload with churn and direct messages while a server node and then
//! RabbitMQ are SIGKILLed. The run must pass the per-room history checker
//! and must really have exercised rooms: deliveries in several rooms, joins
//! and leaves while a fault was in effect, and clients that lost their node
//! logging in again (resuming their rooms). loadgen's own accounting of the
//! run must agree.

use std::path::Path;

use rtmc_chaos::history::{History, RoomEventKind};
use rtmc_chaos::scenario::file::Scenario;
use rtmc_chaos::scenario::report::render_text;
use rtmc_chaos::scenario::runner::{run_scenario, RunOptions};

/// Rooms that must have had deliveries (the scenario has 6 and direct ones).
const ROOMS_WITH_DELIVERIES_AT_LEAST: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_survive_a_killed_node_and_broker_during_churn() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/rooms-kill.toml");
    let scenario = Scenario::from_path(&file).expect("the shipped scenario is valid");
    let out = std::env::temp_dir().join(format!("chaos-rooms-kill-{}", std::process::id()));
    let opts = RunOptions {
        out: out.clone(),
        seed: None,
        quiet: true,
    };
    let outcome = run_scenario(&scenario, &opts)
        .await
        .expect("the scenario runs (Docker and the rtmc binary are needed)");
    let report = &outcome.report;
    let text = render_text(report);
    assert!(report.passed(), "{text}");
    assert!(report.verdict.valid, "{text}");
    let v = &report.verdict;
    assert_eq!(
        (v.totals.lost, v.totals.leaks, v.totals.gaps),
        (0, 0, 0),
        "{text}"
    );
    assert_eq!(v.totals.order_violations, 0, "{text}");

    // loadgen's own per-membership accounting, an independent judge of the
    // same run, agrees.
    let own = &report
        .rooms
        .as_ref()
        .expect("the room driver's report")
        .accounting;
    assert_eq!(
        own.total.anomalies(),
        0,
        "loadgen's accounting {:?}: {text}",
        own.total
    );
    for f in &report.faults {
        assert!(f.window.error.is_none(), "{text}");
        assert!(f.last_client_caught_up_secs.is_some(), "{text}");
    }
    let busy = v.rooms.iter().filter(|r| r.deliveries > 0).count();
    assert!(
        busy >= ROOMS_WITH_DELIVERIES_AT_LEAST,
        "{busy} rooms delivered: {text}"
    );
    assert!(
        v.stored_rooms.as_ref().is_some_and(|s| s.rows > 0),
        "{text}"
    );

    let history = History::load(&out.join("history.json")).expect("history.json");
    // Publishing's start on the recording's clock: the first send.
    let t0_us = history
        .publishers()
        .iter()
        .flat_map(|p| &p.publishes)
        .map(|op| op.invoked_at_us)
        .min()
        .expect("sends were recorded");
    let in_a_fault = |at_us: u64| {
        report.faults.iter().any(|f| {
            let (Some(start), Some(end)) = (f.window.started_secs, f.window.ended_secs) else {
                return false;
            };
            let secs = at_us.saturating_sub(t0_us) as f64 / 1e6;
            secs >= start && secs <= end
        })
    };
    let events = history.clients().iter().flat_map(|c| &c.room_events);
    let during = |joined: bool| {
        events
            .clone()
            .filter(|e| in_a_fault(e.at_us))
            .filter(|e| match e.kind {
                RoomEventKind::Joined { .. } => joined,
                RoomEventKind::Left { .. } => !joined,
                _ => false,
            })
            .count()
    };
    assert!(
        during(true) >= 1,
        "no join while a fault was in effect: {text}"
    );
    assert!(
        during(false) >= 1,
        "no leave while a fault was in effect: {text}"
    );
    let logins = |c: &rtmc_chaos::history::ClientHistory| {
        let connected =
            |e: &&rtmc_chaos::history::RoomEvent| matches!(e.kind, RoomEventKind::Connected { .. });
        c.room_events.iter().filter(connected).count()
    };
    let reconnected = history.clients().iter().filter(|c| logins(c) > 1).count();
    assert!(
        reconnected >= 1,
        "nobody logged in again after the node was killed: {text}"
    );
    let resumed = events
        .clone()
        .filter(|e| matches!(e.kind, RoomEventKind::Resumed { .. }))
        .count();
    assert!(resumed >= 1, "no room was resumed: {text}");
    println!("{text}\nreconnected {reconnected}, rooms resumed {resumed}");
    let _ = std::fs::remove_dir_all(&out);
}
