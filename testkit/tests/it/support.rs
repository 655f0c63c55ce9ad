//! Helpers shared by the suites.

use std::collections::BTreeMap;
use std::time::Duration;

use rtmc::client::ChatClient;
use rtmc::protocol::BroadcastFrame;

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

pub fn init_logs() {
    rtmc_testkit::init_test_logs();
}
