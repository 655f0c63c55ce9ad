//! The receiving side: thousands of simulated clients, each one light tokio
//! task that connects (at a ramp rate, from several loopback source addresses
//! if needed), logs in (or subscribes, for the Redis floor and the NATS peers), heartbeats, reads
//! frames straight out of a `BytesMut`, and keeps its delivery accounting.
//! The [`Fleet`] drives them through measurement steps with a watch channel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{now_us, ClientCommand, ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::engine::accounting::{set_bit, DeliveryTotals, SeqAccount};
use crate::engine::faults::{ClientFault, FleetFaults};
use crate::engine::live::LiveStats;
use crate::engine::nats_sub;
use crate::measure::histogram::{new_histogram, record_us, LatencyHistogram};
use crate::measure::observe::{ClientObserver, SharedFleetObserver};
use crate::profile::LoadProfile;
use crate::wire::resp::{self, RespItem};
use crate::wire::rtmc_frames::{self, parse_broadcast};

/// Past this many clients one source address runs out of ephemeral ports.
const ONE_SOURCE_ADDR_MAX_CLIENTS: usize = 25_000;
/// Connect and login errors kept as samples for the report.
const ERROR_SAMPLES: usize = 5;

/// What the simulated clients speak.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// rtmc protocol v1: log in as `users[i]`.
    Rtmc {
        users: Arc<Vec<String>>,
        password: String,
        max_frame_bytes: usize,
    },
    /// Redis pub/sub: `SUBSCRIBE channel`.
    RedisPubSub { channel: String },
    /// NATS core: `SUB subject`.
    Nats { subject: String },
    /// NATS JetStream: client `i` creates a push consumer on `stream`
    /// delivering to `<deliver_prefix>.<i>` ([`crate::engine::nats_sub`]).
    JetStream {
        stream: String,
        deliver_prefix: String,
    },
}

/// How to bring a fleet up.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub clients: usize,
    /// Connection attempts started per second.
    pub connects_per_sec: f64,
    /// Server addresses; client `i` uses `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    pub protocol: Protocol,
    /// Local addresses to bind before connecting, rotated; empty = the OS's choice.
    pub source_addrs: Vec<IpAddr>,
    /// Bound on connect + login of one client.
    pub connect_timeout_ms: u64,
    /// Clients (the first n) that also record which publisher sequences arrived.
    pub witnesses: usize,
    /// Only this run's messages count for the witnesses.
    pub run_id: u32,
    /// Sees every client's sessions and deliveries (the chaos recorder).
    pub observer: SharedFleetObserver,
}

/// A profile's fleet settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("source address {0:?} is not an IP address")]
    SourceAddr(String),
}

impl FleetOptions {
    /// The fleet a load profile describes, speaking `protocol` to `targets`.
    /// Without explicit source addresses, more clients than one address has
    /// ports for are spread over 127.0.0.1 … 127.0.0.8.
    pub fn for_load(
        load: &LoadProfile,
        targets: Vec<SocketAddr>,
        protocol: Protocol,
        run_id: u32,
    ) -> Result<Self, FleetError> {
        let mut source_addrs = load
            .source_addrs
            .iter()
            .map(|s| s.parse().map_err(|_| FleetError::SourceAddr(s.clone())))
            .collect::<Result<Vec<IpAddr>, _>>()?;
        if source_addrs.is_empty() && load.clients > ONE_SOURCE_ADDR_MAX_CLIENTS {
            source_addrs = (1..=8u8)
                .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .collect();
        }
        Ok(Self {
            clients: load.clients,
            connects_per_sec: load.connects_per_sec,
            targets,
            protocol,
            source_addrs,
            connect_timeout_ms: load.connect_timeout_ms,
            witnesses: load.witnesses,
            run_id,
            observer: None,
        })
    }

    /// How long bring-up may take: the connect ramp, one connect timeout
    /// for the last client started, and a margin.
    fn bring_up_bound(&self) -> Duration {
        let ramp = Duration::from_secs_f64(self.clients as f64 / self.connects_per_sec.max(1.0));
        ramp + Duration::from_millis(self.connect_timeout_ms) + Duration::from_secs(5)
    }
}

/// What the fleet asks of every client.
#[derive(Debug, Clone, Copy)]
struct Control {
    /// Increments with every request.
    epoch: u64,
    /// Report once everything up to here arrived (or at the deadline).
    target_head: u64,
    deadline: tokio::time::Instant,
    /// Close after reporting.
    last: bool,
}

/// One client's answer to a sync.
#[derive(Debug)]
struct ClientReport {
    epoch: u64,
    totals: DeliveryTotals,
    /// Publisher sequences this witness saw (bitset), on the last sync.
    witness: Option<Vec<u64>>,
}

/// Result of connecting one client.
enum Ready {
    Up {
        /// The head announced at login: the client expects what comes after.
        start_after: u64,
        connect_us: u64,
        /// Connect start → logged in (or subscribed).
        login_us: u64,
    },
    ConnectFailed(String),
    LoginFailed(String),
}

/// The fleet's state after bring-up.
#[derive(Debug, Clone)]
pub struct ConnectSummary {
    pub connected: usize,
    pub connect_errors: usize,
    pub login_errors: usize,
    /// First few error messages, for the report.
    pub error_samples: Vec<String>,
    /// TCP connect time.
    pub connect_hist: LatencyHistogram,
    /// Connect start → logged in (or subscribed).
    pub login_hist: LatencyHistogram,
    /// Lowest and highest head announced at login.
    pub min_start_after: u64,
    pub max_start_after: u64,
    pub ramp_secs: f64,
}

impl Default for ConnectSummary {
    fn default() -> Self {
        Self {
            connected: 0,
            connect_errors: 0,
            login_errors: 0,
            error_samples: Vec::new(),
            connect_hist: new_histogram(),
            login_hist: new_histogram(),
            min_start_after: 0,
            max_start_after: 0,
            ramp_secs: 0.0,
        }
    }
}

impl ConnectSummary {
    /// Counts one client's bring-up.
    fn record(&mut self, ready: Ready) {
        match ready {
            Ready::Up {
                start_after,
                connect_us,
                login_us,
            } => {
                self.connected += 1;
                record_us(&mut self.connect_hist, connect_us);
                record_us(&mut self.login_hist, login_us);
                self.min_start_after = self.min_start_after.min(start_after);
                self.max_start_after = self.max_start_after.max(start_after);
            }
            Ready::ConnectFailed(e) => {
                self.connect_errors += 1;
                self.sample_error(format!("connect: {e}"));
            }
            Ready::LoginFailed(e) => {
                self.login_errors += 1;
                self.sample_error(format!("login: {e}"));
            }
        }
    }

    fn sample_error(&mut self, e: String) {
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(e);
        }
    }
}

/// The connected clients.
pub struct Fleet {
    control: watch::Sender<Control>,
    reports: mpsc::UnboundedReceiver<ClientReport>,
    epoch: u64,
    faults: FleetFaults,
    pub live: Arc<LiveStats>,
    pub summary: ConnectSummary,
}

/// Outcome of one sync over all clients.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub totals: DeliveryTotals,
    /// Clients that did not answer before the deadline.
    pub silent_clients: usize,
    /// One bitset per witness client (on the last sync only): the publisher
    /// sequences of this run it received.
    pub witness_sets: Vec<Vec<u64>>,
}

/// The channels a client task answers the fleet on.
#[derive(Clone)]
struct FleetLinks {
    control: watch::Receiver<Control>,
    reports: mpsc::UnboundedSender<ClientReport>,
    ready: mpsc::UnboundedSender<Ready>,
}

impl Fleet {
    /// Connects `opts.clients` clients at the ramp rate and waits until each
    /// is logged in or failed.
    pub async fn connect(opts: FleetOptions, live: Arc<LiveStats>) -> Fleet {
        let (control, control_rx) = watch::channel(Control {
            epoch: 0,
            target_head: 0,
            deadline: tokio::time::Instant::now(),
            last: false,
        });
        let (report_tx, reports) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let (fault_txs, fault_rxs) = (0..opts.clients).map(|_| mpsc::unbounded_channel()).unzip();
        let opts = Arc::new(opts);
        let started = Instant::now();
        let links = FleetLinks {
            control: control_rx,
            reports: report_tx,
            ready: ready_tx,
        };
        let spawner = tokio::spawn(spawn_clients(opts.clone(), live.clone(), links, fault_rxs));
        let mut summary = await_ready(&opts, ready_rx).await;
        summary.ramp_secs = started.elapsed().as_secs_f64();
        let _ = spawner.await;
        Fleet {
            control,
            reports,
            epoch: 0,
            faults: FleetFaults::new(fault_txs),
            live,
            summary,
        }
    }

    /// A handle that makes the clients act out faults while a phase runs.
    pub fn faults(&self) -> FleetFaults {
        self.faults.clone()
    }

    /// Asks every client to report once it has everything up to `head` (or
    /// when `drain` has passed); `last` closes the clients afterwards.
    pub async fn sync(&mut self, head: u64, drain: Duration, last: bool) -> SyncResult {
        self.epoch += 1;
        let deadline = tokio::time::Instant::now() + drain;
        let _ = self.control.send(Control {
            epoch: self.epoch,
            target_head: head,
            deadline,
            last,
        });
        let mut out = SyncResult::default();
        let mut answered = 0;
        let hard_deadline = deadline + Duration::from_secs(5);
        while answered < self.summary.connected {
            match tokio::time::timeout_at(hard_deadline, self.reports.recv()).await {
                Ok(Some(r)) if r.epoch == self.epoch => {
                    answered += 1;
                    out.totals.add(&r.totals);
                    if let Some(w) = r.witness {
                        out.witness_sets.push(w);
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        out.silent_clients = self.summary.connected - answered;
        out
    }
}

/// Starts client `i` at `i / connects_per_sec` after the first (open loop).
async fn spawn_clients(
    opts: Arc<FleetOptions>,
    live: Arc<LiveStats>,
    links: FleetLinks,
    faults: Vec<mpsc::UnboundedReceiver<ClientFault>>,
) {
    let t0 = tokio::time::Instant::now();
    let rate = opts.connects_per_sec.max(1.0);
    for (i, faults) in faults.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let client = ClientTask {
            index: i,
            opts: opts.clone(),
            live: live.clone(),
            links: links.clone(),
            faults,
        };
        tokio::spawn(client.run());
    }
}

/// Waits until every client is up or failed, or the bring-up bound passed;
/// clients that never answered count as connect errors.
async fn await_ready(
    opts: &FleetOptions,
    mut ready_rx: mpsc::UnboundedReceiver<Ready>,
) -> ConnectSummary {
    let mut summary = ConnectSummary {
        min_start_after: u64::MAX,
        ..Default::default()
    };
    // Every client answers within its connect timeout after it started.
    let deadline = tokio::time::Instant::now() + opts.bring_up_bound();
    let mut answered = 0;
    while answered < opts.clients {
        let Ok(Some(ready)) = tokio::time::timeout_at(deadline, ready_rx.recv()).await else {
            break;
        };
        answered += 1;
        summary.record(ready);
    }
    summary.connect_errors += opts.clients - answered;
    if summary.min_start_after == u64::MAX {
        summary.min_start_after = 0;
    }
    summary
}

/// One simulated client.
struct ClientTask {
    index: usize,
    opts: Arc<FleetOptions>,
    live: Arc<LiveStats>,
    links: FleetLinks,
    /// Faults to act out ([`Fleet::faults`]).
    faults: mpsc::UnboundedReceiver<ClientFault>,
}

/// The `heartbeat` command as one ready frame.
fn heartbeat_frame() -> Vec<u8> {
    let mut out = Vec::new();
    rtmc_frames::put_frame(&mut out, &ClientCommand::Heartbeat {}.to_json());
    out
}

/// `connect(2)` refused for want of a free local port (`EADDRNOTAVAIL`).
const EADDRNOTAVAIL: i32 = 99;

async fn connect_from(
    target: SocketAddr,
    sources: &[IpAddr],
    index: usize,
) -> std::io::Result<TcpStream> {
    if sources.is_empty() {
        match TcpStream::connect(target).await {
            Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => {} // try other sources
            other => return other,
        }
    }
    let fallback: Vec<IpAddr> = if sources.is_empty() {
        (2..=16u8)
            .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
            .collect()
    } else {
        sources.to_vec()
    };
    let mut last = None;
    for k in 0..fallback.len() {
        let src = fallback[(index + k) % fallback.len()];
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(src, 0))?;
        match socket.connect(target).await {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no source address left")))
}

/// Reads until one complete frame is in `buf`; consumes it and returns its payload.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, String> {
    loop {
        let mut first = None;
        rtmc_frames::for_each_frame(buf, max_frame_bytes, |p| {
            if first.is_none() {
                first = Some(p.to_vec());
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(p) = first {
            buf.advance(p.len() + rtmc::protocol::FRAME_HEADER_BYTES);
            return Ok(p);
        }
        if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
    }
}

/// Reads until one complete RESP item is in `buf` and consumes it; an error
/// reply comes back as `Err` with its text.
async fn read_resp(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<(), String> {
    loop {
        match resp::next_item(buf, 0).map_err(|e| e.to_string())? {
            Some((RespItem::Error(e), _)) => return Err(String::from_utf8_lossy(e).into_owned()),
            Some((_, used)) => {
                buf.advance(used);
                return Ok(());
            }
            None => {
                if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".into());
                }
            }
        }
    }
}

/// What one client has received: its accounting, its witness bitset, and the
/// latencies of the read batch at hand.
struct Inbox {
    account: SeqAccount,
    /// Publisher sequences of this run that arrived (witness clients only).
    witness: Option<Vec<u64>>,
    /// Publish→receive latencies of the current read batch, µs.
    batch_latencies_us: Vec<u64>,
    /// The code of the last `error` frame (tells a slow-consumer cut-off apart).
    last_error: Option<ErrorCode>,
    /// Sees every session change and delivery (the chaos recorder).
    observer: Option<Box<dyn ClientObserver>>,
    /// The `resume_from` of the login whose replay is under way.
    resuming: Option<u64>,
    /// What the server expects back after a read batch (NATS: `PONG`,
    /// JetStream flow-control replies).
    replies: Vec<u8>,
}

impl Inbox {
    fn new(start_after: u64, witness: bool, observer: Option<Box<dyn ClientObserver>>) -> Self {
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
    fn connected(&mut self, head: u64, resume_from: Option<u64>) {
        self.resuming = resume_from;
        self.last_error = None;
        if let Some(o) = self.observer.as_mut() {
            o.connected(head, resume_from);
        }
    }

    /// The connection ended.
    fn disconnected(&mut self, reason: &str) {
        if let Some(o) = self.observer.as_mut() {
            o.disconnected(reason);
        }
    }

    /// Takes one payload received at `now_us`: a broadcast by the byte scan,
    /// any other rtmc frame through serde (and every frame through serde
    /// when an observer wants the message ids).
    fn take_payload(&mut self, p: &[u8], now_us: u64, run_id: u32, rtmc: bool, live: &LiveStats) {
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
                Ok(ServerFrame::ResumeDone { last_seq }) => {
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

/// One logged-in connection of a client.
struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Bytes read and not yet taken.
    buf: BytesMut,
}

/// How a client reads ([`ClientFault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Normal,
    /// Half-open: nothing is read, the socket stays open.
    Stopped,
    Slow {
        bytes_per_sec: u64,
    },
}

/// Reads what is there (at most `limit` bytes); never ready without a connection.
async fn read_some(conn: Option<&mut Conn>, limit: Option<usize>) -> std::io::Result<usize> {
    let Some(c) = conn else {
        return std::future::pending().await;
    };
    match limit {
        None => c.reader.read_buf(&mut c.buf).await,
        Some(n) => (&mut c.reader).take(n as u64).read_buf(&mut c.buf).await,
    }
}

impl ClientTask {
    async fn run(self) {
        let t0 = Instant::now();
        let target = self.opts.targets[self.index % self.opts.targets.len()];
        let timeout = Duration::from_millis(self.opts.connect_timeout_ms);
        let stream = match tokio::time::timeout(
            timeout,
            connect_from(target, &self.opts.source_addrs, self.index),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.fail(Ready::ConnectFailed(format!("{target}: {e}"))),
            Err(_) => return self.fail(Ready::ConnectFailed(format!("{target}: timed out"))),
        };
        let connect_us = t0.elapsed().as_micros() as u64;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let login = tokio::time::timeout(
            timeout.saturating_sub(t0.elapsed()),
            self.handshake(&mut reader, &mut writer, &mut buf),
        )
        .await;
        let (start_after, heartbeat_ms) = match login {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.fail(Ready::LoginFailed(e)),
            Err(_) => return self.fail(Ready::LoginFailed("timed out".into())),
        };
        let login_us = t0.elapsed().as_micros() as u64;
        LiveStats::bump(&self.live.connected);
        let _ = self.links.ready.send(Ready::Up {
            start_after,
            connect_us,
            login_us,
        });
        let observer = self.opts.observer.as_ref().map(|o| {
            let user = match &self.opts.protocol {
                Protocol::Rtmc { users, .. } => users.get(self.index).cloned(),
                _ => None,
            };
            o.client(self.index, &user.unwrap_or_else(|| self.index.to_string()))
        });
        let inbox = Inbox::new(start_after, self.index < self.opts.witnesses, observer);
        let conn = Conn {
            reader,
            writer,
            buf,
        };
        self.receive(conn, inbox, heartbeat_ms).await;
    }

    fn fail(&self, why: Ready) {
        match &why {
            Ready::ConnectFailed(_) => LiveStats::bump(&self.live.connect_errors),
            Ready::LoginFailed(_) => LiveStats::bump(&self.live.login_errors),
            Ready::Up { .. } => {}
        }
        let _ = self.links.ready.send(why);
    }

    /// The frame size limit when the client speaks rtmc; `None` for the peers.
    fn rtmc_max_frame_bytes(&self) -> Option<usize> {
        match &self.opts.protocol {
            Protocol::Rtmc {
                max_frame_bytes, ..
            } => Some(*max_frame_bytes),
            _ => None,
        }
    }

    /// Logs in (rtmc) or subscribes (Redis, NATS); returns the join point and the
    /// heartbeat interval (0 = none).
    async fn handshake(
        &self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        buf: &mut BytesMut,
    ) -> Result<(u64, u64), String> {
        match &self.opts.protocol {
            Protocol::Rtmc {
                users,
                password,
                max_frame_bytes,
            } => {
                let user = users
                    .get(self.index)
                    .ok_or_else(|| format!("no user for client {}", self.index))?;
                login(reader, writer, buf, user, password, *max_frame_bytes, None).await
            }
            Protocol::RedisPubSub { channel } => {
                let mut out = Vec::new();
                resp::command(&mut out, &[b"SUBSCRIBE", channel.as_bytes()]);
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                read_resp(reader, buf).await?;
                Ok((0, 0))
            }
            Protocol::Nats { subject } => {
                nats_sub::subscribe_core(reader, writer, buf, subject).await?;
                Ok((0, 0))
            }
            Protocol::JetStream {
                stream,
                deliver_prefix,
            } => {
                let deliver = format!("{deliver_prefix}.{}", self.index);
                nats_sub::subscribe_jetstream(reader, writer, buf, stream, &deliver).await?;
                Ok((0, 0))
            }
        }
    }

    /// Connects and logs in again (rtmc only), resuming after the highest
    /// seq up to which the client holds everything when `resume`.
    async fn reconnect(&self, inbox: &mut Inbox, resume: bool) -> Result<Conn, String> {
        let Protocol::Rtmc {
            users,
            password,
            max_frame_bytes,
        } = &self.opts.protocol
        else {
            return Err("only rtmc clients reconnect".into());
        };
        let user = users
            .get(self.index)
            .ok_or_else(|| format!("no user for client {}", self.index))?;
        let target = self.opts.targets[self.index % self.opts.targets.len()];
        let resume_from = resume.then(|| inbox.account.contiguous());
        let attempt = async {
            let stream = connect_from(target, &self.opts.source_addrs, self.index)
                .await
                .map_err(|e| format!("{target}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = stream.into_split();
            let mut buf = BytesMut::with_capacity(8 * 1024);
            let (head, _) = login(
                &mut reader,
                &mut writer,
                &mut buf,
                user,
                password,
                *max_frame_bytes,
                resume_from,
            )
            .await?;
            Ok::<_, String>((
                head,
                Conn {
                    reader,
                    writer,
                    buf,
                },
            ))
        };
        let timeout = Duration::from_millis(self.opts.connect_timeout_ms);
        let (head, conn) = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| format!("{target}: reconnect timed out"))??;
        LiveStats::bump(&self.live.connected);
        inbox.connected(head, resume_from);
        Ok(conn)
    }

    /// Reads until the fleet lets the client go: accounts every delivery,
    /// heartbeats, acts out faults, and answers each sync once it is
    /// complete or due.
    async fn receive(mut self, conn: Conn, mut inbox: Inbox, heartbeat_ms: u64) {
        let mut conn = Some(conn);
        let mut control = self.links.control.clone();
        let mut pending: Option<Control> = None;
        let mut reading = Reading::Normal;
        let mut next_read_at = tokio::time::Instant::now();
        let mut faults_open = true;
        let hb_period = Duration::from_millis(heartbeat_ms.max(1));
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + hb_period, hb_period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hb_frame = heartbeat_frame();
        let heartbeats = self.rtmc_max_frame_bytes().is_some() && heartbeat_ms > 0;
        loop {
            let deadline = pending
                .map(|p| p.deadline)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let now = tokio::time::Instant::now();
            let (may_read, limit) = match reading {
                Reading::Normal => (true, None),
                Reading::Stopped => (false, None),
                Reading::Slow { bytes_per_sec } => (
                    now >= next_read_at,
                    Some((bytes_per_sec / 20).max(1) as usize),
                ),
            };
            let up = conn.is_some();
            tokio::select! {
                r = read_some(conn.as_mut(), limit), if up && may_read => {
                    let done = match r {
                        Ok(0) | Err(_) => {
                            conn = None;
                            let reason = match inbox.last_error {
                                Some(code) => format!("{code:?}"),
                                None => "eof".to_owned(),
                            };
                            inbox.disconnected(&reason);
                            self.on_closed(&mut pending, &inbox)
                        }
                        Ok(n) => {
                            if let Reading::Slow { bytes_per_sec } = reading {
                                next_read_at = tokio::time::Instant::now()
                                    + Duration::from_secs_f64(n as f64 / bytes_per_sec.max(1) as f64);
                            }
                            let c = conn.as_mut().expect("read from a connection");
                            if !self.take_batch(&mut c.buf, &mut inbox) {
                                conn = None;
                                inbox.disconnected("unparseable stream");
                            } else if !inbox.replies.is_empty() {
                                // A failed write shows as a failed read next.
                                let _ = c.writer.write_all(&inbox.replies).await;
                                inbox.replies.clear();
                            }
                            self.answer_if_complete(&mut pending, &inbox)
                        }
                    };
                    if done { return; }
                }
                _ = tokio::time::sleep_until(next_read_at), if up && !may_read && matches!(reading, Reading::Slow { .. }) => {}
                _ = heartbeat.tick(), if up && heartbeats => {
                    if let Some(c) = conn.as_mut() {
                        // A failed write shows as a failed read next.
                        let _ = c.writer.write_all(&hb_frame).await;
                    }
                }
                fault = self.faults.recv(), if faults_open => {
                    let Some(fault) = fault else {
                        faults_open = false;
                        continue;
                    };
                    match fault {
                        ClientFault::Drop => {
                            if conn.take().is_some() {
                                inbox.disconnected("chaos: dropped");
                                if self.on_closed(&mut pending, &inbox) { return; }
                            }
                        }
                        ClientFault::StopReading => reading = Reading::Stopped,
                        ClientFault::SlowRead { bytes_per_sec } => {
                            reading = Reading::Slow { bytes_per_sec };
                            next_read_at = tokio::time::Instant::now();
                        }
                        ClientFault::ReadNormally => reading = Reading::Normal,
                        ClientFault::Reconnect { resume } => {
                            if conn.take().is_some() {
                                inbox.disconnected("chaos: reconnecting");
                                if self.on_closed(&mut pending, &inbox) { return; }
                            }
                            match self.reconnect(&mut inbox, resume).await {
                                Ok(c) => conn = Some(c),
                                Err(_) => LiveStats::bump(&self.live.connect_errors),
                            }
                        }
                    }
                }
                changed = control.changed() => {
                    if changed.is_err() { return; }
                    let c = *control.borrow_and_update();
                    if inbox.account.complete_up_to(c.target_head) || conn.is_none() {
                        if self.answer(&c, &inbox) {
                            if conn.is_some() {
                                inbox.disconnected("closed by the fleet");
                            }
                            return;
                        }
                    } else {
                        pending = Some(c);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if pending.is_some() => {
                    if let Some(p) = pending.take() {
                        if self.answer(&p, &inbox) {
                            if conn.is_some() {
                                inbox.disconnected("closed by the fleet");
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Takes every complete frame (or RESP push, or NATS message) in `buf`;
    /// false when the stream cannot be parsed any more (the client stops
    /// reading). What the server expects back goes to `inbox.replies`.
    fn take_batch(&self, buf: &mut BytesMut, inbox: &mut Inbox) -> bool {
        let now = now_us();
        let run_id = self.opts.run_id;
        inbox.batch_latencies_us.clear();
        let mut replies = std::mem::take(&mut inbox.replies);
        let rtmc = self.rtmc_max_frame_bytes().is_some();
        let mut take = |p: &[u8]| inbox.take_payload(p, now, run_id, rtmc, &self.live);
        let used = match &self.opts.protocol {
            Protocol::Rtmc {
                max_frame_bytes, ..
            } => rtmc_frames::for_each_frame(buf, *max_frame_bytes, &mut take).map_err(|_| ()),
            Protocol::RedisPubSub { .. } => resp_messages(buf, &mut take),
            Protocol::Nats { .. } | Protocol::JetStream { .. } => {
                nats_sub::take_messages(buf, &mut take, &mut replies)
            }
        };
        inbox.replies = replies;
        let readable = match used {
            Ok(n) => {
                buf.advance(n);
                true
            }
            Err(()) => {
                LiveStats::bump(&self.live.bad_frames);
                LiveStats::bump(&self.live.disconnects);
                false
            }
        };
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(8 * 1024);
        }
        self.live
            .record_deliveries(self.index, &inbox.batch_latencies_us, now);
        readable
    }

    /// The connection ended (the server closed it, or a fault dropped it):
    /// answers a pending sync, counts the disconnect. True when the client
    /// is done.
    fn on_closed(&self, pending: &mut Option<Control>, inbox: &Inbox) -> bool {
        LiveStats::bump(&self.live.disconnects);
        if inbox.last_error == Some(ErrorCode::SlowConsumer) {
            LiveStats::bump(&self.live.slow_consumer_disconnects);
        }
        self.live
            .connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match pending.take() {
            Some(p) => self.answer(&p, inbox),
            None => false,
        }
    }

    /// Answers the pending sync once everything it waits for arrived. True
    /// when the client is done.
    fn answer_if_complete(&self, pending: &mut Option<Control>, inbox: &Inbox) -> bool {
        match *pending {
            Some(p) if inbox.account.complete_up_to(p.target_head) => {
                *pending = None;
                self.answer(&p, inbox)
            }
            _ => false,
        }
    }

    /// Reports to the fleet for sync `c`. True when that was the last sync
    /// (the client is done).
    fn answer(&self, c: &Control, inbox: &Inbox) -> bool {
        let _ = self.links.reports.send(ClientReport {
            epoch: c.epoch,
            totals: inbox.account.totals(c.target_head),
            witness: if c.last { inbox.witness.clone() } else { None },
        });
        c.last
    }
}

/// Sends `login` (subscribed; resuming after `resume_from` if given) and
/// waits for `login_ok`; returns the join point and the heartbeat interval.
async fn login(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    user: &str,
    password: &str,
    max_frame_bytes: usize,
    resume_from: Option<u64>,
) -> Result<(u64, u64), String> {
    let mut out = Vec::new();
    let login = ClientCommand::Login {
        user_id: user.to_owned(),
        password: password.to_owned(),
        resume_from,
        subscribe: true,
    };
    rtmc_frames::put_frame(&mut out, &login.to_json());
    writer.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        let payload = read_frame(reader, buf, max_frame_bytes).await?;
        match ServerFrame::parse(&payload) {
            Ok(ServerFrame::LoginOk {
                last_seq,
                heartbeat_interval_ms,
                ..
            }) => return Ok((last_seq, heartbeat_interval_ms)),
            Ok(ServerFrame::Error { code, message, .. }) => {
                return Err(format!("{code:?}: {message}"))
            }
            // Broadcasts cannot precede login_ok; anything else is ignored.
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Calls `f` with the payload of each complete `message` push; returns bytes used.
fn resp_messages(buf: &[u8], f: &mut impl FnMut(&[u8])) -> Result<usize, ()> {
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
