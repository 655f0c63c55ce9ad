//! Logs (`tracing`) and the process-wide Prometheus recorder: every metric
//! is described here (its `# HELP`), latency histograms get fixed buckets,
//! and [`render`] orders the series so that two scrapes list them alike.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of every `*_seconds` histogram.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of the outbound queue depth histogram, in frames.
const QUEUE_BUCKETS_FRAMES: &[f64] = &[0.0, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

/// Kind of a metric, for its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the system reports: name, kind, help. A test checks that
/// a scrape shows nothing undescribed.
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("rtmc_broker_connects_total", Kind::Counter, "Connections opened to RabbitMQ by publishers."),
    ("rtmc_client_duplicates_total", Kind::Counter, "Broadcasts a ChatClient dropped as already seen (by seq)."),
    ("rtmc_commands_total", Kind::Counter, "Client commands received, by command."),
    ("rtmc_connections_refused_total", Kind::Counter, "TCP connections refused at server.max_connections."),
    ("rtmc_connections_total", Kind::Counter, "TCP connections accepted."),
    ("rtmc_connections_active", Kind::Gauge, "TCP connections open now."),
    ("rtmc_consumer_acks_total", Kind::Counter, "Deliveries acked by the consumer after the Redis write."),
    ("rtmc_consumer_appended_total", Kind::Counter, "Messages appended to the Redis stream."),
    ("rtmc_consumer_append_seconds", Kind::Histogram, "Time to append one consumer batch to the Redis stream, retries included."),
    ("rtmc_consumer_broker_errors_total", Kind::Counter, "Times the consumer lost the broker and reconnected."),
    ("rtmc_consumer_dead_letters_total", Kind::Counter, "Malformed messages moved to the dead-letter queue."),
    ("rtmc_consumer_duplicates_total", Kind::Counter, "Redelivered message ids the consumer did not append again."),
    ("rtmc_consumer_received_total", Kind::Counter, "Deliveries the consumer took from the queue."),
    ("rtmc_consumer_redelivered_total", Kind::Counter, "Deliveries flagged as redelivered by RabbitMQ."),
    ("rtmc_consumer_redis_retries_total", Kind::Counter, "Failed Redis appends retried with back-off."),
    ("rtmc_consumer_replica_shortfalls_total", Kind::Counter, "Appends fewer replicas than redis.min_replicas_acked acknowledged in time; not acked to RabbitMQ, appended again."),
    ("rtmc_deliveries_total", Kind::Counter, "Broadcast frames queued to sessions."),
    ("rtmc_fanout_lag_seconds", Kind::Histogram, "From a server's receipt of a message (received_at_us, its own clock) to its fan-out by a server node (last entry of each stream read)."),
    ("rtmc_gateway_accepted_total", Kind::Counter, "Messages the gateway published with a broker confirm (202)."),
    ("rtmc_gateway_rejected_total", Kind::Counter, "Gateway requests refused, by error code."),
    ("rtmc_gateway_shed_total", Kind::Counter, "Publishing requests refused at once because gateway.max_inflight_requests were in flight (503 overloaded)."),
    ("rtmc_http_request_duration_seconds", Kind::Histogram, "HTTP request duration, by route template, method and status."),
    ("rtmc_logins_total", Kind::Counter, "TCP logins, by result."),
    ("rtmc_outbound_queue_frames", Kind::Histogram, "Frames queued to a session when a broadcast is added."),
    ("rtmc_postgres_primary_switches_total", Kind::Counter, "Times another PostgreSQL node took writes and the relay moved to it."),
    ("rtmc_postgres_relay_connect_failures_total", Kind::Counter, "Connections the PostgreSQL relay could not open to the node that takes writes."),
    ("rtmc_publish_confirm_seconds", Kind::Histogram, "From publish to broker confirm (or failure), per message."),
    ("rtmc_publish_confirmed_total", Kind::Counter, "Publishes confirmed by the broker."),
    ("rtmc_presence_entries_skipped_total", Kind::Counter, "Presence stream entries a node's follower could not read as a presence change (skipped)."),
    ("rtmc_presence_events_total", Kind::Counter, "presence frames queued to sessions watching their rooms' members on this node."),
    ("rtmc_publish_failed_total", Kind::Counter, "Publishes that failed or were not confirmed."),
    ("rtmc_publish_inflight", Kind::Gauge, "Chat messages awaiting the broker's confirm now (bounded by rabbitmq.max_inflight_publishes per publisher)."),
    ("rtmc_publish_overloaded_total", Kind::Counter, "Chat messages refused at once with `overloaded`: the publisher already awaited rabbitmq.max_inflight_publishes confirms."),
    ("rtmc_rate_limited_total", Kind::Counter, "Requests refused by a rate limit, by kind."),
    ("rtmc_redis_primary_switches_total", Kind::Counter, "Times the Sentinels named a new Redis primary and the relay moved to it."),
    ("rtmc_redis_relay_connect_failures_total", Kind::Counter, "Connections the Redis relay could not open to the primary the Sentinels named."),
    ("rtmc_rejected_total", Kind::Counter, "Error frames sent to clients, by code."),
    ("rtmc_resume_replayed_total", Kind::Counter, "Messages replayed to resuming clients (lobby and rooms)."),
    ("rtmc_room_deliveries_total", Kind::Counter, "Room broadcast frames queued to the sessions of the room's members on this node."),
    ("rtmc_room_invites_total", Kind::Counter, "Users made members of a room by an invite."),
    ("rtmc_room_joins_total", Kind::Counter, "Room subscriptions started by join and create_room."),
    ("rtmc_room_slow_consumers_total", Kind::Counter, "Sessions cut off because a room frame found their queue full."),
    ("rtmc_rooms_created_total", Kind::Counter, "Rooms created (create_room, and direct rooms on first use)."),
    ("rtmc_rooms_local", Kind::Gauge, "Rooms with at least one subscribed session on this node."),
    ("rtmc_sends_total", Kind::Counter, "TCP sends answered, by result."),
    ("rtmc_sessions_closed_total", Kind::Counter, "Sessions ended (logout, disconnect, expiry)."),
    ("rtmc_sessions_expired_total", Kind::Counter, "Sessions ended by the expiry sweep."),
    ("rtmc_sessions_opened_total", Kind::Counter, "Sessions opened."),
    ("rtmc_shard_entries_read_total", Kind::Counter, "Shard stream entries (room messages and membership changes) read by server nodes' shard followers."),
    ("rtmc_slow_consumer_disconnects_total", Kind::Counter, "Sessions cut off for reading too slowly."),
    ("rtmc_status_cache_total", Kind::Counter, "Presence lookups, by cache result."),
    ("rtmc_stream_entries_read_total", Kind::Counter, "Stream entries read by server nodes' followers."),
    ("rtmc_sync_batch_seconds", Kind::Histogram, "Time to copy one batch into PostgreSQL (insert + cursor, one transaction)."),
    ("rtmc_sync_errors_total", Kind::Counter, "Sync steps that failed and were retried."),
    ("rtmc_sync_lag_messages", Kind::Gauge, "Messages in the stream not yet copied to PostgreSQL."),
    ("rtmc_sync_room_lag_messages", Kind::Gauge, "Entries of the room shard streams not yet copied to PostgreSQL."),
    ("rtmc_sync_rows_total", Kind::Counter, "Rows the sync worker inserted into PostgreSQL."),
    ("rtmc_sync_trimmed_total", Kind::Counter, "Stream entries trimmed after PostgreSQL held them."),
    ("rtmc_tls_handshake_failures_total", Kind::Counter, "TLS handshakes that failed or timed out."),
];

/// The label values each labelled counter starts with at 0 (so a dashboard
/// finds the series before the first event): one label, its known values.
/// Counters without labels start at 0 without being listed here.
pub const LABELLED_COUNTERS: &[(&str, &str, &[&str])] = &[
    (
        "rtmc_commands_total",
        "command",
        &[
            "login",
            "heartbeat",
            "send",
            "resume",
            "status",
            "get_status",
            "logout",
            "create_room",
            "join",
            "leave",
            "invite",
            "rooms",
            "members",
            "history",
            "watch_presence",
        ],
    ),
    (
        "rtmc_gateway_rejected_total",
        "code",
        &[
            "auth_failed",
            "bad_json",
            "broker_unavailable",
            "invalid_field",
            "login_unavailable",
            "method_not_allowed",
            "not_found",
            "overloaded",
            "payload_too_large",
            "rate_limited",
            "session_store_unavailable",
            "unauthorized",
        ],
    ),
    (
        "rtmc_logins_total",
        "result",
        &["ok", "auth_failed", "throttled", "error"],
    ),
    (
        "rtmc_rate_limited_total",
        "kind",
        &[
            "frames",
            "login",
            "login_connection",
            "send",
            "join",
            "invite",
        ],
    ),
    (
        "rtmc_rejected_total",
        "code",
        &[
            "bad_frame",
            "frame_too_large",
            "unknown_command",
            "invalid_field",
            "not_logged_in",
            "auth_failed",
            "already_logged_in",
            "login_timeout",
            "heartbeat_timeout",
            "broker_unavailable",
            "overloaded",
            "slow_consumer",
            "rate_limited",
            "too_many_connections",
            "shutting_down",
            "resume_unavailable",
            "internal",
            "invalid_room",
            "unknown_room",
            "not_a_member",
            "room_exists",
            "too_many_rooms",
            "room_full",
            "lobby_is_implicit",
            "unsupported_protocol",
        ],
    ),
    ("rtmc_sends_total", "result", &["ack", "overloaded"]),
    ("rtmc_status_cache_total", "result", &["hit", "miss"]),
];

/// The Prometheus recorder, installed on first use. Every component in the
/// process reports into it; `/metrics` renders it through [`render`].
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("rtmc_outbound_queue_frames".into()),
                    QUEUE_BUCKETS_FRAMES,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then ours just renders empty.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// Describes every metric and registers every counter at 0: a counter is
/// exported from start-up, not only once it first counts.
fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
        if kind != Kind::Counter {
            continue;
        }
        match LABELLED_COUNTERS.iter().find(|c| c.0 == name) {
            Some(&(_, label, values)) => {
                for &value in values {
                    metrics::counter!(name, label => value).increment(0);
                }
            }
            None => metrics::counter!(name).increment(0),
        }
    }
}

/// The Prometheus text of every metric, with the series of each metric in
/// a stable order (by label set; a histogram's buckets stay in `le` order).
pub fn render() -> String {
    sort_series(&metrics().render())
}

/// Orders the metric families by name and, within each, the sample lines
/// by their labels (without `le`), then bucket / sum / count; a family's
/// `# HELP` / `# TYPE` lines stay at its head.
pub fn sort_series(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let comment = line.starts_with('#');
        let starts_family = match families.last() {
            None => true,
            Some((_, _, samples)) => comment && !samples.is_empty(),
        };
        if starts_family {
            families.push((family_name(line), Vec::new(), Vec::new()));
        }
        let (_, comments, samples) = families.last_mut().expect("pushed above");
        if comment {
            comments.push(line);
        } else {
            samples.push(line);
        }
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, comments, mut samples) in families {
        // Stable: the buckets of one series keep their `le` order.
        samples.sort_by_key(|l| sample_key(l));
        for l in comments.into_iter().chain(samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The family a line belongs to: the name in `# HELP name …` / `# TYPE
/// name …`, or a sample's metric name.
fn family_name(line: &str) -> String {
    let name = match line.strip_prefix('#') {
        Some(rest) => rest.split_whitespace().nth(1).unwrap_or(""),
        None => line.split(['{', ' ']).next().unwrap_or(""),
    };
    name.to_owned()
}

/// Sort key of a sample line: its labels without `le`, then bucket (0),
/// sum (1) or count (2).
fn sample_key(line: &str) -> (String, u8) {
    let name = line.split(['{', ' ']).next().unwrap_or("");
    let labels = match line[name.len()..].strip_prefix('{') {
        Some(rest) => rest.split_once('}').map(|(l, _)| l).unwrap_or(""),
        None => "",
    };
    let without_le: Vec<&str> = labels
        .split(',')
        .filter(|l| !l.starts_with("le="))
        .collect();
    let rank = if name.ends_with("_sum") {
        1
    } else if name.ends_with("_count") {
        2
    } else {
        0
    };
    (without_le.join(","), rank)
}

/// Structured logs to stderr; `RUST_LOG` filters, `RTMC_LOG_JSON=1` emits JSON.
/// Field values from users (ids, bodies) are escaped by the formatter
/// (tracing-subscriber ≥ 0.3.20 escapes control characters).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn,sqlx=warn"));
    // Colours only for a person at a terminal: a log file or a pipe gets
    // plain text, without escape codes.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("RTMC_LOG_JSON").is_ok_and(|v| v == "1") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_sort_by_labels_and_buckets_keep_their_order() {
        let text = "# HELP z_total Z.\n# TYPE z_total counter\nz_total 1\n# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"b\"} 1\na_total{k=\"a\"} 2\n\
# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
h_seconds_bucket{r=\"y\",le=\"0.5\"} 1\nh_seconds_bucket{r=\"y\",le=\"+Inf\"} 1\nh_seconds_sum{r=\"y\"} 0.1\nh_seconds_count{r=\"y\"} 1\n\
h_seconds_bucket{r=\"x\",le=\"0.5\"} 2\nh_seconds_bucket{r=\"x\",le=\"+Inf\"} 2\nh_seconds_sum{r=\"x\"} 0.2\nh_seconds_count{r=\"x\"} 2\n";
        let sorted = sort_series(text);
        let lines: Vec<&str> = sorted.lines().collect();
        assert_eq!(lines[0], "# HELP a_total A.");
        assert_eq!(lines[2], "a_total{k=\"a\"} 2");
        assert_eq!(lines[16], "z_total 1");
        assert_eq!(lines[3], "a_total{k=\"b\"} 1");
        assert_eq!(lines[6], "h_seconds_bucket{r=\"x\",le=\"0.5\"} 2");
        assert_eq!(lines[7], "h_seconds_bucket{r=\"x\",le=\"+Inf\"} 2");
        assert_eq!(lines[8], "h_seconds_sum{r=\"x\"} 0.2");
        assert_eq!(lines[9], "h_seconds_count{r=\"x\"} 2");
        assert_eq!(lines[10], "h_seconds_bucket{r=\"y\",le=\"0.5\"} 1");
        assert_eq!(sort_series(&sorted), sorted);
    }

    #[test]
    fn every_declared_counter_is_exported_from_the_start() {
        let text = render();
        for &(name, kind, _) in METRICS {
            if kind != Kind::Counter {
                continue;
            }
            let sample = text
                .lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']));
            assert!(sample, "{name} has no series in a fresh scrape:\n{text}");
        }
        assert!(
            text.contains("rtmc_consumer_dead_letters_total 0"),
            "{text}"
        );
        for &(name, _, _) in LABELLED_COUNTERS {
            assert!(
                METRICS.iter().any(|m| m.0 == name && m.1 == Kind::Counter),
                "{name}"
            );
        }
    }

    #[test]
    fn every_metric_is_described_once_and_names_its_unit() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for (name, kind, help) in METRICS {
            assert!(!help.is_empty(), "{name}");
            if *kind == Kind::Counter {
                assert!(name.ends_with("_total"), "{name}");
            }
            if *kind == Kind::Histogram {
                assert!(
                    name.ends_with("_seconds") || name.ends_with("_frames"),
                    "{name}"
                );
            }
        }
    }
}
