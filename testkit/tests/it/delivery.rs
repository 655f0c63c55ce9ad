//! Delivery: every client receives every acknowledged message exactly once,
//! in the same gap-free sequence order, whichever node it is connected to and
//! whether the message came over HTTP or TCP.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rtmc_testkit::{raw, Pipeline, PipelineOptions};

use crate::support::{assert_gap_free, collect, metric, until_closed};

const CLIENTS: usize = 50;
const TCP_MESSAGES: usize = 20;
const HTTP_MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_every_message_once_in_order_across_two_nodes() {
    let p = Pipeline::shared(PipelineOptions::default().servers(2))
        .await
        .unwrap();
    let users = p.add_users("d", CLIENTS).await.unwrap();
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        clients.push(p.client(i % 2, u).await.unwrap());
    }
    let start = clients[0].info.last_seq;
    // Publish over TCP from clients on both nodes, and over HTTP.
    let mut acked = HashSet::new();
    for i in 0..TCP_MESSAGES {
        let id = format!("tcp-{i}");
        let sender = i % CLIENTS;
        assert_eq!(
            clients[sender]
                .send(&format!("hello {i}"), Some(&id))
                .await
                .unwrap(),
            id
        );
        acked.insert(id);
    }
    for i in 0..HTTP_MESSAGES {
        let id = format!("http-{i}");
        let (status, body) = p
            .post_message("service", &format!("via http {i}"), Some(&id))
            .await
            .unwrap();
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["message_id"], id.as_str());
        acked.insert(id);
    }
    let total = TCP_MESSAGES + HTTP_MESSAGES;
    let mut reference: Option<BTreeMap<u64, String>> = None;
    for (i, c) in clients.iter_mut().enumerate() {
        let got = collect(c, total, Duration::from_secs(30)).await;
        assert_eq!(
            got.len(),
            total,
            "client {i} received {} of {total}",
            got.len()
        );
        let order = assert_gap_free(&got, start + 1);
        let ids: HashSet<String> = order.values().cloned().collect();
        assert_eq!(
            ids, acked,
            "client {i} did not get exactly the acknowledged messages"
        );
        match &reference {
            None => reference = Some(order),
            Some(r) => assert_eq!(&order, r, "client {i} saw a different order"),
        }
        // Nothing more (no duplicates after the expected set).
        assert!(c.next_broadcast(Duration::from_millis(200)).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_is_delivered_once() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let users = p.add_users("r", 2).await.unwrap();
    let mut sender = p.client(0, &users[0]).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    for _ in 0..3 {
        sender.send("once", Some("same-id")).await.unwrap();
    }
    let (status, _) = p
        .post_message("svc", "once", Some("same-id"))
        .await
        .unwrap();
    assert_eq!(status, 202);
    sender.send("after", Some("other-id")).await.unwrap();
    let got = collect(&mut reader, 2, Duration::from_secs(20)).await;
    let ids: Vec<&str> = got.iter().map(|b| b.message_id.as_str()).collect();
    assert_eq!(ids, ["same-id", "other-id"]);
    assert!(
        reader
            .next_broadcast(Duration::from_millis(300))
            .await
            .is_err(),
        "a duplicate leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_and_reaches_no_client() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let users = p.add_users("m", 2).await.unwrap();
    let mut sender = p.client(0, &users[0]).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    p.publish_raw(b"{this is not json").await.unwrap();
    p.publish_raw(br#"{"message_id":"x","from":"","body":"no sender","sent_at_us":1}"#)
        .await
        .unwrap();
    sender.send("valid", Some("valid-1")).await.unwrap();
    let got = collect(&mut reader, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, "valid-1");
    assert!(reader
        .next_broadcast(Duration::from_millis(300))
        .await
        .is_err());
    // The consumer handled the earlier messages before the valid one, so both are dead-lettered by now.
    let dead = p.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, b"{this is not json");
    assert!(
        dead[0].1.contains("not a valid message"),
        "reason: {}",
        dead[0].1
    );
    assert!(dead[1].1.contains("from must be"), "reason: {}", dead[1].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_others_keep_receiving() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.server.outbound_queue_frames = 64;
        c.server.write_timeout_ms = 1_000;
        c.server.socket_send_buffer_bytes = 4096;
    }))
    .await
    .unwrap();
    let users = p.add_users("s", 2).await.unwrap();
    // The stalled client: a tiny receive buffer and it never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock
        .connect(p.server_addr(0).parse().unwrap())
        .await
        .unwrap();
    let mut stalled = rtmc::client::Connection::from_stream(stream, raw::MAX_FRAME_BYTES);
    raw::login(&mut stalled, &users[0]).await.unwrap();
    let mut healthy = p.client(0, &users[1]).await.unwrap();
    let body = "x".repeat(8 * 1024);
    let n = 200;
    let publisher = p.http_publisher();
    let sending = tokio::spawn(async move {
        for i in 0..n {
            let (status, _) = publisher
                .post_message("svc", &body, Some(&format!("big-{i}")))
                .await
                .unwrap();
            assert_eq!(status, 202);
        }
    });
    let got = collect(&mut healthy, n, Duration::from_secs(60)).await;
    sending.await.unwrap();
    assert_eq!(got.len(), n, "the healthy client was held back");
    // The stalled client: the server closed its connection. Drain what the
    // kernel buffered until end of stream; nothing may be lost before the cut.
    let seqs: Vec<u64> = until_closed(&mut stalled, Duration::from_secs(30))
        .await
        .into_iter()
        .filter_map(|f| match f {
            rtmc::protocol::ServerFrame::Broadcast(b) => Some(b.seq),
            _ => None,
        })
        .collect();
    assert!(seqs.len() < n, "the stalled client was not cut off");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the stalled client saw a gap before the cut"
    );
    // Read once the cut was seen: the node may cut the stalled client after
    // the healthy one got everything (its write timeout), so not before.
    let after = rtmc::telemetry::metrics().render();
    assert!(
        metric(&after, "rtmc_slow_consumer_disconnects_total", "") > 0.0,
        "slow-consumer disconnect not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_session_gets_acks_but_no_broadcasts() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let users = p.add_users("po", 2).await.unwrap();
    let mut reader = p.client(0, &users[1]).await.unwrap();
    let mut publisher = p.raw_connection(0).await.unwrap();
    raw::login_publish_only(&mut publisher, &users[0])
        .await
        .unwrap();
    for i in 0..5 {
        publisher
            .send(&rtmc::protocol::ClientCommand::Send {
                room: None,
                to: None,
                body: "bot".into(),
                message_id: Some(format!("po-{i}")),
                sent_at_us: None,
            })
            .await
            .unwrap();
    }
    let mut acks = 0;
    while acks < 5 {
        match publisher
            .recv_timeout(Duration::from_secs(10))
            .await
            .unwrap()
        {
            rtmc::protocol::ServerFrame::SendAck { .. } => acks += 1,
            other => panic!("a publish-only session got {other:?}"),
        }
    }
    let got = collect(&mut reader, 5, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 5);
    assert!(
        publisher
            .recv_timeout(Duration::from_millis(500))
            .await
            .is_err(),
        "a publish-only session received a broadcast"
    );
}
