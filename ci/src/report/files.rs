//! Writing the gate's report files: `gate.json`, the markdown and text
//! reports and the plots, into one directory.

use super::*;

/// Failure writing the report files.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

pub(super) fn write(path: &Path, text: &str) -> Result<PathBuf, ReportError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
    }
    std::fs::write(path, text).map_err(|e| ReportError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(path.to_owned())
}

pub(super) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Writes `gate.json`, `gate-report.md`, `gate-report.txt`, `rounds.svg`,
/// and from the rounds' interval logs `spectra.svg` and `over_time.svg`,
/// into `dir`; returns the files written (a plot that fails is skipped with
/// a warning on stderr).
pub fn write_gate_files(dir: &Path, r: &GateReport) -> Result<Vec<PathBuf>, ReportError> {
    let views = (!r.rounds.is_empty()).then(|| spectra::load(&r.rounds));
    let mut files = vec![
        write(&dir.join("gate.json"), &json(r))?,
        write(
            &dir.join("gate-report.md"),
            &render_markdown_with(r, views.as_ref()),
        )?,
        write(&dir.join("gate-report.txt"), &render_table(r))?,
    ];
    let Some(views) = views else {
        return Ok(files);
    };
    let mut plot = |name: &str, f: &dyn Fn(&Path) -> PlotResult| {
        let svg = dir.join(name);
        match f(&svg) {
            Ok(()) => files.push(svg),
            Err(e) => eprintln!("gate: {name} skipped: {e}"),
        }
    };
    plot("rounds.svg", &|p| rounds_plot(p, r));
    if views.complete() {
        plot("spectra.svg", &|p| spectra::spectra_plot(p, &views));
        plot("over_time.svg", &|p| spectra::over_time_plot(p, &views));
    }
    Ok(files)
}
