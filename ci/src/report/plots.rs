//! `rounds.svg`: every round's value per metric in run order, A and B,
//! with the floor (the control) hollow.

use super::*;
use plotters::prelude::*;

pub(super) const BLUE: RGBColor = RGBColor(31, 119, 180);
pub(super) const ORANGE: RGBColor = RGBColor(255, 127, 14);

/// One panel per metric: x = run order, y = value; A blue, B orange; rtmc
/// filled, the floor (control) hollow. The panel after the metrics is the
/// legend.
pub fn rounds_plot(path: &Path, r: &GateReport) -> PlotResult {
    let root = SVGBackend::new(path, (1750, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "latency gate: every round (A = baseline blue, B = candidate orange; filled = rtmc, hollow = floor)",
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((2, 5));
    for (panel, metric) in panels.iter().zip(Metric::ALL) {
        metric_panel(panel, r, metric)?;
    }
    if let Some(panel) = panels.get(Metric::ALL.len()) {
        legend_panel(panel, r)?;
    }
    root.present()?;
    Ok(())
}

pub(super) type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

pub(super) fn metric_panel(panel: &Panel, r: &GateReport, metric: Metric) -> PlotResult {
    let points = |side: Side, floor: bool| -> Vec<(f64, f64)> {
        r.rounds
            .iter()
            .filter(|x| x.side == side)
            .filter_map(|x| {
                let v = if floor {
                    x.control(metric)?
                } else {
                    x.value(metric)
                };
                Some(((x.order + 1) as f64, v))
            })
            .collect()
    };
    let y_max = r
        .rounds
        .iter()
        .flat_map(|x| std::iter::once(x.value(metric)).chain(x.control(metric)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let n = r.rounds.len().max(1) as f64;
    let mut chart = ChartBuilder::on(panel)
        .caption(metric.label(), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(25)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_labels(r.rounds.len().max(1))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (side, color) in [(Side::Baseline, BLUE), (Side::Candidate, ORANGE)] {
        let rtmc = points(side, false);
        chart.draw_series(rtmc.into_iter().map(|p| Circle::new(p, 5, color.filled())))?;
        let floor = points(side, true);
        chart.draw_series(
            floor
                .into_iter()
                .map(|p| Circle::new(p, 5, color.stroke_width(2))),
        )?;
    }
    Ok(())
}

pub(super) fn legend_panel(panel: &Panel, r: &GateReport) -> PlotResult {
    let lines = [
        format!("x: run order ({})", order_letters(r)),
        "filled: rtmc   hollow: Redis floor (the control)".into(),
        "blue: A = baseline   orange: B = candidate".into(),
        headline(r).chars().take(60).collect(),
    ];
    for (k, line) in lines.iter().enumerate() {
        panel.draw(&Text::new(
            line.clone(),
            (20, 60 + 28 * k as i32),
            ("sans-serif", 15),
        ))?;
    }
    Ok(())
}
