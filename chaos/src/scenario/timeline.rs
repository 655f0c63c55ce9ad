//! Runs a scenario's faults at their offsets while the load runs: each
//! fault is applied at `at` after publishing started and undone at
//! `at + for`, on the stack's services (outages), its server node processes
//! (outages), its links' proxies (toxics, down, hold, partition) or
//! loadgen's clients (storms, half-open, slow readers). Every fault leaves a [`FaultWindow`]: when it was in
//! effect and when it was undone, for the report's shading and recovery
//! times.

use std::sync::Arc;
use std::time::Duration;

use rtmc_loadgen::engine::faults::FleetFaults;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::proxy::fault_proxy::FaultProxy;
use crate::proxy::toxics::{ms, Direction};
use crate::scenario::file::{ClientFaultSpec, FaultSpec, LinkFault, Outage, TimedFault};
use crate::stack::outage::{ProcessFault, ServiceFault};
use crate::stack::ChaosStack;

/// When one fault was in effect, in seconds since publishing started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// 1-based, in scenario order.
    pub index: usize,
    /// `rabbitmq sigkill at 5s for 5s`.
    pub label: String,
    /// As scheduled.
    pub planned_start_secs: f64,
    pub planned_end_secs: f64,
    /// When the fault took effect (an outage: the target was down).
    pub started_secs: Option<f64>,
    /// When it was undone (an outage: the target served again).
    pub ended_secs: Option<f64>,
    /// Why applying or undoing it failed.
    pub error: Option<String>,
}

/// What faults act on beyond the stack's services and links.
#[derive(Clone, Default)]
pub struct FaultTargets {
    /// loadgen's clients of a global-room load (none for a room workload).
    pub clients: Option<FleetFaults>,
    /// Server nodes `1 ..` as processes (`nodes[i - 1]` is node `i`).
    pub nodes: Arc<Vec<ProcessFault>>,
}

impl FaultTargets {
    /// A global-room load's clients, and no server node processes.
    pub fn of_clients(clients: FleetFaults) -> Self {
        FaultTargets {
            clients: Some(clients),
            nodes: Arc::default(),
        }
    }
}

/// How to undo an applied fault.
enum Undo {
    Start(ServiceFault),
    Unpause(ServiceFault),
    StartNode(Arc<Vec<ProcessFault>>, usize),
    UnpauseNode(Arc<Vec<ProcessFault>>, usize),
    /// Removes the toxic(s) one verb added.
    RemoveToxic(Box<dyn FnOnce() + Send>),
    Up(FaultProxy),
    Release(FaultProxy),
    Heal(FaultProxy),
    Reconnect(FleetFaults, Vec<usize>, bool),
    ReadNormally(FleetFaults, Vec<usize>),
}

/// Runs every fault of `faults` on its schedule from `t0`; returns their
/// windows once the last one was undone.
pub async fn run(
    faults: Vec<TimedFault>,
    stack: Arc<ChaosStack>,
    targets: FaultTargets,
    t0: Instant,
) -> Vec<FaultWindow> {
    let mut tasks = JoinSet::new();
    for (k, f) in faults.into_iter().enumerate() {
        let (stack, clients) = (stack.clone(), targets.clone());
        tasks.spawn(async move { run_one(k + 1, f, &stack, clients, t0).await });
    }
    let mut windows = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(w) => windows.push(w),
            Err(e) => tracing::error!(error = %e, "a fault task failed"),
        }
    }
    windows.sort_by_key(|w| w.index);
    windows
}

async fn run_one(
    index: usize,
    f: TimedFault,
    stack: &ChaosStack,
    clients: FaultTargets,
    t0: Instant,
) -> FaultWindow {
    let secs = |i: Instant| i.saturating_duration_since(t0).as_secs_f64();
    let mut w = FaultWindow {
        index,
        label: f.to_string(),
        planned_start_secs: f.at.as_secs_f64(),
        planned_end_secs: f.end().as_secs_f64(),
        started_secs: None,
        ended_secs: None,
        error: None,
    };
    tokio::time::sleep_until(t0 + f.at).await;
    tracing::info!(fault = %w.label, "fault starts");
    let undo = match apply(&f.fault, stack, &clients).await {
        Ok(u) => u,
        Err(e) => {
            w.error = Some(format!("applying: {e}"));
            return w;
        }
    };
    w.started_secs = Some(secs(Instant::now()));
    tokio::time::sleep_until(t0 + f.end()).await;
    if let Err(e) = undo_fault(undo).await {
        w.error = Some(format!("undoing: {e}"));
    }
    w.ended_secs = Some(secs(Instant::now()));
    tracing::info!(fault = %w.label, "fault undone");
    w
}

async fn apply(
    fault: &FaultSpec,
    stack: &ChaosStack,
    targets: &FaultTargets,
) -> anyhow::Result<Undo> {
    Ok(match *fault {
        FaultSpec::Node { node, outage } => {
            let nodes = targets.nodes.clone();
            let target = nodes
                .get(node.wrapping_sub(1))
                .ok_or_else(|| anyhow::anyhow!("server node {node} is not a process here"))?;
            match outage {
                Outage::Sigkill => target.crash().await.map(drop)?,
                Outage::Stop => target.stop().await.map(drop)?,
                Outage::Pause => {
                    target.pause().await?;
                    return Ok(Undo::UnpauseNode(nodes, node - 1));
                }
            }
            Undo::StartNode(nodes, node - 1)
        }
        FaultSpec::Outage { service, outage } => {
            let target = stack.service_fault(service);
            match outage {
                Outage::Sigkill => {
                    target.crash().await?;
                    Undo::Start(target)
                }
                Outage::Stop => {
                    target.stop().await?;
                    Undo::Start(target)
                }
                Outage::Pause => {
                    target.pause().await?;
                    Undo::Unpause(target)
                }
            }
        }
        FaultSpec::Link { link, fault } => {
            let proxy = stack.link(link).clone();
            apply_link(fault, proxy).await
        }
        FaultSpec::Clients(c) => {
            let clients = targets
                .clients
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("client faults need the global room's clients"))?;
            apply_clients(c, clients)
        }
    })
}

/// A fault loadgen's clients act out.
fn apply_clients(c: ClientFaultSpec, clients: &FleetFaults) -> Undo {
    match c {
        ClientFaultSpec::DisconnectStorm { fraction, resume } => {
            Undo::Reconnect(clients.clone(), clients.disconnect_storm(fraction), resume)
        }
        ClientFaultSpec::HalfOpen { fraction } => {
            let picked = clients.pick(fraction);
            clients.half_open(&picked);
            Undo::ReadNormally(clients.clone(), picked)
        }
        ClientFaultSpec::SlowReaders {
            fraction,
            bytes_per_sec,
        } => {
            let picked = clients.pick(fraction);
            clients.slow_readers(&picked, bytes_per_sec);
            Undo::ReadNormally(clients.clone(), picked)
        }
    }
}

async fn apply_link(fault: LinkFault, proxy: FaultProxy) -> Undo {
    match fault {
        LinkFault::Latency {
            latency_ms,
            jitter_ms,
        } => {
            let h = proxy
                .latency(Duration::from_millis(latency_ms))
                .jitter(ms(jitter_ms));
            Undo::RemoveToxic(Box::new(move || h.remove()))
        }
        LinkFault::Bandwidth { rate_kb_per_sec } => {
            let h = proxy.bandwidth(rate_kb_per_sec);
            Undo::RemoveToxic(Box::new(move || h.remove()))
        }
        LinkFault::BlackHole => {
            let h = proxy.black_hole();
            Undo::RemoveToxic(Box::new(move || h.remove()))
        }
        LinkFault::Slicer { average_size_bytes } => {
            let h = proxy.slicer(average_size_bytes);
            Undo::RemoveToxic(Box::new(move || h.remove()))
        }
        LinkFault::Down => {
            proxy.down().await;
            Undo::Up(proxy)
        }
        LinkFault::Hold { direction } => {
            match direction {
                Some(d) => proxy.stream(d).hold(),
                None => proxy.hold(),
            }
            Undo::Release(proxy)
        }
        LinkFault::Partition { direction } => {
            match direction {
                Some(d) => proxy.partition(d),
                None => Direction::BOTH.into_iter().for_each(|d| proxy.partition(d)),
            }
            Undo::Heal(proxy)
        }
    }
}

async fn undo_fault(undo: Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Start(t) => {
            t.start().await?;
        }
        Undo::Unpause(t) => {
            t.unpause().await?;
        }
        Undo::StartNode(nodes, i) => {
            nodes[i].start().await?;
        }
        Undo::UnpauseNode(nodes, i) => {
            nodes[i].unpause().await?;
        }
        Undo::RemoveToxic(remove) => remove(),
        Undo::Up(p) => p.up().await?,
        Undo::Release(p) => p.release(),
        Undo::Heal(p) => p.heal(),
        Undo::Reconnect(c, clients, resume) => {
            c.reconnect_flood(&clients, resume);
        }
        Undo::ReadNormally(c, clients) => {
            c.read_normally(&clients);
        }
    }
    Ok(())
}
