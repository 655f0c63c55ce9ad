//! `ChatClient`'s protocol v2 (rooms) commands and bookkeeping: the rooms
//! the session is in, each with the highest `seq` received (the per-room
//! dedupe bound and resume point a reconnect logs in with), and the joins
//! and leaves the server announced, asked for or not.

use std::collections::BTreeMap;

use super::{ChatClient, ClientError};
use crate::protocol::{
    BroadcastFrame, ClientCommand, MemberSummary, RoomSummary, ServerFrame, UserStatus,
};
use crate::room::{RoomKind, RoomRole};

/// What the client knows of one of its rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomState {
    /// Public, private or direct (`None` until the server said).
    pub kind: Option<RoomKind>,
    /// The user's role (`None` until the server said).
    pub role: Option<RoomRole>,
    /// Highest `seq` of the room received (handed over or buffered).
    pub received: u64,
}

/// A membership or presence change the server announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// This session now receives `room` after `seq`.
    Joined {
        room: String,
        kind: RoomKind,
        seq: u64,
    },
    /// This session no longer receives `room`.
    Left { room: String },
    /// `user_id`, a member of `room`, is `status` now (only after
    /// [`ChatClient::watch_presence`]).
    Presence {
        room: String,
        user_id: String,
        status: UserStatus,
    },
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTarget {
    /// Everyone (v1's global broadcast).
    Lobby,
    /// A room the user is a member of.
    Room(String),
    /// The direct room with this user (created on first use).
    User(String),
}

impl SendTarget {
    /// The `room` and `to` fields of the `send`.
    pub(super) fn fields(&self) -> (Option<String>, Option<String>) {
        match self {
            SendTarget::Lobby => (None, None),
            SendTarget::Room(r) => (Some(r.clone()), None),
            SendTarget::User(u) => (None, Some(u.clone())),
        }
    }
}

/// The rooms of a `login_ok`, each received up to its head then.
pub(super) fn states_of(rooms: &[RoomSummary]) -> BTreeMap<String, RoomState> {
    rooms
        .iter()
        .map(|r| {
            let state = RoomState {
                kind: Some(r.kind),
                role: Some(r.role),
                received: r.seq,
            };
            (r.room.clone(), state)
        })
        .collect()
}

impl ChatClient {
    /// The rooms this session is in, by id.
    pub fn rooms(&self) -> &BTreeMap<String, RoomState> {
        &self.rooms
    }

    /// Joins and leaves announced since the last call, oldest first.
    pub fn take_room_events(&mut self) -> Vec<RoomEvent> {
        self.room_events.drain(..).collect()
    }

    /// After a (re)login: rooms listed in `login_ok` are known (a room not
    /// known before is received from its head then; one known keeps its
    /// bound, as its replay follows); rooms no longer listed are gone.
    pub(super) fn note_login_rooms(&mut self) {
        let listed = states_of(&self.info.rooms);
        self.rooms.retain(|room, _| listed.contains_key(room));
        for (room, state) in listed {
            let known = self.rooms.entry(room).or_insert(RoomState {
                received: state.received,
                ..RoomState::default()
            });
            known.kind = state.kind;
            known.role = state.role;
        }
    }

    /// Records a `joined`/`left`/`room_created` frame; false for any other
    /// frame (the caller decides about it).
    pub(super) fn note_room_frame(&mut self, f: &ServerFrame) -> bool {
        match f {
            ServerFrame::Joined {
                room,
                kind,
                role,
                seq,
            } => {
                let state = self.rooms.entry(room.clone()).or_default();
                state.kind = Some(*kind);
                state.role = Some(*role);
                state.received = state.received.max(*seq);
                self.room_events.push_back(RoomEvent::Joined {
                    room: room.clone(),
                    kind: *kind,
                    seq: *seq,
                });
                true
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.remove(room);
                self.pending
                    .retain(|b| b.room.as_deref() != Some(room.as_str()));
                self.room_events
                    .push_back(RoomEvent::Left { room: room.clone() });
                true
            }
            ServerFrame::Presence {
                room,
                user_id,
                status,
            } => {
                self.room_events.push_back(RoomEvent::Presence {
                    room: room.clone(),
                    user_id: user_id.clone(),
                    status: *status,
                });
                true
            }
            ServerFrame::RoomCreated { .. } | ServerFrame::Invited { .. } => true,
            _ => false,
        }
    }

    /// Sends a v2 command and waits for the frame `want` picks; broadcasts
    /// are buffered, room announcements recorded, an `error` returned.
    async fn request<T>(
        &mut self,
        cmd: ClientCommand,
        want: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.conn.send(&cmd).await?;
        self.wait_for(want).await
    }

    /// Creates a public or private room (the caller its owner) and waits
    /// until this session receives it; returns its `seq` then.
    pub async fn create_room(&mut self, room: &str, kind: RoomKind) -> Result<u64, ClientError> {
        let cmd = ClientCommand::CreateRoom {
            room: room.to_owned(),
            kind,
        };
        let seq = self.request(cmd, |f| joined_seq(f, room)).await?;
        self.note_joined(room, seq);
        Ok(seq)
    }

    /// Joins `room` (replaying after `after_seq` first, when given);
    /// returns the `seq` after which live messages follow.
    pub async fn join(&mut self, room: &str, after_seq: Option<u64>) -> Result<u64, ClientError> {
        if let Some(after) = after_seq {
            // The replay must not be taken for duplicates.
            let state = self.rooms.entry(room.to_owned()).or_default();
            state.received = state.received.min(after);
        }
        let cmd = ClientCommand::Join {
            room: room.to_owned(),
            after_seq,
        };
        let seq = self.request(cmd, |f| joined_seq(f, room)).await?;
        self.note_joined(room, seq);
        Ok(seq)
    }

    /// The frame `joined` was consumed by `request`'s picker: record it.
    fn note_joined(&mut self, room: &str, seq: u64) {
        let state = self.rooms.entry(room.to_owned()).or_default();
        state.received = state.received.max(seq);
    }

    /// Leaves `room`; returns the `seq` of the leave point (messages up to
    /// it may still be buffered and are handed over).
    pub async fn leave(&mut self, room: &str) -> Result<u64, ClientError> {
        let cmd = ClientCommand::Leave {
            room: room.to_owned(),
        };
        let seq = self
            .request(cmd, |f| match f {
                ServerFrame::Left { room: r, seq } if r == room => Some(*seq),
                _ => None,
            })
            .await?;
        self.rooms.remove(room);
        Ok(seq)
    }

    /// Makes `user_id` a member of `room`.
    pub async fn invite(&mut self, room: &str, user_id: &str) -> Result<(), ClientError> {
        let cmd = ClientCommand::Invite {
            room: room.to_owned(),
            user_id: user_id.to_owned(),
        };
        self.request(cmd, |f| {
            matches!(f, ServerFrame::Invited { room: r, user_id: u } if r == room && u == user_id)
                .then_some(())
        })
        .await
    }

    /// The user's rooms, as the server lists them now.
    pub async fn list_rooms(&mut self) -> Result<Vec<RoomSummary>, ClientError> {
        self.request(ClientCommand::Rooms {}, |f| match f {
            ServerFrame::RoomsList { rooms } => Some(rooms.clone()),
            _ => None,
        })
        .await
    }

    /// A room's members.
    pub async fn members(&mut self, room: &str) -> Result<Vec<MemberSummary>, ClientError> {
        let cmd = ClientCommand::Members {
            room: room.to_owned(),
        };
        self.request(cmd, |f| match f {
            ServerFrame::MembersList { room: r, members } if r == room => Some(members.clone()),
            _ => None,
        })
        .await
    }

    /// Asks for (`on`) or stops `presence` events of the rooms' members
    /// (they arrive as [`RoomEvent::Presence`]); what holds now.
    pub async fn watch_presence(&mut self, on: bool) -> Result<bool, ClientError> {
        self.request(ClientCommand::WatchPresence { on }, |f| match f {
            ServerFrame::WatchingPresence { on } => Some(*on),
            _ => None,
        })
        .await
    }

    /// One page of `room`'s history, oldest first, and whether there is
    /// more beyond it (see `history` in docs/PROTOCOL.md).
    pub async fn history(
        &mut self,
        room: &str,
        after_seq: Option<u64>,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(Vec<BroadcastFrame>, bool), ClientError> {
        let cmd = ClientCommand::History {
            room: room.to_owned(),
            after_seq,
            before_seq,
            limit,
        };
        self.request(cmd, |f| match f {
            ServerFrame::HistoryPage {
                room: r,
                messages,
                more,
            } if r == room => Some((messages.clone(), *more)),
            _ => None,
        })
        .await
    }

    /// Publishes to `target` and waits for its `send_ack`; returns the
    /// message id and the room it went to (`None`: the lobby). A lost link
    /// is recovered and the send repeated with the same id, as [`ChatClient::send`].
    pub async fn send_to(
        &mut self,
        target: &SendTarget,
        body: &str,
        message_id: Option<&str>,
    ) -> Result<(String, Option<String>), ClientError> {
        let id = message_id
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        loop {
            match self.send_once(body, &id, target).await {
                Ok(room) => return Ok((id, room)),
                Err(e) => self.recover(e).await?,
            }
        }
    }

    /// Replays `room` after `after` on this session (`resume` with a room),
    /// then live; the replay comes first from `next_broadcast`.
    pub async fn resume_room(&mut self, room: &str, after: u64) -> Result<u64, ClientError> {
        let state = self.rooms.entry(room.to_owned()).or_default();
        state.received = state.received.min(after);
        let cmd = ClientCommand::Resume {
            last_seq: after,
            room: Some(room.to_owned()),
        };
        self.request(cmd, |f| match f {
            ServerFrame::ResumeDone {
                room: Some(r),
                last_seq,
            } if r == room => Some(*last_seq),
            _ => None,
        })
        .await
    }
}

/// The `seq` of a `joined` for `room`.
fn joined_seq(f: &ServerFrame, room: &str) -> Option<u64> {
    match f {
        ServerFrame::Joined { room: r, seq, .. } if r == room => Some(*seq),
        _ => None,
    }
}
