//! What a v2 client is owed in each room: its membership windows, derived
//! from its room events alone (the rooms' counterpart of `coverage.rs`).
//!
//! A membership opens at a join point — `joined {seq: P}`, or a room of
//! `login_ok.rooms` with its head — and is owed every seq above it; with
//! `resume_rooms` asking from `R`, from the lower of `R` and the head.
//! `left {seq: L}` closes it at `L`: owed up to `L`, nothing after. A
//! `resume_done {room}` owes the replay `from + 1 ..= head`.
//!
//! A connection that ends suspends the client's open memberships. The next
//! `login_ok` decides: a room it lists and resumes continues (the
//! disconnected time is covered, and what the resume skipped is a gap); any
//! other suspended membership ends at the highest seq the client was shown
//! in it (received, or announced by a join point, head or `resume_done`),
//! and a listed room not resumed opens afresh at its head. Memberships still
//! open on the connection open at the end of the run are owed every seq up
//! to the room's highest known anywhere. Disconnects at or after the moment
//! the run drained are the harness tearing clients down: they end nothing.
//!
//! A delivery while the client holds no live membership of its room (none,
//! or suspended) is a leak at once; a delivery inside a live membership
//! whose seq ends up in no window is one too (the checker looks once the
//! windows are known).

use std::collections::HashMap;

use super::seq_table::SeqWindow;
use crate::history::{RoomEventKind, RoomIx};

/// One membership, open: what it is owed so far.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Owed seqs are above this.
    low: u64,
    /// The highest seq received or announced in it.
    high: u64,
    /// When it opened (µs), for messages whose seq nobody saw.
    started_at_us: u64,
    /// On the connection open now (false: suspended by a disconnect).
    live: bool,
}

/// One room of one client.
#[derive(Debug, Default)]
struct Membership {
    open: Option<Open>,
    /// Closed windows `(after, through]`.
    windows: Vec<SeqWindow>,
}

impl Membership {
    fn close(&mut self, through: u64) {
        if let Some(open) = self.open.take() {
            if through > open.low {
                self.windows.push(SeqWindow {
                    after: open.low,
                    through,
                });
            }
        }
    }

    fn close_at_high(&mut self) {
        if let Some(open) = self.open {
            self.close(open.high);
        }
    }
}

/// Folds a client's room events and deliveries, in order, into its
/// [`RoomCoverage`].
#[derive(Debug, Default)]
pub(super) struct RoomCoverageBuilder {
    /// Disconnects from then on are teardown.
    drained_at_us: Option<u64>,
    connected: bool,
    rooms: HashMap<RoomIx, Membership>,
}

impl RoomCoverageBuilder {
    pub(super) fn new(drained_at_us: Option<u64>) -> RoomCoverageBuilder {
        RoomCoverageBuilder {
            drained_at_us,
            ..RoomCoverageBuilder::default()
        }
    }

    pub(super) fn on_event(&mut self, at_us: u64, kind: &RoomEventKind) {
        match kind {
            RoomEventKind::Connected { rooms, resume } => self.on_connected(at_us, rooms, resume),
            &RoomEventKind::Joined { room, seq } => self.on_joined(at_us, room, seq),
            &RoomEventKind::Left { room, seq } => self.membership(room).close(seq),
            &RoomEventKind::Resumed { room, from, head } => {
                let m = self.membership(room);
                m.open = Some(match m.open {
                    Some(o) => Open {
                        low: o.low.min(from),
                        high: o.high.max(head),
                        ..o
                    },
                    None => Open {
                        low: from,
                        high: head,
                        started_at_us: at_us,
                        live: true,
                    },
                });
            }
            RoomEventKind::Disconnected { .. } if self.is_teardown(at_us) => {}
            RoomEventKind::Disconnected { .. } => self.on_disconnected(),
        }
    }

    fn is_teardown(&self, at_us: u64) -> bool {
        self.drained_at_us.is_some_and(|drained| at_us >= drained)
    }

    fn membership(&mut self, room: RoomIx) -> &mut Membership {
        self.rooms.entry(room).or_default()
    }

    fn on_disconnected(&mut self) {
        self.connected = false;
        for open in self.rooms.values_mut().filter_map(|m| m.open.as_mut()) {
            open.live = false;
        }
    }

    fn on_connected(&mut self, at_us: u64, listed: &[(RoomIx, u64)], resume: &[(RoomIx, u64)]) {
        if self.connected {
            // A login without a recorded disconnect: the old one ended.
            self.on_disconnected();
        }
        self.connected = true;
        let resumed_from = |room: RoomIx| resume.iter().find(|r| r.0 == room).map(|r| r.1);
        let head_of = |room: RoomIx| listed.iter().find(|r| r.0 == room).map(|r| r.1);
        for (&room, m) in &mut self.rooms {
            match (m.open, resumed_from(room), head_of(room)) {
                (Some(o), Some(from), Some(head)) if !o.live => {
                    m.open = Some(Open {
                        low: o.low.min(from),
                        high: o.high.max(head),
                        live: true,
                        ..o
                    });
                }
                (Some(o), ..) if !o.live => m.close_at_high(),
                _ => {}
            }
        }
        for &(room, head) in listed {
            let low = resumed_from(room).map_or(head, |from| from.min(head));
            let m = self.membership(room);
            if m.open.is_none() {
                m.open = Some(Open {
                    low,
                    high: head,
                    started_at_us: at_us,
                    live: true,
                });
            }
        }
    }

    fn on_joined(&mut self, at_us: u64, room: RoomIx, seq: u64) {
        let m = self.membership(room);
        m.open = Some(match m.open {
            // A member joining again: what it was owed stays owed.
            Some(o) if o.live => Open {
                high: o.high.max(seq),
                ..o
            },
            _ => {
                m.close_at_high();
                Open {
                    low: seq,
                    high: seq,
                    started_at_us: at_us,
                    live: true,
                }
            }
        });
    }

    /// A delivery of `room`'s `seq`: raises what its live membership is
    /// owed up to. False when there is no live membership (a leak).
    pub(super) fn on_delivery(&mut self, room: RoomIx, seq: u64) -> bool {
        match self.rooms.get_mut(&room).and_then(|m| m.open.as_mut()) {
            Some(open) if open.live => {
                open.high = open.high.max(seq);
                true
            }
            _ => false,
        }
    }

    /// The coverage once every event is in; `last_seq(room)` is the highest
    /// seq of the room known anywhere.
    pub(super) fn finish(self, last_seq: impl Fn(RoomIx) -> u64) -> RoomCoverage {
        let connected = self.connected;
        let rooms = self
            .rooms
            .into_iter()
            .map(|(room, mut m)| {
                let mut open_since_us = None;
                match m.open {
                    Some(o) if o.live && connected => {
                        open_since_us = Some(o.started_at_us);
                        m.close(o.high.max(last_seq(room)));
                    }
                    _ => m.close_at_high(),
                }
                let windows = SeqWindow::merge(m.windows);
                (
                    room,
                    RoomWindows {
                        windows,
                        open_since_us,
                    },
                )
            })
            .collect();
        RoomCoverage { rooms }
    }
}

/// What a client is owed in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomWindows {
    /// The seqs it is owed: sorted, disjoint windows.
    pub(super) windows: Vec<SeqWindow>,
    /// When its membership still open at the end started, if any.
    pub(super) open_since_us: Option<u64>,
}

/// What a client is owed, per room it ever had a membership of.
#[derive(Debug, Clone, Default)]
pub(super) struct RoomCoverage {
    pub(super) rooms: HashMap<RoomIx, RoomWindows>,
}

impl RoomCoverage {
    /// Whether `room`'s `seq` is owed.
    pub(super) fn covers(&self, room: RoomIx, seq: u64) -> bool {
        self.rooms.get(&room).is_some_and(|r| {
            let i = r.windows.partition_point(|w| w.through < seq);
            r.windows.get(i).is_some_and(|w| w.after < seq)
        })
    }

    /// Whether a message of `room` with no known seq, first invoked at
    /// `invoked_at_us`, is owed: only to a member from before it through
    /// the end of the run.
    pub(super) fn covers_unsequenced(&self, room: RoomIx, invoked_at_us: u64) -> bool {
        self.rooms
            .get(&room)
            .and_then(|r| r.open_since_us)
            .is_some_and(|since| since <= invoked_at_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: RoomIx = RoomIx(0);
    const B: RoomIx = RoomIx(1);

    fn windows(c: &RoomCoverage, room: RoomIx) -> Vec<(u64, u64)> {
        let w = c.rooms.get(&room).map(|r| r.windows.clone());
        w.unwrap_or_default()
            .iter()
            .map(|w| (w.after, w.through))
            .collect()
    }

    fn connected(rooms: &[(RoomIx, u64)], resume: &[(RoomIx, u64)]) -> RoomEventKind {
        RoomEventKind::Connected {
            rooms: rooms.to_vec(),
            resume: resume.to_vec(),
        }
    }

    fn disconnected() -> RoomEventKind {
        RoomEventKind::Disconnected {
            reason: "test".to_owned(),
        }
    }

    #[test]
    fn a_join_and_a_leave_bound_the_window_and_a_rejoin_opens_another() {
        let mut b = RoomCoverageBuilder::default();
        b.on_event(0, &connected(&[], &[]));
        b.on_event(1, &RoomEventKind::Joined { room: A, seq: 3 });
        assert!(b.on_delivery(A, 4));
        assert!(!b.on_delivery(B, 1), "never joined B");
        b.on_event(2, &RoomEventKind::Left { room: A, seq: 6 });
        assert!(!b.on_delivery(A, 7), "after leaving");
        b.on_event(3, &RoomEventKind::Joined { room: A, seq: 9 });
        let c = b.finish(|_| 12);
        assert_eq!(windows(&c, A), [(3, 6), (9, 12)]);
        assert!(c.covers(A, 4) && !c.covers(A, 7) && !c.covers(B, 1));
        assert!(c.covers_unsequenced(A, 3) && !c.covers_unsequenced(A, 2));
    }

    #[test]
    fn a_resuming_login_bridges_and_a_fresh_one_ends_at_what_was_shown() {
        let mut b = RoomCoverageBuilder::default();
        b.on_event(0, &connected(&[(A, 0), (B, 10)], &[]));
        b.on_delivery(A, 2);
        b.on_delivery(B, 11);
        b.on_event(1, &disconnected());
        assert!(!b.on_delivery(A, 3), "while disconnected");
        b.on_event(2, &connected(&[(A, 5), (B, 15)], &[(A, 2)]));
        let c = b.finish(|room| if room == A { 8 } else { 20 });
        assert_eq!(windows(&c, A), [(0, 8)]);
        assert_eq!(windows(&c, B), [(10, 11), (15, 20)]);
    }

    #[test]
    fn a_client_gone_at_the_end_is_owed_up_to_what_it_was_shown() {
        let mut b = RoomCoverageBuilder::new(Some(100));
        b.on_event(0, &connected(&[(A, 0), (B, 0)], &[]));
        b.on_delivery(A, 4);
        b.on_event(50, &disconnected());
        let c = b.finish(|_| 9);
        assert_eq!(windows(&c, A), [(0, 4)]);
        assert_eq!(windows(&c, B), []);
        let mut torn_down = RoomCoverageBuilder::new(Some(100));
        torn_down.on_event(0, &connected(&[(A, 0)], &[]));
        torn_down.on_event(100, &disconnected());
        assert_eq!(windows(&torn_down.finish(|_| 9), A), [(0, 9)]);
    }
}
