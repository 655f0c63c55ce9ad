//! A toxic at work on one direction of one connection: its byte-stream effect
//! and the state it keeps there (bytes passed so far, when it took hold, …).
//!
//! A stage never sleeps itself. Given an item it returns the pieces to pass on,
//! each with the instant it is due; the link waits and carries them to the next
//! stage. Latency is measured from when the proxy read the bytes (as Toxiproxy
//! does with its chunk timestamps), so delays do not pile up behind each other.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;

use crate::proxy::toxics::{LimitData, Slicer, Toxic, ToxicKind};

/// How a toxic ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseKind {
    /// Both sockets closed normally (FIN).
    Graceful,
    /// Both sockets reset (RST, `SO_LINGER` 0).
    Reset,
}

/// One thing moving along a link.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// Bytes read from the source, and when the proxy read them (pushed later
    /// by each latency stage they pass).
    Data { bytes: Bytes, stamp: Instant },
    /// The source closed its side (`reset`: it reset the connection).
    Eof { reset: bool },
    /// A toxic ends the connection.
    Close(CloseKind),
}

/// An item and the instant it may move on.
#[derive(Debug)]
pub(crate) struct Piece {
    pub due: Instant,
    pub item: Item,
}

impl Piece {
    pub fn now(item: Item, now: Instant) -> Self {
        Self { due: now, item }
    }
}

/// What a stage remembers between items.
#[derive(Debug, Clone, Copy)]
enum Memory {
    None,
    /// Bandwidth and slicer: when the stage is free to send again.
    FreeAt(Instant),
    /// Timeout: when it closes the connection (None: never, or done).
    CloseAt(Option<Instant>),
    /// Reset peer: when it resets (None: not armed yet); `fired` once done.
    ResetAt {
        at: Option<Instant>,
        fired: bool,
    },
    /// Limit data: bytes passed so far, and whether it closed.
    Passed {
        bytes: u64,
        closed: bool,
    },
    /// Limit time: when it took hold, and whether it fired.
    Since {
        at: Instant,
        fired: bool,
    },
}

/// One toxic of a link's chain.
#[derive(Debug)]
pub(crate) struct Stage {
    /// The toxic's id within its proxy.
    pub id: u64,
    /// Bumped by every update of the toxic.
    pub revision: u64,
    kind: ToxicKind,
    /// Whether this connection drew the toxic (toxicity); a stage that did
    /// not passes everything on.
    active: bool,
    memory: Memory,
}

impl Stage {
    /// The toxic taking hold of a link now.
    pub fn new(id: u64, revision: u64, toxic: &Toxic, now: Instant, rng: &mut StdRng) -> Self {
        let memory = match toxic.kind {
            ToxicKind::Bandwidth(_) | ToxicKind::Slicer(_) => Memory::FreeAt(now),
            ToxicKind::Timeout(t) => {
                Memory::CloseAt((!t.timeout.is_zero()).then(|| later(now, t.timeout)))
            }
            ToxicKind::ResetPeer(_) => Memory::ResetAt {
                at: None,
                fired: false,
            },
            ToxicKind::LimitData(_) => Memory::Passed {
                bytes: 0,
                closed: false,
            },
            ToxicKind::LimitTime(_) => Memory::Since {
                at: now,
                fired: false,
            },
            _ => Memory::None,
        };
        Self {
            id,
            revision,
            kind: toxic.kind,
            active: draw(toxic.toxicity, rng),
            memory,
        }
    }

    /// This stage after its toxic was updated: toxicity is drawn again and
    /// the state restarts (as Toxiproxy restarts the toxic), except what
    /// Toxiproxy keeps per connection (limit_data's count) and when a
    /// limit_time took hold.
    pub fn updated(&self, revision: u64, toxic: &Toxic, now: Instant, rng: &mut StdRng) -> Self {
        let mut next = Self::new(self.id, revision, toxic, now, rng);
        match (self.memory, &mut next.memory) {
            (
                Memory::Passed { bytes, closed },
                Memory::Passed {
                    bytes: b,
                    closed: c,
                },
            ) => (*b, *c) = (bytes, closed),
            (Memory::Since { at, .. }, Memory::Since { at: new_at, .. }) => *new_at = at,
            _ => {}
        }
        next
    }

    /// Whether removing the toxic must close the connection: a timeout that
    /// held this link dropped its data, so the stream cannot go on (Toxiproxy's
    /// `TimeoutToxic.Cleanup`).
    pub fn closes_on_removal(&self) -> bool {
        self.active && matches!(self.kind, ToxicKind::Timeout(_))
    }

    /// When this stage wants to act without an item arriving.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.active {
            return None;
        }
        match (self.memory, self.kind) {
            (Memory::CloseAt(at), _) => at,
            (Memory::ResetAt { at, fired: false }, _) => at,
            (Memory::Since { at, fired: false }, ToxicKind::LimitTime(l)) => {
                Some(later(at, l.time))
            }
            _ => None,
        }
    }

    /// Its deadline passed: the item it injects after itself, once.
    pub fn fire(&mut self) -> Option<Item> {
        match &mut self.memory {
            Memory::CloseAt(at) if at.is_some() => {
                *at = None;
                Some(Item::Close(CloseKind::Graceful))
            }
            Memory::ResetAt { at, fired } if at.is_some() && !*fired => {
                *fired = true;
                Some(Item::Close(CloseKind::Reset))
            }
            Memory::Since { fired, .. } if !*fired => {
                *fired = true;
                Some(Item::Close(CloseKind::Graceful))
            }
            _ => None,
        }
    }

    /// Passes `item` through the toxic at `now`, appending what comes out, in
    /// order, to `out`.
    pub fn apply(&mut self, item: Item, now: Instant, rng: &mut StdRng, out: &mut Vec<Piece>) {
        if !self.active {
            out.push(Piece::now(item, now));
            return;
        }
        match (self.kind, item) {
            (ToxicKind::Latency(l), Item::Data { bytes, stamp }) => {
                let due = shift(stamp, l.latency, jitter(l.jitter, rng));
                out.push(Piece {
                    due,
                    item: Item::Data { bytes, stamp: due },
                });
            }
            (ToxicKind::Bandwidth(b), Item::Data { bytes, stamp }) if b.rate_kb_per_sec > 0 => {
                self.pace(b.rate_kb_per_sec, bytes, stamp, now, out)
            }
            (ToxicKind::SlowClose(s), item @ (Item::Eof { .. } | Item::Close(_))) => {
                out.push(Piece {
                    due: later(now, s.delay),
                    item,
                })
            }
            (ToxicKind::Timeout(_), Item::Data { .. }) => {}
            (ToxicKind::ResetPeer(r), item) => self.arm_reset(r.timeout, item, now, out),
            (ToxicKind::Slicer(s), Item::Data { bytes, stamp }) => {
                self.slice(s, bytes, stamp, now, rng, out)
            }
            (ToxicKind::LimitData(l), Item::Data { bytes, stamp }) => {
                self.limit_data(l, bytes, stamp, now, out)
            }
            (_, item) => out.push(Piece::now(item, now)),
        }
    }

    /// Slicer: `bytes` cut into pieces of about `average_size_bytes`, `delay`
    /// apart, starting when the previous chunk's pieces are out.
    fn slice(
        &mut self,
        s: Slicer,
        bytes: Bytes,
        stamp: Instant,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<Piece>,
    ) {
        let start = self.free_at(now);
        let sizes = slice_sizes(
            bytes.len(),
            s.average_size_bytes,
            s.size_variation_bytes,
            rng,
        );
        let mut offset = 0;
        let mut due = start;
        for size in sizes {
            out.push(Piece {
                due,
                item: Item::Data {
                    bytes: bytes.slice(offset..offset + size),
                    stamp,
                },
            });
            offset += size;
            due = later(due, s.delay);
        }
        self.memory = Memory::FreeAt(due);
    }

    /// Limit data: bytes pass until `l.bytes` have, then the connection
    /// closes.
    fn limit_data(
        &mut self,
        l: LimitData,
        bytes: Bytes,
        stamp: Instant,
        now: Instant,
        out: &mut Vec<Piece>,
    ) {
        let Memory::Passed {
            bytes: passed,
            closed,
        } = &mut self.memory
        else {
            return;
        };
        if *closed {
            return;
        }
        let room = usize::try_from(l.bytes.saturating_sub(*passed)).unwrap_or(usize::MAX);
        let bytes = if bytes.len() > room {
            bytes.slice(..room)
        } else {
            bytes
        };
        *passed += bytes.len() as u64;
        if !bytes.is_empty() {
            out.push(Piece::now(Item::Data { bytes, stamp }, now));
        }
        if *passed >= l.bytes {
            *closed = true;
            out.push(Piece::now(Item::Close(CloseKind::Graceful), now));
        }
    }

    /// Bandwidth: each piece of at most 100 ms worth of bytes leaves when the
    /// previous one has had its time on the wire (Toxiproxy splits the same way).
    fn pace(
        &mut self,
        rate_kb_per_sec: u64,
        bytes: Bytes,
        stamp: Instant,
        now: Instant,
        out: &mut Vec<Piece>,
    ) {
        let bytes_per_100ms =
            usize::try_from(rate_kb_per_sec.saturating_mul(100)).unwrap_or(usize::MAX);
        let mut due = self.free_at(now);
        let mut rest = bytes;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(bytes_per_100ms));
            // rate KB/s = rate bytes/ms: len bytes take len/rate ms.
            let nanos = (piece.len() as u128 * 1_000_000) / u128::from(rate_kb_per_sec);
            due = later(
                due,
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
            );
            out.push(Piece {
                due,
                item: Item::Data {
                    bytes: piece,
                    stamp,
                },
            });
        }
        self.memory = Memory::FreeAt(due);
    }

    /// Reset peer: the first item arms it and is swallowed, as is all that
    /// follows until it fires.
    fn arm_reset(&mut self, timeout: Duration, item: Item, now: Instant, out: &mut Vec<Piece>) {
        if let Item::Close(_) = item {
            out.push(Piece::now(item, now));
            return;
        }
        if let Memory::ResetAt { at: at @ None, .. } = &mut self.memory {
            *at = Some(later(now, timeout));
        }
    }

    fn free_at(&self, now: Instant) -> Instant {
        match self.memory {
            Memory::FreeAt(t) => t.max(now),
            _ => now,
        }
    }
}

/// Whether a connection is affected by a toxic of this toxicity.
fn draw(toxicity: f32, rng: &mut StdRng) -> bool {
    if toxicity >= 1.0 {
        true
    } else if toxicity <= 0.0 || toxicity.is_nan() {
        false
    } else {
        rng.random::<f32>() < toxicity
    }
}

/// A jitter offset in whole ms, uniform in [-jitter, +jitter), as Toxiproxy.
fn jitter(jitter: Duration, rng: &mut StdRng) -> i64 {
    let j = i64::try_from(jitter.as_millis()).unwrap_or(i64::MAX / 2);
    if j <= 0 {
        0
    } else {
        rng.random_range(0..2 * j) - j
    }
}

/// `stamp + latency + offset_ms`, never before `stamp`'s own epoch allows.
fn shift(stamp: Instant, latency: Duration, offset_ms: i64) -> Instant {
    let base = later(stamp, latency);
    let offset = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        later(base, offset)
    } else {
        base.checked_sub(offset).unwrap_or(stamp)
    }
}

/// `t + d`, saturating at about 30 years from `t`.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    t.checked_add(d.min(FAR)).unwrap_or(t + FAR)
}

/// Piece sizes for a chunk of `len` bytes: halves split again, each cut point
/// moved by up to ± `variation`, until a piece is within `variation` of
/// `average` — Toxiproxy's slicing, so pieces vary evenly along the chunk.
/// An `average` of 0 is taken as 1 and `variation` is kept below `average`
/// (Toxiproxy would recurse forever or slice out of bounds there).
pub(crate) fn slice_sizes(
    len: usize,
    average: u64,
    variation: u64,
    rng: &mut StdRng,
) -> Vec<usize> {
    let average = usize::try_from(average.max(1)).unwrap_or(usize::MAX);
    let variation = usize::try_from(variation)
        .unwrap_or(usize::MAX)
        .min(average - 1);
    let mut sizes = Vec::new();
    // Ranges still to split, the leftmost on top.
    let mut todo = vec![(0usize, len)];
    while let Some((start, end)) = todo.pop() {
        let size = end - start;
        if size <= average.saturating_add(variation) {
            if size > 0 {
                sizes.push(size);
            }
            continue;
        }
        let mut mid = start + size / 2;
        if variation > 0 {
            mid = mid + rng.random_range(0..2 * variation) - variation;
        }
        todo.push((mid, end));
        todo.push((start, mid));
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::{ms, Bandwidth, Latency, LimitData};
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn data(n: usize, stamp: Instant) -> Item {
        Item::Data {
            bytes: Bytes::from(vec![b'x'; n]),
            stamp,
        }
    }

    #[test]
    fn slices_cover_the_chunk_within_bounds() {
        let mut rng = rng();
        for (len, avg, var) in [
            (1000, 64, 16),
            (1, 0, 0),
            (77, 10, 100),
            (0, 5, 1),
            (4096, 1, 0),
        ] {
            let sizes = slice_sizes(len, avg, var, &mut rng);
            assert_eq!(sizes.iter().sum::<usize>(), len);
            let max = (avg.max(1) + var.min(avg.max(1) - 1)) as usize;
            assert!(sizes.iter().all(|&s| s > 0 && s <= max), "{sizes:?}");
        }
    }

    #[test]
    fn latency_counts_from_the_read_not_from_now() {
        let t0 = Instant::now();
        let toxic = Toxic::from(Latency::ms(100));
        let mut stage = Stage::new(1, 0, &toxic, t0, &mut rng());
        let mut out = vec![];
        stage.apply(data(3, t0), t0 + ms(60), &mut rng(), &mut out);
        assert_eq!(out[0].due, t0 + ms(100));
    }

    #[test]
    fn bandwidth_paces_and_splits_into_100ms_pieces() {
        let t0 = Instant::now();
        let toxic = Toxic::from(Bandwidth {
            rate_kb_per_sec: 10,
        });
        let mut stage = Stage::new(1, 0, &toxic, t0, &mut rng());
        let mut out = vec![];
        stage.apply(data(2500, t0), t0, &mut rng(), &mut out);
        let sizes: Vec<_> = out
            .iter()
            .map(|p| match &p.item {
                Item::Data { bytes, .. } => bytes.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(out[2].due, t0 + ms(250));
    }

    #[test]
    fn limit_data_passes_the_limit_then_closes() {
        let t0 = Instant::now();
        let toxic = Toxic::from(LimitData { bytes: 5 });
        let mut stage = Stage::new(1, 0, &toxic, t0, &mut rng());
        let mut out = vec![];
        stage.apply(data(3, t0), t0, &mut rng(), &mut out);
        stage.apply(data(3, t0), t0, &mut rng(), &mut out);
        assert!(matches!(&out[1].item, Item::Data { bytes, .. } if bytes.len() == 2));
        assert!(matches!(out[2].item, Item::Close(CloseKind::Graceful)));
        let updated = stage.updated(1, &toxic, t0, &mut rng());
        assert!(matches!(
            updated.memory,
            Memory::Passed {
                bytes: 5,
                closed: true
            }
        ));
    }

    #[test]
    fn toxicity_zero_never_acts() {
        let t0 = Instant::now();
        let toxic = Toxic::from(Latency::ms(100)).toxicity(0.0);
        let mut stage = Stage::new(1, 0, &toxic, t0, &mut rng());
        let mut out = vec![];
        stage.apply(data(1, t0), t0, &mut rng(), &mut out);
        assert_eq!(out[0].due, t0);
    }
}
