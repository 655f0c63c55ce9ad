//! One isolated rtmc deployment on top of [`Services`]: its own queue names,
//! Redis key prefix and PostgreSQL database, with the consumer, the gateway
//! and any number of server nodes running in-process on port 0. Tests and
//! tools get typed helpers: users, chat clients, HTTP publishing, the
//! dead-letter queue, and stopping or adding a server node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmc::client::{ChatClient, ClientError};
use rtmc::config::Config;
use rtmc::db::HashCost;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::services::Services;

/// A component running in this process.
pub struct Component {
    /// Where it listens (unset for the consumer).
    pub addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Component {
    /// Graceful stop: cancels and waits for the drain.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }

    /// Abrupt stop: the task is aborted mid-flight, as if the process died.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// How to shape a pipeline.
pub struct PipelineOptions {
    /// Server nodes to start.
    pub servers: usize,
    /// Whether to run the gateway.
    pub gateway: bool,
    /// Whether to run a consumer.
    pub consumer: bool,
    /// Whether to run the sync worker (Redis → PostgreSQL).
    pub sync: bool,
    /// Applied to the generated configuration before anything starts.
    pub configure: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            servers: 1,
            gateway: true,
            consumer: true,
            sync: true,
            configure: Box::new(|_| {}),
        }
    }
}

impl PipelineOptions {
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }
}

/// An isolated deployment. Dropping it stops every component.
pub struct Pipeline {
    /// The configuration every component of this pipeline runs with.
    pub cfg: Arc<Config>,
    /// This pipeline's own database.
    pub pg: PgPool,
    /// Server nodes; a stopped node leaves `None` in its slot.
    pub servers: Vec<Option<Component>>,
    pub gateway: Option<Component>,
    pub consumer: Option<Component>,
    pub sync: Option<Component>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    /// Kept so shared services outlive the pipeline.
    _services: Option<Arc<Services>>,
}

/// Password of every user the kit creates.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

impl Pipeline {
    /// Starts a pipeline on `services` with a fresh namespace.
    pub async fn start(services: &Services, opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = PgPool::connect(&services.postgres.url()).await?;
        // `ns` is generated hex, never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {ns}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut cfg = Config {
            node_id: ns.clone(),
            ..Config::default()
        };
        cfg.rabbitmq.url = services.rabbitmq.url().into();
        cfg.rabbitmq.queue = format!("{ns}.messages");
        cfg.rabbitmq.dead_letter_queue = format!("{ns}.messages.dead");
        cfg.redis.url = services.redis.url().into();
        cfg.redis.key_prefix = ns.clone();
        cfg.postgres.url = format!(
            "postgres://postgres@127.0.0.1:{}/{ns}",
            services.postgres.port
        )
        .into();
        cfg.server.listen = "127.0.0.1:0".into();
        cfg.gateway.listen = "127.0.0.1:0".into();
        cfg.gateway.api_keys = vec![format!("{ns}-key").into()];
        (opts.configure)(&mut cfg);
        let cfg = Arc::new(cfg);
        let pg = rtmc::db::connect(&cfg.postgres).await?;
        let mut p = Pipeline {
            cfg,
            pg,
            servers: Vec::new(),
            gateway: None,
            consumer: None,
            sync: None,
            http: reqwest::Client::builder().no_proxy().build()?,
            _services: None,
        };
        if opts.consumer {
            p.consumer = Some(p.spawn_consumer());
        }
        if opts.sync {
            p.sync = Some(p.spawn_sync());
        }
        for _ in 0..opts.servers {
            p.add_server().await?;
        }
        if opts.gateway {
            let l = TcpListener::bind(&p.cfg.gateway.listen).await?;
            let addr = l.local_addr()?;
            let stop = CancellationToken::new();
            let (cfg, s) = (p.cfg.clone(), stop.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = rtmc::gateway::run(cfg, l, s).await {
                    tracing::error!(error = %e, "gateway failed");
                }
            });
            p.gateway = Some(Component {
                addr: Some(addr),
                stop,
                task,
            });
        }
        Ok(p)
    }

    /// Starts a pipeline on the binary's shared services.
    pub async fn shared(opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        let services = crate::services::shared().await;
        let mut p = Self::start(&services, opts).await?;
        p._services = Some(services);
        Ok(p)
    }

    /// Runs `run(cfg, stop)` as an in-process component; a failure is logged.
    fn spawn<F, E>(
        &self,
        what: &'static str,
        run: impl FnOnce(Arc<Config>, CancellationToken) -> F,
    ) -> Component
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let stop = CancellationToken::new();
        let fut = run(self.cfg.clone(), stop.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %e, "{what} failed");
            }
        });
        Component {
            addr: None,
            stop,
            task,
        }
    }

    fn spawn_consumer(&self) -> Component {
        self.spawn("consumer", rtmc::consumer::run)
    }

    fn spawn_sync(&self) -> Component {
        self.spawn("sync worker", rtmc::sync::run)
    }

    /// Starts a sync worker (after the previous one was stopped).
    pub fn restart_sync(&mut self) {
        self.sync = Some(self.spawn_sync());
    }

    /// Starts a consumer (after the previous one was stopped).
    pub fn restart_consumer(&mut self) {
        self.consumer = Some(self.spawn_consumer());
    }

    /// Starts one more server node; returns its index.
    /// The first node binds `server.listen` (port 0 unless configured), later ones port 0.
    pub async fn add_server(&mut self) -> anyhow::Result<usize> {
        let addr = if self.servers.is_empty() {
            self.cfg.server.listen.as_str()
        } else {
            "127.0.0.1:0"
        };
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let stop = CancellationToken::new();
        let (cfg, s) = (self.cfg.clone(), stop.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = rtmc::server::run(cfg, l, s).await {
                tracing::error!(error = %e, "server failed");
            }
        });
        self.servers.push(Some(Component {
            addr: Some(addr),
            stop,
            task,
        }));
        Ok(self.servers.len() - 1)
    }

    /// Address of server node `i`.
    pub fn server_addr(&self, i: usize) -> String {
        self.servers[i]
            .as_ref()
            .and_then(|c| c.addr)
            .expect("server node is running")
            .to_string()
    }

    /// Stops server node `i` gracefully (its sessions are ended).
    pub async fn stop_server(&mut self, i: usize) {
        if let Some(c) = self.servers[i].take() {
            c.stop().await;
        }
    }

    /// Base URL of the gateway.
    pub fn gateway_url(&self) -> String {
        format!(
            "http://{}",
            self.gateway
                .as_ref()
                .and_then(|g| g.addr)
                .expect("gateway running")
        )
    }

    /// The API key this pipeline's gateway accepts.
    pub fn api_key(&self) -> &str {
        self.cfg.gateway.api_keys[0].expose_secret()
    }

    /// Creates `n` users `<prefix>-<i>` with [`TEST_PASSWORD`] (cheap hashes).
    pub async fn add_users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let hash = rtmc::db::hash_password(TEST_PASSWORD, HashCost::LOAD_TEST)?;
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        sqlx::query(
            "INSERT INTO users (user_id, password_hash) SELECT u, $2 FROM UNNEST($1::text[]) AS u ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&hash)
        .execute(&self.pg)
        .await?;
        Ok(ids)
    }

    /// A logged-in client of server node `node`.
    pub async fn client(&self, node: usize, user: &str) -> Result<ChatClient, ClientError> {
        ChatClient::connect(&self.server_addr(node), user, TEST_PASSWORD).await
    }

    /// Publishes over HTTP with the API key; returns the status and JSON body.
    pub async fn post_message(
        &self,
        sender: &str,
        body: &str,
        message_id: Option<&str>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = serde_json::json!({"sender": sender, "body": body});
        if let Some(id) = message_id {
            req["message_id"] = id.into();
        }
        let resp = self
            .http
            .post(format!("{}/v1/messages", self.gateway_url()))
            .header("x-api-key", self.api_key())
            .json(&req)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    /// Takes up to `max` messages from the dead-letter queue: (payload, reason).
    pub async fn dead_letters(&self, max: usize) -> anyhow::Result<Vec<(Vec<u8>, String)>> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let conn = lapin::Connection::connect(
            self.cfg.rabbitmq.url.expose_secret(),
            lapin::ConnectionProperties::default(),
        )
        .await?;
        let ch = conn.create_channel().await?;
        rtmc::broker::declare_topology(&ch, &self.cfg.rabbitmq).await?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(msg) = ch
                .basic_get(
                    self.cfg.rabbitmq.dead_letter_queue.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await?
            else {
                break;
            };
            let reason = msg
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-rtmc-reason").cloned())
                .map(|v| match v {
                    lapin::types::AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            msg.delivery.ack(BasicAckOptions::default()).await?;
            out.push((msg.delivery.data.clone(), reason));
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(out)
    }

    /// Publishes raw bytes straight into the message queue, bypassing
    /// validation (to test the consumer's handling of malformed messages).
    pub async fn publish_raw(&self, payload: &[u8]) -> anyhow::Result<()> {
        let p = rtmc::broker::Publisher::new(self.cfg.rabbitmq.clone());
        p.publish_to(&self.cfg.rabbitmq.queue, payload, Default::default())
            .await?;
        Ok(())
    }

    /// A Redis connection to this pipeline's Redis.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(
            redis::Client::open(self.cfg.redis.url.expose_secret().as_str())?
                .get_multiplexed_async_connection()
                .await?,
        )
    }

    /// Stops every component gracefully.
    pub async fn shutdown(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
        for s in self.servers.iter_mut() {
            if let Some(c) = s.take() {
                c.stop().await;
            }
        }
        if let Some(c) = self.consumer.take() {
            c.stop().await;
        }
        if let Some(c) = self.sync.take() {
            c.stop().await;
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let all = self
            .servers
            .iter()
            .flatten()
            .chain(self.gateway.iter())
            .chain(self.consumer.iter())
            .chain(self.sync.iter());
        for c in all {
            c.stop.cancel();
        }
    }
}
