//! Exact delivery accounting per room and membership: a member owes every
//! message of a room with `seq` in `(joined, left]` (or up to the room's
//! final head while it stays), exactly once and in `seq` order; anything it
//! gets outside those windows is a leak, as bad as a loss (design.md §10).
//! One [`MembershipLedger`] per client; the totals add up per room, per kind
//! of room (rooms, direct) and in all. Pure and synchronous, so every
//! anomaly is built by hand in the tests.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Past this many sequence numbers after its join point a delivery is not
/// tracked in the window's bitset (8 MiB of bits) but counted as a leak: no
/// room of a loadgen run gets this many messages, so such a `seq` is bogus.
const MAX_WINDOW_SEQS: u64 = 1 << 26;

/// The two kinds of room the report keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomClass {
    /// A public or private room.
    Room,
    /// A direct room of two users (`dm:<a>:<b>`).
    Direct,
}

impl RoomClass {
    /// The class of a room id (docs/PROTOCOL.md §17.1: direct ids start `dm:`).
    pub fn of(room: &str) -> Self {
        if room.starts_with("dm:") {
            RoomClass::Direct
        } else {
            RoomClass::Room
        }
    }
}

/// Accounting totals; they add up over memberships, clients and rooms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTotals {
    /// Membership windows counted (a leave and a rejoin make two).
    pub windows: u64,
    /// Messages owed: the sum of the windows' sizes.
    pub expected: u64,
    /// Distinct owed messages that arrived.
    pub received: u64,
    /// Owed messages that never arrived.
    pub lost: u64,
    /// Deliveries of a `seq` this window already had.
    pub duplicated: u64,
    /// Deliveries that arrived after a higher `seq` of the same window.
    pub out_of_order: u64,
    /// Forward jumps over at least one `seq` (each may cover several).
    pub gaps: u64,
    /// Deliveries outside every membership window: to a non-member, before
    /// the join point, after the leave point, or past the room's head.
    pub leaks: u64,
    /// Deliveries on a window's uncertain edge (a peer without join points:
    /// published while its subscribe or unsubscribe was on the way), which
    /// may or may not arrive: neither owed nor a leak.
    #[serde(default)]
    pub unsure: u64,
}

impl RoomTotals {
    pub fn add(&mut self, o: &RoomTotals) {
        self.windows += o.windows;
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.gaps += o.gaps;
        self.leaks += o.leaks;
        self.unsure += o.unsure;
    }

    /// Lost, duplicated, out of order, gaps and leaks together: 0 = exact.
    pub fn anomalies(&self) -> u64 {
        self.lost + self.duplicated + self.out_of_order + self.gaps + self.leaks
    }
}

/// One membership: `(after, end]`, what arrived in it and how.
#[derive(Debug, Clone)]
struct Window {
    /// The `joined` point: messages with a greater `seq` are owed.
    after: u64,
    /// The `left` point, once left.
    end: Option<u64>,
    /// Deliveries in `(unsure_from, after]` may come (the window's uncertain
    /// start); equal to `after` when the join point is exact.
    unsure_from: u64,
    /// Past `end`, deliveries up to this may still come (the uncertain end).
    unsure_to: Option<u64>,
    /// Bit `s - after - 1` set when `seq` s arrived.
    bits: Vec<u64>,
    /// Highest `seq` that arrived (`after` before any).
    highest: u64,
    /// Every `seq` in `(after, contiguous]` arrived.
    contiguous: u64,
    duplicated: u64,
    out_of_order: u64,
    gaps: u64,
    /// Deliveries at or below `after`, or past [`MAX_WINDOW_SEQS`].
    outside: u64,
    /// Deliveries in `(unsure_from, after]`.
    unsure_start: u64,
}

impl Window {
    fn new(after: u64) -> Self {
        Self {
            after,
            end: None,
            unsure_from: after,
            unsure_to: None,
            bits: Vec::new(),
            highest: after,
            contiguous: after,
            duplicated: 0,
            out_of_order: 0,
            gaps: 0,
            outside: 0,
            unsure_start: 0,
        }
    }

    fn has(&self, seq: u64) -> bool {
        let i = seq - self.after - 1;
        self.bits
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn take(&mut self, seq: u64) {
        if seq <= self.after && seq > self.unsure_from {
            self.unsure_start += 1;
            return;
        }
        if seq <= self.after || seq - self.after > MAX_WINDOW_SEQS {
            self.outside += 1;
            return;
        }
        if self.has(seq) {
            self.duplicated += 1;
            return;
        }
        let i = seq - self.after - 1;
        let word = (i / 64) as usize;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (i % 64);
        if seq < self.highest {
            self.out_of_order += 1;
        } else {
            if seq > self.highest + 1 {
                self.gaps += 1;
            }
            self.highest = seq;
        }
        while self.contiguous < self.highest && self.has(self.contiguous + 1) {
            self.contiguous += 1;
        }
    }

    /// Distinct `seq`s that arrived in `(after, upto]`.
    fn distinct_up_to(&self, upto: u64) -> u64 {
        let n = upto.saturating_sub(self.after);
        let full = (n / 64) as usize;
        let mut count: u64 = self
            .bits
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if let Some(w) = self.bits.get(full) {
            let rest = n % 64;
            if rest > 0 {
                count += u64::from((w & ((1u64 << rest) - 1)).count_ones());
            }
        }
        count
    }

    /// The window's totals, its end being `left` or else `head`.
    fn settle(&self, head: u64) -> RoomTotals {
        let end = self.end.unwrap_or(head).max(self.after);
        let distinct_all = self.distinct_up_to(u64::MAX);
        let received = self.distinct_up_to(end);
        let unsure_end = match self.unsure_to {
            Some(to) if self.end.is_some() => self.distinct_up_to(to.max(end)) - received,
            _ => 0,
        };
        let expected = end - self.after;
        RoomTotals {
            windows: 1,
            expected,
            received,
            lost: expected - received,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            gaps: self.gaps,
            leaks: self.outside + (distinct_all - received - unsure_end),
            unsure: self.unsure_start + unsure_end,
        }
    }
}

/// One room as one client saw it.
#[derive(Debug, Clone, Default)]
struct RoomTrack {
    /// Every membership window, the last one maybe still open.
    windows: Vec<Window>,
    /// Deliveries while the client had no open window in the room.
    stray: u64,
}

impl RoomTrack {
    fn open(&mut self) -> Option<&mut Window> {
        self.windows.last_mut().filter(|w| w.end.is_none())
    }
}

/// What one client received, room by room, with its membership windows.
#[derive(Debug, Clone, Default)]
pub struct MembershipLedger {
    rooms: HashMap<Box<str>, RoomTrack>,
    /// `left` frames for a room without an open window (a protocol slip,
    /// counted, not a delivery).
    pub unmatched_left: u64,
}

impl MembershipLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn track(&mut self, room: &str) -> &mut RoomTrack {
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.into(), RoomTrack::default());
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    /// `joined {room, seq}`: owed from `seq + 1` on. A `joined` while the
    /// window is open (a re-join as a member) keeps it.
    pub fn joined(&mut self, room: &str, seq: u64) {
        let t = self.track(room);
        if t.open().is_none() {
            t.windows.push(Window::new(seq));
        }
    }

    /// A membership whose join point is only known to lie in
    /// `(unsure_from, after]` (a peer's subscription: everything published
    /// after it was confirmed is owed, what was published while it was on
    /// the way may come or not): owed from `after + 1`, deliveries in
    /// `(unsure_from, after]` counted as unsure, below that a leak.
    pub fn joined_unsure(&mut self, room: &str, unsure_from: u64, after: u64) {
        let t = self.track(room);
        if t.open().is_none() {
            let mut w = Window::new(after);
            w.unsure_from = unsure_from.min(after);
            t.windows.push(w);
        }
    }

    /// A leave whose point is only known to lie in `[end, unsure_to]`
    /// (a peer's unsubscription: what was acknowledged before it was sent
    /// is owed, what was published before it was confirmed may come): owed
    /// up to `end`, deliveries in `(end, unsure_to]` unsure, past it a leak.
    /// False (and counted) when no window was open, as [`Self::left`].
    pub fn left_unsure(&mut self, room: &str, end: u64, unsure_to: u64) -> bool {
        match self.track(room).open() {
            Some(w) => {
                w.end = Some(end.max(w.after));
                w.unsure_to = Some(unsure_to);
                true
            }
            None => {
                self.unmatched_left += 1;
                false
            }
        }
    }

    /// `left {room, seq}`: nothing past `seq` is owed or allowed. False
    /// (and counted in [`Self::unmatched_left`]) when no window was open: a
    /// repeated `left`, which closes nothing.
    pub fn left(&mut self, room: &str, seq: u64) -> bool {
        match self.track(room).open() {
            Some(w) => {
                w.end = Some(seq.max(w.after));
                true
            }
            None => {
                self.unmatched_left += 1;
                false
            }
        }
    }

    /// A `broadcast` of `room` with its `seq`.
    pub fn delivered(&mut self, room: &str, seq: u64) {
        let t = self.track(room);
        match t.open() {
            Some(w) => w.take(seq),
            None => t.stray += 1,
        }
    }

    /// Whether every open window holds everything up to its room's head
    /// (`heads(room)`; a room without a head owes nothing more).
    pub fn complete(&self, heads: impl Fn(&str) -> Option<u64>) -> bool {
        self.rooms.iter().all(|(room, t)| {
            t.windows
                .last()
                .filter(|w| w.end.is_none())
                .is_none_or(|w| w.contiguous >= heads(room).unwrap_or(0))
        })
    }

    /// The open window of `room`: the `seq` up to which everything arrived.
    pub fn contiguous(&self, room: &str) -> Option<u64> {
        let t = self.rooms.get(room)?;
        t.windows
            .last()
            .filter(|w| w.end.is_none())
            .map(|w| w.contiguous)
    }

    /// Rooms this client has an open window in.
    pub fn open_rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms
            .iter()
            .filter(|(_, t)| t.windows.last().is_some_and(|w| w.end.is_none()))
            .map(|(r, _)| &**r)
    }

    /// Each room with an open window and the highest `seq` received in it
    /// (its join point if none): what a reconnect resumes from.
    pub fn resume_points(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.rooms.iter().filter_map(|(r, t)| {
            let w = t.windows.last().filter(|w| w.end.is_none())?;
            Some((r.to_string(), w.highest))
        })
    }

    /// Totals per room; open windows end at `heads(room)` (none: at their
    /// join point, so everything that came is a leak).
    pub fn settle(&self, heads: impl Fn(&str) -> Option<u64>) -> Vec<(String, RoomTotals)> {
        self.rooms
            .iter()
            .map(|(room, t)| {
                let head = heads(room).unwrap_or(0);
                let mut totals = RoomTotals {
                    leaks: t.stray,
                    ..Default::default()
                };
                for w in &t.windows {
                    totals.add(&w.settle(head));
                }
                (room.to_string(), totals)
            })
            .collect()
    }
}

/// A room with anomalies, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAnomaly {
    pub room: String,
    pub totals: RoomTotals,
}

/// The run's accounting: per kind of room, in total, and the worst rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAccounting {
    /// Public (and private) rooms.
    pub rooms: RoomTotals,
    /// Direct rooms.
    pub direct: RoomTotals,
    pub total: RoomTotals,
    /// Up to [`RoomAccounting::WORST`] rooms with anomalies, most first.
    pub worst: Vec<RoomAnomaly>,
}

impl RoomAccounting {
    /// Rooms named in [`Self::worst`] at most.
    pub const WORST: usize = 10;

    /// Adds up the per-room totals of every client.
    pub fn of(per_client: impl IntoIterator<Item = Vec<(String, RoomTotals)>>) -> Self {
        let mut by_room: HashMap<String, RoomTotals> = HashMap::new();
        for rooms in per_client {
            for (room, t) in rooms {
                by_room.entry(room).or_default().add(&t);
            }
        }
        let mut acc = RoomAccounting::default();
        for (room, t) in &by_room {
            match RoomClass::of(room) {
                RoomClass::Room => acc.rooms.add(t),
                RoomClass::Direct => acc.direct.add(t),
            }
            acc.total.add(t);
        }
        let mut worst: Vec<RoomAnomaly> = by_room
            .into_iter()
            .filter(|(_, t)| t.anomalies() > 0)
            .map(|(room, totals)| RoomAnomaly { room, totals })
            .collect();
        worst.sort_by(|a, b| {
            b.totals
                .anomalies()
                .cmp(&a.totals.anomalies())
                .then_with(|| a.room.cmp(&b.room))
        });
        worst.truncate(Self::WORST);
        acc.worst = worst;
        acc
    }

    /// One line per anomaly kind that is not zero, for the verdict.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, t) in [("rooms", &self.rooms), ("direct", &self.direct)] {
            for (what, n) in [
                ("lost", t.lost),
                ("duplicated", t.duplicated),
                ("out of order", t.out_of_order),
                ("gaps", t.gaps),
                ("leaked (delivered outside a membership)", t.leaks),
            ] {
                if n > 0 {
                    out.push(format!("{kind}: {n} {what}"));
                }
            }
        }
        out
    }
}

/// A room's final head for a run on rtmc: the `seq` its last message took.
/// `acked` is what the run's sends to the room had acknowledged, `at_login`
/// the head `login_ok` listed (a room that existed before the run: a direct
/// room of an earlier round), `listed` the head `rooms_list` gave at the
/// drain. A `send_ack` follows the broker's confirm, not the write of the
/// room's stream, so `listed` may still lack the last acknowledged messages
/// of a busy server: `at_login + acked` is exact for a room only the run
/// writes to, and `listed` adds a message stored without its send being
/// answered. `None` when nothing is known of the room.
pub fn final_head(acked: Option<u64>, listed: Option<u64>, at_login: Option<u64>) -> Option<u64> {
    let since_login = match (acked, at_login) {
        (None, None) => None,
        (a, l) => Some(a.unwrap_or(0) + l.unwrap_or(0)),
    };
    since_login.max(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(h: u64) -> impl Fn(&str) -> Option<u64> {
        move |_| Some(h)
    }

    fn one(l: &MembershipLedger, h: u64) -> RoomTotals {
        let mut rooms = l.settle(head(h));
        assert_eq!(rooms.len(), 1, "{rooms:?}");
        rooms.pop().unwrap().1
    }

    #[test]
    fn an_exact_window_is_clean() {
        let mut l = MembershipLedger::new();
        l.joined("a", 3);
        for s in 4..=9 {
            l.delivered("a", s);
        }
        assert!(l.complete(head(9)));
        let t = one(&l, 9);
        assert_eq!((t.expected, t.received, t.anomalies()), (6, 6, 0));
    }

    #[test]
    fn a_missing_message_is_lost_and_a_gap() {
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        for s in [1, 2, 4] {
            l.delivered("a", s);
        }
        assert!(!l.complete(head(4)));
        let t = one(&l, 4);
        assert_eq!((t.lost, t.gaps, t.out_of_order, t.leaks), (1, 1, 0, 0));
        // The tail counts too: owed up to the head.
        let t = one(&l, 6);
        assert_eq!(t.lost, 3);
    }

    #[test]
    fn a_repeat_is_a_duplicate_and_a_late_one_out_of_order() {
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        for s in [1, 3, 2, 3] {
            l.delivered("a", s);
        }
        assert!(l.complete(head(3)));
        let t = one(&l, 3);
        assert_eq!((t.lost, t.duplicated, t.out_of_order, t.gaps), (0, 1, 1, 1));
    }

    #[test]
    fn deliveries_outside_the_membership_are_leaks() {
        // To a client that never joined.
        let mut l = MembershipLedger::new();
        l.delivered("other", 1);
        assert_eq!(one(&l, 1).leaks, 1);
        // Before the join point.
        let mut l = MembershipLedger::new();
        l.joined("a", 5);
        l.delivered("a", 5);
        l.delivered("a", 6);
        let t = one(&l, 6);
        assert_eq!((t.leaks, t.lost, t.received), (1, 0, 1));
        // After `left`: nothing of the room may follow.
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        l.delivered("a", 1);
        l.left("a", 1);
        l.delivered("a", 2);
        let t = one(&l, 2);
        assert_eq!((t.expected, t.received, t.leaks, t.lost), (1, 1, 1, 0));
        // Inside the window but past the `left` point that came later.
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        l.delivered("a", 1);
        l.delivered("a", 2);
        l.left("a", 1);
        assert_eq!(one(&l, 2).leaks, 1);
        // Past the room's final head while still a member.
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        l.delivered("a", 1);
        l.delivered("a", 2);
        assert_eq!(one(&l, 1).leaks, 1);
    }

    #[test]
    fn leave_and_rejoin_owe_two_windows_and_not_the_time_between() {
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        l.delivered("a", 1);
        l.delivered("a", 2);
        assert!(l.left("a", 2));
        // A repeated `left` closes nothing and is counted.
        assert!(!l.left("a", 2));
        assert_eq!(l.unmatched_left, 1);
        // 3 and 4 were posted while away: not owed.
        l.joined("a", 4);
        l.delivered("a", 5);
        assert!(l.complete(head(5)));
        let t = one(&l, 5);
        assert_eq!(
            (t.windows, t.expected, t.received, t.anomalies()),
            (2, 3, 3, 0)
        );
        // A message of the away time delivered after the rejoin is a leak.
        l.delivered("a", 3);
        assert_eq!(one(&l, 5).leaks, 1);
        // A left window does not hold up completeness; the open one does.
        assert!(!l.complete(head(6)));
        assert_eq!(l.open_rooms().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn a_bogus_seq_does_not_allocate_and_is_a_leak() {
        let mut l = MembershipLedger::new();
        l.joined("a", 0);
        l.delivered("a", u64::MAX);
        assert_eq!(one(&l, 0).leaks, 1);
    }

    /// A faithful server's frames to one member of one room: `toggles`
    /// are the heads at which the member leaves or rejoins (alternately,
    /// starting as a member at 0); every message in a window is delivered
    /// once, in order. Returns the frames and the head.
    fn faithful(toggles: &[u64], head: u64) -> (Vec<Frame>, u64) {
        let mut frames = vec![Frame::Joined(0)];
        let mut member = true;
        let mut at = 0;
        for &t in toggles.iter().chain(std::iter::once(&head)) {
            let t = t.clamp(at, head);
            if member {
                frames.extend((at + 1..=t).map(Frame::Delivered));
            }
            if t < head || t == at {
                frames.push(if member {
                    Frame::Left(t)
                } else {
                    Frame::Joined(t)
                });
                member = !member;
            }
            at = t;
        }
        (frames, head)
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Frame {
        Joined(u64),
        Left(u64),
        Delivered(u64),
    }

    fn replay(frames: &[Frame], head: u64) -> RoomTotals {
        let mut l = MembershipLedger::new();
        for f in frames {
            match *f {
                Frame::Joined(s) => l.joined("r", s),
                Frame::Left(s) => {
                    l.left("r", s);
                }
                Frame::Delivered(s) => l.delivered("r", s),
            }
        }
        one(&l, head)
    }

    proptest::proptest! {
        /// A model run with churn: a faithful history is exact, and each
        /// single fault planted in it is found as what it is.
        #[test]
        fn a_model_run_with_churn_is_exact_and_each_fault_is_found(
            toggles in proptest::collection::vec(0u64..60, 0..8),
            head in 1u64..60,
            pick in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let mut toggles = toggles;
            toggles.sort_unstable();
            let (frames, head) = faithful(&toggles, head);
            let clean = replay(&frames, head);
            proptest::prop_assert_eq!(clean.anomalies(), 0, "{:?}", frames);
            proptest::prop_assert_eq!(clean.received, clean.expected);
            let delivered: Vec<usize> = (0..frames.len())
                .filter(|&i| matches!(frames[i], Frame::Delivered(_)))
                .collect();
            if delivered.is_empty() {
                return Ok(());
            }
            let i = delivered[pick.index(delivered.len())];
            let Frame::Delivered(seq) = frames[i] else { unreachable!() };
            // Dropped: lost.
            let mut f = frames.clone();
            f.remove(i);
            let t = replay(&f, head);
            proptest::prop_assert_eq!((t.lost, t.duplicated, t.leaks), (1, 0, 0));
            // Delivered twice: a duplicate.
            let mut f = frames.clone();
            f.insert(i + 1, Frame::Delivered(seq));
            proptest::prop_assert_eq!(replay(&f, head).duplicated, 1);
            // Two neighbours swapped: one out of order (after a gap), none lost.
            if let Some(Frame::Delivered(_)) = frames.get(i + 1) {
                let mut f = frames.clone();
                f.swap(i, i + 1);
                let t = replay(&f, head);
                proptest::prop_assert_eq!((t.out_of_order, t.gaps, t.lost), (1, 1, 0));
            }
            // A message past the head: a leak.
            let mut f = frames.clone();
            f.insert(i + 1, Frame::Delivered(head + 1));
            let t = replay(&f, head);
            proptest::prop_assert_eq!((t.leaks, t.lost), (1, 0));
        }
    }

    #[test]
    fn totals_split_by_kind_and_name_the_worst_rooms() {
        let mut a = MembershipLedger::new();
        a.joined("r1", 0);
        a.delivered("r1", 1);
        a.joined("dm:x:y", 0);
        a.delivered("dm:x:y", 2);
        let mut b = MembershipLedger::new();
        b.joined("r1", 0);
        b.delivered("r1", 1);
        b.delivered("r1", 1);
        b.delivered("dm:p:q", 1);
        let heads = |r: &str| Some(if r == "r1" { 1 } else { 2 });
        let acc = RoomAccounting::of([a.settle(heads), b.settle(heads)]);
        assert_eq!(acc.rooms.expected, 2);
        assert_eq!(acc.rooms.duplicated, 1);
        assert_eq!(acc.direct.lost, 1);
        assert_eq!(acc.direct.gaps, 1);
        assert_eq!(acc.direct.leaks, 1);
        assert_eq!(acc.total.anomalies(), 4);
        assert_eq!(acc.worst[0].room, "dm:x:y");
        assert_eq!(acc.worst.len(), 3);
        let f = acc.failures().join("; ");
        assert!(
            f.contains("rooms: 1 duplicated") && f.contains("direct: 1 lost"),
            "{f}"
        );
        assert!(f.contains("direct: 1 leaked"), "{f}");
        assert!(RoomAccounting::of([a.settle(heads)]).rooms.anomalies() == 0);
    }

    #[test]
    fn an_uncertain_start_neither_owes_nor_leaks_what_was_in_flight() {
        // Acknowledged up to 2 before the subscribe went out, published up
        // to 5 when it was confirmed: 3..=5 may come, 6.. is owed, 1..=2 not.
        let mut l = MembershipLedger::new();
        l.joined_unsure("a", 2, 5);
        for s in [4, 5, 6, 7] {
            l.delivered("a", s);
        }
        let t = one(&l, 7);
        assert_eq!(
            (t.expected, t.received, t.unsure, t.anomalies()),
            (2, 2, 2, 0)
        );
        l.delivered("a", 2);
        assert_eq!(one(&l, 7).leaks, 1);
        // Nothing of the uncertain start arriving is fine too.
        let mut l = MembershipLedger::new();
        l.joined_unsure("a", 2, 5);
        l.delivered("a", 6);
        let t = one(&l, 6);
        assert_eq!((t.unsure, t.anomalies()), (0, 0));
        // But what follows the confirmation is owed.
        assert_eq!(one(&l, 8).lost, 2);
    }

    #[test]
    fn an_uncertain_end_allows_what_was_in_flight_and_no_more() {
        // Acknowledged up to 4 when the unsubscribe went out, published up
        // to 6 when it was confirmed.
        let mut l = MembershipLedger::new();
        l.joined_unsure("a", 0, 0);
        for s in 1..=6 {
            l.delivered("a", s);
        }
        assert!(l.left_unsure("a", 4, 6));
        let t = one(&l, 9);
        assert_eq!(
            (t.expected, t.received, t.unsure, t.anomalies()),
            (4, 4, 2, 0)
        );
        let mut l = MembershipLedger::new();
        l.joined_unsure("a", 0, 0);
        for s in 1..=7 {
            l.delivered("a", s);
        }
        l.left_unsure("a", 4, 6);
        assert_eq!(
            one(&l, 9).leaks,
            1,
            "7 was published after the confirmation"
        );
        // A loss inside the owed part is still a loss.
        let mut l = MembershipLedger::new();
        l.joined_unsure("a", 0, 0);
        for s in [1, 2, 4] {
            l.delivered("a", s);
        }
        l.left_unsure("a", 4, 6);
        let t = one(&l, 9);
        assert_eq!((t.lost, t.gaps, t.leaks), (1, 1, 0));
        assert!(!l.left_unsure("a", 5, 6), "no window open any more");
    }

    #[test]
    fn the_final_head_adds_the_runs_acks_to_the_head_at_login() {
        // A room of this run: its acknowledged count (the listed head may lag).
        assert_eq!(final_head(Some(7), Some(5), None), Some(7));
        // A direct room of an earlier round, at 40 when the user logged in:
        // two sends acknowledged, the listed head still without the last one.
        assert_eq!(final_head(Some(2), Some(41), Some(40)), Some(42));
        // A send stored although never answered: the listed head covers it.
        assert_eq!(final_head(Some(2), Some(43), Some(40)), Some(43));
        assert_eq!(final_head(None, None, Some(40)), Some(40));
        assert_eq!(final_head(None, Some(3), None), Some(3));
        assert_eq!(final_head(None, None, None), None);
    }

    #[test]
    fn a_room_of_an_earlier_round_owes_what_follows_its_login_head_and_leaks_nothing() {
        // Login listed the direct room at 40; this run's two messages took
        // 41 and 42, both acknowledged; `rooms_list` at the drain said 41
        // (the consumer had not written 42 yet). Judged against the stale
        // listed head, 42 was "past the head": a leak, and the window could
        // settle before 42 came.
        let mut l = MembershipLedger::new();
        l.joined("dm:a:b", 40);
        l.delivered("dm:a:b", 41);
        assert!(l.complete(head(41)), "the stale head is met too early");
        l.delivered("dm:a:b", 42);
        assert_eq!(one(&l, 41).leaks, 1, "what the stale head made of it");
        let exact = final_head(Some(2), Some(41), Some(40));
        let t = one(&l, exact.unwrap());
        assert_eq!((t.expected, t.received, t.anomalies()), (2, 2, 0), "{t:?}");
    }
}
