use std::time::Duration;

use super::*;

fn load(extra: &str, faults: &str) -> String {
    format!("name = \"t\"\nfaults = [\n{faults}\n]\n[load]\nduration = \"20s\"\n{extra}\n")
}

fn err(text: &str) -> String {
    match Scenario::from_toml(text) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_shipped_scenario_parses_and_is_short() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("chaos/scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let s = Scenario::from_path(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(!s.faults.is_empty(), "{path:?} has no fault");
        assert!(
            s.load.duration <= Duration::from_secs(40),
            "{path:?} is long"
        );
        let again = Scenario::from_toml(&s.to_toml()).expect("its TOML reads back");
        assert_eq!(again.faults, s.faults, "{path:?} round trip");
        n += 1;
    }
    assert!(n >= 3, "only {n} scenario files");
}

#[test]
fn a_fault_entry_reads_as_the_issue_writes_it() {
    let s = Scenario::from_toml(&load(
        "clients = 5",
        r#"{ at = "5s", for = "10s", fault = "sigkill", target = "rabbitmq" },
           { at = "1s", for = "500ms", fault = "latency", link = "consumer-redis", latency_ms = 200 },
           { at = "16s", for = "2s", fault = "disconnect_storm", target = "clients", fraction = 0.5 }"#,
    ))
    .expect("valid");
    assert_eq!(s.load.clients, 5);
    assert_eq!(s.faults[0].at, Duration::from_secs(5));
    assert_eq!(s.faults[0].end(), Duration::from_secs(15));
    assert_eq!(
        s.faults[0].fault,
        FaultSpec::Outage {
            service: Kind::RabbitMq,
            outage: Outage::Sigkill
        }
    );
    assert_eq!(s.faults[1].lasts, Duration::from_millis(500));
    assert_eq!(
        s.faults[1].fault,
        FaultSpec::Link {
            link: Link::ConsumerRedis,
            fault: LinkFault::Latency {
                latency_ms: 200,
                jitter_ms: 0
            }
        }
    );
    assert_eq!(s.links(), vec![Link::ConsumerRedis]);
    assert!(matches!(
        s.faults[2].fault,
        FaultSpec::Clients(ClientFaultSpec::DisconnectStorm { resume: true, .. })
    ));
}

#[test]
fn an_unknown_fault_is_named_with_the_known_ones() {
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "sigkil", target = "redis" }"#,
    ));
    assert!(
        e.contains("fault 1 (sigkil)") && e.contains("unknown fault \"sigkil\""),
        "{e}"
    );
    assert!(e.contains("sigkill, stop, pause"), "{e}");
}

#[test]
fn an_unknown_link_or_target_is_named_with_the_valid_ones() {
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "latency", link = "consumer-mongo", latency_ms = 5 }"#,
    ));
    assert!(
        e.contains("unknown link \"consumer-mongo\"") && e.contains("consumer-redis"),
        "{e}"
    );
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "pause", target = "kafka" }"#,
    ));
    assert!(
        e.contains("unknown target \"kafka\"") && e.contains("rabbitmq, redis, postgres"),
        "{e}"
    );
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "down", link = "client-server-1" }"#,
    ));
    assert!(
        e.contains("unknown link \"client-server-1\""),
        "one server node: {e}"
    );
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "black_hole" }"#,
    ));
    assert!(e.contains("black_hole needs a link"), "{e}");
}

#[test]
fn a_window_beyond_the_duration_is_refused() {
    let e = err(&load(
        "",
        r#"{ at = "25s", for = "1s", fault = "pause", target = "redis" }"#,
    ));
    assert!(e.contains("beyond the load's duration 20s"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "15s", for = "10s", fault = "pause", target = "redis" }"#,
    ));
    assert!(e.contains("15s–25s"), "{e}");
}

#[test]
fn overlapping_impossible_faults_are_refused() {
    let e = err(&load(
        "",
        r#"{ at = "2s", for = "5s", fault = "sigkill", target = "rabbitmq" },
           { at = "4s", for = "5s", fault = "pause", target = "rabbitmq" }"#,
    ));
    assert!(e.contains("faults 1 and 2 both act on rabbitmq"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "2s", for = "5s", fault = "down", link = "server-redis" },
           { at = "3s", for = "1s", fault = "latency", link = "server-redis", latency_ms = 9 }"#,
    ));
    assert!(e.contains("both act on server-redis"), "{e}");
    // Two different toxics on one link, or faults on different targets, may overlap.
    Scenario::from_toml(&load(
        "",
        r#"{ at = "2s", for = "5s", fault = "bandwidth", link = "server-redis", rate_kb_per_sec = 10 },
           { at = "3s", for = "1s", fault = "latency", link = "server-redis", latency_ms = 9 },
           { at = "3s", for = "1s", fault = "pause", target = "postgres" }"#,
    ))
    .expect("compatible overlaps");
}

#[test]
fn bad_values_and_fields_get_clear_errors() {
    let e = err(&load(
        "",
        r#"{ at = "5", for = "1s", fault = "pause", target = "redis" }"#,
    ));
    assert!(e.contains("at: \"5\" has no unit"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "0s", fault = "pause", target = "redis" }"#,
    ));
    assert!(e.contains("for must be above 0"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "latency", link = "sync-redis" }"#,
    ));
    assert!(e.contains("latency needs latency_ms > 0"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "half_open", target = "clients", fraction = 1.5 }"#,
    ));
    assert!(e.contains("fraction 1.5 is not in (0, 1]"), "{e}");
    let e = err(&load(
        "",
        r#"{ at = "1s", for = "1s", fault = "pause", target = "redis", latencyms = 3 }"#,
    ));
    assert!(e.contains("latencyms"), "a misspelt field is named: {e}");
    let e = err(&load("publish = \"carrier-pigeon\"", ""));
    assert!(e.contains("unknown publish path \"carrier-pigeon\""), "{e}");
    let e = err("[load]\nduration = \"20m\"\n");
    assert!(e.contains("at most 600s"), "{e}");
}

#[test]
fn the_same_seed_draws_the_same_schedule() {
    let d = Duration::from_secs(30);
    for seed in 0..50 {
        let a = Scenario::random(seed, d).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let b = Scenario::random(seed, d).expect("again");
        assert_eq!(a.to_toml(), b.to_toml(), "seed {seed}");
        assert!(a.faults.iter().all(|f| f.end() <= d), "seed {seed}");
        let replay =
            Scenario::from_toml(&a.to_toml()).expect("the drawn schedule replays as a file");
        assert_eq!(replay.faults, a.faults);
    }
    let schedules: std::collections::HashSet<String> = (0..20)
        .map(|s| Scenario::random(s, d).expect("draw").to_toml())
        .collect();
    assert!(schedules.len() > 10, "seeds barely change the schedule");
}

/// A `[workload]` table after the load's.
fn rooms(extra: &str, faults: &str) -> String {
    format!(
        "{}[workload]\nrooms = 4\nmemberships_per_client = 2\nchurn_per_sec = 2\n",
        load(extra, faults)
    )
}

#[test]
fn a_room_workload_may_kill_server_nodes_and_nothing_else_may() {
    let kill = r#"{ at = "2s", for = "2s", fault = "sigkill", target = "server-1" }"#;
    let s = Scenario::from_toml(&rooms("clients = 8\nservers = 2", kill)).expect("valid");
    assert_eq!(s.workload.as_ref().map(|w| w.rooms), Some(4));
    assert_eq!(
        s.faults[0].fault,
        FaultSpec::Node {
            node: 1,
            outage: Outage::Sigkill
        }
    );
    assert_eq!(s.faults[0].to_string(), "server-1 sigkill at 2s for 2s");
    let again = Scenario::from_toml(&s.to_toml()).expect("its TOML reads back");
    assert_eq!(again.workload, s.workload);
    // Node 0 runs in process; node 2 does not exist.
    for node in ["server-0", "server-2"] {
        let f = kill.replace("server-1", node);
        let e = err(&rooms("clients = 8\nservers = 2", &f));
        assert!(
            e.contains("nodes that can fail: server-1 to server-1"),
            "{e}"
        );
    }
    let e = err(&load("clients = 8\nservers = 2", kill));
    assert!(e.contains("need a room workload"), "{e}");
    let storm = r#"{ at = "2s", for = "2s", fault = "disconnect_storm", target = "clients" }"#;
    let e = err(&rooms("clients = 8", storm));
    assert!(e.contains("need the global room"), "{e}");
    let e = err(&rooms("clients = 8", kill));
    assert!(e.contains("cannot fail; raise load.servers"), "{e}");
    let e = err(&format!(
        "{}dm_share = 1.5\n",
        rooms("clients = 8\nservers = 2", kill)
    ));
    assert!(e.contains("workload"), "{e}");
}
