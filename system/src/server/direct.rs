//! Direct delivery: the fan-out writes new messages to idle sessions itself,
//! without waking their writer tasks.
//!
//! A session's writer that has nothing to write parks: it moves its socket's
//! write half and its ring receiver into its [`Lane`] and sleeps on its
//! control channel and the lane's wake-up. After each broadcast the fan-out
//! wakes its pump task(s) (`server.direct_pumps`, each with its shard of the
//! sessions; one by default, see ARCHITECTURE.md "Fan-out cost"). A pump
//! walks its lanes and, for every parked one, drains the receiver and writes
//! the new frames with one non-blocking write (`send`, or `writev` for
//! several): no task wake-up, no copy, one syscall per session. A write the
//! kernel does not take whole (a full socket buffer), a lag past the ring,
//! or a failed write hands the lane back: what was not written goes to the
//! writer, which finishes it under the write timeout (the slow-consumer rule
//! is the writer's, as before).
//!
//! Order holds because a lane is written by one side at a time: the pump
//! only while the socket is parked in it, the writer only after taking it
//! back, both under the lane's lock, and both read the same receiver.
//! Plain-TCP sessions use it; TLS sessions (whose writes go through the
//! TLS state) keep their writer task for every frame.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::stream::Delivery;

/// Frames one write takes at most (one `writev`).
const MAX_FRAMES_PER_WRITE: usize = 64;
/// Writes one pump gives a lane before moving on (bounds one lane's turn).
const MAX_WRITES_PER_TURN: usize = 4;
/// Lanes a pump walks before yielding to the runtime.
const LANES_PER_CHUNK: usize = 256;
/// One queue-depth sample per this many lanes pumped.
const SAMPLE_EVERY_LANES: u64 = 16;

/// A socket write half the pump can write without blocking.
pub trait DirectWrite: Send + 'static {
    /// Writes what the kernel takes now; `WouldBlock` when nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// The same for several buffers, in order, in one call.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl DirectWrite for tokio::net::tcp::OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::tcp::OwnedWriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        tokio::net::tcp::OwnedWriteHalf::try_write_vectored(self, bufs)
    }
}

/// Where a session's writer parks its socket and receiver while idle.
pub struct Lane<W> {
    state: Mutex<LaneState<W>>,
    /// Wakes the parked writer when the pump hands the lane back.
    pub(super) wake: Notify,
}

/// A lane's contents; `sock` is `Some` exactly while the writer is parked.
pub(super) struct LaneState<W> {
    pub sock: Option<W>,
    pub rx: Option<broadcast::Receiver<Delivery>>,
    /// The last sequence number written (or handed back in `rest`).
    pub last: u64,
    /// Bytes the pump could not write; the writer writes them first.
    pub rest: Option<Bytes>,
    /// Frames in `rest` (for the deliveries counter).
    pub rest_frames: u64,
    /// The receiver lagged past the ring while parked: a slow consumer.
    pub lagged: bool,
}

impl<W> Lane<W> {
    fn new() -> Self {
        Self {
            state: Mutex::new(LaneState {
                sock: None,
                rx: None,
                last: 0,
                rest: None,
                rest_frames: 0,
                lagged: false,
            }),
            wake: Notify::new(),
        }
    }

    /// The lane's state; the pump and the writer take turns through it.
    pub(super) fn lock(&self) -> MutexGuard<'_, LaneState<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a pump does to one lane.
trait Pump: Send + Sync {
    /// Writes the frames queued for a parked lane; returns how many went
    /// out whole. `depth` gets the receiver's backlog when sampled.
    fn pump(&self, scratch: &mut Vec<Bytes>, depth: Option<&metrics::Histogram>) -> u64;
}

impl<W: DirectWrite> Pump for Lane<W> {
    fn pump(&self, scratch: &mut Vec<Bytes>, depth: Option<&metrics::Histogram>) -> u64 {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (Some(sock), Some(rx)) = (st.sock.as_ref(), st.rx.as_mut()) else {
            return 0;
        };
        if st.rest.is_some() || st.lagged {
            return 0;
        }
        if let Some(h) = depth {
            h.record(rx.len() as f64);
        }
        let mut delivered = 0;
        for _ in 0..MAX_WRITES_PER_TURN {
            scratch.clear();
            let mut last = st.last;
            while scratch.len() < MAX_FRAMES_PER_WRITE {
                match rx.try_recv() {
                    Ok(d) if d.seq <= last => {}
                    Ok(d) => {
                        last = d.seq;
                        scratch.push(d.frame);
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        st.lagged = true;
                        self.wake.notify_one();
                        return delivered;
                    }
                    Err(_) => break,
                }
            }
            if scratch.is_empty() {
                return delivered;
            }
            st.last = last;
            let total: usize = scratch.iter().map(Bytes::len).sum();
            let written = write_frames(sock, scratch);
            match written {
                Ok(n) if n == total => delivered += scratch.len() as u64,
                // Part written, or nothing (a full buffer; a failed socket
                // fails the writer's own write): the rest is the writer's.
                Ok(n) => return delivered + self.hand_back(st, scratch, n),
                Err(_) => return delivered + self.hand_back(st, scratch, 0),
            }
            if scratch.len() < MAX_FRAMES_PER_WRITE {
                return delivered;
            }
        }
        delivered
    }
}

impl<W> Lane<W> {
    /// Gives the writer what was not written of `frames` (from byte
    /// `written` on) and wakes it; returns the frames written whole.
    fn hand_back(&self, st: &mut LaneState<W>, frames: &[Bytes], mut written: usize) -> u64 {
        let mut whole = 0;
        let mut left = frames;
        while let Some((f, tail)) = left.split_first() {
            if written < f.len() {
                break;
            }
            written -= f.len();
            whole += 1;
            left = tail;
        }
        st.rest_frames = left.len() as u64;
        st.rest = Some(match left {
            [one] => one.slice(written..),
            _ => {
                let mut b = BytesMut::with_capacity(left.iter().map(Bytes::len).sum());
                for f in left {
                    b.extend_from_slice(f);
                }
                b.freeze().slice(written..)
            }
        });
        self.wake.notify_one();
        whole
    }
}

/// One write of `frames` (at most [`MAX_FRAMES_PER_WRITE`]): a lone frame
/// with `send` (a `writev` goes through the VFS layer: under perf at 10k
/// sessions it cost `vfs_writev` 5 % and `fdget_pos` 3 % of the server's
/// CPU, which `send` does not pay), several with one `writev`.
fn write_frames<W: DirectWrite>(sock: &W, frames: &[Bytes]) -> io::Result<usize> {
    if let [one] = frames {
        return sock.try_write(one);
    }
    let mut iov = [IoSlice::new(&[]); MAX_FRAMES_PER_WRITE];
    for (slot, f) in iov.iter_mut().zip(frames) {
        *slot = IoSlice::new(f);
    }
    sock.try_write_vectored(&iov[..frames.len()])
}

/// Lanes of one shard, in slots reused after a session ends.
#[derive(Default)]
struct Slots {
    lanes: Vec<Option<Arc<dyn Pump>>>,
    free: Vec<usize>,
}

#[derive(Default)]
struct Shard {
    slots: Mutex<Slots>,
    /// Set by every broadcast; the pump walks the shard once per wake.
    wake: Notify,
}

impl Shard {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fan-out's direct-delivery side: empty until started.
#[derive(Default)]
pub struct Direct {
    shards: OnceLock<Box<[Shard]>>,
    next: AtomicUsize,
}

/// A registered lane; unregisters itself when dropped.
pub struct LaneHandle<W> {
    lane: Arc<Lane<W>>,
    direct: Arc<Direct>,
    shard: usize,
    slot: usize,
}

impl<W> std::ops::Deref for LaneHandle<W> {
    type Target = Lane<W>;
    fn deref(&self) -> &Lane<W> {
        &self.lane
    }
}

impl<W> Drop for LaneHandle<W> {
    fn drop(&mut self) {
        if let Some(shards) = self.direct.shards.get() {
            let mut s = shards[self.shard].slots();
            s.lanes[self.slot] = None;
            s.free.push(self.slot);
        }
    }
}

impl Direct {
    /// Starts one pump per shard (`shards` of them) on `tasks` until `stop`.
    /// Only the first call starts anything.
    pub fn start(self: &Arc<Self>, shards: usize, tasks: &TaskTracker, stop: &CancellationToken) {
        let mut started = false;
        self.shards.get_or_init(|| {
            started = true;
            (0..shards.max(1)).map(|_| Shard::default()).collect()
        });
        if !started {
            return;
        }
        for i in 0..self.shards.get().map_or(0, |s| s.len()) {
            tasks.spawn(pump_shard(self.clone(), i, stop.clone()));
        }
    }

    /// Wakes every shard's pump: a broadcast was put into the ring.
    pub fn notify(&self) {
        if let Some(shards) = self.shards.get() {
            for s in shards.iter() {
                s.wake.notify_one();
            }
        }
    }

    /// Lanes registered, all shards together.
    pub fn lanes(&self) -> usize {
        self.shards.get().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.slots().lanes.iter().flatten().count())
                .sum()
        })
    }

    /// A new lane for one session's writer, or `None` when direct delivery
    /// is not running.
    pub fn register<W: DirectWrite>(self: &Arc<Self>) -> Option<LaneHandle<W>> {
        let shards = self.shards.get()?;
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        let lane = Arc::new(Lane::new());
        let mut s = shards[shard].slots();
        let pump: Arc<dyn Pump> = lane.clone();
        let slot = match s.free.pop() {
            Some(i) => {
                s.lanes[i] = Some(pump);
                i
            }
            None => {
                s.lanes.push(Some(pump));
                s.lanes.len() - 1
            }
        };
        drop(s);
        Some(LaneHandle {
            lane,
            direct: self.clone(),
            shard,
            slot,
        })
    }

    /// Pumps lanes `from..from + LANES_PER_CHUNK` of one shard; returns the
    /// frames written and whether lanes remain after the chunk.
    fn pump_chunk(
        &self,
        shard: &Shard,
        from: usize,
        scratch: &mut Vec<Bytes>,
        depth: &metrics::Histogram,
        pumped: &mut u64,
    ) -> (u64, bool) {
        let s = shard.slots();
        let end = (from + LANES_PER_CHUNK).min(s.lanes.len());
        let mut delivered = 0;
        for lane in s.lanes[from.min(end)..end].iter().flatten() {
            *pumped += 1;
            let sample = pumped.is_multiple_of(SAMPLE_EVERY_LANES).then_some(depth);
            delivered += lane.pump(scratch, sample);
        }
        (delivered, end < s.lanes.len())
    }
}

/// One shard's pump: after every wake, walks the shard's lanes in chunks.
async fn pump_shard(direct: Arc<Direct>, shard: usize, stop: CancellationToken) {
    let Some(shards) = direct.shards.get() else {
        return;
    };
    let shard = &shards[shard];
    let deliveries = metrics::counter!("rtmc_deliveries_total");
    let depth = metrics::histogram!("rtmc_outbound_queue_frames");
    let mut scratch = Vec::with_capacity(MAX_FRAMES_PER_WRITE);
    let mut pumped = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = shard.wake.notified() => {}
        }
        let mut from = 0;
        loop {
            let (n, more) = direct.pump_chunk(shard, from, &mut scratch, &depth, &mut pumped);
            if n > 0 {
                deliveries.increment(n);
            }
            if !more {
                break;
            }
            from += LANES_PER_CHUNK;
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWrite};
    use tokio::sync::mpsc;

    use super::super::fanout::Fanout;
    use super::super::outbound::{self, Outbound, Subscription, WriterEnd};
    use super::*;

    /// What a test socket saw: every byte in order, and which side wrote.
    #[derive(Default)]
    struct Seen {
        bytes: Vec<u8>,
        by_pump: usize,
        by_writer: usize,
    }

    /// A socket both sides can write. `pump_script` says, per pump write,
    /// how many bytes the kernel takes (`None`: `WouldBlock`); once it runs
    /// out, every write is taken whole. The writer's writes always are.
    #[derive(Clone, Default)]
    struct TestSock {
        seen: Arc<Mutex<Seen>>,
        pump_script: Arc<Mutex<Vec<Option<usize>>>>,
    }

    impl TestSock {
        fn with_pump_script(mut script: Vec<Option<usize>>) -> Self {
            script.reverse();
            let s = Self::default();
            *s.pump_script.lock().unwrap() = script;
            s
        }

        fn seen(&self) -> MutexGuard<'_, Seen> {
            self.seen.lock().unwrap()
        }
    }

    impl DirectWrite for TestSock {
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.try_write_vectored(&[IoSlice::new(buf)])
        }

        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = match self.pump_script.lock().unwrap().pop() {
                Some(None) => return Err(io::ErrorKind::WouldBlock.into()),
                Some(Some(n)) => n.min(all.len()),
                None => all.len(),
            };
            let mut seen = self.seen();
            seen.bytes.extend_from_slice(&all[..n]);
            seen.by_pump += 1;
            Ok(n)
        }
    }

    impl AsyncWrite for TestSock {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut seen = self.seen();
            seen.bytes.extend_from_slice(buf);
            seen.by_writer += 1;
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn delivery(seq: u64) -> Delivery {
        Delivery {
            seq,
            frame: Bytes::from(format!("<{seq}>")),
        }
    }

    fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        seqs.flat_map(|s| format!("<{s}>").into_bytes()).collect()
    }

    /// A started fan-out (ring of `ring` entries) and one subscribed
    /// session writer with a lane on `sock`.
    struct Setup {
        fanout: Fanout,
        control: mpsc::Sender<Outbound>,
        writer: tokio::task::JoinHandle<WriterEnd>,
        stop: CancellationToken,
    }

    /// A session's writer on `sock` (parking in `lane` if any), subscribed
    /// to the ring as `login` does.
    async fn subscribed_writer<W: AsyncWrite + Unpin + Send + 'static>(
        fanout: Fanout,
        sock: W,
        write_timeout: Duration,
        lane: Option<LaneHandle<W>>,
    ) -> (mpsc::Sender<Outbound>, tokio::task::JoinHandle<WriterEnd>) {
        let (control, rx) = mpsc::channel(8);
        let writer = tokio::spawn(outbound::run(
            sock,
            rx,
            write_timeout,
            CancellationToken::new(),
            lane,
        ));
        let (live, up_to) = fanout.subscribe();
        let sub = Subscription {
            replay: Vec::new(),
            done: None,
            rx: live,
            up_to,
        };
        control
            .send(Outbound::Subscribe(Box::new(sub)))
            .await
            .unwrap();
        (control, writer)
    }

    async fn setup(sock: TestSock, ring: usize) -> Setup {
        let fanout = Fanout::new(ring, 0);
        let stop = CancellationToken::new();
        fanout.start_direct(1, &TaskTracker::new(), &stop);
        let lane = fanout.lane::<TestSock>();
        assert!(lane.is_some(), "a started fan-out gives lanes");
        assert_eq!(fanout.direct_lanes(), 1);
        let (control, writer) =
            subscribed_writer(fanout.clone(), sock, Duration::from_secs(5), lane).await;
        settle().await;
        Setup {
            fanout,
            control,
            writer,
            stop,
        }
    }

    /// Lets every ready task run (current-thread runtime).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn an_idle_session_gets_broadcasts_from_the_pump_without_its_writer() {
        let sock = TestSock::default();
        let s = setup(sock.clone(), 64).await;
        for seq in 1..=3 {
            s.fanout.publish(delivery(seq));
            settle().await;
        }
        {
            let seen = sock.seen();
            assert_eq!(seen.bytes, expected(1..=3));
            assert_eq!(seen.by_pump, 3, "one pump write per broadcast");
            assert_eq!(seen.by_writer, 0, "the parked writer wrote nothing");
        }
        // A reply wakes the writer; broadcasts after it go direct again.
        s.control
            .send(Outbound::Frame(Bytes::from_static(b"[reply]")))
            .await
            .unwrap();
        settle().await;
        s.fanout.publish(delivery(4));
        settle().await;
        let seen = sock.seen();
        let mut want = expected(1..=3);
        want.extend_from_slice(b"[reply]");
        want.extend_from_slice(&expected(4..=4));
        assert_eq!(seen.bytes, want);
        assert_eq!((seen.by_pump, seen.by_writer), (4, 1));
        s.stop.cancel();
    }

    #[tokio::test]
    async fn a_burst_goes_out_in_one_write_per_session() {
        let sock = TestSock::default();
        let s = setup(sock.clone(), 64).await;
        for seq in 1..=10 {
            s.fanout.publish(delivery(seq));
        }
        settle().await;
        let seen = sock.seen();
        assert_eq!(seen.bytes, expected(1..=10));
        assert_eq!(seen.by_pump, 1);
        s.stop.cancel();
    }

    #[tokio::test]
    async fn what_the_kernel_does_not_take_is_finished_by_the_writer_in_order() {
        // The first pump write takes 5 bytes (cutting a frame), the next
        // finds the buffer full; the writer finishes both, then parks again.
        let sock = TestSock::with_pump_script(vec![Some(5), None]);
        let s = setup(sock.clone(), 64).await;
        for seq in 1..=3 {
            s.fanout.publish(delivery(seq));
        }
        settle().await;
        s.fanout.publish(delivery(4));
        settle().await;
        for seq in 5..=6 {
            s.fanout.publish(delivery(seq));
            settle().await;
        }
        let seen = sock.seen();
        assert_eq!(
            seen.bytes,
            expected(1..=6),
            "nothing lost, nothing reordered"
        );
        assert!(seen.by_writer >= 1, "the writer finished the cut write");
        assert!(seen.by_pump >= 3, "the pump took over again once idle");
        s.stop.cancel();
    }

    #[tokio::test]
    async fn a_parked_session_that_lags_past_the_ring_is_a_slow_consumer() {
        let sock = TestSock::default();
        let s = setup(sock.clone(), 16).await;
        // More than the ring holds before the pump runs once.
        for seq in 1..=40 {
            s.fanout.publish(delivery(seq));
        }
        settle().await;
        let end = tokio::time::timeout(Duration::from_secs(5), s.writer)
            .await
            .expect("the writer ends")
            .unwrap();
        assert_eq!(end, WriterEnd::SlowConsumer);
        let seen = String::from_utf8_lossy(&sock.seen().bytes).into_owned();
        assert!(
            seen.contains("slow_consumer"),
            "the reason is written: {seen}"
        );
        s.stop.cancel();
    }

    #[tokio::test]
    async fn a_closed_session_ends_its_parked_writer_and_frees_its_slot() {
        let sock = TestSock::default();
        let s = setup(sock.clone(), 16).await;
        let Setup {
            fanout,
            control,
            writer,
            stop,
        } = s;
        drop(control);
        let end = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer ends")
            .unwrap();
        assert_eq!(end, WriterEnd::Closed);
        assert_eq!(fanout.direct_lanes(), 0, "the lane was unregistered");
        let again = fanout.lane::<TestSock>();
        assert_eq!(fanout.direct_lanes(), 1, "a new lane reuses the freed slot");
        drop(again);
        // A publish after the session ended writes nothing anywhere.
        fanout.publish(delivery(1));
        settle().await;
        assert!(sock.seen().bytes.is_empty());
        stop.cancel();
    }

    #[test]
    fn without_start_there_are_no_lanes() {
        let fanout = Fanout::new(16, 0);
        assert!(fanout.lane::<TestSock>().is_none());
    }

    /// A session over real loopback TCP: the server end's writer (with a
    /// lane when `direct`), and the client end.
    async fn tcp_session(
        fanout: &Fanout,
        direct: bool,
        write_timeout: Duration,
    ) -> (
        mpsc::Sender<Outbound>,
        tokio::task::JoinHandle<WriterEnd>,
        tokio::net::TcpStream,
        tokio::net::tcp::OwnedReadHalf,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.unwrap();
        server.set_nodelay(true).unwrap();
        let (read, write) = server.into_split();
        let lane = if direct { fanout.lane() } else { None };
        assert_eq!(lane.is_some(), direct);
        let (control, writer) = subscribed_writer(fanout.clone(), write, write_timeout, lane).await;
        (control, writer, client.unwrap(), read)
    }

    /// A frame of `seq` whose size varies from a few bytes to a few KiB.
    fn sized(seq: u64) -> Delivery {
        let body = format!("<{seq}:{}>", "x".repeat((seq as usize * 37) % 3000));
        Delivery {
            seq,
            frame: Bytes::from(body),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_sockets_get_every_broadcast_in_order_on_both_paths() {
        const SESSIONS: usize = 8;
        const MESSAGES: u64 = 400;
        for direct in [true, false] {
            let fanout = Fanout::new(4096, 0);
            let stop = CancellationToken::new();
            fanout.start_direct(1, &TaskTracker::new(), &stop);
            let mut sessions = Vec::new();
            for _ in 0..SESSIONS {
                sessions.push(tcp_session(&fanout, direct, Duration::from_secs(10)).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let want: Vec<u8> = (1..=MESSAGES)
                .flat_map(|s| sized(s).frame.to_vec())
                .collect();
            for seq in 1..=MESSAGES {
                fanout.publish(sized(seq));
                if seq % 50 == 0 {
                    // Let some messages go out alone, some in bursts.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            for (i, (_, _, client, _)) in sessions.iter_mut().enumerate() {
                let mut got = vec![0u8; want.len()];
                tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("session {i} (direct {direct}) got everything"))
                    .unwrap();
                assert!(got == want, "session {i} (direct {direct}): bytes differ");
            }
            stop.cancel();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_client_that_stops_reading_is_handed_back_and_cut_off() {
        let fanout = Fanout::new(4096, 0);
        let stop = CancellationToken::new();
        fanout.start_direct(1, &TaskTracker::new(), &stop);
        let (_stuck_control, stuck_writer, _stuck_client, _r1) =
            tcp_session(&fanout, true, Duration::from_millis(300)).await;
        let (_control, _writer, mut reader, _r2) =
            tcp_session(&fanout, true, Duration::from_millis(300)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 64 KiB frames: the stuck client's socket buffers fill within a
        // few, the pump hands its lane back, its writer's write times out.
        let frame = Bytes::from(vec![b'y'; 64 * 1024]);
        let messages = 200u64;
        let read_all = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while total < 64 * 1024 * messages as usize {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        for seq in 1..=messages {
            fanout.publish(Delivery {
                seq,
                frame: frame.clone(),
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = tokio::time::timeout(Duration::from_secs(10), stuck_writer)
            .await
            .expect("the stuck session is cut off")
            .unwrap();
        assert_eq!(end, WriterEnd::SlowConsumer);
        let total = tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .expect("the reading client gets everything")
            .unwrap();
        assert_eq!(
            total,
            64 * 1024 * messages as usize,
            "the other session lost nothing"
        );
        stop.cancel();
    }
}
