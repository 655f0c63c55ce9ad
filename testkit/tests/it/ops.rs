//! Every component serves health, readiness and Prometheus metrics; the
//! components here run as real `rtmc` processes.

use std::time::Duration;

use rtmc_testkit::{Pipeline, PipelineOptions, Role};

use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_consumer_and_sync_processes_serve_ops_endpoints() {
    let p = Pipeline::shared(PipelineOptions {
        servers: 0,
        gateway: false,
        consumer: false,
        sync: false,
        ..PipelineOptions::default()
    })
    .await
    .unwrap();
    for (role, metric) in [
        (Role::Server, "rtmc_connections_active"),
        (Role::Consumer, "rtmc_consumer"),
        (Role::Sync, "rtmc_sync_lag_messages"),
    ] {
        let node = p.spawn_process(role).await.unwrap();
        let ops = format!("http://{}", node.ops_addr.as_deref().unwrap());
        for (path, expect) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let r = p.http.get(format!("{ops}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{role:?} {path}");
            assert!(r.text().await.unwrap().contains(expect));
        }
        // Metrics appear once the component has done some work; poll briefly.
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(300),
            async || {
                let url = format!("{ops}/metrics");
                let text = p.http.get(url).send().await.unwrap().text().await.unwrap();
                if text.contains(metric) {
                    return Ok(());
                }
                if role == Role::Consumer {
                    // Give the consumer something to count.
                    p.publish_raw(
                        br#"{"message_id":"ops-1","from":"svc","body":"x","sent_at_us":1}"#,
                    )
                    .await
                    .unwrap();
                }
                Err(format!("{role:?} /metrics lacks {metric}: {text}"))
            },
        )
        .await;
        node.stop().await.unwrap();
    }
}
