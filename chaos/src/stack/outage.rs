//! Real outages, one shape over containers and processes: a [`Fault`]
//! crashes (SIGKILL), stops (gracefully), starts, bounces, restarts, pauses
//! and unpauses its target — a service container ([`Container`], over
//! `rtmc_testkit::Service`) or an rtmc component running as a child process
//! ([`Process`], over `rtmc_testkit::NodeProcess`, re-spawned from its
//! configuration on the same ports, like turmoil's host factory).
//!
//! ```no_run
//! # async fn demo(stack: &rtmc_chaos::ChaosStack) -> anyhow::Result<()> {
//! use rtmc_testkit::Role;
//! let broker = stack.rabbitmq();
//! broker.crash().await?; // SIGKILL; returns once the container is down
//! broker.start().await?; // returns once it answers AMQP again
//! let node = stack.spawn(Role::Server).await?;
//! node.restart().await?; // SIGKILL, then the same binary on the same address
//! for step in stack.outages().steps() {
//!     println!("{step}"); // e.g. `rabbitmq crash: 0.41 s`
//! }
//! # Ok(()) }
//! ```
//!
//! Each verb returns when its fault (or its repair) is in effect, and
//! records a [`Step`] with when it was asked for and when it took effect in
//! the [`OutageLog`] it shares with its stack, for recovery-time reports.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtmc::config::Config;
use rtmc_testkit::services::{Kind, ServiceError};
use rtmc_testkit::{NodeProcess, Role, Service, Services};

/// Why an outage step failed.
#[derive(Debug, thiserror::Error)]
pub enum OutageError {
    /// The container operation failed (Docker, or not ready in time).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The process could not be signalled or spawned.
    #[error("{target}: {message}")]
    Process {
        /// The target's name.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The step needs a running target (crash, stop, pause).
    #[error("{0} is not running")]
    NotRunning(String),
    /// The step needs a stopped target (start).
    #[error("{0} is already running")]
    AlreadyRunning(String),
}

/// The verbs of a [`Fault`], as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL: no chance to flush or say goodbye.
    Crash,
    /// Graceful stop: the target drains and exits.
    Stop,
    /// Started again; in effect once it serves.
    Start,
    /// Frozen: connections stay open, nothing is answered.
    Pause,
    /// Running again after a pause.
    Unpause,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Crash => "crash",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
        }
    }
}

/// One outage step: what was done to which target, and when.
#[derive(Debug, Clone)]
pub struct Step {
    /// The target's name (`rabbitmq`, `server-1`, …).
    pub target: String,
    /// What was done.
    pub action: Action,
    /// When the step was asked for.
    pub invoked_at: Instant,
    /// When it was in effect (the target down, frozen, or serving again).
    pub in_effect_at: Instant,
}

impl Step {
    /// How long the step took to take effect.
    pub fn took(&self) -> Duration {
        self.in_effect_at.duration_since(self.invoked_at)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {:.2} s",
            self.target,
            self.action.name(),
            self.took().as_secs_f64()
        )
    }
}

/// Every outage step of a stack, in the order they took effect; cheap to
/// clone (the clones share the log).
#[derive(Debug, Clone, Default)]
pub struct OutageLog(Arc<Mutex<Vec<Step>>>);

impl OutageLog {
    /// The steps so far.
    pub fn steps(&self) -> Vec<Step> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The latest `action` on `target`.
    pub fn last(&self, target: &str, action: Action) -> Option<Step> {
        self.steps()
            .into_iter()
            .rev()
            .find(|s| s.target == target && s.action == action)
    }

    fn record(&self, step: Step) {
        tracing::info!(%step, "outage step in effect");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(step);
    }
}

/// What a [`Fault`] acts on: the primitive steps, each returning once in
/// effect. Implemented by [`Container`] and [`Process`].
pub trait Target: Send + Sync {
    /// The name steps are recorded under.
    fn name(&self) -> String;
    /// SIGKILL.
    fn crash(&self) -> impl Future<Output = Result<(), OutageError>> + Send;
    /// Graceful stop.
    fn stop(&self) -> impl Future<Output = Result<(), OutageError>> + Send;
    /// Start after a crash or stop; in effect once it serves.
    fn start(&self) -> impl Future<Output = Result<(), OutageError>> + Send;
    /// Freeze every process of the target.
    fn pause(&self) -> impl Future<Output = Result<(), OutageError>> + Send;
    /// Thaw it.
    fn unpause(&self) -> impl Future<Output = Result<(), OutageError>> + Send;
}

/// Real outages of one target, timed and recorded: the same verbs for a
/// broker container and a server process.
pub struct Fault<T> {
    target: T,
    log: OutageLog,
}

/// A service container's outages.
pub type ServiceFault = Fault<Container>;
/// An rtmc process's outages.
pub type ProcessFault = Fault<Process>;

impl<T: Target> Fault<T> {
    /// Outages of `target`, recorded in `log`.
    pub fn new(target: T, log: OutageLog) -> Self {
        Self { target, log }
    }

    /// The target (its addresses, for a process).
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The log this fault records in.
    pub fn log(&self) -> &OutageLog {
        &self.log
    }

    async fn timed(
        &self,
        action: Action,
        step: impl Future<Output = Result<(), OutageError>>,
    ) -> Result<Step, OutageError> {
        let invoked_at = Instant::now();
        step.await?;
        let step = Step {
            target: self.target.name(),
            action,
            invoked_at,
            in_effect_at: Instant::now(),
        };
        self.log.record(step.clone());
        Ok(step)
    }

    /// SIGKILL; returns once the target is down.
    pub async fn crash(&self) -> Result<Step, OutageError> {
        self.timed(Action::Crash, self.target.crash()).await
    }

    /// Graceful stop; returns once the target has exited.
    pub async fn stop(&self) -> Result<Step, OutageError> {
        self.timed(Action::Stop, self.target.stop()).await
    }

    /// Starts the target after a crash or stop; returns once it serves.
    pub async fn start(&self) -> Result<Step, OutageError> {
        self.timed(Action::Start, self.target.start()).await
    }

    /// Graceful stop, then start (turmoil's `bounce`); returns the start.
    pub async fn bounce(&self) -> Result<Step, OutageError> {
        self.stop().await?;
        self.start().await
    }

    /// Crash, then start; returns the start.
    pub async fn restart(&self) -> Result<Step, OutageError> {
        self.crash().await?;
        self.start().await
    }

    /// Freezes the target (SIGSTOP, `docker pause`): its connections stay
    /// open and nothing is answered.
    pub async fn pause(&self) -> Result<Step, OutageError> {
        self.timed(Action::Pause, self.target.pause()).await
    }

    /// Lets a paused target run again.
    pub async fn unpause(&self) -> Result<Step, OutageError> {
        self.timed(Action::Unpause, self.target.unpause()).await
    }
}

/// A service container of a stack (RabbitMQ, Redis or PostgreSQL). Crash is
/// `docker stop -t 0` (SIGTERM and SIGKILL at once: no time to flush);
/// start waits until the service answers its own client again (on the same
/// port: host networking).
pub struct Container {
    services: Arc<Services>,
    kind: Kind,
}

impl Container {
    /// The `kind` container of `services`.
    pub fn new(services: Arc<Services>, kind: Kind) -> Self {
        Self { services, kind }
    }

    /// The service handle.
    pub fn service(&self) -> &Service {
        service(&self.services, self.kind)
    }
}

/// The `kind` service of `services`.
pub(crate) fn service(services: &Services, kind: Kind) -> &Service {
    match kind {
        Kind::RabbitMq => &services.rabbitmq,
        Kind::Redis => &services.redis,
        Kind::Postgres => &services.postgres,
    }
}

impl Target for Container {
    fn name(&self) -> String {
        service_name(self.kind).to_owned()
    }

    async fn crash(&self) -> Result<(), OutageError> {
        Ok(self.service().kill().await?)
    }

    async fn stop(&self) -> Result<(), OutageError> {
        Ok(self.service().stop().await?)
    }

    async fn start(&self) -> Result<(), OutageError> {
        Ok(self.service().start().await?)
    }

    async fn pause(&self) -> Result<(), OutageError> {
        Ok(self.service().pause().await?)
    }

    async fn unpause(&self) -> Result<(), OutageError> {
        Ok(self.service().unpause().await?)
    }
}

/// A service's name in steps and proxy names.
pub(crate) fn service_name(kind: Kind) -> &'static str {
    match kind {
        Kind::RabbitMq => "rabbitmq",
        Kind::Redis => "redis",
        Kind::Postgres => "postgres",
    }
}

/// An rtmc component running as a child process, with the factory that
/// starts it again: the same binary and configuration, so the same listen
/// and ops addresses, and clients reconnect where they were.
pub struct Process {
    name: String,
    role: Role,
    /// The configuration every incarnation runs with (ports fixed).
    cfg: Config,
    binary: PathBuf,
    /// The running incarnation; `None` after a crash or stop.
    running: tokio::sync::Mutex<Option<NodeProcess>>,
}

impl Process {
    /// Takes over `node`, named `name`; `binary` is what restarts run.
    pub fn new(name: impl Into<String>, node: NodeProcess, binary: PathBuf) -> Self {
        Self {
            name: name.into(),
            role: node.role,
            cfg: node.cfg.clone(),
            binary,
            running: tokio::sync::Mutex::new(Some(node)),
        }
    }

    /// The component it runs.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where clients connect (server, gateway); the same in every incarnation.
    pub fn addr(&self) -> Option<&str> {
        match self.role {
            Role::Server => Some(&self.cfg.server.listen),
            Role::Gateway => Some(&self.cfg.gateway.listen),
            Role::Consumer | Role::Sync => None,
        }
    }

    /// Its ops endpoint (health, metrics), if it has one.
    pub fn ops_addr(&self) -> Option<&str> {
        match self.role {
            Role::Server => Some(&self.cfg.server.ops_listen),
            Role::Consumer => Some(&self.cfg.consumer.ops_listen),
            Role::Sync => Some(&self.cfg.sync.ops_listen),
            Role::Gateway => None,
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The running incarnation's process id.
    pub async fn pid(&self) -> Option<u32> {
        self.running.lock().await.as_ref().map(NodeProcess::pid)
    }

    fn failed(&self, e: impl fmt::Display) -> OutageError {
        OutageError::Process {
            target: self.name.clone(),
            message: e.to_string(),
        }
    }

    async fn take_running(&self) -> Result<NodeProcess, OutageError> {
        self.running
            .lock()
            .await
            .take()
            .ok_or_else(|| OutageError::NotRunning(self.name.clone()))
    }
}

impl Target for Process {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn crash(&self) -> Result<(), OutageError> {
        let node = self.take_running().await?;
        // SIGKILL, then reaped: its sockets are closed when this returns.
        tokio::task::spawn_blocking(move || node.kill())
            .await
            .map_err(|e| self.failed(e))
    }

    async fn stop(&self) -> Result<(), OutageError> {
        let node = self.take_running().await?;
        // A frozen process cannot act on SIGINT: thaw it first (a running
        // one ignores SIGCONT; one that died already has nothing to thaw).
        let _ = node.unpause().await;
        node.stop().await.map_err(|e| self.failed(e))
    }

    async fn start(&self) -> Result<(), OutageError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Err(OutageError::AlreadyRunning(self.name.clone()));
        }
        let node = NodeProcess::spawn_at(self.role, self.cfg.clone(), &self.binary)
            .await
            .map_err(|e| self.failed(e))?;
        *running = Some(node);
        Ok(())
    }

    async fn pause(&self) -> Result<(), OutageError> {
        match self.running.lock().await.as_ref() {
            Some(node) => node.pause().await.map_err(|e| self.failed(e)),
            None => Err(OutageError::NotRunning(self.name.clone())),
        }
    }

    async fn unpause(&self) -> Result<(), OutageError> {
        match self.running.lock().await.as_ref() {
            Some(node) => node.unpause().await.map_err(|e| self.failed(e)),
            None => Err(OutageError::NotRunning(self.name.clone())),
        }
    }
}
