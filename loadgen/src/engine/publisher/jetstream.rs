//! The JetStream peer's publisher: each publish awaited for its `PubAck`
//! (the message is in the stream's file store), many in flight.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rtmc::protocol::now_us;

use super::share::{ChannelShare, PublishError, PublishOutcome};

/// JetStream acks awaited at once at most (async-nats's default is 5,000,
/// with publishes waiting for room): never the publisher's limit.
pub(super) const JETSTREAM_MAX_ACKS_IN_FLIGHT: usize = 1 << 20;

pub(super) async fn publish_jetstream(
    url: &str,
    subject: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| PublishError::Nats(format!("connect to {url}: {e}")))?;
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(share.ack_timeout)
        .max_ack_inflight(JETSTREAM_MAX_ACKS_IN_FLIGHT)
        .build(client);
    let (schedule, live) = (share.schedule, share.live.clone());
    let subject = async_nats::Subject::from(subject);
    let mut outcome = PublishOutcome::default();
    let mut acks = tokio::task::JoinSet::new();
    let mut answered = 0u64;
    // One publisher, like the floor's: it sends every tick, each when due.
    for i in 0..schedule.total {
        tokio::time::sleep_until(schedule.due(i)).await;
        let payload = share
            .shape
            .floor_payload(schedule.seq_base + i, schedule.intended_us(i));
        match js.publish(subject.clone(), payload.into()).await {
            Ok(ack) => {
                outcome.published += 1;
                live.published.fetch_add(1, Ordering::Relaxed);
                acks.spawn(async move { (i, ack.await) });
            }
            Err(e) => outcome.fail(&live, e.to_string()),
        }
        while let Some(done) = acks.try_join_next() {
            answered += count_pub_ack(&mut outcome, &share, done);
        }
    }
    let end = share.answers_deadline();
    while let Ok(Some(done)) = tokio::time::timeout_at(end, acks.join_next()).await {
        answered += count_pub_ack(&mut outcome, &share, done);
    }
    outcome.unanswered = outcome.published.saturating_sub(answered);
    Ok(outcome)
}

/// A finished ack task: the tick and what its `PubAck` future gave.
pub(super) type AwaitedAck = Result<
    (
        u64,
        Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
    ),
    tokio::task::JoinError,
>;

/// Counts one awaited `PubAck` (ack or refusal); 1 when it was an answer,
/// 0 when none came in time.
pub(super) fn count_pub_ack(
    outcome: &mut PublishOutcome,
    share: &ChannelShare,
    done: AwaitedAck,
) -> u64 {
    use async_nats::jetstream::context::PublishErrorKind;
    let schedule = share.schedule;
    match done {
        Ok((i, Ok(_))) => {
            let latency_us = now_us().saturating_sub(schedule.intended_us(i));
            outcome.ack(&share.live, latency_us, schedule.seq_base + i);
            1
        }
        Ok((_, Err(e))) if e.kind() == PublishErrorKind::TimedOut => 0,
        Ok((_, Err(e))) => {
            outcome.fail(&share.live, e.to_string());
            1
        }
        Err(e) => {
            outcome.sample_error(e.to_string());
            0
        }
    }
}
