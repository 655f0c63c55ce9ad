//! Rooms, storage half, on real Redis, RabbitMQ and PostgreSQL: per-room
//! gap-free sequences, dedupe within a shard, exact membership points, a
//! direct room's memberships recorded once before its first message,
//! reading every shard stream at once; the pipeline from a shard queue to
//! the room logs (lobby unchanged, malformed room messages dead-lettered);
//! the sync worker's copy into `room_messages` and its trimming; replay and
//! history pages across the Redis/PostgreSQL boundary.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use rtmc::broker::{shard_queue, PublishedMessage, Publisher};
use rtmc::room::{shard_of, RoomId, RoomKind};
use rtmc::stream::{self, Appended, MemberChange, RedisKeys, RoomItem, ShardEvent};
use rtmc_testkit::{Pipeline, PipelineOptions};

/// A pipeline with nothing running: only its namespace on the services.
async fn bare(shards: u32) -> Pipeline {
    let opts = PipelineOptions {
        servers: 0,
        gateway: false,
        consumer: false,
        sync: false,
        ..PipelineOptions::default()
    }
    .configure(move |c| c.rooms.shards = shards);
    Pipeline::shared(opts).await.unwrap()
}

fn keys(p: &Pipeline) -> RedisKeys {
    RedisKeys::new(&p.cfg.redis.key_prefix)
}

async fn managed(p: &Pipeline) -> ConnectionManager {
    stream::managed_connection(p.cfg.redis.url.expose_secret())
        .await
        .unwrap()
}

fn message(id: &str, room: Option<&str>) -> PublishedMessage {
    PublishedMessage {
        message_id: id.into(),
        from: "alice".into(),
        body: format!("body of {id}"),
        received_at_us: 11,
        sent_at_us: 10,
        room: room.map(str::to_owned),
    }
}

fn item(id: &str, room: &str) -> RoomItem {
    RoomItem {
        message_id: id.into(),
        room: room.into(),
        tail: message(id, Some(room)).broadcast_tail(),
    }
}

fn room(id: &str) -> RoomId {
    RoomId::parse(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_room_has_its_own_gap_free_sequence() {
    let p = bare(1).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let items: Vec<RoomItem> = (0..6)
        .map(|i| item(&format!("m{i}"), if i % 3 == 0 { "b" } else { "a" }))
        .collect();
    let got = stream::append_room_batch(&mut redis, &keys, 0, 60, &items)
        .await
        .unwrap();
    use Appended::New;
    assert_eq!(got, [New(1), New(1), New(2), New(2), New(3), New(4)]);
    assert_eq!(
        stream::room_head(&mut redis, &keys, 1, &room("a"))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        stream::room_head(&mut redis, &keys, 1, &room("b"))
            .await
            .unwrap(),
        2
    );
    let log = stream::room_range_after(&mut redis, &keys, 1, &room("a"), 0, 100, 100)
        .await
        .unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let first: serde_json::Value = serde_json::from_slice(&log[0].payload).unwrap();
    assert_eq!(first["command"], "broadcast");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["room"], "a");
    assert_eq!(first["message_id"], "m1");
    // The shard stream holds all six, in append order, with their rooms.
    let shard = stream::shard_range_after(&mut redis, &keys, 0, 0, 100)
        .await
        .unwrap();
    let order: Vec<(u64, String, u64)> = shard
        .iter()
        .map(|e| match &e.event {
            ShardEvent::Message { room, seq, .. } => (e.shard_seq, room.clone(), *seq),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<(u64, String, u64)> =
        [("b", 1), ("a", 1), ("a", 2), ("b", 2), ("a", 3), ("a", 4)]
            .iter()
            .enumerate()
            .map(|(i, (r, s))| (i as u64 + 1, r.to_string(), *s))
            .collect();
    assert_eq!(order, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_is_deduplicated_within_its_shard() {
    let p = bare(1).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let first = stream::append_room_batch(&mut redis, &keys, 0, 60, &[item("x", "a")])
        .await
        .unwrap();
    let again = [item("y", "a"), item("x", "a"), item("y", "a")];
    let second = stream::append_room_batch(&mut redis, &keys, 0, 60, &again)
        .await
        .unwrap();
    assert_eq!(first, [Appended::New(1)]);
    assert_eq!(
        second,
        [
            Appended::New(2),
            Appended::Duplicate(1),
            Appended::Duplicate(2)
        ]
    );
    assert_eq!(
        stream::room_head(&mut redis, &keys, 1, &room("a"))
            .await
            .unwrap(),
        2,
        "a duplicate takes no sequence number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_event_names_the_exact_point_between_appends() {
    let p = bare(1).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let general = room("general");
    let s0 = stream::record_membership(
        &mut redis,
        &keys,
        1,
        &general,
        "bob",
        MemberChange::Joined,
        RoomKind::Public,
    )
    .await
    .unwrap();
    assert_eq!(s0, 0, "nothing was posted yet");
    let three: Vec<RoomItem> = (0..3).map(|i| item(&format!("g{i}"), "general")).collect();
    stream::append_room_batch(&mut redis, &keys, 0, 60, &three)
        .await
        .unwrap();
    let s = stream::record_membership(
        &mut redis,
        &keys,
        1,
        &general,
        "carol",
        MemberChange::Joined,
        RoomKind::Public,
    )
    .await
    .unwrap();
    assert_eq!(s, 3);
    stream::append_room_batch(&mut redis, &keys, 0, 60, &[item("g3", "general")])
        .await
        .unwrap();
    let left = stream::record_membership(
        &mut redis,
        &keys,
        1,
        &general,
        "bob",
        MemberChange::Left,
        RoomKind::Public,
    )
    .await
    .unwrap();
    assert_eq!(left, 4);
    // In the shard stream, every message after carol's join has seq > 3,
    // every one before it seq <= 3.
    let entries = stream::shard_range_after(&mut redis, &keys, 0, 0, 100)
        .await
        .unwrap();
    let mut seen_join = false;
    for e in &entries {
        match &e.event {
            ShardEvent::Member {
                user,
                seq,
                change,
                kind,
                ..
            } if user == "carol" => {
                assert_eq!(
                    (*seq, *change, *kind),
                    (3, MemberChange::Joined, RoomKind::Public)
                );
                seen_join = true;
            }
            ShardEvent::Message { seq, .. } => assert_eq!(*seq > 3, seen_join, "{e:?}"),
            ShardEvent::Member { .. } => {}
        }
    }
    assert!(seen_join);
    assert_eq!(entries.len(), 7, "3 membership events and 4 messages");
    assert_eq!(
        stream::room_range_after(&mut redis, &keys, 1, &general, 0, 100, 100)
            .await
            .unwrap()
            .len(),
        4,
        "membership events stay out of the room log"
    );
}

/// A direct room's two memberships are recorded once, by whichever of its
/// users' first messages gets there first, and before any of its messages:
/// the other user's first message, sent while the creator was still
/// between PostgreSQL and Redis, records them itself, and the creator then
/// adds none (recorded after that message, a membership would start at 1
/// and its user would never receive seq 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_rooms_memberships_are_recorded_once_before_its_first_message() {
    let p = bare(1).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let dm = room("dm:ann:ben");
    assert_eq!(
        stream::open_direct(&mut redis, &keys, 1, &dm)
            .await
            .unwrap(),
        Some(0),
        "ben's first message records both memberships"
    );
    stream::append_room_batch(&mut redis, &keys, 0, 60, &[item("d0", dm.as_str())])
        .await
        .unwrap();
    assert_eq!(
        stream::open_direct(&mut redis, &keys, 1, &dm)
            .await
            .unwrap(),
        None,
        "ann's, the creator's, finds them recorded"
    );
    let entries = stream::shard_range_after(&mut redis, &keys, 0, 0, 1000)
        .await
        .unwrap();
    let of_dm: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            ShardEvent::Member {
                room,
                user,
                seq,
                change,
                kind,
                ..
            } if room == dm.as_str() => Some(format!("{user} {change:?} {kind:?} at {seq}")),
            ShardEvent::Message { room, seq, .. } if room == dm.as_str() => {
                Some(format!("message {seq}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        of_dm,
        [
            "ann Joined Direct at 0",
            "ben Joined Direct at 0",
            "message 1"
        ]
    );
    assert!(
        stream::open_direct(&mut redis, &keys, 1, &room("general"))
            .await
            .is_err(),
        "only a direct room has two users to record"
    );
}

/// Room ids that fall in distinct shards of `shards`, one per shard.
fn one_room_per_shard(shards: u32) -> Vec<String> {
    let mut rooms: Vec<Option<String>> = vec![None; shards as usize];
    for i in 0.. {
        let r = format!("room-{i}");
        let k = shard_of(&r, shards) as usize;
        if rooms[k].is_none() {
            rooms[k] = Some(r);
        }
        if rooms.iter().all(Option::is_some) {
            break;
        }
    }
    rooms.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_follows_every_shard_stream() {
    let p = bare(4).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let rooms = one_room_per_shard(4);
    for (k, r) in rooms.iter().enumerate() {
        for i in 0..=k {
            stream::append_room_batch(
                &mut redis,
                &keys,
                k as u32,
                60,
                &[item(&format!("{r}-{i}"), r)],
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(
        stream::shard_heads(&mut redis, &keys, 4).await.unwrap(),
        [1, 2, 3, 4]
    );
    let all = stream::read_shards(&mut redis, &keys, &[0, 0, 0, 0], 0, 100)
        .await
        .unwrap();
    let per_shard: Vec<(u32, u64)> = all.iter().map(|e| (e.shard, e.shard_seq)).collect();
    assert_eq!(
        per_shard,
        [
            (0, 1),
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (2, 3),
            (3, 1),
            (3, 2),
            (3, 3),
            (3, 4)
        ]
    );
    for e in &all {
        let ShardEvent::Message { room, .. } = &e.event else {
            panic!("{e:?}")
        };
        assert_eq!(room, &rooms[e.shard as usize]);
    }
    // From the heads, a blocking read returns as soon as any shard has news.
    let blocking_url = p.cfg.redis.url.expose_secret().to_owned();
    let reader = tokio::spawn({
        let keys = keys.clone();
        async move {
            let mut conn = stream::blocking_connection(&blocking_url).await.unwrap();
            let started = Instant::now();
            let got = stream::read_shards(&mut conn, &keys, &[1, 2, 3, 4], 10_000, 100)
                .await
                .unwrap();
            (got, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream::append_room_batch(&mut redis, &keys, 2, 60, &[item("late", &rooms[2])])
        .await
        .unwrap();
    let (got, waited) = reader.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].shard, got[0].shard_seq), (2, 4));
    assert!(waited < Duration::from_secs(5), "blocked {waited:?}");
}

/// Waits until `room`'s head reaches `n`.
async fn await_room_head(p: &Pipeline, room: &RoomId, n: u64) {
    let (keys, mut redis) = (keys(p), p.redis().await.unwrap());
    let started = Instant::now();
    loop {
        let head = stream::room_head(&mut redis, &keys, p.cfg.rooms.shards, room)
            .await
            .unwrap();
        if head >= n {
            assert_eq!(head, n, "more messages than published in {room}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{room} stuck at {head} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn room_messages_reach_their_room_logs(shards: u32) {
    let opts = PipelineOptions {
        servers: 0,
        gateway: false,
        sync: false,
        ..PipelineOptions::default()
    }
    .configure(move |c| c.rooms.shards = shards);
    let p = Pipeline::shared(opts).await.unwrap();
    let publisher = Publisher::for_config(&p.cfg);
    let rooms = ["alpha", "beta", "dm:alice:bob"];
    const PER_ROOM: u64 = 12;
    for i in 0..PER_ROOM {
        for r in rooms {
            let m = message(&format!("{r}-{i}"), Some(r));
            publisher.publish(&m).await.unwrap();
        }
    }
    publisher.publish(&message("lobby-1", None)).await.unwrap();
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    for r in rooms {
        let r = room(r);
        await_room_head(&p, &r, PER_ROOM).await;
        let log = stream::room_range_after(&mut redis, &keys, shards, &r, 0, PER_ROOM, 100)
            .await
            .unwrap();
        for (i, e) in log.iter().enumerate() {
            let b: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(b["room"], r.as_str());
            assert_eq!(b["message_id"], format!("{r}-{i}"), "order within the room");
        }
    }
    // The lobby's message took the global stream, byte for byte as in v1.
    let started = Instant::now();
    let lobby = loop {
        let got = stream::range_after(&mut redis, &keys, 0, 10, 10)
            .await
            .unwrap();
        if !got.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lobby.len(), 1);
    let expected = r#"{"command":"broadcast","seq":1,"message_id":"lobby-1","from":"alice","body":"body of lobby-1","received_at_us":11,"sent_at_us":10}"#;
    assert_eq!(std::str::from_utf8(&lobby[0].payload).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_reach_their_room_logs_on_one_shard() {
    room_messages_reach_their_room_logs(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_reach_their_room_logs_on_four_shards() {
    room_messages_reach_their_room_logs(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_room_message_is_dead_lettered_with_its_reason() {
    let opts = PipelineOptions {
        servers: 0,
        gateway: false,
        sync: false,
        ..PipelineOptions::default()
    };
    let p = Pipeline::shared(opts).await.unwrap();
    let publisher = Publisher::for_config(&p.cfg);
    let bad_room =
        br#"{"message_id":"b1","from":"alice","body":"x","sent_at_us":1,"room":"Not A Room"}"#;
    let lobby_named =
        br#"{"message_id":"b2","from":"alice","body":"x","sent_at_us":1,"room":"lobby"}"#;
    let not_a_string = br#"{"message_id":"b3","from":"alice","body":"x","sent_at_us":1,"room":7}"#;
    let shard0 = shard_queue(&p.cfg.rabbitmq, 0);
    publisher
        .publish_to(&shard0, bad_room, Default::default())
        .await
        .unwrap();
    publisher
        .publish_to(&shard0, lobby_named, Default::default())
        .await
        .unwrap();
    p.publish_raw(not_a_string).await.unwrap();
    // A valid one after them still gets through.
    publisher
        .publish(&message("ok", Some("fine")))
        .await
        .unwrap();
    await_room_head(&p, &room("fine"), 1).await;
    let mut dead = Vec::new();
    let started = Instant::now();
    while dead.len() < 3 && started.elapsed() < Duration::from_secs(30) {
        dead.extend(p.dead_letters(3).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason_of = |payload: &[u8]| {
        dead.iter()
            .find(|(d, _)| d.as_slice() == payload)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{} not dead-lettered", String::from_utf8_lossy(payload)))
    };
    assert!(reason_of(bad_room).contains("is not valid"), "{dead:?}");
    assert!(reason_of(lobby_named).contains("lobby"), "{dead:?}");
    assert!(
        reason_of(not_a_string).contains("not a valid message"),
        "{dead:?}"
    );
}

/// Waits until `room_messages` holds `n` rows of `room`; returns their
/// (seq, message_id) in seq order.
async fn await_room_rows(p: &Pipeline, room: &str, n: usize) -> Vec<(i64, String)> {
    let started = Instant::now();
    loop {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, message_id FROM room_messages WHERE room_id = $1 ORDER BY seq",
        )
        .bind(room)
        .fetch_all(&p.pg)
        .await
        .unwrap();
        if rows.len() >= n || started.elapsed() > Duration::from_secs(30) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_stores_each_room_message_once_and_trims_and_replay_crosses_the_boundary() {
    const SHARDS: u32 = 2;
    const N: u64 = 40;
    const KEPT: u64 = 5;
    let opts = PipelineOptions {
        servers: 0,
        gateway: false,
        ..PipelineOptions::default()
    }
    .configure(|c| {
        c.rooms.shards = SHARDS;
        c.sync.batch_max = 7;
        c.sync.retention_messages = KEPT;
    });
    let p = Pipeline::shared(opts).await.unwrap();
    let publisher = Publisher::for_config(&p.cfg);
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let rooms = ["north", "south"];
    for i in 0..N {
        for r in rooms {
            publisher
                .publish(&message(&format!("{r}-{i}"), Some(r)))
                .await
                .unwrap();
        }
        if i == N / 2 {
            // A membership event amid the messages only moves the cursor.
            stream::record_membership(
                &mut redis,
                &keys,
                SHARDS,
                &room("north"),
                "zoe",
                MemberChange::Joined,
                RoomKind::Public,
            )
            .await
            .unwrap();
        }
    }
    // A redelivered (duplicate) message adds nothing.
    publisher
        .publish(&message("north-3", Some("north")))
        .await
        .unwrap();
    for r in rooms {
        let rows = await_room_rows(&p, r, N as usize).await;
        let expected: Vec<(i64, String)> =
            (0..N).map(|i| (i as i64 + 1, format!("{r}-{i}"))).collect();
        assert_eq!(rows, expected, "{r}: exactly once, in order");
    }
    // Trimmed: the room log keeps about KEPT entries once synced.
    let mut manager = managed(&p).await;
    let started = Instant::now();
    loop {
        let first = stream::room_first_seq(&mut redis, &keys, SHARDS, &room("north"))
            .await
            .unwrap()
            .unwrap_or(0);
        if first > N - KEPT - 7 || started.elapsed() > Duration::from_secs(30) {
            assert!(first > 1, "room log never trimmed (first {first})");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in rooms {
        let r = room(r);
        let all = rtmc::replay::room_range(&mut manager, &p.pg, &keys, SHARDS, &r, 0, N, 1_000)
            .await
            .unwrap();
        let seqs: Vec<u64> = all.iter().map(|d| d.seq).collect();
        assert_eq!(
            seqs,
            (1..=N).collect::<Vec<_>>(),
            "{r}: no gap across Redis/PostgreSQL"
        );
        // The oldest messages come from PostgreSQL, framed byte for byte as
        // the consumer stored them in Redis.
        let first_in_redis = stream::room_first_seq(&mut redis, &keys, SHARDS, &r)
            .await
            .unwrap()
            .unwrap();
        assert!(first_in_redis > 1, "{r} was trimmed");
        let stored = message(&format!("{r}-0"), Some(r.as_str())).broadcast_json(1);
        assert_eq!(all[0].frame, rtmc::protocol::encode_frame(&stored));
        let body: serde_json::Value =
            serde_json::from_slice(&all[0].frame[4..]).expect("a length-prefixed JSON frame");
        assert_eq!(body["room"], r.as_str());
        assert_eq!(body["message_id"], format!("{r}-0"));
    }
    let north = room("north");
    let page = rtmc::replay::room_page(&mut manager, &p.pg, &keys, SHARDS, &north, 10, 5)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    let tail = rtmc::replay::room_page(&mut manager, &p.pg, &keys, SHARDS, &north, N - 2, 5)
        .await
        .unwrap();
    assert_eq!(tail.iter().map(|d| d.seq).collect::<Vec<_>>(), [N - 1, N]);
    let older = rtmc::replay::room_page_before(&mut manager, &p.pg, &keys, SHARDS, &north, 4, 10)
        .await
        .unwrap();
    assert_eq!(older.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let latest =
        rtmc::replay::room_page_before(&mut manager, &p.pg, &keys, SHARDS, &north, u64::MAX, 3)
            .await
            .unwrap();
    assert_eq!(
        latest.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [N - 2, N - 1, N]
    );
    assert!(
        rtmc::replay::room_range(&mut manager, &p.pg, &keys, SHARDS, &north, 0, N, 10)
            .await
            .is_err(),
        "a replay beyond its bound is refused"
    );
    let nobody = rtmc::replay::room_page(&mut manager, &p.pg, &keys, SHARDS, &room("empty"), 0, 10)
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_members_live_in_postgres() {
    use rtmc::room::RoomRole::{Member, Owner};
    use rtmc::room_db::{self, AddOutcome, CreateOutcome};
    let p = bare(1).await;
    let pg = &p.pg;
    let roomy = roomy();
    let general = room("general");
    assert_eq!(room_db::room_kind(pg, &general).await.unwrap(), None);
    assert_eq!(
        room_db::create_room(pg, &general, RoomKind::Public, "alice", 10)
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        room_db::create_room(pg, &general, RoomKind::Private, "bob", 10)
            .await
            .unwrap(),
        CreateOutcome::AlreadyExists
    );
    assert_eq!(
        room_db::room_kind(pg, &general).await.unwrap(),
        Some(RoomKind::Public)
    );
    assert_eq!(
        room_db::add_member(pg, &general, "bob", Member, roomy)
            .await
            .unwrap(),
        AddOutcome::Added
    );
    assert_eq!(
        room_db::add_member(pg, &general, "bob", Owner, roomy)
            .await
            .unwrap(),
        AddOutcome::AlreadyMember,
        "already in"
    );
    assert!(room_db::is_member(pg, &general, "bob").await.unwrap());
    let members: Vec<(String, rtmc::room::RoomRole)> = room_db::members(pg, &general)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        members,
        [("alice".to_string(), Owner), ("bob".to_string(), Member)]
    );
    assert_eq!(room_db::member_count(pg, &general).await.unwrap(), 2);
    let dm = RoomId::direct("carol", "bob").unwrap();
    assert_eq!(
        room_db::ensure_direct(pg, &dm).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        room_db::ensure_direct(pg, &dm).await.unwrap(),
        CreateOutcome::AlreadyExists
    );
    assert!(
        room_db::ensure_direct(pg, &general).await.is_err(),
        "not a direct id"
    );
    let mine = room_db::rooms_of(pg, "bob").await.unwrap();
    let mine: Vec<(&str, RoomKind, rtmc::room::RoomRole)> = mine
        .iter()
        .map(|r| (r.room.as_str(), r.kind, r.role))
        .collect();
    assert_eq!(
        mine,
        [
            ("dm:bob:carol", RoomKind::Direct, Member),
            ("general", RoomKind::Public, Member)
        ]
    );
    assert_eq!(room_db::room_count_of(pg, "bob").await.unwrap(), 2);
    assert!(room_db::remove_member(pg, &general, "bob").await.unwrap());
    assert!(!room_db::remove_member(pg, &general, "bob").await.unwrap());
    assert!(!room_db::is_member(pg, &general, "bob").await.unwrap());
    assert_eq!(room_db::room_count_of(pg, "bob").await.unwrap(), 1);
    assert!(
        room_db::add_member(pg, &room("nowhere"), "bob", Member, roomy)
            .await
            .is_err(),
        "a member of a room that does not exist is refused"
    );
}

/// Limits no test here reaches.
fn roomy() -> rtmc::room_db::MemberLimits {
    rtmc::room_db::MemberLimits {
        max_members_per_room: 1_000,
        max_rooms_per_user: 1_000,
    }
}

/// Runs `n` calls of `f` at once (each on its own task, so they race on
/// separate pool connections) and counts their outcomes.
async fn race<T, F, Fut>(n: usize, f: F) -> std::collections::BTreeMap<String, usize>
where
    T: std::fmt::Debug + Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        let outcome = t.await.expect("task").expect("store");
        *counts.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_additions_never_pass_the_room_and_member_limits() {
    use rtmc::room::RoomRole::Member;
    use rtmc::room_db::{self, MemberLimits};
    let p = bare(1).await;
    let limits = MemberLimits {
        max_members_per_room: 5,
        max_rooms_per_user: 3,
    };
    // 20 users join one room at once: the owner and 4 of them fit.
    let crowded = room("crowded");
    room_db::create_room(&p.pg, &crowded, RoomKind::Public, "owner", 3)
        .await
        .unwrap();
    let counts = race(20, |i| {
        let (pg, r) = (p.pg.clone(), crowded.clone());
        async move { room_db::add_member(&pg, &r, &format!("joiner{i}"), Member, limits).await }
    })
    .await;
    assert_eq!(counts.get("Added"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("RoomFull"), Some(&16), "{counts:?}");
    assert_eq!(room_db::member_count(&p.pg, &crowded).await.unwrap(), 5);
    // One user is added to 10 rooms at once: 3 fit.
    for i in 0..10 {
        room_db::create_room(
            &p.pg,
            &room(&format!("r{i}")),
            RoomKind::Public,
            "owner2",
            10,
        )
        .await
        .unwrap();
    }
    let counts =
        race(10, |i| {
            let pg = p.pg.clone();
            async move {
                room_db::add_member(&pg, &room(&format!("r{i}")), "busy", Member, limits).await
            }
        })
        .await;
    assert_eq!(counts.get("Added"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("TooManyRooms"), Some(&7), "{counts:?}");
    assert_eq!(room_db::room_count_of(&p.pg, "busy").await.unwrap(), 3);
    // One user creates 10 rooms at once: 3 fit, the rest are not created.
    let counts = race(10, |i| {
        let pg = p.pg.clone();
        let r = room(&format!("mine{i}"));
        async move { room_db::create_room(&pg, &r, RoomKind::Private, "maker", 3).await }
    })
    .await;
    assert_eq!(counts.get("Created"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("TooManyRooms"), Some(&7), "{counts:?}");
    assert_eq!(room_db::room_count_of(&p.pg, "maker").await.unwrap(), 3);
    let mut made = 0;
    for i in 0..10 {
        made += usize::from(
            room_db::room_kind(&p.pg, &room(&format!("mine{i}")))
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(made, 3, "a refused creation leaves no room behind");
}

/// How a gateway request authenticates.
#[derive(Clone, Copy)]
enum Credential<'a> {
    None,
    Session(&'a str),
    ApiKey(&'a str),
}

/// One gateway request: method, path, credential and JSON body.
type Request<'a> = (
    reqwest::Method,
    &'a str,
    Credential<'a>,
    Option<serde_json::Value>,
);

/// Sends `req` to the gateway: its status and JSON body (`Null` when none).
async fn call(p: &Pipeline, req: Request<'_>) -> (u16, serde_json::Value) {
    let (method, path, credential, body) = req;
    let mut req = p.http.request(method, format!("{}{path}", p.gateway_url()));
    req = match credential {
        Credential::None => req,
        Credential::Session(token) => req.bearer_auth(token),
        Credential::ApiKey(key) => req.header("x-api-key", key),
    };
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Sends each request and asserts its refusal: status and error code.
async fn refused(p: &Pipeline, cases: Vec<(Request<'_>, u16, &str)>) {
    for (req, status, code) in cases {
        let what = format!("{} {}", req.0, req.1);
        let (got, body) = call(p, req).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
    }
}

async fn session_of(p: &Pipeline, user: &str) -> String {
    let (s, b) = p
        .http_login(user, rtmc_testkit::TEST_PASSWORD)
        .await
        .unwrap();
    assert_eq!(s, 200, "{b}");
    b["session_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_room_routes_answer_each_success_and_refusal() {
    use reqwest::Method;
    use serde_json::json;
    use Credential::{ApiKey, Session};
    let opts = PipelineOptions {
        servers: 0,
        ..PipelineOptions::default()
    }
    .configure(|c| {
        c.rooms.shards = 2;
        c.rooms.max_rooms_per_user = 3;
        c.rooms.max_members_per_room = 2;
    });
    let p = Pipeline::shared(opts).await.unwrap();
    let users = p.add_users("gw", 3).await.unwrap();
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let (ta, tb, tc) = (
        session_of(&p, alice).await,
        session_of(&p, bob).await,
        session_of(&p, carol).await,
    );
    let (a, b, c, key) = (
        Session(&ta),
        Session(&tb),
        Session(&tc),
        ApiKey(p.api_key()),
    );
    let (post, get) = (Method::POST, Method::GET);
    let create = |room: &str, kind: &str| Some(json!({"room": room, "kind": kind}));
    let invite = |user: &str| Some(json!({"user_id": user}));
    let msg = |id: &str| Some(json!({"body": format!("text {id}"), "message_id": id}));
    let bot = |id: &str| Some(json!({"body": "from a bot", "message_id": id, "sender": "bot"}));

    // Create: each refusal class, then success and a conflict.
    let r = "/v1/rooms";
    refused(
        &p,
        vec![
            (
                (post.clone(), r, Credential::None, create("team", "private")),
                401,
                "unauthorized",
            ),
            (
                (post.clone(), r, key, create("team", "private")),
                401,
                "unauthorized",
            ),
            (
                (post.clone(), r, a, create("Bad Room", "public")),
                400,
                "invalid_room",
            ),
            (
                (post.clone(), r, a, create("lobby", "public")),
                400,
                "lobby_is_implicit",
            ),
            (
                (post.clone(), r, a, create("x", "direct")),
                400,
                "invalid_room",
            ),
            (
                (post.clone(), r, a, create("x", "secret")),
                400,
                "invalid_field",
            ),
        ],
    )
    .await;
    let created = call(&p, (post.clone(), r, a, create("team", "private"))).await;
    assert_eq!(created, (201, json!({"room": "team", "kind": "private"})));
    refused(
        &p,
        vec![(
            (post.clone(), r, b, create("team", "public")),
            409,
            "room_exists",
        )],
    )
    .await;

    // Members and invitations.
    let m = "/v1/rooms/team/members";
    refused(
        &p,
        vec![
            ((get.clone(), m, b, None), 403, "not_a_member"),
            (
                (get.clone(), "/v1/rooms/nowhere/members", a, None),
                404,
                "unknown_room",
            ),
            (
                (get.clone(), "/v1/rooms/NO%20WAY/members", a, None),
                400,
                "invalid_room",
            ),
            ((post.clone(), m, b, invite(carol)), 403, "not_a_member"),
            ((post.clone(), m, a, invite("ghost")), 404, "unknown_user"),
            (
                (post.clone(), m, a, invite("bad:user")),
                400,
                "invalid_field",
            ),
        ],
    )
    .await;
    assert_eq!(call(&p, (post.clone(), m, a, invite(bob))).await.0, 201);
    assert_eq!(
        call(&p, (post.clone(), m, a, invite(bob))).await.0,
        200,
        "already a member"
    );
    refused(
        &p,
        vec![((post.clone(), m, a, invite(carol)), 403, "room_full")],
    )
    .await;
    let (s, listed) = call(&p, (get.clone(), m, b, None)).await;
    assert_eq!(s, 200, "{listed}");
    assert_eq!(
        listed["members"],
        json!([
            {"user_id": alice, "role": "owner", "status": "offline"},
            {"user_id": bob, "role": "member", "status": "offline"}
        ]),
        "HTTP sessions do not change presence"
    );

    // Posting: members with a session, services with the key at their own
    // route (one credential per route).
    let t = "/v1/rooms/team/messages";
    let st = "/v1/service/rooms/team/messages";
    refused(
        &p,
        vec![
            ((post.clone(), t, c, msg("c1")), 403, "not_a_member"),
            (
                (post.clone(), "/v1/rooms/nowhere/messages", b, msg("n1")),
                404,
                "unknown_room",
            ),
            (
                (post.clone(), "/v1/rooms/lobby/messages", b, msg("l1")),
                400,
                "lobby_is_implicit",
            ),
            ((post.clone(), t, key, bot("k1")), 401, "unauthorized"),
            ((post.clone(), st, b, bot("k2")), 401, "unauthorized"),
            ((post.clone(), st, key, msg("t3")), 400, "invalid_field"),
            (
                (
                    post.clone(),
                    "/v1/service/rooms/nowhere/messages",
                    key,
                    bot("k3"),
                ),
                404,
                "unknown_room",
            ),
        ],
    )
    .await;
    let posted = call(&p, (post.clone(), t, b, msg("t1"))).await;
    assert_eq!(posted, (202, json!({"message_id": "t1", "room": "team"})));
    let posted = call(&p, (post.clone(), st, key, bot("t2"))).await;
    assert_eq!(posted, (202, json!({"message_id": "t2", "room": "team"})));

    // History pages, members only.
    refused(
        &p,
        vec![
            ((get.clone(), t, c, None), 403, "not_a_member"),
            (
                (get.clone(), "/v1/rooms/team/messages?limit=0", a, None),
                400,
                "invalid_field",
            ),
            (
                (get.clone(), "/v1/rooms/team/messages?limit=many", a, None),
                400,
                "invalid_field",
            ),
        ],
    )
    .await;
    await_room_head(&p, &room("team"), 2).await;
    let (s, page) = call(
        &p,
        (get.clone(), "/v1/rooms/team/messages?limit=1", a, None),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["more"], true);
    let first = &page["messages"][0];
    assert_eq!(
        (&first["message_id"], &first["from"]),
        (&json!("t1"), &json!(bob))
    );
    assert_eq!((&first["room"], &first["seq"]), (&json!("team"), &json!(1)));
    let (s, page) = call(
        &p,
        (get.clone(), "/v1/rooms/team/messages?after_seq=1", b, None),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        (&page["more"], page["messages"].as_array().map(Vec::len)),
        (&json!(false), Some(1))
    );
    assert_eq!(
        (&page["messages"][0]["from"], &page["messages"][0]["seq"]),
        (&json!("service:bot"), &json!(2))
    );

    // A direct room is made by its first message, for its two users only.
    let dm = RoomId::direct(alice, bob).unwrap();
    let (x, y) = dm.direct_members().unwrap();
    let reversed = format!("/v1/rooms/dm:{y}:{x}/messages");
    let dm_path = format!("/v1/rooms/{dm}/messages");
    let ghost_path = format!(
        "/v1/rooms/{}/messages",
        RoomId::direct(bob, "ghost").unwrap()
    );
    let dm_members = format!("/v1/rooms/{dm}/members");
    refused(
        &p,
        vec![
            ((post.clone(), &reversed, b, msg("d0")), 400, "invalid_room"),
            ((post.clone(), &dm_path, c, msg("d1")), 404, "unknown_room"),
            (
                (post.clone(), &ghost_path, b, msg("d4")),
                404,
                "unknown_user",
            ),
        ],
    )
    .await;
    assert_eq!(
        call(&p, (post.clone(), &dm_path, b, msg("d2"))).await.0,
        202
    );
    refused(
        &p,
        vec![
            ((post.clone(), &dm_path, c, msg("d3")), 403, "not_a_member"),
            (
                (post.clone(), &dm_members, a, invite(carol)),
                400,
                "invalid_room",
            ),
        ],
    )
    .await;
    let (s, listed) = call(&p, (get.clone(), &dm_members, a, None)).await;
    assert_eq!(
        (s, listed["members"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{listed}"
    );

    // alice is in team and the direct room: one more, then the quota.
    assert_eq!(
        call(&p, (post.clone(), r, a, create("third", "public")))
            .await
            .0,
        201
    );
    refused(
        &p,
        vec![(
            (post.clone(), r, a, create("fourth", "public")),
            403,
            "too_many_rooms",
        )],
    )
    .await;

    // Create and invite told the server nodes: joined events in the shard stream.
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let shard = room("team").shard(2);
    let entries = stream::shard_range_after(&mut redis, &keys, shard, 0, 100)
        .await
        .unwrap();
    let joined: Vec<(String, u64)> = entries
        .iter()
        .filter_map(|e| match &e.event {
            ShardEvent::Member {
                room,
                user,
                seq,
                change: MemberChange::Joined,
                ..
            } if room == "team" => Some((user.clone(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(joined, [(alice.clone(), 0), (bob.clone(), 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_step_repeated_from_an_older_cursor_adds_no_row() {
    const SHARDS: u32 = 2;
    let p = bare(SHARDS).await;
    let (keys, mut redis) = (keys(&p), p.redis().await.unwrap());
    let rooms = one_room_per_shard(SHARDS);
    for (k, r) in rooms.iter().enumerate() {
        let items: Vec<RoomItem> = (0..5).map(|i| item(&format!("{r}-{i}"), r)).collect();
        stream::append_room_batch(&mut redis, &keys, k as u32, 60, &items)
            .await
            .unwrap();
    }
    stream::record_membership(
        &mut redis,
        &keys,
        SHARDS,
        &room(&rooms[0]),
        "zoe",
        MemberChange::Left,
        RoomKind::Private,
    )
    .await
    .unwrap();
    let mut worker = rtmc::sync::SyncWorker::connect(&p.cfg).await.unwrap();
    assert_eq!(
        worker.step_rooms().await.unwrap(),
        11,
        "10 messages and 1 membership entry"
    );
    assert_eq!(worker.shard_cursor(0).await.unwrap(), 6);
    assert_eq!(worker.shard_cursor(1).await.unwrap(), 5);
    assert_eq!(worker.step_rooms().await.unwrap(), 0, "nothing new");
    // A worker that lost its cursor (or another one racing it) copies again:
    // the rows stay exactly once.
    sqlx::query("UPDATE sync_cursor SET last_seq = 2 WHERE stream = $1")
        .bind(keys.shard_stream(0))
        .execute(&p.pg)
        .await
        .unwrap();
    assert_eq!(worker.step_rooms().await.unwrap(), 4);
    for r in &rooms {
        let rows = await_room_rows(&p, r, 5).await;
        let expected: Vec<(i64, String)> = (0..5).map(|i| (i + 1, format!("{r}-{i}"))).collect();
        assert_eq!(rows, expected);
    }
    let (lobby_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM messages")
        .fetch_one(&p.pg)
        .await
        .unwrap();
    assert_eq!(lobby_rows, 0, "room messages stay out of the lobby's table");
}
