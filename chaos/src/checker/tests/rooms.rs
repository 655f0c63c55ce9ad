//! Hand-built room histories (protocol v2), each holding exactly the
//! anomalies it names, each reported with its room, seq and client.
//!
//! The fixture: message `{room}{i}` is published to `room` at `100·i` µs,
//! acknowledged 50 µs later, and (when sequenced) gets the room's seq `i`
//! and reaches members at `100·i + 80` µs.

use super::*;

fn id(room: &str, i: u64) -> String {
    format!("{room}{i}")
}

fn invoked(i: u64) -> u64 {
    100 * i
}

fn acked_in(p: &mut PublishLog, room: &str, seqs: impl IntoIterator<Item = u64>) {
    for i in seqs {
        let op = p.invoke_in_at(invoked(i), Some(room), &id(room, i));
        p.ok_at(op, invoked(i) + 50);
    }
}

/// Live deliveries of `room`'s seqs.
fn receive_in(c: &mut ClientLog, room: &str, seqs: impl IntoIterator<Item = u64>) {
    for s in seqs {
        c.room_delivered_at(invoked(s) + 80, room, s, &id(room, s));
    }
}

/// A v2 client logged in at time 0 with no rooms, joining each of `rooms`
/// at its join point.
fn member(rec: &Recording, name: &str, rooms: &[(&str, u64)]) -> ClientLog {
    let mut c = rec.client(name);
    c.rooms_connected_at(0, &[], &[]);
    for &(room, seq) in rooms {
        c.joined_at(1, room, seq);
    }
    c
}

/// Ten acknowledged messages in each of rooms `a` and `b`.
fn published(rec: &Recording) {
    let mut p = rec.publisher("owner");
    acked_in(&mut p, "a", 1..=10);
    acked_in(&mut p, "b", 1..=10);
}

/// Alice, in `a` and `b` from the start, receives everything.
fn alice(rec: &Recording) {
    let mut alice = member(rec, "alice", &[("a", 0), ("b", 0)]);
    receive_in(&mut alice, "a", 1..=10);
    receive_in(&mut alice, "b", 1..=10);
}

fn stored_rows(rec: &Recording, rows: &[(&str, u64)]) {
    let ids: Vec<(String, u64, String)> = rows
        .iter()
        .map(|&(r, s)| (r.to_owned(), s, id(r, s)))
        .collect();
    rec.stored_rooms(ids.iter().map(|(r, s, m)| (r.as_str(), *s, m.as_str())));
}

fn all_rows() -> Vec<(&'static str, u64)> {
    (1..=10).flat_map(|s| [("a", s), ("b", s)]).collect()
}

#[track_caller]
fn about(a: &Anomaly, client: Option<&str>, room: &str, seqs: (u64, u64)) {
    assert_eq!(a.client.as_deref(), client, "{a}");
    assert_eq!(a.room.as_deref(), Some(room), "{a}");
    assert_eq!(a.seqs.map(|s| (s.first, s.last)), Some(seqs), "{a}");
}

#[test]
fn a_clean_run_with_joins_leaves_and_a_per_room_resume_is_valid() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        // Carol joins `b` at 3, leaves at 6 (owed 4..=6), rejoins at 8.
        let mut carol = member(rec, "carol", &[("b", 3)]);
        receive_in(&mut carol, "b", 4..=6);
        carol.left_at(690, "b", 6);
        carol.joined_at(850, "b", 8);
        receive_in(&mut carol, "b", 9..=10);
        // Dave, in `a`, drops after seq 4 and resumes `a` from 4.
        let mut dave = member(rec, "dave", &[("a", 0)]);
        receive_in(&mut dave, "a", 1..=4);
        dave.disconnected_at(490, "chaos");
        dave.rooms_connected_at(760, &[("a", 7)], &[("a", 4)]);
        receive_in(&mut dave, "a", 5..=7);
        dave.room_resumed_at(790, "a", 4, 7);
        receive_in(&mut dave, "a", 8..=10);
        // Erin, in `a`, drops after 4 and comes back fresh: owed nothing of
        // what was sequenced while away.
        let mut erin = member(rec, "erin", &[("a", 0)]);
        receive_in(&mut erin, "a", 1..=4);
        erin.disconnected_at(490, "chaos");
        erin.rooms_connected_at(760, &[("a", 7)], &[]);
        receive_in(&mut erin, "a", 8..=10);
        stored_rows(rec, &all_rows());
    });
    let v = h.check();
    assert_anomalies(&v, &[]);
    let expected = |n: &str| v.client(n).map(|c| (c.expected, c.ok, c.leaks));
    assert_eq!(expected("alice"), Some((20, 20, 0)));
    assert_eq!(expected("carol"), Some((5, 5, 0)));
    assert_eq!(expected("dave"), Some((10, 10, 0)));
    assert_eq!(expected("erin"), Some((7, 7, 0)));
    let a = v.room("a").expect("room a");
    assert_eq!((a.members, a.deliveries, a.last_seq), (3, 27, 10));
    assert_eq!(v.totals.room_deliveries, 42);
    assert_eq!(v.stored_rooms.as_ref().map(|s| s.rows), Some(20));
    assert!(
        v.to_string()
            .contains("rooms: 2, 42 room deliveries: lost 0, leaks 0"),
        "{v}"
    );
}

#[test]
fn a_member_missing_a_message_of_its_room_is_a_loss_there() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", (1..=10).filter(|&s| s != 5));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 1), (AnomalyKind::Gap, 1)]);
    assert_eq!(v.lost, ["a5"]);
    about(only(&v, AnomalyKind::Lost), Some("bob"), "a", (5, 5));
    about(only(&v, AnomalyKind::Gap), Some("bob"), "a", (5, 5));
    assert_eq!(v.room("a").map(|r| (r.lost, r.gaps)), Some((1, 1)));
    assert_eq!(v.room("b").map(|r| r.lost), Some(0));
}

#[test]
fn a_room_seq_received_twice_is_a_duplicate_in_transit_and_allowed() {
    let h = history(|rec| {
        published(rec);
        let mut alice = member(rec, "alice", &[("a", 0), ("b", 0)]);
        receive_in(&mut alice, "a", (1..=6).chain(6..=10));
        receive_in(&mut alice, "b", 1..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedInTransit, 1)]);
    about(
        only(&v, AnomalyKind::DuplicatedInTransit),
        Some("alice"),
        "a",
        (6, 6),
    );
}

#[test]
fn a_room_message_under_a_second_seq_is_a_duplicate_after_dedupe() {
    let h = history(|rec| {
        published(rec);
        let mut alice = member(rec, "alice", &[("a", 0), ("b", 0)]);
        receive_in(&mut alice, "a", 1..=10);
        receive_in(&mut alice, "b", 1..=10);
        alice.room_delivered_at(1100, "a", 11, &id("a", 3));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedAfterDedupe, 1)]);
    let a = only(&v, AnomalyKind::DuplicatedAfterDedupe);
    about(a, Some("alice"), "a", (11, 11));
    assert_eq!(a.detail, "first under a seq 3");
}

#[test]
fn a_room_seq_below_one_already_received_is_out_of_order() {
    let h = history(|rec| {
        published(rec);
        let mut alice = member(rec, "alice", &[("a", 0), ("b", 0)]);
        receive_in(&mut alice, "a", [1, 2, 3, 4, 6, 5, 7, 8, 9, 10]);
        // Another room's lower seqs in between are no violation.
        receive_in(&mut alice, "b", 1..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::OrderViolation, 1)]);
    let a = only(&v, AnomalyKind::OrderViolation);
    about(a, Some("alice"), "a", (5, 5));
    assert_eq!(a.detail, "after seq 6");
}

#[test]
fn a_room_seq_never_received_whose_publish_was_not_acknowledged_is_a_gap() {
    let h = history(|rec| {
        let mut p = rec.publisher("owner");
        acked_in(&mut p, "a", (1..=10).filter(|&i| i != 5));
        let op = p.invoke_in_at(invoked(5), Some("a"), &id("a", 5));
        p.unknown_at(op, invoked(5) + 50);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", 1..=10);
        let mut carol = member(rec, "carol", &[("a", 0)]);
        receive_in(&mut carol, "a", (1..=10).filter(|&s| s != 5));
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[(AnomalyKind::Gap, 1), (AnomalyKind::RecoveredUnknown, 1)],
    );
    about(only(&v, AnomalyKind::Gap), Some("carol"), "a", (5, 5));
    assert!(v.lost.is_empty());
}

#[test]
fn a_delivery_of_a_room_never_joined_is_a_leak() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", 1..=3);
        receive_in(&mut bob, "b", 3..=3);
        receive_in(&mut bob, "a", 4..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Leak, 1)]);
    let leak = only(&v, AnomalyKind::Leak);
    about(leak, Some("bob"), "b", (3, 3));
    assert_eq!(leak.detail, "not a member then");
    assert_eq!(
        v.client("bob").map(|c| (c.leaks, c.expected)),
        Some((1, 10))
    );
    assert_eq!(v.room("b").map(|r| r.leaks), Some(1));
    assert!(!v.valid, "a leak is as bad as a loss");
}

#[test]
fn a_delivery_after_the_leave_point_is_a_leak() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", 1..=5);
        bob.left_at(590, "a", 5);
        receive_in(&mut bob, "a", 6..=6);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Leak, 1)]);
    about(only(&v, AnomalyKind::Leak), Some("bob"), "a", (6, 6));
    assert_eq!(v.client("bob").map(|c| c.expected), Some(5));
}

#[test]
fn a_delivery_at_or_before_the_join_point_is_a_leak() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut bob = member(rec, "bob", &[("a", 4)]);
        receive_in(&mut bob, "a", 4..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Leak, 1)]);
    let leak = only(&v, AnomalyKind::Leak);
    about(leak, Some("bob"), "a", (4, 4));
    assert_eq!(leak.detail, "outside its membership windows");
}

#[test]
fn a_room_message_delivered_in_the_lobby_is_a_leak() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut lobby = rec.client("v1");
        lobby.connected_at(0, 0, None);
        lobby.delivered_at(380, 1, &id("a", 3));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Leak, 1)]);
    let leak = only(&v, AnomalyKind::Leak);
    assert_eq!(
        (leak.client.as_deref(), leak.message_id.as_deref()),
        (Some("v1"), Some("a3"))
    );
}

#[test]
fn an_acknowledged_room_message_nobody_saw_is_lost_to_members_throughout() {
    let h = history(|rec| {
        let mut p = rec.publisher("owner");
        acked_in(&mut p, "a", 1..=11);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", 1..=10);
        // Joined after a11 was invoked: not blamed for a message with no seq.
        let mut late = rec.client("late");
        late.rooms_connected_at(1150, &[("a", 10)], &[]);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 1)]);
    let lost = only(&v, AnomalyKind::Lost);
    assert_eq!(
        (lost.client.as_deref(), lost.room.as_deref(), lost.seqs),
        (Some("bob"), Some("a"), None)
    );
    assert_eq!(v.client("late").map(|c| c.expected), Some(0));
}

#[test]
fn room_messages_rows_are_judged_per_room() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut rows = all_rows();
        rows.retain(|&r| r != ("b", 7));
        rows.push(("a", 2));
        stored_rows(rec, &rows);
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::LostInPostgres, 1),
            (AnomalyKind::StoredGap, 1),
            (AnomalyKind::StoredOutOfOrder, 1),
            (AnomalyKind::StoredDuplicate, 1),
        ],
    );
    about(only(&v, AnomalyKind::LostInPostgres), None, "b", (7, 7));
    about(only(&v, AnomalyKind::StoredGap), None, "b", (7, 7));
    about(only(&v, AnomalyKind::StoredDuplicate), None, "a", (2, 2));
    let s = v.stored_rooms.as_ref().expect("room rows judged");
    assert_eq!((s.rows, s.lost, s.duplicated, s.gaps), (20, 1, 1, 1));
    assert_eq!(v.lost, ["b7"]);
}

#[test]
fn two_members_disagreeing_on_a_room_seq_is_a_seq_conflict() {
    let h = history(|rec| {
        published(rec);
        alice(rec);
        let mut bob = member(rec, "bob", &[("a", 0)]);
        receive_in(&mut bob, "a", 1..=4);
        bob.room_delivered_at(580, "a", 5, &id("a", 6));
        receive_in(&mut bob, "a", 6..=10);
    });
    let v = h.check();
    // bob: a6 twice (under 5 and 6), a5 never; alice disagrees on seq 5.
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::SeqConflict, 1),
            (AnomalyKind::Lost, 1),
            (AnomalyKind::DuplicatedAfterDedupe, 1),
        ],
    );
    about(only(&v, AnomalyKind::SeqConflict), Some("bob"), "a", (5, 5));
    assert_eq!(v.lost, ["a5"]);
}
