//! The operations surface an operator points tools at: every metric has
//! `# HELP`, the latency histograms exist, two scrapes list series in the
//! same order, `promtool check metrics` is clean, the Grafana dashboard in
//! docs/ queries only metrics that exist, unknown routes and methods answer
//! JSON, and an empty body is refused over HTTP and TCP alike.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rtmc::protocol::ErrorCode;
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use serde_json::json;

use crate::support::assert_refused;

async fn scrape(p: &Pipeline) -> String {
    let url = format!("{}/metrics", p.gateway_url());
    p.http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A scrape after traffic has gone through every stage (publish, append,
/// fan-out, sync, HTTP).
async fn scrape_after_traffic(p: &Pipeline) -> String {
    let user = p.add_user("ops-traffic").await.unwrap();
    let mut c = p.client(0, &user).await.unwrap();
    c.send("over tcp", None).await.unwrap();
    let (s, _) = p.post_message("svc", "over http", None).await.unwrap();
    assert_eq!(s, 202);
    c.next_broadcast(Duration::from_secs(20)).await.unwrap();
    c.next_broadcast(Duration::from_secs(20)).await.unwrap();
    p.await_stored_messages(2, Duration::from_secs(30))
        .await
        .unwrap();
    scrape(p).await
}

/// The metric family names a scrape shows samples for.
fn families(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Runs `promtool check metrics` on `text`; (success, output).
fn promtool_check(text: &str) -> (bool, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "promtool not found ({e}): install it with `apt-get install -y prometheus` \
             (ci/setup.sh does), then rerun"
        )
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_described_histogrammed_stable_and_lint_clean() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let first = scrape_after_traffic(&p).await;
    for family in families(&first) {
        assert!(
            first.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
    for histogram in [
        "rtmc_publish_confirm_seconds_bucket",
        "rtmc_consumer_append_seconds_bucket",
        "rtmc_fanout_lag_seconds_bucket",
        "rtmc_sync_batch_seconds_bucket",
        "rtmc_http_request_duration_seconds_bucket{route=\"/v1/service/messages\",method=\"POST\",status=\"202\"",
    ] {
        assert!(first.contains(histogram), "{histogram} missing:\n{first}");
    }
    let (clean, said) = promtool_check(&first);
    assert!(clean, "promtool check metrics:\n{said}");
    // Same traffic again: the series keep their order between scrapes.
    let second = scrape_after_traffic(&p).await;
    let series = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
            .collect()
    };
    let (a, b) = (series(&first), series(&second));
    let common: Vec<&String> = b.iter().filter(|s| a.contains(s)).collect();
    let in_first: Vec<&String> = a.iter().filter(|s| common.contains(s)).collect();
    let moved = in_first.iter().zip(&common).position(|(x, y)| x != y);
    assert_eq!(moved, None, "series order changed between scrapes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let p =
        Pipeline::shared(PipelineOptions::default().configure(|c| c.server.max_login_failures = 1))
            .await
            .unwrap();
    // Refusals too: a dead letter, a throttled login, a refused send.
    p.publish_raw(b"not json").await.unwrap();
    let user = p.add_user("dash").await.unwrap();
    for expect in [401, 429] {
        assert_eq!(p.http_login(&user, "wrong").await.unwrap().0, expect);
    }
    let mut c = p.client(0, &user).await;
    assert!(c.is_err(), "throttled from this address");
    c = p.client(0, &p.add_user("dash2").await.unwrap()).await;
    assert_refused(c.unwrap().send(" ", None).await, ErrorCode::InvalidField);
    let text = scrape_after_traffic(&p).await;
    let path = rtmc_testkit::docker::repo_root().join("docs/grafana-dashboard.json");
    let raw = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&raw).expect("the dashboard is valid JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_owned())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut queried = 0;
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("rtmc_") {
                queried += 1;
                let base = word.trim_end_matches("_bucket").trim_end_matches("_count");
                assert!(
                    text.contains(&format!("# TYPE {base} ")),
                    "the dashboard queries {word}, which no scrape shows"
                );
            }
        }
    }
    assert!(queried >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let nope = p
        .http
        .get(format!("{}/v1/nope", p.gateway_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(nope.status().as_u16(), 404);
    let body: serde_json::Value = nope.json().await.expect("a JSON 404");
    assert_eq!(body["code"], "not_found", "{body}");
    let wrong = p
        .http
        .get(format!("{}/v1/messages", p.gateway_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 405);
    let body: serde_json::Value = wrong.json().await.expect("a JSON 405");
    assert_eq!(body["code"], "method_not_allowed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_is_refused_over_http_and_tcp() {
    let p = Pipeline::shared(PipelineOptions::default()).await.unwrap();
    let user = p.add_user("empty").await.unwrap();
    for body in ["", "  \n\t "] {
        let (s, b) = p.post_message("svc", body, None).await.unwrap();
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_field")), "{b}");
        assert!(b["message"].as_str().unwrap().contains("empty"), "{b}");
    }
    let (s, login) = p.http_login(&user, TEST_PASSWORD).await.unwrap();
    assert_eq!(s, 200);
    let token = login["session_token"].as_str().unwrap();
    let r = p
        .http
        .post(format!("{}/v1/messages", p.gateway_url()))
        .bearer_auth(token)
        .json(&json!({"body": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let mut c = p.client(0, &user).await.unwrap();
    assert_refused(c.send("", None).await, ErrorCode::InvalidField);
    c.send("not empty", None).await.unwrap();
}
