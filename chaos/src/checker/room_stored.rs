//! Judging PostgreSQL's `room_messages` rows after the run drained, per
//! room as `stored.rs` judges the lobby's: every acknowledged room message
//! stored exactly once, nothing stored that nobody attempted, each room's
//! rows in seq order with one message per seq (the one clients received),
//! and no seq of a room missing between its lowest and highest known.

use std::collections::{HashMap, HashSet};

use super::judgement::Judgement;
use super::messages::Status;
use super::seq_table::SeqWindow;
use super::verdict::{AnomalyKind, StoredCounts};
use crate::history::{RoomIx, StoredRoomRow};

/// Judges the room rows, given in each room's insertion order.
pub(super) fn check_stored_rooms(j: &mut Judgement<'_>, rows: &[StoredRoomRow]) -> StoredCounts {
    let mut counts = StoredCounts {
        rows: rows.len() as u64,
        ..StoredCounts::default()
    };
    let copies = walk_rows(j, rows, &mut counts);
    for m in j.messages.all() {
        if !j.messages.in_room[m.index()] {
            continue;
        }
        let stored = copies.contains_key(&m);
        match j.messages.status[m.index()] {
            Status::Acknowledged if !stored => {
                counts.lost += 1;
                j.lost[m.index()] = true;
                j.report_room_message_unplaced(AnomalyKind::LostInPostgres, m);
            }
            Status::NotAttempted if stored => {
                counts.unexpected += 1;
                j.report_room_message_unplaced(AnomalyKind::UnexpectedInPostgres, m);
            }
            _ => {}
        }
    }
    find_gaps(j, rows, &mut counts);
    counts
}

/// Order, seq conflicts, duplicates and mismatches, row by row; returns the
/// number of rows of each message.
fn walk_rows(
    j: &mut Judgement<'_>,
    rows: &[StoredRoomRow],
    counts: &mut StoredCounts,
) -> HashMap<crate::history::MessageIx, u32> {
    let mut copies = HashMap::new();
    let mut by_seq = HashMap::new();
    let mut highest: HashMap<RoomIx, u64> = HashMap::new();
    let mut conflicted = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let high = highest.entry(row.room).or_insert(row.seq);
        if row.seq < *high {
            counts.out_of_order += 1;
            let detail = format!("row {i}, after seq {high}");
            j.report_room_row(AnomalyKind::StoredOutOfOrder, row, detail);
        }
        *high = (*high).max(row.seq);
        match by_seq.get(&(row.room, row.seq)) {
            None => {
                by_seq.insert((row.room, row.seq), row.message);
                let seen = j.rooms.at_seq(row.room, row.seq);
                let conflicted_at_clients = j.rooms.is_conflicted(row.room, row.seq);
                if seen.is_some_and(|m| m != row.message) || conflicted_at_clients {
                    counts.mismatched += 1;
                    let seen = seen.map_or("", |m| j.history.message_id(m));
                    let detail = format!("clients received {seen}");
                    j.report_room_row(AnomalyKind::StoredMismatch, row, detail);
                }
            }
            Some(&first) if first != row.message && conflicted.insert((row.room, row.seq)) => {
                counts.seq_conflicts += 1;
                let detail = format!("row {i}; also stored as {}", j.history.message_id(first));
                j.report_room_row(AnomalyKind::StoredSeqConflict, row, detail);
            }
            Some(_) => {}
        }
        let n = copies.entry(row.message).or_insert(0u32);
        *n += 1;
        if *n > 1 {
            counts.duplicated += 1;
            let detail = format!("row {i}, copy {n}");
            j.report_room_row(AnomalyKind::StoredDuplicate, row, detail);
        }
    }
    copies
}

/// Per room, known seqs (from the lowest to the highest received or stored)
/// with no row.
fn find_gaps(j: &mut Judgement<'_>, rows: &[StoredRoomRow], counts: &mut StoredCounts) {
    let mut present: HashMap<RoomIx, Vec<u64>> = HashMap::new();
    for row in rows {
        present.entry(row.room).or_default().push(row.seq);
    }
    for room in (0..j.history.rooms().len() as u32).map(RoomIx) {
        let Some((lowest, highest)) = j.rooms.range(room) else {
            continue;
        };
        let seqs = present.remove(&room).unwrap_or_default();
        for (first, last) in SeqWindow::missing_between(lowest, highest, seqs) {
            counts.gaps += 1;
            counts.gap_seqs += last - first + 1;
            j.report_stored_room_gap(room, first, last);
        }
    }
}
