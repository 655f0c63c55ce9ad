//! The human report (`report.txt`, also printed): the phases, the fleets,
//! rtmc next to its peers, the ramp table and the result lines.

use crate::engine::phase::PhaseReport;
use crate::engine::rooms::summary::RoomsReport;
use crate::measure::histogram::LatencySummary;
use crate::report::rounds;
use crate::report::types::{
    BlasterReport, ConnectReport, FleetConnect, FloorComparison, RampReport, RoomPhase, RunReport,
};

fn phase_text(out: &mut String, p: &PhaseReport) {
    use std::fmt::Write as _;
    let a = &p.accounting;
    let l = &p.latency;
    let k = &p.ack_latency;
    let _ = writeln!(
        out,
        "== {} — {} receivers × {} msg/s for {} s ==",
        p.label, p.receivers, p.rate_per_sec, p.duration_secs
    );
    let t = &p.timing;
    let _ = writeln!(
        out,
        "publishing {:.1}–{:.1} s after the run start ({} → {}), drained at {:.1} s",
        t.publish_started_secs,
        t.publish_ended_secs,
        t.publish_started_at,
        t.publish_ended_at,
        t.drained_secs
    );
    let _ = writeln!(
        out,
        "published {}  acked {}  publish errors {}  unanswered {}",
        p.published, p.acked, p.publish_errors, p.unanswered
    );
    let _ = writeln!(
        out,
        "deliveries {}  ({:.0}/s over the publish window, peak {:.0}/s in one second)",
        p.deliveries, p.deliveries_per_sec, p.peak_deliveries_per_sec
    );
    let _ = writeln!(
        out,
        "accounting: expected {}  received {}  lost {}  duplicates {}  out-of-order {}  gaps {}  (head {} → {})",
        a.expected, a.received, a.lost, a.duplicates, a.out_of_order, a.gaps, p.head_before, p.head_after
    );
    let _ = writeln!(
        out,
        "witnesses {}: acked but not delivered {}   disconnects {} (slow consumer {})  bad frames {}",
        p.witnesses, p.acked_not_delivered, p.disconnects, p.slow_consumer_disconnects, p.bad_frames
    );
    let _ = writeln!(
        out,
        "publish→receive ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p99_9_ms, l.p99_99_ms, l.max_ms, l.count
    );
    let _ = writeln!(
        out,
        "publish→ack ms:     p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        k.p50_ms, k.p90_ms, k.p99_ms, k.p99_9_ms, k.max_ms, k.count
    );
    let s = &p.selfcheck;
    let _ = writeln!(
        out,
        "self-check: {}  [loadgen {:.2} cores, server {:.2} cores, machine {:.0}% busy, lag p99 {:.2} ms]",
        s.explanation, s.loadgen_cpu_cores, s.server_cpu_cores, s.machine_busy_pct, s.scheduler_lag.p99_ms
    );
    server_cpu_text(out, p);
}

/// The server's CPU lines of a phase: CPU-seconds and per million
/// deliveries, or why they were not measured.
fn server_cpu_text(out: &mut String, p: &PhaseReport) {
    use std::fmt::Write as _;
    for c in &p.server_cpu {
        match (c.cpu_secs, c.cpu_secs_per_million_deliveries) {
            (Some(secs), Some(per_m)) => {
                let _ = writeln!(
                    out,
                    "server CPU: {} {secs:.2} CPU-s = {per_m:.2} CPU-s per million deliveries",
                    c.what
                );
            }
            (Some(secs), None) => {
                let _ = writeln!(
                    out,
                    "server CPU: {} {secs:.2} CPU-s (no deliveries)",
                    c.what
                );
            }
            _ => {
                let why = c.not_measured.as_deref().unwrap_or("unreadable");
                let _ = writeln!(out, "server CPU: {} not measured ({why})", c.what);
            }
        }
    }
}

fn connect_text(out: &mut String, label: &str, c: &ConnectReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "{label} connect: {}/{} up in {:.1} s  errors connect {} login {}  connect p50 {:.2} ms p99 {:.2} ms  login p50 {:.2} ms p99 {:.2} ms",
        c.connected, c.clients, c.ramp_secs, c.connect_errors, c.login_errors,
        c.connect.p50_ms, c.connect.p99_ms, c.login.p50_ms, c.login.p99_ms
    );
    if let (Some(b), Some(a), Some(per)) = (
        c.server_rss_kib_before,
        c.server_rss_kib_after,
        c.server_kib_per_client,
    ) {
        let _ = writeln!(
            out,
            "{label} server memory: {b} KiB before, {a} KiB with {} idle clients = {per:.1} KiB per client",
            c.connected
        );
    } else if let Some(why) = &c.server_memory_not_measured {
        let _ = writeln!(
            out,
            "{label} server memory per idle client: not measured ({why})"
        );
    }
    if !c.error_samples.is_empty() {
        let _ = writeln!(out, "  e.g. {}", distinct_samples(&c.error_samples));
    }
}

/// The human-readable report.
pub fn render_text(r: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rtmc loadgen {} — profile {:?}, {} target, run {} at {}",
        r.kind, r.profile.name, r.target_mode, r.run_id, r.started_at
    );
    phases_text(&mut out, r);
    if let Some(rooms) = &r.rooms {
        rooms_text(&mut out, rooms);
    }
    if !r.room_rounds.is_empty() {
        room_rounds_text(&mut out, &r.room_rounds);
    }
    if let Some(c) = &r.comparison {
        comparison_text(&mut out, c);
    }
    if let Some(s) = &r.rounds_summary {
        if r.rounds.len() > 1 {
            rounds::text(&mut out, &r.rounds, s);
        }
    }
    let interleaved = r.rounds.len() > 1;
    for peer in &r.peers {
        connect_text(&mut out, &peer.label, &peer.connect);
        let _ = writeln!(out, "{} server: {}", peer.label, peer.server);
        // With rounds, every round's phases are above.
        if !interleaved {
            phase_text(&mut out, &peer.phase);
        }
    }
    // With rounds, the rounds' summary is the side-by-side table.
    if !r.peers.is_empty() && !interleaved {
        side_by_side_text(&mut out, r);
    }
    if let Some(b) = &r.reference {
        blaster_text(&mut out, b);
    }
    if let Some(ramp) = &r.ramp {
        ramp_text(&mut out, ramp);
    }
    if !r.agents.is_empty() {
        agents_text(&mut out, &r.agents);
    }
    result_text(&mut out, r);
    out
}

/// The per-agent table of a run over several loadgen agents.
fn agents_text(out: &mut String, agents: &[crate::report::types::AgentReport]) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== agents ({}); rtmc above is their merge ==",
        agents.len()
    );
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9} {:>8} {:>5} {:>8} {:>8} {:>10} {:>6} {:>5} {:>7} {:>8} {:>6}",
        "agent",
        "skew ms",
        "rtt ms",
        "clients",
        "pubs",
        "pub",
        "acked",
        "deliveries",
        "lost",
        "dup",
        "reorder",
        "p99 ms",
        "CPU-s"
    );
    for a in agents {
        let cpu = a.cpu_seconds.map_or("-".into(), |c| format!("{c:.2}"));
        let _ = writeln!(
            out,
            "{:<22} {:>9.3} {:>9.3} {:>8} {:>5} {:>8} {:>8} {:>10} {:>6} {:>5} {:>7} {:>8.2} {:>6}",
            a.agent,
            a.clock_offset_ms,
            a.clock_round_trip_ms,
            a.connected,
            a.publishers,
            a.published,
            a.acked,
            a.deliveries,
            a.accounting.lost,
            a.accounting.duplicates,
            a.accounting.out_of_order,
            a.latency.p99_ms,
            cpu
        );
    }
}

/// The fleets and phases of a run: every round's in full (each has its own
/// accounting), or rtmc's and the floor's.
fn phases_text(out: &mut String, r: &RunReport) {
    use std::fmt::Write as _;
    if r.rounds.len() > 1 {
        // Every round's phases in full (each has its own accounting).
        for (label, c) in [("rtmc", &r.connect), ("floor", &r.floor_connect)] {
            if let Some(c) = c {
                connect_text(out, label, c);
            }
        }
        fleets_text(out, &r.fleet_connects);
        for round in &r.rounds {
            for p in &round.phases {
                let _ = writeln!(out, "-- round {} of {} --", round.round, r.rounds.len());
                phase_text(out, p);
            }
        }
    } else {
        if let Some(c) = &r.connect {
            connect_text(out, "rtmc", c);
        }
        if let Some(p) = &r.rtmc {
            phase_text(out, p);
        }
        if let Some(c) = &r.floor_connect {
            connect_text(out, "floor", c);
        }
        if let Some(p) = &r.floor {
            phase_text(out, p);
        }
    }
}

/// With fleets connected per phase, each kind's fleets over the rounds:
/// how many, the worst bring-up, the errors in all, and the median with
/// min–max of the connect and login p99 and of the bring-up time (the
/// `connect` line above a kind is its round-1 fleet's).
fn fleets_text(out: &mut String, fleets: &[FleetConnect]) {
    use std::fmt::Write as _;
    let mut labels: Vec<&str> = Vec::new();
    for f in fleets {
        if !labels.contains(&f.label.as_str()) {
            labels.push(&f.label);
        }
    }
    for label in labels {
        let of: Vec<&ConnectReport> = fleets
            .iter()
            .filter(|f| f.label == label)
            .map(|f| &f.connect)
            .collect();
        if of.len() < 2 {
            continue;
        }
        let spread = |read: fn(&ConnectReport) -> f64| {
            let values: Vec<f64> = of.iter().map(|c| read(c)).collect();
            rounds::spread_text(&rtmc_stats::Spread::of(&values), 2)
        };
        let worst = of
            .iter()
            .min_by_key(|c| c.connected)
            .expect("two fleets or more");
        let _ = writeln!(
            out,
            "{label} connect, all {} fleets (one per phase; the line above is round 1's): fewest up {}/{}  errors connect {} login {} in all  connect p99 {} ms  login p99 {} ms  bring-up {} s (median [min–max])",
            of.len(),
            worst.connected,
            worst.clients,
            of.iter().map(|c| c.connect_errors).sum::<usize>(),
            of.iter().map(|c| c.login_errors).sum::<usize>(),
            spread(|c| c.connect.p99_ms),
            spread(|c| c.login.p99_ms),
            spread(|c| c.ramp_secs),
        );
    }
}

fn comparison_text(out: &mut String, c: &FloorComparison) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== rtmc vs Redis pub/sub floor (same load, same run) =="
    );
    let _ = writeln!(
        out,
        "{:<14} {:>14} {:>14} {:>10}",
        "", "rtmc", "floor", "rtmc/floor"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>14.0} {:>14.0} {:>10.2}",
        "deliveries/s", c.rtmc_deliveries_per_sec, c.floor_deliveries_per_sec, c.deliveries_ratio
    );
    for (name, a, b, q) in [
        ("p50 ms", c.rtmc_p50_ms, c.floor_p50_ms, c.p50_ratio),
        ("p99 ms", c.rtmc_p99_ms, c.floor_p99_ms, c.p99_ratio),
        ("p99.9 ms", c.rtmc_p99_9_ms, c.floor_p99_9_ms, c.p99_9_ratio),
    ] {
        let _ = writeln!(out, "{name:<14} {a:>14.2} {b:>14.2} {q:>10.2}");
    }
    let _ = writeln!(
        out,
        "target p99 ≤ 0.5 × floor p99: {}",
        if c.meets_half_floor_p99 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// rtmc, the floor and each NATS peer in columns (the phases ran one after
/// another at the same load, with the same client engine).
fn side_by_side_text(out: &mut String, r: &RunReport) {
    use std::fmt::Write as _;
    let phases: Vec<&PhaseReport> = r
        .rtmc
        .iter()
        .chain(r.floor.iter())
        .chain(r.peers.iter().map(|p| &p.phase))
        .collect();
    let _ = writeln!(
        out,
        "== side by side (same load, same client engine, one after another) =="
    );
    let _ = write!(out, "{:<16}", "");
    for p in &phases {
        let _ = write!(out, " {:>12}", p.label);
    }
    let _ = writeln!(out);
    type Cell = fn(&PhaseReport) -> f64;
    // (row, decimals, value)
    let rows: [(&str, usize, Cell); 9] = [
        ("deliveries/s", 0, |p| p.deliveries_per_sec),
        ("p50 ms", 2, |p| p.latency.p50_ms),
        ("p99 ms", 2, |p| p.latency.p99_ms),
        ("p99.9 ms", 2, |p| p.latency.p99_9_ms),
        ("max ms", 2, |p| p.latency.max_ms),
        ("ack p50 ms", 2, |p| p.ack_latency.p50_ms),
        ("ack p99 ms", 2, |p| p.ack_latency.p99_ms),
        ("lost", 0, |p| p.accounting.lost as f64),
        ("server cores", 2, |p| p.selfcheck.server_cpu_cores),
    ];
    for (name, decimals, cell) in rows {
        let _ = write!(out, "{name:<16}");
        for p in &phases {
            let _ = write!(out, " {:>12.decimals$}", cell(p));
        }
        let _ = writeln!(out);
    }
    if let Some(rtmc) = &r.rtmc {
        let _ = write!(out, "{:<16}", "rtmc p99 ÷ this");
        for p in &phases {
            let q = if p.latency.p99_ms > 0.0 {
                rtmc.latency.p99_ms / p.latency.p99_ms
            } else {
                f64::NAN
            };
            let _ = write!(out, " {q:>12.2}");
        }
        let _ = writeln!(out);
    }
}

/// `p50/p99/max` of the refusal latency in ms, `-` without refusals.
fn refusal_cell(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "-".into();
    }
    format!("{:.1}/{:.1}/{:.1}", l.p50_ms, l.p99_ms, l.max_ms)
}

fn ramp_text(out: &mut String, ramp: &RampReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== ramp (SLO p99 ≤ {} ms, no loss) ==",
        ramp.slo_p99_ms
    );
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>9} {:>9} {:>11} {:>20} {:>12} {:>10} {:>10} {:>10} {:>8}  verdict",
        "msg/s",
        "acked/s",
        "refused",
        "unansw.",
        "ack p99 ms",
        "refusal p50/p99/max",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "lost"
    );
    for s in &ramp.steps {
        let _ = writeln!(
            out,
            "{:>10.0} {:>10.0} {:>9} {:>9} {:>11.2} {:>20} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>8}  {}",
            s.rate_per_sec,
            s.acked_per_sec(),
            s.phase.publish_errors,
            s.phase.unanswered,
            s.phase.ack_latency.p99_ms,
            refusal_cell(&s.phase.refusal_latency),
            s.phase.deliveries_per_sec,
            s.phase.latency.p50_ms,
            s.phase.latency.p99_ms,
            s.phase.latency.p99_9_ms,
            s.phase.accounting.lost,
            s.violation.clone().unwrap_or_else(|| "ok".into())
        );
    }
    match ramp.max_sustainable_rate_per_sec {
        Some(rate) => {
            let _ = writeln!(
                out,
                "highest sustainable rate: {rate:.0} msg/s ({:.0} deliveries/s)",
                ramp.max_sustainable_deliveries_per_sec.unwrap_or(0.0)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "highest sustainable rate: none — even the first step failed"
            );
        }
    }
}

fn result_text(out: &mut String, r: &RunReport) {
    use std::fmt::Write as _;
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    write_result(out, &r.failures);
}

/// `RESULT: PASS`, or `RESULT: FAIL` and each failure (also chaos's report).
pub fn write_result(out: &mut String, failures: &[String]) {
    use std::fmt::Write as _;
    if failures.is_empty() {
        let _ = writeln!(out, "RESULT: PASS");
    } else {
        let _ = writeln!(out, "RESULT: FAIL");
        for f in failures {
            let _ = writeln!(out, "  !!! {f}");
        }
    }
}

/// The blasts as text: one line each.
pub fn blaster_text(out: &mut String, r: &BlasterReport) {
    use std::fmt::Write as _;
    for b in &r.runs {
        let _ = writeln!(
            out,
            "blaster ({} frame{} per write): {} sockets × {} messages, {:.0}-byte frames, {} writes: {:.0} deliveries/s, sender {:.3} CPU-s = {} CPU-s per million deliveries",
            b.frames_per_write,
            if b.frames_per_write == 1 { "" } else { "s" },
            b.sockets,
            b.messages,
            b.frame_bytes,
            b.writes,
            b.deliveries_per_sec,
            b.sender_cpu_secs,
            b.cpu_secs_per_million_deliveries
                .map_or("—".into(), |v| format!("{v:.2}"))
        );
    }
}

/// Error samples with each distinct text once, in the order first seen,
/// with how many of the samples carried it: `text (×3 of 10 samples)`. A
/// refusal storm fills every sample with the same text; repeating it ten
/// times hid the other texts and said nothing the count does not.
pub fn distinct_samples(samples: &[String]) -> String {
    let mut distinct: Vec<(&str, usize)> = Vec::new();
    for s in samples {
        match distinct.iter_mut().find(|(t, _)| *t == s.as_str()) {
            Some((_, n)) => *n += 1,
            None => distinct.push((s, 1)),
        }
    }
    distinct
        .iter()
        .map(|(t, n)| match n {
            1 => (*t).to_owned(),
            n => format!("{t} (×{n} of {} samples)", samples.len()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A room workload's section: the seed first (it repeats the run), the
/// shape, what was sent and answered, churn, latency, and the accounting
/// per kind of room with the worst rooms.
fn rooms_text(out: &mut String, r: &RoomsReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "room workload — seed {} (put `seed = {}` under [workload] to repeat it)",
        r.seed, r.seed
    );
    let _ = writeln!(
        out,
        "  {} clients + {} publishers, {} rooms (sizes {} / {} / {} min / median / max), {} memberships",
        r.clients, r.publishers, r.rooms, r.room_size_min, r.room_size_median, r.room_size_max, r.memberships
    );
    let refused: u64 = r.refused.values().sum();
    let _ = writeln!(
        out,
        "  sent {} to rooms + {} direct at {:.0} msg/s over {:.1} s: {} acked, {} refused, {} unanswered, {} unsent",
        r.published_rooms, r.published_direct, r.rate_per_sec, r.publish_secs, r.acked, refused, r.unanswered, r.unsent
    );
    let _ = writeln!(
        out,
        "  setup: {} rooms created, {} joins; churn: {} planned, {} left, {} rejoined; {} login failures, {} disconnects",
        r.rooms_created, r.initial_joins, r.churn_planned, r.churn_left, r.churn_joined, r.login_failures, r.disconnects
    );
    let l = &r.latency;
    let _ = writeln!(
        out,
        "  latency (ms, {} deliveries): p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l.count, l.p50_ms, l.p99_ms, l.p99_9_ms, l.max_ms
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>8} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "kind", "windows", "expected", "received", "lost", "dup", "ooo", "gaps", "leaks", "unsure"
    );
    let a = &r.accounting;
    for (kind, t) in [
        ("rooms", &a.rooms),
        ("direct", &a.direct),
        ("total", &a.total),
    ] {
        let _ = writeln!(
            out,
            "  {:<8} {:>8} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
            kind,
            t.windows,
            t.expected,
            t.received,
            t.lost,
            t.duplicated,
            t.out_of_order,
            t.gaps,
            t.leaks,
            t.unsure
        );
    }
    for w in &a.worst {
        let t = &w.totals;
        let _ = writeln!(
            out,
            "  !! {}: lost {} dup {} ooo {} gaps {} leaks {}",
            w.room, t.lost, t.duplicated, t.out_of_order, t.gaps, t.leaks
        );
    }
}

/// A room workload's interleaved rounds: every phase as it ran, then per
/// system the median [min–max] over its rounds of p50 / p99 / p99.9 and the
/// server CPU-seconds per million room deliveries, and its anomalies summed;
/// then rtmc ÷ each peer as the median [min–max] of the per-round ratios.
fn room_rounds_text(out: &mut String, phases: &[RoomPhase]) {
    use std::fmt::Write as _;
    let rounds = phases.iter().map(|p| p.round).max().unwrap_or(0);
    let _ = writeln!(out, "== room workload: {rounds} interleaved round(s) ==");
    let _ = writeln!(
        out,
        "round system       deliveries    p50 ms    p99 ms  p99.9 ms  CPU-s/M deliv  lost   dup   ooo leaks unsure"
    );
    for p in phases {
        let (l, t) = (&p.rooms.latency, &p.rooms.accounting.total);
        let cpu = p
            .cpu_per_million()
            .map_or("-".into(), |c| format!("{c:.2}"));
        let _ = writeln!(
            out,
            "{:>5} {:<10} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>14} {:>5} {:>5} {:>5} {:>5} {:>6}",
            p.round,
            p.system,
            l.count,
            l.p50_ms,
            l.p99_ms,
            l.p99_9_ms,
            cpu,
            t.lost,
            t.duplicated,
            t.out_of_order,
            t.leaks,
            t.unsure
        );
    }
    room_summary_text(out, phases);
}

/// Each system's medians over the rounds, and rtmc ÷ each peer.
fn room_summary_text(out: &mut String, phases: &[RoomPhase]) {
    use std::fmt::Write as _;
    let mut systems: Vec<&str> = Vec::new();
    for p in phases {
        if !systems.contains(&p.system.as_str()) {
            systems.push(&p.system);
        }
    }
    let of = |system: &str, m: usize| -> Vec<f64> {
        phases
            .iter()
            .filter(|p| p.system == system)
            .map(|p| room_metric(p, m))
            .collect()
    };
    let header = |first: &str| {
        format!(
            "{first:<16} {:>24} {:>24} {:>24} {:>24}",
            "p50 ms", "p99 ms", "p99.9 ms", "CPU-s/M deliv"
        )
    };
    let _ = writeln!(out, "== median over the rounds [min–max] ==");
    let _ = writeln!(out, "{} {:>9}", header("system"), "anomalies");
    for system in &systems {
        let cells: Vec<String> = (0..4)
            .map(|m| rounds::spread_text(&rtmc_stats::Spread::of(&of(system, m)), 2))
            .collect();
        let anomalies: u64 = phases
            .iter()
            .filter(|p| p.system == *system)
            .map(|p| p.rooms.accounting.total.anomalies())
            .sum();
        let _ = writeln!(
            out,
            "{system:<16} {:>24} {:>24} {:>24} {:>24} {anomalies:>9}",
            cells[0], cells[1], cells[2], cells[3]
        );
    }
    let Some(ours) = systems.iter().position(|s| *s == "rtmc") else {
        return;
    };
    let _ = writeln!(
        out,
        "== rtmc ÷ peer: median of the per-round ratios [min–max] =="
    );
    let _ = writeln!(out, "{}", header("ratio"));
    for peer in systems.iter().filter(|s| **s != systems[ours]) {
        let cells: Vec<String> = (0..4)
            .map(|m| {
                let ratios = rtmc_stats::Spread::of_pair_ratios(&of(peer, m), &of("rtmc", m));
                rounds::spread_text(&ratios, 2)
            })
            .collect();
        let name = format!("rtmc÷{peer}");
        let _ = writeln!(
            out,
            "{name:<16} {:>24} {:>24} {:>24} {:>24}",
            cells[0], cells[1], cells[2], cells[3]
        );
    }
}

/// A room phase's figure `m`: p50, p99, p99.9 (ms), server CPU-s per million
/// deliveries (NaN when not measured).
fn room_metric(p: &RoomPhase, m: usize) -> f64 {
    let l = &p.rooms.latency;
    match m {
        0 => l.p50_ms,
        1 => l.p99_ms,
        2 => l.p99_9_ms,
        _ => p.cpu_per_million().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_rounds_print_every_phase_and_each_systems_median() {
        use crate::measure::cpu::ServerCpu;
        let mut r = RunReport::new(
            "run",
            Default::default(),
            "embedded".into(),
            "t".into(),
            "id".into(),
        );
        for (round, system, p99_ms, cpu) in [
            (1, "rtmc", 4.0, 10.0),
            (1, "floor", 2.0, 5.0),
            (2, "floor", 3.0, 7.0),
            (2, "rtmc", 6.0, 12.0),
            (3, "rtmc", 5.0, 11.0),
            (3, "floor", 9.0, 6.0),
        ] {
            let mut rooms = RoomsReport::default();
            rooms.latency.p99_ms = p99_ms;
            rooms.server_cpu = vec![ServerCpu {
                what: "x".into(),
                pids: vec![1],
                cpu_secs: Some(1.0),
                cpu_secs_per_million_deliveries: Some(cpu),
                not_measured: None,
            }];
            if system == "floor" && round == 3 {
                rooms.accounting.total.lost = 4;
            }
            r.room_rounds.push(RoomPhase {
                round,
                system: system.into(),
                rooms,
            });
        }
        let text = render_text(&r);
        assert!(text.contains("3 interleaved round(s)"), "{text}");
        let row = |s: &str| {
            text.lines()
                .skip_while(|l| !l.starts_with("== median over the rounds"))
                .find(|l| l.starts_with(s))
                .unwrap_or_else(|| panic!("a {s} row:\n{text}"))
                .to_owned()
        };
        let rtmc = row("rtmc ");
        assert!(rtmc.contains("5.00 [4.00–6.00]"), "{rtmc}");
        assert!(rtmc.contains("11.00 [10.00–12.00]"), "{rtmc}");
        assert!(rtmc.trim_end().ends_with(" 0"), "{rtmc}");
        let floor = row("floor ");
        assert!(floor.contains("3.00 [2.00–9.00]"), "{floor}");
        assert!(floor.trim_end().ends_with(" 4"), "{floor}");
        // Per-round p99 ratios 4/2, 6/3, 5/9: median 2, from 0.56 to 2.
        let ratio = row("rtmc÷floor");
        assert!(ratio.contains("2.00 [0.56–2.00]"), "{ratio}");
    }

    #[test]
    fn a_room_run_prints_its_seed_and_its_accounting_per_kind() {
        let mut r = RunReport::new(
            "run",
            Default::default(),
            "embedded".into(),
            "t".into(),
            "id".into(),
        );
        let mut rooms = RoomsReport {
            seed: 4242,
            rooms: 3,
            ..Default::default()
        };
        rooms.accounting.direct.leaks = 2;
        rooms.accounting.total.leaks = 2;
        r.rooms = Some(rooms);
        let text = render_text(&r);
        assert!(
            text.contains("seed 4242 (put `seed = 4242` under [workload]"),
            "{text}"
        );
        let direct = text
            .lines()
            .find(|l| l.trim_start().starts_with("direct"))
            .expect("a direct row");
        assert_eq!(direct.split_whitespace().nth(8), Some("2"), "{direct}");
    }

    #[test]
    fn a_repeated_error_sample_is_said_once_with_its_count() {
        let mut samples = vec!["error overloaded: broker_unavailable".to_string(); 9];
        samples.insert(3, "timeout".into());
        let text = distinct_samples(&samples);
        assert_eq!(
            text,
            "error overloaded: broker_unavailable (×9 of 10 samples); timeout"
        );
        assert_eq!(distinct_samples(&[]), "");
    }

    use crate::profile::Profile;
    use crate::report::rounds::RoundPhases;
    use crate::report::types::{ConnectReport, RampReport, RampStep, RunReport, SCHEMA_VERSION};

    fn fleet(connected: usize, connect_p99_ms: f64, kib_per_client: Option<f64>) -> ConnectReport {
        let mut c = ConnectReport {
            clients: 100,
            connected,
            server_kib_per_client: kib_per_client,
            server_rss_kib_before: kib_per_client.map(|_| 1000),
            server_rss_kib_after: kib_per_client.map(|k| 1000 + (k * connected as f64) as u64),
            ..Default::default()
        };
        c.connect.p99_ms = connect_p99_ms;
        if kib_per_client.is_none() {
            c.server_memory_not_measured = Some("a replacement fleet".into());
        }
        c
    }

    #[test]
    fn each_kind_reports_its_own_first_fleet_and_all_its_fleets() {
        let mut r = RunReport::new(
            "run",
            Profile::default(),
            "embedded".into(),
            "t".into(),
            "1".into(),
        );
        // Per-phase fleets over two rounds, the second in reverse order:
        // rtmc's second fleet and then the floor's connect last.
        r.record_fleet_connect("rtmc", 1, fleet(100, 1.0, Some(12.5)));
        r.record_fleet_connect("floor", 1, fleet(100, 0.5, None));
        r.record_fleet_connect("floor", 2, fleet(100, 0.7, None));
        r.record_fleet_connect("rtmc", 2, fleet(98, 3.0, None));
        let rtmc = r.connect.as_ref().unwrap();
        assert_eq!((rtmc.connected, rtmc.connect.p99_ms), (100, 1.0));
        assert_eq!(rtmc.server_kib_per_client, Some(12.5));
        assert_eq!(r.floor_connect.as_ref().unwrap().connect.p99_ms, 0.5);
        let rounds: Vec<(&str, usize)> = r
            .fleet_connects
            .iter()
            .map(|f| (f.label.as_str(), f.round))
            .collect();
        assert_eq!(
            rounds,
            [("rtmc", 1), ("floor", 1), ("floor", 2), ("rtmc", 2)]
        );
        // The JSON keeps every fleet; the text gives each kind's spread.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert!(json["fleet_connects"][3]["connect"]["server_kib_per_client"].is_null());
        r.rounds = vec![
            RoundPhases {
                round: 1,
                phases: vec![],
            },
            RoundPhases {
                round: 2,
                phases: vec![],
            },
        ];
        let text = render_text(&r);
        assert!(text.contains("12.5 KiB per client"), "{text}");
        assert!(!text.contains("0.0 KiB"), "{text}");
        assert!(
            text.contains("rtmc connect, all 2 fleets") && text.contains("fewest up 98/100"),
            "{text}"
        );
        assert!(text.contains("connect p99 2.00 [1.00–3.00] ms"), "{text}");
        assert!(text.contains("floor connect, all 2 fleets"), "{text}");
    }

    #[test]
    fn a_connect_without_memory_figures_says_why() {
        let mut out = String::new();
        connect_text(&mut out, "rtmc", &fleet(100, 1.0, None));
        assert!(
            out.contains("rtmc server memory per idle client: not measured (a replacement fleet)"),
            "{out}"
        );
    }

    #[test]
    fn a_ramp_step_shows_its_refusal_latency_or_a_dash_without_refusals() {
        let mut refused = RampStep {
            rate_per_sec: 2000.0,
            phase: PhaseReport::default(),
            sustainable: false,
            violation: Some("refused".into()),
        };
        refused.phase.refusal_latency = LatencySummary {
            count: 3,
            p50_ms: 1.25,
            p99_ms: 7.5,
            max_ms: 9.0,
            ..Default::default()
        };
        let calm = RampStep {
            rate_per_sec: 1000.0,
            phase: PhaseReport::default(),
            sustainable: true,
            violation: None,
        };
        let mut out = String::new();
        ramp_text(
            &mut out,
            &RampReport {
                slo_p99_ms: 50.0,
                max_sustainable_rate_per_sec: Some(1000.0),
                max_sustainable_deliveries_per_sec: Some(0.0),
                steps: vec![calm, refused],
            },
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("refusal p50/p99/max"), "{out}");
        assert!(lines[2].contains(" - "), "{out}");
        assert!(lines[3].contains("1.2/7.5/9.0"), "{out}");
    }
}
