//! `loadgen hops` end to end at a tiny scale: every hop measured on a real
//! stack acknowledges something without errors, the consumer drains what the
//! entries queued, and the report names a bottleneck per entry.

use rtmc_loadgen::run::hops::{self, HopsOptions};

use crate::embedded_run::build_rtmc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_is_measured_and_a_bottleneck_named() {
    build_rtmc();
    let opts = HopsOptions {
        duration_secs: 0.5,
        channels: vec![1, 2],
        confirm_window: 8,
        batch_sizes: vec![1, 8],
        http_concurrency: 4,
        tcp_connections: 2,
        tcp_window: 8,
        // Two rounds on one stack: the second starts with the first's
        // entries in the stream and must still measure every hop.
        rounds: 2,
        ..Default::default()
    };
    let report = hops::run(&opts, |_| {})
        .await
        .unwrap_or_else(|e| panic!("loadgen hops could not run (is Docker up?): {e:#}"));
    let text = hops::render(&report);
    let hops_seen: Vec<&str> = report.results.iter().map(|r| r.hop.as_str()).collect();
    // Classic and quorum queues for each channel count, then each batch size.
    assert_eq!(
        hops_seen,
        [
            "rabbitmq",
            "rabbitmq",
            "rabbitmq",
            "rabbitmq",
            "redis-append",
            "redis-append",
            "gateway",
            "tcp-server",
            "consumer"
        ],
        "{text}"
    );
    assert_eq!(report.rounds.len(), 2, "{text}");
    for (i, round) in report.rounds.iter().enumerate() {
        for r in round {
            assert!(
                r.acked > 0 && r.rate_per_sec > 0.0,
                "{} measured nothing in round {}:\n{text}",
                r.hop,
                i + 1
            );
            assert_eq!(r.errors, 0, "{} had errors:\n{text}", r.hop);
        }
    }
    for s in &report.spreads {
        let n = s.rate_per_sec.map_or(0, |r| r.n);
        assert_eq!(
            n, 2,
            "{} {}: a row of only {n} round(s):\n{text}",
            s.hop, s.setting
        );
    }
    let queued: u64 = report
        .results
        .iter()
        .filter(|r| r.hop == "gateway" || r.hop == "tcp-server")
        .map(|r| r.acked)
        .sum();
    let consumer = report.results.last().unwrap();
    assert!(consumer.acked <= queued, "{text}");
    assert_eq!(report.bottlenecks.len(), 2, "{text}");
    assert!(text.contains("ingest over gateway: ceiling"), "{text}");
}
