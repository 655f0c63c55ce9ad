//! Client faults, acted out by loadgen's own clients while
//! a load runs: disconnect storms (a fraction dropped at once), half-open
//! clients that stop reading with their socket left open, slow readers, and
//! reconnect floods that resume from the last seq each client holds. A
//! [`FleetFaults`] handle (from [`crate::engine::fleet::Fleet::faults`]) is cheap
//! to clone and can be used from another task while the phase runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

/// What one client is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Close the connection at once and stay down until [`Reconnect`](Self::Reconnect).
    Drop,
    /// Stop reading; the socket stays open (half-open). The server's
    /// outbound buffer for it grows until its slow-consumer policy cuts it.
    StopReading,
    /// Read at most this many bytes per second.
    SlowRead { bytes_per_sec: u64 },
    /// Read at full speed again (ends `StopReading` and `SlowRead`).
    ReadNormally,
    /// Connect and log in again (closing the connection first if it is up).
    /// With `resume`, the login asks to resume after the highest seq up to
    /// which the client holds everything, so the server replays the rest.
    Reconnect {
        resume: bool,
        /// Another server to log in at (a fail-over); `None`: its own.
        to: Option<SocketAddr>,
    },
}

/// Sends faults to the clients of a fleet. Clients are numbered as the
/// fleet started them, from 0.
#[derive(Debug, Clone)]
pub struct FleetFaults {
    clients: Arc<Vec<mpsc::UnboundedSender<ClientFault>>>,
}

impl FleetFaults {
    pub(crate) fn new(clients: Vec<mpsc::UnboundedSender<ClientFault>>) -> Self {
        Self {
            clients: Arc::new(clients),
        }
    }

    /// How many clients the fleet started.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the fleet has no clients.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// `ceil(fraction × len)` clients spread evenly over the fleet
    /// (`fraction` is clamped to 0..=1): the same fraction picks the same
    /// clients every time.
    pub fn pick(&self, fraction: f64) -> Vec<usize> {
        let n = self.len();
        let k = ((fraction.clamp(0.0, 1.0) * n as f64).ceil() as usize).min(n);
        (0..k).map(|j| j * n / k.max(1)).collect()
    }

    /// Tells each of `clients` to act out `fault`, all at once; returns how
    /// many were told (clients that already ended are skipped).
    pub fn apply(&self, clients: &[usize], fault: ClientFault) -> usize {
        clients
            .iter()
            .filter_map(|&i| self.clients.get(i))
            .filter(|tx| tx.send(fault).is_ok())
            .count()
    }

    /// A disconnect storm: drops `fraction` of the clients at once; returns
    /// which (to reconnect them later).
    pub fn disconnect_storm(&self, fraction: f64) -> Vec<usize> {
        let picked = self.pick(fraction);
        self.apply(&picked, ClientFault::Drop);
        picked
    }

    /// A reconnect flood: every one of `clients` reconnects at once, resuming
    /// from its last seq when `resume`.
    pub fn reconnect_flood(&self, clients: &[usize], resume: bool) -> usize {
        self.apply(clients, ClientFault::Reconnect { resume, to: None })
    }

    /// A fail-over: every one of `clients` reconnects at `to` (another
    /// server node) instead of its own target, resuming from its last seq;
    /// later reconnects go back to its own target.
    pub fn fail_over(&self, clients: &[usize], to: SocketAddr) -> usize {
        let fault = ClientFault::Reconnect {
            resume: true,
            to: Some(to),
        };
        self.apply(clients, fault)
    }

    /// `clients` stop reading, their sockets left open.
    pub fn half_open(&self, clients: &[usize]) -> usize {
        self.apply(clients, ClientFault::StopReading)
    }

    /// `clients` read at most `bytes_per_sec`.
    pub fn slow_readers(&self, clients: &[usize], bytes_per_sec: u64) -> usize {
        self.apply(clients, ClientFault::SlowRead { bytes_per_sec })
    }

    /// `clients` read at full speed again.
    pub fn read_normally(&self, clients: &[usize]) -> usize {
        self.apply(clients, ClientFault::ReadNormally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(n: usize) -> (FleetFaults, Vec<mpsc::UnboundedReceiver<ClientFault>>) {
        let (txs, rxs) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        (FleetFaults::new(txs), rxs)
    }

    #[test]
    fn a_fraction_picks_that_many_clients_spread_over_the_fleet() {
        let (f, _rx) = faults(10);
        assert_eq!(f.pick(0.5), vec![0, 2, 4, 6, 8]);
        assert_eq!(f.pick(0.25).len(), 3);
        assert_eq!(f.pick(1.0), (0..10).collect::<Vec<_>>());
        assert!(f.pick(0.0).is_empty());
        assert_eq!(f.pick(7.0).len(), 10);
    }

    #[test]
    fn a_storm_reaches_every_picked_client_and_no_other() {
        let (f, mut rx) = faults(4);
        let dropped = f.disconnect_storm(0.5);
        assert_eq!(dropped, vec![0, 2]);
        for (i, r) in rx.iter_mut().enumerate() {
            let got = r.try_recv().ok();
            let want = dropped.contains(&i).then_some(ClientFault::Drop);
            assert_eq!(got, want, "client {i}");
        }
        drop(rx.remove(3));
        assert_eq!(
            f.reconnect_flood(&[0, 3], true),
            1,
            "an ended client is skipped"
        );
    }

    #[test]
    fn a_fail_over_sends_the_clients_elsewhere_and_a_flood_home() {
        let (f, mut rx) = faults(3);
        let survivor: SocketAddr = "127.0.0.1:7001".parse().expect("an address");
        assert_eq!(f.fail_over(&[1, 2], survivor), 2);
        assert_eq!(f.reconnect_flood(&[0], false), 1);
        let to_survivor = ClientFault::Reconnect {
            resume: true,
            to: Some(survivor),
        };
        assert_eq!(rx[1].try_recv().ok(), Some(to_survivor));
        assert_eq!(rx[2].try_recv().ok(), Some(to_survivor));
        let home = ClientFault::Reconnect {
            resume: false,
            to: None,
        };
        assert_eq!(rx[0].try_recv().ok(), Some(home));
    }
}
