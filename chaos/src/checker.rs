//! The history checker (design §8): Jepsen's total-queue checker extended to
//! fan-out. It reads a [`History`] and returns a [`Verdict`]: valid or not,
//! counts per client, in total and for PostgreSQL, and the anomalies.
//!
//! ```text
//! let verdict = history.check();
//! assert!(verdict.lost.is_empty(), "{verdict}");
//! ```
//!
//! # Definitions
//!
//! **Messages.** A message id may be attempted several times; its *status*
//! is *acknowledged* if any attempt was, else *unknown* if any attempt had no
//! answer, else *failed*. Its *seqs* are every seq any client received it
//! under or PostgreSQL stores it under; *observed* means it has one.
//!
//! **Coverage** (what a client should have received; `checker/coverage.rs`). A
//! connection is owed every seq after its `login_ok.last_seq` (or after its
//! `resume_from`, if lower). A reconnect that resumes — `resume_from` at
//! login, or a `resume` command answered by `resume_done` — continues the
//! previous stretch, so the disconnected time is covered too; a fresh login
//! starts a new one. A stretch that ended for good (the client left, or came
//! back without resuming) is owed seqs up to the highest it was shown:
//! received, or announced by `login_ok`/`resume_done`. The stretch open at
//! the end of the run is owed every seq up to the highest known anywhere.
//! Edge cases, each read so that no loss is hidden:
//! - *joined mid-run*: owed nothing at or below its first login head, and
//!   everything above it, even messages invoked before it joined;
//! - *left without resuming*: owed nothing above what it was shown, since a
//!   message sequenced after it left could not reach it;
//! - *torn down after the run drained* (a disconnect at or after
//!   [`Recording::drained`](crate::history::Recording::drained)): not
//!   leaving, so still owed everything through the end — a client stuck
//!   before the drain is blamed for what it missed. Without that mark every
//!   disconnect counts as leaving;
//! - *acknowledged after the client disconnected*: owed when the client
//!   resumed later (the resume covers it), or when its seq is at or below
//!   the highest the client was shown before leaving;
//! - *resume from beyond what it saw*: the skipped seqs stay inside the
//!   window, so they are a gap (and lost, if acknowledged);
//! - *resume refused* (`resume_unavailable` after a login with
//!   `resume_from`): the client asked, so the window still bridges and what
//!   the replay should have brought is a gap;
//! - *an acknowledged message nobody received or stored* has no seq: a
//!   client is owed it if it was connected (with no break a resume did not
//!   bridge) from before the message's first attempt through the end.
//!
//! **Per client**, message counts being of distinct message ids:
//! - **ok** = received ∩ attempted;
//! - **expected** = acknowledged messages it was owed (any of the message's
//!   seqs covered, or the time rule above for unsequenced ones);
//! - **lost** = expected − received (received under any seq);
//! - **unexpected** = received, never attempted;
//! - **recovered** = received although its status is failed (`recovered_fail`)
//!   or unknown (`recovered_unknown`): allowed, at-least-once;
//! - **duplicated in transit** = deliveries of a seq the client already had
//!   (its dedupe by seq drops them; a seq received again under another
//!   message id is dropped too, and that message is not counted received);
//! - **duplicated after dedupe** = a message id received under a second
//!   distinct seq (a dedupe failure upstream), once per extra seq;
//! - **gaps** = maximal runs of covered seqs never received, including a
//!   missing tail (`gap_seqs` counts the seqs). A lost message that others
//!   received leaves a gap at its seq too; a gap alone is a missing message
//!   whose publish was not acknowledged;
//! - **order violations** = a first delivery of a seq below the highest
//!   already received, except a resume replay (between the resume and its
//!   `resume_done`, with the seq in `from + 1 ..= head`) — so a hole filled
//!   by a replay is fine, a hole filled late by live traffic is not.
//!
//! **In total**: *lost* = acknowledged messages lost to a client, missing
//! from PostgreSQL, or — when no rows were recorded and no client was owed
//! them — observed nowhere (a history that never shows an acknowledged
//! message cannot prove it arrived); *unexpected* and *recovered* are
//! distinct messages over clients and PostgreSQL; *seq conflicts* are seqs
//! clients received under two message ids (clients disagree on the order);
//! the other counts are sums over clients.
//!
//! **PostgreSQL** (when its rows are recorded, in insertion order):
//! *lost* = acknowledged, no row; *unexpected* = stored, never attempted;
//! *duplicated* = rows beyond the first of a message id; *out of order* = a
//! row whose seq is below an earlier row's; *seq conflicts* = a seq with rows
//! of two message ids; *mismatched* = a seq whose row differs from what
//! clients received under it; *gaps* = runs of seqs, from the lowest to the
//! highest received or stored anywhere, with no row.
//!
//! **Valid** = no lost, unexpected, gap, order violation or seq conflict,
//! and PostgreSQL clean (each acknowledged message stored once, nothing
//! else wrong). Duplicates at clients and recovered messages are reported
//! and allowed.

mod client;
mod coverage;
mod judgement;
mod messages;
mod room_client;
mod room_coverage;
mod room_facts;
mod room_stored;
mod seq_table;
mod stored;
mod verdict;

pub use verdict::{
    Anomaly, AnomalyKind, ClientCounts, RoomCounts, SeqRange, StoredCounts, Totals, Verdict,
};

use self::client::{check_client, ClientScratch};
use self::judgement::{Judgement, StoredRecorded};
use self::messages::Messages;
use self::room_client::check_client_rooms;
use self::room_facts::RoomFacts;
use self::room_stored::check_stored_rooms;
use self::stored::check_stored;
use self::verdict::{Anomalies, RoomCounts as Counts};
use crate::history::History;

/// The checker, with its reporting options.
#[derive(Debug, Clone)]
pub struct Checker {
    /// Anomalies kept per kind (all are counted).
    anomalies_per_kind: usize,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            anomalies_per_kind: 20,
        }
    }
}

impl Checker {
    /// Keep at most `n` anomalies of each kind in the verdict's list (20 by
    /// default); every one is still counted.
    pub fn anomalies_per_kind(mut self, n: usize) -> Checker {
        self.anomalies_per_kind = n;
        self
    }

    /// Judges a history.
    pub fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::new(self.anomalies_per_kind);
        let messages = Messages::gather(history, &mut anomalies);
        let rooms = RoomFacts::gather(history, &messages, &mut anomalies);
        let n = history.message_ids().len();
        let mut j = Judgement {
            history,
            messages,
            anomalies,
            lost: vec![false; n],
            owed: vec![false; n],
            rooms,
            room_counts: vec![Counts::default(); history.rooms().len()],
        };
        let mut scratch = ClientScratch::new(&j);
        let clients: Vec<ClientCounts> = history
            .clients()
            .iter()
            .map(|c| {
                let mut counts = check_client(&mut j, &mut scratch, c);
                check_client_rooms(&mut j, c, &mut counts);
                counts
            })
            .collect();
        let stored = history.stored().map(|rows| check_stored(&mut j, rows));
        let stored_rooms = history
            .stored_rooms()
            .map(|rows| check_stored_rooms(&mut j, rows));
        j.report_unobserved_and_recovered(StoredRecorded {
            lobby: stored.is_some(),
            rooms: stored_rooms.is_some(),
        });
        j.verdict(clients, stored, stored_rooms)
    }
}

impl History {
    /// Judges this history with the default [`Checker`].
    pub fn check(&self) -> Verdict {
        Checker::default().check(self)
    }
}

#[cfg(test)]
mod tests;
