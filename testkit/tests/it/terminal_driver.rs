//! The driver of `rtmc client` as a real process, shared by the suites
//! that watch what a user of the terminal client sees (the terminal suite,
//! the security suite's hostile bodies): one place that knows how to start
//! the binary, type into it and read its lines.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use rtmc_testkit::TEST_PASSWORD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// `rtmc client` with `args`, its stdin and stdout piped, killed when
/// dropped; stderr and the password's source are the caller's.
pub(crate) fn client_command(args: &[&str]) -> Command {
    let binary = rtmc_testkit::process::rtmc_binary().unwrap();
    let mut cmd = Command::new(binary);
    cmd.arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `rtmc client --no-state --addr addr --user user` without a password
/// in its environment, types `typed` at it (the password prompt reads the
/// first line), closes its stdin and waits up to `limit` for its end.
pub(crate) async fn run_prompted(addr: &str, user: &str, typed: &str, limit: Duration) -> Output {
    let mut child = client_command(&["--no-state", "--addr", addr, "--user", user])
        .env_remove("RTMC_PASSWORD")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(typed.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("client did not exit")
        .unwrap()
}

/// Bound on waiting for one expected line.
pub(crate) const LINE_LIMIT: Duration = Duration::from_secs(20);

/// A running `rtmc client` and the lines it printed so far.
pub(crate) struct TerminalClient {
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) seen: Vec<String>,
}

impl TerminalClient {
    /// Starts the client for `user` against `addrs`, with `state_dir` (or
    /// `--no-state`), and waits for its "logged in" notice.
    pub(crate) async fn start(addrs: &[String], user: &str, state_dir: Option<&Path>) -> Self {
        let mut cmd = client_command(&["--user", user]);
        for a in addrs {
            cmd.args(["--addr", a]);
        }
        match state_dir {
            Some(d) => cmd.arg("--state-dir").arg(d),
            None => cmd.arg("--no-state"),
        };
        let mut child = cmd
            .env("RTMC_PASSWORD", TEST_PASSWORD)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut c = Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            seen: Vec::new(),
        };
        c.expect(|l| l.starts_with("-- logged in as")).await;
        c
    }

    pub(crate) async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads lines until one satisfies `want`; returns it.
    pub(crate) async fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        self.expect_within(LINE_LIMIT, want).await
    }

    /// `expect` with its own bound.
    pub(crate) async fn expect_within(
        &mut self,
        limit: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let found = tokio::time::timeout(limit, async {
            loop {
                match self.stdout.next_line().await {
                    Ok(Some(line)) => {
                        self.seen.push(line.clone());
                        if want(&line) {
                            return Some(line);
                        }
                    }
                    _ => return None,
                }
            }
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("client exited; it printed {:#?}", self.seen),
            Err(_) => panic!("expected line not printed; got {:#?}", self.seen),
        }
    }

    /// Types `/quit` and waits for the closing line and a clean exit.
    pub(crate) async fn quit(&mut self) {
        self.type_line("/quit").await;
        self.expect(|l| l == "-- logged out").await;
        assert!(self.exit_status().await.success());
    }

    pub(crate) async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("client did not exit")
            .unwrap()
    }
}

/// Whether `line` is a message line: `HH:MM:SS #seq from: body`.
pub(crate) fn is_message(line: &str, from: &str, body: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 10
        && b[2] == b':'
        && b[5] == b':'
        && line[9..].starts_with('#')
        && line.ends_with(&format!(" {from}: {body}"))
}
