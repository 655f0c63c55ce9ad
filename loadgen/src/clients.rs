//! The receiving side: thousands of simulated clients, each one light tokio
//! task that connects (at a ramp rate, from several loopback source addresses
//! if needed), logs in (or subscribes, for the Redis floor), heartbeats, reads
//! frames straight out of a `BytesMut`, and keeps its delivery accounting.
//! The [`Fleet`] drives them through measurement steps with a watch channel.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::accounting::{DeliveryTotals, SeqAccount};
use crate::histogram::{new_histogram, record_us, LatencyHistogram};
use crate::live::LiveStats;
use crate::resp::{self, RespItem};
use crate::wire::{self, parse_broadcast};

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
    Up { start_after: u64 },
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

/// The connected clients.
pub struct Fleet {
    control: watch::Sender<Control>,
    reports: mpsc::UnboundedReceiver<ClientReport>,
    epoch: u64,
    pub live: Arc<LiveStats>,
    pub summary: ConnectSummary,
}

/// Outcome of one sync over all clients.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub totals: DeliveryTotals,
    /// Clients that did not answer before the deadline.
    pub silent_clients: usize,
    /// Union over witnesses of: publisher sequences each of them missed... kept per witness.
    pub witness_sets: Vec<Vec<u64>>,
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
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<(Ready, u64, u64)>();
        let opts = Arc::new(opts);
        let started = Instant::now();
        let spawner = {
            let opts = opts.clone();
            let live = live.clone();
            tokio::spawn(async move {
                let t0 = tokio::time::Instant::now();
                let rate = opts.connects_per_sec.max(1.0);
                for i in 0..opts.clients {
                    tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
                    let client = ClientTask {
                        index: i,
                        opts: opts.clone(),
                        live: live.clone(),
                        control: control_rx.clone(),
                        reports: report_tx.clone(),
                        ready: ready_tx.clone(),
                    };
                    tokio::spawn(client.run());
                }
            })
        };
        let mut summary = ConnectSummary {
            min_start_after: u64::MAX,
            ..Default::default()
        };
        // Every client answers within its connect timeout after it started.
        let ramp = Duration::from_secs_f64(opts.clients as f64 / opts.connects_per_sec.max(1.0));
        let deadline = tokio::time::Instant::now()
            + ramp
            + Duration::from_millis(opts.connect_timeout_ms)
            + Duration::from_secs(5);
        let mut answered = 0;
        while answered < opts.clients {
            let Ok(Some((ready, connect_us, login_us))) =
                tokio::time::timeout_at(deadline, ready_rx.recv()).await
            else {
                break;
            };
            answered += 1;
            match ready {
                Ready::Up { start_after } => {
                    summary.connected += 1;
                    record_us(&mut summary.connect_hist, connect_us);
                    record_us(&mut summary.login_hist, login_us);
                    summary.min_start_after = summary.min_start_after.min(start_after);
                    summary.max_start_after = summary.max_start_after.max(start_after);
                }
                Ready::ConnectFailed(e) => {
                    summary.connect_errors += 1;
                    if summary.error_samples.len() < 5 {
                        summary.error_samples.push(format!("connect: {e}"));
                    }
                }
                Ready::LoginFailed(e) => {
                    summary.login_errors += 1;
                    if summary.error_samples.len() < 5 {
                        summary.error_samples.push(format!("login: {e}"));
                    }
                }
            }
        }
        // Clients that never answered count as connect errors.
        summary.connect_errors += opts.clients - answered;
        if summary.min_start_after == u64::MAX {
            summary.min_start_after = 0;
        }
        summary.ramp_secs = started.elapsed().as_secs_f64();
        let _ = spawner.await;
        Fleet {
            control,
            reports,
            epoch: 0,
            live,
            summary,
        }
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

/// One simulated client.
struct ClientTask {
    index: usize,
    opts: Arc<FleetOptions>,
    live: Arc<LiveStats>,
    control: watch::Receiver<Control>,
    reports: mpsc::UnboundedSender<ClientReport>,
    ready: mpsc::UnboundedSender<(Ready, u64, u64)>,
}

/// The `heartbeat` command as one ready frame.
fn heartbeat_frame() -> Vec<u8> {
    let mut out = Vec::new();
    wire::put_frame(&mut out, &ClientCommand::Heartbeat {}.to_json());
    out
}

async fn connect_from(
    target: SocketAddr,
    sources: &[IpAddr],
    index: usize,
) -> std::io::Result<TcpStream> {
    if sources.is_empty() {
        match TcpStream::connect(target).await {
            Err(e) if e.raw_os_error() == Some(99) => {} // EADDRNOTAVAIL: try other sources
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
            Err(e) if e.raw_os_error() == Some(99) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no source address left")))
}

/// Reads until one complete frame is in `buf`; returns its payload.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Vec<u8>, String> {
    loop {
        let mut first = None;
        let used = wire::for_each_frame(buf, max, |p| {
            if first.is_none() {
                first = Some(p.to_vec());
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(p) = first {
            let len = p.len() + rtmc::protocol::FRAME_HEADER_BYTES;
            let _ = used;
            buf.advance(len);
            return Ok(p);
        }
        if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
    }
}

/// Reads until one complete RESP item is in `buf`; returns whether it was an error.
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

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    rtmc::protocol::now_us()
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
        let _ = self
            .ready
            .send((Ready::Up { start_after }, connect_us, login_us));
        self.receive(reader, writer, buf, start_after, heartbeat_ms)
            .await;
    }

    fn fail(&self, why: Ready) {
        match &why {
            Ready::ConnectFailed(_) => LiveStats::bump(&self.live.connect_errors),
            Ready::LoginFailed(_) => LiveStats::bump(&self.live.login_errors),
            Ready::Up { .. } => {}
        }
        let _ = self.ready.send((why, 0, 0));
    }

    /// Logs in (rtmc) or subscribes (Redis); returns the join point and the
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
                let mut out = Vec::new();
                let login = ClientCommand::Login {
                    user_id: user.clone(),
                    password: password.clone(),
                    resume_from: None,
                    subscribe: true,
                };
                wire::put_frame(&mut out, &login.to_json());
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                loop {
                    let payload = read_frame(reader, buf, *max_frame_bytes).await?;
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
            Protocol::RedisPubSub { channel } => {
                let mut out = Vec::new();
                resp::command(&mut out, &[b"SUBSCRIBE", channel.as_bytes()]);
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                read_resp(reader, buf).await?;
                Ok((0, 0))
            }
        }
    }

    async fn receive(
        self,
        mut reader: OwnedReadHalf,
        mut writer: OwnedWriteHalf,
        mut buf: BytesMut,
        start_after: u64,
        heartbeat_ms: u64,
    ) {
        let mut account = SeqAccount::new(start_after);
        let mut witness: Option<Vec<u64>> = (self.index < self.opts.witnesses).then(Vec::new);
        let mut control = self.control.clone();
        let mut pending: Option<Control> = None;
        let mut alive = true;
        let hb_period = Duration::from_millis(heartbeat_ms.max(1));
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + hb_period, hb_period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hb_frame = heartbeat_frame();
        let mut latencies: Vec<u64> = Vec::with_capacity(256);
        let (max_frame, is_rtmc) = match &self.opts.protocol {
            Protocol::Rtmc {
                max_frame_bytes, ..
            } => (*max_frame_bytes, true),
            Protocol::RedisPubSub { .. } => (usize::MAX, false),
        };
        let mut last_error: Option<ErrorCode> = None;
        loop {
            let deadline = pending
                .map(|p| p.deadline)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = reader.read_buf(&mut buf), if alive => {
                    match r {
                        Ok(0) | Err(_) => {
                            alive = false;
                            if let Some(p) = pending.take() {
                                self.report(&p, &account, &witness);
                                if p.last { return; }
                            }
                            LiveStats::bump(&self.live.disconnects);
                            if last_error == Some(ErrorCode::SlowConsumer) {
                                LiveStats::bump(&self.live.slow_consumer_disconnects);
                            }
                            self.live.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(_) => {
                            let now = now_us();
                            latencies.clear();
                            let run_id = self.opts.run_id;
                            let mut on_payload = |p: &[u8]| {
                                if let Some(b) = parse_broadcast(p) {
                                    account.record(b.seq);
                                    latencies.push(now.saturating_sub(b.sent_at_us));
                                    if let (Some(w), Some(o)) = (witness.as_mut(), b.origin) {
                                        if o.run_id == run_id {
                                            set_bit(w, o.publisher_seq);
                                        }
                                    }
                                } else if is_rtmc {
                                    match ServerFrame::parse(p) {
                                        Ok(ServerFrame::Broadcast(b)) => {
                                            account.record(b.seq);
                                            latencies.push(now.saturating_sub(b.sent_at_us));
                                        }
                                        Ok(ServerFrame::Error { code, .. }) => last_error = Some(code),
                                        Ok(_) => {}
                                        Err(_) => LiveStats::bump(&self.live.bad_frames),
                                    }
                                } else {
                                    LiveStats::bump(&self.live.bad_frames);
                                }
                            };
                            let used = if is_rtmc {
                                wire::for_each_frame(&buf, max_frame, &mut on_payload).map_err(|_| ())
                            } else {
                                resp_messages(&buf, &mut on_payload)
                            };
                            match used {
                                Ok(n) => buf.advance(n),
                                Err(()) => {
                                    LiveStats::bump(&self.live.bad_frames);
                                    alive = false;
                                    LiveStats::bump(&self.live.disconnects);
                                }
                            }
                            if buf.capacity() - buf.len() < 2048 {
                                buf.reserve(8 * 1024);
                            }
                            self.live.record_deliveries(self.index, &latencies, now);
                            if let Some(p) = pending {
                                if account.complete_up_to(p.target_head) {
                                    self.report(&p, &account, &witness);
                                    pending = None;
                                    if p.last { return; }
                                }
                            }
                        }
                    }
                }
                _ = heartbeat.tick(), if alive && is_rtmc && heartbeat_ms > 0 => {
                    if writer.write_all(&hb_frame).await.is_err() {
                        alive = false;
                    }
                }
                changed = control.changed() => {
                    if changed.is_err() { return; }
                    let c = *control.borrow_and_update();
                    if account.complete_up_to(c.target_head) || !alive {
                        self.report(&c, &account, &witness);
                        if c.last { return; }
                    } else {
                        pending = Some(c);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if pending.is_some() => {
                    if let Some(p) = pending.take() {
                        self.report(&p, &account, &witness);
                        if p.last { return; }
                    }
                }
            }
        }
    }

    fn report(&self, c: &Control, account: &SeqAccount, witness: &Option<Vec<u64>>) {
        let _ = self.reports.send(ClientReport {
            epoch: c.epoch,
            totals: account.totals(c.target_head),
            witness: if c.last { witness.clone() } else { None },
        });
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

/// Sets bit `i` in a growable bitset.
pub fn set_bit(bits: &mut Vec<u64>, i: u64) {
    let word = (i / 64) as usize;
    if word >= bits.len() {
        // Bounded by the run's message count; a wild id must not allocate gigabytes.
        if word > 64 * 1024 * 1024 {
            return;
        }
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (i % 64);
}

/// Whether bit `i` is set.
pub fn has_bit(bits: &[u64], i: u64) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Acknowledged publisher sequences that a witness never received.
pub fn acked_not_delivered(acked: &[u64], seen: &[u64]) -> u64 {
    acked
        .iter()
        .enumerate()
        .map(|(k, &w)| (w & !seen.get(k).copied().unwrap_or(0)).count_ones() as u64)
        .sum()
}

/// Counts witnesses per missing sequence (diagnostics): how many witnesses missed each.
pub fn witness_misses(acked: &[u64], witnesses: &[Vec<u64>]) -> HashMap<usize, u64> {
    witnesses
        .iter()
        .enumerate()
        .map(|(i, w)| (i, acked_not_delivered(acked, w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitsets_find_acked_but_undelivered() {
        let mut acked = Vec::new();
        let mut seen = Vec::new();
        for i in [0, 5, 64, 130] {
            set_bit(&mut acked, i);
        }
        for i in [0, 64, 130, 200] {
            set_bit(&mut seen, i);
        }
        assert!(has_bit(&seen, 200) && !has_bit(&seen, 5));
        assert_eq!(acked_not_delivered(&acked, &seen), 1);
        assert_eq!(witness_misses(&acked, &[seen.clone(), Vec::new()])[&1], 4);
    }
}
