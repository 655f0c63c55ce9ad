//! What the whole history says about each message, before any client is
//! judged: its publish outcome, when it was first attempted, under which
//! seqs anyone received or stored it, and which message clients received
//! under each seq (where two clients disagree, a seq conflict).

use std::collections::{HashMap, HashSet};

use super::seq_table::SeqTable;
use super::verdict::{Anomalies, Anomaly, AnomalyKind};
use crate::history::{CodeIx, History, MessageIx, Outcome};

/// A message's outcome over all its attempts: acknowledged if any attempt
/// was, else unknown if any attempt was, else failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Received or stored, never published.
    NotAttempted,
    /// Every attempt was refused; the code of the last refusal.
    Failed(CodeIx),
    /// No acknowledgement, and at least one attempt without an answer.
    Unknown,
    /// At least one attempt acknowledged.
    Acknowledged,
}

impl Status {
    fn rank(self) -> u8 {
        match self {
            Status::NotAttempted => 0,
            Status::Failed(_) => 1,
            Status::Unknown => 2,
            Status::Acknowledged => 3,
        }
    }

    fn with(self, outcome: Outcome) -> Status {
        let next = match outcome {
            Outcome::Ok => Status::Acknowledged,
            Outcome::Fail { code } => Status::Failed(code),
            Outcome::Unknown => Status::Unknown,
        };
        if next.rank() >= self.rank() {
            next
        } else {
            self
        }
    }
}

/// Per message (indexed by [`MessageIx`]) and per seq facts.
pub(super) struct Messages {
    pub(super) status: Vec<Status>,
    /// The earliest invocation among its attempts (`u64::MAX` if none).
    pub(super) first_invoked_at_us: Vec<u64>,
    /// The earliest acknowledgement.
    pub(super) acked_at_us: Vec<Option<u64>>,
    /// The first seq it was received or stored under.
    first_seq: Vec<Option<u64>>,
    /// Further seqs it was received or stored under (a dedupe failure).
    other_seqs: HashMap<MessageIx, Vec<u64>>,
    /// The message clients first received under each seq.
    delivered_at_seq: SeqTable<MessageIx>,
    /// Seqs clients received under more than one message id.
    conflicted_seqs: HashSet<u64>,
    /// The lowest and highest seq received or stored.
    pub(super) seq_range: Option<(u64, u64)>,
    /// Deliveries plus stored rows: how many seq observations there are.
    pub(super) observations: usize,
    /// Publish operations.
    pub(super) attempts: u64,
    /// Per message: a room's (published to a room, or received or stored
    /// in one); the lobby's checks leave it to the rooms'.
    pub(super) in_room: Vec<bool>,
    /// Per message: received or stored in a room.
    room_observed: Vec<bool>,
}

impl Messages {
    /// Gathers the facts, reporting seq conflicts between clients.
    pub(super) fn gather(history: &History, anomalies: &mut Anomalies) -> Messages {
        let n = history.message_ids().len();
        let stored = history.stored().unwrap_or_default();
        let delivered = history.clients().iter().flat_map(|c| &c.deliveries);
        let seqs = delivered.map(|d| d.seq).chain(stored.iter().map(|r| r.seq));
        let (observations, seq_range) = seqs.fold((0, None), |(count, range), seq| {
            let range = match range {
                None => (seq, seq),
                Some((low, high)) => (seq.min(low), seq.max(high)),
            };
            (count + 1, Some(range))
        });
        let mut messages = Messages {
            status: vec![Status::NotAttempted; n],
            first_invoked_at_us: vec![u64::MAX; n],
            acked_at_us: vec![None; n],
            first_seq: vec![None; n],
            other_seqs: HashMap::new(),
            delivered_at_seq: SeqTable::for_range(seq_range, observations),
            conflicted_seqs: HashSet::new(),
            seq_range,
            observations,
            attempts: 0,
            in_room: vec![false; n],
            room_observed: vec![false; n],
        };
        messages.add_rooms(history);
        messages.add_publishes(history);
        messages.add_deliveries(history, anomalies);
        for row in stored {
            messages.add_seq(row.message, row.seq);
        }
        messages
    }

    /// Which messages are rooms' and which of those anyone observed.
    fn add_rooms(&mut self, history: &History) {
        let published = history.publishers().iter().flat_map(|p| &p.publishes);
        for op in published.filter(|op| op.room.is_some()) {
            self.in_room[op.message.index()] = true;
        }
        let delivered = history.clients().iter().flat_map(|c| &c.room_deliveries);
        let stored = history.stored_rooms().unwrap_or_default();
        let observed = delivered
            .map(|d| d.message)
            .chain(stored.iter().map(|r| r.message));
        for m in observed {
            self.in_room[m.index()] = true;
            self.room_observed[m.index()] = true;
        }
    }

    fn add_publishes(&mut self, history: &History) {
        for op in history.publishers().iter().flat_map(|p| &p.publishes) {
            let m = op.message.index();
            self.attempts += 1;
            self.status[m] = self.status[m].with(op.outcome);
            self.first_invoked_at_us[m] = self.first_invoked_at_us[m].min(op.invoked_at_us);
            if let (Outcome::Ok, Some(at)) = (op.outcome, op.completed_at_us) {
                let acked = self.acked_at_us[m].get_or_insert(at);
                *acked = (*acked).min(at);
            }
        }
    }

    fn add_deliveries(&mut self, history: &History, anomalies: &mut Anomalies) {
        for client in history.clients() {
            for d in &client.deliveries {
                self.add_seq(d.message, d.seq);
                let Some(first) = self.delivered_at_seq.get(d.seq) else {
                    self.delivered_at_seq.insert(d.seq, d.message);
                    continue;
                };
                if first != d.message && self.conflicted_seqs.insert(d.seq) {
                    anomalies.report(AnomalyKind::SeqConflict, |a| {
                        let at_ms = d.received_at_ms;
                        seq_conflict(a, history, &client.name, (d.message, d.seq, at_ms), first)
                    });
                }
            }
        }
    }

    fn add_seq(&mut self, message: MessageIx, seq: u64) {
        match self.first_seq[message.index()] {
            None => self.first_seq[message.index()] = Some(seq),
            Some(first) if first == seq => {}
            Some(_) => {
                let others = self.other_seqs.entry(message).or_default();
                if !others.contains(&seq) {
                    others.push(seq);
                }
            }
        }
    }

    /// Every seq `message` was received or stored under.
    pub(super) fn seqs(&self, message: MessageIx) -> impl Iterator<Item = u64> + '_ {
        let others = self.other_seqs.get(&message).map(Vec::as_slice);
        self.first_seq[message.index()]
            .into_iter()
            .chain(others.unwrap_or_default().iter().copied())
    }

    /// Whether some client received it or PostgreSQL holds it (in the
    /// lobby or a room).
    pub(super) fn observed(&self, message: MessageIx) -> bool {
        self.first_seq[message.index()].is_some() || self.room_observed[message.index()]
    }

    /// The message clients (first) received under `seq`.
    pub(super) fn delivered_at_seq(&self, seq: u64) -> Option<MessageIx> {
        self.delivered_at_seq.get(seq)
    }

    /// Whether clients received `seq` under more than one message id.
    pub(super) fn is_conflicted(&self, seq: u64) -> bool {
        self.conflicted_seqs.contains(&seq)
    }

    /// How many seqs clients received under more than one message id.
    pub(super) fn seq_conflicts(&self) -> u64 {
        self.conflicted_seqs.len() as u64
    }

    /// The highest seq received or stored (0 if none).
    pub(super) fn last_seq(&self) -> u64 {
        self.seq_range.map_or(0, |(_, high)| high)
    }

    /// Every message index.
    pub(super) fn all(&self) -> impl Iterator<Item = MessageIx> {
        (0..self.status.len() as u32).map(MessageIx)
    }
}

/// The seq conflict seen when `client` received `(message, seq,
/// received_at_ms)` and another client had received `first` under it.
pub(super) fn seq_conflict(
    a: Anomaly,
    history: &History,
    client: &str,
    (message, seq, received_at_ms): (MessageIx, u64, u32),
    first: MessageIx,
) -> Anomaly {
    a.client(client)
        .message(history.message_id(message))
        .seq(seq)
        .observed_at(u64::from(received_at_ms) * 1000)
        .detail(format!(
            "another client received {} under it",
            history.message_id(first)
        ))
}
