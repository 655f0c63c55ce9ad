//! The history checker end to end: a real stack whose consumer loses one
//! message on purpose (rtmc-system's test-only feature `test-consumer-drop`,
//! enabled by this crate's dev-dependency only) must be judged invalid, with
//! exactly that message lost — at every reader and in PostgreSQL — and
//! nothing else wrong.

use std::time::Duration;

use rtmc_chaos::{AnomalyKind, ChaosStack, StackOptions};
use rtmc_testkit::{PipelineOptions, Role};

use crate::workload::{readers, report, Workload};

const READERS: usize = 4;
const RATE_PER_SEC: u32 = 10;

/// Guarantee checked: the checker catches a loss. The consumer acks message
/// `drop-h-15` to RabbitMQ without appending it; everything else flows.
/// The verdict must be invalid with `lost == ["drop-h-15"]`, one `lost`
/// anomaly per reader plus one `lost_in_postgres`, and no other anomaly of
/// any kind (no gap: the dropped message never got a seq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_flags_exactly_the_message_the_consumer_dropped() {
    let dropped = "drop-h-15";
    let pipeline = PipelineOptions::default().per_component(move |role, cfg| {
        if role == Role::Consumer {
            cfg.consumer.test_drop_message_id = dropped.to_owned();
        }
    });
    let stack = ChaosStack::shared(StackOptions::default().pipeline(pipeline))
        .await
        .unwrap();
    let clients = readers(&stack, "drop", READERS, 0).await;
    let load = Workload::start(&stack, clients, "drop", RATE_PER_SEC);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut run = load.finish(Duration::from_secs(3)).await;
    let verdict = run.verdict(stack.pipeline()).await;
    report("consumer drop", &run, &[]);
    println!("{verdict}");

    assert!(
        run.acked().any(|p| p.id == dropped),
        "{dropped} was not acknowledged: the test did not exercise the fault"
    );
    assert!(!verdict.valid, "a dropped message passed the checker");
    assert_eq!(verdict.lost, [dropped], "{verdict}");
    assert!(verdict.unexpected.is_empty(), "{verdict}");
    assert_eq!(
        verdict.count(AnomalyKind::Lost),
        READERS as u64,
        "{verdict}"
    );
    assert_eq!(verdict.count(AnomalyKind::LostInPostgres), 1, "{verdict}");
    let others: Vec<_> = verdict
        .anomaly_counts
        .iter()
        .filter(|(k, _)| !matches!(k, AnomalyKind::Lost | AnomalyKind::LostInPostgres))
        .collect();
    assert!(others.is_empty(), "other anomalies: {others:?}\n{verdict}");
    for c in &verdict.clients {
        assert_eq!(c.lost, 1, "{c:?}");
        assert_eq!((c.gaps, c.order_violations), (0, 0), "{c:?}");
    }
    assert_eq!(verdict.stored.as_ref().map(|s| s.lost), Some(1));
}
