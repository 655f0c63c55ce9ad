//! Rooms end to end (protocol v2) on real RabbitMQ, Redis and PostgreSQL,
//! through the server nodes: a room's messages reach its members and only
//! them, on every node, in one gap-free order per room; joining starts
//! right after `joined`'s seq, leaving stops delivery; invites and direct
//! messages reach the other user's sessions on another node; a reconnect
//! resumes every room without gap or duplicate (from Redis, and from
//! PostgreSQL once sync trimmed the room log); a direct room made during
//! its user's login starts once, at the point the login names, and a room
//! left during it delivers nothing after the leave; a message to a direct
//! room named by its id (TCP or the service route) records its memberships
//! before it is published; a v1 client on the
//! same stack is untouched; each bad request gets its error code.

use std::time::Duration;

use rtmc::client::{ChatClient, ClientError, Connection, RoomEvent, SendTarget};
use rtmc::protocol::{BroadcastFrame, ClientCommand, ErrorCode, ServerFrame};
use rtmc::room::{RoomId, RoomKind};
use rtmc_testkit::{raw, Pipeline, PipelineOptions, TEST_PASSWORD};

use crate::support::{assert_refused, collect, eventually, metric};

/// Long enough for a message to cross the pipeline on a loaded machine.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(20);
/// How long a session is watched for a message it must not get.
const SILENCE: Duration = Duration::from_millis(1500);

async fn v2(p: &Pipeline, node: usize, user: &str) -> ChatClient {
    ChatClient::connect_v2(&p.server_addr(node), user, TEST_PASSWORD)
        .await
        .unwrap()
}

/// Sends `n` messages `<prefix>-<i>` to `room`, each acknowledged.
async fn send_n(c: &mut ChatClient, room: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let target = SendTarget::Room(room.to_owned());
        let (acked, on) = c
            .send_to(&target, &format!("{prefix} {i}"), Some(&id))
            .await
            .unwrap();
        assert_eq!((acked.as_str(), on.as_deref()), (id.as_str(), Some(room)));
        ids.push(id);
    }
    ids
}

/// The broadcasts of `room` among `got`.
fn of_room<'a>(got: &'a [BroadcastFrame], room: &str) -> Vec<&'a BroadcastFrame> {
    got.iter()
        .filter(|b| b.room.as_deref() == Some(room))
        .collect()
}

/// Asserts `got` is `room`'s seqs `first..first+n` in order.
fn assert_room_order(got: &[&BroadcastFrame], room: &str, first: u64, n: usize) {
    let seqs: Vec<u64> = got.iter().map(|b| b.seq).collect();
    let expected: Vec<u64> = (first..first + n as u64).collect();
    assert_eq!(seqs, expected, "{room}: gap, duplicate or reorder");
}

/// Asserts nothing arrives on `c` within [`SILENCE`].
async fn assert_silent(c: &mut ChatClient, who: &str) {
    match c.next_broadcast(SILENCE).await {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("{who} must get nothing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_messages_reach_its_members_on_both_nodes_and_nobody_else() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("iso", 4).await.unwrap();
    let (mut alice, mut bob) = (v2(&p, 0, &u[0]).await, v2(&p, 1, &u[1]).await);
    // Outsiders: a v2 session on each node, in another room.
    let (mut carol, mut dave) = (v2(&p, 0, &u[2]).await, v2(&p, 1, &u[3]).await);
    assert_eq!(
        alice.create_room("team", RoomKind::Public).await.unwrap(),
        0
    );
    assert_eq!(bob.join("team", None).await.unwrap(), 0);
    carol.create_room("other", RoomKind::Public).await.unwrap();
    dave.join("other", None).await.unwrap();
    // Two senders on two nodes, interleaved.
    for round in 0..3 {
        send_n(&mut alice, "team", &format!("a{round}"), 1).await;
        send_n(&mut bob, "team", &format!("b{round}"), 1).await;
    }
    send_n(&mut carol, "other", "c", 2).await;
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob)] {
        let got = collect(c, 6, ARRIVAL_LIMIT).await;
        assert_room_order(&of_room(&got, "team"), "team", 1, 6);
        assert_eq!(got.len(), 6, "{who} got another room's message: {got:?}");
        assert_silent(c, who).await;
    }
    for (who, c) in [("carol", &mut carol), ("dave", &mut dave)] {
        let got = collect(c, 2, ARRIVAL_LIMIT).await;
        assert_room_order(&of_room(&got, "other"), "other", 1, 2);
        assert_eq!(got.len(), 2, "{who} got `team`'s messages: {got:?}");
        assert_silent(c, who).await;
    }
    let metrics = rtmc::telemetry::render();
    assert!(metric(&metrics, "rtmc_room_deliveries_total", "") >= 16.0);
    assert!(metric(&metrics, "rtmc_room_joins_total", "") >= 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_exactly_what_follows_joined_and_a_leaver_nothing_after_left() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("join", 3).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    alice.create_room("hall", RoomKind::Public).await.unwrap();
    send_n(&mut alice, "hall", "early", 3).await;
    assert_room_order(
        &of_room(&collect(&mut alice, 3, ARRIVAL_LIMIT).await, "hall"),
        "hall",
        1,
        3,
    );
    // Joined after 3: the next message is 4, nothing before it.
    let mut bob = v2(&p, 0, &u[1]).await;
    assert_eq!(bob.join("hall", None).await.unwrap(), 3);
    // A joiner asking for a replay gets 2..=3 first, then live.
    let mut carol = v2(&p, 0, &u[2]).await;
    assert_eq!(carol.join("hall", Some(1)).await.unwrap(), 3);
    send_n(&mut alice, "hall", "late", 2).await;
    let got = collect(&mut bob, 2, ARRIVAL_LIMIT).await;
    assert_room_order(&of_room(&got, "hall"), "hall", 4, 2);
    let got = collect(&mut carol, 4, ARRIVAL_LIMIT).await;
    assert_room_order(&of_room(&got, "hall"), "hall", 2, 4);
    // Leave: `left` names the point; nothing of the room follows it.
    let at = bob.leave("hall").await.unwrap();
    assert_eq!(at, 5);
    send_n(&mut alice, "hall", "after", 2).await;
    assert_silent(&mut bob, "bob after leaving").await;
    assert!(!bob.rooms().contains_key("hall"));
    // Reading or posting there is refused now.
    let refused = bob
        .send_to(&SendTarget::Room("hall".into()), "x", None)
        .await;
    assert_refused(refused, ErrorCode::NotAMember);
    assert_refused(
        bob.history("hall", None, None, None).await,
        ErrorCode::NotAMember,
    );
    // History pages, forwards and backwards, for a member.
    let (page, more) = alice.history("hall", Some(2), None, Some(3)).await.unwrap();
    assert_eq!(page.iter().map(|b| b.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(more);
    let (page, more) = alice.history("hall", None, None, Some(2)).await.unwrap();
    assert_eq!(page.iter().map(|b| b.seq).collect::<Vec<_>>(), [6, 7]);
    assert!(more);
    assert!(page.iter().all(|b| b.room.as_deref() == Some("hall")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_to_a_private_room_reaches_the_invitees_sessions_on_another_node() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("inv", 2).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    let (mut bob1, mut bob2) = (v2(&p, 1, &u[1]).await, v2(&p, 1, &u[1]).await);
    alice
        .create_room("secret", RoomKind::Private)
        .await
        .unwrap();
    // Not invited yet: neither joining nor reading.
    assert_refused(bob1.join("secret", None).await, ErrorCode::NotAMember);
    assert_refused(bob1.members("secret").await, ErrorCode::NotAMember);
    alice.invite("secret", &u[1]).await.unwrap();
    send_n(&mut alice, "secret", "s", 2).await;
    for (who, bob) in [("bob1", &mut bob1), ("bob2", &mut bob2)] {
        let got = collect(bob, 2, ARRIVAL_LIMIT).await;
        assert_room_order(&of_room(&got, "secret"), "secret", 1, 2);
        let events = bob.take_room_events();
        assert!(
            matches!(events.as_slice(), [RoomEvent::Joined { room, kind: RoomKind::Private, seq: 0 }] if room == "secret"),
            "{who}: {events:?}"
        );
    }
    let members = bob1.members("secret").await.unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(names, [u[0].as_str(), u[1].as_str()]);
    let listed = bob2.list_rooms().await.unwrap();
    assert!(
        listed.iter().any(|r| r.room == "secret" && r.seq == 2),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_reaches_exactly_its_two_users() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("dm", 3).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    let mut bob = v2(&p, 1, &u[1]).await;
    let mut carol = v2(&p, 1, &u[2]).await;
    let dm = RoomId::direct(&u[0], &u[1]).unwrap();
    let target = SendTarget::User(u[1].clone());
    let (_, on) = alice
        .send_to(&target, "hi bob", Some("dm-1"))
        .await
        .unwrap();
    assert_eq!(on.as_deref(), Some(dm.as_str()));
    let back = SendTarget::User(u[0].clone());
    bob.send_to(&back, "hi alice", Some("dm-2")).await.unwrap();
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob)] {
        let got = collect(c, 2, ARRIVAL_LIMIT).await;
        assert_room_order(&of_room(&got, dm.as_str()), dm.as_str(), 1, 2);
        assert_eq!(got[0].message_id, "dm-1", "{who}");
    }
    assert_silent(&mut carol, "carol").await;
    assert_refused(carol.join(dm.as_str(), None).await, ErrorCode::NotAMember);
    let refused = carol
        .send_to(&SendTarget::Room(dm.to_string()), "x", None)
        .await;
    assert_refused(refused, ErrorCode::NotAMember);
    assert_refused(
        alice
            .send_to(&SendTarget::User(u[0].clone()), "me", None)
            .await,
        ErrorCode::InvalidField,
    );
}

/// A direct room whose PostgreSQL row exists while its memberships are not
/// yet in its stream (the other user's first message between its two
/// steps): a message sent to it by its id — over TCP by one of its users,
/// or at the gateway's service route — records them first, so both users'
/// sessions, online on two nodes, receive it live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_direct_room_named_by_id_opens_the_room_first() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("dmid", 3).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    let mut bob = v2(&p, 1, &u[1]).await;
    let mut carol = v2(&p, 1, &u[2]).await;
    let by_tcp = RoomId::direct(&u[0], &u[1]).unwrap();
    let by_service = RoomId::direct(&u[0], &u[2]).unwrap();
    for dm in [&by_tcp, &by_service] {
        rtmc::room_db::ensure_direct(&p.pg, dm).await.unwrap();
    }
    let target = SendTarget::Room(by_tcp.to_string());
    let (_, on) = alice
        .send_to(&target, "by id", Some("dmid-1"))
        .await
        .unwrap();
    assert_eq!(on.as_deref(), Some(by_tcp.as_str()));
    let url = format!("{}/v1/service/rooms/{by_service}/messages", p.gateway_url());
    let body = serde_json::json!({"body": "from a bot", "message_id": "dmid-2", "sender": "bot"});
    let posted = p
        .http
        .post(url)
        .header("x-api-key", p.api_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    for (who, c, dm, id) in [
        ("bob", &mut bob, &by_tcp, "dmid-1"),
        ("carol", &mut carol, &by_service, "dmid-2"),
    ] {
        let got = collect(c, 1, ARRIVAL_LIMIT).await;
        assert_room_order(&of_room(&got, dm.as_str()), dm.as_str(), 1, 1);
        assert_eq!(got[0].message_id, id, "{who}");
    }
    let got = collect(&mut alice, 2, ARRIVAL_LIMIT).await;
    for dm in [&by_tcp, &by_service] {
        assert_room_order(&of_room(&got, dm.as_str()), dm.as_str(), 1, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_every_room_without_gap_or_duplicate() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("res", 2).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    let mut bob = v2(&p, 1, &u[1]).await;
    for room in ["r1", "r2"] {
        alice.create_room(room, RoomKind::Public).await.unwrap();
        bob.join(room, None).await.unwrap();
    }
    send_n(&mut alice, "r1", "x", 3).await;
    send_n(&mut alice, "r2", "y", 3).await;
    let before = collect(&mut bob, 2, ARRIVAL_LIMIT).await;
    // Bob's link goes; messages arrive meanwhile; he comes back on the
    // other node and resumes each room where he was.
    bob.reconnect(Some(&p.server_addr(0))).await.unwrap();
    send_n(&mut alice, "r1", "x2", 2).await;
    send_n(&mut alice, "r2", "y2", 2).await;
    let mut got = before;
    got.extend(collect(&mut bob, 8, ARRIVAL_LIMIT).await);
    assert_room_order(&of_room(&got, "r1"), "r1", 1, 5);
    assert_room_order(&of_room(&got, "r2"), "r2", 1, 5);
    assert_silent(&mut bob, "bob after catching up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_resumes_from_postgresql_after_sync_trimmed_its_log() {
    const N: usize = 30;
    const RETAINED: usize = 3;
    let opts = PipelineOptions::default().configure(|c| {
        c.sync.batch_max = 7;
        c.sync.retention_messages = RETAINED as u64;
    });
    let p = Pipeline::shared(opts).await.unwrap();
    let u = p.add_users("trim", 2).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    alice
        .create_room("archive", RoomKind::Public)
        .await
        .unwrap();
    let mut bob = v2(&p, 0, &u[1]).await;
    bob.join("archive", None).await.unwrap();
    send_n(&mut alice, "archive", "m", N).await;
    let mut redis = p.redis().await.unwrap();
    let keys = rtmc::stream::RedisKeys::new(&p.cfg.redis.key_prefix);
    let room = RoomId::parse("archive").unwrap();
    let shards = p.cfg.rooms.shards;
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let first = rtmc::stream::room_first_seq(&mut redis, &keys, shards, &room)
                .await
                .map_err(|e| e.to_string())?;
            let stored: (i64,) =
                sqlx::query_as("SELECT count(*) FROM room_messages WHERE room_id = 'archive'")
                    .fetch_one(&p.pg)
                    .await
                    .map_err(|e| e.to_string())?;
            // Everything synced and the log trimmed as far as it goes: no
            // trim runs while the replay reads (a trim between its reads
            // is a documented `resume_unavailable`, not what this tests).
            match first {
                Some(f) if f >= (N - RETAINED) as u64 && stored.0 == N as i64 => Ok(()),
                other => Err(format!(
                    "not synced and trimmed yet: first {other:?}, {} stored",
                    stored.0
                )),
            }
        },
    )
    .await;
    // Bob resumes from the start: most of it only PostgreSQL still has.
    let done = bob.resume_room("archive", 0).await.unwrap();
    assert_eq!(done, N as u64);
    let got = collect(&mut bob, N, ARRIVAL_LIMIT).await;
    assert_room_order(&of_room(&got, "archive"), "archive", 1, N);
    assert_eq!(got[0].message_id, "m-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_client_on_the_same_stack_gets_the_lobby_only_as_before() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("v1", 2).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    alice.create_room("club", RoomKind::Public).await.unwrap();
    let (mut old, info) = p.raw_login(0, &u[1]).await.unwrap();
    assert_eq!(info.protocol_version, 1);
    assert!(info.rooms.is_empty());
    send_n(&mut alice, "club", "room", 2).await;
    let lobby = alice.send("to everyone", Some("lobby-1")).await.unwrap();
    // The v1 session's next frame is the lobby message, without `room`,
    // byte for byte a v1 broadcast.
    let raw = tokio::time::timeout(ARRIVAL_LIMIT, old.recv_raw())
        .await
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(
        text.starts_with(r#"{"command":"broadcast","seq":"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#""message_id":"{lobby}""#)) && !text.contains("room"),
        "{text}"
    );
    // v2 sessions get the lobby the same way.
    let got = collect(&mut alice, 3, ARRIVAL_LIMIT).await;
    assert!(
        got.iter()
            .any(|b| b.message_id == lobby && b.room.is_none()),
        "{got:?}"
    );
    // Room commands and room fields are not v1.
    old.send(&ClientCommand::Rooms {}).await.unwrap();
    assert_error(&mut old, ErrorCode::UnknownCommand).await;
    let post = ClientCommand::Send {
        body: "x".into(),
        room: Some("club".into()),
        to: None,
        message_id: None,
        sent_at_us: None,
    };
    old.send(&post).await.unwrap();
    assert_error(&mut old, ErrorCode::InvalidField).await;
}

/// Reads frames until an error; it must have `code`.
async fn assert_error(c: &mut Connection, code: ErrorCode) {
    loop {
        match c.recv_timeout(ARRIVAL_LIMIT).await.unwrap() {
            ServerFrame::Error {
                code: got, message, ..
            } => {
                assert_eq!(got, code, "{message}");
                return;
            }
            ServerFrame::Broadcast(_) => continue,
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_room_request_gets_its_code_and_the_session_goes_on() {
    let opts = PipelineOptions::default().configure(|c| {
        c.rooms.max_rooms_per_user = 2;
        c.rooms.max_members_per_room = 2;
        c.rooms.max_joins_per_sec = 6;
        c.rooms.max_invites_per_sec = 2;
    });
    let p = Pipeline::shared(opts).await.unwrap();
    let u = p.add_users("bad", 4).await.unwrap();
    let mut alice = v2(&p, 0, &u[0]).await;
    assert_refused(alice.join("nowhere", None).await, ErrorCode::UnknownRoom);
    assert_refused(alice.join("Not A Room", None).await, ErrorCode::InvalidRoom);
    assert_refused(alice.join("lobby", None).await, ErrorCode::LobbyIsImplicit);
    alice.create_room("one", RoomKind::Private).await.unwrap();
    assert_refused(
        alice.create_room("one", RoomKind::Public).await,
        ErrorCode::RoomExists,
    );
    alice.create_room("two", RoomKind::Public).await.unwrap();
    assert_refused(
        alice.create_room("three", RoomKind::Public).await,
        ErrorCode::TooManyRooms,
    );
    // Room full: `two` takes two members.
    let mut bob = v2(&p, 0, &u[1]).await;
    bob.join("two", None).await.unwrap();
    let mut carol = v2(&p, 0, &u[2]).await;
    assert_refused(carol.join("two", None).await, ErrorCode::RoomFull);
    // Not a member: posting or inviting in a private room.
    let refused = carol
        .send_to(&SendTarget::Room("one".into()), "x", None)
        .await;
    assert_refused(refused, ErrorCode::NotAMember);
    assert_refused(carol.invite("one", &u[3]).await, ErrorCode::NotAMember);
    // Join flood: the seventh join within a second is refused.
    let mut dave = v2(&p, 0, &u[3]).await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        if let Err(ClientError::Server { code, .. }) = dave.join("nowhere", None).await {
            codes.push(code);
        }
    }
    assert!(codes.contains(&ErrorCode::RateLimited), "{codes:?}");
    // Invite flood: the third invite within a second is refused.
    let mut codes = Vec::new();
    for _ in 0..4 {
        match alice.invite("one", &u[1]).await {
            Ok(()) => codes.push(None),
            Err(ClientError::Server { code, .. }) => codes.push(Some(code)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(codes[..2], [None, None]);
    assert!(codes.contains(&Some(ErrorCode::RateLimited)), "{codes:?}");
    // Every refusal left the session usable, and was counted.
    alice.heartbeat().await.unwrap();
    let metrics = rtmc::telemetry::render();
    for code in [
        "unknown_room",
        "invalid_room",
        "lobby_is_implicit",
        "room_exists",
        "too_many_rooms",
        "room_full",
        "not_a_member",
        "rate_limited",
    ] {
        let label = format!(r#"code="{code}""#);
        assert!(
            metric(&metrics, "rtmc_rejected_total", &label) >= 1.0,
            "{code} not counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_asking_for_an_unknown_protocol_is_refused_and_may_try_again() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("proto").await.unwrap();
    let mut c = p.raw_connection(0).await.unwrap();
    c.send(&login_as(&user, 3)).await.unwrap();
    assert_error(&mut c, ErrorCode::UnsupportedProtocol).await;
    c.send(&login_as(&user, 2)).await.unwrap();
    match c.recv_timeout(raw::LOGIN_REPLY_TIMEOUT).await.unwrap() {
        ServerFrame::LoginOk {
            protocol_version,
            rooms,
            ..
        } => {
            assert_eq!(protocol_version, 2);
            assert_eq!(rooms, Some(Vec::new()));
        }
        other => panic!("expected login_ok, got {other:?}"),
    }
}

/// A receiving login of `user` asking for `protocol`.
fn login_as(user: &str, protocol: u32) -> ClientCommand {
    ClientCommand::Login {
        user_id: user.to_owned(),
        password: TEST_PASSWORD.into(),
        resume_from: None,
        subscribe: true,
        protocol: Some(protocol),
        resume_rooms: None,
    }
}

/// Every frame `c` receives until `quiet` passes without one.
async fn frames_until_quiet(c: &mut Connection, quiet: Duration) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Ok(f) = c.recv_timeout(quiet).await {
        frames.push(f);
        assert!(frames.len() < 10_000, "an endless stream of frames");
    }
    frames
}

/// The session that leaves gets `left` once per leave, whether the node's
/// shard follower has already handled the leave entry when the command's
/// own answer is due (it tells every session receiving the room) or not;
/// and `joined` once per join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_session_is_told_left_once_per_leave() {
    const CYCLES: usize = 12;
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("once", 2).await.unwrap();
    let mut owner = v2(&p, 0, &u[0]).await;
    owner.create_room("porch", RoomKind::Public).await.unwrap();
    let mut c = p.raw_connection(0).await.unwrap();
    c.send(&ClientCommand::Login {
        user_id: u[1].clone(),
        password: TEST_PASSWORD.into(),
        resume_from: None,
        subscribe: true,
        protocol: Some(2),
        resume_rooms: None,
    })
    .await
    .unwrap();
    let room = || "porch".to_owned();
    for _ in 0..CYCLES {
        let join = ClientCommand::Join {
            room: room(),
            after_seq: None,
        };
        c.send(&join).await.unwrap();
        c.send(&ClientCommand::Leave { room: room() })
            .await
            .unwrap();
    }
    let frames = frames_until_quiet(&mut c, SILENCE).await;
    let count = |want: fn(&ServerFrame) -> bool| frames.iter().filter(|f| want(f)).count();
    let lefts = count(|f| matches!(f, ServerFrame::Left { .. }));
    let joins = count(|f| matches!(f, ServerFrame::Joined { .. }));
    let errors = count(|f| matches!(f, ServerFrame::Error { .. }));
    assert_eq!(
        (joins, lefts, errors),
        (CYCLES, CYCLES, 0),
        "one joined and one left per cycle, no refusal: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_for_the_last_places_of_a_room_fill_it_exactly() {
    let opts = PipelineOptions::default().configure(|c| {
        c.rooms.max_members_per_room = 3;
    });
    let p = Pipeline::shared(opts).await.unwrap();
    let u = p.add_users("race", 9).await.unwrap();
    let mut owner = v2(&p, 0, &u[0]).await;
    owner
        .create_room("last-seats", RoomKind::Public)
        .await
        .unwrap();
    let mut joiners = Vec::new();
    for user in &u[1..] {
        joiners.push(v2(&p, 0, user).await);
    }
    // Eight joins at once for the two places left.
    let tasks: Vec<_> = joiners
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.join("last-seats", None).await }))
        .collect();
    let (mut joined, mut full) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => joined += 1,
            Err(ClientError::Server {
                code: ErrorCode::RoomFull,
                ..
            }) => full += 1,
            Err(e) => panic!("a join failed otherwise: {e}"),
        }
    }
    assert_eq!((joined, full), (2, 6), "joined, refused as full");
    let members = owner.members("last-seats").await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creators_other_session_is_told_it_owns_the_new_room() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let user = p.add_user("owner2").await.unwrap();
    let mut creator = v2(&p, 0, &user).await;
    // The other session, on the other node, sees the room only through
    // its node's shard follower.
    let mut other = p.raw_connection(1).await.unwrap();
    other.send(&login_as(&user, 2)).await.unwrap();
    match other.recv_timeout(raw::LOGIN_REPLY_TIMEOUT).await.unwrap() {
        ServerFrame::LoginOk { .. } => {}
        f => panic!("expected login_ok, got {f:?}"),
    }
    creator
        .create_room("owned", RoomKind::Private)
        .await
        .unwrap();
    let joined = frames_until_quiet(&mut other, SILENCE)
        .await
        .into_iter()
        .find_map(|f| match f {
            ServerFrame::Joined { room, role, .. } if room == "owned" => Some(role),
            _ => None,
        });
    assert_eq!(joined, Some(rtmc::room::RoomRole::Owner));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_list_tells_each_members_presence() {
    use rtmc::protocol::UserStatus;
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("presence", 3).await.unwrap();
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    let mut a = v2(&p, 0, alice).await;
    a.create_room("lounge", RoomKind::Public).await.unwrap();
    a.invite("lounge", bob).await.unwrap();
    let mut c = v2(&p, 0, carol).await;
    c.join("lounge", None).await.unwrap();
    let away = ClientCommand::Status {
        status: UserStatus::Away,
    };
    c.request_status(away).await.unwrap();
    let statuses = |list: Vec<rtmc::protocol::MemberSummary>| {
        list.into_iter()
            .map(|m| (m.user_id, m.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        statuses(a.members("lounge").await.unwrap()),
        [
            (alice.clone(), Some(UserStatus::Online)),
            (bob.clone(), Some(UserStatus::Offline)),
            (carol.clone(), Some(UserStatus::Away)),
        ],
        "connected, never connected, away"
    );
    c.logout().await.unwrap();
    // Logout answers before the presence write lands: poll.
    eventually(ARRIVAL_LIMIT, Duration::from_millis(100), async || {
        let list = statuses(a.members("lounge").await.unwrap());
        match &list[2].1 {
            Some(UserStatus::Offline) => Ok(()),
            other => Err(format!("carol is {other:?} after logging out")),
        }
    })
    .await;
}

/// Heartbeats `c` (reading what arrives meanwhile) until `want` of its
/// presence events have come, or `limit` passed; returns them all.
async fn presence_events(
    c: &mut ChatClient,
    want: usize,
    limit: Duration,
) -> Vec<(String, String, String)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while seen.len() < want && tokio::time::Instant::now() < deadline {
        c.heartbeat().await.unwrap();
        for e in c.take_room_events() {
            if let RoomEvent::Presence {
                room,
                user_id,
                status,
            } = e
            {
                seen.push((room, user_id, status.as_str().to_owned()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_watching_presence_hears_each_change_of_its_rooms_members() {
    use rtmc::protocol::UserStatus;
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let u = p.add_users("watch", 4).await.unwrap();
    let (alice, bob, carol, dave) = (&u[0], &u[1], &u[2], &u[3]);
    let mut a = v2(&p, 0, alice).await;
    a.create_room("porch", RoomKind::Private).await.unwrap();
    a.create_room("yard", RoomKind::Public).await.unwrap();
    for room in ["porch", "yard"] {
        a.invite(room, bob).await.unwrap();
    }
    let mut c = v2(&p, 0, carol).await;
    c.join("yard", None).await.unwrap();
    assert!(a.watch_presence(true).await.unwrap());
    // Bob, on the other node, comes online, goes away, logs out: one
    // event per change and per room the two share. Dave shares no room.
    let mut b = v2(&p, 1, bob).await;
    let mut d = v2(&p, 1, dave).await;
    let away = ClientCommand::Status {
        status: UserStatus::Away,
    };
    b.request_status(away.clone()).await.unwrap();
    d.request_status(away).await.unwrap();
    b.logout().await.unwrap();
    let mut got = presence_events(&mut a, 6, ARRIVAL_LIMIT).await;
    got.sort();
    let want: Vec<(String, String, String)> = ["porch", "yard"]
        .iter()
        .flat_map(|room| {
            ["away", "offline", "online"]
                .iter()
                .map(move |s| (room.to_string(), bob.clone(), s.to_string()))
        })
        .collect();
    assert_eq!(got, want, "alice hears bob in both rooms, never dave");
    // Carol did not ask: nothing. Alice stops asking: nothing more.
    assert_eq!(
        presence_events(&mut c, 1, SILENCE).await.len(),
        0,
        "carol never asked"
    );
    assert!(!a.watch_presence(false).await.unwrap());
    let _b = v2(&p, 1, bob).await;
    let after = presence_events(&mut a, 1, SILENCE).await;
    assert!(after.is_empty(), "after watch_presence off: {after:?}");
}

/// Makes `user` the owner of `n` public rooms whose ids sort before every
/// direct room's (`c…` < `dm:…`) and every `z…` room's, over connections of
/// 10 rooms each (under the per-connection join burst).
async fn rooms_sorting_first(p: &Pipeline, user: &str, n: usize) {
    for chunk in 0..n.div_ceil(10) {
        let mut c = v2(p, 0, user).await;
        for i in chunk * 10..(n.min((chunk + 1) * 10)) {
            let room = format!("c{i}-{user}");
            c.create_room(&room, RoomKind::Public).await.unwrap();
        }
    }
}

/// What one login of `user` read until quiet says of the direct rooms with
/// `senders`, each of which got `per_sender` messages (seqs 1..=per_sender):
/// a room `login_ok` lists at head H brings no `joined` and exactly the
/// seqs above H, in order; a room it does not list brings one `joined` at
/// P and exactly the seqs above P. Returns how many rooms were listed.
fn assert_login_starts_each_direct_room_once(
    frames: &[ServerFrame],
    user: &str,
    senders: &[String],
    per_sender: u64,
) -> usize {
    let Some(ServerFrame::LoginOk {
        rooms: Some(listed),
        ..
    }) = frames.first()
    else {
        panic!("login_ok with rooms comes first: {:?}", frames.first());
    };
    let mut listed_count = 0;
    for s in senders {
        let dm = RoomId::direct(user, s).unwrap();
        let dm = dm.as_str();
        let joined: Vec<u64> = frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Joined { room, seq, .. } if room == dm => Some(*seq),
                _ => None,
            })
            .collect();
        let seqs: Vec<u64> = frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Broadcast(b) if b.room.as_deref() == Some(dm) => Some(b.seq),
                _ => None,
            })
            .collect();
        let start = match listed.iter().find(|r| r.room == dm) {
            Some(r) => {
                listed_count += 1;
                assert!(
                    joined.is_empty(),
                    "{dm}: listed at {} by login_ok, yet joined at {joined:?}",
                    r.seq
                );
                r.seq
            }
            None => {
                assert_eq!(joined.len(), 1, "{dm}: not listed, so one joined");
                joined[0]
            }
        };
        let owed: Vec<u64> = (start + 1..=per_sender).collect();
        assert_eq!(
            seqs, owed,
            "{dm}: exactly what follows {start}, once, in order"
        );
    }
    listed_count
}

/// A direct room made while its user logs in: the node's shard follower
/// may subscribe the new session from the room's membership entry before
/// the login reads the room's head for `login_ok`. Whichever comes first,
/// the session gets each of the room's messages once, and only those after
/// the point it was told (the head `login_ok` names, or `joined`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_room_made_during_a_login_starts_once_at_the_point_the_login_names() {
    const ROUNDS: usize = 12;
    const SENDERS: usize = 5;
    const PER_SENDER: u64 = 3;
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("dmlogin", 1 + ROUNDS * SENDERS).await.unwrap();
    let bob = u[0].clone();
    // The login reads these rooms' heads before the direct rooms': the
    // follower has that long to come first.
    rooms_sorting_first(&p, &bob, 40).await;
    let mut listed = 0;
    for round in 0..ROUNDS {
        let senders = &u[1 + round * SENDERS..1 + (round + 1) * SENDERS];
        let mut clients = Vec::new();
        for s in senders {
            clients.push(v2(&p, 0, s).await);
        }
        let mut c = p.raw_connection(0).await.unwrap();
        c.send(&login_as(&bob, 2)).await.unwrap();
        let offset_ms = (round % 4) as u64;
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let to = SendTarget::User(bob.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(offset_ms + 3 * i as u64)).await;
                    for k in 0..PER_SENDER {
                        s.send_to(&to, &format!("hi {k}"), None).await.unwrap();
                    }
                    s
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        let frames = frames_until_quiet(&mut c, SILENCE).await;
        listed += assert_login_starts_each_direct_room_once(&frames, &bob, senders, PER_SENDER);
    }
    // Not asserted (timing decides): how many rooms the login listed.
    eprintln!(
        "direct rooms listed by login_ok: {listed} of {}",
        ROUNDS * SENDERS
    );
}

/// A room its user leaves on one session while another session logs in:
/// the login may list the room (PostgreSQL still had the membership) and
/// reach it only after the node's follower handled the leave. Whichever
/// comes first, the new session gets nothing of the room after the leave
/// point, and a `left` if `login_ok` listed the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_left_during_another_sessions_login_delivers_nothing_after_the_leave() {
    const ROUNDS: usize = 12;
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let u = p.add_users("leavelogin", 2).await.unwrap();
    let (owner, dana) = (&u[0], &u[1]);
    rooms_sorting_first(&p, dana, 40).await;
    let mut host = v2(&p, 0, owner).await;
    let mut first = v2(&p, 0, dana).await;
    let mut listed = 0;
    for round in 0..ROUNDS {
        let room = format!("z{round}-{dana}");
        host.create_room(&room, RoomKind::Public).await.unwrap();
        first.join(&room, None).await.unwrap();
        send_n(&mut host, &room, &format!("before{round}"), 2).await;
        let mut c = p.raw_connection(0).await.unwrap();
        c.send(&login_as(dana, 2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis((round % 6) as u64 * 2)).await;
        let at = first.leave(&room).await.unwrap();
        send_n(&mut host, &room, &format!("after{round}"), 2).await;
        let frames = frames_until_quiet(&mut c, SILENCE).await;
        let Some(ServerFrame::LoginOk {
            rooms: Some(rooms), ..
        }) = frames.first()
        else {
            panic!("login_ok with rooms comes first: {:?}", frames.first());
        };
        let seqs: Vec<u64> = frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Broadcast(b) if b.room.as_deref() == Some(room.as_str()) => {
                    Some(b.seq)
                }
                _ => None,
            })
            .collect();
        let lefts: Vec<u64> = frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Left { room: r, seq } if *r == room => Some(*seq),
                _ => None,
            })
            .collect();
        assert!(
            seqs.iter().all(|&s| s <= at),
            "{room}: delivered after the leave point {at}: {seqs:?}"
        );
        match rooms.iter().find(|r| r.room == room) {
            Some(r) => {
                listed += 1;
                assert_eq!(lefts, [at], "{room}: listed at {}, so left follows", r.seq);
            }
            None => assert!(
                seqs.is_empty() && lefts.is_empty(),
                "{room}: not listed, so nothing of it: {seqs:?} {lefts:?}"
            ),
        }
    }
    // Not asserted (timing decides): how often the login listed the room.
    eprintln!("rooms listed by login_ok: {listed} of {ROUNDS}");
}
