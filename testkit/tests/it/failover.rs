//! Node failover: a server node stops while clients are connected; they
//! reconnect to another node (client library, automatically) and end with
//! the complete sequence.

use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions, Role};

use crate::support::collect;

const CLIENTS: usize = 10;
const MESSAGES: usize = 60;

async fn run_failover(kill: bool) {
    let p = Pipeline::shared(PipelineOptions::default().servers(1))
        .await
        .unwrap();
    let users = p
        .add_users(if kill { "fk" } else { "fs" }, CLIENTS)
        .await
        .unwrap();
    let doomed = p.spawn_process(Role::Server).await.unwrap();
    let doomed_addr = doomed.addr.clone().unwrap();
    let survivor = p.server_addr(0);
    let mut clients = Vec::new();
    for u in &users {
        let c = rtmc::client::ChatClient::connect(&doomed_addr, u, rtmc_testkit::TEST_PASSWORD)
            .await
            .unwrap()
            .with_failover([survivor.clone()]);
        clients.push(c);
    }
    let start = clients[0].info.last_seq;
    let publisher = {
        let http = p.http_publisher();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let (status, _) = http
                    .post_message("svc", &format!("m{i}"), Some(&format!("f-{i}")))
                    .await
                    .unwrap();
                assert_eq!(status, 202);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    if kill {
        doomed.kill();
    } else {
        doomed.stop().await.unwrap();
    }
    let mut readers = Vec::new();
    for mut c in clients {
        readers.push(tokio::spawn(async move {
            let got = collect(&mut c, MESSAGES, Duration::from_secs(60)).await;
            (got, c.reconnects, c.addr().to_owned())
        }));
    }
    publisher.await.unwrap();
    for (i, r) in readers.into_iter().enumerate() {
        let (got, reconnects, addr) = r.await.unwrap();
        assert_eq!(
            got.len(),
            MESSAGES,
            "client {i} got {} of {MESSAGES}",
            got.len()
        );
        for (j, b) in got.iter().enumerate() {
            assert_eq!(
                b.seq,
                start + 1 + j as u64,
                "client {i}: gap or duplicate at {j}"
            );
            assert_eq!(b.message_id, format!("f-{j}"));
        }
        assert!(reconnects >= 1, "client {i} never failed over");
        assert_eq!(addr, survivor, "client {i} is not on the surviving node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fail_over_when_a_node_stops() {
    run_failover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fail_over_when_a_node_is_killed() {
    run_failover(true).await;
}
