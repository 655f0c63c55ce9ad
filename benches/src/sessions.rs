//! Sessions for the fan-out benches, built from the server's own parts: the
//! [`Fanout`] ring and one [`outbound::run`] writer task per session, exactly
//! as a server node runs them after `login`. Only the socket differs: a
//! [`CountingSink`] in-process (what fan-out costs without the kernel), or
//! a real TCP connection on 127.0.0.1 whose client end a reader task drains
//! (what it costs with one write syscall per session).
//!
//! Every byte that reaches a session's socket (or, over TCP, the client) is
//! counted in one [`DeliveryCounter`], so a bench knows when the last
//! session has its copy of a message.
//!
//! [`Path`] picks how broadcasts reach the sockets: every writer task woken
//! per message, or the ring's pump writing parked sessions directly (the
//! server's default for plain TCP, `server.direct_delivery`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rtmc::server::direct::{DirectWrite, LaneHandle};
use rtmc::server::fanout::Fanout;
use rtmc::server::outbound::{self, Outbound, Subscription};
use rtmc::stream::Delivery;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Ring capacity: the server's default outbound bound is far above the one
/// message in flight a bench has.
const RING_CAPACITY: usize = 1024;
/// Generous: a bench session is never a slow consumer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Control-channel depth per session (it carries one `Subscribe`).
const CONTROL_DEPTH: usize = 4;
/// A client's read buffer over TCP.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes delivered to all sessions together, and a wake-up for whoever
/// waits for a total.
#[derive(Default)]
pub struct DeliveryCounter {
    /// Bytes delivered so far, all sessions together.
    delivered_bytes: AtomicU64,
    /// The total the waiter waits for.
    target_bytes: AtomicU64,
    /// Notified by the write that reaches the target.
    reached: Notify,
}

impl DeliveryCounter {
    /// Counts `n` delivered bytes; wakes the waiter when they reach the target.
    pub fn add(&self, n: u64) {
        let before = self.delivered_bytes.fetch_add(n, Ordering::AcqRel);
        let target = self.target_bytes.load(Ordering::Acquire);
        if before < target && before + n >= target {
            self.reached.notify_one();
        }
    }

    /// Bytes delivered so far.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered_bytes.load(Ordering::Acquire)
    }

    /// Sets the total to wake the waiter at. Call it before the writes that
    /// reach it can happen.
    pub fn expect(&self, target: u64) {
        self.target_bytes.store(target, Ordering::Release);
    }

    /// Waits until `target` bytes have been delivered in total ([`expect`]
    /// it first).
    ///
    /// [`expect`]: DeliveryCounter::expect
    pub async fn wait_for(&self, target: u64) {
        loop {
            let reached = self.reached.notified();
            if self.delivered_bytes() >= target {
                return;
            }
            reached.await;
        }
    }
}

/// A socket that accepts every write at once and only counts the bytes:
/// the session writer's work without the kernel's.
pub struct CountingSink {
    counter: Arc<DeliveryCounter>,
}

impl AsyncWrite for CountingSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.counter.add(buf.len() as u64);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl DirectWrite for CountingSink {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.counter.add(buf.len() as u64);
        Ok(buf.len())
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n: usize = bufs.iter().map(|b| b.len()).sum();
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// How broadcasts reach the sessions' sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Every session's writer task is woken for every message
    /// (`server.direct_delivery = false`, and TLS sessions).
    Woken,
    /// Idle writers park; the ring's pump writes their sockets directly.
    Direct,
}

/// N subscribed sessions on one fan-out ring. Dropping it closes every
/// session's control channel, which ends its writer.
pub struct FanoutSessions {
    fanout: Fanout,
    counter: Arc<DeliveryCounter>,
    /// One per session; the writer runs while its sender lives.
    controls: Vec<mpsc::Sender<Outbound>>,
    /// Over TCP: the server ends' read halves, kept open.
    keep_open: Vec<tokio::net::tcp::OwnedReadHalf>,
    /// The complete frame every message carries (length prefix included).
    frame: Bytes,
    /// Sequence number of the last message published.
    last_seq: AtomicU64,
    path: Path,
    /// Ends the pumps (direct path) when the sessions are dropped.
    stop: CancellationToken,
}

impl Drop for FanoutSessions {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FanoutSessions {
    /// `sessions` writers into counting sinks. Call inside the runtime.
    pub async fn in_process(sessions: usize, frame: Bytes, path: Path) -> Self {
        let mut s = Self::empty(frame, path);
        for _ in 0..sessions {
            let sink = CountingSink {
                counter: s.counter.clone(),
            };
            s.add_session(sink).await;
        }
        s
    }

    /// `sessions` writers into TCP connections on 127.0.0.1, each client end
    /// drained by a reader task. Call inside the runtime. Needs two file
    /// descriptors per session.
    pub async fn over_loopback(sessions: usize, frame: Bytes, path: Path) -> io::Result<Self> {
        let mut s = Self::empty(frame, path);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        for _ in 0..sessions {
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let (client, (server, _)) = (client?, accepted?);
            // As the server does for every accepted connection.
            server.set_nodelay(true)?;
            tokio::spawn(drain(client, s.counter.clone()));
            // The server's halves: the read half only has to stay open.
            let (read, write) = server.into_split();
            s.keep_open.push(read);
            s.add_session(write).await;
        }
        Ok(s)
    }

    fn empty(frame: Bytes, path: Path) -> Self {
        let fanout = Fanout::new(RING_CAPACITY, 0);
        let stop = CancellationToken::new();
        if path == Path::Direct {
            fanout.start_direct(1, &TaskTracker::new(), &stop);
        }
        Self {
            fanout,
            counter: Arc::new(DeliveryCounter::default()),
            controls: Vec::new(),
            keep_open: Vec::new(),
            frame,
            last_seq: AtomicU64::new(0),
            path,
            stop,
        }
    }

    /// Starts a session's writer on `sock` (with a lane on the direct path)
    /// and subscribes it to the ring, as the server and `login` do.
    async fn add_session<W: DirectWrite + AsyncWrite + Unpin + Send + 'static>(&mut self, sock: W) {
        let (tx, rx) = mpsc::channel(CONTROL_DEPTH);
        let lane: Option<LaneHandle<W>> = match self.path {
            Path::Direct => self.fanout.lane(),
            Path::Woken => None,
        };
        tokio::spawn(outbound::run(
            sock,
            rx,
            WRITE_TIMEOUT,
            CancellationToken::new(),
            lane,
        ));
        let (live, up_to) = self.fanout.subscribe();
        let subscription = Subscription {
            replay: Vec::new(),
            done: None,
            rx: live,
            up_to,
        };
        tx.send(Outbound::Subscribe(Box::new(subscription)))
            .await
            .expect("the writer runs until its control channel closes");
        self.controls.push(tx);
    }

    pub fn sessions(&self) -> usize {
        self.controls.len()
    }

    /// Publishes one message into the ring and returns when every session
    /// has written (over TCP: every client has read) its copy.
    pub async fn deliver_one(&self) {
        let seq = self.last_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let per_message = (self.sessions() * self.frame.len()) as u64;
        let target = seq * per_message;
        self.counter.expect(target);
        self.fanout.publish(Delivery {
            seq,
            frame: self.frame.clone(),
        });
        self.counter.wait_for(target).await;
    }

    /// Publishes `messages` back to back (as one XREAD batch is), then
    /// returns when every session has written its copies.
    pub async fn deliver_burst(&self, messages: u64) {
        let first = self.last_seq.fetch_add(messages, Ordering::AcqRel) + 1;
        let per_message = (self.sessions() * self.frame.len()) as u64;
        let target = (first + messages - 1) * per_message;
        self.counter.expect(target);
        for seq in first..first + messages {
            self.fanout.publish(Delivery {
                seq,
                frame: self.frame.clone(),
            });
        }
        self.counter.wait_for(target).await;
    }
}

/// A client: reads and counts until the server closes the connection.
async fn drain(mut sock: TcpStream, counter: Arc<DeliveryCounter>) {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    while let Ok(n) = sock.read(&mut buf).await {
        if n == 0 {
            break;
        }
        counter.add(n as u64);
    }
}
