//! The receiving side: thousands of simulated clients, each one light tokio
//! task that connects (at a ramp rate, from several loopback source addresses
//! if needed), logs in (or subscribes, for the Redis floor and the NATS peers), heartbeats, reads
//! frames straight out of a `BytesMut`, and keeps its delivery accounting.
//! The [`Fleet`] drives them through measurement steps with a watch channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::engine::accounting::DeliveryTotals;
use crate::engine::faults::{ClientFault, FleetFaults};
use crate::engine::fleet_client::{ClientReport, ClientTask, Control, FleetLinks, Ready};
use crate::engine::fleet_options::FleetOptions;
use crate::engine::live::LiveStats;
use crate::measure::histogram::{new_histogram, record_us, LatencyHistogram};

/// Connect and login errors kept as samples for the report.
const ERROR_SAMPLES: usize = 5;

/// The fleet's state after bring-up.
#[derive(Debug, Clone)]
pub struct ConnectSummary {
    pub connected: usize,
    pub connect_errors: usize,
    pub login_errors: usize,
    /// First few error messages, for the report.
    pub error_samples: Vec<String>,
    /// TCP connect time.
    pub connect_hist: LatencyHistogram,
    /// Connect start → logged in (or subscribed).
    pub login_hist: LatencyHistogram,
    /// Lowest and highest head announced at login.
    pub min_start_after: u64,
    pub max_start_after: u64,
    pub ramp_secs: f64,
}

impl Default for ConnectSummary {
    fn default() -> Self {
        Self {
            connected: 0,
            connect_errors: 0,
            login_errors: 0,
            error_samples: Vec::new(),
            connect_hist: new_histogram(),
            login_hist: new_histogram(),
            min_start_after: 0,
            max_start_after: 0,
            ramp_secs: 0.0,
        }
    }
}

impl ConnectSummary {
    /// Counts one client's bring-up.
    fn record(&mut self, ready: Ready) {
        match ready {
            Ready::Up {
                start_after,
                connect_us,
                login_us,
            } => {
                self.connected += 1;
                record_us(&mut self.connect_hist, connect_us);
                record_us(&mut self.login_hist, login_us);
                self.min_start_after = self.min_start_after.min(start_after);
                self.max_start_after = self.max_start_after.max(start_after);
            }
            Ready::ConnectFailed(e) => {
                self.connect_errors += 1;
                self.sample_error(format!("connect: {e}"));
            }
            Ready::LoginFailed(e) => {
                self.login_errors += 1;
                self.sample_error(format!("login: {e}"));
            }
        }
    }

    fn sample_error(&mut self, e: String) {
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(e);
        }
    }
}

/// The connected clients.
pub struct Fleet {
    control: watch::Sender<Control>,
    reports: mpsc::UnboundedReceiver<ClientReport>,
    epoch: u64,
    faults: FleetFaults,
    pub live: Arc<LiveStats>,
    pub summary: ConnectSummary,
}

/// Outcome of one sync over all clients.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub totals: DeliveryTotals,
    /// Clients that did not answer before the deadline.
    pub silent_clients: usize,
    /// One bitset per witness client (on the last sync only): the publisher
    /// sequences of this run it received.
    pub witness_sets: Vec<Vec<u64>>,
}

impl Fleet {
    /// Connects `opts.clients` clients at the ramp rate and waits until each
    /// is logged in or failed.
    pub async fn connect(opts: FleetOptions, live: Arc<LiveStats>) -> Fleet {
        let (control, control_rx) = watch::channel(Control {
            epoch: 0,
            target_head: 0,
            deadline: tokio::time::Instant::now(),
            last: false,
        });
        let (report_tx, reports) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let (fault_txs, fault_rxs) = (0..opts.clients).map(|_| mpsc::unbounded_channel()).unzip();
        let opts = Arc::new(opts);
        let started = Instant::now();
        let links = FleetLinks {
            control: control_rx,
            reports: report_tx,
            ready: ready_tx,
        };
        let spawner = tokio::spawn(spawn_clients(opts.clone(), live.clone(), links, fault_rxs));
        let mut summary = await_ready(&opts, ready_rx).await;
        summary.ramp_secs = started.elapsed().as_secs_f64();
        let _ = spawner.await;
        Fleet {
            control,
            reports,
            epoch: 0,
            faults: FleetFaults::new(fault_txs),
            live,
            summary,
        }
    }

    /// A handle that makes the clients act out faults while a phase runs.
    pub fn faults(&self) -> FleetFaults {
        self.faults.clone()
    }

    /// Asks every client to report once it has everything up to `head` (or
    /// when `drain` has passed); `last` closes the clients afterwards.
    pub async fn sync(&mut self, head: u64, drain: Duration, last: bool) -> SyncResult {
        self.epoch += 1;
        let deadline = tokio::time::Instant::now() + drain;
        let _ = self.control.send(Control {
            epoch: self.epoch,
            target_head: head,
            deadline,
            last,
        });
        let mut out = SyncResult::default();
        let mut answered = 0;
        let hard_deadline = deadline + Duration::from_secs(5);
        while answered < self.summary.connected {
            match tokio::time::timeout_at(hard_deadline, self.reports.recv()).await {
                Ok(Some(r)) if r.epoch == self.epoch => {
                    answered += 1;
                    out.totals.add(&r.totals);
                    if let Some(w) = r.witness {
                        out.witness_sets.push(w);
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        out.silent_clients = self.summary.connected - answered;
        out
    }
}

/// Starts client `i` at `i / connects_per_sec` after the first (open loop).
async fn spawn_clients(
    opts: Arc<FleetOptions>,
    live: Arc<LiveStats>,
    links: FleetLinks,
    faults: Vec<mpsc::UnboundedReceiver<ClientFault>>,
) {
    let t0 = tokio::time::Instant::now();
    let rate = opts.connects_per_sec.max(1.0);
    for (i, faults) in faults.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let client = ClientTask {
            index: i,
            opts: opts.clone(),
            live: live.clone(),
            links: links.clone(),
            faults,
        };
        tokio::spawn(client.run());
    }
}

/// Waits until every client is up or failed, or the bring-up bound passed;
/// clients that never answered count as connect errors.
async fn await_ready(
    opts: &FleetOptions,
    mut ready_rx: mpsc::UnboundedReceiver<Ready>,
) -> ConnectSummary {
    let mut summary = ConnectSummary {
        min_start_after: u64::MAX,
        ..Default::default()
    };
    // Every client answers within its connect timeout after it started.
    let deadline = tokio::time::Instant::now() + opts.bring_up_bound();
    let mut answered = 0;
    while answered < opts.clients {
        let Ok(Some(ready)) = tokio::time::timeout_at(deadline, ready_rx.recv()).await else {
            break;
        };
        answered += 1;
        summary.record(ready);
    }
    summary.connect_errors += opts.clients - answered;
    if summary.min_start_after == u64::MAX {
        summary.min_start_after = 0;
    }
    summary
}
