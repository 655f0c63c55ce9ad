//! The HTTP publisher: `POST /v1/service/messages` with the API key, a
//! bounded number in flight; `202` is the ack.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::share::{ChannelShare, PublishError, PublishOutcome};
use crate::engine::live::LiveStats;
use crate::measure::observe::PublishObserver;
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
    let mut sent = 0u64;
    for i in share.ticks() {
        if !share.until_due(i).await {
            break;
        }
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
        sent += 1;
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
                tell_observer(&*o, channel, &id, answer).await;
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
    o.published = sent;
    o.unanswered = o.published.saturating_sub(o.acked + o.errors);
    Ok(o)
}

/// Sends one `POST /v1/service/messages` and counts its answer: `202` is the ack.
/// Returns the status and the response (its body unread), `None` when no
/// answer came.
pub(super) async fn post_message(
    req: reqwest::RequestBuilder,
    seq: u64,
    intended_us: u64,
    live: Arc<LiveStats>,
    outcome: Arc<std::sync::Mutex<PublishOutcome>>,
    permit: OwnedSemaphorePermit,
) -> Option<(u16, reqwest::Response)> {
    let result = req.send().await;
    drop(permit);
    let latency_us = live.run_clock_us().saturating_sub(intended_us);
    if let Ok(mut o) = outcome.lock() {
        match &result {
            Ok(r) if r.status().as_u16() == 202 => o.ack(&live, latency_us, seq),
            Ok(r) => o.refuse(&live, latency_us, format!("HTTP {}", r.status())),
            Err(e) => o.fail(&live, e.to_string()),
        }
    }
    result.ok().map(|r| (r.status().as_u16(), r))
}

/// Tells `o` how the publish of `id` on `channel` was answered.
async fn tell_observer(
    o: &dyn PublishObserver,
    channel: u32,
    id: &str,
    answer: Option<(u16, reqwest::Response)>,
) {
    match answer {
        Some((202, _)) => o.acked(channel, id),
        Some((status, response)) => o.refused(channel, id, &refusal_code(status, response).await),
        None => o.unanswered(channel, id),
    }
}

/// The error code of a refused publish, for an observer: the `code` of the
/// gateway's `{"error": …, "code": …}` body (`broker_unavailable`,
/// `rate_limited`…), or `http_<status>` when the body has none. Read only
/// when an observer is set, after the answer was counted and timed.
pub(super) async fn refusal_code(status: u16, response: reqwest::Response) -> String {
    let body: Option<serde_json::Value> = response.json().await.ok();
    code_of(status, body.as_ref())
}

/// `body["code"]` if it is a non-empty string, else `http_<status>`.
fn code_of(status: u16, body: Option<&serde_json::Value>) -> String {
    match body.and_then(|b| b["code"].as_str()) {
        Some(code) if !code.is_empty() => code.to_owned(),
        _ => format!("http_{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::code_of;

    #[test]
    fn a_refusal_is_named_by_the_gateways_code() {
        let body = serde_json::json!({"error": "broker down", "code": "broker_unavailable"});
        assert_eq!(code_of(503, Some(&body)), "broker_unavailable");
    }

    #[test]
    fn a_refusal_without_a_code_is_named_by_its_status() {
        assert_eq!(code_of(503, None), "http_503");
        let body = serde_json::json!({"error": "bad gateway"});
        assert_eq!(code_of(502, Some(&body)), "http_502");
        assert_eq!(
            code_of(500, Some(&serde_json::json!({"code": ""}))),
            "http_500"
        );
    }
}
