//! Steps and checks shared by the suites: publishing numbered messages,
//! publishers under load and the longest time without an arrival, reading
//! broadcasts and judging their order, reading a connection to its
//! end, refusals, metric values, and waiting for a condition. Starting a
//! stack and its typed helpers are the kit's job (`rtmc_testkit`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::time::Duration;

use rtmc::client::{ChatClient, ClientError, Connection};
use rtmc::protocol::{BroadcastFrame, ErrorCode, ServerFrame};
use rtmc_testkit::Pipeline;

/// Reads broadcasts until `expected` arrived or `limit` passed; returns them in order.
pub async fn collect(
    client: &mut ChatClient,
    expected: usize,
    limit: Duration,
) -> Vec<BroadcastFrame> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < expected {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match client.next_broadcast(left).await {
            Ok(b) => got.push(b),
            Err(_) => break,
        }
    }
    got
}

/// Asserts `got` is exactly seqs `first..first+n` in order and returns message ids by seq.
pub fn assert_gap_free(got: &[BroadcastFrame], first: u64) -> BTreeMap<u64, String> {
    for (i, b) in got.iter().enumerate() {
        assert_eq!(
            b.seq,
            first + i as u64,
            "sequence gap or reorder at index {i}"
        );
    }
    got.iter().map(|b| (b.seq, b.message_id.clone())).collect()
}

/// Reads frames until the server closes the connection and returns them;
/// fails if it is still open after `limit`.
pub async fn until_closed(c: &mut Connection, limit: Duration) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        while let Ok(f) = c.recv().await {
            frames.push(f);
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "connection not closed within {limit:?}; got {} frames, the last {:?}",
        frames.len(),
        frames.last()
    );
    frames
}

/// Asserts the server refused a request with an error frame of `code`.
pub fn assert_refused<T: Debug>(result: Result<T, ClientError>, code: ErrorCode) {
    assert!(
        matches!(&result, Err(ClientError::Server { code: got, .. }) if *got == code),
        "expected a {code:?} refusal, got {result:?}"
    );
}

/// The value of metric `name` in Prometheus text `metrics`, summed over the
/// series whose labels contain `label` ("" for every series); 0 when absent.
pub fn metric(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs `probe` every `every` until it succeeds and returns its value;
/// panics with the last probe's account of what it saw once `limit` passed.
pub async fn eventually<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{seen} (waited {limit:?})"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Publishes messages `<id_prefix>-<i>` for each `i` in `range` over the
/// gateway, asserting each is acknowledged (202); returns their ids in order.
pub async fn post_numbered(
    p: &Pipeline,
    id_prefix: &str,
    range: Range<usize>,
    body: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        let id = format!("{id_prefix}-{i}");
        let (status, reply) = p.post_message("svc", body, Some(&id)).await.unwrap();
        assert_eq!(status, 202, "{id}: {reply}");
        ids.push(id);
    }
    ids
}

/// The code of `frame` when it is an error frame.
pub fn error_code(frame: Option<&ServerFrame>) -> Option<ErrorCode> {
    match frame {
        Some(ServerFrame::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Reads the next frame within `limit`; it must be an error frame, whose
/// code and message are returned.
pub async fn next_error(c: &mut Connection, limit: Duration) -> (ErrorCode, String) {
    match c.recv_timeout(limit).await.unwrap() {
        ServerFrame::Error { code, message, .. } => (code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Starts one TCP publisher per user of `users` on server node 0, each
/// sending `<user>-<n>` every `interval` until `until`; each returns the ids
/// it was acknowledged (`send_ack`). Refused sends are left out.
pub fn spawn_publishers(
    p: &std::sync::Arc<Pipeline>,
    users: &[String],
    interval: Duration,
    until: tokio::time::Instant,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    users
        .iter()
        .map(|user| {
            let (p, user) = (p.clone(), user.clone());
            tokio::spawn(async move {
                let mut client = p.client(0, &user).await.expect("publisher connects");
                let mut acked = Vec::new();
                let mut n = 0;
                while tokio::time::Instant::now() < until {
                    let id = format!("{user}-{n}");
                    n += 1;
                    if client.send("load", Some(&id)).await.is_ok() {
                        acked.push(id);
                    }
                    tokio::time::sleep(interval).await;
                }
                acked
            })
        })
        .collect()
}

/// Every id the publishers of [`spawn_publishers`] were acknowledged.
pub async fn acked_ids(
    publishers: Vec<tokio::task::JoinHandle<Vec<String>>>,
) -> std::collections::BTreeSet<String> {
    let mut acked = std::collections::BTreeSet::new();
    for publisher in publishers {
        acked.extend(publisher.await.expect("a publisher task"));
    }
    acked
}

/// The longest stretch after `from` without an arrival.
pub fn longest_silence(
    arrivals: impl Iterator<Item = tokio::time::Instant>,
    from: tokio::time::Instant,
) -> Duration {
    let mut times: Vec<tokio::time::Instant> = arrivals.filter(|t| *t >= from).collect();
    times.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in times {
        longest = longest.max(t - last);
        last = t;
    }
    longest
}
