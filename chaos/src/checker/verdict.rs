//! The checker's answer: whether the run is valid, counts per client, in
//! total and for PostgreSQL, and a list of anomalies (capped per kind, with
//! the full count of each kind), printable as a readable summary.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of thing an [`Anomaly`] reports. Each kind is defined in
/// the `checker` module. Ordered as reports list them: the kinds that make a
/// run invalid first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// An acknowledged message a client was owed and never received; or,
    /// with no client, one observed nowhere.
    Lost,
    /// An acknowledged message PostgreSQL does not hold.
    LostInPostgres,
    /// A room message delivered to a client outside every one of its
    /// membership windows of that room (before its join point, after its
    /// leave point, or in a room it never joined): as bad as a loss.
    Leak,
    /// A client received a message id nobody attempted.
    Unexpected,
    /// PostgreSQL holds a message id nobody attempted.
    UnexpectedInPostgres,
    /// Seqs a client was owed and never received.
    Gap,
    /// Seqs PostgreSQL does not hold.
    StoredGap,
    /// A client received a seq below one it had already received, outside
    /// a resume replay.
    OrderViolation,
    /// A stored row whose seq is below an earlier row's.
    StoredOutOfOrder,
    /// Clients received one seq under two message ids.
    SeqConflict,
    /// A seq PostgreSQL holds under two message ids.
    StoredSeqConflict,
    /// A message id PostgreSQL holds more than once.
    StoredDuplicate,
    /// A stored seq whose message differs from what clients received.
    StoredMismatch,
    /// A seq a client received again.
    DuplicatedInTransit,
    /// A message id a client received under a second seq.
    DuplicatedAfterDedupe,
    /// A message whose publishes all failed, received or stored anyway.
    RecoveredFail,
    /// A message whose publish outcome was unknown, received or stored.
    RecoveredUnknown,
}

impl AnomalyKind {
    /// Whether one of these makes the run invalid. Duplicates at clients and
    /// recovered messages do not: delivery is at-least-once, and both are
    /// reported, never hidden.
    pub fn invalidates(self) -> bool {
        !matches!(
            self,
            AnomalyKind::DuplicatedInTransit
                | AnomalyKind::DuplicatedAfterDedupe
                | AnomalyKind::RecoveredFail
                | AnomalyKind::RecoveredUnknown
        )
    }

    /// Its name in reports (`lost`, `stored_gap`…).
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Lost => "lost",
            AnomalyKind::LostInPostgres => "lost_in_postgres",
            AnomalyKind::Leak => "leak",
            AnomalyKind::Unexpected => "unexpected",
            AnomalyKind::UnexpectedInPostgres => "unexpected_in_postgres",
            AnomalyKind::Gap => "gap",
            AnomalyKind::OrderViolation => "order_violation",
            AnomalyKind::SeqConflict => "seq_conflict",
            AnomalyKind::DuplicatedInTransit => "duplicated_in_transit",
            AnomalyKind::DuplicatedAfterDedupe => "duplicated_after_dedupe",
            AnomalyKind::RecoveredFail => "recovered_fail",
            AnomalyKind::RecoveredUnknown => "recovered_unknown",
            AnomalyKind::StoredOutOfOrder => "stored_out_of_order",
            AnomalyKind::StoredSeqConflict => "stored_seq_conflict",
            AnomalyKind::StoredDuplicate => "stored_duplicate",
            AnomalyKind::StoredMismatch => "stored_mismatch",
            AnomalyKind::StoredGap => "stored_gap",
        }
    }
}

/// The seqs `first ..= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// The first seq.
    pub first: u64,
    /// The last seq (`first` for one seq).
    pub last: u64,
}

impl fmt::Display for SeqRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "seq {}", self.first)
        } else {
            write!(f, "seqs {}..={}", self.first, self.last)
        }
    }
}

/// One thing the checker found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What it is.
    pub kind: AnomalyKind,
    /// The receiving client it concerns; `None` for PostgreSQL and for
    /// the run as a whole.
    pub client: Option<String>,
    /// The room it concerns; `None` for the lobby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The message it concerns.
    pub message_id: Option<String>,
    /// The seq (or a gap's seqs) it concerns.
    pub seqs: Option<SeqRange>,
    /// When the message was first attempted (µs since the recording started).
    pub invoked_at_us: Option<u64>,
    /// When the delivery or event it is about happened (µs; deliveries are
    /// recorded to the millisecond).
    pub observed_at_us: Option<u64>,
    /// The rest, for people: `after seq 12`, `first under seq 7`…
    pub detail: String,
}

impl Anomaly {
    pub(super) fn new(kind: AnomalyKind) -> Anomaly {
        Anomaly {
            kind,
            client: None,
            room: None,
            message_id: None,
            seqs: None,
            invoked_at_us: None,
            observed_at_us: None,
            detail: String::new(),
        }
    }

    pub(super) fn client(mut self, name: &str) -> Anomaly {
        self.client = Some(name.to_owned());
        self
    }

    pub(super) fn room(mut self, room: &str) -> Anomaly {
        self.room = Some(room.to_owned());
        self
    }

    pub(super) fn message(mut self, id: &str) -> Anomaly {
        self.message_id = Some(id.to_owned());
        self
    }

    pub(super) fn seq(self, seq: u64) -> Anomaly {
        self.seqs(seq, seq)
    }

    pub(super) fn seqs(mut self, first: u64, last: u64) -> Anomaly {
        self.seqs = Some(SeqRange { first, last });
        self
    }

    pub(super) fn invoked_at(mut self, at_us: u64) -> Anomaly {
        self.invoked_at_us = Some(at_us);
        self
    }

    pub(super) fn observed_at(mut self, at_us: u64) -> Anomaly {
        self.observed_at_us = Some(at_us);
        self
    }

    pub(super) fn detail(mut self, detail: impl Into<String>) -> Anomaly {
        self.detail = detail.into();
        self
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<23}", self.kind.name())?;
        if let Some(client) = &self.client {
            write!(f, " client {client}")?;
        }
        if let Some(room) = &self.room {
            write!(f, " room {room}")?;
        }
        if let Some(id) = &self.message_id {
            write!(f, " message {id}")?;
        }
        if let Some(seqs) = &self.seqs {
            write!(f, " {seqs}")?;
        }
        if let Some(at) = self.invoked_at_us {
            write!(f, " invoked {}", Seconds(at))?;
        }
        if let Some(at) = self.observed_at_us {
            write!(f, " at {}", Seconds(at))?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Microseconds shown as seconds.
pub(super) struct Seconds(pub(super) u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06} s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Collects anomalies: every one counted, the first `per_kind` of each kind
/// kept, so a flood of one kind never hides another.
#[derive(Debug)]
pub(super) struct Anomalies {
    per_kind: usize,
    kept: Vec<Anomaly>,
    counts: BTreeMap<AnomalyKind, u64>,
}

impl Anomalies {
    pub(super) fn new(per_kind: usize) -> Anomalies {
        Anomalies {
            per_kind,
            kept: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Counts one anomaly of `kind`; builds and keeps it while the kind is
    /// under its cap.
    pub(super) fn report(&mut self, kind: AnomalyKind, build: impl FnOnce(Anomaly) -> Anomaly) {
        let count = self.counts.entry(kind).or_default();
        *count += 1;
        if *count <= self.per_kind as u64 {
            self.kept.push(build(Anomaly::new(kind)));
        }
    }

    /// The anomalies kept, grouped by kind in [`AnomalyKind`]'s order (each
    /// kind in the order found), and the count of each kind.
    pub(super) fn into_parts(mut self) -> (Vec<Anomaly>, BTreeMap<AnomalyKind, u64>) {
        self.kept.sort_by_key(|a| a.kind);
        (self.kept, self.counts)
    }
}

/// One receiving client's counts. Message counts are of distinct message
/// ids; see the `checker` module for each definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// The client's name.
    pub client: String,
    /// `broadcast` frames received, duplicates included.
    pub deliveries: u64,
    /// Acknowledged messages it was owed.
    pub expected: u64,
    /// Attempted messages it received.
    pub ok: u64,
    /// Acknowledged messages it was owed and did not receive.
    pub lost: u64,
    /// Messages it received that nobody attempted.
    pub unexpected: u64,
    /// Deliveries of a seq it already had.
    pub duplicated_in_transit: u64,
    /// Extra seqs under which it received a message it already had.
    pub duplicated_after_dedupe: u64,
    /// Messages it received whose publishes all failed.
    pub recovered_fail: u64,
    /// Messages it received whose publish outcome was unknown.
    pub recovered_unknown: u64,
    /// Runs of owed seqs it never received.
    pub gaps: u64,
    /// Seqs in those runs.
    pub gap_seqs: u64,
    /// Deliveries below a seq it already had, outside a resume replay.
    pub order_violations: u64,
    /// Room deliveries outside its membership windows.
    #[serde(default)]
    pub leaks: u64,
}

impl ClientCounts {
    /// Nothing lost, unexpected, missing, out of order or leaked.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.unexpected == 0
            && self.gaps == 0
            && self.order_violations == 0
            && self.leaks == 0
    }
}

/// One room's counts over its receivers (the lobby has none: its counts
/// are the totals'). Per-delivery counts are summed over clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    /// The room id.
    pub room: String,
    /// Clients with a membership window of it.
    pub members: u64,
    /// Room deliveries to all clients, duplicates included.
    pub deliveries: u64,
    /// The highest seq received or stored.
    pub last_seq: u64,
    /// Acknowledged (client, message) pairs owed.
    pub expected: u64,
    /// Owed and never received.
    pub lost: u64,
    /// Deliveries of a seq the client already had.
    pub duplicated_in_transit: u64,
    /// A message id under a second seq at one client.
    pub duplicated_after_dedupe: u64,
    /// Runs of owed seqs never received.
    pub gaps: u64,
    /// First deliveries below a seq already had, outside a replay.
    pub order_violations: u64,
    /// Deliveries outside every membership window.
    pub leaks: u64,
}

/// The whole run's counts. Message counts are of distinct message ids;
/// per-delivery counts are summed over clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Publish operations.
    pub attempts: u64,
    /// Distinct message ids attempted.
    pub attempted: u64,
    /// Messages with an acknowledged attempt.
    pub acknowledged: u64,
    /// Messages whose attempts all failed.
    pub failed: u64,
    /// Messages not acknowledged with an attempt of unknown outcome.
    pub unknown: u64,
    /// Receiving clients.
    pub clients: u64,
    /// Deliveries to all clients.
    pub deliveries: u64,
    /// Attempted messages some client received or PostgreSQL holds.
    pub ok: u64,
    /// Acknowledged messages lost anywhere: to a client that was owed them,
    /// in PostgreSQL, or observed nowhere.
    pub lost: u64,
    /// Sum over clients of their lost messages.
    pub lost_deliveries: u64,
    /// Messages some client received or PostgreSQL holds that nobody
    /// attempted.
    pub unexpected: u64,
    /// Sum over clients.
    pub duplicated_in_transit: u64,
    /// Sum over clients.
    pub duplicated_after_dedupe: u64,
    /// Messages whose publishes all failed, received or stored anyway.
    pub recovered_fail: u64,
    /// Messages of unknown outcome, received or stored.
    pub recovered_unknown: u64,
    /// Sum over clients.
    pub gaps: u64,
    /// Sum over clients.
    pub gap_seqs: u64,
    /// Sum over clients.
    pub order_violations: u64,
    /// Seqs clients received under more than one message id.
    pub seq_conflicts: u64,
    /// Room deliveries to all clients (also in `deliveries`).
    #[serde(default)]
    pub room_deliveries: u64,
    /// Sum over clients of their room deliveries outside every membership
    /// window.
    #[serde(default)]
    pub leaks: u64,
}

/// What PostgreSQL holds, against the publishes and the deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCounts {
    /// Rows read.
    pub rows: u64,
    /// Acknowledged messages with no row.
    pub lost: u64,
    /// Messages stored that nobody attempted.
    pub unexpected: u64,
    /// Rows beyond the first of their message id.
    pub duplicated: u64,
    /// Rows whose seq is below an earlier row's.
    pub out_of_order: u64,
    /// Seqs held under more than one message id.
    pub seq_conflicts: u64,
    /// Seqs whose stored message differs from what clients received.
    pub mismatched: u64,
    /// Runs of known seqs with no row.
    pub gaps: u64,
    /// Seqs in those runs.
    pub gap_seqs: u64,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// No anomaly of a kind that [invalidates](AnomalyKind::invalidates):
    /// nothing lost, unexpected, missing (gaps) or out of order, at the
    /// clients or in PostgreSQL, and PostgreSQL holds each message once.
    pub valid: bool,
    /// The whole run.
    pub totals: Totals,
    /// Each receiving client, in the history's order.
    pub clients: Vec<ClientCounts>,
    /// PostgreSQL, when its rows were recorded.
    pub stored: Option<StoredCounts>,
    /// Each room, by room id (empty for a lobby-only history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<RoomCounts>,
    /// PostgreSQL's `room_messages`, when its rows were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_rooms: Option<StoredCounts>,
    /// Every acknowledged message lost anywhere, in the order first seen.
    pub lost: Vec<String>,
    /// Every message received or stored that nobody attempted.
    pub unexpected: Vec<String>,
    /// The anomalies kept: at most the checker's cap of each kind.
    pub anomalies: Vec<Anomaly>,
    /// How many anomalies of each kind there were in all.
    pub anomaly_counts: BTreeMap<AnomalyKind, u64>,
}

impl Verdict {
    /// How many anomalies of `kind` there were.
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.anomaly_counts.get(&kind).copied().unwrap_or(0)
    }

    /// The kept anomalies of `kind`.
    pub fn of_kind(&self, kind: AnomalyKind) -> impl Iterator<Item = &Anomaly> {
        self.anomalies.iter().filter(move |a| a.kind == kind)
    }

    /// One client's counts.
    pub fn client(&self, name: &str) -> Option<&ClientCounts> {
        self.clients.iter().find(|c| c.client == name)
    }

    /// One room's counts.
    pub fn room(&self, room: &str) -> Option<&RoomCounts> {
        self.rooms.iter().find(|r| r.room == room)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "history check: {} — lost {}, unexpected {}, gaps {}, order violations {}, seq conflicts {}{}",
            if self.valid { "VALID" } else { "INVALID" },
            t.lost,
            t.unexpected,
            t.gaps,
            t.order_violations,
            t.seq_conflicts,
            if self.rooms.is_empty() {
                String::new()
            } else {
                format!(", leaks {}", t.leaks)
            },
        )?;
        writeln!(
            f,
            "publishes: {} attempts of {} messages: {} acknowledged, {} failed, {} unknown",
            t.attempts, t.attempted, t.acknowledged, t.failed, t.unknown
        )?;
        writeln!(
            f,
            "clients: {}, {} deliveries: ok {}, lost {} (client×message), duplicated {} in transit / {} after dedupe, recovered {} after fail / {} after unknown, gaps {} ({} seqs), order violations {}",
            t.clients,
            t.deliveries,
            t.ok,
            t.lost_deliveries,
            t.duplicated_in_transit,
            t.duplicated_after_dedupe,
            t.recovered_fail,
            t.recovered_unknown,
            t.gaps,
            t.gap_seqs,
            t.order_violations,
        )?;
        match &self.stored {
            Some(s) => writeln!(
                f,
                "postgresql: {} rows: lost {}, unexpected {}, duplicated {}, out of order {}, seq conflicts {}, mismatched {}, gaps {} ({} seqs)",
                s.rows, s.lost, s.unexpected, s.duplicated, s.out_of_order, s.seq_conflicts, s.mismatched, s.gaps, s.gap_seqs
            )?,
            None => writeln!(f, "postgresql: not recorded")?,
        }
        self.fmt_rooms(f)?;
        for c in self.clients.iter().filter(|c| !c.is_clean()) {
            writeln!(
                f,
                "  client {}: expected {}, ok {}, lost {}, unexpected {}, gaps {} ({} seqs), order violations {}, leaks {}",
                c.client, c.expected, c.ok, c.lost, c.unexpected, c.gaps, c.gap_seqs, c.order_violations, c.leaks
            )?;
        }
        self.fmt_anomalies(f)
    }
}

impl Verdict {
    /// The rooms' lines: the sum, then each room with an anomaly.
    fn fmt_rooms(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rooms.is_empty() {
            return Ok(());
        }
        let sum = |get: fn(&RoomCounts) -> u64| self.rooms.iter().map(get).sum::<u64>();
        writeln!(
            f,
            "rooms: {}, {} room deliveries: lost {}, leaks {}, duplicated {} in transit / {} after dedupe, gaps {}, order violations {}",
            self.rooms.len(),
            sum(|r| r.deliveries),
            sum(|r| r.lost),
            sum(|r| r.leaks),
            sum(|r| r.duplicated_in_transit),
            sum(|r| r.duplicated_after_dedupe),
            sum(|r| r.gaps),
            sum(|r| r.order_violations),
        )?;
        if let Some(s) = &self.stored_rooms {
            writeln!(
                f,
                "postgresql room_messages: {} rows: lost {}, unexpected {}, duplicated {}, out of order {}, seq conflicts {}, mismatched {}, gaps {} ({} seqs)",
                s.rows, s.lost, s.unexpected, s.duplicated, s.out_of_order, s.seq_conflicts, s.mismatched, s.gaps, s.gap_seqs
            )?;
        }
        let bad = |r: &&RoomCounts| r.lost + r.leaks + r.gaps + r.order_violations > 0;
        for r in self.rooms.iter().filter(bad) {
            writeln!(
                f,
                "  room {}: members {}, expected {}, lost {}, leaks {}, gaps {}, order violations {}",
                r.room, r.members, r.expected, r.lost, r.leaks, r.gaps, r.order_violations
            )?;
        }
        Ok(())
    }

    /// The count of each kind, then the anomalies kept.
    fn fmt_anomalies(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.anomaly_counts.values().sum();
        if total == 0 {
            return Ok(());
        }
        writeln!(f, "anomalies: {} listed of {total}", self.anomalies.len())?;
        for (kind, n) in &self.anomaly_counts {
            writeln!(f, "  {:<23} {n}", kind.name())?;
        }
        for a in &self.anomalies {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}
