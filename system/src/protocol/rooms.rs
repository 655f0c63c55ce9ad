//! Protocol v2's room rules: the shapes listed in `rooms_list` /
//! `members_list`, and the checks `ClientCommand::parse` makes after the
//! JSON shape (room ids, the implicit lobby, the protocol version), so every
//! command that reaches the server names a well-formed room.

use serde::{Deserialize, Serialize};

use super::{ClientCommand, ProtocolError, UserStatus, PROTOCOL_VERSION_ROOMS};
use crate::room::{RoomId, RoomKind, RoomRole, LOBBY};

/// Largest `history` page, in messages.
pub const MAX_HISTORY_PAGE: u32 = 500;
/// How much of a client's room id an error message quotes, in characters.
pub const QUOTED_ROOM_MAX_CHARS: usize = 64;

/// One room of a user, as `login_ok.rooms` and `rooms_list` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room id.
    pub room: String,
    /// Public, private or direct.
    pub kind: RoomKind,
    /// The user's role in it.
    pub role: RoomRole,
    /// The room's newest `seq` when the list was made (0: no message yet).
    pub seq: u64,
}

/// One member of a room, as `members_list` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSummary {
    /// The member's user id.
    pub user_id: String,
    /// Owner or member.
    pub role: RoomRole,
    /// The member's presence (`online`, `away`, `offline`) when the list
    /// was read; absent from servers that did not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<UserStatus>,
}

/// A room id from a client, fit for an error message: hostile characters
/// made visible, cut to [`QUOTED_ROOM_MAX_CHARS`].
pub fn quote_room(raw: &str) -> String {
    let cut: String = raw.chars().take(QUOTED_ROOM_MAX_CHARS).collect();
    let more = if cut.len() < raw.len() { "…" } else { "" };
    format!("`{}`{more}", crate::display::visible(&cut))
}

/// Applies the rooms rules to a command of the right JSON shape, and
/// normalises `lobby` in `send.room` / `resume.room` to absent (a lobby
/// message is one without a room).
pub(super) fn check_rooms_rules(cmd: &mut ClientCommand) -> Result<(), ProtocolError> {
    // In place: a command is checked (and `lobby` normalised to no room)
    // without moving it, which parsing every `send` would pay for.
    match cmd {
        ClientCommand::Login {
            protocol,
            resume_rooms,
            ..
        } => check_login(*protocol, resume_rooms.as_ref()),
        ClientCommand::Send { room, to, .. } => check_send(room, to),
        ClientCommand::Resume { room, .. } => {
            normalise_room("resume", room)?;
            Ok(())
        }
        ClientCommand::CreateRoom { room, kind } => {
            let id = named_room("create_room", room)?;
            if id.is_direct() || *kind == RoomKind::Direct {
                let why = "direct rooms are made by `send` with `to`; `kind` is public or private";
                return Err(invalid_field("create_room", why));
            }
            Ok(())
        }
        ClientCommand::Join { room, .. } => named_room("join", room).map(drop),
        ClientCommand::Leave { room } => named_room("leave", room).map(drop),
        ClientCommand::Members { room } => named_room("members", room).map(drop),
        ClientCommand::Invite { room, user_id } => {
            named_room("invite", room)?;
            if !crate::identity::valid_user_id(user_id) {
                return Err(invalid_field("invite", crate::identity::USER_ID_RULE));
            }
            Ok(())
        }
        ClientCommand::History {
            room,
            after_seq,
            before_seq,
            limit,
        } => {
            named_room("history", room)?;
            check_page(*after_seq, *before_seq, *limit)
        }
        ClientCommand::Heartbeat {}
        | ClientCommand::Status { .. }
        | ClientCommand::GetStatus { .. }
        | ClientCommand::Logout {}
        | ClientCommand::Rooms {}
        | ClientCommand::WatchPresence { .. } => Ok(()),
    }
}

/// `send`: `room` or `to` (a user id), not both; `lobby` is no room.
fn check_send(room: &mut Option<String>, to: &Option<String>) -> Result<(), ProtocolError> {
    if room.is_none() && to.is_none() {
        return Ok(());
    }
    if room.is_some() && to.is_some() {
        return Err(invalid_field("send", "give `room` or `to`, not both"));
    }
    if to
        .as_deref()
        .is_some_and(|u| !crate::identity::valid_user_id(u))
    {
        let why = format!("`to`: {}", crate::identity::USER_ID_RULE);
        return Err(invalid_field("send", &why));
    }
    normalise_room("send", room)
}

/// A room a command may leave out: `lobby` becomes no room, any other
/// name must be a valid room id (kept in its canonical form).
fn normalise_room(command: &str, room: &mut Option<String>) -> Result<(), ProtocolError> {
    let taken = room.take();
    *room = room_or_lobby(command, taken)?;
    Ok(())
}

fn check_login(
    protocol: Option<u32>,
    resume_rooms: Option<&std::collections::BTreeMap<String, u64>>,
) -> Result<(), ProtocolError> {
    match protocol {
        Some(0) => return Err(invalid_field("login", "`protocol` is 1 or 2")),
        Some(p) if p > PROTOCOL_VERSION_ROOMS => return Err(ProtocolError::UnsupportedProtocol(p)),
        _ => {}
    }
    let Some(rooms) = resume_rooms else {
        return Ok(());
    };
    if protocol != Some(PROTOCOL_VERSION_ROOMS) {
        return Err(invalid_field("login", "`resume_rooms` needs `protocol`: 2"));
    }
    for room in rooms.keys() {
        if room == LOBBY {
            return Err(invalid_field(
                "login",
                "the lobby resumes through `resume_from`, not `resume_rooms`",
            ));
        }
        parse_room("login", room)?;
    }
    Ok(())
}

fn check_page(
    after_seq: Option<u64>,
    before_seq: Option<u64>,
    limit: Option<u32>,
) -> Result<(), ProtocolError> {
    if after_seq.is_some() && before_seq.is_some() {
        return Err(invalid_field(
            "history",
            "give `after_seq` or `before_seq`, not both",
        ));
    }
    match limit {
        Some(n) if n == 0 || n > MAX_HISTORY_PAGE => Err(invalid_field(
            "history",
            &format!("`limit` is 1..={MAX_HISTORY_PAGE}"),
        )),
        _ => Ok(()),
    }
}

/// `room` of `send` / `resume`: absent or `lobby` is the lobby (`None`).
fn room_or_lobby(command: &str, room: Option<String>) -> Result<Option<String>, ProtocolError> {
    match room {
        None => Ok(None),
        Some(r) if r == LOBBY => Ok(None),
        Some(r) => parse_room(command, &r).map(|id| Some(id.as_str().to_owned())),
    }
}

/// A room a command names explicitly: any valid room but the lobby.
fn named_room(command: &str, room: &str) -> Result<RoomId, ProtocolError> {
    if room == LOBBY {
        return Err(ProtocolError::LobbyIsImplicit {
            command: command.to_owned(),
        });
    }
    parse_room(command, room)
}

fn parse_room(command: &str, room: &str) -> Result<RoomId, ProtocolError> {
    RoomId::parse(room).map_err(|e| ProtocolError::InvalidRoom {
        command: command.to_owned(),
        reason: format!("{}: {e}", quote_room(room)),
    })
}

fn invalid_field(command: &str, reason: &str) -> ProtocolError {
    ProtocolError::InvalidField {
        command: command.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `Debug` of the room commands (none carries a secret).
pub(super) fn debug_room_command(
    cmd: &ClientCommand,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    match cmd {
        ClientCommand::CreateRoom { room, kind } => f
            .debug_struct("CreateRoom")
            .field("room", room)
            .field("kind", kind)
            .finish(),
        ClientCommand::Join { room, after_seq } => f
            .debug_struct("Join")
            .field("room", room)
            .field("after_seq", after_seq)
            .finish(),
        ClientCommand::Leave { room } => f.debug_struct("Leave").field("room", room).finish(),
        ClientCommand::Invite { room, user_id } => f
            .debug_struct("Invite")
            .field("room", room)
            .field("user_id", user_id)
            .finish(),
        ClientCommand::Rooms {} => f.write_str("Rooms"),
        ClientCommand::Members { room } => f.debug_struct("Members").field("room", room).finish(),
        ClientCommand::History {
            room,
            after_seq,
            before_seq,
            limit,
        } => f
            .debug_struct("History")
            .field("room", room)
            .field("after_seq", after_seq)
            .field("before_seq", before_seq)
            .field("limit", limit)
            .finish(),
        other => write!(f, "{}", other.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, ServerFrame};

    fn code_of(json: &str) -> ErrorCode {
        match ClientCommand::parse(json.as_bytes()) {
            Ok(c) => panic!("{json} parsed as {c:?}"),
            Err(e) => e.code(),
        }
    }

    fn ok(json: &str) -> ClientCommand {
        ClientCommand::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn every_room_command_parses_in_its_good_shape() {
        assert_eq!(
            ok(r#"{"command":"create_room","room":"team-1","kind":"private"}"#),
            ClientCommand::CreateRoom {
                room: "team-1".into(),
                kind: RoomKind::Private
            }
        );
        assert_eq!(
            ok(r#"{"command":"join","room":"a.b_c","after_seq":4}"#),
            ClientCommand::Join {
                room: "a.b_c".into(),
                after_seq: Some(4)
            }
        );
        assert_eq!(
            ok(r#"{"command":"join","room":"dm:alice:bob"}"#),
            ClientCommand::Join {
                room: "dm:alice:bob".into(),
                after_seq: None
            }
        );
        assert_eq!(
            ok(r#"{"command":"leave","room":"x"}"#),
            ClientCommand::Leave { room: "x".into() }
        );
        assert_eq!(
            ok(r#"{"command":"invite","room":"x","user_id":"bob"}"#),
            ClientCommand::Invite {
                room: "x".into(),
                user_id: "bob".into()
            }
        );
        assert_eq!(ok(r#"{"command":"rooms"}"#), ClientCommand::Rooms {});
        assert_eq!(
            ok(r#"{"command":"members","room":"x"}"#),
            ClientCommand::Members { room: "x".into() }
        );
        assert_eq!(
            ok(r#"{"command":"watch_presence","on":true}"#),
            ClientCommand::WatchPresence { on: true }
        );
        assert_eq!(
            ok(r#"{"command":"history","room":"x","before_seq":9,"limit":20}"#),
            ClientCommand::History {
                room: "x".into(),
                after_seq: None,
                before_seq: Some(9),
                limit: Some(20)
            }
        );
    }

    #[test]
    fn send_and_resume_name_a_room_or_the_lobby() {
        let send = ok(r#"{"command":"send","body":"hi","room":"x","message_id":"m"}"#);
        assert!(matches!(send, ClientCommand::Send { room: Some(r), to: None, .. } if r == "x"));
        let to = ok(r#"{"command":"send","body":"hi","to":"bob"}"#);
        assert!(matches!(to, ClientCommand::Send { room: None, to: Some(t), .. } if t == "bob"));
        // `lobby` is the same as no room: a lobby message never has one.
        let lobby = ok(r#"{"command":"send","body":"hi","room":"lobby"}"#);
        assert!(matches!(
            lobby,
            ClientCommand::Send {
                room: None,
                to: None,
                ..
            }
        ));
        let resume = ok(r#"{"command":"resume","last_seq":3,"room":"lobby"}"#);
        assert_eq!(
            resume,
            ClientCommand::Resume {
                last_seq: 3,
                room: None
            }
        );
        let v1 = ok(r#"{"command":"resume","last_seq":3}"#);
        assert_eq!(v1.to_json(), br#"{"command":"resume","last_seq":3}"#);
    }

    #[test]
    fn missing_or_mistyped_room_fields_are_invalid_field() {
        for json in [
            r#"{"command":"join"}"#,
            r#"{"command":"join","room":7}"#,
            r#"{"command":"join","room":"x","after_seq":-1}"#,
            r#"{"command":"leave","room":null}"#,
            r#"{"command":"invite","room":"x"}"#,
            r#"{"command":"invite","room":"x","user_id":"a:b"}"#,
            r#"{"command":"create_room","room":"x"}"#,
            r#"{"command":"create_room","room":"x","kind":"secret"}"#,
            r#"{"command":"create_room","room":"x","kind":"direct"}"#,
            r#"{"command":"members","room":["x"]}"#,
            r#"{"command":"watch_presence"}"#,
            r#"{"command":"watch_presence","on":"yes"}"#,
            r#"{"command":"history","room":"x","limit":0}"#,
            r#"{"command":"history","room":"x","limit":501}"#,
            r#"{"command":"history","room":"x","after_seq":1,"before_seq":5}"#,
            r#"{"command":"send","body":"hi","room":"x","to":"bob"}"#,
            r#"{"command":"send","body":"hi","to":"service:x"}"#,
            r#"{"command":"send","body":"hi","room":5}"#,
            r#"{"command":"login","user_id":"a","password":"p","protocol":0}"#,
            r#"{"command":"login","user_id":"a","password":"p","protocol":"2"}"#,
            r#"{"command":"login","user_id":"a","password":"p","resume_rooms":{"x":1}}"#,
            r#"{"command":"login","user_id":"a","password":"p","protocol":2,"resume_rooms":{"lobby":1}}"#,
        ] {
            assert_eq!(code_of(json), ErrorCode::InvalidField, "{json}");
        }
    }

    #[test]
    fn hostile_room_ids_are_invalid_room_and_never_echoed_raw() {
        let long = "a".repeat(65);
        for room in [
            "",
            "Upper",
            "-starts-with-dash",
            "has space",
            "ünïcode",
            "\u{1b}[2Jx",
            "a/b",
            long.as_str(),
            "dm:alice",
            "dm:bob:alice",
            "dm:alice:alice",
            "dm::bob",
        ] {
            let json = serde_json::json!({"command": "join", "room": room}).to_string();
            let err = ClientCommand::parse(json.as_bytes()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidRoom, "{room:?}");
            let shown = err.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(shown.len() < 300, "{shown}");
        }
        let json = serde_json::json!({"command": "send", "body": "x", "room": "\u{202e}evil"});
        let err = ClientCommand::parse(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRoom);
        assert!(!err.to_string().contains('\u{202e}'));
        let json = r#"{"command":"login","user_id":"a","password":"p","protocol":2,"resume_rooms":{"Bad Room":1}}"#;
        assert_eq!(code_of(json), ErrorCode::InvalidRoom);
    }

    #[test]
    fn the_lobby_cannot_be_created_joined_left_or_invited_to() {
        for json in [
            r#"{"command":"create_room","room":"lobby","kind":"public"}"#,
            r#"{"command":"join","room":"lobby"}"#,
            r#"{"command":"leave","room":"lobby"}"#,
            r#"{"command":"invite","room":"lobby","user_id":"bob"}"#,
            r#"{"command":"members","room":"lobby"}"#,
            r#"{"command":"history","room":"lobby"}"#,
        ] {
            assert_eq!(code_of(json), ErrorCode::LobbyIsImplicit, "{json}");
        }
    }

    #[test]
    fn a_protocol_above_2_is_unsupported_and_1_or_2_are_not() {
        let v3 = r#"{"command":"login","user_id":"a","password":"p","protocol":3}"#;
        assert_eq!(code_of(v3), ErrorCode::UnsupportedProtocol);
        for p in [1, 2] {
            let json =
                format!(r#"{{"command":"login","user_id":"a","password":"p","protocol":{p}}}"#);
            assert!(matches!(ok(&json), ClientCommand::Login { protocol: Some(q), .. } if q == p));
        }
        let resume = r#"{"command":"login","user_id":"a","password":"p","protocol":2,"resume_rooms":{"x":4,"dm:a:b":0}}"#;
        let ClientCommand::Login { resume_rooms, .. } = ok(resume) else {
            panic!("not a login");
        };
        assert_eq!(resume_rooms.unwrap().get("x"), Some(&4));
    }

    #[test]
    fn v2_frames_have_their_wire_shape() {
        let room = ServerFrame::Broadcast(crate::protocol::BroadcastFrame {
            seq: 7,
            message_id: "m".into(),
            from: "u".into(),
            body: "hi".into(),
            received_at_us: 2,
            sent_at_us: 1,
            room: Some("x".into()),
        });
        assert_eq!(
            String::from_utf8(room.to_json()).unwrap(),
            r#"{"command":"broadcast","seq":7,"message_id":"m","from":"u","body":"hi","received_at_us":2,"sent_at_us":1,"room":"x"}"#
        );
        let joined = ServerFrame::Joined {
            room: "x".into(),
            kind: RoomKind::Private,
            role: RoomRole::Owner,
            seq: 3,
        };
        assert_eq!(
            String::from_utf8(joined.to_json()).unwrap(),
            r#"{"command":"joined","room":"x","kind":"private","role":"owner","seq":3}"#
        );
        let ack = ServerFrame::SendAck {
            message_id: "m".into(),
            room: None,
        };
        assert_eq!(
            String::from_utf8(ack.to_json()).unwrap(),
            r#"{"command":"send_ack","message_id":"m"}"#
        );
        let list = ServerFrame::RoomsList {
            rooms: vec![RoomSummary {
                room: "dm:a:b".into(),
                kind: RoomKind::Direct,
                role: RoomRole::Member,
                seq: 0,
            }],
        };
        let back = ServerFrame::parse(&list.to_json()).unwrap();
        assert_eq!(back, list);
        for code in [
            ErrorCode::InvalidRoom,
            ErrorCode::UnknownRoom,
            ErrorCode::NotAMember,
            ErrorCode::RoomExists,
            ErrorCode::TooManyRooms,
            ErrorCode::RoomFull,
            ErrorCode::LobbyIsImplicit,
            ErrorCode::UnsupportedProtocol,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn quoting_a_room_cuts_and_escapes_it() {
        assert_eq!(quote_room("ok"), "`ok`");
        let quoted = quote_room(&format!("\u{1b}{}", "x".repeat(200)));
        assert!(
            quoted.ends_with('…') && !quoted.contains('\u{1b}'),
            "{quoted}"
        );
        assert!(quoted.chars().count() < 100);
    }
}
