//! A session's writer: owns the socket's write half, merges the session's own
//! replies with broadcast deliveries, and coalesces whatever is queued into
//! one write. A client that cannot keep up — lagged past the ring, or a write
//! blocked longer than the write timeout — is cut off with `slow_consumer`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::direct::{Lane, LaneHandle};
use crate::protocol::{ErrorCode, ServerFrame};
use crate::stream::Delivery;

/// Work for the writer, in order.
pub enum Outbound {
    /// One complete frame for this session only.
    Frame(Bytes),
    /// Write the replayed frames (already ordered, all `<= up_to`), then start
    /// live delivery from the receiver, skipping anything `<= up_to`.
    /// Boxed: it is rare, and keeping `Outbound` small keeps every idle
    /// session's control-channel block small.
    Subscribe(Box<Subscription>),
    /// Write this last frame, then close the connection.
    Close(Bytes),
}

/// Live delivery for a session: an optional replay first, then the ring.
pub struct Subscription {
    pub replay: Vec<Delivery>,
    /// Written right after the replay (`resume_done`), before any live frame.
    pub done: Option<Bytes>,
    pub rx: broadcast::Receiver<Delivery>,
    /// Skip ring entries at or below this sequence number.
    pub up_to: u64,
}

/// Flush once this much is buffered even if more is queued.
const COALESCE_BYTES: usize = 64 * 1024;

/// Why the writer stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// The session closed it (logout, error, shutdown, client gone).
    Closed,
    /// Cut off: the client did not read fast enough.
    SlowConsumer,
    /// The socket failed.
    Io,
}

pub fn frame(f: &ServerFrame) -> Bytes {
    f.to_frame()
}

/// Writes until the control channel closes, a `Close` is written, or the
/// client is too slow. Cancels `conn` on the way out so the reader stops too.
/// With a `lane`, the writer parks there whenever it has nothing to write,
/// and the fan-out's pump writes broadcasts for it (see `direct`).
pub async fn run<W: AsyncWrite + Unpin>(
    mut sock: W,
    mut control: mpsc::Receiver<Outbound>,
    write_timeout: Duration,
    conn: CancellationToken,
    lane: Option<LaneHandle<W>>,
) -> WriterEnd {
    let mut unwritten = BytesMut::new();
    let mut pending = Pending::default();
    let mut stats = WriterStats::new();
    let end = loop {
        let may_park = lane.is_some();
        let step = write_loop(
            &mut sock,
            &mut control,
            write_timeout,
            &mut unwritten,
            &mut pending,
            &mut stats,
            may_park,
        )
        .await;
        match (step, lane.as_deref()) {
            (Err(end), _) => break end,
            (Ok(()), Some(lane)) => {
                let (back, parked) = park(lane, sock, &mut pending, &mut control).await;
                sock = back;
                if let Err(end) = parked {
                    break end;
                }
            }
            (Ok(()), None) => unreachable!("only a writer with a lane stops to park"),
        }
    };
    if end == WriterEnd::SlowConsumer {
        metrics::counter!("rtmc_slow_consumer_disconnects_total").increment(1);
        tracing::info!("slow consumer disconnected");
        // Finish the frame cut by the timeout (if any) so the reason that
        // follows is readable; one short last chance.
        unwritten.extend_from_slice(&frame(&ServerFrame::error(
            ErrorCode::SlowConsumer,
            "client did not read fast enough; disconnected",
        )));
        let _ = tokio::time::timeout(Duration::from_millis(200), sock.write_all(&unwritten)).await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), sock.shutdown()).await;
    conn.cancel();
    end
}

/// Parks an idle writer's socket and live receiver in its lane and sleeps
/// until the session has a frame to write or the pump hands the lane back;
/// then takes both back, with whatever the pump could not write queued
/// first. Does not park when a broadcast is already queued.
async fn park<W>(
    lane: &Lane<W>,
    sock: W,
    pending: &mut Pending,
    control: &mut mpsc::Receiver<Outbound>,
) -> (W, Result<(), WriterEnd>) {
    {
        // Under the lane's lock: a broadcast sent after this check finds
        // the lane parked, so the pump writes it.
        let mut st = lane.lock();
        match try_live(&mut pending.live) {
            Err(end) => return (sock, Err(end)),
            Ok(Some(d)) => {
                pending.push_live(d);
                return (sock, Ok(()));
            }
            Ok(None) => {}
        }
        let Some((rx, last)) = pending.live.take() else {
            return (sock, Ok(()));
        };
        st.sock = Some(sock);
        st.rx = Some(rx);
        st.last = last;
    }
    let msg = tokio::select! {
        biased;
        m = control.recv() => Some(m),
        _ = lane.wake.notified() => None,
    };
    let mut st = lane.lock();
    let sock = st.sock.take().expect("a parked lane holds its socket");
    let rx = st.rx.take().expect("a parked lane holds its receiver");
    pending.live = Some((rx, st.last));
    if let Some(rest) = st.rest.take() {
        pending.push(rest);
        pending.delivered += std::mem::take(&mut st.rest_frames);
    }
    let lagged = std::mem::take(&mut st.lagged);
    drop(st);
    if lagged {
        return (sock, Err(WriterEnd::SlowConsumer));
    }
    match msg {
        Some(None) => (sock, Err(WriterEnd::Closed)),
        Some(Some(m)) => {
            pending.closing |= pending.apply(m);
            (sock, Ok(()))
        }
        None => (sock, Ok(())),
    }
}

/// Writes `buf` fully within `limit`. On timeout, the part not yet written
/// is left in `buf`.
async fn write_within<W: AsyncWrite + Unpin, B: Buf>(
    sock: &mut W,
    buf: &mut B,
    limit: Duration,
) -> Result<(), WriterEnd> {
    let deadline = tokio::time::Instant::now() + limit;
    while buf.has_remaining() {
        match tokio::time::timeout_at(deadline, sock.write(buf.chunk())).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(WriterEnd::Io),
            Ok(Ok(n)) => buf.advance(n),
            Err(_) => return Err(WriterEnd::SlowConsumer),
        }
    }
    Ok(())
}

/// Writes the coalescing buffer fully within `limit`, then releases it: an
/// idle session holds no buffer (design.md §7's memory per idle client). A
/// buffer kept between writes saved nothing measurable (the fan-out burst
/// bench moved +3.4%, within rebuild drift); with it the idle RSS at 10k
/// clients read 8.1 KiB per client, without it 7.8–8.0.
async fn write_buf<W: AsyncWrite + Unpin>(
    sock: &mut W,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<(), WriterEnd> {
    write_within(sock, buf, limit).await?;
    *buf = BytesMut::new();
    Ok(())
}

/// Writes until the control channel closes, a `Close` is written, or the
/// client is too slow (`Err`), or — when `may_park` — until there is
/// nothing to write and live delivery can go direct (`Ok`). On a failed
/// write, what was not written is left in `unwritten`.
async fn write_loop<W: AsyncWrite + Unpin>(
    sock: &mut W,
    control: &mut mpsc::Receiver<Outbound>,
    write_timeout: Duration,
    unwritten: &mut BytesMut,
    pending: &mut Pending,
    stats: &mut WriterStats,
    may_park: bool,
) -> Result<(), WriterEnd> {
    loop {
        if !pending.backlog.is_empty() {
            // A replay is written in bounded chunks, each under the write timeout.
            pending.take_backlog_chunk();
            if let Err(end) = write_buf(sock, &mut pending.buf, write_timeout).await {
                *unwritten = std::mem::take(&mut pending.buf);
                return Err(end);
            }
            continue;
        }
        if pending.len() == 0 && !pending.closing {
            if may_park && pending.live.is_some() {
                return Ok(());
            }
            wait(pending, control).await?;
        }
        gather(pending, control)?;
        if let Some(mut one) = pending.single.take() {
            // The only frame pending goes out from the shared frame itself: no copy.
            if let Err(end) = write_within(sock, &mut one, write_timeout).await {
                unwritten.extend_from_slice(&one);
                return Err(end);
            }
        } else if !pending.buf.is_empty() {
            if let Err(end) = write_buf(sock, &mut pending.buf, write_timeout).await {
                *unwritten = std::mem::take(&mut pending.buf);
                return Err(end);
            }
        }
        stats.wrote(pending);
        pending.delivered = 0;
        if pending.closing {
            return Err(WriterEnd::Closed);
        }
    }
}

/// What the writer holds between writes.
#[derive(Default)]
struct Pending {
    /// The next write when it is a single frame: written as it is, without
    /// copying. Only set while `buf` is empty.
    single: Option<Bytes>,
    /// Frames coalesced for the next write (two or more, or a replay chunk).
    /// Released after each write.
    buf: BytesMut,
    /// Replayed frames not written yet; they go before any live frame.
    backlog: VecDeque<Bytes>,
    /// The live subscription and the last sequence number taken from it.
    live: Option<(broadcast::Receiver<Delivery>, u64)>,
    /// Deliveries put into `buf` since the last write (for the metric).
    delivered: u64,
    /// A `Close` was queued: the connection closes after the next write.
    closing: bool,
}

impl Pending {
    /// Moves replayed frames into `buf`, up to one coalesced write.
    fn take_backlog_chunk(&mut self) {
        while self.buf.len() < COALESCE_BYTES {
            let Some(f) = self.backlog.pop_front() else {
                break;
            };
            self.buf.extend_from_slice(&f);
        }
    }

    fn push_live(&mut self, d: Delivery) {
        self.push(d.frame);
        self.delivered += 1;
    }

    /// Queues one frame for the next write: alone it stays as it is; a
    /// second one makes both be copied into `buf`.
    fn push(&mut self, f: Bytes) {
        if self.buf.is_empty() && self.single.is_none() {
            self.single = Some(f);
            return;
        }
        if let Some(first) = self.single.take() {
            self.buf.extend_from_slice(&first);
        }
        self.buf.extend_from_slice(&f);
    }

    /// Bytes queued for the next write.
    fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    /// Applies one control message; returns true when the connection must close.
    fn apply(&mut self, m: Outbound) -> bool {
        match m {
            Outbound::Frame(f) => {
                self.push(f);
                false
            }
            Outbound::Subscribe(sub) => {
                let Subscription {
                    replay,
                    done,
                    rx,
                    up_to,
                } = *sub;
                self.delivered += replay.len() as u64;
                self.backlog.extend(replay.into_iter().map(|d| d.frame));
                self.backlog.extend(done);
                self.live = Some((rx, up_to));
                false
            }
            Outbound::Close(f) => {
                self.push(f);
                true
            }
        }
    }
}

/// Waits for the first piece of work.
async fn wait(
    pending: &mut Pending,
    control: &mut mpsc::Receiver<Outbound>,
) -> Result<(), WriterEnd> {
    tokio::select! {
        biased;
        msg = control.recv() => match msg {
            None => return Err(WriterEnd::Closed),
            Some(m) => pending.closing |= pending.apply(m),
        },
        d = recv_live(&mut pending.live) => {
            if let Some(d) = d? {
                pending.push_live(d);
            }
        }
    }
    Ok(())
}

/// Coalesces whatever else is already queued, up to one write; a pending
/// replay goes out before any live frame.
fn gather(pending: &mut Pending, control: &mut mpsc::Receiver<Outbound>) -> Result<(), WriterEnd> {
    while !pending.closing && pending.backlog.is_empty() && pending.len() < COALESCE_BYTES {
        match control.try_recv() {
            Ok(m) => {
                pending.closing |= pending.apply(m);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => pending.closing = true,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if pending.closing {
            break;
        }
        match try_live(&mut pending.live)? {
            Some(d) => pending.push_live(d),
            None => break,
        }
    }
    Ok(())
}

/// The writer's metrics: deliveries written and, sampled, how far behind
/// the ring the session is after a write.
struct WriterStats {
    deliveries: metrics::Counter,
    queue_depth: metrics::Histogram,
    writes: u64,
}

impl WriterStats {
    /// One queue-depth sample per this many writes.
    const SAMPLE_EVERY_WRITES: u64 = 16;

    fn new() -> Self {
        Self {
            deliveries: metrics::counter!("rtmc_deliveries_total"),
            queue_depth: metrics::histogram!("rtmc_outbound_queue_frames"),
            writes: 0,
        }
    }

    fn wrote(&mut self, pending: &Pending) {
        self.deliveries.increment(pending.delivered);
        self.writes += 1;
        if self.writes.is_multiple_of(Self::SAMPLE_EVERY_WRITES) {
            if let Some((rx, _)) = &pending.live {
                self.queue_depth.record(rx.len() as f64);
            }
        }
    }
}

/// Next live delivery after the subscription point; lagging behind the
/// ring is a slow consumer.
async fn recv_live(
    live: &mut Option<(broadcast::Receiver<Delivery>, u64)>,
) -> Result<Option<Delivery>, WriterEnd> {
    let Some((rx, last)) = live.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(d) if d.seq <= *last => continue,
            Ok(d) => {
                *last = d.seq;
                return Ok(Some(d));
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return Err(WriterEnd::SlowConsumer),
            Err(broadcast::error::RecvError::Closed) => {
                *live = None;
                return Ok(None);
            }
        }
    }
}

/// The live delivery already queued, if any; lagging is a slow consumer.
fn try_live(
    live: &mut Option<(broadcast::Receiver<Delivery>, u64)>,
) -> Result<Option<Delivery>, WriterEnd> {
    let Some((rx, last)) = live.as_mut() else {
        return Ok(None);
    };
    loop {
        match rx.try_recv() {
            Ok(d) if d.seq <= *last => continue,
            Ok(d) => {
                *last = d.seq;
                return Ok(Some(d));
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(WriterEnd::SlowConsumer),
            Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
            Err(broadcast::error::TryRecvError::Closed) => {
                *live = None;
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use super::*;

    /// Every write a test sink saw: where the bytes came from and what they were.
    type Writes = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

    /// A socket that records each write. `script` says, per call, how many
    /// bytes to accept (`Some(n)`, at most what is offered) or to block
    /// (`None`); once the script runs out every write is accepted whole.
    struct Sink {
        writes: Writes,
        script: Vec<Option<usize>>,
    }

    impl Sink {
        fn new(script: Vec<Option<usize>>) -> (Self, Writes) {
            let writes = Writes::default();
            let mut script = script;
            script.reverse();
            (
                Self {
                    writes: writes.clone(),
                    script,
                },
                writes,
            )
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = match self.script.pop() {
                Some(None) => return Poll::Pending,
                Some(Some(n)) => n.min(buf.len()),
                None => buf.len(),
            };
            let mut writes = self.writes.lock().unwrap();
            writes.push((buf.as_ptr() as usize, buf[..n].to_vec()));
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frames(writes: &Writes) -> Vec<u8> {
        writes
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect()
    }

    async fn run_with(sink: Sink, queued: Vec<Outbound>) -> WriterEnd {
        let (tx, rx) = mpsc::channel(16);
        for m in queued {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        run(
            sink,
            rx,
            Duration::from_millis(20),
            CancellationToken::new(),
            None,
        )
        .await
    }

    #[tokio::test]
    async fn a_single_pending_frame_is_written_from_its_own_bytes() {
        let f = Bytes::from_static(b"\0\0\0\x02hi");
        let (sink, writes) = Sink::new(vec![]);
        let end = run_with(sink, vec![Outbound::Frame(f.clone())]).await;
        assert_eq!(end, WriterEnd::Closed);
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, f.as_ptr() as usize, "the frame was copied");
        assert_eq!(writes[0].1, f.to_vec());
    }

    #[tokio::test]
    async fn queued_frames_are_coalesced_into_one_write_in_order() {
        let (a, b) = (Bytes::from_static(b"aaa"), Bytes::from_static(b"bb"));
        let (sink, writes) = Sink::new(vec![]);
        let end = run_with(sink, vec![Outbound::Frame(a), Outbound::Frame(b)]).await;
        assert_eq!(end, WriterEnd::Closed);
        assert_eq!(writes.lock().unwrap().len(), 1);
        assert_eq!(frames(&writes), b"aaabb");
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_frame_cut_by_the_write_timeout_is_finished_before_the_reason() {
        let f = Bytes::from_static(b"0123456789");
        // 3 bytes go out, then the socket blocks past the write timeout (the
        // timer's wake polls the write once more before the timeout counts).
        let (sink, writes) = Sink::new(vec![Some(3), None, None]);
        let end = run_with(sink, vec![Outbound::Frame(f.clone())]).await;
        assert_eq!(end, WriterEnd::SlowConsumer);
        let mut expected = f.to_vec();
        expected.extend_from_slice(&frame(&ServerFrame::error(
            ErrorCode::SlowConsumer,
            "client did not read fast enough; disconnected",
        )));
        assert_eq!(frames(&writes), expected);
    }

    #[tokio::test]
    async fn the_coalescing_buffer_is_released_after_each_write() {
        let (mut sink, _) = Sink::new(vec![]);
        let mut buf = BytesMut::from(&b"small"[..]);
        write_buf(&mut sink, &mut buf, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 0, "an idle session holds no buffer");
    }
}
