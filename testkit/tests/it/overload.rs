//! Graceful overload: with the publisher's in-flight bound reached, a publish
//! is refused at once and explicitly — HTTP 503 `overloaded` with
//! `Retry-After`, a TCP `error` `overloaded` naming the `message_id` — and
//! every message that was acknowledged is stored, none that was refused.
//! A tiny bound and a burst force the overload; no timing is asserted.

use std::collections::BTreeSet;
use std::time::Duration;

use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use rtmc_testkit::{Pipeline, PipelineOptions};

use crate::support::metric;

/// Messages in one burst.
const BURST: usize = 120;
/// Bursts tried at most until one was refused in part.
const MAX_BURSTS: usize = 5;
/// How long the stored rows may take to appear.
const STORED_LIMIT: Duration = Duration::from_secs(60);

/// This process's count of a metric over the series matching `label`.
fn counted(name: &str, label: &str) -> f64 {
    metric(&rtmc::telemetry::metrics().render(), name, label)
}

/// The answer to one `POST /v1/service/messages`.
struct HttpAnswer {
    id: String,
    status: u16,
    code: Option<String>,
    message: Option<String>,
    retry_after: Option<String>,
}

async fn post_with_id(p: &Pipeline, id: String) -> HttpAnswer {
    let resp = p
        .http
        .post(format!("{}/v1/service/messages", p.gateway_url()))
        .header("x-api-key", p.api_key())
        .json(&serde_json::json!({"sender": "svc", "body": "burst", "message_id": id}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    HttpAnswer {
        id,
        status,
        code: body["code"].as_str().map(str::to_owned),
        message: body["message"].as_str().map(str::to_owned),
        retry_after,
    }
}

/// The stored message ids once PostgreSQL holds `acked` rows, checked to be
/// exactly the acknowledged ones.
async fn assert_stored_exactly(p: &Pipeline, acked: &BTreeSet<String>) {
    let rows = p
        .await_stored_messages(acked.len(), STORED_LIMIT)
        .await
        .unwrap();
    let stored: BTreeSet<String> = rows.into_iter().map(|(_, id)| id).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    let unexpected: Vec<_> = stored.difference(acked).collect();
    assert!(
        lost.is_empty() && unexpected.is_empty(),
        "acknowledged but not stored: {lost:?}; stored but refused: {unexpected:?}"
    );
}

/// Bursts of `BURST` concurrent posts `<prefix>-<burst>-<i>` until one is
/// refused in part (at most `MAX_BURSTS`). Every answer must be a 202 or a
/// 503 `overloaded` with `Retry-After: 1`; returns the acknowledged ids and
/// the refusals' messages.
async fn http_bursts_until_refused(p: &Pipeline, prefix: &str) -> (BTreeSet<String>, Vec<String>) {
    let (mut acked, mut refused) = (BTreeSet::new(), Vec::new());
    for burst in 0..MAX_BURSTS {
        let answers = futures::future::join_all(
            (0..BURST).map(|i| post_with_id(p, format!("{prefix}-{burst}-{i}"))),
        )
        .await;
        for a in answers {
            match (a.status, a.code.as_deref()) {
                (202, _) => {
                    acked.insert(a.id);
                }
                (503, Some("overloaded")) => {
                    assert_eq!(a.retry_after.as_deref(), Some("1"), "{}", a.id);
                    refused.push(a.message.unwrap_or_default());
                }
                (s, code) => panic!("{}: unexpected answer {s} {code:?}", a.id),
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(
        !refused.is_empty(),
        "{MAX_BURSTS} bursts of {BURST} concurrent posts against a bound of 2 were never refused"
    );
    assert!(!acked.is_empty(), "nothing was accepted at all");
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_overload_is_a_503_with_retry_after_and_loses_nothing_acknowledged() {
    let p = Pipeline::shared(
        PipelineOptions::default().configure(|c| c.rabbitmq.max_inflight_publishes = 2),
    )
    .await
    .unwrap();
    let refusals_before = counted("rtmc_gateway_rejected_total", "code=\"overloaded\"");
    let overloaded_before = counted("rtmc_publish_overloaded_total", "");
    let (acked, refused) = http_bursts_until_refused(&p, "ovh").await;
    let refused = refused.len() as f64;
    assert!(
        counted("rtmc_gateway_rejected_total", "code=\"overloaded\"") >= refusals_before + refused
    );
    assert!(counted("rtmc_publish_overloaded_total", "") >= overloaded_before + refused);
    assert_stored_exactly(&p, &acked).await;
}

/// The gateway's own bound: with `gateway.max_inflight_requests` reached
/// (and the publisher's confirm bound far away) a post is refused at once,
/// before its body is read, with the same 503 `overloaded` and `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_request_bound_sheds_posts_with_503_and_loses_nothing_acknowledged() {
    let p = Pipeline::shared(PipelineOptions::default().configure(|c| {
        c.gateway.max_inflight_requests = 2;
        c.rabbitmq.max_inflight_publishes = 100_000;
    }))
    .await
    .unwrap();
    let shed_before = counted("rtmc_gateway_shed_total", "");
    let (acked, refused) = http_bursts_until_refused(&p, "ovg").await;
    for message in &refused {
        assert!(
            message.contains("requests already in flight at this gateway"),
            "the request bound refuses, not the confirm bound of 100,000: {message}"
        );
    }
    assert!(counted("rtmc_gateway_shed_total", "") >= shed_before + refused.len() as f64);
    assert_stored_exactly(&p, &acked).await;
}

/// What a connection answered to one pipelined burst of sends.
#[derive(Default)]
struct TcpAnswers {
    acked: BTreeSet<String>,
    /// Refused with `overloaded`: the id and the message.
    refused: Vec<(String, String)>,
}

/// Sends `BURST` messages `<prefix>-<i>` without reading, then reads until
/// each has its answer: a `send_ack` or an `overloaded` error naming it.
async fn tcp_burst(c: &mut rtmc::client::Connection, prefix: &str) -> TcpAnswers {
    let ids: BTreeSet<String> = (0..BURST).map(|i| format!("{prefix}-{i}")).collect();
    for id in &ids {
        c.send(&ClientCommand::Send {
            room: None,
            to: None,
            body: "burst".into(),
            message_id: Some(id.clone()),
            sent_at_us: None,
        })
        .await
        .unwrap();
    }
    let mut answers = TcpAnswers::default();
    while answers.acked.len() + answers.refused.len() < ids.len() {
        match c.recv_timeout(Duration::from_secs(30)).await.unwrap() {
            ServerFrame::SendAck { message_id, .. } => {
                answers.acked.insert(message_id);
            }
            ServerFrame::Error {
                code: ErrorCode::Overloaded,
                message_id: Some(id),
                message,
                ..
            } => {
                assert!(ids.contains(&id), "a refusal names an unknown id {id}");
                answers.refused.push((id, message));
            }
            ServerFrame::Broadcast(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    answers
}

/// Bursts on `c` until one is refused in part (at most `MAX_BURSTS`);
/// every answer of every burst.
async fn tcp_bursts_until_refused(c: &mut rtmc::client::Connection, prefix: &str) -> TcpAnswers {
    let mut all = TcpAnswers::default();
    for burst in 0..MAX_BURSTS {
        let answers = tcp_burst(c, &format!("{prefix}-{burst}")).await;
        all.acked.extend(answers.acked);
        all.refused.extend(answers.refused);
        if !all.refused.is_empty() {
            break;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_overload_is_an_error_naming_the_message_and_loses_nothing_acknowledged() {
    let p = Pipeline::shared(
        PipelineOptions::default().configure(|c| c.rabbitmq.max_inflight_publishes = 2),
    )
    .await
    .unwrap();
    let user = p.add_user("ov").await.unwrap();
    let (mut c, _) = p.raw_login(0, &user).await.unwrap();
    let refusals_before = counted("rtmc_rejected_total", "code=\"overloaded\"");
    let answers = tcp_bursts_until_refused(&mut c, "ovt").await;
    assert!(
        !answers.refused.is_empty(),
        "{MAX_BURSTS} pipelined bursts of {BURST} sends against a bound of 2 were never refused"
    );
    assert!(!answers.acked.is_empty(), "nothing was accepted at all");
    assert!(
        answers
            .refused
            .iter()
            .all(|(id, _)| !answers.acked.contains(id)),
        "a message both acked and refused"
    );
    assert!(
        counted("rtmc_rejected_total", "code=\"overloaded\"")
            >= refusals_before + answers.refused.len() as f64
    );
    assert_stored_exactly(&p, &answers.acked).await;
}

/// The per-connection bound refuses too, with the same code and id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_inflight_sends_is_refused_not_stalled() {
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_inflight_sends = 1))
            .await
            .unwrap();
    let user = p.add_user("ovc").await.unwrap();
    let (mut c, _) = p.raw_login(0, &user).await.unwrap();
    let answers = tcp_bursts_until_refused(&mut c, "ovc").await;
    assert!(
        !answers.refused.is_empty(),
        "a connection bound of 1 was never reached"
    );
    for (_, message) in &answers.refused {
        assert!(message.contains("this connection"), "{message}");
    }
    assert_stored_exactly(&p, &answers.acked).await;
}
