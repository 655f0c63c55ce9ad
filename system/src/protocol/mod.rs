//! The client protocol (v1, and v2 with rooms): length-prefixed JSON frames
//! and the typed commands they carry. `docs/PROTOCOL.md` is the normative
//! description.

mod command;
mod error;
mod frame;
mod rooms;

pub use command::{
    BroadcastFrame, ClientCommand, ErrorCode, ServerFrame, SessionToken, StreamPosition,
    UserStatus, PROTOCOL_VERSION, PROTOCOL_VERSION_ROOMS,
};
pub use error::ProtocolError;
pub use frame::{encode_frame, FrameCodec, DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES};
pub use rooms::{quote_room, MemberSummary, RoomSummary, MAX_HISTORY_PAGE, QUOTED_ROOM_MAX_CHARS};

/// Now, in the protocol's timestamp unit (`sent_at_us`): microseconds since
/// the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
