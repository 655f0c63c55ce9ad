//! One isolated rtmc deployment on top of [`Services`]: its own queue names,
//! Redis key prefix and PostgreSQL database, with the consumer, the gateway
//! and any number of server nodes running in-process on port 0. Tests and
//! tools get typed helpers: users, chat clients, raw protocol connections,
//! HTTP publishing, stored messages, the dead-letter queue, `rtmc` child
//! processes, and stopping or adding a server node.
//!
//! Tests start one through [`Pipeline::shared`] or [`Pipeline::private`],
//! which also set up the test logs; dropping it stops every component and
//! waits until they have stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtmc::client::{ChatClient, ClientError, Connection, LoginInfo};
use rtmc::config::Config;
use rtmc::db::HashCost;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::process::{NodeProcess, Role};
use crate::raw;
use crate::services::Services;

/// How long stopping a component may take before the kit stops waiting.
const STOP_LIMIT: Duration = Duration::from_secs(15);

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
        let _ = tokio::time::timeout(STOP_LIMIT, self.task).await;
    }

    /// Abrupt stop: the task is aborted mid-flight, as if the process died.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Edits the configuration one component starts with, by its role: applied
/// to the copy each in-process component and each [`NodeProcess`] spawned
/// through [`Pipeline::spawn_process`] gets, after
/// [`PipelineOptions::configure`]. Chaos routes one component's link through
/// a fault proxy with it (only the consumer's Redis URL, say).
pub type PerComponent = Arc<dyn Fn(Role, &mut Config) + Send + Sync>;

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
    /// Applied to each component's own copy of the configuration.
    pub per_component: PerComponent,
    /// The `rtmc` binary whose `rtmc migrate` creates the schema; `None`:
    /// the kit's own `rtmc` library migrates it. A harness that runs a
    /// given binary (loadgen's embedded stack, which the latency gate runs
    /// with an older build) lets that binary own its schema.
    pub schema_from: Option<PathBuf>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            servers: 1,
            gateway: true,
            consumer: true,
            sync: true,
            configure: Box::new(|_| {}),
            per_component: Arc::new(|_, _| {}),
            schema_from: None,
        }
    }
}

impl PipelineOptions {
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    /// The schema is created by `binary migrate`, never by the kit's own
    /// migrations (see [`PipelineOptions::schema_from`]).
    pub fn schema_from(mut self, binary: PathBuf) -> Self {
        self.schema_from = Some(binary);
        self
    }

    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// Edits each component's own configuration by role (see [`PerComponent`]):
    /// `per_component(|role, cfg| if role == Role::Consumer { cfg.redis.url = proxied })`.
    pub fn per_component(mut self, f: impl Fn(Role, &mut Config) + Send + Sync + 'static) -> Self {
        self.per_component = Arc::new(f);
        self
    }
}

/// Where a pipeline's engines are, for [`Pipeline::start_on`].
pub struct Engines {
    /// A PostgreSQL URL that takes writes, where the pipeline creates its
    /// database.
    pub postgres_admin_url: String,
    /// Writes the engines' addresses into a fresh configuration, given the
    /// pipeline's namespace (also the name of its database).
    pub address: WriteAddresses,
}

/// Writes engine addresses into a configuration, given the namespace.
pub type WriteAddresses = Box<dyn FnOnce(&mut Config, &str) + Send>;

/// An isolated deployment. Dropping it stops every component and waits
/// (up to 15 s) until they have stopped.
pub struct Pipeline {
    /// The pipeline's configuration: what its helpers use, and what every
    /// component starts from ([`Pipeline::config_for`] adds its own edits).
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
    /// The services it runs on, when it holds them (started through
    /// [`Pipeline::shared`] or [`Pipeline::private`]); kept so they outlive it.
    services: Option<Arc<Services>>,
    /// Each component's own edits of `cfg`.
    per_component: PerComponent,
}

pub use crate::credentials::TEST_PASSWORD;

impl Pipeline {
    /// Starts a pipeline on `services` with a fresh namespace.
    pub async fn start(services: &Services, opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        let (rabbitmq, redis) = (services.rabbitmq.url(), services.redis.url());
        let postgres_port = services.postgres.port;
        let engines = Engines {
            postgres_admin_url: services.postgres.url(),
            address: Box::new(move |cfg, ns| {
                cfg.rabbitmq.url = rabbitmq.into();
                cfg.redis.url = redis.into();
                cfg.postgres.url =
                    format!("postgres://postgres@127.0.0.1:{postgres_port}/{ns}").into();
            }),
        };
        Self::start_on(engines, opts).await
    }

    /// Starts a pipeline with a fresh namespace on `engines`: the single
    /// containers of [`Pipeline::start`], or clusters (`ha_stack`).
    pub async fn start_on(engines: Engines, opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = PgPool::connect(&engines.postgres_admin_url).await?;
        // `ns` is generated hex, never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {ns}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut cfg = Config {
            node_id: ns.clone(),
            ..Config::default()
        };
        (engines.address)(&mut cfg, &ns);
        cfg.rabbitmq.queue = format!("{ns}.messages");
        cfg.rabbitmq.dead_letter_queue = format!("{ns}.messages.dead");
        cfg.redis.key_prefix = ns.clone();
        cfg.server.listen = "127.0.0.1:0".into();
        cfg.gateway.listen = "127.0.0.1:0".into();
        cfg.gateway.api_keys = vec![format!("{ns}-key").into()];
        (opts.configure)(&mut cfg);
        let cfg = Arc::new(cfg);
        let pg = match &opts.schema_from {
            Some(binary) => {
                crate::process::run_migrate(binary, &cfg).await?;
                rtmc::db::connect_unmigrated(&cfg.postgres).await?
            }
            None => rtmc::db::connect(&cfg.postgres).await?,
        };
        let mut p = Pipeline {
            cfg,
            pg,
            servers: Vec::new(),
            gateway: None,
            consumer: None,
            sync: None,
            http: reqwest::Client::builder().no_proxy().build()?,
            services: None,
            per_component: opts.per_component,
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
            let listen = p.cfg.gateway.listen.clone();
            p.gateway = Some(
                p.spawn_listening(Role::Gateway, &listen, rtmc::gateway::run)
                    .await?,
            );
        }
        Ok(p)
    }

    /// Starts a pipeline on the test binary's shared services: the entry
    /// point of every test that leaves the services alone.
    pub async fn shared(opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        crate::watchdog::init_test_logs();
        let services = crate::services::shared().await;
        let mut p = Self::start(&services, opts).await?;
        p.services = Some(services);
        Ok(p)
    }

    /// Starts a pipeline on a private set of services: the entry point of a
    /// test that stops, kills or pauses a service ([`Pipeline::services`]).
    pub async fn private(opts: PipelineOptions) -> anyhow::Result<Pipeline> {
        crate::watchdog::init_test_logs();
        let services = Arc::new(Services::start().await?);
        let mut p = Self::start(&services, opts).await?;
        p.services = Some(services);
        Ok(p)
    }

    /// The services this pipeline runs on.
    ///
    /// # Panics
    /// For a pipeline from [`Pipeline::start`], which only borrowed them.
    pub fn services(&self) -> &Services {
        self.services
            .as_deref()
            .expect("a pipeline from Pipeline::shared or Pipeline::private")
    }

    /// The configuration a component of `role` starts with: `cfg` with the
    /// pipeline's [`PipelineOptions::per_component`] edits.
    pub fn config_for(&self, role: Role) -> Config {
        let mut cfg = (*self.cfg).clone();
        (self.per_component)(role, &mut cfg);
        cfg
    }

    /// Runs `run(cfg, stop)` as an in-process component; a failure is logged.
    fn spawn<F, E>(
        &self,
        role: Role,
        run: impl FnOnce(Arc<Config>, CancellationToken) -> F,
    ) -> Component
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let stop = CancellationToken::new();
        let fut = run(Arc::new(self.config_for(role)), stop.clone());
        let what = role.name();
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

    /// Binds `listen` and runs `run(cfg, listener, stop)` as an in-process
    /// component that serves on the bound address.
    async fn spawn_listening<F, E>(
        &self,
        role: Role,
        listen: &str,
        run: impl FnOnce(Arc<Config>, TcpListener, CancellationToken) -> F,
    ) -> anyhow::Result<Component>
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut component = self.spawn(role, |cfg, stop| run(cfg, listener, stop));
        component.addr = Some(addr);
        Ok(component)
    }

    fn spawn_consumer(&self) -> Component {
        self.spawn(Role::Consumer, rtmc::consumer::run)
    }

    fn spawn_sync(&self) -> Component {
        self.spawn(Role::Sync, rtmc::sync::run)
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
        let listen = if self.servers.is_empty() {
            self.cfg.server.listen.clone()
        } else {
            "127.0.0.1:0".to_owned()
        };
        let server = self
            .spawn_listening(Role::Server, &listen, rtmc::server::run)
            .await?;
        self.servers.push(Some(server));
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

    /// Creates one user `<prefix>-0` with [`TEST_PASSWORD`]; returns its id.
    pub async fn add_user(&self, prefix: &str) -> anyhow::Result<String> {
        let mut ids = self.add_users(prefix, 1).await?;
        Ok(ids.remove(0))
    }

    /// A logged-in client of server node `node`.
    pub async fn client(&self, node: usize, user: &str) -> Result<ChatClient, ClientError> {
        ChatClient::connect(&self.server_addr(node), user, TEST_PASSWORD).await
    }

    /// A bare framed connection to server node `node`, not logged in (see [`raw`]).
    pub async fn raw_connection(&self, node: usize) -> Result<Connection, ClientError> {
        raw::connect(&self.server_addr(node)).await
    }

    /// A bare framed connection to server node `node` on which `user` is
    /// logged in; `login_ok` has been read.
    pub async fn raw_login(
        &self,
        node: usize,
        user: &str,
    ) -> Result<(Connection, LoginInfo), ClientError> {
        raw::connect_and_login(&self.server_addr(node), user).await
    }

    /// Starts `role` as an `rtmc` child process with this pipeline's
    /// configuration ([`Pipeline::config_for`]) on loopback ports of its own
    /// (for SIGKILL tests and the processes' ops endpoints).
    pub async fn spawn_process(&self, role: Role) -> anyhow::Result<NodeProcess> {
        let binary = crate::process::rtmc_binary()?;
        NodeProcess::spawn(role, self.config_for(role), &binary).await
    }

    /// A publisher to this pipeline's gateway that can move into a task.
    pub fn http_publisher(&self) -> HttpPublisher {
        HttpPublisher {
            http: self.http.clone(),
            messages_url: format!("{}/v1/service/messages", self.gateway_url()),
            api_key: self.api_key().to_owned(),
        }
    }

    /// Publishes over HTTP with the API key; returns the status and JSON body.
    pub async fn post_message(
        &self,
        sender: &str,
        body: &str,
        message_id: Option<&str>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        self.http_publisher()
            .post_message(sender, body, message_id)
            .await
    }

    /// Logs in over HTTP (`POST /v1/login`); returns the status and JSON body
    /// (with a `session_token` on success).
    pub async fn http_login(
        &self,
        user: &str,
        password: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .http
            .post(format!("{}/v1/login", self.gateway_url()))
            .json(&serde_json::json!({"user_id": user, "password": password}))
            .send()
            .await?;
        Ok(status_and_json(resp).await)
    }

    /// Waits until this pipeline's PostgreSQL holds at least `k` messages
    /// and returns them as (seq, message_id) in seq order. While PostgreSQL
    /// is unreachable it keeps waiting.
    pub async fn await_stored_messages(
        &self,
        k: usize,
        limit: Duration,
    ) -> anyhow::Result<Vec<(i64, String)>> {
        let started = Instant::now();
        loop {
            let rows: Result<Vec<(i64, String)>, _> =
                sqlx::query_as("SELECT seq, message_id FROM messages ORDER BY seq")
                    .fetch_all(&self.pg)
                    .await;
            if let Ok(rows) = rows {
                if rows.len() >= k {
                    return Ok(rows);
                }
            }
            if started.elapsed() >= limit {
                anyhow::bail!("PostgreSQL did not reach {k} rows within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// This pipeline's PostgreSQL `room_messages` rows whose room id is
    /// `LIKE` one of `patterns`, as (room, seq, message_id), each room's in
    /// the order they were stored.
    pub async fn stored_room_messages(
        &self,
        patterns: &[String],
    ) -> anyhow::Result<Vec<(String, i64, String)>> {
        let rows = sqlx::query_as(
            "SELECT room_id, seq, message_id FROM room_messages WHERE room_id LIKE ANY($1) \
             ORDER BY room_id, stored_at, seq",
        )
        .bind(patterns)
        .fetch_all(&self.pg)
        .await?;
        Ok(rows)
    }

    /// The messages ready (delivered to no consumer, or returned unacked by
    /// one that went away) in this pipeline's main queue, from a passive
    /// declare. A message a consumer holds unacked is not counted until that
    /// consumer's channel closes; a test that stops the consumer first tells
    /// "acked" (0) from "never acked" (still here).
    pub async fn queue_ready(&self) -> anyhow::Result<u32> {
        use lapin::options::QueueDeclareOptions;
        let conn = lapin::Connection::connect(
            self.cfg.rabbitmq.url.expose_secret(),
            lapin::ConnectionProperties::default(),
        )
        .await?;
        let ch = conn.create_channel().await?;
        let queue = ch
            .queue_declare(
                self.cfg.rabbitmq.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        let _ = conn.close(200, "done".into()).await;
        Ok(queue.message_count())
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
        rtmc::broker::declare_topology(&ch, &self.cfg.rabbitmq, self.cfg.rooms.shards).await?;
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
        let p = rtmc::broker::Publisher::for_config(&self.cfg);
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

    /// Stops every component gracefully, one after the other: the gateway
    /// (no new publishes), the server nodes, the consumer, the sync worker.
    pub async fn shutdown(mut self) {
        for c in self.take_running() {
            c.stop().await;
        }
    }

    /// Takes every running component out, in shutdown order.
    fn take_running(&mut self) -> Vec<Component> {
        let mut running: Vec<Component> = self.gateway.take().into_iter().collect();
        running.extend(self.servers.iter_mut().filter_map(Option::take));
        running.extend(self.consumer.take());
        running.extend(self.sync.take());
        running
    }
}

impl Drop for Pipeline {
    /// The drop guard: cancels every component still running and waits until
    /// they have stopped, so no test — passed or failed — leaves components
    /// running on the shared services. Waiting needs a multi-thread runtime
    /// (`block_in_place`); elsewhere the components are only cancelled.
    fn drop(&mut self) {
        let running = self.take_running();
        if running.is_empty() {
            return;
        }
        for c in &running {
            c.stop.cancel();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let stopped = futures::future::join_all(running.into_iter().map(|c| c.task));
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let _ = tokio::time::timeout(STOP_LIMIT, stopped).await;
            })
        });
    }
}

/// Publishes over a pipeline's gateway with its API key; cheap to clone, and
/// free of borrows so it can publish from a task while the test reads.
#[derive(Clone)]
pub struct HttpPublisher {
    http: reqwest::Client,
    /// `POST` target: the gateway's `/v1/service/messages` (API key).
    messages_url: String,
    api_key: String,
}

impl HttpPublisher {
    /// Publishes one message; returns the status and JSON body (`null` when
    /// the body is not JSON).
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
            .post(&self.messages_url)
            .header("x-api-key", &self.api_key)
            .json(&req)
            .send()
            .await?;
        Ok(status_and_json(resp).await)
    }
}

/// A gateway reply as its status and JSON body (`null` when not JSON).
async fn status_and_json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A component that takes a while to drain once cancelled, and records
    /// when it has finished.
    fn slow_to_stop(stopped: Arc<AtomicBool>) -> Component {
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            cancelled.cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            stopped.store(true, Ordering::SeqCst);
        });
        Component {
            addr: None,
            stop,
            task,
        }
    }

    /// A pipeline around `server` alone: no services, and a database pool
    /// that never connects.
    fn pipeline_of(server: Component) -> Pipeline {
        Pipeline {
            cfg: Arc::new(Config::default()),
            pg: PgPool::connect_lazy("postgres://postgres@127.0.0.1:1/none").unwrap(),
            servers: vec![Some(server)],
            gateway: None,
            consumer: None,
            sync: None,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            services: None,
            per_component: PipelineOptions::default().per_component,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_a_pipeline_waits_until_its_components_have_stopped() {
        let stopped = Arc::new(AtomicBool::new(false));
        drop(pipeline_of(slow_to_stop(stopped.clone())));
        assert!(
            stopped.load(Ordering::SeqCst),
            "drop returned before the drain"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_dropping_only_cancels() {
        let server = slow_to_stop(Arc::new(AtomicBool::new(false)));
        let token = server.stop.clone();
        drop(pipeline_of(server));
        assert!(token.is_cancelled());
    }
}
