//! A client library for protocols v1 and v2, used by the terminal client,
//! the test kit and loadgen. [`Connection`] is the raw framed link;
//! [`ChatClient`] adds login, acknowledged sends, broadcast buffering and
//! automatic resume after a reconnect (it remembers the last sequence number
//! it delivered, per room); `rooms.rs` holds its v2 (rooms) commands.

mod rooms;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::backoff::Backoff;
use crate::protocol::{
    BroadcastFrame, ClientCommand, ErrorCode, FrameCodec, ProtocolError, RoomSummary, ServerFrame,
    SessionToken, StreamPosition, PROTOCOL_VERSION_ROOMS,
};

pub use rooms::{RoomEvent, RoomState, SendTarget};

/// Failure seen by a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("server closed the connection")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{message} (server code `{}`)", code.as_str())]
    Server { code: ErrorCode, message: String },
    #[error("unexpected frame: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

/// A framed connection to a server: plain TCP by default, or any stream
/// (e.g. TLS) through [`Connection::from_io`].
pub struct Connection<S = TcpStream> {
    framed: Framed<S, FrameCodec>,
}

impl Connection<TcpStream> {
    pub async fn connect(addr: &str, max_frame_bytes: usize) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Self::from_stream(stream, max_frame_bytes))
    }

    pub fn from_stream(stream: TcpStream, max_frame_bytes: usize) -> Self {
        let _ = stream.set_nodelay(true);
        Self::from_io(stream, max_frame_bytes)
    }

    pub fn into_inner(self) -> TcpStream {
        self.framed.into_inner()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Frames any byte stream (a TLS stream, say).
    pub fn from_io(io: S, max_frame_bytes: usize) -> Self {
        Self {
            framed: Framed::new(io, FrameCodec::new(max_frame_bytes)),
        }
    }

    pub async fn send(&mut self, cmd: &ClientCommand) -> Result<(), ClientError> {
        self.send_raw(&cmd.to_json()).await
    }

    /// Sends any payload as one frame (tests use it for bad input).
    pub async fn send_raw(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.framed.send(payload).await?;
        Ok(())
    }

    /// The next frame's raw payload; `Closed` at end of stream.
    pub async fn recv_raw(&mut self) -> Result<Bytes, ClientError> {
        match self.framed.next().await {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => Err(e.into()),
            None => Err(ClientError::Closed),
        }
    }

    pub async fn recv(&mut self) -> Result<ServerFrame, ClientError> {
        let raw = self.recv_raw().await?;
        Ok(ServerFrame::parse(&raw)?)
    }

    pub async fn recv_timeout(&mut self, limit: Duration) -> Result<ServerFrame, ClientError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// Closes the sending side (the server sees end of stream and ends the session).
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        use tokio::io::AsyncWriteExt;
        self.framed
            .get_mut()
            .shutdown()
            .await
            .map_err(|e| ClientError::Protocol(e.into()))
    }
}

/// Session parameters the server sent in `login_ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    pub user_id: String,
    pub session_token: SessionToken,
    pub last_seq: u64,
    pub heartbeat_interval_ms: u64,
    /// The deployment's message log and its epoch (`None` from a server
    /// that does not name it): sequence numbers belong to it.
    pub stream: Option<StreamPosition>,
    /// v2: the protocol version the server agreed to (1 for v1).
    pub protocol_version: u32,
    /// v2: the user's rooms at login, each with its head then.
    pub rooms: Vec<RoomSummary>,
}

impl ClientError {
    /// Whether the link itself failed (worth a reconnect), as opposed to a
    /// refusal by the server or a timeout waiting for traffic.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Closed
                | ClientError::Connect { .. }
                | ClientError::Protocol(ProtocolError::Io(_))
        ) || matches!(
            self,
            ClientError::Server {
                code: ErrorCode::ShuttingDown
                    | ErrorCode::SlowConsumer
                    | ErrorCode::HeartbeatTimeout,
                ..
            }
        )
    }
}

/// How a [`ChatClient`] recovers from a lost connection.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Reconnect automatically when the link fails.
    pub enabled: bool,
    /// Attempts before giving up (each tries the next address).
    pub max_attempts: u32,
    /// First delay between attempts; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// What happened to a [`ChatClient`]'s link, for callers that tell the
/// user (see [`ChatClient::on_link_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link failed; reconnecting (with back-off) starts now.
    Lost { cause: String },
    /// Logged in again at `addr`; `replayed` messages precede live traffic.
    Reconnected { addr: String, replayed: u64 },
    /// Every attempt failed; the last error is returned to the caller.
    GaveUp { attempts: u32 },
    /// Logged in again, but the deployment's message log is another one (a
    /// new epoch: it lost its history, or another deployment): what was
    /// missed cannot be recovered; delivery goes on from `from_seq`.
    HistoryLost { from_seq: u64 },
}

/// Called with each [`LinkEvent`] as it happens.
type LinkObserver = Box<dyn Fn(&LinkEvent) + Send + Sync>;

/// A logged-in chat client that reconnects and resumes where it left off:
/// after a lost link it logs in again (to the next address of its list) with
/// `resume_from` = the last sequence number it delivered, so the caller sees
/// no gap and no duplicate. Sends carry a client-chosen message id, so a send
/// whose ack was lost is repeated safely (the consumer dedupes by id).
pub struct ChatClient {
    /// Server addresses; the client fails over along this list.
    addrs: Vec<String>,
    /// Index of the address in use.
    current: usize,
    /// How reconnects happen.
    pub policy: ReconnectPolicy,
    /// Reconnects performed so far.
    pub reconnects: u32,
    user_id: String,
    password: String,
    max_frame_bytes: usize,
    conn: Connection,
    /// Broadcasts received while waiting for a reply, in order.
    pending: VecDeque<BroadcastFrame>,
    /// Highest lobby sequence number handed to the caller.
    last_seq: u64,
    /// Highest lobby sequence number received (handed over or pending):
    /// the resume point and the dedupe bound.
    lobby_received: u64,
    /// v2: the rooms this session is in, each with its highest `seq`
    /// received (resume point and dedupe bound per room).
    rooms: BTreeMap<String, RoomState>,
    /// v2: joins and leaves seen (asked for or not), for the caller.
    room_events: VecDeque<RoomEvent>,
    /// The protocol version to log in with (1 or 2).
    protocol: u32,
    pub info: LoginInfo,
    /// Bound on waiting for one reply.
    pub reply_timeout: Duration,
    /// Told about lost links and reconnects.
    observer: Option<LinkObserver>,
}

impl ChatClient {
    /// Connects and logs in; live delivery starts at the server's head.
    pub async fn connect(addr: &str, user_id: &str, password: &str) -> Result<Self, ClientError> {
        Self::connect_from(addr, user_id, password, None).await
    }

    /// Connects and logs in, replaying everything after `resume_from` first.
    pub async fn connect_from(
        addr: &str,
        user_id: &str,
        password: &str,
        resume_from: Option<u64>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, user_id, password, resume_from, 1).await
    }

    /// Connects and logs in with protocol v2 (rooms): the lobby as in v1,
    /// and every room the user is in (`info.rooms`), live from its head.
    pub async fn connect_v2(
        addr: &str,
        user_id: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, user_id, password, None, PROTOCOL_VERSION_ROOMS).await
    }

    async fn connect_with(
        addr: &str,
        user_id: &str,
        password: &str,
        resume_from: Option<u64>,
        protocol: u32,
    ) -> Result<Self, ClientError> {
        let max = crate::protocol::DEFAULT_MAX_FRAME_BYTES;
        let mut conn = Connection::connect(addr, max).await?;
        let reply_timeout = Duration::from_secs(10);
        let cmd = login_command(user_id, password, resume_from, protocol, BTreeMap::new());
        let info = login_with(&mut conn, cmd, reply_timeout).await?;
        let last_seq = resume_from.unwrap_or(info.last_seq);
        let rooms = rooms::states_of(&info.rooms);
        Ok(Self {
            lobby_received: last_seq,
            rooms,
            room_events: VecDeque::new(),
            protocol,
            addrs: vec![addr.to_owned()],
            current: 0,
            policy: ReconnectPolicy::default(),
            reconnects: 0,
            user_id: user_id.to_owned(),
            password: password.to_owned(),
            max_frame_bytes: max,
            conn,
            pending: VecDeque::new(),
            last_seq,
            info,
            reply_timeout,
            observer: None,
        })
    }

    /// Calls `f` on every lost link, reconnect and final failure.
    pub fn on_link_event(&mut self, f: impl Fn(&LinkEvent) + Send + Sync + 'static) {
        self.observer = Some(Box::new(f));
    }

    fn tell(&self, e: LinkEvent) {
        if let Some(f) = &self.observer {
            f(&e);
        }
    }

    /// The last sequence number delivered to the caller.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Adds failover addresses tried (in order, after the current one) on reconnect.
    pub fn with_failover(mut self, addrs: impl IntoIterator<Item = String>) -> Self {
        for a in addrs {
            if !self.addrs.contains(&a) {
                self.addrs.push(a);
            }
        }
        self
    }

    /// The address of the server in use.
    pub fn addr(&self) -> &str {
        &self.addrs[self.current]
    }

    /// Reconnects (to `addr`, or the server in use) and resumes after the
    /// last delivered sequence number: no gap, no duplicate.
    pub async fn reconnect(&mut self, addr: Option<&str>) -> Result<(), ClientError> {
        if let Some(a) = addr {
            match self.addrs.iter().position(|x| x == a) {
                Some(i) => self.current = i,
                None => {
                    self.addrs.push(a.to_owned());
                    self.current = self.addrs.len() - 1;
                }
            }
        }
        let mut conn = Connection::connect(self.addr(), self.max_frame_bytes).await?;
        // Resume after what the caller has, including buffered broadcasts:
        // the lobby, and (v2) each room.
        let resume = self.lobby_received;
        let before = self.info.stream.clone();
        let resume_rooms = self
            .rooms
            .iter()
            .map(|(r, s)| (r.clone(), s.received))
            .collect();
        let cmd = login_command(
            &self.user_id,
            &self.password,
            Some(resume),
            self.protocol,
            resume_rooms,
        );
        self.info = login_with(&mut conn, cmd, self.reply_timeout).await?;
        self.note_login_rooms();
        self.conn = conn;
        self.reconnects += 1;
        let replayed = self.info.last_seq.saturating_sub(resume);
        self.tell(LinkEvent::Reconnected {
            addr: self.addr().to_owned(),
            replayed,
        });
        if before.is_some() && before != self.info.stream {
            // The seqs we hold mean nothing in this log: its replay is not
            // ours, so skip it and go on from its head.
            self.pending.clear();
            self.last_seq = self.info.last_seq;
            self.lobby_received = self.info.last_seq;
            self.tell(LinkEvent::HistoryLost {
                from_seq: self.info.last_seq + 1,
            });
        }
        Ok(())
    }

    /// Replays everything after `after` on this session (the `resume`
    /// command), then live traffic goes on; returns how many messages the
    /// replay holds (they come first from [`ChatClient::next_broadcast`]).
    /// Every broadcast that arrives before `resume_done` is either in the
    /// replay or comes again after it, so they are gathered, ordered and
    /// deduped by seq. `resume_unavailable` is returned as the server's error.
    pub async fn resume_after(&mut self, after: u64) -> Result<u64, ClientError> {
        self.conn
            .send(&ClientCommand::Resume {
                last_seq: after,
                room: None,
            })
            .await?;
        self.pending.retain(|b| b.room.is_some());
        self.last_seq = after;
        self.lobby_received = after;
        let mut gathered = Vec::new();
        let deadline = tokio::time::Instant::now() + self.reply_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.conn.recv_timeout(left).await? {
                ServerFrame::Broadcast(b) if b.room.is_some() => self.accept(b),
                ServerFrame::Broadcast(b) => gathered.push(b),
                ServerFrame::ResumeDone { room: None, .. } => break,
                ServerFrame::Error { code, message, .. } => {
                    return Err(ClientError::Server { code, message })
                }
                _ => {}
            }
        }
        gathered.sort_by_key(|b| b.seq);
        gathered.dedup_by_key(|b| b.seq);
        gathered.retain(|b| b.seq > after);
        let replayed = gathered.len() as u64;
        if let Some(b) = gathered.last() {
            self.lobby_received = b.seq;
        }
        self.pending.extend(gathered);
        Ok(replayed)
    }

    /// Reconnects with back-off along the address list, per the policy, if
    /// `cause` is a failed link; any other error is returned as is.
    async fn recover(&mut self, cause: ClientError) -> Result<(), ClientError> {
        if !self.policy.enabled || !cause.is_transport() {
            return Err(cause);
        }
        self.tell(LinkEvent::Lost {
            cause: cause.to_string(),
        });
        let mut backoff = Backoff::new(self.policy.initial_backoff, self.policy.max_backoff);
        let mut last = cause;
        for attempt in 0..self.policy.max_attempts {
            if attempt > 0 {
                self.current = (self.current + 1) % self.addrs.len();
            }
            backoff.sleep().await;
            match self.reconnect(None).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transport() || matches!(e, ClientError::Timeout(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        self.tell(LinkEvent::GaveUp {
            attempts: self.policy.max_attempts,
        });
        Err(last)
    }

    /// Buffers a broadcast unless it was already received (dedupe by seq,
    /// per room).
    fn accept(&mut self, b: BroadcastFrame) {
        if self.fresh(&b) {
            self.pending.push_back(b);
        } else {
            metrics::counter!("rtmc_client_duplicates_total").increment(1);
        }
    }

    /// Whether `b` is above the highest seq received of its room (the
    /// lobby, or a v2 room); if so it now is the highest.
    fn fresh(&mut self, b: &BroadcastFrame) -> bool {
        let newest = match &b.room {
            None => &mut self.lobby_received,
            Some(room) => &mut self.rooms.entry(room.clone()).or_default().received,
        };
        if b.seq > *newest {
            *newest = b.seq;
            true
        } else {
            false
        }
    }

    /// Hands a buffered broadcast over, moving the lobby's delivered seq.
    fn deliver(&mut self, b: BroadcastFrame) -> BroadcastFrame {
        if b.room.is_none() {
            self.last_seq = b.seq;
        }
        b
    }

    /// Reads frames until `want` accepts one; broadcasts are buffered.
    async fn wait_for<T>(
        &mut self,
        mut want: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> Result<T, ClientError> {
        let limit = self.reply_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.conn.recv_timeout(left).await?;
            if let Some(t) = want(&frame) {
                return Ok(t);
            }
            match frame {
                ServerFrame::Broadcast(b) => self.accept(b),
                ServerFrame::Error { code, message, .. } => {
                    return Err(ClientError::Server { code, message })
                }
                ServerFrame::ResumeDone { .. } | ServerFrame::HeartbeatAck {} => {}
                other if self.note_room_frame(&other) => {}
                other => return Err(ClientError::Unexpected(Box::new(other))),
            }
        }
    }

    /// Publishes and waits for the `send_ack` of this message id; returns
    /// the id. On a lost link it reconnects (resuming) and sends again with
    /// the same id, which the consumer delivers once. A refusal by the server
    /// (`rate_limited`, `overloaded`, `broker_unavailable`, `invalid_field`) is returned.
    pub async fn send(
        &mut self,
        body: &str,
        message_id: Option<&str>,
    ) -> Result<String, ClientError> {
        let id = message_id
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        loop {
            match self.send_once(body, &id, &SendTarget::Lobby).await {
                Ok(_) => return Ok(id),
                Err(e) => self.recover(e).await?,
            }
        }
    }

    /// Sends once to `target` and waits for the ack of `id`; the room the
    /// ack names (v2; `None` for the lobby).
    async fn send_once(
        &mut self,
        body: &str,
        id: &str,
        target: &SendTarget,
    ) -> Result<Option<String>, ClientError> {
        let (room, to) = target.fields();
        self.conn
            .send(&ClientCommand::Send {
                body: body.to_owned(),
                room,
                to,
                message_id: Some(id.to_owned()),
                sent_at_us: None,
            })
            .await?;
        let limit = self.reply_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.conn.recv_timeout(left).await? {
                ServerFrame::SendAck { message_id, room } if message_id == id => return Ok(room),
                ServerFrame::Error {
                    code,
                    message,
                    message_id: Some(m),
                    ..
                } if m == id => return Err(ClientError::Server { code, message }),
                ServerFrame::Error {
                    code,
                    message,
                    message_id: None,
                    ..
                } => return Err(ClientError::Server { code, message }),
                ServerFrame::Broadcast(b) => self.accept(b),
                // Late acks or errors of earlier sends, heartbeat acks: not ours.
                other => {
                    self.note_room_frame(&other);
                }
            }
        }
    }

    /// A heartbeat; a link that fails it, or leaves it unanswered within
    /// `reply_timeout` (a black hole), is replaced by a new one (reconnect
    /// and resume, per the policy).
    pub async fn heartbeat_or_reconnect(&mut self) -> Result<(), ClientError> {
        match self.heartbeat().await {
            Ok(()) => Ok(()),
            Err(ClientError::Timeout(_)) if self.policy.enabled => {
                self.recover(ClientError::Closed).await
            }
            Err(e) => self.recover(e).await,
        }
    }

    pub async fn heartbeat(&mut self) -> Result<(), ClientError> {
        self.conn.send(&ClientCommand::Heartbeat {}).await?;
        self.wait_for(|f| matches!(f, ServerFrame::HeartbeatAck {}).then_some(()))
            .await
    }

    /// Sends a command and waits for the `status` frame answering it.
    pub async fn request_status(&mut self, cmd: ClientCommand) -> Result<ServerFrame, ClientError> {
        self.conn.send(&cmd).await?;
        self.wait_for(|f| matches!(f, ServerFrame::Status { .. }).then(|| f.clone()))
            .await
    }

    /// The next broadcast (in sequence order, each once), waiting up to
    /// `limit`. A lost link is recovered (reconnect + resume) transparently.
    pub async fn next_broadcast(&mut self, limit: Duration) -> Result<BroadcastFrame, ClientError> {
        if let Some(b) = self.pending.pop_front() {
            return Ok(self.deliver(b));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = match self.conn.recv_timeout(left).await {
                Ok(f) => f,
                Err(e) => {
                    self.recover(e).await?;
                    if let Some(b) = self.pending.pop_front() {
                        return Ok(self.deliver(b));
                    }
                    continue;
                }
            };
            match frame {
                ServerFrame::Broadcast(b) if self.fresh(&b) => return Ok(self.deliver(b)),
                ServerFrame::Broadcast(_) => {
                    metrics::counter!("rtmc_client_duplicates_total").increment(1);
                }
                ServerFrame::Error { code, message, .. } => {
                    // A node going away (shutdown, slow-consumer cut) is a
                    // reason to fail over; anything else is the caller's.
                    self.recover(ClientError::Server { code, message }).await?;
                    if let Some(b) = self.pending.pop_front() {
                        return Ok(self.deliver(b));
                    }
                }
                other => {
                    self.note_room_frame(&other);
                }
            }
        }
    }

    /// Ends the session cleanly.
    pub async fn logout(mut self) -> Result<(), ClientError> {
        self.conn.send(&ClientCommand::Logout {}).await?;
        self.wait_for(|f| matches!(f, ServerFrame::LogoutOk {}).then_some(()))
            .await
    }

    /// The raw connection, for tests that misbehave on purpose.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Sends `login` and waits for `login_ok` (or the server's error).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    user_id: &str,
    password: &str,
    resume_from: Option<u64>,
    limit: Duration,
) -> Result<LoginInfo, ClientError> {
    let cmd = login_command(user_id, password, resume_from, 1, BTreeMap::new());
    login_with(conn, cmd, limit).await
}

/// The `login` of a subscribing session: v1, or v2 with the rooms to
/// resume.
fn login_command(
    user_id: &str,
    password: &str,
    resume_from: Option<u64>,
    protocol: u32,
    resume_rooms: BTreeMap<String, u64>,
) -> ClientCommand {
    let v2 = protocol >= PROTOCOL_VERSION_ROOMS;
    ClientCommand::Login {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
        resume_from,
        subscribe: true,
        protocol: v2.then_some(protocol),
        resume_rooms: (v2 && !resume_rooms.is_empty()).then_some(resume_rooms),
    }
}

/// Logs in a publish-only session (no broadcasts; see `login.subscribe`).
pub async fn login_publisher<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    user_id: &str,
    password: &str,
    limit: Duration,
) -> Result<LoginInfo, ClientError> {
    let cmd = ClientCommand::Login {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
        resume_from: None,
        subscribe: false,
        protocol: None,
        resume_rooms: None,
    };
    login_with(conn, cmd, limit).await
}

async fn login_with<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    cmd: ClientCommand,
    limit: Duration,
) -> Result<LoginInfo, ClientError> {
    conn.send(&cmd).await?;
    match conn.recv_timeout(limit).await? {
        ServerFrame::LoginOk {
            user_id,
            session_token,
            last_seq,
            heartbeat_interval_ms,
            stream,
            protocol_version,
            rooms,
        } => Ok(LoginInfo {
            user_id,
            session_token,
            last_seq,
            heartbeat_interval_ms,
            stream,
            protocol_version,
            rooms: rooms.unwrap_or_default(),
        }),
        ServerFrame::Error { code, message, .. } => Err(ClientError::Server { code, message }),
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}
