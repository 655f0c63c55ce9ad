//! The HTTP publisher: `POST /v1/service/messages` with the API key, a
//! bounded number in flight; `202` is the ack.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rtmc::protocol::now_us;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::share::{ChannelShare, PublishError, PublishOutcome};
use crate::engine::live::LiveStats;
use crate::wire::rtmc_frames::{self};

pub(super) async fn publish_http(
    base_url: &str,
    api_key: &str,
    concurrency: usize,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(share.ack_timeout)
        .build()
        .map_err(|e| PublishError::Http(e.to_string()))?;
    let url = format!("{}/v1/service/messages", base_url.trim_end_matches('/'));
    let schedule = share.schedule;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let outcome = Arc::new(std::sync::Mutex::new(PublishOutcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in share.ticks() {
        tokio::time::sleep_until(schedule.due(i)).await;
        // Waiting for a permit delays the send, never the intended time.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let seq = schedule.seq_base + i;
        let body = share
            .shape
            .http_body(share.index, seq, schedule.intended_us(i));
        let req = client.post(&url).header("x-api-key", api_key).json(&body);
        share.live.published.fetch_add(1, Ordering::Relaxed);
        let intended_us = schedule.intended_us(i);
        let (live, outcome) = (share.live.clone(), outcome.clone());
        let observed = share.observer.clone().map(|o| {
            let id = rtmc_frames::message_id(share.shape.origin(share.index, seq));
            o.invoked(share.index, &id);
            (o, share.index, id)
        });
        tasks.spawn(async move {
            let answer = post_message(req, seq, intended_us, live, outcome, permit).await;
            if let Some((o, channel, id)) = observed {
                match answer {
                    Some(202) => o.acked(channel, &id),
                    Some(status) => o.refused(channel, &id, &format!("http_{status}")),
                    None => o.unanswered(channel, &id),
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(share.ack_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let mut o = match outcome.lock() {
        Ok(mut o) => std::mem::take(&mut *o),
        Err(_) => PublishOutcome::default(),
    };
    o.published = share.ticks().count() as u64;
    o.unanswered = o.published.saturating_sub(o.acked + o.errors);
    Ok(o)
}

/// Sends one `POST /v1/service/messages` and counts its answer: `202` is the ack.
/// Returns the status, `None` when no answer came.
pub(super) async fn post_message(
    req: reqwest::RequestBuilder,
    seq: u64,
    intended_us: u64,
    live: Arc<LiveStats>,
    outcome: Arc<std::sync::Mutex<PublishOutcome>>,
    permit: OwnedSemaphorePermit,
) -> Option<u16> {
    let result = req.send().await;
    drop(permit);
    let latency_us = now_us().saturating_sub(intended_us);
    let status = result.as_ref().ok().map(|r| r.status().as_u16());
    let Ok(mut o) = outcome.lock() else {
        return status;
    };
    match result {
        Ok(r) if r.status().as_u16() == 202 => o.ack(&live, latency_us, seq),
        Ok(r) => o.refuse(&live, latency_us, format!("HTTP {}", r.status())),
        Err(e) => o.fail(&live, e.to_string()),
    }
    status
}
