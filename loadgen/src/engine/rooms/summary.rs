//! What a room run reports: the seed, the shape drawn, what was published
//! and answered, the churn, the latency, and the exact per-room accounting —
//! and the failures they imply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::room_accounting::RoomAccounting;
use crate::measure::cpu::ServerCpu;
use crate::measure::histogram::LatencySummary;

/// A room run, as `report.json`'s `rooms` section holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomsReport {
    /// The seed the workload was drawn from: `[workload] seed = …` repeats it.
    pub seed: u64,
    pub clients: usize,
    /// Connections that own the rooms and post to them.
    pub publishers: usize,
    pub rooms: usize,
    /// Client memberships at the start (clients × memberships per client).
    pub memberships: u64,
    /// Smallest, median and largest room (clients only).
    pub room_size_min: usize,
    pub room_size_median: usize,
    pub room_size_max: usize,
    /// The schedule's total rate (rooms and direct).
    pub rate_per_sec: f64,
    /// How long publishing really took.
    pub publish_secs: f64,
    /// Messages sent to rooms / as direct messages.
    pub published_rooms: u64,
    pub published_direct: u64,
    /// Sends the server confirmed with `send_ack`.
    pub acked: u64,
    /// Sends answered with an `error`, by code.
    pub refused: BTreeMap<String, u64>,
    /// Sends without an answer by the end of the drain.
    pub unanswered: u64,
    /// Sends never made: their sender had no connection.
    pub unsent: u64,
    pub login_failures: usize,
    /// A few of the login failures' reasons.
    pub login_error_samples: Vec<String>,
    /// `create_room` / `join` / `leave` answered with an error (setup and churn), by code.
    pub room_command_refusals: BTreeMap<String, u64>,
    /// Rooms created, and initial joins answered with `joined`.
    pub rooms_created: usize,
    pub initial_joins: u64,
    /// Churn events planned, and the `left` / `joined` answers they got.
    pub churn_planned: usize,
    pub churn_left: u64,
    pub churn_joined: u64,
    /// Connections the server closed (or that broke) during the run.
    pub disconnects: u64,
    /// Connections whose open windows did not reach their rooms' heads by the deadline.
    pub incomplete: usize,
    /// Lobby broadcasts received (not part of the workload; not owed).
    pub lobby_deliveries: u64,
    /// Frames that could not be parsed.
    pub bad_frames: u64,
    /// `left` frames that answered no `leave` of the connection: repeats
    /// and stale ones (they close nothing; noted, not a failure).
    pub unasked_left: u64,
    /// `joined` frames of a (non-direct) room that answered no `join` of the
    /// connection: they open no window, so what follows them is a leak.
    pub unasked_joined: u64,
    pub accounting: RoomAccounting,
    /// Publish (intended send time) → receive, every room delivery.
    pub latency: LatencySummary,
    /// The server's CPU from the start of publishing until drained, and per
    /// million room deliveries (first: the headline — rtmc's server nodes,
    /// redis-server, nats-server).
    #[serde(default)]
    pub server_cpu: Vec<ServerCpu>,
}

impl RoomsReport {
    /// Every reason this room run failed; empty = passed.
    pub fn failures(&self) -> Vec<String> {
        let accounting = self.accounting.failures().into_iter();
        accounting
            .chain(self.setup_failures())
            .chain(self.traffic_failures())
            .map(|f| format!("rooms run: {f}"))
            .collect()
    }

    /// Logins, rooms created, initial joins.
    fn setup_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.login_failures > 0 {
            let samples = self.login_error_samples.join("; ");
            out.push(format!(
                "{} connections failed to log in ({samples})",
                self.login_failures
            ));
        }
        if self.rooms_created < self.rooms {
            out.push(format!(
                "{} of {} rooms created",
                self.rooms_created, self.rooms
            ));
        }
        if self.initial_joins < self.memberships {
            out.push(format!(
                "{} of {} initial joins answered",
                self.initial_joins, self.memberships
            ));
        }
        out
    }

    /// Sends, room commands, connections and frames during the run.
    fn traffic_failures(&self) -> Vec<String> {
        let refused: u64 = self.refused.values().sum();
        let room_refused: u64 = self.room_command_refusals.values().sum();
        let checks = [
            (refused, format!("sends refused: {:?}", self.refused)),
            (self.unanswered, "sends unanswered".to_owned()),
            (
                self.unsent,
                "sends had no connection to go out on".to_owned(),
            ),
            (
                room_refused,
                format!("room commands refused: {:?}", self.room_command_refusals),
            ),
            (
                self.disconnects,
                "connections closed during the run".to_owned(),
            ),
            (
                self.incomplete as u64,
                "connections had not received everything by the drain deadline".to_owned(),
            ),
            (self.bad_frames, "unparseable frames".to_owned()),
        ];
        checks
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_passes_and_each_problem_is_named() {
        let clean = RoomsReport {
            rooms: 2,
            rooms_created: 2,
            memberships: 4,
            initial_joins: 4,
            ..Default::default()
        };
        assert!(clean.failures().is_empty(), "{:?}", clean.failures());
        let mut r = clean.clone();
        r.accounting.direct.leaks = 1;
        r.unanswered = 2;
        r.refused.insert("not_a_member".into(), 1);
        let f = r.failures().join(" | ");
        assert!(f.contains("direct: 1 leaked"), "{f}");
        assert!(f.contains("2 sends unanswered"), "{f}");
        assert!(f.contains("not_a_member"), "{f}");
        let r = RoomsReport {
            rooms_created: 1,
            ..clean
        };
        assert!(r.failures()[0].contains("1 of 2 rooms created"));
    }
}
