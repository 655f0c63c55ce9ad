//! Per-receiver delivery accounting: which sequence numbers a client should
//! have seen, which it saw, and what was lost, duplicated or reordered; and
//! the witness check, bitsets of publisher sequences that find a message the
//! server acknowledged but a receiver never got. Pure and synchronous so
//! every case is unit-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One receiver's view of the global sequence.
///
/// The expected window is `(start_after, head]`: `start_after` is the head the
/// server announced at login, `head` the final head after the run.
#[derive(Debug, Clone)]
pub struct SeqAccount {
    /// Sequence numbers at or below this were published before the client joined.
    start_after: u64,
    /// Highest sequence number received so far (`start_after` before any).
    highest: u64,
    /// Skipped-over sequence numbers not received yet: start → end (inclusive).
    missing: BTreeMap<u64, u64>,
    /// Distinct sequence numbers received inside the window.
    distinct: u64,
    /// Deliveries of a sequence number already received.
    duplicates: u64,
    /// Deliveries that filled an earlier hole (arrived after a higher one).
    out_of_order: u64,
    /// Times the stream jumped forward over at least one sequence number.
    gaps: u64,
    /// Deliveries at or below `start_after` (not expected at all).
    before_window: u64,
}

/// The accounting totals, summable over receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTotals {
    /// Receivers counted.
    pub receivers: u64,
    /// Sum over receivers of the expected window's size.
    pub expected: u64,
    /// Distinct expected messages received.
    pub received: u64,
    /// Expected messages never received.
    pub lost: u64,
    /// Repeated deliveries of a sequence number.
    pub duplicates: u64,
    /// Deliveries that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// Forward jumps in the stream (each may cover several numbers).
    pub gaps: u64,
    /// Deliveries from before the receiver joined.
    pub before_window: u64,
    /// Deliveries past the final head (published by someone else, or late).
    pub beyond_head: u64,
    /// Receivers with at least one lost message.
    pub receivers_with_loss: u64,
}

impl DeliveryTotals {
    pub fn add(&mut self, o: &DeliveryTotals) {
        self.receivers += o.receivers;
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.gaps += o.gaps;
        self.before_window += o.before_window;
        self.beyond_head += o.beyond_head;
        self.receivers_with_loss += o.receivers_with_loss;
    }

    /// Field-wise `self - earlier` (for one step of a ramp).
    pub fn since(&self, earlier: &DeliveryTotals) -> DeliveryTotals {
        DeliveryTotals {
            receivers: self.receivers,
            expected: self.expected.saturating_sub(earlier.expected),
            received: self.received.saturating_sub(earlier.received),
            lost: self.lost.saturating_sub(earlier.lost),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            out_of_order: self.out_of_order.saturating_sub(earlier.out_of_order),
            gaps: self.gaps.saturating_sub(earlier.gaps),
            before_window: self.before_window.saturating_sub(earlier.before_window),
            beyond_head: self.beyond_head.saturating_sub(earlier.beyond_head),
            receivers_with_loss: self
                .receivers_with_loss
                .saturating_sub(earlier.receivers_with_loss),
        }
    }

    /// True when delivery broke an invariant: loss, duplicates or reordering.
    pub fn violated(&self) -> bool {
        self.lost > 0 || self.duplicates > 0 || self.out_of_order > 0
    }
}

impl SeqAccount {
    /// A receiver that joined when the head was `start_after`.
    pub fn new(start_after: u64) -> Self {
        Self {
            start_after,
            highest: start_after,
            missing: BTreeMap::new(),
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
            gaps: 0,
            before_window: 0,
        }
    }

    /// Highest sequence number received (or the join point).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The highest seq up to which every seq after the join point arrived:
    /// where a resuming login asks the server to replay from.
    pub fn contiguous(&self) -> u64 {
        match self.missing.keys().next() {
            Some(&first_hole) => first_hole - 1,
            None => self.highest,
        }
    }

    /// Records one delivery of `seq`.
    pub fn record(&mut self, seq: u64) {
        if seq <= self.start_after {
            self.before_window += 1;
        } else if seq == self.highest + 1 {
            self.highest = seq;
            self.distinct += 1;
        } else if seq > self.highest {
            self.missing.insert(self.highest + 1, seq - 1);
            self.gaps += 1;
            self.highest = seq;
            self.distinct += 1;
        } else if self.take_missing(seq) {
            self.out_of_order += 1;
            self.distinct += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Removes `seq` from the holes; false when it was not missing.
    fn take_missing(&mut self, seq: u64) -> bool {
        let Some((&start, &end)) = self.missing.range(..=seq).next_back() else {
            return false;
        };
        if seq > end {
            return false;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq - 1);
        }
        if seq < end {
            self.missing.insert(seq + 1, end);
        }
        true
    }

    /// True when every sequence number in `(start_after, head]` arrived.
    pub fn complete_up_to(&self, head: u64) -> bool {
        self.highest >= head && self.missing.range(..=head).next().is_none()
    }

    /// Totals for the window `(start_after, head]`.
    pub fn totals(&self, head: u64) -> DeliveryTotals {
        let expected = head.saturating_sub(self.start_after);
        let mut holes: u64 = 0;
        for (&s, &e) in self.missing.range(..=head) {
            holes += e.min(head) - s + 1;
        }
        let tail_missing = head.saturating_sub(self.highest);
        let lost = (holes + tail_missing).min(expected);
        let received = expected - lost;
        // Distinct deliveries above `head` are outside the window.
        let beyond_head = self.distinct.saturating_sub(received);
        DeliveryTotals {
            receivers: 1,
            expected,
            received,
            lost,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            gaps: self.gaps,
            before_window: self.before_window,
            beyond_head,
            receivers_with_loss: u64::from(lost > 0),
        }
    }

    /// Distinct sequence numbers received inside or past the window.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }
}

/// Sets bit `i` in a growable bitset of publisher sequences.
pub fn set_bit(bits: &mut Vec<u64>, i: u64) {
    let word = (i / 64) as usize;
    if word >= bits.len() {
        // Bounded by the run's message count; a wild id must not allocate gigabytes.
        if word > 64 * 1024 * 1024 {
            return;
        }
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (i % 64);
}

/// Whether bit `i` is set.
pub fn has_bit(bits: &[u64], i: u64) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Adds every bit of `other` to `bits`.
pub fn union_into(bits: &mut Vec<u64>, other: &[u64]) {
    if bits.len() < other.len() {
        bits.resize(other.len(), 0);
    }
    for (w, &b) in bits.iter_mut().zip(other.iter()) {
        *w |= b;
    }
}

/// Acknowledged publisher sequences that a witness never received.
pub fn acked_not_delivered(acked: &[u64], seen: &[u64]) -> u64 {
    acked
        .iter()
        .enumerate()
        .map(|(k, &w)| (w & !seen.get(k).copied().unwrap_or(0)).count_ones() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(start: u64, seqs: &[u64]) -> SeqAccount {
        let mut a = SeqAccount::new(start);
        for &s in seqs {
            a.record(s);
        }
        a
    }

    #[test]
    fn a_resume_starts_after_the_first_hole() {
        assert_eq!(feed(10, &[]).contiguous(), 10);
        assert_eq!(feed(10, &[11, 12, 13]).contiguous(), 13);
        assert_eq!(feed(10, &[11, 12, 15, 16]).contiguous(), 12);
        assert_eq!(feed(10, &[11, 12, 15, 13, 14]).contiguous(), 15);
    }

    #[test]
    fn clean_stream_is_clean() {
        let a = feed(10, &[11, 12, 13, 14]);
        let t = a.totals(14);
        assert_eq!(t.expected, 4);
        assert_eq!(t.received, 4);
        assert!(!t.violated());
        assert!(a.complete_up_to(14));
    }

    #[test]
    fn a_dropped_message_is_lost() {
        let a = feed(0, &[1, 2, 4, 5]);
        let t = a.totals(5);
        assert_eq!((t.lost, t.gaps, t.received), (1, 1, 4));
        assert_eq!(t.receivers_with_loss, 1);
        assert!(t.violated());
        assert!(!a.complete_up_to(5));
    }

    #[test]
    fn a_missing_tail_is_lost() {
        let t = feed(0, &[1, 2]).totals(5);
        assert_eq!(t.lost, 3);
        assert_eq!(t.gaps, 0);
    }

    #[test]
    fn a_duplicated_message_is_reported() {
        let t = feed(0, &[1, 2, 2, 3, 1]).totals(3);
        assert_eq!((t.duplicates, t.lost, t.out_of_order), (2, 0, 0));
        assert!(t.violated());
    }

    #[test]
    fn an_out_of_order_message_is_reported_not_lost() {
        let a = feed(0, &[1, 3, 2, 4]);
        let t = a.totals(4);
        assert_eq!((t.out_of_order, t.lost, t.duplicates, t.gaps), (1, 0, 0, 1));
        assert!(a.complete_up_to(4));
        // The hole is split correctly when filled in the middle.
        let t = feed(0, &[1, 6, 3, 3]).totals(6);
        assert_eq!((t.lost, t.out_of_order, t.duplicates), (3, 1, 1));
    }

    #[test]
    fn deliveries_outside_the_window_are_separate() {
        let t = feed(5, &[4, 6, 7, 8]).totals(7);
        assert_eq!(t.before_window, 1);
        assert_eq!(t.beyond_head, 1);
        assert_eq!((t.expected, t.received, t.lost), (2, 2, 0));
    }

    #[test]
    fn totals_sum_and_subtract() {
        let mut sum = DeliveryTotals::default();
        sum.add(&feed(0, &[1, 2]).totals(2));
        sum.add(&feed(0, &[2]).totals(2));
        assert_eq!((sum.receivers, sum.expected, sum.lost), (2, 4, 1));
        let later = {
            let mut s = sum;
            s.expected += 4;
            s.lost += 1;
            s
        };
        assert_eq!(later.since(&sum).lost, 1);
        assert_eq!(later.since(&sum).expected, 4);
    }

    #[test]
    fn bitsets_find_acked_but_undelivered() {
        let mut acked = Vec::new();
        let mut seen = Vec::new();
        for i in [0, 5, 64, 130] {
            set_bit(&mut acked, i);
        }
        for i in [0, 64, 130, 200] {
            set_bit(&mut seen, i);
        }
        assert!(has_bit(&seen, 200) && !has_bit(&seen, 5));
        assert_eq!(acked_not_delivered(&acked, &seen), 1);
        assert_eq!(acked_not_delivered(&acked, &[]), 4);
        let mut union = vec![1];
        union_into(&mut union, &seen);
        assert!(has_bit(&union, 0) && has_bit(&union, 200) && !has_bit(&union, 5));
    }
}
