//! One simulated client of the fleet: a light tokio task that connects,
//! logs in (or subscribes), heartbeats, reads frames straight out of a
//! `BytesMut`, acts out its faults and answers the fleet's syncs through a
//! watch channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use crate::engine::accounting::DeliveryTotals;
use crate::engine::dial::{connect_from, login, read_resp};
use crate::engine::faults::ClientFault;
use crate::engine::fleet_options::{FleetOptions, Protocol};
use crate::engine::inbox::{resp_messages, Inbox};
use crate::engine::live::LiveStats;
use crate::engine::nats_sub;
use crate::wire::resp::{self};
use crate::wire::rtmc_frames::{self};

/// What the fleet asks of every client.
#[derive(Debug, Clone, Copy)]
pub(super) struct Control {
    /// Increments with every request.
    pub(super) epoch: u64,
    /// Report once everything up to here arrived (or at the deadline).
    pub(super) target_head: u64,
    pub(super) deadline: tokio::time::Instant,
    /// Close after reporting.
    pub(super) last: bool,
}

/// One client's answer to a sync.
#[derive(Debug)]
pub(super) struct ClientReport {
    pub(super) epoch: u64,
    pub(super) totals: DeliveryTotals,
    /// Publisher sequences this witness saw (bitset), on the last sync.
    pub(super) witness: Option<Vec<u64>>,
}

/// Result of connecting one client.
pub(super) enum Ready {
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

/// The channels a client task answers the fleet on.
#[derive(Clone)]
pub(super) struct FleetLinks {
    pub(super) control: watch::Receiver<Control>,
    pub(super) reports: mpsc::UnboundedSender<ClientReport>,
    pub(super) ready: mpsc::UnboundedSender<Ready>,
}

/// One simulated client.
pub(super) struct ClientTask {
    pub(super) index: usize,
    pub(super) opts: Arc<FleetOptions>,
    pub(super) live: Arc<LiveStats>,
    pub(super) links: FleetLinks,
    /// Faults to act out ([`Fleet::faults`]).
    pub(super) faults: mpsc::UnboundedReceiver<ClientFault>,
}

/// The `heartbeat` command as one ready frame.
pub(super) fn heartbeat_frame() -> Vec<u8> {
    let mut out = Vec::new();
    rtmc_frames::put_frame(&mut out, &ClientCommand::Heartbeat {}.to_json());
    out
}

/// One logged-in connection of a client.
pub(super) struct Conn {
    pub(super) reader: OwnedReadHalf,
    pub(super) writer: OwnedWriteHalf,
    /// Bytes read and not yet taken.
    pub(super) buf: BytesMut,
}

/// How a client reads ([`ClientFault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    Normal,
    /// Half-open: nothing is read, the socket stays open.
    Stopped,
    Slow {
        bytes_per_sec: u64,
    },
}

/// Reads what is there (at most `limit` bytes); never ready without a connection.
pub(super) async fn read_some(
    conn: Option<&mut Conn>,
    limit: Option<usize>,
) -> std::io::Result<usize> {
    let Some(c) = conn else {
        return std::future::pending().await;
    };
    match limit {
        None => c.reader.read_buf(&mut c.buf).await,
        Some(n) => (&mut c.reader).take(n as u64).read_buf(&mut c.buf).await,
    }
}

/// What a receiving client holds between reads.
struct Receiving {
    conn: Option<Conn>,
    inbox: Inbox,
    /// A sync request not yet answered.
    pending: Option<Control>,
    reading: Reading,
    /// When a slow reader may read next.
    next_read_at: tokio::time::Instant,
}

impl Receiving {
    /// Whether the client may read now, and at most how many bytes.
    fn may_read(&self, now: tokio::time::Instant) -> (bool, Option<usize>) {
        match self.reading {
            Reading::Normal => (true, None),
            Reading::Stopped => (false, None),
            Reading::Slow { bytes_per_sec } => (
                now >= self.next_read_at,
                Some((bytes_per_sec / 20).max(1) as usize),
            ),
        }
    }
}

/// Heartbeats every `heartbeat_ms`, the first one period from now; a late
/// tick delays the next.
fn heartbeat_interval(heartbeat_ms: u64) -> tokio::time::Interval {
    let hb_period = Duration::from_millis(heartbeat_ms.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + hb_period, hb_period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat
}

impl ClientTask {
    pub(super) async fn run(self) {
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

    pub(super) fn fail(&self, why: Ready) {
        match &why {
            Ready::ConnectFailed(_) => LiveStats::bump(&self.live.connect_errors),
            Ready::LoginFailed(_) => LiveStats::bump(&self.live.login_errors),
            Ready::Up { .. } => {}
        }
        let _ = self.links.ready.send(why);
    }

    /// The frame size limit when the client speaks rtmc; `None` for the peers.
    pub(super) fn rtmc_max_frame_bytes(&self) -> Option<usize> {
        match &self.opts.protocol {
            Protocol::Rtmc {
                max_frame_bytes, ..
            } => Some(*max_frame_bytes),
            _ => None,
        }
    }

    /// Logs in (rtmc) or subscribes (Redis, NATS); returns the join point and the
    /// heartbeat interval (0 = none).
    pub(super) async fn handshake(
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
    pub(super) async fn reconnect(
        &self,
        inbox: &mut Inbox,
        resume: bool,
        to: Option<SocketAddr>,
    ) -> Result<Conn, String> {
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
        let target = to.unwrap_or(self.opts.targets[self.index % self.opts.targets.len()]);
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
    pub(super) async fn receive(mut self, conn: Conn, inbox: Inbox, heartbeat_ms: u64) {
        let mut st = Receiving {
            conn: Some(conn),
            inbox,
            pending: None,
            reading: Reading::Normal,
            next_read_at: tokio::time::Instant::now(),
        };
        let mut control = self.links.control.clone();
        let mut faults_open = true;
        let mut heartbeat = heartbeat_interval(heartbeat_ms);
        let hb_frame = heartbeat_frame();
        let heartbeats = self.rtmc_max_frame_bytes().is_some() && heartbeat_ms > 0;
        loop {
            let deadline = st
                .pending
                .map(|p| p.deadline)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let (may_read, limit) = st.may_read(tokio::time::Instant::now());
            let up = st.conn.is_some();
            let slow = matches!(st.reading, Reading::Slow { .. });
            let done = tokio::select! {
                r = read_some(st.conn.as_mut(), limit), if up && may_read => self.on_read(&mut st, r).await,
                _ = tokio::time::sleep_until(st.next_read_at), if up && !may_read && slow => false,
                _ = heartbeat.tick(), if up && heartbeats => {
                    if let Some(c) = st.conn.as_mut() {
                        // A failed write shows as a failed read next.
                        let _ = c.writer.write_all(&hb_frame).await;
                    }
                    false
                }
                fault = self.faults.recv(), if faults_open => match fault {
                    Some(fault) => self.on_fault(&mut st, fault).await,
                    None => {
                        faults_open = false;
                        false
                    }
                },
                changed = control.changed() => match changed {
                    Ok(()) => {
                        let c = *control.borrow_and_update();
                        self.on_sync(&mut st, c)
                    }
                    Err(_) => true,
                },
                _ = tokio::time::sleep_until(deadline), if st.pending.is_some() => {
                    match st.pending.take() {
                        Some(p) => self.answer_and_close(&mut st, &p),
                        None => false,
                    }
                }
            };
            if done {
                return;
            }
        }
    }

    /// After a read of `r` bytes (0 or an error: the connection is gone):
    /// takes the batch, writes what the server expects back; true when the
    /// client is done.
    async fn on_read(&self, st: &mut Receiving, r: std::io::Result<usize>) -> bool {
        match r {
            Ok(0) | Err(_) => {
                st.conn = None;
                let reason = match st.inbox.last_error {
                    Some(code) => format!("{code:?}"),
                    None => "eof".to_owned(),
                };
                st.inbox.disconnected(&reason);
                self.on_closed(&mut st.pending, &st.inbox)
            }
            Ok(n) => {
                if let Reading::Slow { bytes_per_sec } = st.reading {
                    st.next_read_at = tokio::time::Instant::now()
                        + Duration::from_secs_f64(n as f64 / bytes_per_sec.max(1) as f64);
                }
                let c = st.conn.as_mut().expect("read from a connection");
                if !self.take_batch(&mut c.buf, &mut st.inbox) {
                    st.conn = None;
                    st.inbox.disconnected("unparseable stream");
                } else if !st.inbox.replies.is_empty() {
                    // A failed write shows as a failed read next.
                    let _ = c.writer.write_all(&st.inbox.replies).await;
                    st.inbox.replies.clear();
                }
                self.answer_if_complete(&mut st.pending, &st.inbox)
            }
        }
    }

    /// Acts out one fault; true when the client is done.
    async fn on_fault(&self, st: &mut Receiving, fault: ClientFault) -> bool {
        match fault {
            ClientFault::Drop => {
                if st.conn.take().is_some() {
                    st.inbox.disconnected("chaos: dropped");
                    return self.on_closed(&mut st.pending, &st.inbox);
                }
            }
            ClientFault::StopReading => st.reading = Reading::Stopped,
            ClientFault::SlowRead { bytes_per_sec } => {
                st.reading = Reading::Slow { bytes_per_sec };
                st.next_read_at = tokio::time::Instant::now();
            }
            ClientFault::ReadNormally => st.reading = Reading::Normal,
            ClientFault::Reconnect { resume, to } => {
                if st.conn.take().is_some() {
                    st.inbox.disconnected("chaos: reconnecting");
                    if self.on_closed(&mut st.pending, &st.inbox) {
                        return true;
                    }
                }
                match self.reconnect(&mut st.inbox, resume, to).await {
                    Ok(c) => st.conn = Some(c),
                    Err(_) => LiveStats::bump(&self.live.connect_errors),
                }
            }
        }
        false
    }

    /// A sync request from the fleet: answered now when everything up to
    /// its head is here (or the client is down), else once it is or at its
    /// deadline. True when the client is done.
    fn on_sync(&self, st: &mut Receiving, c: Control) -> bool {
        if st.inbox.account.complete_up_to(c.target_head) || st.conn.is_none() {
            self.answer_and_close(st, &c)
        } else {
            st.pending = Some(c);
            false
        }
    }

    /// Answers `c`; when it was the last, says the connection closed. True
    /// when the client is done.
    fn answer_and_close(&self, st: &mut Receiving, c: &Control) -> bool {
        if !self.answer(c, &st.inbox) {
            return false;
        }
        if st.conn.is_some() {
            st.inbox.disconnected("closed by the fleet");
        }
        true
    }

    /// Takes every complete frame (or RESP push, or NATS message) in `buf`;
    /// false when the stream cannot be parsed any more (the client stops
    /// reading). What the server expects back goes to `inbox.replies`.
    pub(super) fn take_batch(&self, buf: &mut BytesMut, inbox: &mut Inbox) -> bool {
        let now = self.live.run_clock_us();
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
    pub(super) fn on_closed(&self, pending: &mut Option<Control>, inbox: &Inbox) -> bool {
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
    pub(super) fn answer_if_complete(&self, pending: &mut Option<Control>, inbox: &Inbox) -> bool {
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
    pub(super) fn answer(&self, c: &Control, inbox: &Inbox) -> bool {
        let _ = self.links.reports.send(ClientReport {
            epoch: c.epoch,
            totals: inbox.account.totals(c.target_head),
            witness: if c.last { inbox.witness.clone() } else { None },
        });
        c.last
    }
}
