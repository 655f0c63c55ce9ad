//! [`FaultProxy`]: a TCP proxy between two components that injects faults —
//! Toxiproxy's model (a proxy `{name, listen, upstream, enabled}` with toxics
//! per stream) plus turmoil's hold/release and one-way partitions.
//!
//! Started like every component here, from a bound listener and a
//! cancellation token ([`FaultProxy::run`], [`FaultProxy::spawn`]), or in one
//! call for tests ([`FaultProxy::start`]). A handle controls it; the verbs that
//! read like the faults (`proxy.latency(ms(200))`, `proxy.down()`) are in
//! `faults`.
//!
//! Disabling a proxy closes its listener (new clients are refused) and its
//! connections. With `refuse_when_upstream_down` the proxy also closes its
//! listener while the upstream does not accept connections, so clients see
//! "connection refused" as they would without the proxy; Toxiproxy accepts them
//! and closes at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::proxy::connection::{self, Generation};
use crate::proxy::error::FaultError;
use crate::proxy::link::{Chain, ToxicEntry};
use crate::proxy::toxics::{Direction, Toxic, ToxicInfo};

/// How often a proxy that refuses while its upstream is down checks it.
pub const DEFAULT_UPSTREAM_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one upstream probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (EMFILE and friends) instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How a proxy behaves, apart from where it listens and forwards to.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The proxy's name (unique within a collection).
    pub name: String,
    /// Close the listener while the upstream refuses connections, so clients
    /// are refused too (Toxiproxy accepts and then closes them).
    pub refuse_when_upstream_down: bool,
    /// How often the upstream is probed when `refuse_when_upstream_down`
    /// (each probe is a TCP connect and close).
    pub upstream_probe_interval: Duration,
    /// Toxics in place before the first client is accepted.
    pub toxics: Vec<Toxic>,
    /// Seed of the proxy's randomness (toxicity, jitter, slicing); drawn at
    /// random and logged when absent.
    pub seed: Option<u64>,
}

impl ProxyConfig {
    /// A proxy named `name` with no toxics.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            refuse_when_upstream_down: false,
            upstream_probe_interval: DEFAULT_UPSTREAM_PROBE_INTERVAL,
            toxics: Vec::new(),
            seed: None,
        }
    }

    /// With `toxic` in place from the start.
    pub fn toxic(mut self, toxic: impl Into<Toxic>) -> Self {
        self.toxics.push(toxic.into());
        self
    }

    /// Refusing clients while the upstream is down.
    pub fn refuse_when_upstream_down(mut self, refuse: bool) -> Self {
        self.refuse_when_upstream_down = refuse;
        self
    }

    /// With this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// A proxy as the HTTP API shows it: Toxiproxy's shape, plus this proxy's
/// extras only when they are set (Toxiproxy clients ignore them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyInfo {
    /// `name`.
    pub name: String,
    /// `listen`: the bound address once it listened, else as configured.
    pub listen: String,
    /// `upstream`: the address dialled for each client.
    pub upstream: String,
    /// `enabled`.
    pub enabled: bool,
    /// `toxics`, upstream ones first, each stream in the order added.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub toxics: Vec<ToxicInfo>,
    /// Extra: refusing clients while the upstream is down.
    #[serde(default, skip_serializing_if = "is_false")]
    pub refuse_when_upstream_down: bool,
    /// Extra: held streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Direction>,
    /// Extra: partitioned (dropped) streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitioned: Vec<Direction>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// What a stream of a proxy can be put under besides toxics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Bytes are buffered until released.
    Held,
    /// Bytes are dropped until healed.
    Partitioned,
}

/// Fields of a proxy update; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProxyUpdate {
    /// New listen address (the proxy restarts on it if it differs).
    pub listen: Option<String>,
    /// New upstream (the proxy restarts if it differs, closing connections).
    pub upstream: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Refuse clients while the upstream is down.
    pub refuse_when_upstream_down: Option<bool>,
}

/// A running fault proxy. Clones control the same proxy; it stops when its
/// token is cancelled, on [`FaultProxy::shutdown`], or when the last handle
/// is dropped.
#[derive(Clone)]
pub struct FaultProxy {
    pub(crate) shared: Arc<Shared>,
    _stop_when_dropped: Arc<DropGuard>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// What the handle and the proxy's tasks share.
pub(crate) struct Shared {
    name: String,
    state: Mutex<State>,
    /// The [upstream, downstream] chains every link watches.
    chains: [watch::Sender<Arc<Chain>>; 2],
    rng: Mutex<StdRng>,
    /// Connections accepted since the last "close them all".
    generation: Mutex<Arc<Generation>>,
    /// A dial to the upstream failed (refusing proxies re-probe at once).
    upstream_down: Notify,
    tasks: TaskTracker,
    /// The proxy's life.
    token: CancellationToken,
    /// The accept loop while enabled; its lock orders enable/disable/update.
    listening: tokio::sync::Mutex<Option<AcceptTask>>,
}

struct State {
    listen: String,
    upstream: String,
    enabled: bool,
    refuse_when_upstream_down: bool,
    probe_interval: Duration,
    toxics: [Vec<Arc<ToxicEntry>>; 2],
    held: [bool; 2],
    partitioned: [bool; 2],
    next_toxic_id: u64,
}

impl State {
    fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.toxics.iter().enumerate().find_map(|(dir, list)| {
            list.iter()
                .position(|e| e.toxic.name == name)
                .map(|i| (dir, i))
        })
    }
}

struct AcceptTask {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy listening on a fresh 127.0.0.1 port, forwarding to `upstream`,
    /// until the last handle is dropped.
    pub async fn start(name: &str, upstream: impl Into<String>) -> Result<Self, FaultError> {
        Self::start_with(ProxyConfig::new(name), upstream).await
    }

    /// [`FaultProxy::start`] with a configuration (toxics in place before the
    /// first client, refusal while the upstream is down, seed).
    pub async fn start_with(
        cfg: ProxyConfig,
        upstream: impl Into<String>,
    ) -> Result<Self, FaultError> {
        let proxy = Self::new(cfg, "127.0.0.1:0", upstream, &CancellationToken::new())?;
        proxy.up().await?;
        Ok(proxy)
    }

    /// Serves `listener`, forwarding to `upstream`, until `token` is
    /// cancelled; then closes every connection and returns.
    pub async fn run(
        cfg: ProxyConfig,
        listener: TcpListener,
        upstream: impl Into<String>,
        token: CancellationToken,
    ) -> Result<(), FaultError> {
        let proxy = Self::spawn(cfg, listener, upstream, &token)?;
        token.cancelled().await;
        proxy.shutdown().await;
        Ok(())
    }

    /// Serves `listener` in the background and returns the handle.
    pub fn spawn(
        cfg: ProxyConfig,
        listener: TcpListener,
        upstream: impl Into<String>,
        token: &CancellationToken,
    ) -> Result<Self, FaultError> {
        let addr = listener.local_addr().map_err(|source| FaultError::Listen {
            addr: "?".into(),
            source,
        })?;
        let proxy = Self::new(cfg, addr.to_string(), upstream, token)?;
        let mut listening = proxy
            .shared
            .listening
            .try_lock()
            .expect("a new proxy's listener slot is free");
        proxy.listen_on(&mut listening, listener, addr);
        drop(listening);
        Ok(proxy)
    }

    /// A proxy that is not listening yet (see [`FaultProxy::up`]). Its toxics
    /// are in place before it accepts anyone.
    pub fn new(
        cfg: ProxyConfig,
        listen: impl Into<String>,
        upstream: impl Into<String>,
        token: &CancellationToken,
    ) -> Result<Self, FaultError> {
        let seed = cfg.seed.unwrap_or_else(|| rand::rng().random());
        tracing::debug!(proxy = ?cfg.name, seed, "proxy seed");
        let token = token.child_token();
        let shared = Arc::new(Shared {
            name: cfg.name,
            state: Mutex::new(State {
                listen: listen.into(),
                upstream: upstream.into(),
                enabled: false,
                refuse_when_upstream_down: cfg.refuse_when_upstream_down,
                probe_interval: cfg.upstream_probe_interval.max(Duration::from_millis(1)),
                toxics: Default::default(),
                held: [false; 2],
                partitioned: [false; 2],
                next_toxic_id: 0,
            }),
            chains: [
                watch::Sender::new(Arc::default()),
                watch::Sender::new(Arc::default()),
            ],
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            generation: Mutex::new(Arc::new(Generation::new(token.child_token()))),
            upstream_down: Notify::new(),
            tasks: TaskTracker::new(),
            listening: tokio::sync::Mutex::new(None),
            token: token.clone(),
        });
        let proxy = Self {
            shared,
            _stop_when_dropped: Arc::new(token.drop_guard()),
        };
        for toxic in cfg.toxics {
            proxy.add_toxic(toxic)?;
        }
        Ok(proxy)
    }

    /// The proxy's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where clients connect: the bound address (after it listened once).
    pub fn addr(&self) -> SocketAddr {
        let listen = self.shared.state().listen.clone();
        listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The address dialled for each client.
    pub fn upstream_addr(&self) -> String {
        self.shared.state().upstream.clone()
    }

    /// Whether it is enabled (listening, or refusing for a down upstream).
    pub fn is_enabled(&self) -> bool {
        self.shared.state().enabled
    }

    /// Enables the proxy: binds its listen address (the same one again after
    /// a `down`). Already enabled: nothing to do.
    pub async fn up(&self) -> Result<(), FaultError> {
        let mut listening = self.shared.listening.lock().await;
        if listening.is_some() || self.shared.token.is_cancelled() {
            return Ok(());
        }
        let listen = self.shared.state().listen.clone();
        let addr = resolve(&listen).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| FaultError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(addr);
        self.listen_on(&mut listening, listener, addr);
        Ok(())
    }

    /// Disables the proxy: new clients are refused, connections are closed.
    pub async fn down(&self) {
        let mut listening = self.shared.listening.lock().await;
        self.stop_listening(&mut listening).await;
    }

    /// Changes listen address, upstream, enabled or refusal, as Toxiproxy's
    /// `POST /proxies/{proxy}`: a new listen address or upstream restarts the
    /// proxy (closing its connections).
    pub async fn update(&self, change: ProxyUpdate) -> Result<(), FaultError> {
        let mut listening = self.shared.listening.lock().await;
        let (listen, upstream, enabled) = {
            let state = self.shared.state();
            (
                change.listen.unwrap_or_else(|| state.listen.clone()),
                change.upstream.unwrap_or_else(|| state.upstream.clone()),
                change.enabled.unwrap_or(state.enabled),
            )
        };
        let resolved = resolve(&listen).await?.to_string();
        let differs = {
            let state = self.shared.state();
            resolved != state.listen || upstream != state.upstream
        };
        if let Some(refuse) = change.refuse_when_upstream_down {
            self.shared.state().refuse_when_upstream_down = refuse;
        }
        if differs {
            self.stop_listening(&mut listening).await;
            let mut state = self.shared.state();
            state.listen = listen;
            state.upstream = upstream;
        }
        if enabled && listening.is_none() {
            drop(listening);
            return self.up().await;
        }
        if !enabled {
            self.stop_listening(&mut listening).await;
        }
        Ok(())
    }

    /// Closes every connection now with a TCP reset; the proxy stays up.
    pub fn reset_connections(&self) {
        self.shared.end_generation(true);
    }

    /// Stops the proxy and waits until its connections are closed.
    pub async fn shutdown(&self) {
        let mut listening = self.shared.listening.lock().await;
        self.shared.token.cancel();
        self.stop_listening(&mut listening).await;
        drop(listening);
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    fn listen_on(
        &self,
        listening: &mut Option<AcceptTask>,
        listener: TcpListener,
        addr: SocketAddr,
    ) {
        let upstream = {
            let mut state = self.shared.state();
            state.listen = addr.to_string();
            state.enabled = true;
            state.upstream.clone()
        };
        tracing::info!(proxy = ?self.shared.name, listen = %addr, upstream = ?upstream, "proxy listening");
        let stop = self.shared.token.child_token();
        let handle = self.shared.tasks.spawn(accept_loop(
            self.shared.clone(),
            listener,
            addr,
            stop.clone(),
        ));
        *listening = Some(AcceptTask { stop, handle });
    }

    async fn stop_listening(&self, listening: &mut Option<AcceptTask>) {
        if let Some(task) = listening.take() {
            task.stop.cancel();
            let _ = task.handle.await;
            tracing::info!(proxy = ?self.shared.name, "proxy disabled");
        }
        self.shared.state().enabled = false;
        self.shared.end_generation(false);
    }

    /// Adds `toxic` (named `<type>_<stream>` when unnamed) to every current
    /// and future connection. Returns it as added.
    pub fn add_toxic(&self, toxic: impl Into<Toxic>) -> Result<Toxic, FaultError> {
        let mut toxic = toxic.into();
        if toxic.name.is_empty() {
            toxic.name = toxic.default_name();
        }
        let mut state = self.shared.state();
        if state.find(&toxic.name).is_some() {
            return Err(FaultError::ToxicAlreadyExists);
        }
        state.next_toxic_id += 1;
        let entry = ToxicEntry {
            id: state.next_toxic_id,
            revision: 0,
            toxic: toxic.clone(),
        };
        state.toxics[toxic.stream.index()].push(Arc::new(entry));
        self.shared.publish(&state, toxic.stream);
        tracing::info!(proxy = ?self.shared.name, toxic = ?toxic.name, kind = toxic.kind.type_name(), stream = %toxic.stream, "toxic added");
        Ok(toxic)
    }

    /// The toxic named `name`.
    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        let state = self.shared.state();
        state
            .find(name)
            .map(|(dir, i)| state.toxics[dir][i].toxic.clone())
    }

    /// Every toxic, upstream ones first, each stream in the order added.
    pub fn toxics(&self) -> Vec<Toxic> {
        let state = self.shared.state();
        state
            .toxics
            .iter()
            .flatten()
            .map(|e| e.toxic.clone())
            .collect()
    }

    /// Changes the toxic named `name` with `edit` (its name and stream stay);
    /// live connections take the change at once.
    pub fn update_toxic(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Toxic) -> Result<(), FaultError>,
    ) -> Result<Toxic, FaultError> {
        let mut state = self.shared.state();
        let (dir, i) = state.find(name).ok_or(FaultError::ToxicNotFound)?;
        let old = state.toxics[dir][i].clone();
        let mut toxic = old.toxic.clone();
        edit(&mut toxic)?;
        toxic.name = old.toxic.name.clone();
        toxic.stream = old.toxic.stream;
        state.toxics[dir][i] = Arc::new(ToxicEntry {
            id: old.id,
            revision: old.revision + 1,
            toxic: toxic.clone(),
        });
        self.shared.publish(&state, toxic.stream);
        tracing::info!(proxy = ?self.shared.name, toxic = ?name, "toxic updated");
        Ok(toxic)
    }

    /// Removes the toxic named `name` from every connection.
    pub fn remove_toxic(&self, name: &str) -> Result<(), FaultError> {
        let mut state = self.shared.state();
        let (dir, i) = state.find(name).ok_or(FaultError::ToxicNotFound)?;
        let entry = state.toxics[dir].remove(i);
        self.shared.publish(&state, entry.toxic.stream);
        tracing::info!(proxy = ?self.shared.name, toxic = ?name, "toxic removed");
        Ok(())
    }

    /// Removes every toxic.
    pub fn clear_toxics(&self) {
        let mut state = self.shared.state();
        for dir in Direction::BOTH {
            state.toxics[dir.index()].clear();
            self.shared.publish(&state, dir);
        }
    }

    /// Makes the toxics exactly `toxics`: those that are already there
    /// unchanged stay as they are (connections keep their draw), changed ones
    /// are updated, others added or removed. Nothing changes on error.
    pub fn set_toxics(&self, toxics: Vec<Toxic>) -> Result<(), FaultError> {
        let mut wanted = toxics;
        for toxic in &mut wanted {
            if toxic.name.is_empty() {
                toxic.name = toxic.default_name();
            }
        }
        for (i, toxic) in wanted.iter().enumerate() {
            if wanted[..i].iter().any(|t| t.name == toxic.name) {
                return Err(FaultError::ToxicAlreadyExists);
            }
        }
        let mut state = self.shared.state();
        let mut lists: [Vec<Arc<ToxicEntry>>; 2] = Default::default();
        for toxic in &wanted {
            let entry = match state.find(&toxic.name) {
                Some((dir, i)) if state.toxics[dir][i].toxic == *toxic => {
                    state.toxics[dir][i].clone()
                }
                Some((dir, i)) if dir == toxic.stream.index() => {
                    let old = &state.toxics[dir][i];
                    Arc::new(ToxicEntry {
                        id: old.id,
                        revision: old.revision + 1,
                        toxic: toxic.clone(),
                    })
                }
                _ => {
                    state.next_toxic_id += 1;
                    Arc::new(ToxicEntry {
                        id: state.next_toxic_id,
                        revision: 0,
                        toxic: toxic.clone(),
                    })
                }
            };
            lists[toxic.stream.index()].push(entry);
        }
        state.toxics = lists;
        for dir in Direction::BOTH {
            self.shared.publish(&state, dir);
        }
        Ok(())
    }

    /// Turns `condition` on or off for `stream`.
    pub(crate) fn set_condition(&self, stream: Direction, condition: Condition, on: bool) {
        let mut state = self.shared.state();
        let flags = match condition {
            Condition::Held => &mut state.held,
            Condition::Partitioned => &mut state.partitioned,
        };
        if flags[stream.index()] != on {
            flags[stream.index()] = on;
            self.shared.publish(&state, stream);
            tracing::info!(proxy = ?self.shared.name, %stream, ?condition, on, "condition changed");
        }
    }

    /// The proxy as the API shows it.
    pub fn info(&self) -> ProxyInfo {
        let state = self.shared.state();
        let flagged = |flags: [bool; 2]| {
            Direction::BOTH
                .into_iter()
                .filter(|d| flags[d.index()])
                .collect()
        };
        ProxyInfo {
            name: self.shared.name.clone(),
            listen: state.listen.clone(),
            upstream: state.upstream.clone(),
            enabled: state.enabled,
            toxics: state
                .toxics
                .iter()
                .flatten()
                .map(|e| e.toxic.info())
                .collect(),
            refuse_when_upstream_down: state.refuse_when_upstream_down,
            held: flagged(state.held),
            partitioned: flagged(state.partitioned),
        }
    }

    /// Whether `listen` names the address this proxy listens on (after
    /// resolving it, as Toxiproxy compares), and `upstream` is its upstream.
    pub async fn same_addresses(&self, listen: &str, upstream: &str) -> Result<bool, FaultError> {
        let resolved = resolve(listen).await?.to_string();
        let state = self.shared.state();
        Ok(resolved == state.listen && upstream == state.upstream)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: &State, dir: Direction) {
        let i = dir.index();
        self.chains[i].send_replace(Arc::new(Chain {
            toxics: state.toxics[i].clone(),
            held: state.held[i],
            partitioned: state.partitioned[i],
        }));
    }

    fn generation(&self) -> Arc<Generation> {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes every current connection (with a reset if `reset`).
    fn end_generation(&self, reset: bool) {
        let fresh = Arc::new(Generation::new(self.token.child_token()));
        let old = std::mem::replace(
            &mut *self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        old.end(reset);
    }

    fn refusing(&self) -> bool {
        self.state().refuse_when_upstream_down
    }

    fn seed(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random()
    }
}

/// Why a listening phase ended.
enum Listening {
    Stopped,
    UpstreamDown,
}

/// Accepts clients on `listener` until `stop`; while refusing for a down
/// upstream, closes the listener and binds `addr` again once it is back.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let mut listener = Some(listener);
    loop {
        listener = match listener.take() {
            Some(listener) => match serve_clients(&shared, listener, &stop).await {
                Listening::Stopped => return,
                Listening::UpstreamDown => {
                    tracing::info!(proxy = ?shared.name, "upstream down: refusing clients");
                    None
                }
            },
            None => {
                let interval = shared.state().probe_interval;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if shared.refusing() && !probe(&shared).await {
                    None
                } else {
                    match TcpListener::bind(addr).await {
                        Ok(listener) => {
                            tracing::info!(proxy = ?shared.name, "upstream back: accepting clients");
                            Some(listener)
                        }
                        Err(e) => {
                            tracing::warn!(proxy = ?shared.name, listen = %addr, error = %e, "cannot listen again");
                            None
                        }
                    }
                }
            }
        };
    }
}

async fn serve_clients(
    shared: &Arc<Shared>,
    listener: TcpListener,
    stop: &CancellationToken,
) -> Listening {
    if shared.refusing() && !probe(shared).await {
        return Listening::UpstreamDown;
    }
    let mut tick = tokio::time::interval(shared.state().probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Listening::Stopped,
            () = shared.upstream_down.notified() => {
                if shared.refusing() && !probe(shared).await {
                    return Listening::UpstreamDown;
                }
            }
            _ = tick.tick() => {
                if shared.refusing() && !probe(shared).await {
                    return Listening::UpstreamDown;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let generation = shared.generation();
                    shared.tasks.spawn(handle_client(shared.clone(), client, peer, generation));
                }
                Err(e) => {
                    tracing::warn!(proxy = ?shared.name, error = %e, "accept failed");
                    tokio::select! {
                        () = stop.cancelled() => return Listening::Stopped,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            }
        }
    }
}

/// Dials the upstream for `client` and proxies between them.
async fn handle_client(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    generation: Arc<Generation>,
) {
    let upstream = shared.state().upstream.clone();
    let dialled = tokio::select! {
        () = generation.token.cancelled() => return,
        dialled = TcpStream::connect(upstream.as_str()) => dialled,
    };
    let server = match dialled {
        Ok(server) => server,
        Err(e) => {
            tracing::warn!(proxy = ?shared.name, %peer, upstream = ?upstream, error = %e, "upstream unreachable: closing the client");
            if shared.refusing() {
                let _ = client.set_zero_linger();
                shared.upstream_down.notify_one();
            }
            return;
        }
    };
    tracing::debug!(proxy = ?shared.name, %peer, "client connected");
    let chains = [shared.chains[0].subscribe(), shared.chains[1].subscribe()];
    let seeds = [shared.seed(), shared.seed()];
    connection::serve(client, server, chains, generation, seeds).await;
    tracing::debug!(proxy = ?shared.name, %peer, "client disconnected");
}

/// Whether the upstream accepts a TCP connection now.
async fn probe(shared: &Shared) -> bool {
    let upstream = shared.state().upstream.clone();
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(upstream.as_str())).await,
        Ok(Ok(_))
    )
}

/// The address `listen` names, IPv4 first (as Go's resolver prefers); empty
/// means 127.0.0.1 on a free port.
pub(crate) async fn resolve(listen: &str) -> Result<SocketAddr, FaultError> {
    let listen = if listen.is_empty() {
        "127.0.0.1:0"
    } else {
        listen
    };
    let failed = |source| FaultError::Listen {
        addr: listen.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(failed)?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| failed(std::io::Error::other("no address")))
}
