//! Interleaved rounds: the A B B A A B … schedule, one `loadgen run` per
//! round with `RTMC_BIN` set to the side's `rtmc` (the candidate's loadgen
//! drives both sides, so the instrument is the same), and reading saved
//! round directories back for `gate --compare`.
//!
//! Alternating the order within each pair (AB, BA, AB…) cancels a linear
//! drift of the machine over the run, and pairs neighbouring rounds for the
//! agreement rule.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::round::{load_round, read_meta, Round, RoundError, RoundMeta, Side};

/// The variable the candidate side gets with `--inject-delay-us` (read by
/// `rtmc` built with the test-only broadcast-delay feature).
pub const DELAY_ENV: &str = "RTMC_TEST_BROADCAST_DELAY_US";

/// The variable the candidate side gets with `--inject-cpu-pct` (read by
/// `rtmc` built with the test-only fan-out CPU feature).
pub const CPU_ENV: &str = "RTMC_TEST_FANOUT_CPU_PCT";

/// One slot of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Position in the run order.
    pub order: usize,
    /// Which A/B pair.
    pub pair: usize,
    pub side: Side,
}

/// A B, B A, A B, … for `pairs` pairs.
pub fn schedule(pairs: usize) -> Vec<Slot> {
    (0..pairs)
        .flat_map(|pair| {
            let sides = if pair.is_multiple_of(2) {
                [Side::Baseline, Side::Candidate]
            } else {
                [Side::Candidate, Side::Baseline]
            };
            sides.into_iter().enumerate().map(move |(k, side)| Slot {
                order: 2 * pair + k,
                pair,
                side,
            })
        })
        .collect()
}

/// What every round runs.
#[derive(Debug, Clone)]
pub struct RoundSpec {
    /// The candidate's loadgen (the instrument of both sides).
    pub loadgen: PathBuf,
    /// The loadgen profile (`--profile`).
    pub profile: PathBuf,
    pub baseline_rtmc: PathBuf,
    pub candidate_rtmc: PathBuf,
    /// `RTMC_TEST_BROADCAST_DELAY_US` for the candidate side only.
    pub inject_delay_us: Option<u64>,
    /// `RTMC_TEST_FANOUT_CPU_PCT` for the candidate side only.
    pub inject_cpu_pct: Option<u64>,
    /// Rounds of the baseline run first into `<out>/rounds/warmup/` and
    /// never judged (the first round of a job runs cold).
    pub warmup_rounds: usize,
    /// A round that runs longer is stopped and the gate errors.
    pub timeout: Duration,
}

/// The rounds of a gate run, each side in pair order.
#[derive(Debug, Clone, Default)]
pub struct Rounds {
    pub baseline: Vec<Round>,
    pub candidate: Vec<Round>,
}

impl Rounds {
    /// Every round in run order.
    pub fn in_order(&self) -> Vec<&Round> {
        let mut all: Vec<&Round> = self.baseline.iter().chain(&self.candidate).collect();
        all.sort_by_key(|r| r.order);
        all
    }

    /// loadgen's failures of `side`'s rounds, prefixed with the round.
    pub fn failures(&self, side: Side) -> Vec<String> {
        let rounds = match side {
            Side::Baseline => &self.baseline,
            Side::Candidate => &self.candidate,
        };
        rounds
            .iter()
            .flat_map(|r| {
                r.failures
                    .iter()
                    .map(move |f| format!("{}{}: {f}", r.side.letter(), r.pair + 1))
            })
            .collect()
    }
}

/// A round that could not be run or read.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    #[error("starting {loadgen}: {source}")]
    Spawn {
        loadgen: PathBuf,
        source: std::io::Error,
    },
    #[error("round {round} could not run ({status}); last lines of {log}:\n{tail}")]
    Loadgen {
        round: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("round {round} exceeded {timeout_secs} s and was stopped; see {log}")]
    Timeout {
        round: String,
        timeout_secs: u64,
        log: PathBuf,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Round(#[from] RoundError),
    #[error("{dir}: no round directories (none holds a report.json)")]
    NoRounds { dir: PathBuf },
}

/// `<out>/rounds/<side>/pair-NN`.
pub fn round_dir(out: &Path, slot: &Slot) -> PathBuf {
    out.join("rounds")
        .join(slot.side.dir_name())
        .join(format!("pair-{:02}", slot.pair + 1))
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for `child` at most `timeout`; past it asks it to stop (SIGTERM,
/// so loadgen removes its containers), then kills it after a grace period.
fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now() + Duration::from_secs(30);
            while Instant::now() < grace {
                if child.try_wait()?.is_some() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> AbError {
    let path = path.to_owned();
    move |source| AbError::Write { path, source }
}

/// The side's `rtmc` and injected delay and CPU cost.
fn side_env(spec: &RoundSpec, side: Side) -> (&Path, Option<u64>, Option<u64>) {
    match side {
        Side::Baseline => (&spec.baseline_rtmc, None, None),
        Side::Candidate => (
            &spec.candidate_rtmc,
            spec.inject_delay_us,
            spec.inject_cpu_pct,
        ),
    }
}

/// `loadgen run --profile P --out DIR --quiet` with `RTMC_BIN` (and the
/// delay variable on the candidate side only), output into `log_path`.
fn loadgen_command(
    spec: &RoundSpec,
    side: Side,
    dir: &Path,
    log_path: &Path,
) -> Result<Command, AbError> {
    let log = std::fs::File::create(log_path).map_err(write_err(log_path))?;
    let log2 = log.try_clone().map_err(write_err(log_path))?;
    let (rtmc_bin, delay, cpu) = side_env(spec, side);
    let mut cmd = Command::new(&spec.loadgen);
    cmd.arg("run")
        .arg("--profile")
        .arg(&spec.profile)
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .env("RTMC_BIN", rtmc_bin)
        .env_remove(DELAY_ENV)
        .env_remove(CPU_ENV)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(us) = delay {
        cmd.env(DELAY_ENV, us.to_string());
    }
    if let Some(pct) = cpu {
        cmd.env(CPU_ENV, pct.to_string());
    }
    Ok(cmd)
}

/// Runs one round into its directory and reads it back.
pub fn run_round(spec: &RoundSpec, out: &Path, slot: &Slot) -> Result<Round, AbError> {
    run_round_in(spec, &round_dir(out, slot), slot)
}

/// `<out>/rounds/warmup/round-NN`: a discarded round.
pub fn warmup_dir(out: &Path, k: usize) -> PathBuf {
    out.join("rounds")
        .join("warmup")
        .join(format!("round-{:02}", k + 1))
}

/// Runs one round into `dir` and reads it back.
pub fn run_round_in(spec: &RoundSpec, dir: &Path, slot: &Slot) -> Result<Round, AbError> {
    let dir = dir.to_owned();
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let log_path = dir.join("loadgen.log");
    let started = Instant::now();
    let mut child = loadgen_command(spec, slot.side, &dir, &log_path)?
        .spawn()
        .map_err(|source| AbError::Spawn {
            loadgen: spec.loadgen.clone(),
            source,
        })?;
    let name = format!("{}{}", slot.side.letter(), slot.pair + 1);
    let Some(status) = wait_bounded(&mut child, spec.timeout).map_err(write_err(&log_path))? else {
        return Err(AbError::Timeout {
            round: name,
            timeout_secs: spec.timeout.as_secs(),
            log: log_path,
        });
    };
    let (rtmc_bin, delay, cpu) = side_env(spec, slot.side);
    let meta = RoundMeta {
        side: slot.side,
        pair: slot.pair,
        order: slot.order,
        rtmc_bin: rtmc_bin.to_owned(),
        inject_delay_us: delay,
        inject_cpu_pct: cpu,
        loadgen_exit_code: status.code(),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    let meta_path = dir.join("round.json");
    let json = serde_json::to_string_pretty(&meta).unwrap_or_default();
    std::fs::write(&meta_path, json).map_err(write_err(&meta_path))?;
    // 0 = passed, 1 = measured a failure (the report says which); anything
    // else means loadgen could not run.
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(AbError::Loadgen {
            round: name,
            status: status.to_string(),
            tail: tail(&log_path, 20),
            log: log_path,
        });
    }
    Ok(load_round(&dir, slot.side, slot.pair, slot.order)?)
}

/// Runs every round of the schedule in order; `log` gets a line per round.
pub fn run_rounds(
    spec: &RoundSpec,
    pairs: usize,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Rounds, AbError> {
    let mut rounds = Rounds::default();
    for k in 0..spec.warmup_rounds {
        log(&format!(
            "warm-up round {}/{} (baseline, discarded)",
            k + 1,
            spec.warmup_rounds
        ));
        let slot = Slot {
            order: k,
            pair: k,
            side: Side::Baseline,
        };
        run_round_in(spec, &warmup_dir(out, k), &slot)?;
    }
    let slots = schedule(pairs);
    for slot in &slots {
        log(&format!(
            "round {}/{}: {}{} ({})",
            slot.order + 1,
            slots.len(),
            slot.side.letter(),
            slot.pair + 1,
            slot.side.dir_name()
        ));
        let round = run_round(spec, out, slot)?;
        match slot.side {
            Side::Baseline => rounds.baseline.push(round),
            Side::Candidate => rounds.candidate.push(round),
        }
    }
    Ok(rounds)
}

/// The round directories of one side: `dir` itself when it holds a
/// `report.json`, else its subdirectories that do, by name.
pub fn side_dirs(dir: &Path) -> Result<Vec<PathBuf>, AbError> {
    if dir.join("report.json").is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| RoundError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("report.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(AbError::NoRounds {
            dir: dir.to_owned(),
        });
    }
    Ok(dirs)
}

/// Reads saved rounds: `dir_a` the baseline's, `dir_b` the candidate's. The
/// i-th directory of each side (by name) form pair i; the run order comes
/// from `round.json` when the gate wrote one, else from the schedule.
pub fn load_rounds(dir_a: &Path, dir_b: &Path) -> Result<Rounds, AbError> {
    let mut rounds = Rounds::default();
    for (dir, side) in [(dir_a, Side::Baseline), (dir_b, Side::Candidate)] {
        let dirs = side_dirs(dir)?;
        let plan = schedule(dirs.len());
        for (pair, d) in dirs.iter().enumerate() {
            let order = match read_meta(d)? {
                Some(meta) => meta.order,
                None => plan
                    .iter()
                    .find(|s| s.pair == pair && s.side == side)
                    .map_or(2 * pair, |s| s.order),
            };
            let round = load_round(d, side, pair, order)?;
            match side {
                Side::Baseline => rounds.baseline.push(round),
                Side::Candidate => rounds.candidate.push(round),
            }
        }
    }
    Ok(rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_alternates_abba() {
        let letters: String = schedule(4).iter().map(|s| s.side.letter()).collect();
        assert_eq!(letters, "ABBAABBA");
        let s = schedule(3);
        assert_eq!(s.len(), 6);
        assert!(s.iter().enumerate().all(|(i, slot)| slot.order == i));
        assert_eq!(
            s.iter().map(|s| s.pair).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2]
        );
    }

    #[test]
    fn round_dirs_are_named_by_side_and_pair() {
        let slot = Slot {
            order: 3,
            pair: 1,
            side: Side::Baseline,
        };
        assert_eq!(
            round_dir(Path::new("out"), &slot),
            Path::new("out/rounds/baseline/pair-02")
        );
    }
}
