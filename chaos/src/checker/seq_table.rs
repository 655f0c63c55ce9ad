//! Seq-keyed bookkeeping for the checker: windows of seqs, and a table keyed
//! by seq that is a plain vector over the run's seq range when that range is
//! small (the normal case: seqs are gap-free from 1), and a hash map when a
//! stray seq far away would make the vector huge.

use std::collections::HashMap;

/// The seqs `after + 1 ..= through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SeqWindow {
    /// The last seq before the window.
    pub(super) after: u64,
    /// The last seq in it.
    pub(super) through: u64,
}

impl SeqWindow {
    /// Sorted, with overlapping and touching windows joined.
    pub(super) fn merge(mut windows: Vec<SeqWindow>) -> Vec<SeqWindow> {
        windows.sort_unstable_by_key(|w| w.after);
        let mut merged: Vec<SeqWindow> = Vec::with_capacity(windows.len());
        for w in windows {
            match merged.last_mut() {
                Some(last) if w.after <= last.through => last.through = last.through.max(w.through),
                _ => merged.push(w),
            }
        }
        merged
    }

    /// The runs of seqs from `lowest` to `highest` missing from `present`
    /// (any order, repeats allowed), as `(first, last)`.
    pub(super) fn missing_between(
        lowest: u64,
        highest: u64,
        mut present: Vec<u64>,
    ) -> Vec<(u64, u64)> {
        present.sort_unstable();
        present.dedup();
        let known = SeqWindow {
            after: lowest.saturating_sub(1),
            through: highest,
        };
        known.missing_runs(&present)
    }

    /// The runs of seqs in the window missing from `present` (sorted,
    /// distinct), as `(first, last)`.
    pub(super) fn missing_runs(self, present: &[u64]) -> Vec<(u64, u64)> {
        let start = present.partition_point(|&s| s <= self.after);
        let mut next = self.after + 1;
        let mut runs = Vec::new();
        for &seq in present[start..].iter().take_while(|&&s| s <= self.through) {
            if seq > next {
                runs.push((next, seq - 1));
            }
            match seq.checked_add(1) {
                Some(after_seq) => next = after_seq,
                None => return runs,
            }
        }
        if next <= self.through {
            runs.push((next, self.through));
        }
        runs
    }
}

/// A map from seq to `T`.
#[derive(Debug, Clone)]
pub(super) enum SeqTable<T> {
    /// Slot `seq - base` holds `seq`'s entry.
    Dense { base: u64, slots: Vec<Option<T>> },
    /// For a seq range much wider than the seqs in it.
    Sparse(HashMap<u64, T>),
}

impl<T: Copy> SeqTable<T> {
    /// A table for seqs in `lowest ..= highest`, about `entries` of them.
    pub(super) fn for_range(range: Option<(u64, u64)>, entries: usize) -> SeqTable<T> {
        match range {
            Some((lowest, highest)) if highest - lowest < 4 * entries as u64 + 1024 => {
                SeqTable::Dense {
                    base: lowest,
                    slots: vec![None; (highest - lowest + 1) as usize],
                }
            }
            _ => SeqTable::Sparse(HashMap::with_capacity(entries)),
        }
    }

    pub(super) fn get(&self, seq: u64) -> Option<T> {
        match self {
            SeqTable::Dense { base, slots } => {
                let i = usize::try_from(seq.checked_sub(*base)?).ok()?;
                slots.get(i).copied().flatten()
            }
            SeqTable::Sparse(map) => map.get(&seq).copied(),
        }
    }

    /// Sets `seq`'s entry; returns the one it replaced.
    pub(super) fn insert(&mut self, seq: u64, value: T) -> Option<T> {
        if let SeqTable::Dense { base, slots } = self {
            let slot = seq
                .checked_sub(*base)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| slots.get_mut(i));
            match slot {
                Some(slot) => return slot.replace(value),
                None => self.make_sparse(),
            }
        }
        match self {
            SeqTable::Sparse(map) => map.insert(seq, value),
            SeqTable::Dense { .. } => unreachable!("made sparse above"),
        }
    }

    /// Empties the table, keeping its memory.
    pub(super) fn clear(&mut self) {
        match self {
            SeqTable::Dense { slots, .. } => slots.fill(None),
            SeqTable::Sparse(map) => map.clear(),
        }
    }

    fn make_sparse(&mut self) {
        if let SeqTable::Dense { base, slots } = self {
            let base = *base;
            let map = slots
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((base + i as u64, (*v)?)))
                .collect();
            *self = SeqTable::Sparse(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_merge_and_report_missing_runs() {
        let w = |after, through| SeqWindow { after, through };
        assert_eq!(
            SeqWindow::merge(vec![w(10, 20), w(0, 5), w(5, 8), w(15, 30)]),
            [w(0, 8), w(10, 30)]
        );
        assert_eq!(w(2, 9).missing_runs(&[1, 3, 4, 7, 12]), [(5, 6), (8, 9)]);
        assert_eq!(w(2, 4).missing_runs(&[]), [(3, 4)]);
    }

    #[test]
    fn a_far_seq_turns_a_dense_table_sparse_and_keeps_its_entries() {
        let mut t = SeqTable::for_range(Some((1, 10)), 10);
        assert!(matches!(t, SeqTable::Dense { .. }));
        assert_eq!(t.insert(3, 'a'), None);
        assert_eq!(t.insert(3, 'b'), Some('a'));
        assert_eq!(t.insert(1 << 40, 'c'), None);
        assert!(matches!(t, SeqTable::Sparse(_)));
        assert_eq!(
            (t.get(3), t.get(1 << 40), t.get(4)),
            (Some('b'), Some('c'), None)
        );
        let wide: SeqTable<()> = SeqTable::for_range(Some((1, 1 << 40)), 10);
        assert!(matches!(wide, SeqTable::Sparse(_)));
    }
}
