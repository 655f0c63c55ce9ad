//! What the whole history says about each room before any client is
//! judged: which message clients received (or PostgreSQL stores) under each
//! `(room, seq)`, where two clients disagree (a seq conflict), each room's
//! highest seq, and the acknowledged room messages nobody observed.

use std::collections::{HashMap, HashSet};

use super::messages::{seq_conflict, Messages, Status};
use super::verdict::{Anomalies, AnomalyKind};
use crate::history::{History, MessageIx, RoomIx};

/// Per `(room, seq)` and per room facts.
#[derive(Debug, Default)]
pub(super) struct RoomFacts {
    /// The message first received (else stored) under each room seq.
    at_seq: HashMap<(RoomIx, u64), MessageIx>,
    /// Room seqs clients received under more than one message id.
    conflicted: HashSet<(RoomIx, u64)>,
    /// Per room: the lowest and highest seq received or stored.
    range: Vec<Option<(u64, u64)>>,
    /// Per room: acknowledged messages published to it that nobody received
    /// or stored (their seq is unknown).
    unsequenced: HashMap<RoomIx, Vec<MessageIx>>,
    /// Per room message: where it was first received or stored, else the
    /// room it was published to.
    placed: HashMap<MessageIx, (RoomIx, Option<u64>)>,
}

impl RoomFacts {
    /// Gathers the facts, reporting seq conflicts between clients.
    pub(super) fn gather(
        history: &History,
        messages: &Messages,
        anomalies: &mut Anomalies,
    ) -> RoomFacts {
        let mut facts = RoomFacts {
            range: vec![None; history.rooms().len()],
            ..RoomFacts::default()
        };
        for client in history.clients() {
            for d in &client.room_deliveries {
                facts.widen(d.room, d.seq);
                facts
                    .placed
                    .entry(d.message)
                    .or_insert((d.room, Some(d.seq)));
                let first = *facts.at_seq.entry((d.room, d.seq)).or_insert(d.message);
                if first != d.message && facts.conflicted.insert((d.room, d.seq)) {
                    anomalies.report(AnomalyKind::SeqConflict, |a| {
                        let at_ms = d.received_at_ms;
                        let a = a.room(history.room(d.room));
                        seq_conflict(a, history, &client.name, (d.message, d.seq, at_ms), first)
                    });
                }
            }
        }
        for row in history.stored_rooms().unwrap_or_default() {
            facts.widen(row.room, row.seq);
            facts
                .placed
                .entry(row.message)
                .or_insert((row.room, Some(row.seq)));
            facts
                .at_seq
                .entry((row.room, row.seq))
                .or_insert(row.message);
        }
        let mut noted = HashSet::new();
        for op in history.publishers().iter().flat_map(|p| &p.publishes) {
            let (m, Some(room)) = (op.message, op.room) else {
                continue;
            };
            facts.placed.entry(m).or_insert((room, None));
            let acked = messages.status[m.index()] == Status::Acknowledged;
            if acked && !messages.observed(m) && noted.insert(m) {
                facts.unsequenced.entry(room).or_default().push(m);
            }
        }
        facts
    }

    fn widen(&mut self, room: RoomIx, seq: u64) {
        let range = &mut self.range[room.index()];
        *range = Some(match *range {
            None => (seq, seq),
            Some((low, high)) => (low.min(seq), high.max(seq)),
        });
    }

    /// The message first received (else stored) under `room`'s `seq`.
    pub(super) fn at_seq(&self, room: RoomIx, seq: u64) -> Option<MessageIx> {
        self.at_seq.get(&(room, seq)).copied()
    }

    /// Whether clients received `room`'s `seq` under more than one message.
    pub(super) fn is_conflicted(&self, room: RoomIx, seq: u64) -> bool {
        self.conflicted.contains(&(room, seq))
    }

    /// Room seqs clients received under more than one message id.
    pub(super) fn seq_conflicts(&self) -> u64 {
        self.conflicted.len() as u64
    }

    /// The lowest and highest seq of `room` received or stored.
    pub(super) fn range(&self, room: RoomIx) -> Option<(u64, u64)> {
        self.range.get(room.index()).copied().flatten()
    }

    /// The highest seq of `room` received or stored (0 if none).
    pub(super) fn last_seq(&self, room: RoomIx) -> u64 {
        self.range(room).map_or(0, |(_, high)| high)
    }

    /// Where a room message was first received or stored (else the room it
    /// was published to, with no seq).
    pub(super) fn placed(&self, m: MessageIx) -> Option<(RoomIx, Option<u64>)> {
        self.placed.get(&m).copied()
    }

    /// Acknowledged messages published to `room` that nobody observed.
    pub(super) fn unsequenced(&self, room: RoomIx) -> &[MessageIx] {
        self.unsequenced.get(&room).map_or(&[], Vec::as_slice)
    }
}
