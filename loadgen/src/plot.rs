//! SVG plots of a run (plotters' SVG backend, no system fonts needed):
//! latency percentiles over time, the percentile spectrum, and for a ramp
//! the latency of every step against the SLO. Plots take only the data they
//! draw; the run (or `merge`) writes them next to the report.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::histogram::{Interval, LatencyHistogram};
use crate::report::RampReport;

const SIZE: (u32, u32) = (1000, 600);
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;
/// A named line: (x, y) points.
type Series = (String, Vec<(f64, f64)>);
type Svg<'a> = SVGBackend<'a>;
type LinearChart<'a, 'b> = ChartContext<'a, Svg<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Writes every plot that applies; a plot that fails is reported on stderr
/// and skipped (plots never fail a run). `merged` holds the whole-run
/// histograms by file stem (`latency`, `ack`, `floor`, `floor-ack`);
/// `ramp` is there for a ramp.
pub fn write_all(
    dir: &Path,
    intervals: &[Interval],
    merged: &[(&'static str, &LatencyHistogram)],
    ramp: Option<&RampReport>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut attempt = |name: &str, f: &dyn Fn(&Path) -> PlotResult| {
        let p = dir.join(name);
        match f(&p) {
            Ok(()) => out.push(p),
            Err(e) => eprintln!("loadgen: plot {name} skipped: {e}"),
        }
    };
    if intervals.iter().any(|i| !i.histogram.is_empty()) {
        attempt("latency_over_time.svg", &|p| over_time(p, intervals));
    }
    let spectra: Vec<_> = merged
        .iter()
        .filter(|(stem, h)| !stem.ends_with("ack") && !h.is_empty())
        .collect();
    if !spectra.is_empty() {
        attempt("percentile_spectrum.svg", &|p| spectrum(p, &spectra));
    }
    if let Some(ramp) = ramp {
        if !ramp.steps.is_empty() {
            attempt("ramp.svg", &|p| ramp_plot(p, ramp));
        }
    }
    out
}

/// A white canvas of the standard size.
fn canvas(path: &Path) -> Result<DrawingArea<Svg<'_>, Shift>, Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}

/// Draws one line with its legend entry.
fn draw_line<'a, 'b: 'a, CT>(
    chart: &mut ChartContext<'a, Svg<'b>, CT>,
    name: String,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
) -> PlotResult
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    let color = style.color;
    chart
        .draw_series(LineSeries::new(pts, style))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    Ok(())
}

/// Draws the legend in the upper left corner and writes the file.
fn finish<'a, 'b: 'a, CT: CoordTranslate>(
    mut chart: ChartContext<'a, Svg<'b>, CT>,
    root: &DrawingArea<Svg<'b>, Shift>,
) -> PlotResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Highest y of all series, at least `floor`.
fn highest_y(series: &[Series], floor: f64) -> f64 {
    series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.1))
        .fold(floor, f64::max)
}

/// p50/p99/p99.9/max per interval, in ms, for every delivery tag.
fn over_time_series(intervals: &[Interval]) -> Vec<Series> {
    let mut tags: Vec<&str> = intervals
        .iter()
        .filter(|i| !i.tag.ends_with("-ack"))
        .map(|i| i.tag.as_str())
        .collect();
    tags.sort();
    tags.dedup();
    let qs = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max")];
    let mut series = Vec::new();
    for tag in &tags {
        for (q, name) in qs {
            let pts: Vec<(f64, f64)> = intervals
                .iter()
                .filter(|i| i.tag == *tag && !i.histogram.is_empty())
                .map(|i| {
                    let x = (i.start + i.length).as_secs_f64();
                    let v = if q >= 1.0 {
                        i.histogram.max()
                    } else {
                        i.histogram.value_at_quantile(q)
                    };
                    (x, v as f64 / 1000.0)
                })
                .collect();
            series.push((format!("{tag} {name}"), pts));
        }
    }
    series
}

fn over_time(path: &Path, intervals: &[Interval]) -> PlotResult {
    let series = over_time_series(intervals);
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.0))
        .fold(1.0f64, f64::max);
    let y_max = highest_y(&series, 0.1);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "publish→receive latency over time (1 s intervals)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.02, (0.01f64..y_max * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since run start")
        .y_desc("latency (ms, log)")
        .draw()?;
    for (k, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let width = if name.starts_with("floor") { 1 } else { 2 };
        let pts = pts.into_iter().map(|(x, y)| (x, y.max(0.01))).collect();
        draw_line(
            &mut chart,
            name,
            pts,
            ShapeStyle::from(&color).stroke_width(width),
        )?;
    }
    finish(chart, &root)
}

/// Latency (ms) by number of nines, -log10(1 - q) capped at 6 (99.9999%),
/// per histogram; the rtmc one is called `rtmc`.
fn spectrum_series(hists: &[&(&'static str, &LatencyHistogram)]) -> Vec<Series> {
    let mut all = Vec::new();
    for (stem, h) in hists {
        let mut pts = Vec::new();
        for v in h.iter_quantiles(10) {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                6.0
            } else {
                (-(1.0 - q).log10()).min(6.0)
            };
            pts.push((x, (v.value_iterated_to() as f64 / 1000.0).max(0.001)));
        }
        let name = if *stem == "latency" { "rtmc" } else { stem };
        all.push((name.to_owned(), pts));
    }
    all
}

fn spectrum(path: &Path, hists: &[&(&'static str, &LatencyHistogram)]) -> PlotResult {
    let all = spectrum_series(hists);
    let y_max = highest_y(&all, 0.1);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency by percentile (whole run)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..6.0, 0.0..y_max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let pct = 100.0 * (1.0 - 10f64.powf(-x));
            if *x < 0.5 {
                "0%".into()
            } else {
                format!("{pct:.4}%")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        })
        .draw()?;
    for (k, (name, pts)) in all.into_iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        draw_line(
            &mut chart,
            name,
            pts,
            ShapeStyle::from(&color).stroke_width(2),
        )?;
    }
    finish(chart, &root)
}

/// p50, p99 and p99.9 (ms) of every step against its rate.
fn ramp_series(ramp: &RampReport) -> Vec<Series> {
    let per_step = |name: &str, ms: fn(&crate::histogram::LatencySummary) -> f64| {
        let pts = ramp
            .steps
            .iter()
            .map(|s| (s.rate_per_sec, ms(&s.phase.latency)))
            .collect();
        (name.to_owned(), pts)
    };
    vec![
        per_step("p50", |l| l.p50_ms),
        per_step("p99", |l| l.p99_ms),
        per_step("p99.9", |l| l.p99_9_ms),
    ]
}

fn ramp_plot(path: &Path, ramp: &RampReport) -> PlotResult {
    let series = ramp_series(ramp);
    let x_max = ramp
        .steps
        .iter()
        .map(|s| s.rate_per_sec)
        .fold(1.0, f64::max);
    let y_max = highest_y(&series, ramp.slo_p99_ms);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "ramp: latency per step (SLO p99 ≤ {} ms); sustainable up to {}",
                ramp.slo_p99_ms,
                ramp.max_sustainable_rate_per_sec
                    .map(|r| format!("{r:.0} msg/s"))
                    .unwrap_or_else(|| "none".into())
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("publish rate (msg/s)")
        .y_desc("publish→receive latency (ms)")
        .draw()?;
    for (k, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        draw_line(
            &mut chart,
            name,
            pts.clone(),
            ShapeStyle::from(&color).stroke_width(2),
        )?;
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    draw_slo(&mut chart, ramp, x_max * 1.05)?;
    finish(chart, &root)
}

/// The SLO line, and a cross on every step that failed.
fn draw_slo<'a, 'b: 'a>(
    chart: &mut LinearChart<'a, 'b>,
    ramp: &RampReport,
    x_end: f64,
) -> PlotResult {
    let slo = ramp.slo_p99_ms;
    draw_line(
        chart,
        "SLO p99".into(),
        vec![(0.0, slo), (x_end, slo)],
        ShapeStyle::from(&RED).stroke_width(1),
    )?;
    chart.draw_series(ramp.steps.iter().filter(|s| !s.sustainable).map(|s| {
        Cross::new(
            (s.rate_per_sec, s.phase.latency.p99_ms),
            8,
            RED.stroke_width(2),
        )
    }))?;
    Ok(())
}
