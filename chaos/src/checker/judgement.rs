//! The state of one check (the history, its per-message facts, the
//! anomalies found so far), shared by the steps that judge each client and
//! PostgreSQL, and how it becomes the [`Verdict`].

use super::messages::{Messages, Status};
use super::room_facts::RoomFacts;
use super::verdict::{
    Anomalies, Anomaly, AnomalyKind, ClientCounts, RoomCounts, Seconds, StoredCounts, Totals,
    Verdict,
};
use crate::history::{ClientHistory, History, MessageIx, RoomDelivery, RoomIx, StoredRoomRow};

/// The state of one check, shared by its steps.
pub(super) struct Judgement<'h> {
    pub(super) history: &'h History,
    pub(super) messages: Messages,
    pub(super) anomalies: Anomalies,
    /// Per message: lost somewhere.
    pub(super) lost: Vec<bool>,
    /// Per message: some client was owed it.
    pub(super) owed: Vec<bool>,
    /// What the history says about each room.
    pub(super) rooms: RoomFacts,
    /// Per room (by [`RoomIx`]): its counts so far.
    pub(super) room_counts: Vec<RoomCounts>,
}

/// The stored rows a check was given, by kind of message.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoredRecorded {
    /// PostgreSQL's `messages` rows.
    pub(super) lobby: bool,
    /// PostgreSQL's `room_messages` rows.
    pub(super) rooms: bool,
}

impl Judgement<'_> {
    /// Reports an anomaly about a whole message (at a client, or not).
    /// `note` is added to the detail.
    pub(super) fn report_message(
        &mut self,
        kind: AnomalyKind,
        client: Option<&ClientHistory>,
        m: MessageIx,
        note: &str,
    ) {
        let (history, messages) = (self.history, &self.messages);
        self.anomalies.report(kind, |mut a| {
            if let Some(client) = client {
                a = a.client(&client.name);
            }
            a = a.message(history.message_id(m));
            if let Some(seq) = messages.seqs(m).next() {
                a = a.seq(seq);
            }
            let invoked = messages.first_invoked_at_us[m.index()];
            if invoked != u64::MAX {
                a = a.invoked_at(invoked);
            }
            let acked = messages.acked_at_us[m.index()];
            let acked = acked.map(|at| format!("acknowledged at {}", Seconds(at)));
            let detail = acked
                .into_iter()
                .chain((!note.is_empty()).then(|| note.to_owned()));
            a.detail(detail.collect::<Vec<_>>().join("; "))
        });
    }

    /// Acknowledged messages nobody was owed and nobody observed (when no
    /// stored rows can speak for them), and recovered messages.
    pub(super) fn report_unobserved_and_recovered(&mut self, stored: StoredRecorded) {
        for m in self.messages.all() {
            let observed = self.messages.observed(m);
            let stored_recorded = match self.messages.in_room[m.index()] {
                true => stored.rooms,
                false => stored.lobby,
            };
            match self.messages.status[m.index()] {
                Status::Acknowledged if !observed && !self.owed[m.index()] && !stored_recorded => {
                    self.lost[m.index()] = true;
                    let note = "observed nowhere: no client received it, no stored rows";
                    self.report_message(AnomalyKind::Lost, None, m, note);
                }
                Status::Failed(code) if observed => {
                    let history = self.history;
                    self.anomalies.report(AnomalyKind::RecoveredFail, |a| {
                        a.message(history.message_id(m))
                            .detail(format!("failed with {}", history.code(code)))
                    });
                }
                Status::Unknown if observed => {
                    self.report_message(AnomalyKind::RecoveredUnknown, None, m, "");
                }
                _ => {}
            }
        }
    }

    pub(super) fn verdict(
        mut self,
        clients: Vec<ClientCounts>,
        stored: Option<StoredCounts>,
        stored_rooms: Option<StoredCounts>,
    ) -> Verdict {
        let totals = self.totals(&clients);
        let mut rooms = std::mem::take(&mut self.room_counts);
        for (i, r) in rooms.iter_mut().enumerate() {
            r.room = self.history.rooms()[i].clone();
            r.last_seq = self.rooms.last_seq(RoomIx(i as u32));
        }
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        let ids = |keep: &dyn Fn(MessageIx) -> bool| -> Vec<String> {
            let all = self.messages.all().filter(|&m| keep(m));
            all.map(|m| self.history.message_id(m).to_owned()).collect()
        };
        let lost = ids(&|m| self.lost[m.index()]);
        let unexpected = ids(&|m| self.is_unexpected(m));
        let (anomalies, anomaly_counts) = self.anomalies.into_parts();
        let valid = anomaly_counts
            .iter()
            .all(|(kind, &n)| n == 0 || !kind.invalidates());
        Verdict {
            valid,
            totals,
            clients,
            stored,
            rooms,
            stored_rooms,
            lost,
            unexpected,
            anomalies,
            anomaly_counts,
        }
    }

    fn is_unexpected(&self, m: MessageIx) -> bool {
        self.messages.status[m.index()] == Status::NotAttempted && self.messages.observed(m)
    }

    fn totals(&self, clients: &[ClientCounts]) -> Totals {
        let mut t = Totals {
            attempts: self.messages.attempts,
            clients: clients.len() as u64,
            seq_conflicts: self.messages.seq_conflicts() + self.rooms.seq_conflicts(),
            ..Totals::default()
        };
        for m in self.messages.all() {
            let status = self.messages.status[m.index()];
            let observed = u64::from(self.messages.observed(m));
            t.attempted += u64::from(status != Status::NotAttempted);
            t.ok += u64::from(status != Status::NotAttempted) * observed;
            t.lost += u64::from(self.lost[m.index()]);
            t.unexpected += u64::from(self.is_unexpected(m));
            match status {
                Status::Acknowledged => t.acknowledged += 1,
                Status::Failed(_) => {
                    t.failed += 1;
                    t.recovered_fail += observed;
                }
                Status::Unknown => {
                    t.unknown += 1;
                    t.recovered_unknown += observed;
                }
                Status::NotAttempted => {}
            }
        }
        for c in clients {
            t.deliveries += c.deliveries;
            t.lost_deliveries += c.lost;
            t.duplicated_in_transit += c.duplicated_in_transit;
            t.duplicated_after_dedupe += c.duplicated_after_dedupe;
            t.gaps += c.gaps;
            t.gap_seqs += c.gap_seqs;
            t.order_violations += c.order_violations;
            t.leaks += c.leaks;
        }
        t.room_deliveries = self.room_counts.iter().map(|r| r.deliveries).sum();
        t
    }
}

/// Reporting anomalies about rooms: each names its room.
impl Judgement<'_> {
    /// An anomaly about one room delivery.
    pub(super) fn report_room_delivery(
        &mut self,
        kind: AnomalyKind,
        client: &ClientHistory,
        d: &RoomDelivery,
        detail: String,
    ) {
        let history = self.history;
        self.anomalies.report(kind, |a| {
            a.client(&client.name)
                .room(history.room(d.room))
                .message(history.message_id(d.message))
                .seq(d.seq)
                .observed_at(u64::from(d.received_at_ms) * 1000)
                .detail(detail)
        });
    }

    /// An anomaly about a whole room message (at a client, or not).
    pub(super) fn report_room_message(
        &mut self,
        kind: AnomalyKind,
        client: Option<&ClientHistory>,
        room: RoomIx,
        seq: Option<u64>,
        m: MessageIx,
    ) {
        let (history, messages) = (self.history, &self.messages);
        self.anomalies.report(kind, |mut a| {
            if let Some(client) = client {
                a = a.client(&client.name);
            }
            a = a.room(history.room(room)).message(history.message_id(m));
            if let Some(seq) = seq {
                a = a.seq(seq);
            }
            with_publish_times(a, messages, m)
        });
    }

    /// An anomaly about a room message, placed where it was first seen (or
    /// the room it was published to).
    pub(super) fn report_room_message_unplaced(&mut self, kind: AnomalyKind, m: MessageIx) {
        let Some((room, seq)) = self.rooms.placed(m) else {
            return self.report_message(kind, None, m, "");
        };
        self.report_room_message(kind, None, room, seq, m);
    }

    /// Seqs `first ..= last` of `room` the client was owed and never got.
    pub(super) fn report_room_gap(
        &mut self,
        client: &ClientHistory,
        room: RoomIx,
        first: u64,
        last: u64,
    ) {
        let history = self.history;
        let single = self.rooms.at_seq(room, first).filter(|_| first == last);
        self.anomalies.report(AnomalyKind::Gap, |a| {
            let a = a
                .client(&client.name)
                .room(history.room(room))
                .seqs(first, last);
            match single {
                Some(m) => a.message(history.message_id(m)),
                None => a,
            }
        });
    }

    /// An anomaly about one `room_messages` row.
    pub(super) fn report_room_row(
        &mut self,
        kind: AnomalyKind,
        row: &StoredRoomRow,
        detail: String,
    ) {
        let history = self.history;
        self.anomalies.report(kind, |a| {
            a.room(history.room(row.room))
                .message(history.message_id(row.message))
                .seq(row.seq)
                .detail(detail)
        });
    }

    /// Seqs `first ..= last` of `room` with no `room_messages` row.
    pub(super) fn report_stored_room_gap(&mut self, room: RoomIx, first: u64, last: u64) {
        let history = self.history;
        let single = self.rooms.at_seq(room, first).filter(|_| first == last);
        self.anomalies.report(AnomalyKind::StoredGap, |a| {
            let a = a.room(history.room(room)).seqs(first, last);
            match single {
                Some(m) => a.message(history.message_id(m)),
                None => a,
            }
        });
    }
}

/// When the message was first invoked and acknowledged, on an anomaly.
fn with_publish_times(mut a: Anomaly, messages: &Messages, m: MessageIx) -> Anomaly {
    let invoked = messages.first_invoked_at_us[m.index()];
    if invoked != u64::MAX {
        a = a.invoked_at(invoked);
    }
    match messages.acked_at_us[m.index()] {
        Some(at) => a.detail(format!("acknowledged at {}", Seconds(at))),
        None => a,
    }
}
