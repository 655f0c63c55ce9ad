//! `rtmc client`, the interactive terminal client. [`ChatClient`] does the
//! protocol (login, acks, dedupe by seq, reconnect + resume); this module is
//! the part a person touches: commands typed at the prompt, how messages
//! and notices are shown (one line each, bodies made [`visible`], never
//! interpreted), and the small state file that lets a restarted client
//! resume where it left off.
//!
//! On a terminal, lines are read with a line editor (rustyline: history,
//! arrow keys) and everything else is printed above the line being typed;
//! with stdin not a terminal (a pipe, a test), plain lines are read. The
//! client speaks protocol v2: `rooms.rs` keeps the room in view and the
//! unread counts of the others.

mod rooms;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::{ChatClient, ClientError, LinkEvent, RoomEvent, SendTarget};
use crate::display::visible;
use crate::protocol::{
    BroadcastFrame, ClientCommand, ErrorCode, ServerFrame, StreamPosition, UserStatus,
};
use crate::room::RoomKind;
pub use rooms::{room_tag, RoomView, KEPT_LINES_PER_ROOM};

/// The help shown by `/help` (and at start).
pub const HELP: &str = "type a line and Enter to send it to the room in view; commands:
  /help            this help
  /rooms           your rooms (the one in view marked *, unread counts)
  /room NAME       put a room in view (/room lobby: everyone's room)
  /join NAME       join a public room (made, public, if there is none)
  /create NAME [private]  make a room (public unless private)
  /leave [NAME]    leave a room (the one in view by default)
  /invite USER     make USER a member of the room in view
  /msg USER text   a direct message (puts your room with USER in view)
  /status USER     a user's presence (also /who USER)
  /away, /back     set your presence to away / online
  /presence on|off tell me when members of my rooms go online, away, offline
  /quit            log out and exit (also Ctrl-C; Ctrl-D at an empty line)
  //text           send a line that starts with '/'";

/// What a typed line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Send this text.
    Send(String),
    Help,
    Quit,
    Status(String),
    Away,
    Back,
    /// List the rooms.
    Rooms,
    /// Put a room in view.
    Switch(String),
    /// Join a room (made public when there is none).
    Join(String),
    /// Make a room.
    Create {
        room: String,
        private: bool,
    },
    /// Leave a room (`None`: the one in view).
    Leave(Option<String>),
    /// Invite a user to the room in view.
    Invite(String),
    /// Presence news of the rooms' members on (true) or off.
    Presence(bool),
    /// A direct message.
    Msg {
        user: String,
        text: String,
    },
    /// A blank line: nothing to do.
    Nothing,
    /// A mistyped command, with what to say.
    Invalid(String),
}

/// Reads one typed line. A line starting with `/` is a command (`//` sends
/// a literal `/`); an unknown command is an error, never a message.
pub fn parse_line(line: &str) -> Input {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Input::Nothing;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Input::Send(format!("/{rest}"));
    }
    let Some(cmd) = line.strip_prefix('/') else {
        return Input::Send(line.to_owned());
    };
    let mut words = cmd.split_whitespace();
    let name = words.next().unwrap_or("");
    if name == "msg" {
        return parse_msg(cmd);
    }
    let arg = words.next();
    if name == "create" {
        return parse_create(arg, words.next(), words.next());
    }
    let extra = words.next().is_some();
    match (name, arg, extra) {
        ("rooms", None, false) => Input::Rooms,
        ("room", Some(room), false) => Input::Switch(room.to_owned()),
        ("join", Some(room), false) => Input::Join(room.to_owned()),
        ("leave", room, false) => Input::Leave(room.map(str::to_owned)),
        ("invite", Some(user), false) => Input::Invite(user.to_owned()),
        ("presence", Some("on"), false) => Input::Presence(true),
        ("presence", Some("off"), false) => Input::Presence(false),
        ("presence", _, _) => Input::Invalid("usage: /presence on|off".into()),
        ("room" | "join" | "invite", _, _) => {
            let what = if name == "invite" { "USER" } else { "NAME" };
            Input::Invalid(format!("usage: /{name} {what}"))
        }
        ("rooms" | "leave", _, _) => {
            Input::Invalid(format!("/{name} takes at most what /help says"))
        }
        ("help" | "h" | "?", None, false) => Input::Help,
        ("quit" | "q" | "exit", None, false) => Input::Quit,
        ("away", None, false) => Input::Away,
        ("back", None, false) => Input::Back,
        ("status" | "who", Some(user), false) => Input::Status(user.to_owned()),
        ("status" | "who", _, _) => Input::Invalid(format!("usage: /{name} USER")),
        ("help" | "h" | "?" | "quit" | "q" | "exit" | "away" | "back", _, _) => {
            Input::Invalid(format!("/{name} takes no argument"))
        }
        _ => Input::Invalid(format!(
            "unknown command /{}; /help lists them (start a message with // to send a '/')",
            visible(name)
        )),
    }
}

/// `/create NAME [public|private]`.
fn parse_create(room: Option<&str>, kind: Option<&str>, extra: Option<&str>) -> Input {
    match (room, kind.unwrap_or("public"), extra) {
        (Some(room), kind @ ("private" | "public"), None) => Input::Create {
            room: room.to_owned(),
            private: kind == "private",
        },
        _ => Input::Invalid("usage: /create NAME [private]".into()),
    }
}

/// `/msg USER text…`: the text is the rest of the line, as typed.
fn parse_msg(cmd: &str) -> Input {
    let rest = cmd["msg".len()..].trim_start();
    match rest.split_once(char::is_whitespace) {
        Some((user, text)) if !text.trim().is_empty() => Input::Msg {
            user: user.to_owned(),
            text: text.trim_start().to_owned(),
        },
        _ => Input::Invalid("usage: /msg USER text".into()),
    }
}

/// When a message was taken, as shown (UTC): `HH:MM:SS` for a time of the
/// day `now_us` falls in, `YYYY-MM-DD HH:MM:SS` for any other day. Both are
/// microseconds since the Unix epoch.
pub fn clock(us: u64, now_us: u64) -> String {
    const DAY_US: u64 = 86_400_000_000;
    let Some(t) = chrono::DateTime::from_timestamp_micros(us.min(i64::MAX as u64) as i64) else {
        return "??:??:??".into();
    };
    if us / DAY_US == now_us / DAY_US {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// One message as one line: `HH:MM:SS #seq from: body` for the lobby,
/// `HH:MM:SS #seq [room] from: body` for a room, every part visible.
/// The time is the server's (`received_at_us`), never the sender's claim;
/// a message stored before servers stamped it shows its `sent_at_us`.
pub fn message_line(b: &BroadcastFrame, now_us: u64) -> String {
    let at = if b.received_at_us > 0 {
        b.received_at_us
    } else {
        b.sent_at_us
    };
    format!(
        "{} #{} {}{}: {}",
        clock(at, now_us),
        b.seq,
        room_tag(b),
        visible(&b.from),
        visible(&b.body)
    )
}

/// What a [`SeqState`] file holds: the last lobby seq shown, the epoch of
/// the stream it belongs to (`None` in a file written before epochs, or for
/// a server that names none), and each room's last seq shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedSeq {
    pub seq: u64,
    pub epoch: Option<String>,
    /// Room id → the last seq of that room shown.
    pub rooms: BTreeMap<String, u64>,
}

/// What to do with a saved seq against the stream the server names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePlan {
    /// Nothing saved: start with new messages.
    Fresh,
    /// The same stream and epoch: replay after this seq.
    After(u64),
    /// The stream lost its history since (another epoch): what was missed
    /// cannot be recovered; start with new messages and say so.
    HistoryLost,
}

impl ResumePlan {
    /// Compares what was saved with the server's stream position now.
    pub fn new(saved: Option<SavedSeq>, now: Option<&StreamPosition>) -> Self {
        match (saved, now) {
            (None, _) => ResumePlan::Fresh,
            (Some(s), Some(now)) if s.epoch.as_deref() != Some(now.epoch.as_str()) => {
                ResumePlan::HistoryLost
            }
            (Some(s), _) => ResumePlan::After(s.seq),
        }
    }
}

/// Where a user's last seen sequence number in one deployment's message log
/// is kept. The file is named by the stream id the server gives in
/// `login_ok` (the same on every node), so a restart against another node of
/// the deployment resumes from the same point.
#[derive(Debug, Clone)]
pub struct SeqState {
    path: PathBuf,
}

impl SeqState {
    /// The state file for `user` in `stream` (the deployment's stream id, or,
    /// for a server that names none, its address) under `dir`.
    pub fn new(dir: &Path, user: &str, stream: &str) -> Self {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let name = format!("{}@{}.seq", safe(user), safe(stream));
        Self {
            path: dir.join(name),
        }
    }

    /// `$RTMC_STATE_DIR`, else `$XDG_STATE_HOME/rtmc`, else `~/.local/state/rtmc`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("RTMC_STATE_DIR") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
            return Some(PathBuf::from(d).join("rtmc"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/rtmc"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file holds: a first line `seq epoch` (the lobby), then a
    /// line `room SEQ ID` per room (the id last: a direct room's id may hold
    /// spaces); `None` when there is no (readable) file. A room line that
    /// does not parse is skipped.
    pub fn load(&self) -> Option<SavedSeq> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut lines = text.lines();
        let mut words = lines.next()?.split_whitespace();
        let seq = words.next()?.parse().ok()?;
        let epoch = words.next().map(str::to_owned);
        let rooms = lines
            .filter_map(|l| {
                let (seq, id) = l.strip_prefix("room ")?.split_once(' ')?;
                Some((id.to_owned(), seq.parse().ok()?))
            })
            .collect();
        Some(SavedSeq { seq, epoch, rooms })
    }

    /// Stores `saved` (write to a temporary file, then rename: never torn).
    pub fn store(&self, saved: &SavedSeq) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("seq.tmp");
        let mut text = match &saved.epoch {
            Some(e) => format!("{} {e}\n", saved.seq),
            None => format!("{}\n", saved.seq),
        };
        for (room, seq) in &saved.rooms {
            text.push_str(&format!("room {seq} {room}\n"));
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// The resume state while the client runs: its file, and what the file
/// holds now (rewritten after each message shown).
struct Kept {
    file: SeqState,
    saved: SavedSeq,
}

impl Kept {
    /// Notes `b` as shown (its room's seq, or the lobby's) and rewrites
    /// the file.
    fn note(&mut self, b: &BroadcastFrame, epoch: Option<&str>) -> std::io::Result<()> {
        match &b.room {
            Some(room) => {
                self.saved.rooms.insert(room.clone(), b.seq);
            }
            None => self.saved.seq = b.seq,
        }
        self.saved.epoch = epoch.map(str::to_owned);
        self.file.store(&self.saved)
    }
}

/// Writes one line of output somewhere.
type LineSink = Box<dyn FnMut(String) + Send>;

/// Prints above the line being typed (on a terminal) or to stdout.
#[derive(Clone)]
pub struct Printer(Arc<Mutex<LineSink>>);

impl Printer {
    fn stdout() -> Self {
        Self(Arc::new(Mutex::new(Box::new(print_now))))
    }

    pub fn line(&self, line: impl Into<String>) {
        if let Ok(mut f) = self.0.lock() {
            f(line.into());
        }
    }

    /// A notice from the client itself (not a message): `-- text`.
    pub fn notice(&self, text: impl AsRef<str>) {
        self.line(format!("-- {}", text.as_ref()));
    }
}

/// Writes a line to stdout at once.
fn print_now(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A typed line, or the end of typing.
enum Typed {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupt,
}

/// The line editor's side of the client: whether it is reading a line
/// now (its prompt on screen, the terminal in raw mode), and the terminal
/// mode to give back when the client ends.
struct EditorState {
    editing: bool,
    /// Set when the client ends: lines go straight to stdout from then on.
    finished: bool,
    /// The prompt of the next line read (the room in view, unread count).
    prompt: String,
    saved_mode: Option<rustix::termios::Termios>,
}

/// The client's hold on the line editor: it prompts again only when told,
/// so after `/quit` no prompt follows the closing line.
struct EditorControl {
    next_prompt: std::sync::mpsc::Sender<()>,
    state: Arc<Mutex<EditorState>>,
}

impl EditorControl {
    /// Lets the editor read the next line.
    fn prompt_again(&self) {
        let _ = self.next_prompt.send(());
    }

    /// Sets the prompt of the next line read.
    fn set_prompt(&self, prompt: String) {
        if let Ok(mut st) = self.state.lock() {
            st.prompt = prompt;
        }
    }

    /// Ends the editor's part: no prompt any more, the terminal back in the
    /// mode it had, and every later line printed at once (so the closing
    /// lines are on screen before the process exits).
    fn finish(self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.finished = true;
        if st.editing {
            // Blocked reading a line: take its prompt off the screen.
            if let Some(mode) = &st.saved_mode {
                let _ = rustix::termios::tcsetattr(
                    std::io::stdin(),
                    rustix::termios::OptionalActions::Now,
                    mode,
                );
            }
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
    }
}

/// Starts reading typed lines: with a line editor on a terminal, plain
/// lines otherwise. Returns the lines, the printer to use meanwhile and,
/// with the editor, its control.
fn start_input() -> (mpsc::Receiver<Typed>, Printer, Option<EditorControl>) {
    let (tx, rx) = mpsc::channel(16);
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        if let Some((printer, control)) = start_editor(tx.clone()) {
            return (rx, printer, Some(control));
        }
    }
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(Typed::Line(l)).await.is_err() {
                break;
            }
        }
    });
    (rx, Printer::stdout(), None)
}

/// The rustyline editor on its own thread; `None` if it cannot start.
/// Lines go above the prompt while it reads, straight to stdout otherwise.
fn start_editor(tx: mpsc::Sender<Typed>) -> Option<(Printer, EditorControl)> {
    use rustyline::ExternalPrinter;
    let mut editor = rustyline::DefaultEditor::new().ok()?;
    let mut external = editor.create_external_printer().ok()?;
    let state = Arc::new(Mutex::new(EditorState {
        editing: false,
        finished: false,
        prompt: "> ".into(),
        saved_mode: rustix::termios::tcgetattr(std::io::stdin()).ok(),
    }));
    let seen = state.clone();
    let printer = Printer(Arc::new(Mutex::new(Box::new(
        move |line: String| match seen.lock() {
            Ok(st) if st.editing && !st.finished => {
                let _ = external.print(format!("{line}\n"));
            }
            Ok(st) if st.finished => print_now(format!("\r\x1b[2K{line}")),
            _ => print_now(line),
        },
    ))));
    let (next_prompt, prompts) = std::sync::mpsc::channel();
    let edited = state.clone();
    std::thread::spawn(move || edit_lines(editor, tx, prompts, edited));
    Some((printer, EditorControl { next_prompt, state }))
}

/// The editor thread: reads a line, hands it over, and waits to be told
/// to prompt again.
fn edit_lines(
    mut editor: rustyline::DefaultEditor,
    tx: mpsc::Sender<Typed>,
    prompts: std::sync::mpsc::Receiver<()>,
    state: Arc<Mutex<EditorState>>,
) {
    use rustyline::error::ReadlineError;
    let set_editing = |on: bool| match state.lock() {
        Ok(mut st) if !st.finished => {
            st.editing = on;
            true
        }
        _ => false,
    };
    let prompt = || state.lock().map(|st| st.prompt.clone()).unwrap_or_default();
    while set_editing(true) {
        let read = editor.readline(&prompt());
        set_editing(false);
        match read {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                // The sent line comes back as a message: show it once.
                print!("\x1b[1A\x1b[2K");
                let _ = std::io::stdout().flush();
                if tx.blocking_send(Typed::Line(line)).is_err() || prompts.recv().is_err() {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                let _ = tx.blocking_send(Typed::Interrupt);
                break;
            }
            Err(_) => break,
        }
    }
}

/// How the terminal client runs.
#[derive(Debug, Clone)]
pub struct TerminalOptions {
    /// Server addresses (`host:port`), the first one first.
    pub addrs: Vec<String>,
    pub user: String,
    pub password: String,
    /// Where the last seen seq is kept; `None` disables it.
    pub state_dir: Option<PathBuf>,
}

/// What the link observer saw, for the main loop.
#[derive(Default)]
struct LinkSeen {
    /// Between a lost link and the next reconnect.
    down: bool,
    /// Attempts made when reconnecting failed for good.
    gave_up: Option<u32>,
}

/// Runs the client until `/quit`, Ctrl-C or the end of input (logging
/// out), or until the link is lost for good (an error). Longer than 60
/// lines for a reason: the start-up notices and the one `select!` loop
/// over typing, heartbeats and messages read best together.
pub async fn run(opts: TerminalOptions) -> Result<(), ClientError> {
    let first = opts.addrs[0].clone();
    let chat = ChatClient::connect_v2(&first, &opts.user, &opts.password).await?;
    let mut chat = chat.with_failover(opts.addrs[1..].iter().cloned());
    // Ctrl-C is ours from here on (registered now, before any notice).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| ClientError::Protocol(e.into()))?;
    let (mut typed, out, editor) = start_input();
    let file = opts.state_dir.as_deref().map(|d| {
        let stream = chat.info.stream.as_ref().map_or(first.as_str(), |s| &s.id);
        SeqState::new(d, &opts.user, stream)
    });
    let saved = file.as_ref().and_then(SeqState::load);
    let plan = ResumePlan::new(saved.clone(), chat.info.stream.as_ref());
    let start = resume_saved(&mut chat, &plan).await;
    out.notice(format!(
        "logged in as {} at {first}; {start} — /help for commands",
        visible(&chat.info.user_id),
    ));
    let mut view = RoomView::default();
    if !chat.rooms().is_empty() {
        out.notice(view.rooms_line(chat.rooms()));
    }
    let mut state = file.map(|file| Kept {
        file,
        saved: kept_from(&plan, saved.as_ref(), &chat),
    });
    if let (ResumePlan::After(_), Some(saved)) = (&plan, &saved) {
        let shown = Shown {
            out: &out,
            view: &mut view,
        };
        resume_rooms(&mut chat, &saved.rooms, shown, state.as_mut()).await;
    }
    let link = watch_link(&mut chat, &out);
    let every = Duration::from_millis(chat.info.heartbeat_interval_ms.max(100));
    let mut heartbeat = tokio::time::interval(every);
    heartbeat.tick().await;
    let ended = loop {
        if let Some(e) = &editor {
            e.set_prompt(view.prompt());
        }
        tokio::select! {
            _ = interrupt.recv() => break Ok(()),
            t = typed.recv() => match t {
                None | Some(Typed::Interrupt) => break Ok(()),
                Some(Typed::Line(line)) => {
                    let queued = link.lock().is_ok_and(|l| l.down);
                    let mut screen = Screen { chat: &mut chat, out: &out, view: &mut view };
                    match screen.act(parse_line(&line), queued).await {
                        Ok(true) => {
                            if let Some(e) = &editor {
                                e.set_prompt(view.prompt());
                                e.prompt_again();
                            }
                        }
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            },
            _ = heartbeat.tick() => {
                if let Err(e) = chat.heartbeat_or_reconnect().await {
                    break Err(e);
                }
            }
            b = chat.next_broadcast(every) => match b {
                Ok(b) => show(&out, &b, state.as_mut(), &chat, &mut view),
                Err(ClientError::Timeout(_)) => {}
                Err(e) => break Err(e),
            },
        }
        tell_room_events(&mut chat, &out, &mut view);
    };
    if let Some(editor) = editor {
        editor.finish();
    }
    close(chat, &out, &link, ended).await
}

/// Tells the user of rooms joined or left without being asked here (an
/// invite, a direct message, another session).
fn tell_room_events(chat: &mut ChatClient, out: &Printer, view: &mut RoomView) {
    for e in chat.take_room_events() {
        match e {
            RoomEvent::Joined { room, kind, .. } => out.notice(format!(
                "you are in {} ({}) now; /room {} to view it",
                visible(&room),
                kind.as_str(),
                visible(&room)
            )),
            RoomEvent::Left { room } => {
                view.forget(&room);
                out.notice(format!("you left {}", visible(&room)));
            }
            RoomEvent::Presence {
                room,
                user_id,
                status,
            } => out.notice(format!(
                "{} is {} ({})",
                visible(&user_id),
                status.as_str(),
                visible(&room)
            )),
        }
    }
}

/// Resumes the lobby after the saved seq when it belongs to the stream the
/// server names now; says what the session starts with.
async fn resume_saved(chat: &mut ChatClient, plan: &ResumePlan) -> String {
    let from_now = format!("new messages from #{}", chat.info.last_seq + 1);
    match *plan {
        ResumePlan::Fresh => from_now,
        ResumePlan::HistoryLost => format!(
            "the server lost its message history since you last ran: messages sent meanwhile \
             cannot be recovered; {from_now}"
        ),
        ResumePlan::After(seq) => match chat.resume_after(seq).await {
            Ok(_) => format!("resuming after #{seq}"),
            Err(e) => format!(
                "could not replay what was missed after #{seq} ({}); {from_now}",
                refusal(&e)
            ),
        },
    }
}

/// What the state file holds at the start: the lobby's resume point (or the
/// head it starts after), the stream's epoch now, and the saved rooms' seqs
/// when they belong to this epoch.
fn kept_from(plan: &ResumePlan, saved: Option<&SavedSeq>, chat: &ChatClient) -> SavedSeq {
    let epoch = chat.info.stream.as_ref().map(|p| p.epoch.clone());
    match (plan, saved) {
        (ResumePlan::After(seq), Some(saved)) => SavedSeq {
            seq: *seq,
            epoch,
            rooms: saved.rooms.clone(),
        },
        _ => SavedSeq {
            seq: chat.info.last_seq,
            epoch,
            rooms: BTreeMap::new(),
        },
    }
}

/// At most this many missed messages of one room are shown at start; the
/// rest stay in its history.
const ROOM_RESUME_MAX_MESSAGES: usize = 500;

/// Where resumed messages are shown.
struct Shown<'a> {
    out: &'a Printer,
    view: &'a mut RoomView,
}

/// Shows what each saved room got after its saved seq and up to its head
/// at login (live delivery starts after that head), a page of history at a
/// time; says when a room had more than [`ROOM_RESUME_MAX_MESSAGES`].
async fn resume_rooms(
    chat: &mut ChatClient,
    saved: &BTreeMap<String, u64>,
    shown: Shown<'_>,
    mut state: Option<&mut Kept>,
) {
    let heads: Vec<(String, u64)> = chat
        .info
        .rooms
        .iter()
        .map(|r| (r.room.clone(), r.seq))
        .collect();
    for (room, head) in heads {
        let Some(&after) = saved.get(&room) else {
            continue;
        };
        let (mut cursor, mut count) = (after, 0);
        while cursor < head && count < ROOM_RESUME_MAX_MESSAGES {
            let page = match chat.history(&room, Some(cursor), None, Some(100)).await {
                Ok((page, _)) => page,
                Err(e) => {
                    let why = refusal(&e);
                    shown.out.notice(format!(
                        "could not replay what {} got after #{cursor} ({why})",
                        visible(&room)
                    ));
                    break;
                }
            };
            let Some(last) = page.last().map(|b| b.seq) else {
                break;
            };
            for b in page.iter().filter(|b| b.seq <= head) {
                show(shown.out, b, state.as_deref_mut(), chat, shown.view);
                count += 1;
            }
            cursor = last;
        }
        if cursor < head {
            shown.out.notice(format!(
                "{} has more missed messages than shown ({}); its history has them",
                visible(&room),
                head - cursor
            ));
        }
    }
}

/// Tells the user about the link (lost, back, history lost) as it happens,
/// and keeps what the main loop needs to know.
fn watch_link(chat: &mut ChatClient, out: &Printer) -> Arc<Mutex<LinkSeen>> {
    let link = Arc::new(Mutex::new(LinkSeen::default()));
    let (seen, notices) = (link.clone(), out.clone());
    chat.on_link_event(move |e| {
        let Ok(mut l) = seen.lock() else { return };
        match e {
            LinkEvent::Lost { cause } => {
                l.down = true;
                notices.notice(format!("connection lost ({cause}), reconnecting…"))
            }
            LinkEvent::Reconnected { addr, replayed } => {
                l.down = false;
                notices.notice(format!("reconnected to {addr}, replayed {replayed}"))
            }
            LinkEvent::HistoryLost { from_seq } => notices.notice(format!(
                "the server lost its message history: messages sent while the link was down \
                 cannot be recovered; new messages from #{from_seq}"
            )),
            LinkEvent::GaveUp { attempts } => l.gave_up = Some(*attempts),
        }
    });
    link
}

/// Shows one message if its room is in view (else counts it unread) and
/// keeps its seq, the lobby's or its room's (with the stream's epoch).
fn show(
    out: &Printer,
    b: &BroadcastFrame,
    state: Option<&mut Kept>,
    chat: &ChatClient,
    view: &mut RoomView,
) {
    if let Some(line) = view.place(b, message_line(b, crate::protocol::now_us())) {
        out.line(line);
    }
    if let Some(kept) = state {
        let epoch = chat.info.stream.as_ref().map(|p| p.epoch.as_str());
        if let Err(e) = kept.note(b, epoch) {
            out.notice(format!(
                "cannot keep the last seq in {}: {e}",
                kept.file.path().display()
            ));
        }
    }
}

/// The closing line, always printed: logged out, or why the link ended.
async fn close(
    chat: ChatClient,
    out: &Printer,
    link: &Mutex<LinkSeen>,
    ended: Result<(), ClientError>,
) -> Result<(), ClientError> {
    if let Err(e) = ended {
        match link.lock().ok().and_then(|l| l.gave_up) {
            Some(n) => out.notice(format!("could not reconnect after {n} attempts ({e})")),
            None => out.notice(format!("connection lost for good: {e}")),
        }
        return Err(e);
    }
    match tokio::time::timeout(Duration::from_secs(5), chat.logout()).await {
        Ok(Ok(())) => out.notice("logged out"),
        _ => out.notice("left without a clean logout (the server ends the session)"),
    }
    Ok(())
}

/// What a typed line acts on: the client, the screen and the room view.
struct Screen<'a> {
    /// The chat session.
    chat: &'a mut ChatClient,
    /// Where lines go.
    out: &'a Printer,
    /// The room in view and the unread counts.
    view: &'a mut RoomView,
}

impl Screen<'_> {
    /// Carries out one typed line; `false` to quit. A refused line is
    /// reported and the session goes on; a line that cannot be sent because
    /// the link is gone for good is reported, then the error ends the client.
    async fn act(&mut self, input: Input, link_down: bool) -> Result<bool, ClientError> {
        let out = self.out;
        match input {
            Input::Nothing => {}
            Input::Quit => return Ok(false),
            Input::Help => out.line(HELP),
            Input::Invalid(why) => out.notice(why),
            Input::Send(text) => {
                if link_down {
                    // Said at once: the send waits for the reconnect.
                    out.notice(format!("queued until reconnected: {}", preview(&text)));
                }
                let target = match self.view.current() {
                    Some(room) => SendTarget::Room(room.to_owned()),
                    None => SendTarget::Lobby,
                };
                self.send_line(&target, &text).await?;
            }
            Input::Status(user) => {
                let asked = self
                    .chat
                    .request_status(ClientCommand::GetStatus { user_id: user })
                    .await;
                show_status(out, asked)?;
            }
            Input::Away | Input::Back => {
                let status = if input == Input::Away {
                    UserStatus::Away
                } else {
                    UserStatus::Online
                };
                let set = self
                    .chat
                    .request_status(ClientCommand::Status { status })
                    .await;
                show_status(out, set)?;
            }
            other => self.act_on_rooms(other).await?,
        }
        Ok(true)
    }

    /// The room commands: a refusal is told, the session goes on.
    async fn act_on_rooms(&mut self, input: Input) -> Result<(), ClientError> {
        let done = match input {
            Input::Rooms => {
                self.out.notice(self.view.rooms_line(self.chat.rooms()));
                Ok(())
            }
            Input::Switch(room) => {
                self.switch(&room);
                Ok(())
            }
            Input::Join(room) => self.join(&room).await,
            Input::Create { room, private } => {
                let kind = if private {
                    RoomKind::Private
                } else {
                    RoomKind::Public
                };
                self.create(&room, kind).await
            }
            Input::Leave(room) => self.leave(room).await,
            Input::Invite(user) => self.invite(&user).await,
            Input::Msg { user, text } => self.direct(&user, &text).await,
            Input::Presence(on) => self.chat.watch_presence(on).await.map(|on| {
                let now = if on { "on" } else { "off" };
                self.out.notice(format!("presence news {now}"));
            }),
            _ => Ok(()),
        };
        match done {
            Err(e) if e.is_transport() => Err(e),
            Err(e) => {
                self.out.notice(refusal(&e));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Puts a room in view and prints what it holds unread.
    fn switch(&mut self, room: &str) {
        match self.view.switch(room, self.chat.rooms()) {
            Ok(lines) => {
                self.out.notice(format!("now in {}", visible(room)));
                lines.into_iter().for_each(|l| self.out.line(l));
            }
            Err(why) => self.out.notice(why),
        }
    }

    /// Joins a room, making it (public) when there is none; puts it in view.
    async fn join(&mut self, room: &str) -> Result<(), ClientError> {
        match self.chat.join(room, None).await {
            Err(ClientError::Server {
                code: ErrorCode::UnknownRoom,
                ..
            }) => self.create(room, RoomKind::Public).await,
            Err(e) => Err(e),
            Ok(_) => {
                self.switch(room);
                Ok(())
            }
        }
    }

    async fn create(&mut self, room: &str, kind: RoomKind) -> Result<(), ClientError> {
        self.chat.create_room(room, kind).await?;
        self.out
            .notice(format!("made {} ({})", visible(room), kind.as_str()));
        self.switch(room);
        Ok(())
    }

    async fn leave(&mut self, room: Option<String>) -> Result<(), ClientError> {
        let Some(room) = room.or_else(|| self.view.current().map(str::to_owned)) else {
            self.out
                .notice("the lobby cannot be left; /quit ends the session");
            return Ok(());
        };
        self.chat.leave(&room).await?;
        self.view.forget(&room);
        self.out.notice(format!("left {}", visible(&room)));
        Ok(())
    }

    async fn invite(&mut self, user: &str) -> Result<(), ClientError> {
        let Some(room) = self.view.current().map(str::to_owned) else {
            self.out
                .notice("everyone is in the lobby; /room NAME puts a room in view to invite to");
            return Ok(());
        };
        self.chat.invite(&room, user).await?;
        self.out
            .notice(format!("invited {} to {}", visible(user), visible(&room)));
        Ok(())
    }

    /// Sends a direct message and puts the direct room in view.
    async fn direct(&mut self, user: &str, text: &str) -> Result<(), ClientError> {
        let target = SendTarget::User(user.to_owned());
        let (_, room) = self.chat.send_to(&target, text, None).await?;
        if let Some(room) = room {
            if self.view.current() != Some(room.as_str()) {
                self.switch(&room);
            }
        }
        Ok(())
    }

    /// Sends one typed line (reconnecting if need be); a refusal is
    /// reported and the session goes on, a link gone for good ends it.
    async fn send_line(&mut self, target: &SendTarget, text: &str) -> Result<(), ClientError> {
        match self.chat.send_to(target, text, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_transport() => {
                self.out
                    .notice(format!("not sent (connection lost): {}", preview(text)));
                Err(e)
            }
            Err(e) => {
                self.out.notice(format!("not sent: {}", refusal(&e)));
                Ok(())
            }
        }
    }
}

fn show_status(out: &Printer, r: Result<ServerFrame, ClientError>) -> Result<(), ClientError> {
    match r {
        Ok(ServerFrame::Status { user_id, status }) => {
            out.notice(format!("{} is {}", visible(&user_id), status.as_str()))
        }
        Ok(other) => out.notice(format!("unexpected answer: {other:?}")),
        Err(e) if e.is_transport() => return Err(e),
        Err(e) => out.notice(refusal(&e)),
    }
    Ok(())
}

/// Why a line was refused, in words (a too-long line names the limit).
fn refusal(e: &ClientError) -> String {
    match e {
        ClientError::Protocol(crate::protocol::ProtocolError::FrameTooLarge { len, max }) => {
            format!("the line is too long ({len} bytes encoded; a frame holds {max})")
        }
        ClientError::Server { message, .. } => visible(message).into_owned(),
        other => visible(&other.to_string()).into_owned(),
    }
}

/// The start of a line, for notices.
fn preview(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{more}", visible(&cut))
}

/// Reads a password from the terminal without echo, or one line from
/// stdin when it is not a terminal.
pub fn prompt_password(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let stdin = std::io::stdin();
    let saved = stdin
        .is_terminal()
        .then(|| tcgetattr(&stdin).ok())
        .flatten();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    }
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        tcsetattr(&stdin, OptionalActions::Now, t)?;
        writeln!(err)?;
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_commands_and_unknown_ones_are_errors() {
        assert_eq!(parse_line("hello"), Input::Send("hello".into()));
        assert_eq!(parse_line("   "), Input::Nothing);
        assert_eq!(parse_line("/help"), Input::Help);
        assert_eq!(parse_line("/quit"), Input::Quit);
        assert_eq!(parse_line("/away"), Input::Away);
        assert_eq!(parse_line("/back"), Input::Back);
        assert_eq!(parse_line("/who bob"), Input::Status("bob".into()));
        assert_eq!(parse_line("/status bob"), Input::Status("bob".into()));
        assert_eq!(parse_line("//etc"), Input::Send("/etc".into()));
        assert!(matches!(parse_line("/status"), Input::Invalid(_)));
        assert!(matches!(parse_line("/quit now"), Input::Invalid(_)));
        match parse_line("/frobnicate") {
            Input::Invalid(why) => assert!(why.contains("unknown command /frobnicate")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_room_commands_parse_and_misuse_is_told() {
        assert_eq!(parse_line("/rooms"), Input::Rooms);
        assert_eq!(parse_line("/presence on"), Input::Presence(true));
        assert_eq!(parse_line("/presence off"), Input::Presence(false));
        assert!(matches!(parse_line("/presence maybe"), Input::Invalid(_)));
        assert_eq!(parse_line("/room team"), Input::Switch("team".into()));
        assert_eq!(parse_line("/room lobby"), Input::Switch("lobby".into()));
        assert_eq!(parse_line("/join team"), Input::Join("team".into()));
        assert_eq!(parse_line("/leave"), Input::Leave(None));
        assert_eq!(parse_line("/leave team"), Input::Leave(Some("team".into())));
        assert_eq!(parse_line("/invite bob"), Input::Invite("bob".into()));
        let create = |room: &str, private| Input::Create {
            room: room.into(),
            private,
        };
        assert_eq!(parse_line("/create team"), create("team", false));
        assert_eq!(parse_line("/create team private"), create("team", true));
        assert_eq!(parse_line("/create team public"), create("team", false));
        // The text of /msg is the rest of the line, spaces kept.
        assert_eq!(
            parse_line("/msg bob  hello there /x"),
            Input::Msg {
                user: "bob".into(),
                text: "hello there /x".into()
            }
        );
        for misuse in [
            "/room",
            "/room a b",
            "/join",
            "/invite",
            "/invite a b",
            "/create",
            "/create t secret",
            "/create t private x",
            "/leave a b",
            "/rooms x",
            "/msg",
            "/msg bob",
            "/msg bob   ",
        ] {
            assert!(matches!(parse_line(misuse), Input::Invalid(_)), "{misuse}");
        }
    }

    #[test]
    fn a_room_message_line_names_its_room() {
        let b = BroadcastFrame {
            seq: 3,
            message_id: "m".into(),
            from: "bob".into(),
            body: "hi".into(),
            received_at_us: 0,
            sent_at_us: 0,
            room: Some("team".into()),
        };
        assert_eq!(message_line(&b, 1), "00:00:00 #3 [team] bob: hi");
    }

    #[test]
    fn a_message_is_one_visible_line_with_its_time() {
        let at = (13 * 3600 + 4 * 60 + 5) * 1_000_000 + 999;
        let b = BroadcastFrame {
            seq: 7,
            message_id: "m".into(),
            from: "service:bot".into(),
            body: "\u{1b}[2J\n[99] bob: I never said this".into(),
            received_at_us: at,
            sent_at_us: at,
            room: None,
        };
        let line = message_line(&b, at + 1);
        assert_eq!(
            line,
            "13:04:05 #7 service:bot: \\u{1b}[2J\\n[99] bob: I never said this"
        );
    }

    #[test]
    fn the_time_shown_is_the_servers_with_a_date_when_not_today() {
        // 2026-12-07 10:00:00 UTC, as the server received it; the sender
        // claimed the Unix epoch.
        let received = 1_796_637_600_000_000;
        let b = BroadcastFrame {
            seq: 1,
            message_id: "m".into(),
            from: "bob".into(),
            body: "hi".into(),
            received_at_us: received,
            sent_at_us: 0,
            room: None,
        };
        let same_day = received + 3_600_000_000;
        assert_eq!(message_line(&b, same_day), "10:00:00 #1 bob: hi");
        let next_day = received + 86_400_000_000;
        assert_eq!(message_line(&b, next_day), "2026-12-07 10:00:00 #1 bob: hi");
    }

    #[test]
    fn the_seq_state_survives_a_restart_and_is_per_user_and_stream() {
        let dir = std::env::temp_dir().join(format!("rtmc-state-{}", uuid::Uuid::new_v4()));
        let a = SeqState::new(&dir, "alice", "stream-a");
        let b = SeqState::new(&dir, "alice", "stream-b");
        assert_eq!(a.load(), None);
        let mut kept = SavedSeq {
            seq: 41,
            epoch: Some("e1".into()),
            rooms: BTreeMap::new(),
        };
        a.store(&kept).unwrap();
        kept.seq = 42;
        // A direct room's id holds its users' ids, spaces and all.
        kept.rooms.insert("team".into(), 7);
        kept.rooms.insert("dm:al ice:bob".into(), 3);
        a.store(&kept).unwrap();
        let saved = SeqState::new(&dir, "alice", "stream-a").load();
        assert_eq!(saved, Some(kept));
        // A file written before rooms (one line) still loads.
        std::fs::write(a.path(), "5 e0\n").unwrap();
        let old = SavedSeq {
            seq: 5,
            epoch: Some("e0".into()),
            rooms: BTreeMap::new(),
        };
        assert_eq!(a.load(), Some(old));
        // A room line that does not parse is skipped, not fatal.
        std::fs::write(a.path(), "5 e0\nroom x team\nroom 4 hall\n").unwrap();
        let rooms = a.load().map(|s| s.rooms);
        assert_eq!(rooms, Some(BTreeMap::from([("hall".to_owned(), 4)])));
        assert_eq!(b.load(), None);
        assert_ne!(a.path(), SeqState::new(&dir, "../x", "stream-a").path());
        assert!(SeqState::new(&dir, "../x", "h:1").path().starts_with(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_saved_seq_of_another_epoch_is_not_resumed() {
        let now = StreamPosition {
            id: "s".into(),
            epoch: "e2".into(),
        };
        let saved = |epoch: Option<&str>| {
            Some(SavedSeq {
                seq: 9,
                epoch: epoch.map(str::to_owned),
                rooms: BTreeMap::new(),
            })
        };
        assert_eq!(ResumePlan::new(None, Some(&now)), ResumePlan::Fresh);
        assert_eq!(
            ResumePlan::new(saved(Some("e2")), Some(&now)),
            ResumePlan::After(9)
        );
        assert_eq!(
            ResumePlan::new(saved(Some("e1")), Some(&now)),
            ResumePlan::HistoryLost
        );
        assert_eq!(
            ResumePlan::new(saved(None), Some(&now)),
            ResumePlan::HistoryLost
        );
        assert_eq!(ResumePlan::new(saved(None), None), ResumePlan::After(9));
    }
}
