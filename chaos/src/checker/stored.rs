//! Judging PostgreSQL's rows after the run drained: every acknowledged
//! message stored exactly once, nothing stored that nobody attempted, rows
//! in seq order, one message per seq and the same one clients received,
//! and every known seq present.

use std::collections::HashSet;

use super::judgement::Judgement;
use super::messages::Status;
use super::seq_table::{SeqTable, SeqWindow};
use super::verdict::{Anomaly, AnomalyKind, StoredCounts};
use crate::history::{History, StoredRow};

/// Judges the stored rows, given in the table's insertion order.
pub(super) fn check_stored(j: &mut Judgement<'_>, rows: &[StoredRow]) -> StoredCounts {
    let mut counts = StoredCounts {
        rows: rows.len() as u64,
        ..StoredCounts::default()
    };
    let copies = walk_rows(j, rows, &mut counts);
    for m in j.messages.all() {
        if j.messages.in_room[m.index()] {
            continue;
        }
        let stored = copies[m.index()] > 0;
        match j.messages.status[m.index()] {
            Status::Acknowledged if !stored => {
                counts.lost += 1;
                j.lost[m.index()] = true;
                j.report_message(AnomalyKind::LostInPostgres, None, m, "");
            }
            Status::NotAttempted if stored => {
                counts.unexpected += 1;
                j.report_message(AnomalyKind::UnexpectedInPostgres, None, m, "");
            }
            _ => {}
        }
    }
    find_gaps(j, rows, &mut counts);
    counts
}

/// Order, seq conflicts, duplicates and mismatches, row by row; returns the
/// number of rows of each message.
fn walk_rows(j: &mut Judgement<'_>, rows: &[StoredRow], counts: &mut StoredCounts) -> Vec<u32> {
    let history = j.history;
    let mut copies = vec![0u32; history.message_ids().len()];
    let mut by_seq = SeqTable::for_range(j.messages.seq_range, rows.len());
    let mut conflicted = HashSet::new();
    let mut highest: Option<u64> = None;
    for (i, row) in rows.iter().enumerate() {
        if let Some(high) = highest.filter(|&h| row.seq < h) {
            counts.out_of_order += 1;
            let detail = format!("row {i}, after seq {high}");
            j.anomalies.report(
                AnomalyKind::StoredOutOfOrder,
                about_row(history, row, detail),
            );
        }
        highest = highest.max(Some(row.seq));
        match by_seq.get(row.seq) {
            None => {
                by_seq.insert(row.seq, row.message);
                if let Some(seen) = mismatch(j, row) {
                    counts.mismatched += 1;
                    let detail = format!("clients received {seen}");
                    j.anomalies
                        .report(AnomalyKind::StoredMismatch, about_row(history, row, detail));
                }
            }
            Some(first) if first != row.message && conflicted.insert(row.seq) => {
                counts.seq_conflicts += 1;
                let detail = format!("row {i}; also stored as {}", history.message_id(first));
                j.anomalies.report(
                    AnomalyKind::StoredSeqConflict,
                    about_row(history, row, detail),
                );
            }
            Some(_) => {}
        }
        let n = &mut copies[row.message.index()];
        *n += 1;
        if *n > 1 {
            counts.duplicated += 1;
            let detail = format!("row {i}, copy {n}");
            j.anomalies.report(
                AnomalyKind::StoredDuplicate,
                about_row(history, row, detail),
            );
        }
    }
    copies
}

/// Fills in an anomaly about one row.
fn about_row<'a>(
    history: &'a History,
    row: &'a StoredRow,
    detail: String,
) -> impl FnOnce(Anomaly) -> Anomaly + 'a {
    move |a| {
        a.message(history.message_id(row.message))
            .seq(row.seq)
            .detail(detail)
    }
}

/// What clients received under the row's seq, when it is not the row's
/// message (or clients disagree among themselves).
fn mismatch(j: &Judgement<'_>, row: &StoredRow) -> Option<String> {
    let seen = j.messages.delivered_at_seq(row.seq)?;
    if seen != row.message {
        Some(j.history.message_id(seen).to_owned())
    } else if j.messages.is_conflicted(row.seq) {
        Some("several message ids".to_owned())
    } else {
        None
    }
}

/// Known seqs (from the lowest to the highest received or stored anywhere)
/// with no row.
fn find_gaps(j: &mut Judgement<'_>, rows: &[StoredRow], counts: &mut StoredCounts) {
    let Some((lowest, highest)) = j.messages.seq_range else {
        return;
    };
    let present: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    for (first, last) in SeqWindow::missing_between(lowest, highest, present) {
        counts.gaps += 1;
        counts.gap_seqs += last - first + 1;
        let history = j.history;
        let received = j.messages.delivered_at_seq(first).filter(|_| first == last);
        j.anomalies.report(AnomalyKind::StoredGap, |a| {
            let a = a.seqs(first, last);
            match received {
                Some(m) => a.message(history.message_id(m)),
                None => a,
            }
        });
    }
}
