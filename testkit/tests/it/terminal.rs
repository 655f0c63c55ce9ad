//! `rtmc client`, the interactive terminal client, driven through its
//! stdin/stdout: typed lines are sent, broadcasts are printed, end of input
//! logs out.

use std::process::Stdio;
use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_sends_typed_lines_and_prints_broadcasts() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("term").await.unwrap();
    let binary = rtmc_testkit::process::rtmc_binary().unwrap();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "client",
            "--addr",
            &p.server_addr(0),
            "--user",
            &user,
            "--password",
            TEST_PASSWORD,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await; // logged in
    stdin.write_all(b"typed in the terminal\n").await.unwrap();
    let (s, _) = p.post_message("svc", "from http", None).await.unwrap();
    assert_eq!(s, 202);
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 2 {
            let line = stdout
                .next_line()
                .await
                .unwrap()
                .expect("client exited early");
            seen.push(line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("broadcasts not printed; got {seen:?}"));
    assert!(
        seen.iter()
            .any(|l| l.ends_with(&format!("{user}: typed in the terminal"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.ends_with("svc: from http")),
        "{seen:?}"
    );
    drop(stdin); // end of input: logout and exit
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
