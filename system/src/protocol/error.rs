//! Why a frame or a command was rejected, mapped to the wire error code.

use super::ErrorCode;

/// A rejected frame or command. Each variant maps to one [`ErrorCode`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame is not a UTF-8 JSON object: {0}")]
    BadFrame(String),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("invalid fields for {command:?}: {reason}")]
    InvalidField { command: String, reason: String },
    #[error("i/o error: {0}")]
    Io(String),
    #[error("invalid room for {command:?}: {reason}")]
    InvalidRoom { command: String, reason: String },
    #[error("{command:?} does not apply to the lobby: every session is in it")]
    LobbyIsImplicit { command: String },
    #[error("protocol {0} is not supported (this server speaks 1 and 2)")]
    UnsupportedProtocol(u32),
}

impl ProtocolError {
    /// The machine-readable code sent in the `error` frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::BadFrame(_) => ErrorCode::BadFrame,
            ProtocolError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            ProtocolError::InvalidField { .. } => ErrorCode::InvalidField,
            ProtocolError::Io(_) => ErrorCode::Internal,
            ProtocolError::InvalidRoom { .. } => ErrorCode::InvalidRoom,
            ProtocolError::LobbyIsImplicit { .. } => ErrorCode::LobbyIsImplicit,
            ProtocolError::UnsupportedProtocol(_) => ErrorCode::UnsupportedProtocol,
        }
    }
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e.to_string())
    }
}
