//! One direction of one proxied connection: read the source, carry what was
//! read through the toxic chain of that direction, write it to the
//! destination.
//!
//! The chain is watched, not copied: adding, updating or removing a toxic
//! reaches every live link at once (Toxiproxy updates each link's chain in
//! place too). A reader task stamps chunks as they arrive and keeps reading
//! ahead (up to Toxiproxy's 1024 chunks) while the chain holds earlier ones, so
//! latency counts from the read and does not pile up. A link processes one
//! item at a time through the whole chain, so bytes never overtake each other.
//!
//! Hold and partition (turmoil's faults, not Toxiproxy's) sit at the head of
//! the chain: held bytes are buffered and delivered in one piece on release;
//! partitioned bytes are dropped, and healing closes a link that lost any (its
//! stream is corrupt), as removing Toxiproxy's `timeout` toxic does.

use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::proxy::toxics::stage::{CloseKind, Item, Piece, Stage};
use crate::proxy::toxics::Toxic;

/// Items read ahead of the chain: Toxiproxy's latency buffer.
const READ_AHEAD_ITEMS: usize = 1024;
/// Bytes asked for per read (Go's `io.Copy` buffer).
const READ_CHUNK_BYTES: usize = 32 * 1024;
/// What a held link buffers before it stops reading; TCP then pushes back on
/// the sender, which is still "held".
const HOLD_CAP_BYTES: usize = 16 << 20;

/// A toxic as a proxy's chain holds it.
#[derive(Debug)]
pub(crate) struct ToxicEntry {
    /// Unique within the proxy, for the life of the toxic.
    pub id: u64,
    /// Bumped by every update.
    pub revision: u64,
    pub toxic: Toxic,
}

/// What one direction of every connection of a proxy applies, published by
/// the proxy on a watch channel.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    pub toxics: Vec<Arc<ToxicEntry>>,
    /// Buffer everything until released.
    pub held: bool,
    /// Drop everything until healed.
    pub partitioned: bool,
}

/// What a link needs to end its whole connection.
#[derive(Clone)]
pub(crate) struct Closer {
    /// Cancelled when the connection ends; every task of it stops.
    pub token: CancellationToken,
    /// Client and server socket.
    pub sockets: [Arc<TcpStream>; 2],
}

impl Closer {
    /// Ends the connection: both sockets are dropped (closed) by their tasks.
    pub fn close(&self, kind: CloseKind) {
        if kind == CloseKind::Reset {
            for socket in &self.sockets {
                let _ = socket.set_zero_linger();
            }
        }
        self.token.cancel();
    }

    /// Ends the connection, resetting `socket` (its peer sees RST).
    fn reset(&self, socket: &TcpStream) {
        let _ = socket.set_zero_linger();
        self.token.cancel();
    }
}

/// How a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// The source closed and the close was passed on (half-close).
    Finished,
    /// Writing to the destination failed.
    Broken,
    /// The connection is being closed.
    Closed,
}

/// Runs one direction: `source` → chain → `dest`, until it ends.
pub(crate) async fn pipe(
    source: Arc<TcpStream>,
    dest: Arc<TcpStream>,
    chain: watch::Receiver<Arc<Chain>>,
    closer: Closer,
    seed: u64,
) -> LinkEnd {
    let (tx, rx) = mpsc::channel(READ_AHEAD_ITEMS);
    let stop_reading = closer.token.child_token();
    let link = Link::new(dest, closer, rx, chain, StdRng::seed_from_u64(seed));
    let reading = read_source(source, tx, stop_reading.clone());
    let running = async {
        let end = link.run().await;
        stop_reading.cancel();
        end
    };
    let ((), end) = tokio::join!(reading, running);
    end
}

/// Reads `source` into stamped items until it closes or `stop`.
async fn read_source(source: Arc<TcpStream>, tx: mpsc::Sender<Item>, stop: CancellationToken) {
    let mut buf = BytesMut::new();
    loop {
        let ready = tokio::select! {
            () = stop.cancelled() => return,
            ready = source.readable() => ready,
        };
        let read = ready.and_then(|()| {
            // Chunks share a buffer until it runs low: a small read must
            // not cost (and, queued, pin) a whole fresh buffer.
            if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 8 {
                buf.reserve(READ_CHUNK_BYTES);
            }
            source.try_read_buf(&mut buf)
        });
        let item = match read {
            Ok(0) => Item::Eof { reset: false },
            Ok(_) => Item::Data {
                bytes: buf.split().freeze(),
                stamp: Instant::now(),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => Item::Eof { reset: true },
        };
        let last = matches!(item, Item::Eof { .. });
        tokio::select! {
            () = stop.cancelled() => return,
            sent = tx.send(item) => if sent.is_err() { return },
        }
        if last {
            return;
        }
    }
}

/// Bytes a held link keeps for its release.
#[derive(Default)]
struct Held {
    data: BytesMut,
    /// When the first held bytes were read.
    stamp: Option<Instant>,
    eof: Option<Item>,
}

impl Held {
    fn push(&mut self, item: Item) {
        match item {
            Item::Data { bytes, stamp } => {
                self.stamp.get_or_insert(stamp);
                self.data.extend_from_slice(&bytes);
            }
            other => self.eof = Some(other),
        }
    }

    /// Everything held, in order: the bytes in one piece, then the close.
    fn into_items(self) -> Vec<Item> {
        let mut items = Vec::with_capacity(2);
        if let Some(stamp) = self.stamp {
            items.push(Item::Data {
                bytes: self.data.freeze(),
                stamp,
            });
        }
        items.extend(self.eof);
        items
    }
}

/// The writing side of a direction: the chain at work.
struct Link {
    dest: Arc<TcpStream>,
    closer: Closer,
    rx: mpsc::Receiver<Item>,
    chain_rx: watch::Receiver<Arc<Chain>>,
    /// The chain the stages were built from.
    chain: Arc<Chain>,
    stages: Vec<Stage>,
    /// Pieces on their way, each with the index of the stage it goes to next
    /// (`stages.len()`: the destination); the top is handled first.
    in_flight: Vec<(usize, Piece)>,
    /// Some while the direction is held.
    held: Option<Held>,
    /// A partition dropped bytes (or the close) of this link.
    dropped: bool,
    /// The source has closed; nothing more to read.
    source_done: bool,
    rng: StdRng,
}

impl Link {
    fn new(
        dest: Arc<TcpStream>,
        closer: Closer,
        rx: mpsc::Receiver<Item>,
        mut chain_rx: watch::Receiver<Arc<Chain>>,
        mut rng: StdRng,
    ) -> Self {
        let chain = chain_rx.borrow_and_update().clone();
        let now = Instant::now();
        let stages = chain
            .toxics
            .iter()
            .map(|e| Stage::new(e.id, e.revision, &e.toxic, now, &mut rng))
            .collect();
        Self {
            dest,
            closer,
            rx,
            chain_rx,
            held: chain.held.then(Held::default),
            chain,
            stages,
            in_flight: Vec::new(),
            dropped: false,
            source_done: false,
            rng,
        }
    }

    async fn run(mut self) -> LinkEnd {
        loop {
            let due = self.in_flight.last().map(|(_, piece)| piece.due);
            let deadline = self.deadline();
            let can_read = self.in_flight.is_empty() && self.can_admit();
            tokio::select! {
                biased;
                () = self.closer.token.cancelled() => return LinkEnd::Closed,
                changed = self.chain_rx.changed() => {
                    if changed.is_err() {
                        return LinkEnd::Closed; // the proxy is gone
                    }
                    let chain = self.chain_rx.borrow_and_update().clone();
                    if let Some(kind) = self.reconcile(chain) {
                        self.closer.close(kind);
                        return LinkEnd::Closed;
                    }
                }
                () = sleep_until(deadline) => self.fire_deadlines(),
                () = sleep_until(due) => {
                    if let Some((next, piece)) = self.in_flight.pop() {
                        if let Some(end) = self.advance(next, piece).await {
                            return end;
                        }
                    }
                }
                item = self.rx.recv(), if can_read => {
                    self.admit(item.unwrap_or(Item::Eof { reset: false }));
                }
            }
        }
    }

    fn can_admit(&self) -> bool {
        !self.source_done
            && self
                .held
                .as_ref()
                .is_none_or(|held| held.data.len() < HOLD_CAP_BYTES)
    }

    /// An item from the source enters the chain (or the hold, or the void).
    fn admit(&mut self, item: Item) {
        if matches!(item, Item::Eof { .. }) {
            self.source_done = true;
        }
        if let Some(held) = &mut self.held {
            held.push(item);
        } else if self.chain.partitioned {
            self.dropped = true;
        } else {
            self.in_flight.push((0, Piece::now(item, Instant::now())));
        }
    }

    /// Moves a due piece into its next stage, or out to the destination.
    async fn advance(&mut self, next: usize, piece: Piece) -> Option<LinkEnd> {
        if let Some(stage) = self.stages.get_mut(next) {
            let mut out = Vec::new();
            stage.apply(piece.item, Instant::now(), &mut self.rng, &mut out);
            self.in_flight
                .extend(out.into_iter().rev().map(|piece| (next + 1, piece)));
            return None;
        }
        match piece.item {
            Item::Data { bytes, .. } => self.write(bytes).await,
            Item::Eof { reset: false } => {
                // Pass the half-close on; the socket closes when both
                // directions are done.
                let _ = socket2::SockRef::from(&*self.dest).shutdown(Shutdown::Write);
                Some(LinkEnd::Finished)
            }
            Item::Eof { reset: true } => {
                self.closer.reset(&self.dest);
                Some(LinkEnd::Closed)
            }
            Item::Close(kind) => {
                self.closer.close(kind);
                Some(LinkEnd::Closed)
            }
        }
    }

    /// Writes `bytes` to the destination. A toxic deadline passing meanwhile
    /// wins: the rest is abandoned, as the connection is being cut.
    async fn write(&mut self, bytes: Bytes) -> Option<LinkEnd> {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                () = self.closer.token.cancelled() => return Some(LinkEnd::Closed),
                () = sleep_until(deadline) => {
                    self.fire_deadlines();
                    return None;
                }
                ready = self.dest.writable() => if ready.is_err() {
                    return Some(LinkEnd::Broken);
                },
            }
            match self.dest.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(LinkEnd::Broken),
            }
        }
        None
    }

    fn deadline(&self) -> Option<Instant> {
        self.stages.iter().filter_map(Stage::deadline).min()
    }

    /// Stages whose deadline passed inject their item (a close) after
    /// themselves.
    fn fire_deadlines(&mut self) {
        let now = Instant::now();
        for (i, stage) in self.stages.iter_mut().enumerate() {
            if stage.deadline().is_some_and(|d| d <= now) {
                if let Some(item) = stage.fire() {
                    self.in_flight.push((i + 1, Piece::now(item, now)));
                }
            }
        }
    }

    /// Brings the stages in line with a new chain: new toxics take hold,
    /// updated ones restart, removed ones go. Data a changed or removed toxic
    /// was delaying moves on at once (Toxiproxy interrupts that toxic the same
    /// way). Returns how to close the connection if the change ends it.
    fn reconcile(&mut self, chain: Arc<Chain>) -> Option<CloseKind> {
        let now = Instant::now();
        let old_ids: Vec<u64> = self.stages.iter().map(|s| s.id).collect();
        let mut old: Vec<Option<Stage>> = self.stages.drain(..).map(Some).collect();
        let mut changed = vec![true; old.len()];
        for entry in &chain.toxics {
            let found = old_ids.iter().position(|&id| id == entry.id);
            let stage = match found.and_then(|i| old[i].take().map(|s| (i, s))) {
                Some((i, stage)) if stage.revision == entry.revision => {
                    changed[i] = false;
                    stage
                }
                Some((_, stage)) => stage.updated(entry.revision, &entry.toxic, now, &mut self.rng),
                None => Stage::new(entry.id, entry.revision, &entry.toxic, now, &mut self.rng),
            };
            self.stages.push(stage);
        }
        let mut close = old
            .iter()
            .flatten()
            .any(Stage::closes_on_removal)
            .then_some(CloseKind::Graceful);

        // Pieces keep their place: the next stage is the first survivor of
        // those they had still to pass, or the first new one.
        let new_ids: Vec<u64> = self.stages.iter().map(|s| s.id).collect();
        let survivors = new_ids.iter().filter(|id| old_ids.contains(id)).count();
        for (next, piece) in &mut self.in_flight {
            if *next > 0 && changed.get(*next - 1).copied().unwrap_or(false) {
                piece.due = piece.due.min(now);
            }
            *next = if *next >= old_ids.len() {
                new_ids.len()
            } else {
                old_ids[*next..]
                    .iter()
                    .find_map(|id| new_ids.iter().position(|n| n == id))
                    .unwrap_or(survivors)
            };
        }

        match (chain.held, self.held.take()) {
            (true, held) => self.held = Some(held.unwrap_or_default()),
            (false, Some(held)) => {
                // Released bytes go after those already on their way.
                for item in held.into_items().into_iter().rev() {
                    self.in_flight.insert(0, (0, Piece::now(item, now)));
                }
            }
            (false, None) => {}
        }
        if !chain.partitioned && self.dropped {
            close = Some(CloseKind::Graceful);
        }
        self.chain = chain;
        close
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
