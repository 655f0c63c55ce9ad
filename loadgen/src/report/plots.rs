//! SVG plots of a run (plotters' SVG backend, no system fonts needed):
//! latency percentiles over time, the percentile spectrum, and for a ramp
//! the latency of every step against the SLO. Plots take only the data they
//! draw; the run (or `merge`) writes them next to the report.
//!
//! Over-time charts are [`time_panels`]: one panel per phase (or per
//! quantity), time from the start of publishing, a distinct colour and a
//! legend entry per series, and optional shaded windows ([`Shade`]) that the
//! chaos report uses for its fault windows.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::measure::histogram::{Interval, LatencyHistogram};
use crate::report::types::RampReport;

const SIZE: (u32, u32) = (1000, 600);
/// Series colours (Tableau 10): a chart gives its series distinct ones
/// for up to ten series.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A plot written, or why not.
pub type PlotResult = Result<(), Box<dyn std::error::Error>>;
/// A named line: (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);
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
            attempt("ramp_ingest.svg", &|p| ingest_plot(p, ramp));
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
    chart: &mut ChartContext<'a, Svg<'b>, CT>,
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

/// p50/p99/p99.9/max per interval, in ms, for every delivery tag: one
/// panel per tag (a phase: `rtmc`, `floor`, a ramp step's label), its time
/// measured from that phase's first interval, i.e. from the start of its
/// publishing (the interval recorder starts when the publishers do).
fn over_time_panels(intervals: &[Interval]) -> Vec<Panel> {
    let mut tags: Vec<&str> = intervals
        .iter()
        .filter(|i| !i.tag.ends_with("-ack"))
        .map(|i| i.tag.as_str())
        .collect();
    tags.sort();
    tags.dedup();
    let qs = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max")];
    let mut panels = Vec::new();
    for tag in &tags {
        let of_tag = || intervals.iter().filter(|i| i.tag == *tag);
        let Some(origin) = of_tag().map(|i| i.start).min() else {
            continue;
        };
        let mut series = Vec::new();
        for (q, name) in qs {
            let pts: Vec<(f64, f64)> = of_tag()
                .filter(|i| !i.histogram.is_empty())
                .map(|i| {
                    let x = (i.start + i.length).saturating_sub(origin).as_secs_f64();
                    let v = if q >= 1.0 {
                        i.histogram.max()
                    } else {
                        i.histogram.value_at_quantile(q)
                    };
                    (x, v as f64 / 1000.0)
                })
                .collect();
            series.push((name.to_owned(), pts));
        }
        panels.push(Panel {
            title: format!("{tag}: publish→receive latency (1 s intervals)"),
            y_desc: "latency (ms, log)".into(),
            log_y: true,
            series,
        });
    }
    panels
}

fn over_time(path: &Path, intervals: &[Interval]) -> PlotResult {
    time_panels(
        path,
        "latency over time, each phase from the start of its publishing",
        &over_time_panels(intervals),
        &[],
    )
}

/// A time window shaded on a [`time_panels`] chart: a fault, a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Shade {
    /// Shown in the legend (`rabbitmq sigkill`).
    pub label: String,
    /// Seconds on the chart's time axis.
    pub start_secs: f64,
    pub end_secs: f64,
}

/// One panel of a [`time_panels`] chart: series over time sharing a y axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The panel's caption.
    pub title: String,
    /// The y axis' description, with its unit.
    pub y_desc: String,
    /// A logarithmic y axis (latencies); values ≤ 0 are drawn at its floor.
    pub log_y: bool,
    /// The lines; each gets its own colour and legend entry.
    pub series: Vec<Series>,
}

/// Panels stacked top to bottom on one SVG, each with its legend and the
/// same `shades` (translucent, each its own colour, named in the legend).
/// The x axis is seconds as the series give them.
pub fn time_panels(path: &Path, caption: &str, panels: &[Panel], shades: &[Shade]) -> PlotResult {
    if panels.is_empty() {
        return Err("nothing to plot".into());
    }
    let height = 120 + 380 * panels.len() as u32;
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(caption, ("sans-serif", 22))?;
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        draw_panel(area, panel, shades)?;
    }
    root.present()?;
    Ok(())
}

/// The points split where the series skips: a step in x over 1.5 times
/// its usual step (an interval with no data) starts a new run, so no line
/// is drawn across a time without data.
fn unbroken_runs(pts: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let step = pts
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|d| *d > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, &p) in pts.iter().enumerate() {
        let skips = i > 0 && p.0 - pts[i - 1].0 > 1.5 * step;
        match runs.last_mut() {
            Some(run) if !skips => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    runs
}

/// The shade colours: light, and apart from the series colours.
const SHADE_COLORS: [RGBColor; 4] = [
    RGBColor(150, 150, 150),
    RGBColor(230, 171, 2),
    RGBColor(102, 166, 30),
    RGBColor(231, 41, 138),
];

/// Lowest latency a log axis shows (ms).
const LOG_FLOOR_MS: f64 = 0.01;

fn draw_panel(area: &DrawingArea<Svg<'_>, Shift>, panel: &Panel, shades: &[Shade]) -> PlotResult {
    let (x_range, y_range) = panel_ranges(panel, shades);
    let (y_bottom, y_top) = (y_range.start, y_range.end);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)?;
    let log_y = panel.log_y;
    chart
        .configure_mesh()
        .x_desc("seconds since publishing started")
        .y_desc(panel.y_desc.as_str())
        .y_label_formatter(&|v| y_tick_label(log_y, *v))
        .draw()?;
    draw_shades(&mut chart, shades, y_bottom, y_top)?;
    for (k, (name, pts)) in panel.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(px, py)| (px, panel_y(log_y, py)))
            .collect();
        let mut runs = unbroken_runs(&pts).into_iter();
        draw_line(
            &mut chart,
            name.clone(),
            runs.next().unwrap_or_default(),
            style,
        )?;
        for run in runs {
            chart.draw_series(LineSeries::new(run, style))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// A value as a panel plots it: log10 of the ms (floored) on a log axis.
fn panel_y(log_y: bool, v: f64) -> f64 {
    if log_y {
        v.max(LOG_FLOOR_MS).log10()
    } else {
        v
    }
}

/// A panel's x range (its series and shades) and y range, with headroom
/// above the data for the legend (upper right).
fn panel_ranges(panel: &Panel, shades: &[Shade]) -> (Range<f64>, Range<f64>) {
    let x_max = panel
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.0))
        .chain(shades.iter().map(|s| s.end_secs))
        .fold(1.0f64, f64::max);
    let x_min = shades.iter().map(|s| s.start_secs).fold(0.0f64, f64::min);
    let rows = (panel.series.len() + shades.len()) as f64;
    let high = highest_y(&panel.series, if panel.log_y { 0.1 } else { 1.0 });
    let y_top = if panel.log_y {
        panel_y(true, high) + 0.5 + 0.18 * rows
    } else {
        high * (1.3 + 0.08 * rows)
    };
    let y_bottom = if panel.log_y {
        panel_y(true, LOG_FLOOR_MS)
    } else {
        0.0
    };
    (x_min..x_max * 1.02, y_bottom..y_top)
}

/// A y tick: ms (from log10 on a log axis), two decimals below 1 ms.
fn y_tick_label(log_y: bool, v: f64) -> String {
    if log_y {
        let ms = 10f64.powf(v);
        if ms >= 1.0 {
            format!("{ms:.0}")
        } else {
            format!("{ms:.2}")
        }
    } else {
        format!("{v:.0}")
    }
}

/// The shaded windows, full height, each with its legend entry.
fn draw_shades(
    chart: &mut LinearChart<'_, '_>,
    shades: &[Shade],
    y_bottom: f64,
    y_top: f64,
) -> PlotResult {
    for (k, s) in shades.iter().enumerate() {
        let color = SHADE_COLORS[k % SHADE_COLORS.len()];
        let rect = [(s.start_secs, y_bottom), (s.end_secs, y_top)];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                rect,
                color.mix(0.25).filled(),
            )))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 20, y + 6)], color.mix(0.4).filled())
            });
    }
    Ok(())
}

/// Latency (ms) by number of nines, -log10(1 - q) capped at 6 (99.9999%),
/// per named histogram.
fn spectrum_series(hists: &[(String, &LatencyHistogram)]) -> Vec<Series> {
    let mut all = Vec::new();
    for (name, h) in hists {
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
        all.push((name.clone(), pts));
    }
    all
}

/// A run's spectra: the rtmc histogram (stem `latency`) is called `rtmc`.
fn spectrum(path: &Path, hists: &[&(&'static str, &LatencyHistogram)]) -> PlotResult {
    let named: Vec<(String, &LatencyHistogram)> = hists
        .iter()
        .map(|(stem, h)| {
            let name = if *stem == "latency" { "rtmc" } else { stem };
            (name.to_owned(), *h)
        })
        .collect();
    spectrum_chart(path, "latency by percentile (whole run)", &named)
}

/// Latency by percentile of every named histogram, overlaid on one chart
/// (x: percentile on a "number of nines" axis up to 99.9999%), a distinct
/// colour and legend entry each. The gate overlays baseline and candidate.
pub fn spectrum_chart(
    path: &Path,
    caption: &str,
    hists: &[(String, &LatencyHistogram)],
) -> PlotResult {
    let all = spectrum_series(hists);
    if all.iter().all(|(_, p)| p.is_empty()) {
        return Err("nothing to plot".into());
    }
    let y_max = highest_y(&all, 0.1);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
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
                let digits = format!("{pct:.4}");
                format!("{}%", digits.trim_end_matches('0').trim_end_matches('.'))
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
    finish(&mut chart, &root)
}

/// p50, p99 and p99.9 (ms) of every step against its rate.
fn ramp_series(ramp: &RampReport) -> Vec<Series> {
    let per_step = |name: &str, ms: fn(&crate::measure::histogram::LatencySummary) -> f64| {
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
    let caption = format!(
        "ramp: latency per step (SLO p99 ≤ {} ms); sustainable up to {}",
        ramp.slo_p99_ms,
        ramp.max_sustainable_rate_per_sec
            .map(|r| format!("{r:.0} msg/s"))
            .unwrap_or_else(|| "none".into())
    );
    let axes = ("publish rate (msg/s)", "publish→receive latency (ms)");
    steps_plot(path, &caption, axes, ramp_series(ramp), ramp, true)
}

/// The highest step rate (at least 1): the x range of the step plots.
fn highest_rate(ramp: &RampReport) -> f64 {
    ramp.steps
        .iter()
        .map(|s| s.rate_per_sec)
        .fold(1.0, f64::max)
}

/// One point per ramp step of every series against the step's rate, with
/// the SLO line when `slo` is set.
fn steps_plot(
    path: &Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    series: Vec<Series>,
    ramp: &RampReport,
    slo: bool,
) -> PlotResult {
    let x_max = highest_rate(ramp);
    let y_max = highest_y(&series, if slo { ramp.slo_p99_ms } else { 1.0 });
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    draw_steps(&mut chart, series)?;
    if slo {
        draw_slo(&mut chart, ramp, x_max * 1.05)?;
    }
    finish(&mut chart, &root)
}

/// Per step against the offered rate: the acknowledged rate (goodput), the
/// refused rate, and the offered rate itself as a reference line, so the
/// knee and the plateau beyond it show.
fn ingest_series(ramp: &RampReport) -> Vec<Series> {
    let per_step = |name: &str, y: fn(&crate::report::types::RampStep) -> f64| {
        let pts = ramp.steps.iter().map(|s| (s.rate_per_sec, y(s))).collect();
        (name.to_owned(), pts)
    };
    vec![
        per_step("offered", |s| s.rate_per_sec),
        per_step("acknowledged", |s| s.acked_per_sec()),
        per_step("refused", |s| {
            s.phase.publish_errors as f64 / s.phase.duration_secs.max(1e-9)
        }),
    ]
}

/// Each series' line in its palette colour, a dot on every step.
fn draw_steps<'a, 'b: 'a>(chart: &mut LinearChart<'a, 'b>, series: Vec<Series>) -> PlotResult {
    for (k, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        draw_line(
            chart,
            name,
            pts.clone(),
            ShapeStyle::from(&color).stroke_width(2),
        )?;
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    Ok(())
}

/// The legend name of the refusal latency series (it reads the right axis).
const REFUSAL_P99: &str = "refusal p99 (ms, right axis)";

/// The refusal latency's p99 (ms) of every step that refused something; a
/// step without refusals has no point (it has no refusal latency).
fn refusal_p99_series(ramp: &RampReport) -> Series {
    let pts = ramp
        .steps
        .iter()
        .filter(|s| s.phase.refusal_latency.count > 0)
        .map(|s| (s.rate_per_sec, s.phase.refusal_latency.p99_ms))
        .collect();
    (REFUSAL_P99.into(), pts)
}

/// The rates per step on the left axis (msg/s) and, on the right axis in
/// its own colour, the refusal p99 (ms): a refusal is only graceful when it
/// is fast, so the plot that shows the refusals shows how fast they came.
fn ingest_plot(path: &Path, ramp: &RampReport) -> PlotResult {
    let caption = "ramp: acknowledged and refused rate, and refusal p99, against the offered rate";
    let series = ingest_series(ramp);
    let (refusal_name, refusal) = refusal_p99_series(ramp);
    let x_max = highest_rate(ramp);
    let y_max = highest_y(&series, 1.0);
    let ms_max = refusal.iter().map(|p| p.1).fold(1.0, f64::max);
    let color = COLORS[series.len() % COLORS.len()];
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.1)?
        .set_secondary_coord(0.0..x_max * 1.05, 0.0..ms_max * 1.1);
    chart
        .configure_mesh()
        .x_desc("offered publish rate (msg/s)")
        .y_desc("msg/s")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("refusal p99 (ms)")
        .draw()?;
    draw_steps(&mut chart, series)?;
    chart
        .draw_secondary_series(LineSeries::new(
            refusal.clone(),
            ShapeStyle::from(&color).stroke_width(2),
        ))?
        .label(refusal_name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    chart.draw_secondary_series(
        refusal
            .into_iter()
            .map(|p| TriangleMarker::new(p, 5, color.filled())),
    )?;
    finish(&mut chart, &root)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::measure::histogram::{new_histogram, record_us};

    fn svg_of(name: &str, panels: &[Panel], shades: &[Shade]) -> String {
        let dir = std::env::temp_dir().join(format!("rtmc-plot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chart.svg");
        time_panels(&path, "test chart", panels, shades).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        let _ = std::fs::remove_dir_all(&dir);
        svg
    }

    /// Whether the SVG has a text element reading exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.lines().any(|l| l.trim() == text)
    }

    /// The `#RRGGBB` of a palette colour as plotters writes it.
    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    fn interval(tag: &str, start_secs: u64, latency_us: u64) -> Interval {
        let mut histogram = new_histogram();
        record_us(&mut histogram, latency_us);
        Interval {
            start: Duration::from_secs(start_secs),
            length: Duration::from_secs(1),
            tag: tag.into(),
            histogram,
        }
    }

    #[test]
    fn each_series_has_its_own_colour_and_legend_entry() {
        let series: Vec<Series> = ["p50", "p99", "p99.9", "max", "acks/s", "deliveries/s"]
            .iter()
            .enumerate()
            .map(|(k, n)| (n.to_string(), vec![(0.0, 1.0 + k as f64), (5.0, 2.0)]))
            .collect();
        let panel = Panel {
            title: "latency".into(),
            y_desc: "ms".into(),
            log_y: true,
            series,
        };
        let svg = svg_of("colours", &[panel], &[]);
        for (k, name) in ["p50", "p99", "p99.9", "max", "acks/s", "deliveries/s"]
            .iter()
            .enumerate()
        {
            assert!(has_text(&svg, name), "legend lacks {name}");
            assert!(
                svg.contains(&format!("stroke=\"{}\"", hex(COLORS[k]))),
                "series {name} not drawn in {}",
                hex(COLORS[k])
            );
        }
        let distinct: std::collections::HashSet<_> = COLORS.iter().map(|c| hex(*c)).collect();
        assert_eq!(distinct.len(), COLORS.len(), "palette repeats a colour");
    }

    fn ramp_step(rate: f64, refused: u64, refusal_p99_ms: f64) -> crate::report::types::RampStep {
        let mut phase = crate::engine::phase::PhaseReport {
            duration_secs: 1.0,
            acked: rate as u64 - refused,
            publish_errors: refused,
            ..Default::default()
        };
        phase.refusal_latency.count = refused;
        phase.refusal_latency.p99_ms = refusal_p99_ms;
        crate::report::types::RampStep {
            rate_per_sec: rate,
            phase,
            sustainable: refused == 0,
            violation: None,
        }
    }

    #[test]
    fn the_ingest_plot_shows_the_refusal_p99_of_the_steps_that_refused() {
        let ramp = RampReport {
            slo_p99_ms: 50.0,
            steps: vec![
                ramp_step(1000.0, 0, 0.0),
                ramp_step(2000.0, 400, 3.5),
                ramp_step(3000.0, 1200, 42.0),
            ],
            max_sustainable_rate_per_sec: Some(1000.0),
            max_sustainable_deliveries_per_sec: Some(1000.0),
        };
        let (name, pts) = refusal_p99_series(&ramp);
        assert_eq!(name, REFUSAL_P99);
        // The calm step refused nothing: no point, not a zero.
        assert_eq!(pts, [(2000.0, 3.5), (3000.0, 42.0)]);
        let path =
            std::env::temp_dir().join(format!("rtmc-plot-{}-ramp_ingest.svg", std::process::id()));
        ingest_plot(&path, &ramp).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            has_text(&svg, REFUSAL_P99),
            "legend lacks the refusal series"
        );
        assert!(has_text(&svg, "refusal p99 (ms)"), "no right axis label");
        // Its own colour, after the three rate series.
        assert!(svg.contains(&format!("stroke=\"{}\"", hex(COLORS[3]))));
        for name in ["offered", "acknowledged", "refused"] {
            assert!(has_text(&svg, name), "legend lacks {name}");
        }
    }

    #[test]
    fn a_time_without_data_breaks_the_line() {
        let pts = [(1.0, 5.0), (2.0, 5.0), (3.0, 6.0), (9.0, 7.0), (10.0, 7.0)];
        let runs = unbroken_runs(&pts);
        assert_eq!(runs, vec![pts[..3].to_vec(), pts[3..].to_vec()]);
        assert_eq!(unbroken_runs(&pts[..2]).len(), 1);
        assert!(unbroken_runs(&[]).is_empty());
    }

    #[test]
    fn shaded_windows_are_drawn_and_named() {
        let panel = Panel {
            title: "throughput".into(),
            y_desc: "per second".into(),
            log_y: false,
            series: vec![("acks/s".into(), vec![(0.0, 100.0), (30.0, 100.0)])],
        };
        let shades = [
            Shade {
                label: "rabbitmq sigkill".into(),
                start_secs: 5.0,
                end_secs: 10.0,
            },
            Shade {
                label: "consumer-redis latency".into(),
                start_secs: 15.0,
                end_secs: 20.0,
            },
        ];
        let svg = svg_of("shades", &[panel.clone(), panel], &shades);
        for (k, s) in shades.iter().enumerate() {
            assert!(has_text(&svg, &s.label), "legend lacks {}", s.label);
            let fill = format!("fill=\"{}\"", hex(SHADE_COLORS[k]));
            // A window and its legend swatch in each of the two panels.
            assert!(
                svg.matches(&fill).count() >= 4,
                "window {} not shaded",
                s.label
            );
        }
        assert!(
            svg.contains("opacity=\"0.25\""),
            "windows are not translucent"
        );
    }

    #[test]
    fn phases_get_panels_timed_from_their_publishing() {
        let intervals = vec![
            interval("rtmc", 12, 1_000),
            interval("rtmc", 13, 2_000),
            interval("rtmc-ack", 12, 500),
            interval("floor", 40, 3_000),
            interval("floor", 41, 3_000),
        ];
        let panels = over_time_panels(&intervals);
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(panels.len(), 2, "{titles:?}");
        assert!(titles[0].starts_with("floor") && titles[1].starts_with("rtmc"));
        for p in &panels {
            let xs: Vec<f64> = p.series[0].1.iter().map(|v| v.0).collect();
            assert_eq!(xs, vec![1.0, 2.0], "{}: x from its own start", p.title);
        }
        let svg = svg_of("phases", &panels, &[]);
        assert!(has_text(&svg, "seconds since publishing started"));
        assert!(has_text(
            &svg,
            "rtmc: publish→receive latency (1 s intervals)"
        ));
        assert!(has_text(
            &svg,
            "floor: publish→receive latency (1 s intervals)"
        ));
    }
}
