//! Recording from many threads, outcomes, and the save/load roundtrip.

use std::path::PathBuf;
use std::thread;

use super::*;

/// A history with every kind of record in it.
fn sample() -> History {
    let rec = Recording::start();
    let mut p = rec.publisher("alice");
    let ok = p.invoke_at(10, "m-1");
    p.ok_at(ok, 20);
    let failed = p.invoke_at(30, "m-2");
    p.fail_at(failed, 40, "broker_unavailable");
    let timed_out = p.invoke_at(50, "m-3");
    p.unknown_at(timed_out, 2_050);
    p.invoke_at(60, "m-4");
    let mut bob = rec.client("bob");
    bob.connected_at(5, 0, None);
    bob.delivered_at(25_000, 1, "m-1");
    bob.disconnected_at(26_000, "eof");
    bob.connected_at(27_000, 2, Some(1));
    bob.delivered_at(27_500, 2, "m-3");
    bob.resumed_at(28_000, 1, 2);
    drop((p, bob));
    rec.stored([(1, "m-1"), (2, "m-3")]);
    rec.drained_at(29_000);
    rec.finish().expect("every log handed back")
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rtmc-chaos-{}-{name}.json", std::process::id()))
}

#[test]
fn a_saved_history_loads_back_equal_and_checks_the_same() {
    let history = sample();
    let path = temp_path("roundtrip");
    history.save(&path).expect("saved");
    let loaded = History::load(&path);
    std::fs::remove_file(&path).expect("removed");
    let loaded = loaded.expect("loaded");
    assert_eq!(loaded, history);
    assert_eq!(loaded.check(), history.check());
}

#[test]
fn the_json_is_compact_and_readable() {
    let mut json = Vec::new();
    sample().write_json(&mut json).expect("written");
    let json = String::from_utf8(json).expect("utf-8");
    assert!(json.starts_with(r#"{"format":"rtmc-history/2","message_ids":["m-1","m-2","m-3","m-4"],"codes":["broker_unavailable"]"#), "{json}");
    assert!(
        json.contains(r#""deliveries":[[1,0,25],[2,2,27]]"#),
        "{json}"
    );
    assert!(json.contains(r#""outcome":{"fail":{"code":0}}"#), "{json}");
    assert!(
        json.contains(r#""kind":{"connected":{"head":2,"resume_from":1}}"#),
        "{json}"
    );
    assert!(
        json.ends_with(r#""stored":[[1,0],[2,2]],"drained_at_us":29000}"#),
        "{json}"
    );
}

#[test]
fn outcomes_and_sessions_are_recorded_as_given() {
    let h = sample();
    let ops = &h.publishers()[0].publishes;
    let outcomes: Vec<_> = ops
        .iter()
        .map(|op| (op.outcome, op.completed_at_us))
        .collect();
    let code = Outcome::Fail { code: CodeIx(0) };
    assert_eq!(
        outcomes,
        [
            (Outcome::Ok, Some(20)),
            (code, Some(40)),
            (Outcome::Unknown, Some(2_050)),
            (Outcome::Unknown, None)
        ]
    );
    assert_eq!(h.code(CodeIx(0)), "broker_unavailable");
    let bob = h.client("bob").expect("bob");
    let positions: Vec<u64> = bob.events.iter().map(|e| e.deliveries_before).collect();
    assert_eq!(positions, [0, 1, 1, 2]);
    assert_eq!(bob.deliveries[1].received_at_ms, 27);
    assert_eq!(h.message_ix("m-3"), Some(bob.deliveries[1].message));
}

#[test]
fn a_late_answer_replaces_unknown_and_nothing_replaces_ok() {
    let rec = Recording::start();
    let mut p = rec.publisher("p");
    let late_ack = p.invoke_at(0, "a");
    p.unknown_at(late_ack, 10);
    p.ok_at(late_ack, 20);
    let acked = p.invoke_at(0, "b");
    p.ok_at(acked, 10);
    p.fail_at(acked, 20, "broker_unavailable");
    p.unknown_at(acked, 30);
    let failed = p.invoke_at(0, "c");
    p.fail_at(failed, 10, "rate_limited");
    p.unknown_at(failed, 20);
    drop(p);
    let h = rec.finish().expect("finished");
    let outcomes: Vec<_> = h.publishers()[0]
        .publishes
        .iter()
        .map(|op| (op.outcome, op.completed_at_us))
        .collect();
    let rate_limited = Outcome::Fail { code: CodeIx(0) };
    assert_eq!(
        outcomes,
        [
            (Outcome::Ok, Some(20)),
            (Outcome::Ok, Some(10)),
            (rate_limited, Some(10))
        ]
    );
}

#[test]
fn logs_recorded_on_many_threads_merge_in_the_order_they_were_opened() {
    let rec = Recording::start();
    let publishers: Vec<_> = (0..4).map(|i| rec.publisher(format!("p{i}"))).collect();
    let clients: Vec<_> = (0..4).map(|i| rec.client(format!("c{i}"))).collect();
    let mut threads = Vec::new();
    for (i, mut p) in publishers.into_iter().enumerate() {
        threads.push(thread::spawn(move || {
            for n in 0..100 {
                let op = p.invoke(&format!("p{i}-{n}"));
                match n % 3 {
                    0 => p.ok(op),
                    1 => p.fail(
                        op,
                        if i % 2 == 0 {
                            "rate_limited"
                        } else {
                            "http_503"
                        },
                    ),
                    _ => p.unknown(op),
                }
            }
        }));
    }
    for mut c in clients {
        threads.push(thread::spawn(move || {
            c.connected(0, None);
            for seq in 1..=400 {
                c.delivered(seq, &format!("p{}-{}", seq % 4, seq / 4));
            }
            c.disconnected("done");
        }));
    }
    for t in threads {
        t.join().expect("thread finished");
    }
    let h = rec.finish().expect("finished");
    let names: Vec<&str> = h.publishers().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["p0", "p1", "p2", "p3"]);
    let names: Vec<&str> = h.clients().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3"]);
    assert!(h.clients().iter().all(|c| c.deliveries.len() == 400));
    let mut codes = h.codes.clone();
    codes.sort();
    assert_eq!(codes, ["http_503", "rate_limited"]);
    for p in h.publishers() {
        let odd = p.name == "p1" || p.name == "p3";
        let code = p.publishes.iter().find_map(|op| match op.outcome {
            Outcome::Fail { code } => Some(h.code(code)),
            _ => None,
        });
        assert_eq!(code, Some(if odd { "http_503" } else { "rate_limited" }));
    }
    // 400 published ids, plus p0-100, delivered but never published.
    assert_eq!(h.message_ids().len(), 401);
}

#[test]
fn finishing_with_a_log_still_open_is_refused() {
    let rec = Recording::start();
    let open = rec.client("c");
    let early = rec.clone().finish();
    assert!(matches!(
        early,
        Err(HistoryError::LogsStillOpen { count: 1 })
    ));
    drop(open);
    assert!(rec.finish().is_ok());
}

#[test]
fn a_history_that_contradicts_itself_is_refused() {
    let mut json = Vec::new();
    sample().write_json(&mut json).expect("written");
    let json = String::from_utf8(json).expect("utf-8");
    let bad_index = json.replace("[[1,0,25]", "[[1,9,25]");
    let err = History::read_json(bad_index.as_bytes());
    assert!(matches!(err, Err(HistoryError::Inconsistent(_))), "{err:?}");
    let bad_format = json.replace("rtmc-history/2", "rtmc-history/0");
    let err = History::read_json(bad_format.as_bytes());
    assert!(matches!(err, Err(HistoryError::Format { .. })), "{err:?}");
    let bad_position = json.replace(r#""deliveries_before":2"#, r#""deliveries_before":7"#);
    let err = History::read_json(bad_position.as_bytes());
    assert!(matches!(err, Err(HistoryError::Inconsistent(_))), "{err:?}");
    let truncated = &json[..json.len() / 2];
    let err = History::read_json(truncated.as_bytes());
    assert!(matches!(err, Err(HistoryError::Json(_))), "{err:?}");
}

/// A v2 client in two rooms: a login listing one, a join, a delivery in
/// each, a leave, a resume; a direct message's room named at its ack.
fn room_sample() -> History {
    let rec = Recording::start();
    let mut p = rec.publisher("owner");
    let op = p.invoke_in_at(10, Some("team"), "r-1");
    p.ok_at(op, 20);
    let dm = p.invoke_at(30, "d-1");
    p.set_room(dm, Some("dm:a:b"));
    p.ok_at(dm, 40);
    let mut bob = rec.client("bob");
    bob.rooms_connected_at(5, &[("general", 4)], &[]);
    bob.joined_at(6, "team", 0);
    bob.room_delivered_at(25_000, "team", 1, "r-1");
    bob.room_delivered_at(26_000, "dm:a:b", 1, "d-1");
    bob.left_at(27_000, "team", 1);
    bob.disconnected_at(28_000, "eof");
    bob.rooms_connected_at(29_000, &[("general", 4)], &[("general", 4)]);
    bob.room_resumed_at(29_500, "general", 4, 4);
    drop((p, bob));
    rec.stored_rooms([("team", 1, "r-1"), ("dm:a:b", 1, "d-1")]);
    rec.finish().expect("every log handed back")
}

#[test]
fn a_room_history_keeps_its_rooms_through_save_and_load() {
    let history = room_sample();
    assert_eq!(history.rooms(), ["team", "dm:a:b", "general"]);
    let bob = history.client("bob").expect("bob");
    assert_eq!(bob.room_deliveries.len(), 2);
    assert_eq!(bob.room_events.len(), 6, "{:?}", bob.room_events);
    assert!(matches!(
        bob.room_events[3].kind,
        RoomEventKind::Disconnected { .. }
    ));
    let publishes = &history.publishers()[0].publishes;
    assert_eq!(publishes[1].room, history.room_ix("dm:a:b"));
    let mut json = Vec::new();
    history.write_json(&mut json).expect("written");
    let json = String::from_utf8(json).expect("utf-8");
    assert!(
        json.contains(r#""room_deliveries":[[0,1,0,25],[1,1,1,26]]"#),
        "{json}"
    );
    assert!(
        json.contains(r#""kind":{"joined":{"room":0,"seq":0}}"#),
        "{json}"
    );
    assert!(
        json.contains(r#""stored_rooms":[[0,1,0],[1,1,1]]"#),
        "{json}"
    );
    let loaded = History::read_json(json.as_bytes()).expect("loads");
    assert_eq!(loaded, history);
    assert_eq!(loaded.check(), history.check());
    let bad_room = json.replace(
        r#""room_deliveries":[[0,1,0,25]"#,
        r#""room_deliveries":[[7,1,0,25]"#,
    );
    let err = History::read_json(bad_room.as_bytes());
    assert!(matches!(err, Err(HistoryError::Inconsistent(_))), "{err:?}");
}
