//! `ToxiproxyClient` against the API in-process, and the `chaos proxy`
//! binary driven from another process: config file, API, Ctrl-C.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtmc_chaos::{ms, ClientError, Direction, Latency, NewProxy, Timeout, Toxic, ToxiproxyClient};
use serde_json::{json, Map};

use crate::api::api;
use crate::support::{
    connect, dead_addr, read_to_end, round_trip, stays_silent, End, Upstream, PATIENCE,
};

fn client_of(base: &str) -> ToxiproxyClient {
    ToxiproxyClient::new(base).expect("client")
}

#[tokio::test]
async fn the_client_covers_every_endpoint() {
    let api = api().await;
    let client = client_of(&api.base);
    let upstream = Upstream::echo().await;
    assert!(client.version().await.expect("version").starts_with("2."));

    let created = client
        .create_proxy(&NewProxy::new("db", upstream.addr.to_string()))
        .await
        .expect("create");
    let listen: SocketAddr = created.listen.parse().expect("addr");
    let Err(ClientError::Api {
        status: 409,
        message,
    }) = client
        .create_proxy(&NewProxy::new("db", upstream.addr.to_string()))
        .await
    else {
        panic!("a duplicate proxy was accepted");
    };
    assert_eq!(message, "proxy already exists");
    assert_eq!(client.proxies().await.expect("list").len(), 1);
    assert_eq!(client.proxy("db").await.expect("show"), created);

    let toxic = client
        .add_toxic("db", Toxic::from(Latency::ms(100)).named("slow"))
        .await
        .expect("add toxic");
    assert_eq!(toxic.attributes["latency"], 100);
    let mut attributes = Map::new();
    attributes.insert("jitter".into(), json!(5));
    let updated = client
        .update_toxic("db", "slow", Some(0.5), attributes)
        .await
        .expect("update toxic");
    assert_eq!(
        (updated.toxicity, updated.attributes["jitter"].clone()),
        (0.5, json!(5))
    );
    assert_eq!(
        client.toxic("db", "slow").await.expect("show toxic"),
        updated
    );
    assert_eq!(client.toxics("db").await.expect("toxics"), [updated]);
    assert!(Toxic::try_from(&client.toxic("db", "slow").await.expect("toxic")).is_ok());
    client
        .remove_toxic("db", "slow")
        .await
        .expect("remove toxic");
    assert!(matches!(
        client.remove_toxic("db", "slow").await,
        Err(ClientError::Api { status: 404, .. })
    ));

    assert!(!client.disable("db").await.expect("disable").enabled);
    assert!(client.enable("db").await.expect("enable").enabled);
    let mut conn = connect(listen).await;
    round_trip(&mut conn, b"hi").await;

    let held = client
        .hold("db", Some(Direction::Upstream))
        .await
        .expect("hold");
    assert_eq!(held.held, [Direction::Upstream]);
    client.release("db", None).await.expect("release");
    let split = client.partition("db", None).await.expect("partition");
    assert_eq!(split.partitioned.len(), 2);
    client
        .heal("db", Some(Direction::Downstream))
        .await
        .expect("heal");
    client.reset().await.expect("reset");
    assert!(client
        .proxy("db")
        .await
        .expect("show")
        .partitioned
        .is_empty());

    let populated = client
        .populate(&[NewProxy::new("other", "127.0.0.1:1")
            .toxic(Timeout::default())
            .refuse_when_upstream_down()])
        .await
        .expect("populate");
    assert_eq!(populated[0].toxics[0].name, "timeout_downstream");
    assert!(populated[0].refuse_when_upstream_down);
    assert!(client
        .populate(&[])
        .await
        .expect("empty populate")
        .is_empty());

    client.delete_proxy("other").await.expect("delete");
    assert!(matches!(
        client.proxy("other").await,
        Err(ClientError::Api { status: 404, .. })
    ));
    assert!(matches!(
        client.proxy("a/b c?").await,
        Err(ClientError::Api { status: 404, .. })
    ));
}

/// A `chaos proxy` process, killed when dropped.
struct ChaosProcess {
    child: Child,
    api: String,
}

impl Drop for ChaosProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChaosProcess {
    async fn start(config: Option<&std::path::Path>) -> Self {
        let api = dead_addr().await.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chaos"));
        command.args(["proxy", "--api", &api, "--seed", "42"]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chaos");
        let process = Self { child, api };
        let client = client_of(&process.api);
        let until = Instant::now() + PATIENCE;
        while client.version().await.is_err() {
            assert!(Instant::now() < until, "chaos proxy never answered");
            tokio::time::sleep(ms(50)).await;
        }
        process
    }

    /// Sends SIGINT (Ctrl-C) and waits for a clean exit.
    fn interrupt(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let until = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "chaos proxy exited with {status}");
                return;
            }
            assert!(Instant::now() < until, "chaos proxy ignored Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test]
async fn chaos_proxy_loads_a_config_serves_the_api_and_stops_on_ctrl_c() {
    let upstream = Upstream::echo().await;
    let dir = std::env::temp_dir().join(format!("rtmc-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("proxies.json");
    let listen = dead_addr().await;
    let proxies = json!([{
        "name": "redis", "listen": listen.to_string(), "upstream": upstream.addr.to_string(),
        "toxics": [{"type": "latency", "attributes": {"latency": 200}}]
    }]);
    std::fs::write(&config, proxies.to_string()).expect("write config");

    let mut chaos = ChaosProcess::start(Some(&config)).await;
    let client = client_of(&chaos.api);
    let redis = client.proxy("redis").await.expect("configured proxy");
    assert_eq!(redis.listen, listen.to_string());
    assert_eq!(redis.toxics[0].name, "latency_downstream");

    let mut conn = connect(listen).await;
    let start = Instant::now();
    round_trip(&mut conn, b"ping").await;
    assert!(start.elapsed() >= ms(200), "{:?}", start.elapsed());

    client
        .add_toxic("redis", Toxic::from(Timeout::default()).upstream())
        .await
        .expect("black hole");
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"lost")
        .await
        .expect("write");
    assert!(stays_silent(&mut conn, ms(300)).await);

    chaos.interrupt();
    assert_eq!(read_to_end(&mut conn).await.1, End::Eof);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn chaos_proxy_refuses_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("rtmc-chaos-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("bad.json");
    std::fs::write(&config, r#"[{"name": "x"}]"#).expect("write config");
    let status = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["proxy", "--api", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run chaos");
    assert!(!status.success(), "a config without upstream was accepted");
    let _ = std::fs::remove_dir_all(&dir);
}
