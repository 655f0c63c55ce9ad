//! rtmc on a 3-node RabbitMQ cluster (quorum queues, every node's address in
//! `rabbitmq.urls`): clients publish over TCP under load while the node that
//! leads the message queue is SIGKILLed. Nothing acknowledged is lost, the
//! sequence stays gap-free, and publishing resumes; the time without
//! acknowledged publishes is printed (a figure only when run alone).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rtmc::config::QueueType;
use rtmc_testkit::{Pipeline, PipelineOptions, RabbitCluster};
use tokio::time::Instant;

use crate::support::{assert_gap_free, collect, longest_silence};

/// TCP clients publishing at once.
const PUBLISHERS: usize = 4;
/// Pause between one client's sends.
const SEND_INTERVAL: Duration = Duration::from_millis(20);
/// Publishing before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_secs(1);
const AFTER_KILL: Duration = Duration::from_secs(6);

/// What one publisher saw: each acknowledged message id with when its
/// `send_ack` came, and how many sends were refused.
struct Published {
    acked: Vec<(String, Instant)>,
    refused: usize,
}

async fn publish_until(p: &Pipeline, user: &str, until: Instant) -> Published {
    let mut client = p.client(0, user).await.expect("publisher connects");
    let mut out = Published {
        acked: Vec::new(),
        refused: 0,
    };
    let mut n = 0;
    while Instant::now() < until {
        let id = format!("{user}-{n}");
        n += 1;
        match client.send("ha", Some(&id)).await {
            Ok(_) => out.acked.push((id, Instant::now())),
            Err(_) => out.refused += 1,
        }
        tokio::time::sleep(SEND_INTERVAL).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_queue_leader_loses_no_acknowledged_message() {
    let cluster = RabbitCluster::start().await.unwrap();
    let urls = cluster.urls();
    let opts = PipelineOptions::default().configure(move |cfg| {
        cfg.rabbitmq.urls = urls.into_iter().map(Into::into).collect();
        cfg.rabbitmq.queue_type = QueueType::Quorum;
    });
    let p = Arc::new(Pipeline::shared(opts).await.unwrap());
    let users = p.add_users("ha", PUBLISHERS + 1).await.unwrap();
    let mut reader = p.client(0, &users[PUBLISHERS]).await.unwrap();
    let first_seq = reader.info.last_seq + 1;

    let killed_at = Instant::now() + BEFORE_KILL;
    let stop_at = killed_at + AFTER_KILL;
    let publishers: Vec<_> = users[..PUBLISHERS]
        .iter()
        .map(|u| {
            let (p, u) = (p.clone(), u.clone());
            tokio::spawn(async move { publish_until(&p, &u, stop_at).await })
        })
        .collect();
    tokio::time::sleep_until(killed_at).await;
    let leader = cluster.quorum_queue(&p.cfg.rabbitmq.queue).await.unwrap();
    assert_eq!(
        leader.members.len(),
        3,
        "replicated on every node: {leader:?}"
    );
    let killed_at = Instant::now();
    cluster.node(leader.leader).kill().await.unwrap();

    let mut acked = Vec::new();
    let mut refused = 0;
    for publisher in publishers {
        let out = publisher.await.unwrap();
        acked.extend(out.acked);
        refused += out.refused;
    }
    let silence = longest_silence(acked.iter().map(|(_, t)| *t), killed_at);
    println!(
        "leader (node {}) killed: {} acknowledged, {refused} refused, \
         longest time without an acknowledged publish after the kill: {silence:?}",
        leader.leader,
        acked.len()
    );
    let last_ack = acked.iter().map(|(_, t)| *t).max().expect("acks");
    assert!(
        last_ack > killed_at && stop_at - last_ack < Duration::from_secs(3),
        "publishing resumed after the kill and went on to the end"
    );

    let acked: BTreeSet<String> = acked.into_iter().map(|(id, _)| id).collect();
    let got = read_until_delivered(&mut reader, &acked).await;
    let delivered: BTreeSet<String> = assert_gap_free(&got, first_seq).into_values().collect();
    let lost: Vec<&String> = acked.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
}

/// Broadcasts until every id of `acked` arrived, or 60 s passed. Messages
/// refused to their sender may arrive too (a confirm that timed out after
/// the broker took the message): at least once is allowed.
async fn read_until_delivered(
    reader: &mut rtmc::client::ChatClient,
    acked: &BTreeSet<String>,
) -> Vec<rtmc::protocol::BroadcastFrame> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let mut missing = acked.len();
    while missing > 0 && Instant::now() < deadline {
        let batch = collect(reader, missing, deadline - Instant::now()).await;
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
        let seen: BTreeSet<&String> = got.iter().map(|b| &b.message_id).collect();
        missing = acked.iter().filter(|id| !seen.contains(id)).count();
    }
    got
}
