//! The history checker end to end: a real stack whose consumer loses one
//! message on purpose (rtmc-system's test-only feature `test-consumer-drop`,
//! enabled by this crate's dev-dependency only) must be judged invalid, with
//! exactly that message lost — at every reader and in PostgreSQL — and
//! nothing else wrong.

use std::time::{Duration, Instant};

use rtmc_chaos::scenario::load::{LoadChoices, RecordedLoad};
use rtmc_chaos::{AnomalyKind, ChaosStack, StackOptions};
use rtmc_loadgen::wire::rtmc_frames::{message_id, MessageOrigin};
use rtmc_testkit::{PipelineOptions, Role};

use crate::recorded::{acked, light_load};

const READERS: usize = 4;
const RATE_PER_SEC: u32 = 10;

/// Guarantee checked: the checker catches a loss. The consumer acks the
/// load's 16th message over the gateway (`lg<run id>-0-15`, known in
/// advance from the run id the suite picks) to RabbitMQ without appending
/// it; everything else flows. The verdict must be invalid with `lost ==
/// [that id]`, one `lost` anomaly per reader plus one `lost_in_postgres`,
/// and no other anomaly of any kind (no gap: the dropped message never got
/// a seq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_flags_exactly_the_message_the_consumer_dropped() {
    let run_id: u32 = rand::random();
    let dropped = message_id(MessageOrigin {
        run_id,
        publisher: 0,
        publisher_seq: 15,
    });
    let drop_id = dropped.clone();
    let pipeline = PipelineOptions::default().per_component(move |role, cfg| {
        if role == Role::Consumer {
            cfg.consumer.test_drop_message_id = drop_id.clone();
        }
    });
    let stack = ChaosStack::shared(StackOptions::default().pipeline(pipeline))
        .await
        .unwrap();
    let choices = LoadChoices {
        run_id: Some(run_id),
        ..LoadChoices::default()
    };
    let load = light_load(READERS, RATE_PER_SEC, Duration::from_secs(4));
    let mut driver = RecordedLoad::connect_with(&stack, "drop", &load, true, choices)
        .await
        .expect("every client logs in");
    let phase = driver.publish(Instant::now()).await;
    let history = driver
        .finish(&stack, phase.report.head_after)
        .await
        .expect("every log handed back");
    let verdict = history.check();
    println!("{verdict}");

    assert!(
        acked(&history, &dropped),
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
