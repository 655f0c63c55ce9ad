//! SVG plots of a run (plotters' SVG backend, no system fonts needed):
//! latency percentiles over time, the percentile spectrum, and for a ramp
//! the latency of every step against the SLO.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::histogram::{Interval, LatencyHistogram};
use crate::report::RunReport;

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

/// Writes every plot that applies; a plot that fails is reported on stderr
/// and skipped (plots never fail a run).
pub fn write_all(
    dir: &Path,
    r: &RunReport,
    intervals: &[Interval],
    merged: &[(&'static str, &LatencyHistogram)],
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
    if let Some(ramp) = &r.ramp {
        if !ramp.steps.is_empty() {
            attempt("ramp.svg", &|p| ramp_plot(p, r));
        }
    }
    out
}

fn over_time(path: &Path, intervals: &[Interval]) -> PlotResult {
    let tags: Vec<&str> = {
        let mut t: Vec<&str> = intervals
            .iter()
            .filter(|i| !i.tag.ends_with("-ack"))
            .map(|i| i.tag.as_str())
            .collect();
        t.dedup();
        t.sort();
        t.dedup();
        t
    };
    let qs = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max")];
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
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
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.0))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.1))
        .fold(0.1f64, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
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
        let style = if name.starts_with("floor") {
            ShapeStyle::from(&color).stroke_width(1)
        } else {
            ShapeStyle::from(&color).stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(
                pts.into_iter().map(|(x, y)| (x, y.max(0.01))),
                style,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn spectrum(path: &Path, hists: &[&(&'static str, &LatencyHistogram)]) -> PlotResult {
    // x = number of nines: -log10(1 - q), capped at 6 (99.9999%).
    let mut all: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
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
    let y_max = all
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.1))
        .fold(0.1f64, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
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
        chart
            .draw_series(LineSeries::new(
                pts,
                ShapeStyle::from(&color).stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn ramp_plot(path: &Path, r: &RunReport) -> PlotResult {
    let Some(ramp) = &r.ramp else { return Ok(()) };
    let series: Vec<(&str, Vec<(f64, f64)>)> = vec![
        (
            "p50",
            ramp.steps
                .iter()
                .map(|s| (s.rate_per_sec, s.phase.latency.p50_ms))
                .collect(),
        ),
        (
            "p99",
            ramp.steps
                .iter()
                .map(|s| (s.rate_per_sec, s.phase.latency.p99_ms))
                .collect(),
        ),
        (
            "p99.9",
            ramp.steps
                .iter()
                .map(|s| (s.rate_per_sec, s.phase.latency.p99_9_ms))
                .collect(),
        ),
    ];
    let x_max = ramp
        .steps
        .iter()
        .map(|s| s.rate_per_sec)
        .fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.1))
        .fold(ramp.slo_p99_ms, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
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
        chart
            .draw_series(LineSeries::new(
                pts.clone(),
                ShapeStyle::from(&color).stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    let slo = ramp.slo_p99_ms;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, slo), (x_max * 1.05, slo)],
            ShapeStyle::from(&RED).stroke_width(1),
        ))?
        .label("SLO p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    // Steps that failed are marked with a cross.
    chart.draw_series(ramp.steps.iter().filter(|s| !s.sustainable).map(|s| {
        Cross::new(
            (s.rate_per_sec, s.phase.latency.p99_ms),
            8,
            RED.stroke_width(2),
        )
    }))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
