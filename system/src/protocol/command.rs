//! The typed commands of protocol v1. A client sends [`ClientCommand`]s and
//! receives [`ServerFrame`]s; every JSON object carries a string `command`.

use serde::{Deserialize, Serialize};

use super::ProtocolError;

/// Version announced in `login_ok`.
pub const PROTOCOL_VERSION: u32 = 1;

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
    },
    /// Keeps the session alive; answered by `heartbeat_ack`.
    Heartbeat {},
    /// Publish a message to every connected client.
    Send {
        body: String,
        /// Client-chosen id; a repeated id is delivered once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// The publisher's send time, microseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at_us: Option<u64>,
    },
    /// Replay everything after `last_seq`, then continue live.
    Resume { last_seq: u64 },
    /// Set the caller's presence.
    Status { status: UserStatus },
    /// Ask for a user's presence.
    GetStatus { user_id: String },
    /// End the session.
    Logout {},
}

impl std::fmt::Debug for ClientCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCommand::Login {
                user_id,
                resume_from,
                subscribe,
                ..
            } => f
                .debug_struct("Login")
                .field("user_id", user_id)
                .field("password", &"[redacted]")
                .field("resume_from", resume_from)
                .field("subscribe", subscribe)
                .finish(),
            ClientCommand::Heartbeat {} => f.write_str("Heartbeat"),
            ClientCommand::Send {
                body,
                message_id,
                sent_at_us,
            } => f
                .debug_struct("Send")
                .field("body", body)
                .field("message_id", message_id)
                .field("sent_at_us", sent_at_us)
                .finish(),
            ClientCommand::Resume { last_seq } => f
                .debug_struct("Resume")
                .field("last_seq", last_seq)
                .finish(),
            ClientCommand::Status { status } => {
                f.debug_struct("Status").field("status", status).finish()
            }
            ClientCommand::GetStatus { user_id } => f
                .debug_struct("GetStatus")
                .field("user_id", user_id)
                .finish(),
            ClientCommand::Logout {} => f.write_str("Logout"),
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
];

impl ClientCommand {
    /// Parses one frame payload, classifying what is wrong with it:
    /// not JSON / not an object → `bad_frame`, unknown `command` →
    /// `unknown_command`, missing or mistyped fields → `invalid_field`.
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
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
        }
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
    /// none): the sender's field, never used by the server. Kept
    /// last: loadgen reads it from the end of the frame.
    pub sent_at_us: u64,
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
    },
    HeartbeatAck {},
    /// The broker confirmed the message; it will be delivered.
    SendAck {
        message_id: String,
    },
    Broadcast(BroadcastFrame),
    /// Replay after `login.resume_from` / `resume` is complete up to `last_seq`.
    ResumeDone {
        last_seq: u64,
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
            ServerFrame::Broadcast(b) => 160 + b.message_id.len() + b.from.len() + b.body.len(),
            _ => 128,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: None,
            retry_after_secs: None,
        }
    }

    /// An `error` about one `send`, naming its message id.
    pub fn send_error(code: ErrorCode, message: impl Into<String>, message_id: String) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            message_id: Some(message_id),
            retry_after_secs: None,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
