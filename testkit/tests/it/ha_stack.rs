//! `rtmc-stack --ha`'s start (`HaStack::start`): a message posted to the
//! gateway reaches a TCP client within a bounded time, and every cluster
//! lists its nodes with exactly one leader.

use std::time::Duration;

use rtmc_testkit::{HaStack, PipelineOptions};

/// How long the message may take from the gateway to the client.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_through_the_ha_stack_end_to_end() {
    rtmc_testkit::init_test_logs();
    let stack = HaStack::start(PipelineOptions::default()).await.unwrap();
    let p = &stack.pipeline;
    let users = p.add_users("hastack", 1).await.unwrap();
    let mut reader = p.client(0, &users[0]).await.unwrap();
    let (status, _) = p
        .post_message("curl", "through every cluster", None)
        .await
        .unwrap();
    assert_eq!(status, 202);
    let got = reader.next_broadcast(DELIVERY_LIMIT).await.unwrap();
    assert_eq!(got.body, "through every cluster");
    let nodes = stack.nodes().await;
    for engine in ["rabbitmq", "redis", "postgres"] {
        let leaders = nodes
            .iter()
            .filter(|n| n.engine == engine && n.leads)
            .count();
        assert_eq!(leaders, 1, "{engine}: {nodes:#?}");
    }
    assert_eq!(nodes.len(), 3 + 3 + 3 + 2, "{nodes:#?}");
}
