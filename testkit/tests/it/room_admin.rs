//! `rtmc room …`, the operators' room commands, run as the binary against a
//! real stack: a room created and a member added from the command line is
//! followed at once by that member's live v2 session (it gets `joined`,
//! then the room's messages), removal stops delivery, the listings show
//! what PostgreSQL holds, and each refused change exits non-zero with a
//! reason that shows hostile bytes as escapes.

use std::time::Duration;

use rtmc::client::{ChatClient, ClientError, RoomEvent, SendTarget};
use rtmc_testkit::process::{rtmc_binary, run_command};
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};

const ARRIVAL_LIMIT: Duration = Duration::from_secs(20);

/// Runs `rtmc ARGS…` with the pipeline's configuration: (success, stdout, stderr).
async fn rtmc(p: &Pipeline, args: &[&str]) -> (bool, String, String) {
    let binary = rtmc_binary().expect("the rtmc binary (cargo build -p rtmc-system --bins)");
    let out = run_command(&binary, &p.cfg, args).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn expect_ok(p: &Pipeline, args: &[&str]) -> String {
    let (ok, out, err) = rtmc(p, args).await;
    assert!(ok, "rtmc {args:?} failed: {err}");
    out
}

async fn expect_refused(p: &Pipeline, args: &[&str], reason: &str) -> String {
    let (ok, out, err) = rtmc(p, args).await;
    assert!(!ok, "rtmc {args:?} must fail, printed {out}");
    assert!(
        err.contains(reason),
        "rtmc {args:?}: {err:?} must say {reason:?}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_live_member_who_then_receives_the_room() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("adm", 2).await.unwrap();
    let (owner, member) = (&u[0], &u[1]);
    let out = expect_ok(
        &p,
        &[
            "room", "create", "ops-desk", "--kind", "private", "--owner", owner,
        ],
    )
    .await;
    assert!(out.contains("room ops-desk created (private)"), "{out}");
    let mut alice = ChatClient::connect_v2(&p.server_addr(0), owner, TEST_PASSWORD)
        .await
        .unwrap();
    let mut bob = ChatClient::connect_v2(&p.server_addr(0), member, TEST_PASSWORD)
        .await
        .unwrap();
    expect_ok(&p, &["room", "add", "ops-desk", member]).await;
    let room = SendTarget::Room("ops-desk".into());
    alice
        .send_to(&room, "hello desk", Some("adm-1"))
        .await
        .unwrap();
    let got = bob.next_broadcast(ARRIVAL_LIMIT).await.unwrap();
    assert_eq!(
        (got.room.as_deref(), got.body.as_str()),
        (Some("ops-desk"), "hello desk")
    );
    assert!(
        bob.take_room_events()
            .iter()
            .any(|e| matches!(e, RoomEvent::Joined { room, .. } if room == "ops-desk")),
        "the added member's live session is told it joined"
    );

    let members = expect_ok(&p, &["room", "members", "ops-desk"]).await;
    assert_eq!(
        members,
        format!("{owner}\towner\tonline\n{member}\tmember\tonline\n")
    );
    let listed = expect_ok(&p, &["room", "list"]).await;
    assert!(listed.contains("ops-desk\tprivate\t2 members"), "{listed}");
    let mine = expect_ok(&p, &["room", "list", "--user", member]).await;
    assert_eq!(mine, "ops-desk\tprivate\tmember\n");

    expect_ok(&p, &["room", "remove", "ops-desk", member]).await;
    // Wait until bob's session has seen its `left`, then nothing more comes.
    let deadline = tokio::time::Instant::now() + ARRIVAL_LIMIT;
    while !bob
        .take_room_events()
        .iter()
        .any(|e| matches!(e, RoomEvent::Left { room } if room == "ops-desk"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `left` for the removed member"
        );
        let _ = bob.next_broadcast(Duration::from_millis(200)).await;
    }
    alice
        .send_to(&room, "after removal", Some("adm-2"))
        .await
        .unwrap();
    match bob.next_broadcast(Duration::from_millis(1500)).await {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("a removed member must get nothing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_room_changes_exit_non_zero_with_their_reason() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("admbad", 1).await.unwrap();
    let owner = &u[0];
    expect_refused(
        &p,
        &["room", "create", "Bad Room", "--owner", owner],
        "Bad Room",
    )
    .await;
    expect_refused(&p, &["room", "create", "lobby", "--owner", owner], "lobby").await;
    expect_refused(
        &p,
        &["room", "create", "x", "--owner", "nobody-here"],
        "no user",
    )
    .await;
    expect_refused(
        &p,
        &["room", "create", "x", "--kind", "direct", "--owner", owner],
        "direct",
    )
    .await;
    expect_ok(&p, &["room", "create", "twice", "--owner", owner]).await;
    expect_refused(
        &p,
        &["room", "create", "twice", "--owner", owner],
        "exists already",
    )
    .await;
    expect_refused(&p, &["room", "add", "no-such-room", owner], "no room").await;
    expect_refused(
        &p,
        &["room", "add", "twice", owner],
        "member of twice already",
    )
    .await;
    expect_refused(
        &p,
        &["room", "remove", "twice", "nobody-here"],
        "not a member",
    )
    .await;
    // A hostile user id reaches the operator's terminal as escapes only.
    let err = expect_refused(&p, &["room", "add", "twice", "evil\u{1b}[2J"], "no user").await;
    assert!(!err.contains('\u{1b}'), "raw escape in {err:?}");
    let listed = expect_ok(&p, &["room", "list"]).await;
    assert_eq!(
        listed, "twice\tpublic\t1 members\n",
        "refused changes stored nothing"
    );
}
