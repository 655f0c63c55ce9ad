//! `loadgen run --agents`: two agents on loopback against one test stack
//! (testkit, components in process) — a few hundred clients, nothing lost,
//! the merged report's counts the sum of the agents', its percentiles those
//! of an HdrHistogram merge of the agents' own logs computed here; an
//! agent without publishers still receives everything and reports every
//! second; an agent killed mid-run fails the run naming it; a bad work order, an
//! unknown agent, another control-protocol version and a skewed clock get
//! clear errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use rtmc_loadgen::agents::coordinator::{run_with_agents, AgentRunOptions, CoordinatorError};
use rtmc_loadgen::profile::Profile;
use rtmc_loadgen::report::types::RunReport;
use rtmc_testkit::{Pipeline, PipelineOptions, TEST_PASSWORD};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// An agent served in this process on a free loopback port; cancelled on drop.
struct InProcessAgent {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl InProcessAgent {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let stop = CancellationToken::new();
        tokio::spawn(rtmc_loadgen::agents::server::serve(listener, stop.clone()));
        Self { addr, stop }
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A quiet profile of `clients` receivers and 2 TCP publishers at
/// `rate_per_sec` for `secs` against the stack's server node 0, users
/// `<prefix>-i`, the report into a fresh directory (returned).
fn agents_profile(
    p: &Pipeline,
    prefix: &str,
    clients: usize,
    rate_per_sec: f64,
    secs: f64,
) -> (Profile, PathBuf) {
    let out = std::env::temp_dir().join(format!("loadgen-agents-{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut profile = Profile {
        name: prefix.into(),
        ..Default::default()
    };
    let l = &mut profile.load;
    l.clients = clients;
    l.rate_per_sec = rate_per_sec;
    l.duration_secs = secs;
    l.tcp_publishers = 2;
    l.drain_timeout_secs = 15.0;
    profile.target.servers = vec![p.server_addr(0)];
    profile.target.user_prefix = prefix.into();
    profile.target.password = Some(TEST_PASSWORD.into());
    profile.floor.enabled = false;
    profile.output.quiet = true;
    profile.output.out = Some(out.clone());
    (profile, out)
}

fn options(agents: &[SocketAddr]) -> AgentRunOptions {
    AgentRunOptions {
        agents: agents.iter().map(|a| a.to_string()).collect(),
        max_clock_skew_ms: 50.0,
    }
}

/// The tag's histograms of every interval of every log in `dir`, merged
/// here with the hdrhistogram crate alone (not loadgen's reader).
fn merge_logs_independently(dir: &Path, tag: &str) -> Histogram<u64> {
    use base64::Engine as _;
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut logs = 0;
    for entry in std::fs::read_dir(dir).expect("agents/ in the report") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("an agent's log");
        logs += 1;
        for e in IntervalLogIterator::new(&bytes) {
            let Ok(LogEntry::Interval(i)) = e else {
                continue;
            };
            if i.tag().map(|t| t.as_str()) != Some(tag) {
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .expect("base64");
            let h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut std::io::Cursor::new(raw))
                .expect("a V2 histogram");
            merged.add(&h).expect("same range");
        }
    }
    assert_eq!(logs, 2, "one log per agent");
    merged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_lose_nothing_and_merge_exactly() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    let clients = 300;
    p.add_users("agents2", clients + 3).await.expect("users");
    let (a, b) = (InProcessAgent::start().await, InProcessAgent::start().await);
    let (profile, out) = agents_profile(&p, "agents2", clients, 100.0, 3.0);
    let outcome = run_with_agents(profile, options(&[a.addr, b.addr]))
        .await
        .expect("the run over two agents");
    let r = &outcome.report;
    assert!(r.passed(), "{:?}", r.failures);
    let m = r.rtmc.as_ref().expect("the merged phase");
    let acc = &m.accounting;
    assert_eq!(acc.receivers, clients as u64, "{acc:?}");
    assert_eq!(
        (acc.lost, acc.duplicates, acc.out_of_order, acc.gaps),
        (0, 0, 0, 0)
    );
    assert_eq!(acc.received, acc.expected);
    assert_eq!(m.acked, 300, "100 msg/s × 3 s, all acknowledged: {m:?}");
    assert_eq!(m.acked_not_delivered, 0);
    // The merged counts are the agents' sums, and each agent ran half.
    assert_eq!(r.agents.len(), 2);
    let sum = |f: fn(&rtmc_loadgen::report::types::AgentReport) -> u64| {
        r.agents.iter().map(f).sum::<u64>()
    };
    assert_eq!(m.deliveries, sum(|a| a.deliveries));
    assert_eq!(m.published, sum(|a| a.published));
    assert_eq!(acc.received, sum(|a| a.accounting.received));
    // Other suites may publish on the shared stack meanwhile: at least ours.
    assert!(m.deliveries >= 300 * clients as u64, "{m:?}");
    for a in &r.agents {
        assert_eq!(
            (a.clients, a.connected, a.publishers),
            (150, 150, 1),
            "{a:?}"
        );
        assert!(a.clock_offset_ms.abs() < 50.0, "{a:?}");
        assert!(a.acked > 0, "both agents published: {a:?}");
    }
    // The merged percentiles are an HdrHistogram merge of the agents' logs.
    let h = merge_logs_independently(&out.join("agents"), "rtmc");
    assert_eq!(h.len(), m.deliveries);
    for (q, got) in [
        (0.5, m.latency.p50_ms),
        (0.99, m.latency.p99_ms),
        (0.999, m.latency.p99_9_ms),
    ] {
        let want = h.value_at_quantile(q) as f64 / 1000.0;
        assert!(
            (want - got).abs() < 1e-9,
            "p{q}: merged {got} ms, independent {want} ms"
        );
    }
    // The report directory is a run's, with the per-agent section.
    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    let back: RunReport = serde_json::from_str(&json).expect("a report");
    assert_eq!(back.agents.len(), 2);
    assert!(out.join("latency.hlog").is_file() && out.join("latency.hgrm").is_file());
}

/// Starts `loadgen agent --listen 127.0.0.1:0` and reads the port it says.
async fn child_agent() -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["agent", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the loadgen binary");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the agent says where it listens")
        .expect("stdout")
        .expect("a line");
    let addr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_run_fails_the_run_naming_it() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    p.add_users("agentskill", 40 + 3).await.expect("users");
    let a = InProcessAgent::start().await;
    let (mut child, b) = child_agent().await;
    let (profile, _out) = agents_profile(&p, "agentskill", 40, 50.0, 8.0);
    let run = tokio::spawn(run_with_agents(profile, options(&[a.addr, b])));
    // Bring-up of 20 clients each is quick; kill the child while it publishes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill().await.expect("SIGKILL the agent");
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the coordinator notices within a minute")
        .expect("the coordinator task")
        .err()
        .expect("the run fails");
    assert!(matches!(err, CoordinatorError::AgentLost { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&b.to_string()), "names the agent: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_get_their_code_and_are_counted() {
    let a = InProcessAgent::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let url = |path: &str| format!("http://{}{path}", a.addr);
    let post = |path: &str, body: String| {
        http.post(url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("a JSON error");
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    let r = post("/v1/prepare", "{not json".into())
        .await
        .expect("answer");
    assert_eq!(answer(r).await, (400, "bad_json".into()));
    let order = serde_json::json!({
        "protocol_version": 99, "agent": "a", "run_id": 1, "servers": ["127.0.0.1:9"],
        "user_prefix": "lg", "password": "x", "first_client": 0, "clients": 1,
        "first_channel": 0, "channels": 1, "total_channels": 1, "publisher_user_base": 1,
        "rate_per_sec": 10.0, "duration_secs": 1.0, "body_bytes": 16, "connects_per_sec": 10.0,
        "connect_timeout_ms": 1000, "drain_timeout_secs": 1.0, "witnesses": 0,
        "source_addrs": [], "max_frame_bytes": 65536
    });
    let r = post("/v1/prepare", order.to_string())
        .await
        .expect("answer");
    assert_eq!(answer(r).await, (409, "version_mismatch".into()));
    let mut bad = order.clone();
    bad["protocol_version"] = 1.into();
    bad["rate_per_sec"] = (-5.0).into();
    let r = post("/v1/prepare", bad.to_string()).await.expect("answer");
    assert_eq!(answer(r).await, (400, "bad_work_order".into()));
    let start = serde_json::json!({"start_at_agent_us": 0, "start_at_run_us": 0, "clock_offset_us": 0, "head_before": 0});
    let r = post("/v1/start", start.to_string()).await.expect("answer");
    assert_eq!(answer(r).await, (409, "wrong_stage".into()));
    let metrics = http.get(url("/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for code in [
        "bad_json",
        "version_mismatch",
        "bad_work_order",
        "wrong_stage",
    ] {
        assert!(
            text.contains(&format!("loadgen_agent_refused_total{{code=\"{code}\"}} 1")),
            "{code} counted: {text}"
        );
    }
}

/// A fake agent: answers hello with `protocol_version` and the clock `skew_us` off.
async fn fake_agent(protocol_version: u32, skew_us: i64) -> SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/v1/hello",
            get(move || async move {
                axum::Json(serde_json::json!({
                    "protocol_version": protocol_version,
                    "loadgen_version": "0.0.0-other",
                    "stage": "idle"
                }))
            }),
        )
        .route(
            "/v1/clock",
            get(move || async move {
                let now = rtmc::protocol::now_us().saturating_add_signed(skew_us);
                axum::Json(serde_json::json!({ "now_us": now }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agents_other_versions_and_skewed_clocks_are_refused_by_name() {
    let mut profile = Profile::default();
    profile.output.quiet = true;
    // Nothing listens on port 1.
    let err = run_with_agents(profile.clone(), options(&["127.0.0.1:1".parse().unwrap()]))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, CoordinatorError::Agent(_)) && err.to_string().contains("agent 127.0.0.1:1"),
        "{err}"
    );
    let other = fake_agent(99, 0).await;
    let err = run_with_agents(profile.clone(), options(&[other]))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, CoordinatorError::VersionMismatch { theirs: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&other.to_string()), "{err}");
    let skewed = fake_agent(1, 2_000_000).await;
    let err = run_with_agents(profile.clone(), options(&[skewed]))
        .await
        .err()
        .expect("refused");
    match &err {
        CoordinatorError::ClockSkew {
            agent, offset_ms, ..
        } => {
            assert_eq!(agent, &skewed.to_string());
            assert!((offset_ms - 2000.0).abs() < 50.0, "{err}");
        }
        e => panic!("expected a clock-skew refusal, got {e}"),
    }
    let twice = run_with_agents(profile, options(&[skewed, skewed]))
        .await
        .err()
        .expect("refused");
    assert!(matches!(twice, CoordinatorError::Unsupported(_)), "{twice}");
}

/// With one publisher over two agents the second only receives: it still
/// gets everything, and its interval log has an interval per second (its
/// part of the live line), not one for the whole phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_publishers_receives_everything_second_by_second() {
    let p = Pipeline::shared(PipelineOptions::default())
        .await
        .expect("a stack (is Docker up?)");
    p.add_users("agentsrx", 20 + 2).await.expect("users");
    let (a, b) = (InProcessAgent::start().await, InProcessAgent::start().await);
    let (mut profile, out) = agents_profile(&p, "agentsrx", 20, 50.0, 3.0);
    profile.load.tcp_publishers = 1;
    let outcome = run_with_agents(profile, options(&[a.addr, b.addr]))
        .await
        .expect("the run over two agents");
    let r = &outcome.report;
    assert!(r.passed(), "{:?}", r.failures);
    let (first, second) = (&r.agents[0], &r.agents[1]);
    assert_eq!((first.publishers, second.publishers), (1, 0));
    assert_eq!((first.acked, second.published), (150, 0));
    assert_eq!(second.accounting.lost, 0);
    assert!(second.deliveries >= 150 * 10, "{second:?}");
    let log = std::fs::read(
        out.join("agents")
            .join(format!("{}.hlog", b.addr.to_string().replace(':', "_"))),
    )
    .expect("the receiving agent's log");
    let seconds = IntervalLogIterator::new(&log)
        .filter(|e| matches!(e, Ok(LogEntry::Interval(i)) if i.tag().map(|t| t.as_str()) == Some("rtmc")))
        .count();
    assert!(seconds >= 3, "{seconds} intervals for 3 s of publishing");
}
