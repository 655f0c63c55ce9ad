//! Every component serves health, readiness and Prometheus metrics; the
//! components here run as real `rtmc` processes.

use rtmc_testkit::{NodeProcess, Pipeline, PipelineOptions, Role};

use crate::support::init_logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_consumer_and_sync_processes_serve_ops_endpoints() {
    init_logs();
    let p = Pipeline::shared(PipelineOptions {
        servers: 0,
        gateway: false,
        consumer: false,
        sync: false,
        ..PipelineOptions::default()
    })
    .await
    .unwrap();
    let binary = rtmc_testkit::process::rtmc_binary()
        .expect("build the rtmc binary: cargo build -p rtmc-system");
    for (role, metric) in [
        (Role::Server, "rtmc_connections_active"),
        (Role::Consumer, "rtmc_consumer"),
        (Role::Sync, "rtmc_sync_lag_messages"),
    ] {
        let node = NodeProcess::spawn(role, (*p.cfg).clone(), &binary)
            .await
            .unwrap();
        let ops = format!("http://{}", node.ops_addr.as_deref().unwrap());
        for (path, expect) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let r = p.http.get(format!("{ops}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{role:?} {path}");
            assert!(r.text().await.unwrap().contains(expect));
        }
        // Metrics appear once the component has done some work; poll briefly.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = p
                .http
                .get(format!("{ops}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains(metric) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{role:?} /metrics lacks {metric}: {text}"
            );
            if role == Role::Consumer {
                // Give the consumer something to count.
                p.publish_raw(br#"{"message_id":"ops-1","from":"svc","body":"x","sent_at_us":1}"#)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        node.stop().await.unwrap();
    }
}
