//! The gate's pictures of the two sides, for people: each side's rounds
//! pooled into one histogram (the percentile spectra overlaid in
//! `spectra.svg` and as a table in the markdown report) and merged second by
//! second from the start of publishing (`over_time.svg`: p50 and p99 of A
//! and B). They are read from every round's `latency.hlog` (loadgen's
//! HdrHistogram interval log) and never enter the decision, which rests on
//! the per-round medians ([`crate::compare`]): pooling hides how much the
//! rounds disagree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rtmc_loadgen::measure::histogram::{
    merge_into, new_histogram, read_interval_log, Interval, LatencyHistogram,
};
use rtmc_loadgen::report::plots::{spectrum_chart, time_panels, Panel, PlotResult, Series};

use crate::round::{RoundSummary, Side};

/// The interval log's tags for rtmc's publish→receive and publish→ack.
const RECV_TAG: &str = "rtmc";
const ACK_TAG: &str = "rtmc-ack";
/// Longest time axis kept (seconds); the gate's profile runs ~20 s.
const MAX_SECONDS: usize = 3600;

/// One side's rounds, pooled.
#[derive(Debug)]
pub struct SideView {
    /// Rounds whose interval log was read.
    pub rounds: usize,
    pub recv: LatencyHistogram,
    pub ack: LatencyHistogram,
    /// Publish→receive per second since publishing started (index = the
    /// second), every round of the side merged.
    pub recv_per_second: Vec<LatencyHistogram>,
}

impl SideView {
    fn new() -> Self {
        Self {
            rounds: 0,
            recv: new_histogram(),
            ack: new_histogram(),
            recv_per_second: Vec::new(),
        }
    }

    fn add_round(&mut self, intervals: &[Interval]) {
        self.rounds += 1;
        let origin = intervals
            .iter()
            .filter(|i| i.tag == RECV_TAG)
            .map(|i| i.start)
            .min()
            .unwrap_or_default();
        for i in intervals {
            match i.tag.as_str() {
                RECV_TAG => {
                    merge_into(&mut self.recv, &i.histogram);
                    let second = i.start.saturating_sub(origin).as_secs_f64().round() as usize;
                    if second < MAX_SECONDS {
                        if self.recv_per_second.len() <= second {
                            self.recv_per_second.resize_with(second + 1, new_histogram);
                        }
                        merge_into(&mut self.recv_per_second[second], &i.histogram);
                    }
                }
                ACK_TAG => merge_into(&mut self.ack, &i.histogram),
                _ => {}
            }
        }
    }
}

/// Both sides, and the rounds that had no readable log.
#[derive(Debug)]
pub struct Views {
    pub baseline: SideView,
    pub candidate: SideView,
    /// Round directories whose `latency.hlog` was missing or unreadable,
    /// with why.
    pub unread: Vec<(PathBuf, String)>,
}

/// Reads every round's interval log.
pub fn load(rounds: &[RoundSummary]) -> Views {
    let mut v = Views {
        baseline: SideView::new(),
        candidate: SideView::new(),
        unread: Vec::new(),
    };
    for r in rounds {
        let path = r.dir.join("latency.hlog");
        let intervals = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| read_interval_log(&b).map_err(|e| e.to_string()));
        match intervals {
            Ok(intervals) => match r.side {
                Side::Baseline => v.baseline.add_round(&intervals),
                Side::Candidate => v.candidate.add_round(&intervals),
            },
            Err(e) => v.unread.push((r.dir.clone(), e)),
        }
    }
    v
}

impl Views {
    /// Both sides have at least one round read.
    pub fn complete(&self) -> bool {
        self.baseline.rounds > 0 && self.candidate.rounds > 0
    }
}

/// Percentiles of the markdown table (100 = the maximum).
const TABLE_PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

fn at(h: &LatencyHistogram, pct: f64) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let us = if pct >= 100.0 {
        h.max()
    } else {
        h.value_at_percentile(pct)
    };
    Some(us as f64 / 1000.0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.1}%", 100.0 * (b / a - 1.0)),
        _ => "—".into(),
    }
}

/// The markdown section: the spectra table and the charts' file names.
pub fn markdown(v: &Views) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Percentile spectra (each side's rounds pooled: {} A, {} B)\n",
        v.baseline.rounds, v.candidate.rounds
    );
    if !v.complete() {
        let _ = writeln!(
            out,
            "Not available: no readable `latency.hlog` on {} side.",
            if v.baseline.rounds == 0 {
                "the baseline"
            } else {
                "the candidate"
            }
        );
        return out;
    }
    let _ = writeln!(
        out,
        "| percentile | receive A (ms) | receive B (ms) | B/A | ack A (ms) | ack B (ms) | B/A |\n|---|---|---|---|---|---|---|"
    );
    for pct in TABLE_PERCENTILES {
        let label = if pct >= 100.0 {
            "max".to_owned()
        } else {
            format!("p{pct}")
        };
        let (ra, rb) = (at(&v.baseline.recv, pct), at(&v.candidate.recv, pct));
        let (aa, ab) = (at(&v.baseline.ack, pct), at(&v.candidate.ack, pct));
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            ms(ra),
            ms(rb),
            ratio(ra, rb),
            ms(aa),
            ms(ab),
            ratio(aa, ab)
        );
    }
    let _ = writeln!(
        out,
        "\nPooled histograms are a picture, not the decision (that is the medians of rounds above). \
Charts next to this file: `spectra.svg` (both spectra overlaid) and `over_time.svg` (p50 and p99 per second from the start of publishing, each side's rounds merged)."
    );
    for (dir, why) in &v.unread {
        let _ = writeln!(out, "- not read: `{}/latency.hlog`: {why}", dir.display());
    }
    out
}

/// `spectra.svg`: publish→receive and publish→ack of both sides overlaid.
pub fn spectra_plot(path: &Path, v: &Views) -> PlotResult {
    spectrum_chart(
        path,
        "latency by percentile, each side's rounds pooled (A = baseline, B = candidate)",
        &[
            ("A receive".to_owned(), &v.baseline.recv),
            ("B receive".to_owned(), &v.candidate.recv),
            ("A ack".to_owned(), &v.baseline.ack),
            ("B ack".to_owned(), &v.candidate.ack),
        ],
    )
}

/// The quantile of every second with data, at the second's end.
fn per_second(side: &SideView, q: f64) -> Vec<(f64, f64)> {
    side.recv_per_second
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(k, h)| ((k + 1) as f64, h.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

/// `over_time.svg`: one panel for p50, one for p99; A and B in each.
pub fn over_time_plot(path: &Path, v: &Views) -> PlotResult {
    let panel = |q: f64, name: &str| {
        let series: Vec<Series> = vec![
            ("A (baseline)".to_owned(), per_second(&v.baseline, q)),
            ("B (candidate)".to_owned(), per_second(&v.candidate, q)),
        ];
        Panel {
            title: format!("publish→receive {name} per second, each side's rounds merged"),
            y_desc: "latency (ms, log)".into(),
            log_y: true,
            series,
        }
    };
    time_panels(
        path,
        "latency over time: baseline (A) and candidate (B)",
        &[panel(0.5, "p50"), panel(0.99, "p99")],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use rtmc_loadgen::measure::histogram::{record_us, write_interval_log};

    use super::*;

    /// A round directory whose log has `seconds` intervals of receive
    /// latencies `base_us`, `2 × base_us` … and one ack interval.
    fn round(dir: &Path, side: Side, pair: usize, base_us: u64, seconds: u64) -> RoundSummary {
        std::fs::create_dir_all(dir).unwrap();
        let mut intervals = Vec::new();
        for s in 0..seconds {
            let mut h = new_histogram();
            for k in 1..=100 {
                record_us(&mut h, base_us * k);
            }
            let start = Duration::from_secs(5 + s);
            intervals.push(Interval {
                start,
                length: Duration::from_secs(1),
                tag: RECV_TAG.into(),
                histogram: h.clone(),
            });
            intervals.push(Interval {
                start,
                length: Duration::from_secs(1),
                tag: ACK_TAG.into(),
                histogram: h,
            });
        }
        let mut f = std::fs::File::create(dir.join("latency.hlog")).unwrap();
        write_interval_log(&mut f, SystemTime::now(), &intervals).unwrap();
        RoundSummary {
            side,
            pair,
            order: pair,
            dir: dir.to_owned(),
            rtmc: BTreeMap::new(),
            floor: None,
            failures: vec![],
        }
    }

    #[test]
    fn both_sides_pool_their_rounds_and_the_table_shows_the_change() {
        let tmp = tempfile::tempdir().unwrap();
        let rounds = vec![
            round(&tmp.path().join("a1"), Side::Baseline, 0, 10, 3),
            round(&tmp.path().join("b1"), Side::Candidate, 0, 20, 3),
            round(&tmp.path().join("a2"), Side::Baseline, 1, 10, 2),
            round(&tmp.path().join("b2"), Side::Candidate, 1, 20, 2),
        ];
        let v = load(&rounds);
        assert!(v.complete() && v.unread.is_empty(), "{v:?}");
        assert_eq!((v.baseline.rounds, v.candidate.rounds), (2, 2));
        assert_eq!(v.baseline.recv.len(), 500);
        // Seconds are counted from each round's first interval: 3 of them,
        // the first two with both rounds, the third with one.
        assert_eq!(v.candidate.recv_per_second.len(), 3);
        assert_eq!(v.candidate.recv_per_second[0].len(), 200);
        assert_eq!(v.candidate.recv_per_second[2].len(), 100);
        let md = markdown(&v);
        assert!(md.contains("| p50 | 0.50 | 1.00 | +100.0% |"), "{md}");
        assert!(md.contains("| max | 1.00 | 2.00 | +100.0% |"), "{md}");

        let (s, t) = (
            tmp.path().join("spectra.svg"),
            tmp.path().join("over_time.svg"),
        );
        spectra_plot(&s, &v).unwrap();
        over_time_plot(&t, &v).unwrap();
        let svg = std::fs::read_to_string(&s).unwrap();
        assert!(svg.contains("A receive") && svg.contains("B ack"));
        let svg = std::fs::read_to_string(&t).unwrap();
        assert!(svg.contains("A (baseline)") && svg.contains("B (candidate)"));
    }

    #[test]
    fn rounds_without_a_log_are_named_and_a_missing_side_is_said() {
        let tmp = tempfile::tempdir().unwrap();
        let mut missing = round(&tmp.path().join("b1"), Side::Candidate, 0, 20, 1);
        missing.dir = tmp.path().join("nowhere");
        let rounds = vec![
            round(&tmp.path().join("a1"), Side::Baseline, 0, 10, 1),
            missing,
        ];
        let v = load(&rounds);
        assert!(!v.complete());
        assert_eq!(v.unread.len(), 1);
        assert!(v.unread[0].0.ends_with("nowhere"));
        assert!(markdown(&v).contains("no readable `latency.hlog` on the candidate side"));
    }
}
