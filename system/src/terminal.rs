//! `rtmc client`, the interactive terminal client. [`ChatClient`] does the
//! protocol (login, acks, dedupe by seq, reconnect + resume); this module is
//! the part a person touches: commands typed at the prompt, how messages
//! and notices are shown (one line each, bodies made [`visible`], never
//! interpreted), and the small state file that lets a restarted client
//! resume where it left off.
//!
//! On a terminal, lines are read with a line editor (rustyline: history,
//! arrow keys) and everything else is printed above the line being typed;
//! with stdin not a terminal (a pipe, a test), plain lines are read.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::{ChatClient, ClientError, LinkEvent};
use crate::display::visible;
use crate::protocol::{BroadcastFrame, ClientCommand, ServerFrame, UserStatus};

/// The help shown by `/help` (and at start).
pub const HELP: &str = "type a line and Enter to send it; commands:
  /help            this help
  /status USER     a user's presence (also /who USER)
  /away, /back     set your presence to away / online
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
    let arg = words.next();
    let extra = words.next().is_some();
    match (name, arg, extra) {
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

/// `HH:MM:SS` (UTC) of a timestamp in microseconds since the Unix epoch.
pub fn clock(us: u64) -> String {
    let secs = (us / 1_000_000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One message as one line: `HH:MM:SS #seq from: body`, every part visible.
pub fn message_line(b: &BroadcastFrame) -> String {
    format!(
        "{} #{} {}: {}",
        clock(b.sent_at_us),
        b.seq,
        visible(&b.from),
        visible(&b.body)
    )
}

/// Where a user's last seen sequence number on one server is kept.
#[derive(Debug, Clone)]
pub struct SeqState {
    path: PathBuf,
}

impl SeqState {
    /// The state file for `user` on `server` under `dir`.
    pub fn new(dir: &Path, user: &str, server: &str) -> Self {
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
        let name = format!("{}@{}.seq", safe(user), safe(server));
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

    /// The stored seq; `None` when there is no (readable) file.
    pub fn load(&self) -> Option<u64> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stores `seq` (write to a temporary file, then rename: never torn).
    pub fn store(&self, seq: u64) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("seq.tmp");
        std::fs::write(&tmp, format!("{seq}\n"))?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Writes one line of output somewhere.
type LineSink = Box<dyn FnMut(String) + Send>;

/// Prints above the line being typed (on a terminal) or to stdout.
#[derive(Clone)]
pub struct Printer(Arc<Mutex<LineSink>>);

impl Printer {
    fn stdout() -> Self {
        Self(Arc::new(Mutex::new(Box::new(|line: String| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }))))
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

/// A typed line, or the end of typing.
enum Typed {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupt,
}

/// Starts reading typed lines: with a line editor on a terminal, plain
/// lines otherwise. Returns the lines and the printer to use meanwhile.
fn start_input() -> (mpsc::Receiver<Typed>, Printer) {
    let (tx, rx) = mpsc::channel(16);
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        if let Some(printer) = start_editor(tx.clone()) {
            return (rx, printer);
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
    (rx, Printer::stdout())
}

/// The rustyline editor on its own thread; `None` if it cannot start.
fn start_editor(tx: mpsc::Sender<Typed>) -> Option<Printer> {
    use rustyline::error::ReadlineError;
    use rustyline::ExternalPrinter;
    let mut editor = rustyline::DefaultEditor::new().ok()?;
    let mut external = editor.create_external_printer().ok()?;
    let printer = Printer(Arc::new(Mutex::new(Box::new(move |line: String| {
        let _ = external.print(format!("{line}\n"));
    }))));
    std::thread::spawn(move || loop {
        match editor.readline("> ") {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                // The sent line comes back as a message: show it once.
                print!("\x1b[1A\x1b[2K");
                let _ = std::io::stdout().flush();
                if tx.blocking_send(Typed::Line(line)).is_err() {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                let _ = tx.blocking_send(Typed::Interrupt);
                break;
            }
            Err(_) => break,
        }
    });
    Some(printer)
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

/// Runs the client until `/quit`, Ctrl-C or the end of input (logging
/// out), or until the link is lost for good (an error).
pub async fn run(opts: TerminalOptions) -> Result<(), ClientError> {
    let first = opts.addrs[0].clone();
    let state = opts
        .state_dir
        .as_deref()
        .map(|d| SeqState::new(d, &opts.user, &first));
    let resume = state.as_ref().and_then(SeqState::load);
    let chat = ChatClient::connect_from(&first, &opts.user, &opts.password, resume).await?;
    let mut chat = chat.with_failover(opts.addrs[1..].iter().cloned());
    // Ctrl-C is ours from here on (registered now, before any notice).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| ClientError::Protocol(e.into()))?;
    let (mut typed, out) = start_input();
    let notices = out.clone();
    chat.on_link_event(move |e| match e {
        LinkEvent::Lost { cause } => {
            notices.notice(format!("connection lost ({cause}), reconnecting…"))
        }
        LinkEvent::Reconnected { addr, replayed } => {
            notices.notice(format!("reconnected to {addr}, replayed {replayed}"))
        }
        LinkEvent::GaveUp { attempts } => {
            notices.notice(format!("could not reconnect after {attempts} attempts"))
        }
    });
    out.notice(format!(
        "logged in as {} at {first}; {} — /help for commands",
        visible(&chat.info.user_id),
        match resume {
            Some(seq) => format!("resuming after #{seq}"),
            None => format!("new messages from #{}", chat.info.last_seq + 1),
        }
    ));
    let every = Duration::from_millis(chat.info.heartbeat_interval_ms.max(100));
    let mut heartbeat = tokio::time::interval(every);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            t = typed.recv() => match t {
                None | Some(Typed::Interrupt) => break,
                Some(Typed::Line(line)) => {
                    if !act(&mut chat, &out, parse_line(&line)).await? {
                        break;
                    }
                }
            },
            _ = heartbeat.tick() => {
                if let Err(e) = chat.heartbeat_or_reconnect().await {
                    out.notice(format!("connection lost for good: {e}"));
                    return Err(e);
                }
            }
            b = chat.next_broadcast(every) => match b {
                Ok(b) => {
                    out.line(message_line(&b));
                    if let Some(s) = &state {
                        if let Err(e) = s.store(b.seq) {
                            out.notice(format!("cannot keep the last seq in {}: {e}", s.path().display()));
                        }
                    }
                }
                Err(ClientError::Timeout(_)) => {}
                Err(e) => {
                    out.notice(format!("connection lost for good: {e}"));
                    return Err(e);
                }
            },
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), chat.logout()).await {
        Ok(Ok(())) => out.notice("logged out"),
        _ => out.notice("left without a clean logout (the server ends the session)"),
    }
    Ok(())
}

/// Carries out one typed line; `false` to quit. A refused line is reported
/// and the session goes on; a line that cannot be sent because the link is
/// gone for good is reported, then the error ends the client.
async fn act(chat: &mut ChatClient, out: &Printer, input: Input) -> Result<bool, ClientError> {
    match input {
        Input::Nothing => {}
        Input::Quit => return Ok(false),
        Input::Help => out.line(HELP),
        Input::Invalid(why) => out.notice(why),
        Input::Send(text) => match chat.send(&text, None).await {
            Ok(_) => {}
            Err(e) if e.is_transport() => {
                out.notice(format!("not sent (connection lost): {}", preview(&text)));
                return Err(e);
            }
            Err(e) => out.notice(format!("not sent: {}", refusal(&e))),
        },
        Input::Status(user) => {
            let asked = chat
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
            let set = chat.request_status(ClientCommand::Status { status }).await;
            show_status(out, set)?;
        }
    }
    Ok(true)
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
    fn a_message_is_one_visible_line_with_its_time() {
        let b = BroadcastFrame {
            seq: 7,
            message_id: "m".into(),
            from: "service:bot".into(),
            body: "\u{1b}[2J\n[99] bob: I never said this".into(),
            sent_at_us: (13 * 3600 + 4 * 60 + 5) * 1_000_000 + 999,
        };
        let line = message_line(&b);
        assert_eq!(
            line,
            "13:04:05 #7 service:bot: \\u{1b}[2J\\n[99] bob: I never said this"
        );
    }

    #[test]
    fn the_seq_state_survives_a_restart_and_is_per_user_and_server() {
        let dir = std::env::temp_dir().join(format!("rtmc-state-{}", uuid::Uuid::new_v4()));
        let a = SeqState::new(&dir, "alice", "127.0.0.1:7000");
        let b = SeqState::new(&dir, "alice", "127.0.0.1:7002");
        assert_eq!(a.load(), None);
        a.store(41).unwrap();
        a.store(42).unwrap();
        assert_eq!(
            SeqState::new(&dir, "alice", "127.0.0.1:7000").load(),
            Some(42)
        );
        assert_eq!(b.load(), None);
        assert_ne!(
            a.path(),
            SeqState::new(&dir, "../x", "127.0.0.1:7000").path()
        );
        assert!(SeqState::new(&dir, "../x", "h:1").path().starts_with(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
