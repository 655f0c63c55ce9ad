//! The report directory: `report.txt`, `report.json` and the histogram
//! files (`latency.hlog`, the `.hgrm`s); the plots are added by the caller.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::measure::histogram::{write_hgrm, write_interval_log, Interval, LatencyHistogram};
use crate::report::text::render_text;
use crate::report::types::RunReport;

/// Histograms that go into the report directory.
pub struct ReportHistograms<'a> {
    pub run_start: SystemTime,
    pub intervals: &'a [Interval],
    /// (file stem, histogram): e.g. ("latency", rtmc), ("floor", …), ("ack", …).
    pub merged: Vec<(&'static str, &'a LatencyHistogram)>,
}

/// Failure writing the report directory.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), String>,
) -> Result<(), ReportError> {
    let err = |message: String| ReportError::Write {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut w = std::io::BufWriter::new(file);
    f(&mut w).map_err(err)?;
    w.flush().map_err(|e| err(e.to_string()))
}

/// Writes report.txt, report.json, latency.hlog and the .hgrm files (the
/// caller adds the plots: [`crate::report::plots::write_all`]).
pub fn write_dir(
    dir: &Path,
    r: &RunReport,
    h: &ReportHistograms,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    let p = dir.join("report.txt");
    write_file(&p, |w| {
        w.write_all(render_text(r).as_bytes())
            .map_err(|e| e.to_string())
    })?;
    files.push(p);
    let p = dir.join("report.json");
    write_file(&p, |w| {
        serde_json::to_writer_pretty(w, r).map_err(|e| e.to_string())
    })?;
    files.push(p);
    if !h.intervals.is_empty() {
        let p = dir.join("latency.hlog");
        write_file(&p, |w| {
            write_interval_log(w, h.run_start, h.intervals).map_err(|e| e.to_string())
        })?;
        files.push(p);
    }
    for (stem, hist) in &h.merged {
        let p = dir.join(format!("{stem}.hgrm"));
        write_file(&p, |w| write_hgrm(w, hist).map_err(|e| e.to_string()))?;
        files.push(p);
    }
    Ok(files)
}

/// `reports/<timestamp>` under the current directory.
pub fn default_dir(kind: &str) -> PathBuf {
    PathBuf::from("reports").join(format!(
        "{}-{kind}",
        chrono::Local::now().format("%Y%m%d-%H%M%S")
    ))
}
