//! The typed commands of protocols v1 and v2. A client sends
//! [`ClientCommand`]s and receives [`ServerFrame`]s; every JSON object
//! carries a string `command`. v2 (rooms) only adds commands, frames and
//! optional fields: a v1 session's frames are byte for byte what they were.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rooms::{MemberSummary, RoomSummary};
use super::ProtocolError;
use crate::room::{RoomKind, RoomRole};

/// Version announced in `login_ok` to a session that asked for no other.
pub const PROTOCOL_VERSION: u32 = 1;
/// The rooms protocol: asked for with `login.protocol = 2`.
pub const PROTOCOL_VERSION_ROOMS: u32 = 2;

/// Every command a client may send. `Debug` leaves the login password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ClientCommand {
    /// Authenticate. `resume_from` is the last sequence number the client has
    /// seen; everything after it is replayed before live traffic.
    Login {
        user_id: String,
        password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_from: Option<u64>,
        /// `false` makes a publish-only session (a bot or service): no
        /// broadcasts, so its replies never queue behind them. Default true.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        subscribe: bool,
        /// The protocol version asked for: absent or 1 is v1, 2 is rooms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// v2: per room, the last `seq` the client has; each is replayed
        /// after `login_ok`, closed by a `resume_done` naming the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_rooms: Option<BTreeMap<String, u64>>,
    },
    /// Keeps the session alive; answered by `heartbeat_ack`.
    Heartbeat {},
    /// Publish a message: to the lobby (every connected client), or (v2) to
    /// `room`, or to the direct room with user `to`.
    Send {
        body: String,
        /// v2: the room posted to; absent (or `lobby`) is the lobby.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// v2: a user id; the message goes to the direct room of the sender
        /// and that user, created on first use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Client-chosen id; a repeated id is delivered once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// The publisher's send time, microseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at_us: Option<u64>,
    },
    /// Replay everything after `last_seq`, then continue live; of the lobby,
    /// or (v2) of `room`.
    Resume {
        last_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Set the caller's presence.
    Status { status: UserStatus },
    /// Ask for a user's presence.
    GetStatus { user_id: String },
    /// End the session.
    Logout {},
    /// v2: create a public or private room; the creator joins as owner.
    CreateRoom { room: String, kind: RoomKind },
    /// v2: join a room (public, or one the caller is already a member of),
    /// replaying after `after_seq` first when given.
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
    },
    /// v2: leave a room.
    Leave { room: String },
    /// v2: make `user_id` a member of a room the caller is a member of.
    Invite { room: String, user_id: String },
    /// v2: list the caller's rooms.
    Rooms {},
    /// v2: list a room's members.
    Members { room: String },
    /// v2: `on` true makes this session receive a `presence` event, per
    /// room, whenever a member of one of its rooms goes online, away or
    /// offline; false stops them. Off after login.
    WatchPresence { on: bool },
    /// v2: one page of a room's messages: after `after_seq`, or before
    /// `before_seq`, or the newest; at most `limit`.
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

impl std::fmt::Debug for ClientCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCommand::Login {
                user_id,
                resume_from,
                subscribe,
                protocol,
                resume_rooms,
                ..
            } => f
                .debug_struct("Login")
                .field("user_id", user_id)
                .field("password", &"[redacted]")
                .field("resume_from", resume_from)
                .field("subscribe", subscribe)
                .field("protocol", protocol)
                .field("resume_rooms", resume_rooms)
                .finish(),
            ClientCommand::Heartbeat {} => f.write_str("Heartbeat"),
            ClientCommand::Send {
                body,
                room,
                to,
                message_id,
                sent_at_us,
            } => f
                .debug_struct("Send")
                .field("body", body)
                .field("room", room)
                .field("to", to)
                .field("message_id", message_id)
                .field("sent_at_us", sent_at_us)
                .finish(),
            ClientCommand::Resume { last_seq, room } => f
                .debug_struct("Resume")
                .field("last_seq", last_seq)
                .field("room", room)
                .finish(),
            ClientCommand::Status { status } => {
                f.debug_struct("Status").field("status", status).finish()
            }
            ClientCommand::GetStatus { user_id } => f
                .debug_struct("GetStatus")
                .field("user_id", user_id)
                .finish(),
            ClientCommand::Logout {} => f.write_str("Logout"),
            // No secret in any room command: its derived shape is fine.
            other => super::rooms::debug_room_command(other, f),
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

const CLIENT_COMMANDS: &[&str] = &[
    "login",
    "heartbeat",
    "send",
    "resume",
    "status",
    "get_status",
    "logout",
    "create_room",
    "join",
    "leave",
    "invite",
    "rooms",
    "members",
    "history",
    "watch_presence",
];

impl ClientCommand {
    /// Parses one frame payload, classifying what is wrong with it:
    /// not JSON / not an object → `bad_frame`, unknown `command` →
    /// `unknown_command`, missing or mistyped fields → `invalid_field`;
    /// then the rooms rules (`protocol/rooms.rs`): a bad room id →
    /// `invalid_room`, the lobby where it is implicit → `lobby_is_implicit`,
    /// a protocol above 2 → `unsupported_protocol`.
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut cmd = Self::parse_shape(payload)?;
        super::rooms::check_rooms_rules(&mut cmd)?;
        Ok(cmd)
    }

    /// The JSON checks of [`ClientCommand::parse`], before the rooms rules.
    fn parse_shape(payload: &[u8]) -> Result<Self, ProtocolError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| ProtocolError::BadFrame(e.to_string()))?;
        let command = match value.as_object().map(|o| o.get("command")) {
            None => {
                return Err(ProtocolError::BadFrame(
                    "payload is not a JSON object".into(),
                ))
            }
            Some(None) => {
                return Err(ProtocolError::InvalidField {
                    command: String::new(),
                    reason: "missing string field `command`".into(),
                })
            }
            Some(Some(serde_json::Value::String(c))) => c.clone(),
            Some(Some(_)) => {
                return Err(ProtocolError::InvalidField {
                    command: String::new(),
                    reason: "field `command` must be a string".into(),
                })
            }
        };
        if !CLIENT_COMMANDS.contains(&command.as_str()) {
            return Err(ProtocolError::UnknownCommand(command));
        }
        serde_json::from_value(value).map_err(|e| ProtocolError::InvalidField {
            command,
            reason: e.to_string(),
        })
    }

    /// The command's wire name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ClientCommand::Login { .. } => "login",
            ClientCommand::Heartbeat {} => "heartbeat",
            ClientCommand::Send { .. } => "send",
            ClientCommand::Resume { .. } => "resume",
            ClientCommand::Status { .. } => "status",
            ClientCommand::GetStatus { .. } => "get_status",
            ClientCommand::Logout {} => "logout",
            ClientCommand::CreateRoom { .. } => "create_room",
            ClientCommand::Join { .. } => "join",
            ClientCommand::Leave { .. } => "leave",
            ClientCommand::Invite { .. } => "invite",
            ClientCommand::Rooms {} => "rooms",
            ClientCommand::Members { .. } => "members",
            ClientCommand::History { .. } => "history",
            ClientCommand::WatchPresence { .. } => "watch_presence",
        }
    }

    /// Whether the command exists in protocol v1 (the others need a v2
    /// session).
    pub fn is_v1(&self) -> bool {
        matches!(
            self,
            ClientCommand::Login { .. }
                | ClientCommand::Heartbeat {}
                | ClientCommand::Send { .. }
                | ClientCommand::Resume { .. }
                | ClientCommand::Status { .. }
                | ClientCommand::GetStatus { .. }
                | ClientCommand::Logout {}
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands always serialize")
    }
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Online,
    Away,
    Offline,
}

impl UserStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            UserStatus::Online => "online",
            UserStatus::Away => "away",
            UserStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(UserStatus::Online),
            "away" => Some(UserStatus::Away),
            "offline" => Some(UserStatus::Offline),
            _ => None,
        }
    }
}

/// One chat message as every client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastFrame {
    /// Global, gap-free sequence number assigned by the consumer (starts at 1).
    pub seq: u64,
    pub message_id: String,
    /// User id (or API sender) that published the message.
    pub from: String,
    pub body: String,
    /// When the server or gateway that took the message received it, by its
    /// own clock (microseconds since the Unix epoch); 0 for messages stored
    /// before the field existed. What clients show and metrics use.
    #[serde(default)]
    pub received_at_us: u64,
    /// The sender's own clock at sending, microseconds since the Unix epoch,
    /// as the sender claimed it (or the server's receive time when it gave
    /// none): the sender's field, never used by the server. Kept last
    /// among the lobby's fields: loadgen reads it from the end of a lobby
    /// frame.
    pub sent_at_us: u64,
    /// v2: the room of a room message; absent on the lobby's, so a lobby
    /// broadcast is byte for byte a v1 one. `seq` is then the room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Which message log a session reads: `id` names the deployment's stream
/// (the same on every node of it, kept across restarts), `epoch` changes
/// when the log lost its history, so sequence numbers of another epoch mean
/// nothing here. A client keys its saved last `seq` by `id` and compares
/// `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub id: String,
    pub epoch: String,
}

/// A session token (`t`/`h` + 64 hex): a bearer credential. On the wire it
/// is the plain string; `Debug` never shows it, so a logged frame or
/// `LoginInfo` cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself, for the one place that needs it (sending it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// Every frame a server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ServerFrame {
    LoginOk {
        user_id: String,
        session_token: SessionToken,
        /// Highest sequence number assigned when the session started.
        last_seq: u64,
        heartbeat_interval_ms: u64,
        protocol_version: u32,
        /// The deployment's message log (an additive v1 field; absent from
        /// servers that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<StreamPosition>,
        /// v2: the user's rooms, each with its head at login.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rooms: Option<Vec<RoomSummary>>,
    },
    HeartbeatAck {},
    /// The broker confirmed the message; it will be delivered.
    SendAck {
        message_id: String,
        /// v2: the room it went to (absent for the lobby).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    Broadcast(BroadcastFrame),
    /// Replay after `login.resume_from` / `resume` is complete up to
    /// `last_seq`: of the lobby, or (v2) of `room`.
    ResumeDone {
        last_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    Status {
        user_id: String,
        status: UserStatus,
    },
    LogoutOk {},
    Error {
        code: ErrorCode,
        message: String,
        /// Set when the error concerns one `send`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// On a throttled `login` (`rate_limited`): seconds until a new
        /// attempt may be taken (an additive v1 field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
        /// v2: set when the error concerns one room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// v2: the room exists now; the creator is its owner (a `joined`
    /// follows).
    RoomCreated {
        room: String,
        kind: RoomKind,
    },
    /// v2: this session receives `room`'s messages with `seq` above `seq`
    /// from now on (after a replay, when one was asked for).
    Joined {
        room: String,
        kind: RoomKind,
        role: RoomRole,
        seq: u64,
    },
    /// v2: the user left `room`; its last message for them was `seq`.
    Left {
        room: String,
        seq: u64,
    },
    /// v2: `user_id` is a member of `room` now.
    Invited {
        room: String,
        user_id: String,
    },
    /// v2: the caller's rooms.
    RoomsList {
        rooms: Vec<RoomSummary>,
    },
    /// v2: a room's members.
    MembersList {
        room: String,
        members: Vec<MemberSummary>,
    },
    /// v2: answers `watch_presence`: whether `presence` events follow.
    WatchingPresence {
        on: bool,
    },
    /// v2, to sessions watching presence: `user_id`, a member of `room`,
    /// is `status` now (one event per room the two share).
    Presence {
        room: String,
        user_id: String,
        status: UserStatus,
    },
    /// v2: one page of a room's messages in `seq` order; `more` says
    /// whether older (for `before_seq` / newest) or newer (for
    /// `after_seq`) messages exist beyond the page.
    HistoryPage {
        room: String,
        messages: Vec<BroadcastFrame>,
        more: bool,
    },
}

impl ServerFrame {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("frames always serialize")
    }

    /// The frame ready for the wire (length prefix included), serialized
    /// straight behind the prefix: one buffer, no copy of the payload.
    pub fn to_frame(&self) -> bytes::Bytes {
        use super::FRAME_HEADER_BYTES;
        let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + self.json_size_hint());
        buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        serde_json::to_writer(&mut buf, self).expect("frames always serialize");
        let len = (buf.len() - FRAME_HEADER_BYTES) as u32;
        buf[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
        bytes::Bytes::from(buf)
    }

    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(payload).map_err(|e| ProtocolError::BadFrame(e.to_string()))
    }

    /// About the size of the frame's JSON, so [`ServerFrame::to_frame`]'s
    /// buffer is allocated once: a broadcast's field names, three u64s and
    /// punctuation take at most 160 bytes beside its strings (escaping can
    /// still grow it; the buffer then grows as usual).
    fn json_size_hint(&self) -> usize {
        match self {
            ServerFrame::Broadcast(b) => {
                let room = b.room.as_ref().map_or(0, |r| 10 + r.len());
                160 + b.message_id.len() + b.from.len() + b.body.len() + room
            }
            _ => 128,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: None,
            retry_after_secs: None,
            room: None,
        }
    }

    /// An `error` about one `send`, naming its message id.
    pub fn send_error(code: ErrorCode, message: impl Into<String>, message_id: String) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: Some(message_id),
            retry_after_secs: None,
            room: None,
        }
    }

    /// An `error` about one room (v2), naming it.
    pub fn room_error(code: ErrorCode, message: impl Into<String>, room: &str) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: None,
            retry_after_secs: None,
            room: Some(room.to_owned()),
        }
    }
}

/// Machine-readable reason in an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Payload is not a UTF-8 JSON object. Connection stays open.
    BadFrame,
    /// Length prefix above the maximum. Connection is closed.
    FrameTooLarge,
    /// `command` names no known command. Connection stays open.
    UnknownCommand,
    /// A field is missing, mistyped or out of range. Connection stays open.
    InvalidField,
    /// A command other than `login` before logging in. Connection stays open.
    NotLoggedIn,
    /// Wrong user id or password. Connection stays open, unless it was the
    /// connection's `max_login_failures_per_connection`-th failure.
    AuthFailed,
    /// `login` on an already authenticated connection.
    AlreadyLoggedIn,
    /// No `login` within the login deadline. Connection is closed.
    LoginTimeout,
    /// No frame within the heartbeat timeout. Connection is closed.
    HeartbeatTimeout,
    /// The broker did not confirm in time; the message was not accepted.
    BrokerUnavailable,
    /// Admission control: too many sends already await the broker's confirm
    /// (on this connection, or on the node); refused at once, not published.
    /// Carries `message_id`; retry later. Connection stays open.
    Overloaded,
    /// The client did not read fast enough. Connection is closed.
    SlowConsumer,
    /// A limit was hit: a refused `send` (stays open, carries `message_id`),
    /// a throttled login (stays open), a frame flood or too many failed
    /// logins on the connection (closes).
    RateLimited,
    /// The server is at its connection limit. Connection is closed.
    TooManyConnections,
    /// The server is shutting down. Connection is closed.
    ShuttingDown,
    /// The requested replay cannot be served (stored nowhere, or too large);
    /// no `resume_done` follows, live delivery starts at the current head.
    ResumeUnavailable,
    /// An unexpected server-side failure.
    Internal,
    /// v2: a room id that breaks the room id rule (docs/PROTOCOL.md).
    InvalidRoom,
    /// v2: no room of that id exists.
    UnknownRoom,
    /// v2: the caller is not a member of the room (read, post, invite).
    NotAMember,
    /// v2: `create_room` of an id that exists.
    RoomExists,
    /// v2: the user is in `rooms.max_rooms_per_user` rooms already.
    TooManyRooms,
    /// v2: the room has `rooms.max_members_per_room` members already.
    RoomFull,
    /// v2: the lobby cannot be created, joined, left or invited to; every
    /// session is in it.
    LobbyIsImplicit,
    /// `login.protocol` names a version this server does not speak.
    UnsupportedProtocol,
}

impl ErrorCode {
    /// The wire name (`auth_failed`, …): what users and metrics see.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::LoginTimeout => "login_timeout",
            ErrorCode::HeartbeatTimeout => "heartbeat_timeout",
            ErrorCode::BrokerUnavailable => "broker_unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::ResumeUnavailable => "resume_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::UnknownRoom => "unknown_room",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::LobbyIsImplicit => "lobby_is_implicit",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rtmc_commands_total{command}` is exported at 0 for exactly the
    /// commands a client may send: the telemetry's list and this one are
    /// kept apart by the layering, so this test keeps them equal.
    #[test]
    fn the_commands_metric_labels_every_client_command() {
        let (_, _, labels) = crate::telemetry::LABELLED_COUNTERS
            .iter()
            .find(|c| c.0 == "rtmc_commands_total")
            .expect("rtmc_commands_total is a labelled counter");
        let mut exported: Vec<&str> = labels.to_vec();
        let mut parsed: Vec<&str> = CLIENT_COMMANDS.to_vec();
        exported.sort_unstable();
        parsed.sort_unstable();
        assert_eq!(exported, parsed);
    }

    #[test]
    fn debug_of_a_login_ok_never_shows_the_session_token() {
        let token = format!("t{}", "ab".repeat(32));
        let frame = ServerFrame::LoginOk {
            user_id: "alice".into(),
            session_token: SessionToken::new(token.clone()),
            last_seq: 7,
            heartbeat_interval_ms: 1000,
            protocol_version: PROTOCOL_VERSION,
            stream: Some(StreamPosition {
                id: "s".into(),
                epoch: "e".into(),
            }),
            rooms: None,
        };
        let shown = format!("{frame:?} {frame:#?}");
        assert!(!shown.contains(&token), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        // On the wire it stays the plain string.
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(json["session_token"], token.as_str());
        let back: ServerFrame = serde_json::from_value(json).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn debug_never_shows_a_login_password() {
        let login = ClientCommand::Login {
            user_id: "alice".into(),
            password: "s3cret".into(),
            resume_from: Some(4),
            subscribe: true,
            protocol: None,
            resume_rooms: None,
        };
        let shown = format!("{login:?} {login:#?}");
        // Wire names match serde's for every code.
        for code in [
            ErrorCode::AuthFailed,
            ErrorCode::ResumeUnavailable,
            ErrorCode::Overloaded,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn classifies_bad_input() {
        assert_eq!(
            ClientCommand::parse(b"not json").unwrap_err().code(),
            ErrorCode::BadFrame
        );
        assert_eq!(
            ClientCommand::parse(b"[1]").unwrap_err().code(),
            ErrorCode::BadFrame
        );
        assert_eq!(
            ClientCommand::parse(br#"{"command":"fly"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::UnknownCommand
        );
        assert_eq!(
            ClientCommand::parse(br#"{"command":"send","body":5}"#)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidField
        );
        assert_eq!(
            ClientCommand::parse(br#"{"command":7}"#)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn frames_have_their_wire_shape() {
        let json = ServerFrame::Broadcast(BroadcastFrame {
            seq: 7,
            message_id: "m".into(),
            from: "u".into(),
            body: "hi".into(),
            received_at_us: 2,
            sent_at_us: 1,
            room: None,
        })
        .to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"command":"broadcast","seq":7,"message_id":"m","from":"u","body":"hi","received_at_us":2,"sent_at_us":1}"#
        );
        let framed = ServerFrame::parse(&json).unwrap().to_frame();
        assert_eq!(&framed[..], &super::super::encode_frame(&json)[..]);
        assert_eq!(
            ClientCommand::parse(br#"{"command":"heartbeat"}"#).unwrap(),
            ClientCommand::Heartbeat {}
        );
    }
}
