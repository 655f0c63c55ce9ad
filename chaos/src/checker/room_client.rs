//! Judging one client's rooms (protocol v2): its room deliveries walked in
//! arrival order (leaks, duplicates in transit, order violations per room,
//! duplicates after dedupe), then what it received against its membership
//! windows ([`RoomCoverage`]): lost, gaps, ok, unexpected, recovered. The
//! counts go into the client's [`ClientCounts`] beside its lobby counts,
//! and into each room's counts.

use std::collections::{HashMap, HashSet};

use super::judgement::Judgement;
use super::messages::Status;
use super::room_coverage::{RoomCoverage, RoomCoverageBuilder};
use super::verdict::{AnomalyKind, ClientCounts};
use crate::history::{ClientHistory, MessageIx, RoomDelivery, RoomEvent, RoomEventKind, RoomIx};

/// One room as the client received it.
#[derive(Debug, Default)]
struct Received {
    /// Distinct seqs received inside a membership, in arrival order.
    seqs: Vec<u64>,
    seen: HashSet<u64>,
    highest: Option<u64>,
}

/// The client's walk so far.
#[derive(Debug, Default)]
struct Walk {
    rooms: HashMap<RoomIx, Received>,
    /// Per message: the `(room, seq)` it was first received under.
    under: HashMap<MessageIx, (RoomIx, u64)>,
}

/// Judges one client's rooms into `counts`.
pub(super) fn check_client_rooms(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    counts: &mut ClientCounts,
) {
    if client.room_events.is_empty() && client.room_deliveries.is_empty() {
        return;
    }
    counts.deliveries += client.room_deliveries.len() as u64;
    for d in &client.room_deliveries {
        j.room_counts[d.room.index()].deliveries += 1;
    }
    let (mut walk, coverage) = walk_deliveries(j, client, counts);
    drop_leaks_outside_windows(j, client, &coverage, &mut walk, counts);
    for &room in coverage.rooms.keys() {
        j.room_counts[room.index()].members += 1;
    }
    tally_received(j, client, &walk, counts);
    tally_owed(j, client, &coverage, &walk, counts);
}

/// Walks room deliveries and room events in the order they happened.
fn walk_deliveries(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    counts: &mut ClientCounts,
) -> (Walk, RoomCoverage) {
    let mut coverage = RoomCoverageBuilder::new(j.history.drained_at_us());
    let mut events = client.room_events.iter().peekable();
    let mut walk = Walk::default();
    for (i, d) in client.room_deliveries.iter().enumerate() {
        while let Some(e) = events.next_if(|e| e.deliveries_before <= i as u64) {
            coverage.on_event(e.at_us, &e.kind);
        }
        if !coverage.on_delivery(d.room, d.seq) {
            leak(j, client, d, counts, "not a member then");
            continue;
        }
        let received = walk.rooms.entry(d.room).or_default();
        if !received.seen.insert(d.seq) {
            counts.duplicated_in_transit += 1;
            j.room_counts[d.room.index()].duplicated_in_transit += 1;
            j.report_room_delivery(AnomalyKind::DuplicatedInTransit, client, d, String::new());
            continue;
        }
        received.seqs.push(d.seq);
        if let Some(high) = received.highest.filter(|&h| d.seq < h) {
            if !is_replay(events.peek().copied(), d) {
                counts.order_violations += 1;
                j.room_counts[d.room.index()].order_violations += 1;
                let detail = format!("after seq {high}");
                j.report_room_delivery(AnomalyKind::OrderViolation, client, d, detail);
            }
        }
        received.highest = received.highest.max(Some(d.seq));
        if let Some(&(room, seq)) = walk.under.get(&d.message) {
            counts.duplicated_after_dedupe += 1;
            j.room_counts[d.room.index()].duplicated_after_dedupe += 1;
            let detail = format!("first under {} seq {seq}", j.history.room(room));
            j.report_room_delivery(AnomalyKind::DuplicatedAfterDedupe, client, d, detail);
        } else {
            walk.under.insert(d.message, (d.room, d.seq));
        }
    }
    for e in events {
        coverage.on_event(e.at_us, &e.kind);
    }
    let facts = &j.rooms;
    (walk, coverage.finish(|room| facts.last_seq(room)))
}

/// A delivery below the highest seen is part of a resume replay when the
/// next room event is the `resume_done` of its room that ends it and the
/// seq is in its range.
fn is_replay(next_event: Option<&RoomEvent>, d: &RoomDelivery) -> bool {
    matches!(
        next_event.map(|e| &e.kind),
        Some(&RoomEventKind::Resumed { room, from, head })
            if room == d.room && from < d.seq && d.seq <= head
    )
}

fn leak(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    d: &RoomDelivery,
    counts: &mut ClientCounts,
    why: &str,
) {
    counts.leaks += 1;
    j.room_counts[d.room.index()].leaks += 1;
    j.report_room_delivery(AnomalyKind::Leak, client, d, why.to_owned());
}

/// Deliveries made inside a live membership but of a seq its windows do not
/// hold (before the join point, after the leave point): leaks, and not
/// received for what the client is owed.
fn drop_leaks_outside_windows(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    coverage: &RoomCoverage,
    walk: &mut Walk,
    counts: &mut ClientCounts,
) {
    let mut leaked = HashSet::new();
    for d in &client.room_deliveries {
        let accepted = walk
            .rooms
            .get(&d.room)
            .is_some_and(|r| r.seen.contains(&d.seq));
        if accepted && !coverage.covers(d.room, d.seq) && leaked.insert((d.room, d.seq)) {
            leak(j, client, d, counts, "outside its membership windows");
        }
    }
    walk.under.retain(|_, at| !leaked.contains(at));
    for (room, received) in &mut walk.rooms {
        received.seqs.retain(|&s| !leaked.contains(&(*room, s)));
    }
}

/// Per message received: ok, unexpected or recovered.
fn tally_received(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    walk: &Walk,
    counts: &mut ClientCounts,
) {
    for (&m, &(room, seq)) in &walk.under {
        match j.messages.status[m.index()] {
            Status::NotAttempted => {
                counts.unexpected += 1;
                j.report_room_message(AnomalyKind::Unexpected, Some(client), room, Some(seq), m);
                continue;
            }
            Status::Failed(_) => counts.recovered_fail += 1,
            Status::Unknown => counts.recovered_unknown += 1,
            Status::Acknowledged => {}
        }
        counts.ok += 1;
    }
}

/// Per room window: the acknowledged messages owed (lost when never
/// received), and the runs of seqs never received (gaps).
fn tally_owed(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    coverage: &RoomCoverage,
    walk: &Walk,
    counts: &mut ClientCounts,
) {
    let mut owed: HashSet<MessageIx> = HashSet::new();
    let mut rooms: Vec<_> = coverage.rooms.iter().collect();
    rooms.sort_unstable_by_key(|(room, _)| **room);
    for (&room, windows) in rooms {
        let mut received = walk.rooms.get(&room).map_or(Vec::new(), |r| r.seqs.clone());
        received.sort_unstable();
        for w in &windows.windows {
            for seq in w.after + 1..=w.through {
                let Some(m) = j.rooms.at_seq(room, seq) else {
                    continue;
                };
                if j.messages.status[m.index()] == Status::Acknowledged && owed.insert(m) {
                    owe(j, client, room, Some(seq), m, walk, counts);
                }
            }
            for (first, last) in w.missing_runs(&received) {
                counts.gaps += 1;
                counts.gap_seqs += last - first + 1;
                j.room_counts[room.index()].gaps += 1;
                j.report_room_gap(client, room, first, last);
            }
        }
        let unsequenced: Vec<MessageIx> = j.rooms.unsequenced(room).to_vec();
        for m in unsequenced {
            let invoked = j.messages.first_invoked_at_us[m.index()];
            if coverage.covers_unsequenced(room, invoked) && owed.insert(m) {
                owe(j, client, room, None, m, walk, counts);
            }
        }
    }
}

/// The client was owed acknowledged message `m` of `room`.
fn owe(
    j: &mut Judgement<'_>,
    client: &ClientHistory,
    room: RoomIx,
    seq: Option<u64>,
    m: MessageIx,
    walk: &Walk,
    counts: &mut ClientCounts,
) {
    counts.expected += 1;
    j.room_counts[room.index()].expected += 1;
    j.owed[m.index()] = true;
    if !walk.under.contains_key(&m) {
        counts.lost += 1;
        j.room_counts[room.index()].lost += 1;
        j.lost[m.index()] = true;
        j.report_room_message(AnomalyKind::Lost, Some(client), room, seq, m);
    }
}
