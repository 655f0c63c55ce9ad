//! Judging one receiving client: its deliveries walked in arrival order
//! (duplicates in transit, order violations, duplicates after dedupe by seq),
//! then what it received against what it was owed ([`Coverage`]): ok, lost,
//! unexpected, recovered, and gaps.

use super::coverage::{Coverage, CoverageBuilder};
use super::judgement::Judgement;
use super::messages::Status;
use super::seq_table::SeqTable;
use super::verdict::{AnomalyKind, ClientCounts};
use crate::history::{ClientHistory, Delivery, MessageIx, SessionEvent, SessionEventKind};

/// Per-client working memory, reused from one client to the next.
pub(super) struct ClientScratch {
    /// Seqs received so far.
    seen: SeqTable<()>,
    /// Per message: the seq it was first received under (after dedupe by
    /// seq); `None` if not received.
    received_under: Vec<Option<u64>>,
    /// Distinct seqs received, in arrival order (sorted for the gap search).
    received: Vec<u64>,
}

impl ClientScratch {
    pub(super) fn new(judgement: &Judgement<'_>) -> ClientScratch {
        let messages = &judgement.messages;
        ClientScratch {
            seen: SeqTable::for_range(messages.seq_range, messages.observations),
            received_under: vec![None; messages.status.len()],
            received: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.seen.clear();
        self.received_under.fill(None);
        self.received.clear();
    }
}

/// Judges one client.
pub(super) fn check_client(
    j: &mut Judgement<'_>,
    scratch: &mut ClientScratch,
    client: &ClientHistory,
) -> ClientCounts {
    scratch.reset();
    let mut counts = ClientCounts {
        client: client.name.clone(),
        deliveries: client.deliveries.len() as u64,
        ..ClientCounts::default()
    };
    let coverage = walk_deliveries(j, scratch, client, &mut counts);
    tally_messages(j, scratch, client, &coverage, &mut counts);
    find_gaps(j, scratch, client, &coverage, &mut counts);
    counts
}

/// Walks deliveries and session events in the order they happened.
fn walk_deliveries(
    j: &mut Judgement<'_>,
    scratch: &mut ClientScratch,
    client: &ClientHistory,
    counts: &mut ClientCounts,
) -> Coverage {
    let mut coverage = CoverageBuilder::new(j.history.drained_at_us());
    let mut events = client.events.iter().peekable();
    let mut highest: Option<u64> = None;
    for (i, d) in client.deliveries.iter().enumerate() {
        while let Some(e) = events.next_if(|e| e.deliveries_before <= i as u64) {
            coverage.on_event(e.at_us, &e.kind);
        }
        coverage.on_delivery(d.seq);
        if scratch.seen.insert(d.seq, ()).is_some() {
            counts.duplicated_in_transit += 1;
            j.report_delivery(AnomalyKind::DuplicatedInTransit, client, d, "");
            continue;
        }
        scratch.received.push(d.seq);
        if let Some(high) = highest.filter(|&h| d.seq < h) {
            if !is_replay(events.peek().copied(), d.seq) {
                counts.order_violations += 1;
                let detail = format!("after seq {high}");
                j.report_delivery(AnomalyKind::OrderViolation, client, d, &detail);
            }
        }
        highest = highest.max(Some(d.seq));
        match scratch.received_under[d.message.index()] {
            None => scratch.received_under[d.message.index()] = Some(d.seq),
            Some(first) => {
                counts.duplicated_after_dedupe += 1;
                let detail = format!("first under seq {first}");
                j.report_delivery(AnomalyKind::DuplicatedAfterDedupe, client, d, &detail);
            }
        }
    }
    for e in events {
        coverage.on_event(e.at_us, &e.kind);
    }
    coverage.finish(j.messages.last_seq())
}

/// A delivery below the highest seen is part of a resume replay when the
/// next session event is the `resume_done` that ends it and the seq is in
/// its range.
fn is_replay(next_event: Option<&SessionEvent>, seq: u64) -> bool {
    matches!(
        next_event.map(|e| &e.kind),
        Some(&SessionEventKind::Resumed { from, head }) if from < seq && seq <= head
    )
}

/// Per message: received (ok / unexpected / recovered) and owed (lost).
fn tally_messages(
    j: &mut Judgement<'_>,
    scratch: &ClientScratch,
    client: &ClientHistory,
    coverage: &Coverage,
    counts: &mut ClientCounts,
) {
    let messages = j.history.message_ids().len() as u32;
    for m in (0..messages).map(MessageIx) {
        let received = scratch.received_under[m.index()].is_some();
        if j.messages.in_room[m.index()] {
            // A room's message: judged with the rooms, unless it came here.
            if received {
                counts.leaks += 1;
                j.report_message(
                    AnomalyKind::Leak,
                    Some(client),
                    m,
                    "a room message in the lobby",
                );
            }
            continue;
        }
        match j.messages.status[m.index()] {
            Status::NotAttempted if received => {
                counts.unexpected += 1;
                j.report_message(AnomalyKind::Unexpected, Some(client), m, "");
            }
            Status::NotAttempted => {}
            Status::Failed(_) => counts.recovered_fail += u64::from(received),
            Status::Unknown => counts.recovered_unknown += u64::from(received),
            Status::Acknowledged => {
                let owed = owed(j, coverage, m);
                counts.expected += u64::from(owed);
                j.owed[m.index()] |= owed;
                if owed && !received {
                    counts.lost += 1;
                    j.lost[m.index()] = true;
                    j.report_message(AnomalyKind::Lost, Some(client), m, "");
                }
            }
        }
        let attempted = j.messages.status[m.index()] != Status::NotAttempted;
        counts.ok += u64::from(received && attempted);
    }
}

/// Whether the client was owed acknowledged message `m`: one of its seqs is
/// in a covered window, or, nobody having received or stored it, the client
/// was connected from its first invocation through the end.
fn owed(j: &Judgement<'_>, coverage: &Coverage, m: MessageIx) -> bool {
    let mut seqs = j.messages.seqs(m).peekable();
    if seqs.peek().is_none() {
        return coverage.covers_unsequenced(j.messages.first_invoked_at_us[m.index()]);
    }
    seqs.any(|seq| coverage.covers_seq(seq))
}

/// Owed seqs never received, as runs.
fn find_gaps(
    j: &mut Judgement<'_>,
    scratch: &mut ClientScratch,
    client: &ClientHistory,
    coverage: &Coverage,
    counts: &mut ClientCounts,
) {
    scratch.received.sort_unstable();
    for window in &coverage.windows {
        for (first, last) in window.missing_runs(&scratch.received) {
            counts.gaps += 1;
            counts.gap_seqs += last - first + 1;
            j.anomalies.report(AnomalyKind::Gap, |a| {
                let a = a.client(&client.name).seqs(first, last);
                match j.messages.delivered_at_seq(first).filter(|_| first == last) {
                    Some(m) => a.message(j.history.message_id(m)),
                    None => a,
                }
            });
        }
    }
}

impl Judgement<'_> {
    /// Reports an anomaly about one delivery.
    fn report_delivery(
        &mut self,
        kind: AnomalyKind,
        client: &ClientHistory,
        d: &Delivery,
        detail: &str,
    ) {
        let history = self.history;
        self.anomalies.report(kind, |a| {
            a.client(&client.name)
                .message(history.message_id(d.message))
                .seq(d.seq)
                .observed_at(u64::from(d.received_at_ms) * 1000)
                .detail(detail)
        });
    }
}
