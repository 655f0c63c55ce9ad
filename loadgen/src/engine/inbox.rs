//! What one client has received: each read batch's deliveries counted into
//! its accounting, witness bitset and latencies, and the session events its
//! observer sees.

use rtmc::protocol::{ErrorCode, ServerFrame};

use crate::engine::accounting::{set_bit, SeqAccount};
use crate::engine::live::LiveStats;
use crate::measure::observe::ClientObserver;
use crate::wire::resp::{self, RespItem};
use crate::wire::rtmc_frames::parse_broadcast;

/// What one client has received: its accounting, its witness bitset, and the
/// latencies of the read batch at hand.
pub(super) struct Inbox {
    pub(super) account: SeqAccount,
    /// Publisher sequences of this run that arrived (witness clients only).
    pub(super) witness: Option<Vec<u64>>,
    /// Publish→receive latencies of the current read batch, µs.
    pub(super) batch_latencies_us: Vec<u64>,
    /// The code of the last `error` frame (tells a slow-consumer cut-off apart).
    pub(super) last_error: Option<ErrorCode>,
    /// Sees every session change and delivery (the chaos recorder).
    pub(super) observer: Option<Box<dyn ClientObserver>>,
    /// The `resume_from` of the login whose replay is under way.
    pub(super) resuming: Option<u64>,
    /// What the server expects back after a read batch (NATS: `PONG`,
    /// JetStream flow-control replies).
    pub(super) replies: Vec<u8>,
}

impl Inbox {
    pub(super) fn new(
        start_after: u64,
        witness: bool,
        observer: Option<Box<dyn ClientObserver>>,
    ) -> Self {
        let mut inbox = Self {
            account: SeqAccount::new(start_after),
            witness: witness.then(Vec::new),
            batch_latencies_us: Vec::with_capacity(256),
            last_error: None,
            observer,
            resuming: None,
            replies: Vec::new(),
        };
        inbox.connected(start_after, None);
        inbox
    }

    /// A login succeeded at `head`, asking to resume after `resume_from`.
    pub(super) fn connected(&mut self, head: u64, resume_from: Option<u64>) {
        self.resuming = resume_from;
        self.last_error = None;
        if let Some(o) = self.observer.as_mut() {
            o.connected(head, resume_from);
        }
    }

    /// The connection ended.
    pub(super) fn disconnected(&mut self, reason: &str) {
        if let Some(o) = self.observer.as_mut() {
            o.disconnected(reason);
        }
    }

    /// Takes one payload received at `now_us`: a broadcast by the byte scan,
    /// any other rtmc frame through serde (and every frame through serde
    /// when an observer wants the message ids).
    pub(super) fn take_payload(
        &mut self,
        p: &[u8],
        now_us: u64,
        run_id: u32,
        rtmc: bool,
        live: &LiveStats,
    ) {
        if let Some(b) = parse_broadcast(p) {
            self.account.record(b.seq);
            self.batch_latencies_us
                .push(now_us.saturating_sub(b.sent_at_us));
            if let (Some(w), Some(o)) = (self.witness.as_mut(), b.origin) {
                if o.run_id == run_id {
                    set_bit(w, o.publisher_seq);
                }
            }
            if let Some(o) = self.observer.as_mut() {
                if let Ok(ServerFrame::Broadcast(b)) = ServerFrame::parse(p) {
                    o.delivered(b.seq, &b.message_id);
                }
            }
        } else if rtmc {
            match ServerFrame::parse(p) {
                Ok(ServerFrame::Broadcast(b)) => {
                    self.account.record(b.seq);
                    self.batch_latencies_us
                        .push(now_us.saturating_sub(b.sent_at_us));
                    if let Some(o) = self.observer.as_mut() {
                        o.delivered(b.seq, &b.message_id);
                    }
                }
                Ok(ServerFrame::Error { code, .. }) => self.last_error = Some(code),
                Ok(ServerFrame::ResumeDone { last_seq, .. }) => {
                    if let (Some(o), Some(from)) = (self.observer.as_mut(), self.resuming.take()) {
                        o.resumed(from, last_seq);
                    }
                }
                Ok(_) => {}
                Err(_) => LiveStats::bump(&live.bad_frames),
            }
        } else {
            LiveStats::bump(&live.bad_frames);
        }
    }
}

/// Calls `f` with the payload of each complete `message` push; returns bytes used.
pub(super) fn resp_messages(buf: &[u8], f: &mut impl FnMut(&[u8])) -> Result<usize, ()> {
    let mut at = 0;
    loop {
        match resp::next_item(buf, at) {
            Ok(Some((RespItem::Message(p), next))) => {
                f(p);
                at = next;
            }
            Ok(Some((_, next))) => at = next,
            Ok(None) => return Ok(at),
            Err(_) => return Err(()),
        }
    }
}
