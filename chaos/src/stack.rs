//! A whole rtmc stack with a fault proxy on the links a test asks for: the
//! services (shared or private), a [`FaultProxy`] per requested [`Link`]
//! forwarding to the right upstream, and a `rtmc_testkit::Pipeline` whose
//! components reach their services through those proxies — only the
//! components of that link: [`Link::ConsumerRedis`] reroutes the consumer's
//! Redis URL and leaves the server nodes' alone. Outages of its containers
//! and of rtmc processes ([`crate::stack::outage`]) are recorded in one log.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rtmc_chaos::{ms, ChaosStack, Link, StackOptions};
//! let stack = ChaosStack::shared(
//!     StackOptions::default()
//!         .link(Link::ConsumerRedis)
//!         .link(Link::GatewayRabbitmq),
//! )
//! .await?;
//! let slow = stack.link(Link::ConsumerRedis).latency(ms(200));
//! let hole = stack.link(Link::GatewayRabbitmq).black_hole();
//! slow.remove();
//! hole.remove();
//! # Ok(()) }
//! ```

pub mod outage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rtmc::client::{ChatClient, ClientError};
use rtmc::config::Config;
use rtmc::secret::Secret;
use rtmc_testkit::services::Kind;
use rtmc_testkit::{Pipeline, PipelineOptions, Role, Services, TEST_PASSWORD};

use crate::proxy::fault_proxy::{FaultProxy, ProxyConfig};
use crate::stack::outage::{Container, OutageLog, Process, ProcessFault, ServiceFault};

/// A connection between two parts of the stack that a proxy can sit on.
/// The variants name the component (client side) first, the service second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Link {
    /// Clients → server node `i` (a proxy in front of the node; clients
    /// reach it through [`ChaosStack::server_addr`]).
    ClientServer(usize),
    /// The gateway publishing to RabbitMQ.
    GatewayRabbitmq,
    /// Server nodes publishing TCP `send`s to RabbitMQ.
    ServerRabbitmq,
    /// The consumer taking deliveries (and publishing dead letters).
    ConsumerRabbitmq,
    /// The gateway's sessions and presence.
    GatewayRedis,
    /// Server nodes following the stream, replaying, keeping sessions.
    ServerRedis,
    /// The consumer appending to the stream.
    ConsumerRedis,
    /// The sync worker reading and trimming the stream.
    SyncRedis,
    /// The gateway's logins.
    GatewayPostgres,
    /// Server nodes' logins, presence and history fallback.
    ServerPostgres,
    /// The sync worker's inserts.
    SyncPostgres,
}

impl Link {
    /// Every component ↔ service link (all but [`Link::ClientServer`]).
    pub const SERVICE_LINKS: [Link; 10] = [
        Link::GatewayRabbitmq,
        Link::ServerRabbitmq,
        Link::ConsumerRabbitmq,
        Link::GatewayRedis,
        Link::ServerRedis,
        Link::ConsumerRedis,
        Link::SyncRedis,
        Link::GatewayPostgres,
        Link::ServerPostgres,
        Link::SyncPostgres,
    ];

    /// The component on the client side, for a component ↔ service link.
    pub fn component(self) -> Option<Role> {
        Some(match self {
            Link::ClientServer(_) => return None,
            Link::GatewayRabbitmq | Link::GatewayRedis | Link::GatewayPostgres => Role::Gateway,
            Link::ServerRabbitmq | Link::ServerRedis | Link::ServerPostgres => Role::Server,
            Link::ConsumerRabbitmq | Link::ConsumerRedis => Role::Consumer,
            Link::SyncRedis | Link::SyncPostgres => Role::Sync,
        })
    }

    /// The service on the upstream side, for a component ↔ service link.
    pub fn service(self) -> Option<Kind> {
        Some(match self {
            Link::ClientServer(_) => return None,
            Link::GatewayRabbitmq | Link::ServerRabbitmq | Link::ConsumerRabbitmq => Kind::RabbitMq,
            Link::GatewayRedis | Link::ServerRedis | Link::ConsumerRedis | Link::SyncRedis => {
                Kind::Redis
            }
            Link::GatewayPostgres | Link::ServerPostgres | Link::SyncPostgres => Kind::Postgres,
        })
    }

    /// The link from `component` to `service`, if rtmc has one.
    pub fn between(component: Role, service: Kind) -> Option<Link> {
        Self::SERVICE_LINKS
            .into_iter()
            .find(|l| l.component() == Some(component) && l.service() == Some(service))
    }

    /// The proxy's name: `consumer-redis`, `client-server-0`, ….
    pub fn name(self) -> String {
        match (self, self.component(), self.service()) {
            (Link::ClientServer(i), _, _) => format!("client-server-{i}"),
            (_, Some(role), Some(kind)) => {
                format!("{}-{}", role.name(), outage::service_name(kind))
            }
            _ => unreachable!("every service link has both ends"),
        }
    }
}

/// How to shape a [`ChaosStack`]: the pipeline, and the links to proxy.
#[derive(Default)]
pub struct StackOptions {
    /// The deployment (server nodes, which components run, configuration).
    /// Its `per_component` edits apply before the links reroute.
    pub pipeline: PipelineOptions,
    /// The links that get a fault proxy.
    pub links: Vec<Link>,
    /// Whether the stack may crash, stop or pause its service containers:
    /// only when the services are its own (no other test uses them).
    pub service_outages_allowed: bool,
}

impl StackOptions {
    /// With `pipeline` as the deployment.
    pub fn pipeline(mut self, pipeline: PipelineOptions) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// With a fault proxy on `link`.
    pub fn link(mut self, link: Link) -> Self {
        if !self.links.contains(&link) {
            self.links.push(link);
        }
        self
    }

    /// With a fault proxy on each of `links`.
    pub fn links(self, links: impl IntoIterator<Item = Link>) -> Self {
        links.into_iter().fold(self, Self::link)
    }

    /// The services are the stack's own: [`ChaosStack::rabbitmq`] and its
    /// siblings may crash, stop or pause them.
    pub fn allow_service_outages(mut self) -> Self {
        self.service_outages_allowed = true;
        self
    }
}

/// One rtmc deployment with fault proxies on the requested links and
/// outages of its containers and processes. Dropping it stops the pipeline
/// first, then the proxies (the services outlive both).
pub struct ChaosStack {
    pipeline: Pipeline,
    proxies: BTreeMap<Link, FaultProxy>,
    services: Arc<Services>,
    /// Whether the services are this stack's own (outages allowed).
    service_outages_allowed: bool,
    log: OutageLog,
    /// Processes spawned so far (they are named `<role>-p<n>`).
    spawned: AtomicUsize,
}

impl ChaosStack {
    /// A stack on the test binary's shared services: links may be faulted,
    /// the services must be left alone. Sets up the test logs.
    pub async fn shared(opts: StackOptions) -> anyhow::Result<ChaosStack> {
        rtmc_testkit::init_test_logs();
        let opts = StackOptions {
            service_outages_allowed: false,
            ..opts
        };
        Self::start(rtmc_testkit::shared().await, opts).await
    }

    /// A stack on services of its own, for a test that crashes, stops or
    /// pauses them ([`ChaosStack::rabbitmq`], …). Sets up the test logs.
    pub async fn private(opts: StackOptions) -> anyhow::Result<ChaosStack> {
        rtmc_testkit::init_test_logs();
        let opts = opts.allow_service_outages();
        Self::start(Arc::new(Services::start().await?), opts).await
    }

    /// Starts the proxies on `services`, then the pipeline routed through
    /// them, then a proxy in front of each requested server node. Outages of
    /// the services only with [`StackOptions::allow_service_outages`].
    /// Installs no log subscriber (tools).
    pub async fn start(
        services: Arc<Services>,
        mut opts: StackOptions,
    ) -> anyhow::Result<ChaosStack> {
        let (mut proxies, routes) = proxy_service_links(&services, &opts.links).await?;
        let routes = Arc::new(routes);
        let theirs = opts.pipeline.per_component.clone();
        let ours = routes.clone();
        opts.pipeline.per_component = Arc::new(move |role, cfg| {
            theirs(role, cfg);
            for route in ours.iter().filter(|r| r.role == role) {
                route.apply(cfg);
            }
        });
        let pipeline = Pipeline::start(&services, opts.pipeline).await?;
        for route in routes.iter() {
            route.check(&pipeline)?;
        }
        for &link in &opts.links {
            if let Link::ClientServer(i) = link {
                anyhow::ensure!(
                    pipeline.servers.get(i).is_some_and(Option::is_some),
                    "{link:?}: the pipeline has no server node {i}"
                );
                let proxy = FaultProxy::start_with(
                    ProxyConfig::new(link.name()).refuse_when_upstream_down(true),
                    pipeline.server_addr(i),
                )
                .await?;
                proxies.insert(link, proxy);
            }
        }
        Ok(ChaosStack {
            pipeline,
            proxies,
            services,
            service_outages_allowed: opts.service_outages_allowed,
            log: OutageLog::default(),
            spawned: AtomicUsize::new(0),
        })
    }

    /// The fault proxy on `link`, whose verbs inject the faults:
    /// `stack.link(Link::ConsumerRedis).latency(ms(200))`.
    ///
    /// # Panics
    /// When `link` was not asked for in [`StackOptions::link`].
    pub fn link(&self, link: Link) -> &FaultProxy {
        self.proxies
            .get(&link)
            .unwrap_or_else(|| panic!("{link:?} has no proxy: ask for it with StackOptions::link"))
    }

    /// The deployment (users, clients, HTTP publishing, stored messages).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The deployment, to add or stop in-process components.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// Where clients reach server node `node`: its proxy when
    /// [`Link::ClientServer`] was asked for, else the node itself.
    pub fn server_addr(&self, node: usize) -> String {
        match self.proxies.get(&Link::ClientServer(node)) {
            Some(proxy) => proxy.addr().to_string(),
            None => self.pipeline.server_addr(node),
        }
    }

    /// A logged-in client of server node `node` (through its proxy if any).
    pub async fn client(&self, node: usize, user: &str) -> Result<ChatClient, ClientError> {
        ChatClient::connect(&self.server_addr(node), user, TEST_PASSWORD).await
    }

    /// The RabbitMQ container's outages.
    ///
    /// # Panics
    /// On a stack from [`ChaosStack::shared`]: other tests use its services.
    pub fn rabbitmq(&self) -> ServiceFault {
        self.container(Kind::RabbitMq)
    }

    /// The Redis container's outages (panics on a shared stack).
    pub fn redis(&self) -> ServiceFault {
        self.container(Kind::Redis)
    }

    /// The PostgreSQL container's outages (panics on a shared stack).
    pub fn postgres(&self) -> ServiceFault {
        self.container(Kind::Postgres)
    }

    /// The outages of the `kind` service container (panics on a shared
    /// stack): [`ChaosStack::rabbitmq`] and its siblings by kind.
    pub fn service_fault(&self, kind: Kind) -> ServiceFault {
        self.container(kind)
    }

    fn container(&self, kind: Kind) -> ServiceFault {
        assert!(
            self.service_outages_allowed,
            "outages of {} need a stack of its own: ChaosStack::private",
            outage::service_name(kind)
        );
        ServiceFault::new(
            Container::new(self.services.clone(), kind),
            self.log.clone(),
        )
    }

    /// Starts `role` as an `rtmc` child process with this stack's
    /// configuration (its links proxied like the in-process components)
    /// and returns its outages; restarts keep its addresses. Dropping the
    /// fault kills the process.
    pub async fn spawn(&self, role: Role) -> anyhow::Result<ProcessFault> {
        let binary = rtmc_testkit::process::rtmc_binary()?;
        let node = self.pipeline.spawn_process(role).await?;
        let n = self.spawned.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{}-p{n}", role.name());
        Ok(ProcessFault::new(
            Process::new(name, node, binary),
            self.log.clone(),
        ))
    }

    /// Every outage step so far, with its timing.
    pub fn outages(&self) -> &OutageLog {
        &self.log
    }

    /// The services (to reach them directly, bypassing the proxies).
    pub fn services(&self) -> &Services {
        &self.services
    }
}

/// A fault proxy in front of the service of each component ↔ service link
/// in `links`, and the route that points the component at it.
async fn proxy_service_links(
    services: &Services,
    links: &[Link],
) -> anyhow::Result<(BTreeMap<Link, FaultProxy>, Vec<Route>)> {
    let mut proxies = BTreeMap::new();
    let mut routes = Vec::new();
    for &link in links {
        let (Some(role), Some(kind)) = (link.component(), link.service()) else {
            continue;
        };
        let upstream = format!("127.0.0.1:{}", outage::service(services, kind).port);
        let proxy = FaultProxy::start_with(
            // A stopped service refuses through the proxy as it would without it.
            ProxyConfig::new(link.name()).refuse_when_upstream_down(true),
            upstream.clone(),
        )
        .await?;
        routes.push(Route {
            role,
            kind,
            service: upstream,
            proxy: proxy.addr().to_string(),
        });
        proxies.insert(link, proxy);
    }
    Ok((proxies, routes))
}

/// One rerouted component ↔ service connection.
struct Route {
    role: Role,
    kind: Kind,
    /// The service's `127.0.0.1:<port>`.
    service: String,
    /// The proxy's `127.0.0.1:<port>`.
    proxy: String,
}

impl Route {
    /// Points `cfg`'s URL of the service at the proxy.
    fn apply(&self, cfg: &mut Config) {
        let url = service_url(cfg, self.kind);
        *url = replace_authority(url.expose_secret(), &self.service, &self.proxy).into();
    }

    /// Fails when `pipeline` does not reach the service through the proxy.
    fn check(&self, pipeline: &Pipeline) -> anyhow::Result<()> {
        let mut cfg = pipeline.config_for(self.role);
        let url = service_url(&mut cfg, self.kind);
        anyhow::ensure!(
            url.expose_secret().contains(&self.proxy),
            "the {} link is not proxied: its URL does not name 127.0.0.1:{} (changed by `configure`?)",
            self.role.name(),
            self.service
        );
        Ok(())
    }
}

/// `url` with the authority `from` (`127.0.0.1:<port>`, not followed by
/// another digit) replaced by `to`.
fn replace_authority(url: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn service_url(cfg: &mut Config, kind: Kind) -> &mut Secret<String> {
    match kind {
        Kind::RabbitMq => &mut cfg.rabbitmq.url,
        Kind::Redis => &mut cfg.redis.url,
        Kind::Postgres => &mut cfg.postgres.url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_service_authority_is_rerouted() {
        let url = "postgres://postgres@127.0.0.1:5432/t1";
        assert_eq!(
            replace_authority(url, "127.0.0.1:5432", "127.0.0.1:40001"),
            "postgres://postgres@127.0.0.1:40001/t1"
        );
        let other_port = "redis://127.0.0.1:54321";
        assert_eq!(
            replace_authority(other_port, "127.0.0.1:5432", "127.0.0.1:1"),
            other_port
        );
    }

    #[test]
    fn each_service_link_names_its_two_ends() {
        for link in Link::SERVICE_LINKS {
            let (role, kind) = (link.component().unwrap(), link.service().unwrap());
            assert_eq!(Link::between(role, kind), Some(link));
        }
        assert_eq!(Link::ConsumerRedis.name(), "consumer-redis");
        assert_eq!(Link::ClientServer(1).name(), "client-server-1");
    }
}
