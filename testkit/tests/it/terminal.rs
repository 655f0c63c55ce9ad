//! `rtmc client`, the interactive terminal client, driven as a real process
//! through its stdin/stdout (without a terminal it reads plain lines and
//! prints each message or notice as one line): typed lines are sent and
//! shown once with their time, commands are commands, refusals are
//! reported and the session goes on, link loss is announced, Ctrl-C and
//! `/quit` log out, a restarted client resumes from its state file, and
//! startup errors say what to do.

use std::process::Stdio;
use std::time::Duration;

use rtmc::client::{ChatClient, SendTarget};
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::eventually;
use crate::terminal_driver::{
    client_command, is_message, run_prompted, TerminalClient, LINE_LIMIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sends_shows_each_message_once_and_handles_commands() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("term").await.unwrap();
    let mut c = TerminalClient::start(&[p.server_addr(0)], &user, None).await;
    c.type_line("typed in the terminal").await;
    c.expect(|l| is_message(l, &user, "typed in the terminal"))
        .await;
    let (s, _) = p.post_message("svc", "from http", None).await.unwrap();
    assert_eq!(s, 202);
    c.expect(|l| is_message(l, "service:svc", "from http"))
        .await;
    c.type_line("/help").await;
    c.expect(|l| l.contains("/quit")).await;
    c.type_line("/frobnicate").await;
    c.expect(|l| l.starts_with("-- unknown command /frobnicate"))
        .await;
    c.type_line(&format!("/status {user}")).await;
    c.expect(|l| l == format!("-- {user} is online")).await;
    c.type_line("/away").await;
    c.expect(|l| l == format!("-- {user} is away")).await;
    c.type_line("/back").await;
    c.expect(|l| l == format!("-- {user} is online")).await;
    // Longer than server.max_body_bytes: refused, and the session goes on.
    c.type_line(&"x".repeat(p.cfg.server.max_body_bytes + 1))
        .await;
    c.expect(|l| l.starts_with("-- not sent: body exceeds"))
        .await;
    c.type_line("still here").await;
    c.expect(|l| is_message(l, &user, "still here")).await;
    c.type_line("/quit").await;
    c.expect(|l| l == "-- logged out").await;
    assert!(c.exit_status().await.success());
    let own = c
        .seen
        .iter()
        .filter(|l| l.contains("typed in the terminal"));
    assert_eq!(own.count(), 1, "own message shown once: {:#?}", c.seen);
    assert!(
        !c.seen
            .iter()
            .any(|l| l.contains("frobnicate") && l.contains('#')),
        "an unknown command went out as a message: {:#?}",
        c.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_logs_out_and_exits() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("ctrlc").await.unwrap();
    let mut c = TerminalClient::start(&[p.server_addr(0)], &user, None).await;
    let pid = c.child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    c.expect(|l| l == "-- logged out").await;
    assert!(c.exit_status().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_resumes_from_its_state_file() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("restart").await.unwrap();
    let dir = std::env::temp_dir().join(format!("rtmc-term-{}", uuid::Uuid::new_v4()));
    let mut c = TerminalClient::start(&[p.server_addr(0)], &user, Some(&dir)).await;
    p.post_message("svc", "before the crash", None)
        .await
        .unwrap();
    c.expect(|l| is_message(l, "service:svc", "before the crash"))
        .await;
    // The seq is stored right after the line is printed.
    let stored = async || match std::fs::read_dir(&dir).map(|d| d.count()) {
        Ok(1) => Ok(()),
        other => Err(format!("state files: {other:?}")),
    };
    eventually(Duration::from_secs(5), Duration::from_millis(20), stored).await;
    c.child.start_kill().unwrap(); // SIGKILL: no logout, no goodbye
    c.exit_status().await;
    for body in ["while away 1", "while away 2"] {
        let (s, _) = p.post_message("svc", body, None).await.unwrap();
        assert_eq!(s, 202);
    }
    let mut again = TerminalClient::start(&[p.server_addr(0)], &user, Some(&dir)).await;
    assert!(
        again.seen[0].contains("resuming after #"),
        "{:#?}",
        again.seen
    );
    again
        .expect(|l| is_message(l, "service:svc", "while away 1"))
        .await;
    again
        .expect(|l| is_message(l, "service:svc", "while away 2"))
        .await;
    assert!(!again.seen.iter().any(|l| l.contains("before the crash")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A room's messages sent while the client was not running are shown
/// (as the room's unread lines) after a restart, from its state file; the
/// one it had shown is not shown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_resumes_its_rooms_from_its_state_file() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let users = p.add_users("roomback", 2).await.unwrap();
    let dir = std::env::temp_dir().join(format!("rtmc-term-{}", uuid::Uuid::new_v4()));
    let mut c = TerminalClient::start(&[p.server_addr(0)], &users[0], Some(&dir)).await;
    c.type_line("/join deck").await;
    c.expect(|l| l.starts_with("-- made deck")).await;
    let mut poster = ChatClient::connect_v2(&p.server_addr(0), &users[1], TEST_PASSWORD)
        .await
        .unwrap();
    poster.join("deck", None).await.unwrap();
    let deck = SendTarget::Room("deck".into());
    poster.send_to(&deck, "seen before", None).await.unwrap();
    c.expect(|l| is_message(l, &users[1], "seen before")).await;
    // The room's seq is stored right after the line is printed.
    let stored = async || {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
            .collect();
        let text = match files.as_slice() {
            [f] => std::fs::read_to_string(f.path()).map_err(|e| e.to_string())?,
            other => return Err(format!("state files: {}", other.len())),
        };
        match text.contains("room 1 deck") {
            true => Ok(()),
            false => Err(format!("state file: {text:?}")),
        }
    };
    eventually(Duration::from_secs(5), Duration::from_millis(20), stored).await;
    c.child.start_kill().unwrap(); // SIGKILL: no logout, no goodbye
    c.exit_status().await;
    for body in ["while away 1", "while away 2"] {
        poster.send_to(&deck, body, None).await.unwrap();
    }
    let mut again = TerminalClient::start(&[p.server_addr(0)], &users[0], Some(&dir)).await;
    again.type_line("/room deck").await;
    again
        .expect(|l| is_message(l, &users[1], "while away 1"))
        .await;
    again
        .expect(|l| is_message(l, &users[1], "while away 2"))
        .await;
    assert!(
        !again.seen.iter().any(|l| l.contains("seen before")),
        "{:#?}",
        again.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_is_announced_and_resumed_on_the_next_node() {
    let mut p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let user = p.add_user("relink").await.unwrap();
    let addrs = [p.server_addr(0), p.server_addr(1)];
    let mut c = TerminalClient::start(&addrs, &user, None).await;
    p.stop_server(0).await;
    c.expect(|l| l.starts_with("-- connection lost")).await;
    c.expect(|l| l.starts_with(&format!("-- reconnected to {}, replayed", addrs[1])))
        .await;
    c.type_line("after the failover").await;
    c.expect(|l| is_message(l, &user, "after the failover"))
        .await;
    p.shutdown().await;
}

/// The only node goes away for good: the client keeps trying (its reconnect
/// policy: 20 attempts with back-off, about 35 s). A line typed meanwhile is
/// said to be queued at once, then reported as not sent instead of
/// vanishing, and the client's own "could not reconnect" notice comes
/// before it exits with a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_typed_while_the_link_is_lost_for_good_is_reported_not_dropped() {
    let mut p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("gone").await.unwrap();
    let addrs = [p.server_addr(0)];
    let mut c = TerminalClient::start(&addrs, &user, None).await;
    p.stop_server(0).await;
    c.expect(|l| l.starts_with("-- connection lost")).await;
    c.type_line("typed into the void").await;
    c.expect_within(Duration::from_secs(5), |l| {
        l == "-- queued until reconnected: typed into the void"
    })
    .await;
    let limit = Duration::from_secs(90);
    c.expect_within(limit, |l| {
        l == "-- not sent (connection lost): typed into the void"
    })
    .await;
    c.expect_within(limit, |l| l.starts_with("-- could not reconnect after"))
        .await;
    assert!(!c.exit_status().await.success());
    p.shutdown().await;
}

/// Resume state belongs to the deployment, not to one node: quit, another
/// user sends, restart against the other node → the message is shown;
/// quit, restart against the first node → nothing is shown twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_against_another_node_of_the_deployment_resumes() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let user = p.add_user("nodes").await.unwrap();
    let dir = std::env::temp_dir().join(format!("rtmc-term-{}", uuid::Uuid::new_v4()));
    let (first, other) = (p.server_addr(0), p.server_addr(1));
    let mut c = TerminalClient::start(std::slice::from_ref(&first), &user, Some(&dir)).await;
    p.post_message("svc", "seen on the first node", None)
        .await
        .unwrap();
    c.expect(|l| is_message(l, "service:svc", "seen on the first node"))
        .await;
    c.quit().await;
    p.post_message("svc", "sent while away", None)
        .await
        .unwrap();
    let mut again = TerminalClient::start(std::slice::from_ref(&other), &user, Some(&dir)).await;
    again
        .expect(|l| is_message(l, "service:svc", "sent while away"))
        .await;
    again.quit().await;
    let mut back = TerminalClient::start(std::slice::from_ref(&first), &user, Some(&dir)).await;
    back.type_line("back on the first node").await;
    back.expect(|l| is_message(l, &user, "back on the first node"))
        .await;
    back.quit().await;
    let shown_twice: Vec<&String> = back
        .seen
        .iter()
        .filter(|l| l.contains("sent while away") || l.contains("seen on the first node"))
        .collect();
    assert!(shown_twice.is_empty(), "shown again: {shown_twice:#?}");
    assert!(
        back.seen[0].contains("resuming after #"),
        "{:#?}",
        back.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
    p.shutdown().await;
}

/// On a terminal (a pty, through `script`), `/quit` prints the closing line
/// every time, and no prompt follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_on_a_terminal_prints_logged_out_and_no_prompt_after_it() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("tty").await.unwrap();
    let binary = rtmc_testkit::process::rtmc_binary().unwrap();
    for round in 0..3 {
        let client = format!(
            "{} client --no-state --addr {} --user {user}",
            binary.display(),
            p.server_addr(0)
        );
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &client, "/dev/null"])
            .env("RTMC_PASSWORD", TEST_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut screen = Vec::new();
        let logged_in = tokio::time::timeout(LINE_LIMIT, async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&screen).contains("-- logged in as") {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => screen.extend_from_slice(&buf[..n]),
                }
            }
            true
        })
        .await;
        assert!(
            logged_in == Ok(true),
            "round {round}: {:?}",
            String::from_utf8_lossy(&screen)
        );
        // Let the editor draw its prompt, then type /quit and Enter.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stdin.write_all(b"/quit\r").await.unwrap();
        stdin.flush().await.unwrap();
        let rest = tokio::time::timeout(LINE_LIMIT, async {
            use tokio::io::AsyncReadExt;
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest).await;
            rest
        })
        .await
        .expect("the client did not exit after /quit");
        screen.extend_from_slice(&rest);
        let text = String::from_utf8_lossy(&screen).into_owned();
        let end = text
            .rfind("-- logged out")
            .unwrap_or_else(|| panic!("round {round}: no closing line in {text:?}"));
        let after = &text[end + "-- logged out".len()..];
        assert!(
            !after.contains('>'),
            "round {round}: a prompt follows the closing line: {after:?}"
        );
        drop(stdin);
        let _ = child.wait().await;
    }
}

/// A wrong password typed at the prompt asks again instead of ending the
/// client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_at_the_prompt_asks_again() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("retype").await.unwrap();
    let typed = format!("not the password\n{TEST_PASSWORD}\n");
    let out = run_prompted(&p.server_addr(0), &user, &typed, Duration::from_secs(30)).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("wrong user id or password; try again"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(&format!("password for {user}: ")).count(),
        2,
        "{stderr}"
    );
    assert!(stdout.contains("-- logged in as"), "{stdout}");
    assert!(stdout.contains("-- logged out"), "{stdout}");
}

/// Runs `rtmc client` to its end; (exit success, stderr).
async fn run_to_end(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        client_command(args)
            .args(["--user", "nobody", "--password", "x", "--no-state"])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("client did not exit")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_say_what_to_do() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let (ok, err) = run_to_end(&["--addr", "localhost"]).await;
    assert!(
        !ok && err.contains("port is missing") && err.contains("localhost:7000"),
        "{err}"
    );
    let gateway = p.gateway_url().trim_start_matches("http://").to_owned();
    let (ok, err) = run_to_end(&["--addr", &gateway]).await;
    assert!(
        !ok && err.contains("this is the HTTP gateway port"),
        "{err}"
    );
    let free = rtmc_testkit::docker::free_port();
    let (ok, err) = run_to_end(&["--addr", &format!("127.0.0.1:{free}")]).await;
    assert!(!ok && err.contains("is the server running?"), "{err}");
    let (ok, err) = run_to_end(&["--addr", &p.server_addr(0)]).await;
    assert!(!ok && err.contains("wrong user id or password"), "{err}");
    assert!(
        !err.contains("AuthFailed") && !err.contains("Backtrace"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_flag_the_password_is_read_from_the_prompt() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("prompt").await.unwrap();
    let typed = format!("{TEST_PASSWORD}\n/quit\n");
    let out = run_prompted(&p.server_addr(0), &user, &typed, Duration::from_secs(20)).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("password for {user}: ")),
        "{stderr}"
    );
    assert!(stdout.contains("-- logged in as"), "{stdout}");
    assert!(!stdout.contains(TEST_PASSWORD) && !stderr.contains(TEST_PASSWORD));
}
