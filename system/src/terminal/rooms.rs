//! What the terminal shows of rooms: the room in view (the lobby at
//! start), each line tagged with its room, and for rooms not in view an
//! unread count and their latest lines, shown when the user switches to
//! them. The prompt names the room in view and the unread total.

use std::collections::{BTreeMap, VecDeque};

use crate::client::RoomState;
use crate::display::visible;
use crate::protocol::BroadcastFrame;
use crate::room::LOBBY;

/// Lines kept per room not in view, shown when switching to it.
pub const KEPT_LINES_PER_ROOM: usize = 50;

/// Which room is in view and what the others hold unread.
#[derive(Debug, Default)]
pub struct RoomView {
    /// The room in view; `None` is the lobby.
    current: Option<String>,
    /// Per room not in view (`lobby` for the lobby): messages unread.
    unread: BTreeMap<String, u64>,
    /// Per room not in view: its latest unread lines, oldest first.
    kept: BTreeMap<String, VecDeque<String>>,
}

impl RoomView {
    /// The room in view (`None`: the lobby).
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Unread messages of `room` (`lobby` for the lobby).
    pub fn unread(&self, room: &str) -> u64 {
        self.unread.get(room).copied().unwrap_or(0)
    }

    /// Takes in one message already rendered as `line`: returned to be
    /// printed when its room is in view, else counted and kept.
    pub fn place(&mut self, b: &BroadcastFrame, line: String) -> Option<String> {
        if b.room == self.current {
            return Some(line);
        }
        let room = b.room.clone().unwrap_or_else(|| LOBBY.to_owned());
        *self.unread.entry(room.clone()).or_default() += 1;
        let kept = self.kept.entry(room).or_default();
        if kept.len() == KEPT_LINES_PER_ROOM {
            kept.pop_front();
        }
        kept.push_back(line);
        None
    }

    /// Puts `room` (`lobby` for the lobby) in view; returns its unread
    /// lines to print. `joined` lists the rooms the session is in.
    pub fn switch(
        &mut self,
        room: &str,
        joined: &BTreeMap<String, RoomState>,
    ) -> Result<Vec<String>, String> {
        if room != LOBBY && !joined.contains_key(room) {
            return Err(format!(
                "you are not in {}; /join it first (/rooms lists yours)",
                visible(room)
            ));
        }
        self.current = (room != LOBBY).then(|| room.to_owned());
        self.unread.remove(room);
        Ok(self.kept.remove(room).map(Vec::from).unwrap_or_default())
    }

    /// Forgets a room the session left; the lobby comes into view if it
    /// was the room in view.
    pub fn forget(&mut self, room: &str) {
        self.unread.remove(room);
        self.kept.remove(room);
        if self.current.as_deref() == Some(room) {
            self.current = None;
        }
    }

    /// The prompt: the room in view, and how many messages wait elsewhere.
    pub fn prompt(&self) -> String {
        let here = self.current.as_deref().unwrap_or(LOBBY);
        match self.unread.values().sum::<u64>() {
            0 => format!("[{here}] > "),
            n => format!("[{here}] ({n} unread) > "),
        }
    }

    /// `/rooms`: the lobby and every room the session is in, the one in
    /// view marked `*`, with kind and unread count.
    pub fn rooms_line(&self, joined: &BTreeMap<String, RoomState>) -> String {
        let mut parts = vec![self.entry(LOBBY, None)];
        for (room, state) in joined {
            parts.push(self.entry(room, state.kind.map(|k| k.as_str())));
        }
        format!("rooms: {}", parts.join(", "))
    }

    fn entry(&self, room: &str, kind: Option<&str>) -> String {
        let here = self.current.as_deref().unwrap_or(LOBBY) == room;
        let mut notes = Vec::new();
        if let Some(k) = kind {
            notes.push(k.to_owned());
        }
        match self.unread(room) {
            0 => {}
            n => notes.push(format!("{n} unread")),
        }
        let mark = if here { "* " } else { "" };
        match notes.is_empty() {
            true => format!("{mark}{}", visible(room)),
            false => format!("{mark}{} ({})", visible(room), notes.join(", ")),
        }
    }
}

/// The room tag of a message line: `[room] ` for a room, nothing for the
/// lobby (so lobby lines read as in protocol v1).
pub fn room_tag(b: &BroadcastFrame) -> String {
    match &b.room {
        Some(r) => format!("[{}] ", visible(r)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::RoomKind;

    fn msg(room: Option<&str>, seq: u64) -> BroadcastFrame {
        BroadcastFrame {
            seq,
            message_id: format!("m{seq}"),
            from: "bob".into(),
            body: "hi".into(),
            received_at_us: 0,
            sent_at_us: 0,
            room: room.map(str::to_owned),
        }
    }

    fn joined(rooms: &[(&str, RoomKind)]) -> BTreeMap<String, RoomState> {
        rooms
            .iter()
            .map(|(r, k)| {
                let state = RoomState {
                    kind: Some(*k),
                    ..RoomState::default()
                };
                (r.to_string(), state)
            })
            .collect()
    }

    #[test]
    fn rooms_not_in_view_count_unread_and_show_their_lines_on_switching() {
        let mut view = RoomView::default();
        let mine = joined(&[("team", RoomKind::Private)]);
        assert_eq!(
            view.place(&msg(None, 1), "lobby 1".into()),
            Some("lobby 1".into())
        );
        assert_eq!(view.place(&msg(Some("team"), 1), "team 1".into()), None);
        assert_eq!(view.place(&msg(Some("team"), 2), "team 2".into()), None);
        assert_eq!(view.unread("team"), 2);
        assert_eq!(view.prompt(), "[lobby] (2 unread) > ");
        assert_eq!(
            view.rooms_line(&mine),
            "rooms: * lobby, team (private, 2 unread)"
        );
        assert_eq!(view.switch("team", &mine).unwrap(), ["team 1", "team 2"]);
        assert_eq!(view.prompt(), "[team] > ");
        // Now the lobby is the room not in view.
        assert_eq!(view.place(&msg(None, 2), "lobby 2".into()), None);
        assert_eq!(
            view.place(&msg(Some("team"), 3), "team 3".into()),
            Some("team 3".into())
        );
        assert_eq!(
            view.rooms_line(&mine),
            "rooms: lobby (1 unread), * team (private)"
        );
        assert_eq!(view.switch("lobby", &mine).unwrap(), ["lobby 2"]);
        assert_eq!(view.current(), None);
    }

    #[test]
    fn switching_to_a_room_one_is_not_in_is_refused() {
        let mut view = RoomView::default();
        let why = view.switch("elsewhere", &BTreeMap::new()).unwrap_err();
        assert!(why.contains("/join"), "{why}");
        assert_eq!(view.current(), None);
    }

    #[test]
    fn leaving_the_room_in_view_brings_the_lobby_back() {
        let mut view = RoomView::default();
        let mine = joined(&[("team", RoomKind::Public)]);
        view.switch("team", &mine).unwrap();
        view.forget("team");
        assert_eq!(view.current(), None);
        assert_eq!(view.prompt(), "[lobby] > ");
    }

    #[test]
    fn only_the_latest_lines_of_a_room_are_kept_but_all_are_counted() {
        let mut view = RoomView::default();
        for seq in 1..=(KEPT_LINES_PER_ROOM as u64 + 5) {
            view.place(&msg(Some("busy"), seq), format!("line {seq}"));
        }
        let mine = joined(&[("busy", RoomKind::Public)]);
        assert_eq!(view.unread("busy"), KEPT_LINES_PER_ROOM as u64 + 5);
        let lines = view.switch("busy", &mine).unwrap();
        assert_eq!(lines.len(), KEPT_LINES_PER_ROOM);
        assert_eq!(lines[0], "line 6");
    }

    #[test]
    fn a_room_line_is_tagged_and_a_lobby_line_is_not() {
        assert_eq!(room_tag(&msg(Some("team"), 1)), "[team] ");
        assert_eq!(room_tag(&msg(None, 1)), "");
    }
}
