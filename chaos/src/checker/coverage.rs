//! What a receiving client should have received: its covered seq windows,
//! derived from its session events alone.
//!
//! A *stretch* is a run of connections the client holds without a break in
//! what it is owed. A connection opens one at `login_ok.last_seq` (live
//! delivery starts after it), or, with `resume_from = R`, at the lower of `R`
//! and that head. A later connection continues the previous stretch (bridges
//! the disconnected time) when it resumes: by asking `resume_from` at login,
//! or by a `resume` command answered with `resume_done` on that connection.
//! A resume claims continuity whatever it asks for, so resuming from beyond
//! what the client saw leaves those seqs inside the window: they show as a
//! gap. A failed resume (`resume_unavailable`, no `resume_done`) after a
//! login with `resume_from` still bridges, for the same reason: the client
//! asked for them and never got them. A `resume_done` also owes the replay
//! `from + 1 ..= head`, even below the stretch's start.
//!
//! A stretch that ends for good (the client's final disconnect before the
//! run drained, or a reconnect that does not resume) is owed only up to the highest seq the
//! client was shown in it — received, or announced as a head by `login_ok` /
//! `resume_done`: a message sequenced later may have been sequenced after the
//! client left. The stretch still open at the end of the run is owed every
//! seq above its start, and, for an acknowledged message nobody received or
//! stored (so its seq is unknown), every message first invoked after the
//! stretch started. Disconnects at or after the moment the run drained
//! ([`crate::history::Recording::drained`]) are the harness tearing clients
//! down: they end nothing.

use super::seq_table::SeqWindow;
use crate::history::SessionEventKind;

/// One stretch: what it is owed so far.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    /// Owed seqs are above this.
    low: u64,
    /// The highest seq received or announced in it.
    high: u64,
    /// When its first connection's `login_ok` arrived (µs).
    started_at_us: u64,
}

impl Stretch {
    fn merged(self, later: Stretch) -> Stretch {
        Stretch {
            low: self.low.min(later.low),
            high: self.high.max(later.high),
            started_at_us: self.started_at_us,
        }
    }
}

/// Folds a client's session events and deliveries, in order, into its
/// [`Coverage`].
#[derive(Debug, Default)]
pub(super) struct CoverageBuilder {
    /// Disconnects from then on are teardown ([`crate::history::Recording::drained`]).
    drained_at_us: Option<u64>,
    connected: bool,
    /// The stretch of the open connection (or of the last one, once it
    /// disconnected and until the next connection decides).
    current: Option<Stretch>,
    /// The previous stretch, which the open connection started without
    /// resuming: closed when this connection ends, unless a `resume_done`
    /// on it bridges the two.
    unbridged: Option<Stretch>,
    /// Closed windows `(low, high]`.
    windows: Vec<SeqWindow>,
}

impl CoverageBuilder {
    pub(super) fn new(drained_at_us: Option<u64>) -> CoverageBuilder {
        CoverageBuilder {
            drained_at_us,
            ..CoverageBuilder::default()
        }
    }

    pub(super) fn on_event(&mut self, at_us: u64, kind: &SessionEventKind) {
        match *kind {
            SessionEventKind::Connected { head, resume_from } => {
                self.on_connected(at_us, head, resume_from)
            }
            SessionEventKind::Resumed { from, head } => self.on_resumed(at_us, from, head),
            SessionEventKind::Disconnected { .. } if self.is_teardown(at_us) => {}
            SessionEventKind::Disconnected { .. } => self.on_disconnected(),
        }
    }

    fn is_teardown(&self, at_us: u64) -> bool {
        self.drained_at_us.is_some_and(|drained| at_us >= drained)
    }

    fn on_connected(&mut self, at_us: u64, head: u64, resume_from: Option<u64>) {
        if self.connected {
            // A login without a recorded disconnect: the old one ended.
            self.on_disconnected();
        }
        self.connected = true;
        let fresh = Stretch {
            low: resume_from.map_or(head, |from| from.min(head)),
            high: head,
            started_at_us: at_us,
        };
        self.current = Some(match (self.current.take(), resume_from) {
            (Some(previous), Some(_)) => previous.merged(fresh),
            (Some(previous), None) => {
                self.unbridged = Some(previous);
                fresh
            }
            (None, _) => fresh,
        });
    }

    fn on_resumed(&mut self, at_us: u64, from: u64, head: u64) {
        if !self.connected {
            // `resume_done` without `login_ok`: count it as a resuming login.
            return self.on_connected(at_us, head, Some(from));
        }
        let replay = Stretch {
            low: from,
            high: head,
            started_at_us: at_us,
        };
        let current = self.current.map_or(replay, |c| c.merged(replay));
        self.current = Some(match self.unbridged.take() {
            Some(previous) => previous.merged(current),
            None => current,
        });
    }

    fn on_disconnected(&mut self) {
        self.connected = false;
        if let Some(previous) = self.unbridged.take() {
            self.close(previous);
        }
    }

    /// A delivery raises what the stretch it arrived in is owed up to.
    pub(super) fn on_delivery(&mut self, seq: u64) {
        if let Some(current) = &mut self.current {
            current.high = current.high.max(seq);
        }
    }

    fn close(&mut self, stretch: Stretch) {
        if stretch.high > stretch.low {
            self.windows.push(SeqWindow {
                after: stretch.low,
                through: stretch.high,
            });
        }
    }

    /// The coverage once every event is in; `last_seq` is the highest seq
    /// known anywhere (the end of the window still open).
    pub(super) fn finish(mut self, last_seq: u64) -> Coverage {
        if let Some(previous) = self.unbridged.take() {
            self.close(previous);
        }
        let mut open_since_us = None;
        if let Some(current) = self.current.take() {
            if self.connected {
                open_since_us = Some(current.started_at_us);
                self.close(Stretch {
                    high: last_seq.max(current.high),
                    ..current
                });
            } else {
                self.close(current);
            }
        }
        Coverage {
            windows: SeqWindow::merge(self.windows),
            open_since_us,
        }
    }
}

/// What a client should have received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Coverage {
    /// The seqs it is owed: sorted, disjoint windows.
    pub(super) windows: Vec<SeqWindow>,
    /// When its stretch still open at the end of the run started, if it was
    /// connected at the end.
    pub(super) open_since_us: Option<u64>,
}

impl Coverage {
    /// Whether seq `seq` is owed.
    pub(super) fn covers_seq(&self, seq: u64) -> bool {
        let i = self.windows.partition_point(|w| w.through < seq);
        self.windows.get(i).is_some_and(|w| w.after < seq)
    }

    /// Whether a message with no known seq, first invoked at
    /// `invoked_at_us`, is owed: only to a client connected from before it
    /// through the end of the run.
    pub(super) fn covers_unsequenced(&self, invoked_at_us: u64) -> bool {
        self.open_since_us
            .is_some_and(|since| since <= invoked_at_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(head: u64, resume_from: Option<u64>) -> SessionEventKind {
        SessionEventKind::Connected { head, resume_from }
    }

    fn disconnected() -> SessionEventKind {
        SessionEventKind::Disconnected {
            reason: "test".to_owned(),
        }
    }

    fn windows(c: &Coverage) -> Vec<(u64, u64)> {
        c.windows.iter().map(|w| (w.after, w.through)).collect()
    }

    #[test]
    fn a_client_connected_to_the_end_is_owed_everything_after_its_login_head() {
        let mut b = CoverageBuilder::default();
        b.on_event(5, &connected(10, None));
        let c = b.finish(40);
        assert_eq!(windows(&c), [(10, 40)]);
        assert!(!c.covers_seq(10) && c.covers_seq(11) && c.covers_seq(40));
        assert!(c.covers_unsequenced(5) && !c.covers_unsequenced(4));
    }

    #[test]
    fn a_leaver_is_owed_up_to_what_it_was_shown() {
        let mut b = CoverageBuilder::default();
        b.on_event(0, &connected(10, None));
        b.on_delivery(11);
        b.on_delivery(14);
        b.on_event(9, &disconnected());
        let c = b.finish(40);
        assert_eq!(windows(&c), [(10, 14)]);
        assert!(!c.covers_unsequenced(1));
    }

    #[test]
    fn a_resume_bridges_the_disconnected_time_and_a_fresh_login_does_not() {
        let mut b = CoverageBuilder::default();
        b.on_event(0, &connected(0, None));
        b.on_delivery(3);
        b.on_event(1, &disconnected());
        b.on_event(2, &connected(8, Some(3)));
        b.on_event(3, &SessionEventKind::Resumed { from: 3, head: 8 });
        b.on_event(4, &disconnected());
        b.on_event(5, &connected(20, None));
        let c = b.finish(30);
        assert_eq!(windows(&c), [(0, 8), (20, 30)]);
        assert_eq!(c.open_since_us, Some(5));
    }

    #[test]
    fn a_resume_command_after_a_fresh_login_bridges_too() {
        let mut b = CoverageBuilder::default();
        b.on_event(0, &connected(0, None));
        b.on_delivery(3);
        b.on_event(1, &disconnected());
        b.on_event(2, &connected(8, None));
        b.on_event(3, &SessionEventKind::Resumed { from: 3, head: 9 });
        let c = b.finish(12);
        assert_eq!(windows(&c), [(0, 12)]);
        assert_eq!(c.open_since_us, Some(0));
    }
}
