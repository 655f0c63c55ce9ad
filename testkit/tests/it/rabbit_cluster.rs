//! The 3-node RabbitMQ cluster: a quorum queue is replicated on all three
//! nodes, and every message the cluster confirmed survives a SIGKILL of the
//! node that leads the queue (consumed from a surviving node).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rtmc_testkit::cluster::CLUSTER_NODES;
use rtmc_testkit::RabbitCluster;

const MESSAGES: usize = 200;

async fn channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("a running node accepts AMQP");
    let channel = conn.create_channel().await.expect("a channel");
    (conn, channel)
}

async fn declare_quorum(channel: &Channel, queue: &str) {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .expect("declaring the quorum queue");
}

/// Publishes `MESSAGES` persistent messages and returns those the cluster
/// confirmed (ack).
async fn publish_confirmed(channel: &Channel, queue: &str) -> BTreeSet<String> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let mut confirmed = BTreeSet::new();
    for i in 0..MESSAGES {
        let body = format!("m{i}");
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        if confirm.is_ack() {
            confirmed.insert(body);
        }
    }
    confirmed
}

/// Consumes from `url` until `expected` messages arrived or 60 s
/// passed; the queue may still be electing its new leader at first.
async fn consume_all(url: &str, queue: &str, expected: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < expected && tokio::time::Instant::now() < deadline {
        let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Ok(channel) = conn.create_channel().await else {
            continue;
        };
        let consumer = channel
            .basic_consume(
                queue.into(),
                "ha-test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        let Ok(mut consumer) = consumer else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        while got.len() < expected {
            match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    got.insert(String::from_utf8_lossy(&d.data).into_owned());
                    let _ = d.ack(BasicAckOptions::default()).await;
                }
                _ => break,
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_killing_the_queue_leader() {
    rtmc_testkit::init_test_logs();
    let cluster = RabbitCluster::start().await.unwrap();
    assert_eq!(cluster.running_nodes().await.unwrap().len(), CLUSTER_NODES);
    let queue = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let (_conn, channel) = channel(&cluster.node(0).url()).await;
    declare_quorum(&channel, &queue).await;
    let placement = cluster.quorum_queue(&queue).await.unwrap();
    assert_eq!(
        placement.members.len(),
        CLUSTER_NODES,
        "a replica on every node: {placement:?}"
    );
    let confirmed = publish_confirmed(&channel, &queue).await;
    assert_eq!(confirmed.len(), MESSAGES, "a healthy cluster confirms all");

    cluster.node(placement.leader).kill().await.unwrap();
    let survivor = (placement.leader + 1) % CLUSTER_NODES;
    let consumed = consume_all(&cluster.node(survivor).url(), &queue, confirmed.len()).await;
    let lost: Vec<_> = confirmed.difference(&consumed).collect();
    assert!(lost.is_empty(), "confirmed but lost: {lost:?}");
    let after = cluster.quorum_queue(&queue).await.unwrap();
    assert_ne!(after.leader, placement.leader, "a survivor leads now");
}
