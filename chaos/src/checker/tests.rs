//! Hand-built histories, each holding exactly the anomalies it names.
//!
//! The fixture: message `m{i}` is invoked at `100·i` µs, answered 50 µs
//! later, and (when sequenced) gets seq `i` and reaches clients at `100·i +
//! 80` µs.

use std::collections::BTreeMap;

use super::*;
use crate::history::{ClientLog, PublishLog, Recording};

fn id(i: u64) -> String {
    format!("m{i}")
}

fn invoked(i: u64) -> u64 {
    100 * i
}

fn acked(p: &mut PublishLog, seqs: impl IntoIterator<Item = u64>) {
    for i in seqs {
        let op = p.invoke_at(invoked(i), &id(i));
        p.ok_at(op, invoked(i) + 50);
    }
}

fn failed(p: &mut PublishLog, i: u64) {
    let op = p.invoke_at(invoked(i), &id(i));
    p.fail_at(op, invoked(i) + 50, "broker_unavailable");
}

fn unknown(p: &mut PublishLog, i: u64) {
    let op = p.invoke_at(invoked(i), &id(i));
    p.unknown_at(op, invoked(i) + 50);
}

/// Live deliveries of `m{s}` under seq `s`.
fn receive(c: &mut ClientLog, seqs: impl IntoIterator<Item = u64>) {
    for s in seqs {
        c.delivered_at(invoked(s) + 80, s, &id(s));
    }
}

/// A client connected from time 0 (head 0) that receives `seqs`.
fn steady(rec: &Recording, name: &str, seqs: impl IntoIterator<Item = u64>) {
    let mut c = rec.client(name);
    c.connected_at(0, 0, None);
    receive(&mut c, seqs);
}

/// A client connected from time 0 that received seqs 1..=4 and then lost
/// its connection.
fn dropped_after_seq_4(rec: &Recording, name: &str) -> ClientLog {
    let mut c = rec.client(name);
    c.connected_at(0, 0, None);
    receive(&mut c, 1..=4);
    c.disconnected_at(490, "chaos");
    c
}

/// Rows `(s, m{s})`.
fn rows(seqs: impl IntoIterator<Item = u64>) -> Vec<(u64, String)> {
    seqs.into_iter().map(|s| (s, id(s))).collect()
}

fn store(rec: &Recording, rows: &[(u64, String)]) {
    rec.stored(rows.iter().map(|(s, m)| (*s, m.as_str())));
}

/// The history `build` records (its logs drop when it returns).
fn history(build: impl FnOnce(&Recording)) -> History {
    let rec = Recording::start();
    build(&rec);
    rec.finish().expect("every log handed back")
}

/// Ten acknowledged messages, alice receiving them all, PostgreSQL holding
/// `stored`.
fn stored_as(stored: &[(u64, String)]) -> Verdict {
    history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", 1..=10);
        store(rec, stored);
    })
    .check()
}

/// The anomaly counts are exactly `expected`.
#[track_caller]
fn assert_anomalies(v: &Verdict, expected: &[(AnomalyKind, u64)]) {
    let expected: BTreeMap<AnomalyKind, u64> = expected.iter().copied().collect();
    assert_eq!(v.anomaly_counts, expected, "{v}");
    let valid = expected.keys().all(|k| !k.invalidates());
    assert_eq!(v.valid, valid, "{v}");
}

fn only(v: &Verdict, kind: AnomalyKind) -> &Anomaly {
    let mut of_kind = v.of_kind(kind);
    let a = of_kind.next().expect("one anomaly of the kind");
    assert!(of_kind.next().is_none(), "{v}");
    a
}

#[test]
fn a_clean_history_with_resumes_is_valid_with_zeros() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", 1..=10);
        let mut bob = dropped_after_seq_4(rec, "bob");
        // m5..m7 are acknowledged while bob is away; the resume brings them.
        bob.connected_at(760, 7, Some(4));
        for s in 5..=7 {
            bob.delivered_at(770, s, &id(s));
        }
        bob.resumed_at(780, 4, 7);
        receive(&mut bob, 8..=10);
        // A resume command in the middle of a connection: replays seen seqs.
        let mut carol = rec.client("carol");
        carol.connected_at(0, 0, None);
        receive(&mut carol, 1..=6);
        receive(&mut carol, 6..=6);
        carol.resumed_at(700, 6, 6);
        receive(&mut carol, 7..=10);
        store(rec, &rows(1..=10));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedInTransit, 1)]);
    assert!(v.lost.is_empty() && v.unexpected.is_empty());
    for c in &v.clients {
        assert_eq!((c.expected, c.ok, c.lost, c.gaps), (10, 10, 0, 0), "{v}");
    }
    let t = &v.totals;
    assert_eq!(
        (t.attempts, t.attempted, t.acknowledged, t.ok),
        (10, 10, 10, 10)
    );
    assert_eq!((t.deliveries, t.duplicated_in_transit), (31, 1));
    assert_eq!(v.stored.as_ref().map(|s| s.rows), Some(10));
    assert!(v.to_string().starts_with("history check: VALID"), "{v}");
}

#[test]
fn one_lost_message_is_flagged_with_its_gap() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", 1..=10);
        steady(rec, "bob", (1..=10).filter(|&s| s != 5));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 1), (AnomalyKind::Gap, 1)]);
    assert_eq!(v.lost, ["m5"]);
    let lost = only(&v, AnomalyKind::Lost);
    assert_eq!(lost.client.as_deref(), Some("bob"));
    assert_eq!(lost.message_id.as_deref(), Some("m5"));
    assert_eq!(lost.seqs, Some(SeqRange { first: 5, last: 5 }));
    assert_eq!(lost.invoked_at_us, Some(500));
    let bob = v.client("bob").expect("bob");
    assert_eq!((bob.expected, bob.ok, bob.lost, bob.gaps), (10, 9, 1, 1));
    assert_eq!((v.totals.lost, v.totals.lost_deliveries), (1, 1));
    assert!(v.to_string().contains("client bob message m5 seq 5"), "{v}");
}

#[test]
fn an_acknowledged_message_never_sequenced_is_lost_to_clients_connected_throughout() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=11);
        steady(rec, "alice", 1..=10);
        // Joined after m11 was invoked: not blamed for a message with no seq.
        let mut late = rec.client("late");
        late.connected_at(1150, 10, None);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 1)]);
    assert_eq!(only(&v, AnomalyKind::Lost).client.as_deref(), Some("alice"));
    assert_eq!(v.client("late").map(|c| c.expected), Some(0));
}

#[test]
fn an_acknowledged_message_observed_nowhere_is_lost_even_if_no_client_was_owed_it() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=3);
        let mut leaver = rec.client("leaver");
        leaver.connected_at(0, 0, None);
        receive(&mut leaver, 1..=2);
        leaver.disconnected_at(290, "logout");
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 1)]);
    assert_eq!(v.lost, ["m3"]);
    assert_eq!(only(&v, AnomalyKind::Lost).client, None);
}

#[test]
fn a_message_nobody_attempted_is_unexpected() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        let mut alice = rec.client("alice");
        alice.connected_at(0, 0, None);
        receive(&mut alice, 1..=10);
        alice.delivered_at(1200, 11, "ghost");
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Unexpected, 1)]);
    assert_eq!(v.unexpected, ["ghost"]);
    let a = only(&v, AnomalyKind::Unexpected);
    assert_eq!(
        (a.client.as_deref(), a.seqs.map(|s| s.first)),
        (Some("alice"), Some(11))
    );
    assert_eq!((v.totals.unexpected, v.totals.ok), (1, 10));
}

#[test]
fn a_seq_received_twice_is_a_duplicate_in_transit_and_allowed() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", (1..=6).chain(6..=10));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedInTransit, 1)]);
    let a = only(&v, AnomalyKind::DuplicatedInTransit);
    assert_eq!(
        (a.message_id.as_deref(), a.seqs.map(|s| s.first)),
        (Some("m6"), Some(6))
    );
}

#[test]
fn a_message_under_two_seqs_is_a_duplicate_after_dedupe_and_allowed() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        let mut alice = rec.client("alice");
        alice.connected_at(0, 0, None);
        receive(&mut alice, 1..=10);
        alice.delivered_at(1100, 11, &id(3));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedAfterDedupe, 1)]);
    let a = only(&v, AnomalyKind::DuplicatedAfterDedupe);
    assert_eq!(
        (a.message_id.as_deref(), a.seqs.map(|s| s.first)),
        (Some("m3"), Some(11))
    );
    assert_eq!(a.detail, "first under seq 3");
    assert_eq!(v.totals.duplicated_after_dedupe, 1);
}

#[test]
fn a_failed_publish_that_arrives_is_recovered() {
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, 1..=10);
        failed(&mut p, 11);
        steady(rec, "alice", 1..=11);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::RecoveredFail, 1)]);
    assert_eq!(
        only(&v, AnomalyKind::RecoveredFail).detail,
        "failed with broker_unavailable"
    );
    assert_eq!((v.totals.failed, v.totals.recovered_fail), (1, 1));
    assert_eq!(v.client("alice").map(|c| c.recovered_fail), Some(1));
}

#[test]
fn an_unknown_publish_that_arrives_is_recovered() {
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, 1..=10);
        unknown(&mut p, 11);
        // Never answered at all: unknown too, and never sequenced.
        p.invoke_at(invoked(12), &id(12));
        steady(rec, "alice", 1..=11);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::RecoveredUnknown, 1)]);
    assert_eq!((v.totals.unknown, v.totals.recovered_unknown), (2, 1));
    assert_eq!(v.client("alice").map(|c| c.recovered_unknown), Some(1));
}

#[test]
fn a_seq_skipped_for_good_is_a_gap() {
    // m5's publish timed out; bob got it, alice never did.
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, (1..=10).filter(|&i| i != 5));
        unknown(&mut p, 5);
        steady(rec, "bob", 1..=10);
        steady(rec, "alice", (1..=10).filter(|&s| s != 5));
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[(AnomalyKind::Gap, 1), (AnomalyKind::RecoveredUnknown, 1)],
    );
    let gap = only(&v, AnomalyKind::Gap);
    assert_eq!(gap.client.as_deref(), Some("alice"));
    assert_eq!(
        (gap.seqs, gap.message_id.as_deref()),
        (Some(SeqRange { first: 5, last: 5 }), Some("m5"))
    );
    assert!(v.lost.is_empty());
}

#[test]
fn resuming_from_beyond_what_it_saw_is_a_gap() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "bob", 1..=10);
        let mut alice = dropped_after_seq_4(rec, "alice");
        alice.connected_at(860, 8, Some(6));
        receive(&mut alice, 7..=8);
        alice.resumed_at(870, 6, 8);
        receive(&mut alice, 9..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 2), (AnomalyKind::Gap, 1)]);
    assert_eq!(
        only(&v, AnomalyKind::Gap).seqs,
        Some(SeqRange { first: 5, last: 6 })
    );
    assert_eq!(v.lost, ["m5", "m6"]);
}

#[test]
fn a_refused_resume_leaves_what_it_should_have_replayed_as_a_gap() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "bob", 1..=10);
        let mut alice = dropped_after_seq_4(rec, "alice");
        // resume_unavailable: no replay, no resume_done, live after head 7.
        alice.connected_at(760, 7, Some(4));
        receive(&mut alice, 8..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 3), (AnomalyKind::Gap, 1)]);
    assert_eq!(
        only(&v, AnomalyKind::Gap).seqs,
        Some(SeqRange { first: 5, last: 7 })
    );
}

#[test]
fn a_lower_seq_filling_a_hole_outside_a_replay_is_an_order_violation() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", [1, 2, 4, 3, 5, 6, 7, 8, 9, 10]);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::OrderViolation, 1)]);
    let a = only(&v, AnomalyKind::OrderViolation);
    assert_eq!(
        (a.seqs.map(|s| s.first), a.detail.as_str()),
        (Some(3), "after seq 4")
    );
}

#[test]
fn a_hole_filled_by_a_resume_replay_is_in_order() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        let mut alice = rec.client("alice");
        alice.connected_at(0, 0, None);
        receive(&mut alice, [1, 2, 4]);
        receive(&mut alice, [3, 4]);
        alice.resumed_at(500, 2, 4);
        receive(&mut alice, 5..=10);
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::DuplicatedInTransit, 1)]);
}

#[test]
fn clients_that_disagree_on_a_seq_are_a_seq_conflict() {
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, 1..=10);
        failed(&mut p, 11);
        steady(rec, "alice", 1..=10);
        let mut bob = rec.client("bob");
        bob.connected_at(0, 0, None);
        receive(&mut bob, 1..=4);
        bob.delivered_at(580, 5, &id(11));
        receive(&mut bob, 6..=10);
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::SeqConflict, 1),
            (AnomalyKind::Lost, 1),
            (AnomalyKind::RecoveredFail, 1),
        ],
    );
    assert_eq!(only(&v, AnomalyKind::Lost).client.as_deref(), Some("bob"));
    assert_eq!(v.totals.seq_conflicts, 1);
}

#[test]
fn a_mid_run_joiner_and_a_leaver_are_not_blamed_for_what_they_could_not_see() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", 1..=10);
        // Joined once seq 5 existed: owed 6..=10 (m6 was invoked before).
        let mut joiner = rec.client("joiner");
        joiner.connected_at(590, 5, None);
        receive(&mut joiner, 6..=10);
        // Left for good after seq 3, before m4..m10 were acknowledged.
        let mut leaver = rec.client("leaver");
        leaver.connected_at(0, 0, None);
        receive(&mut leaver, 1..=3);
        leaver.disconnected_at(390, "logout");
        // Came back without resuming: owed 1..=2, then after head 8.
        let mut fresh = rec.client("fresh");
        fresh.connected_at(0, 0, None);
        receive(&mut fresh, 1..=2);
        fresh.disconnected_at(250, "chaos");
        fresh.connected_at(850, 8, None);
        receive(&mut fresh, 9..=10);
        store(rec, &rows(1..=10));
    });
    let v = h.check();
    assert_anomalies(&v, &[]);
    let expected = |name| v.client(name).map(|c| c.expected);
    assert_eq!(
        [expected("joiner"), expected("leaver"), expected("fresh")],
        [Some(5), Some(3), Some(4)]
    );
}

#[test]
fn a_disconnect_after_the_drain_is_teardown_and_a_stuck_client_is_blamed() {
    let stuck_client = |drained: bool| {
        history(|rec| {
            acked(&mut rec.publisher("p"), 1..=10);
            steady(rec, "alice", 1..=10);
            let mut stuck = rec.client("stuck");
            stuck.connected_at(0, 0, None);
            receive(&mut stuck, 1..=5);
            if drained {
                rec.drained_at(5_000);
            }
            stuck.disconnected_at(5_001, "shutdown");
        })
    };
    let v = stuck_client(true).check();
    assert_anomalies(&v, &[(AnomalyKind::Lost, 5), (AnomalyKind::Gap, 1)]);
    assert_eq!(
        only(&v, AnomalyKind::Gap).seqs,
        Some(SeqRange { first: 6, last: 10 })
    );
    // Unmarked, the same disconnect is the client leaving after seq 5.
    let v = stuck_client(false).check();
    assert_anomalies(&v, &[]);
    assert_eq!(v.client("stuck").map(|c| c.expected), Some(5));
}

#[test]
fn postgres_rows_out_of_seq_order() {
    let v = stored_as(&rows([1, 3, 2, 4, 5, 6, 7, 8, 9, 10]));
    assert_anomalies(&v, &[(AnomalyKind::StoredOutOfOrder, 1)]);
    let a = only(&v, AnomalyKind::StoredOutOfOrder);
    assert_eq!(
        (a.seqs.map(|s| s.first), a.detail.as_str()),
        (Some(2), "row 2, after seq 3")
    );
}

#[test]
fn postgres_seq_holding_two_message_ids() {
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, 1..=10);
        failed(&mut p, 11);
        steady(rec, "alice", 1..=10);
        let mut stored = rows(1..=10);
        stored.insert(5, (5, id(11)));
        store(rec, &stored);
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::StoredSeqConflict, 1),
            (AnomalyKind::RecoveredFail, 1),
        ],
    );
    assert_eq!(
        only(&v, AnomalyKind::StoredSeqConflict)
            .message_id
            .as_deref(),
        Some("m11")
    );
}

#[test]
fn postgres_acknowledged_message_stored_twice() {
    let v = stored_as(&rows([1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10]));
    assert_anomalies(&v, &[(AnomalyKind::StoredDuplicate, 1)]);
    assert_eq!(v.stored.as_ref().map(|s| s.duplicated), Some(1));
}

#[test]
fn postgres_seq_whose_message_differs_from_what_clients_received() {
    // m4 and m12 both timed out; clients got m4 under seq 4, PostgreSQL m12.
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, (1..=10).filter(|&i| i != 4));
        unknown(&mut p, 4);
        unknown(&mut p, 12);
        steady(rec, "alice", 1..=10);
        let mut stored = rows(1..=10);
        stored[3] = (4, id(12));
        store(rec, &stored);
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::StoredMismatch, 1),
            (AnomalyKind::RecoveredUnknown, 2),
        ],
    );
    let a = only(&v, AnomalyKind::StoredMismatch);
    assert_eq!(
        (a.message_id.as_deref(), a.detail.as_str()),
        (Some("m12"), "clients received m4")
    );
}

#[test]
fn postgres_missing_an_acknowledged_message() {
    // Sequenced after the only client left, so only PostgreSQL could show it.
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=3);
        let mut leaver = rec.client("leaver");
        leaver.connected_at(0, 0, None);
        receive(&mut leaver, 1..=2);
        leaver.disconnected_at(290, "logout");
        store(rec, &rows(1..=2));
    });
    let v = h.check();
    assert_anomalies(&v, &[(AnomalyKind::LostInPostgres, 1)]);
    assert_eq!(v.lost, ["m3"]);
    assert_eq!(v.stored.as_ref().map(|s| s.lost), Some(1));
}

#[test]
fn postgres_missing_a_row_others_saw_is_lost_there_and_a_gap() {
    let v = stored_as(&rows((1..=10).filter(|&s| s != 7)));
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::LostInPostgres, 1),
            (AnomalyKind::StoredGap, 1),
        ],
    );
    assert_eq!(
        only(&v, AnomalyKind::StoredGap).message_id.as_deref(),
        Some("m7")
    );
}

#[test]
fn postgres_gap_at_a_message_of_unknown_outcome() {
    let h = history(|rec| {
        let mut p = rec.publisher("p");
        acked(&mut p, (1..=10).filter(|&i| i != 5));
        unknown(&mut p, 5);
        steady(rec, "alice", 1..=10);
        store(rec, &rows((1..=10).filter(|&s| s != 5)));
    });
    let v = h.check();
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::StoredGap, 1),
            (AnomalyKind::RecoveredUnknown, 1),
        ],
    );
    assert!(v.lost.is_empty());
}

#[test]
fn postgres_holding_a_message_nobody_attempted() {
    let mut stored = rows(1..=10);
    stored.push((11, "ghost".to_owned()));
    let v = stored_as(&stored);
    // Seq 11 exists, so alice, connected to the end, missed it too.
    assert_anomalies(
        &v,
        &[
            (AnomalyKind::UnexpectedInPostgres, 1),
            (AnomalyKind::Gap, 1),
        ],
    );
    assert_eq!(v.unexpected, ["ghost"]);
}

#[test]
fn every_anomaly_is_counted_and_at_most_the_cap_of_each_kind_kept() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=10);
        steady(rec, "alice", (1..=10).flat_map(|s| [s, s]));
        steady(rec, "bob", 1..=9);
        store(rec, &rows(1..=10));
    });
    let v = Checker::default().anomalies_per_kind(3).check(&h);
    assert_eq!(v.count(AnomalyKind::DuplicatedInTransit), 10);
    assert_eq!(v.of_kind(AnomalyKind::DuplicatedInTransit).count(), 3);
    assert_eq!(
        (v.count(AnomalyKind::Lost), v.count(AnomalyKind::Gap)),
        (1, 1)
    );
    let text = v.to_string();
    assert!(
        text.starts_with("history check: INVALID — lost 1"),
        "{text}"
    );
    assert!(text.contains("anomalies: 5 listed of 12"), "{text}");
}

#[test]
fn a_far_stray_seq_costs_no_memory_and_is_judged() {
    let h = history(|rec| {
        acked(&mut rec.publisher("p"), 1..=3);
        let mut alice = rec.client("alice");
        alice.connected_at(0, 0, None);
        receive(&mut alice, 1..=3);
        alice.delivered_at(400, u64::MAX, "ghost");
    });
    let v = h.check();
    // Seqs are gap-free, so alice, connected to the end, missed 4..MAX-1.
    assert_anomalies(&v, &[(AnomalyKind::Unexpected, 1), (AnomalyKind::Gap, 1)]);
    let gap = only(&v, AnomalyKind::Gap).seqs;
    assert_eq!(
        gap,
        Some(SeqRange {
            first: 4,
            last: u64::MAX - 1
        })
    );
}

mod generated;
mod room_model;
mod rooms;

/// A lobby-only history saved in the first format (`rtmc-history/1`,
/// written before rooms existed), and the verdict that code gave it.
const LOBBY_HISTORY_V1: &str = include_str!("../../tests/fixtures/lobby-history-v1.json");
const LOBBY_VERDICT_V1: &str = include_str!("../../tests/fixtures/lobby-verdict-v1.json");

#[test]
fn a_lobby_history_of_the_first_format_loads_and_judges_the_same() {
    let history = History::read_json(LOBBY_HISTORY_V1.as_bytes()).expect("loads");
    let then: Verdict = serde_json::from_str(LOBBY_VERDICT_V1).expect("the verdict of then");
    let now = history.check();
    assert_eq!(now, then, "{now}");
    assert!(
        !then.valid && then.totals.lost == 2,
        "a fixture with anomalies"
    );
    assert_eq!(
        now.to_string().lines().next(),
        then.to_string().lines().next()
    );
    // Written again, it is the same document: the rooms' fields are absent
    // when empty, and it keeps the format it was read in.
    let mut json = Vec::new();
    history.write_json(&mut json).expect("written");
    assert_eq!(
        String::from_utf8(json).expect("utf-8"),
        LOBBY_HISTORY_V1.trim_end()
    );
}
