//! RabbitMQ, Redis and PostgreSQL in containers, started through
//! `testcontainers` from the in-repo images with host networking on
//! loopback ports the kit picks. [`shared`] gives one set per test binary;
//! [`Services::start`] gives a private set to a test that breaks a service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testcontainers::core::WaitFor;
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};
use tokio::sync::OnceCell;

use crate::docker;

/// Failure bringing services up or operating on them.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service}: container: {message}")]
    Container {
        service: &'static str,
        message: String,
    },
    #[error("{service} did not become ready within {waited:?}: {last_error}")]
    NotReady {
        service: &'static str,
        waited: Duration,
        last_error: String,
    },
}

/// Which service a handle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RabbitMq,
    Redis,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RabbitMq => "rabbitmq",
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        }
    }
}

/// One running service container. Operations read like the fault:
/// `stack.rabbitmq().stop().await`.
pub struct Service {
    kind: Kind,
    /// Port clients connect to on 127.0.0.1 (stable across restarts).
    pub port: u16,
    /// `None` only while dropping.
    container: Option<Arc<Container<GenericImage>>>,
}

impl Drop for Service {
    /// The sync container blocks on its own runtime when dropped, which is
    /// not allowed inside an async context: drop it on a plain thread.
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

impl Service {
    /// A handle on a container the kit started (a cluster node).
    pub(crate) fn new(kind: Kind, port: u16, container: Container<GenericImage>) -> Service {
        Service {
            kind,
            port,
            container: Some(Arc::new(container)),
        }
    }

    /// Connection URL (the `postgres` admin database for PostgreSQL).
    pub fn url(&self) -> String {
        match self.kind {
            Kind::RabbitMq => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    fn handle(&self) -> &Arc<Container<GenericImage>> {
        self.container.as_ref().expect("present until drop")
    }

    pub fn container_id(&self) -> String {
        self.handle().id().to_owned()
    }

    async fn blocking<F>(&self, what: &'static str, f: F) -> Result<(), ServiceError>
    where
        F: FnOnce(&Container<GenericImage>) -> testcontainers::core::error::Result<()>
            + Send
            + 'static,
    {
        let c = self.handle().clone();
        let service = self.kind.name();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| ServiceError::Container {
                service,
                message: e.to_string(),
            })?
            .map_err(|e| ServiceError::Container {
                service,
                message: format!("{what}: {e}"),
            })
    }

    /// Graceful stop (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self) -> Result<(), ServiceError> {
        self.blocking("stop", |c| c.stop()).await
    }

    /// Abrupt stop: SIGKILL, no chance to flush.
    pub async fn kill(&self) -> Result<(), ServiceError> {
        self.blocking("kill", |c| c.stop_with_timeout(Some(0)))
            .await
    }

    /// Starts a stopped container and waits until it answers again.
    pub async fn start(&self) -> Result<(), ServiceError> {
        self.blocking("start", |c| c.start()).await?;
        wait_ready(self.kind, &self.url(), Duration::from_secs(90)).await
    }

    /// Freezes every process of the service (connections hang, nothing is refused).
    pub async fn pause(&self) -> Result<(), ServiceError> {
        self.blocking("pause", |c| futures::executor::block_on(c.pause()))
            .await
    }

    pub async fn unpause(&self) -> Result<(), ServiceError> {
        self.blocking("unpause", |c| futures::executor::block_on(c.unpause()))
            .await
    }
}

/// The three backing services of a stack.
pub struct Services {
    pub rabbitmq: Service,
    pub redis: Service,
    pub postgres: Service,
}

impl Services {
    /// Starts a private set of services (the caller may break them).
    pub async fn start() -> Result<Services, ServiceError> {
        ensure_docker().await?;
        let (rabbitmq, redis, postgres) = tokio::join!(
            launch_retrying(Kind::RabbitMq),
            launch_retrying(Kind::Redis),
            launch_retrying(Kind::Postgres)
        );
        Ok(Services {
            rabbitmq: rabbitmq?,
            redis: redis?,
            postgres: postgres?,
        })
    }

    pub fn rabbitmq(&self) -> &Service {
        &self.rabbitmq
    }
    pub fn redis(&self) -> &Service {
        &self.redis
    }
    pub fn postgres(&self) -> &Service {
        &self.postgres
    }
}

/// [`docker::ensure_engine_and_images`] off the async runtime; its panic
/// (no engine, an image that cannot be built) becomes the error.
pub(crate) async fn ensure_docker() -> Result<(), ServiceError> {
    tokio::task::spawn_blocking(docker::ensure_engine_and_images)
        .await
        .map_err(|e| ServiceError::Container {
            service: "docker",
            message: panic_text(e),
        })
}

/// The message of a panicked task, or what else ended it.
fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}

/// The services shared by every test of this binary, started on first use.
pub async fn shared() -> Arc<Services> {
    static SHARED: OnceCell<Arc<Services>> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            Arc::new(Services::start().await.unwrap_or_else(|e| {
                panic!("rtmc testkit: starting the shared services failed: {e}")
            }))
        })
        .await
        .clone()
}

/// [`launch`], and once more on fresh ports if that fails: a container that
/// does not come up (a port taken between being picked and being bound, an
/// engine call that never returns) should not fail a whole test binary. The
/// error names both attempts.
async fn launch_retrying(kind: Kind) -> Result<Service, ServiceError> {
    let first = match launch(kind).await {
        Ok(service) => return Ok(service),
        Err(e) => e,
    };
    tracing::warn!(service = kind.name(), error = %first, "service did not come up; one more try on fresh ports");
    launch(kind)
        .await
        .map_err(|second| ServiceError::Container {
            service: kind.name(),
            message: format!("two attempts failed: first: {first}; second: {second}"),
        })
}

async fn launch(kind: Kind) -> Result<Service, ServiceError> {
    let tag = docker::image_tag();
    let port = docker::free_port();
    let name = docker::container_name(kind.name());
    let image =
        GenericImage::new(format!("rtmc-{}", kind.name()), tag).with_wait_for(WaitFor::Nothing);
    let request = match kind {
        Kind::Redis => image.with_cmd([
            "--bind".to_string(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--protected-mode".into(),
            "no".into(),
            // Durability: every write reaches the AOF with fsync before Redis answers.
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--maxclients".into(),
            "20000".into(),
        ]),
        Kind::Postgres => image.with_cmd([port.to_string()]),
        Kind::RabbitMq => image
            .with_env_var("RABBITMQ_NODE_PORT", port.to_string())
            .with_env_var("RABBITMQ_DIST_PORT", docker::free_port().to_string())
            .with_env_var("ERL_EPMD_PORT", docker::free_port().to_string()),
    }
    .with_network("host")
    .with_container_name(name);
    let container = start_container(kind.name(), request).await?;
    let service = Service {
        kind,
        port,
        container: Some(Arc::new(container)),
    };
    wait_ready(kind, &service.url(), Duration::from_secs(90)).await?;
    Ok(service)
}

/// How long one readiness check may take.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// How long creating and starting a container may take.
const START_LIMIT: Duration = Duration::from_secs(180);

/// Creates and starts a container, bounded by [`START_LIMIT`].
pub(crate) async fn start_container(
    service: &'static str,
    request: testcontainers::core::ContainerRequest<GenericImage>,
) -> Result<Container<GenericImage>, ServiceError> {
    let err = |message: String| ServiceError::Container { service, message };
    let started = tokio::time::timeout(
        START_LIMIT,
        tokio::task::spawn_blocking(move || request.start()),
    )
    .await
    .map_err(|_| {
        err(format!(
            "the container did not start within {START_LIMIT:?}"
        ))
    })?;
    started
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))
}

/// Polls the service with its real client until it answers.
pub(crate) async fn wait_ready(kind: Kind, url: &str, limit: Duration) -> Result<(), ServiceError> {
    poll_ready(kind.name(), limit, || probe(kind, url)).await
}

/// What a readiness check returns.
pub(crate) type ProbeResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs `attempt` every 200 ms until it succeeds or `limit` has passed.
pub(crate) async fn poll_ready<F, Fut>(
    service: &'static str,
    limit: Duration,
    mut attempt: F,
) -> Result<(), ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ProbeResult>,
{
    let started = Instant::now();
    let mut last_error = String::from("not tried");
    while started.elapsed() < limit {
        // Each attempt is bounded: a port that accepts and then says nothing
        // (a service half up, a socket connected to itself while nothing
        // listens) would otherwise hang the check, and the test, for good.
        match tokio::time::timeout(PROBE_LIMIT, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no answer within {PROBE_LIMIT:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ServiceError::NotReady {
        service,
        waited: limit,
        last_error,
    })
}

/// One readiness check: connect with the service's own client and make a
/// round trip (PING, `SELECT 1`, an AMQP handshake).
async fn probe(kind: Kind, url: &str) -> ProbeResult {
    match kind {
        Kind::Redis => {
            let client = redis::Client::open(url)?;
            let mut c = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut c).await?;
        }
        Kind::Postgres => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await?;
            sqlx::query("SELECT 1").execute(&mut c).await?;
        }
        Kind::RabbitMq => {
            let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
            let _ = c.close(200, "ready check".into()).await;
        }
    }
    Ok(())
}
