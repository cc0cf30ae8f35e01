//! The SVG plot of a sweep: time per call (log scale) and speed-up against the number of
//! workers (ranks × threads per rank), one line per model size and thread count per rank.

use super::sweep::Point;
use anyhow::Result;
use plotters::prelude::*;

/// Colours of the lines, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A line of the plot: its label and its points as (workers, time ms, speed-up).
type Line = (String, Vec<(f64, f64, f64)>);

/// The lines of the plot, one per model and thread count.
fn series(points: &[Point]) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for p in points {
        let label = format!(
            "{} ({}), {} thread{}",
            p.model,
            p.report
                .layers
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("-"),
            p.combo.threads,
            if p.combo.threads == 1 { "" } else { "s" }
        );
        let workers = (p.combo.ranks * p.combo.threads) as f64;
        let at = (workers, p.report.median_ms, p.speedup);
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(at),
            None => out.push((label, vec![at])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The legend of `chart`'s labelled series, boxed, at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the sweep plot: {e}")
}

/// The plot as SVG text.
pub fn sweep_svg(points: &[Point]) -> Result<String> {
    let lines = series(points);
    let most = points
        .iter()
        .map(|p| p.combo.ranks * p.combo.threads)
        .max()
        .unwrap_or(1)
        .max(2);
    let x_range = 0.8..most as f64 + 0.2;
    let times = points.iter().map(|p| p.report.median_ms);
    let (lo, hi) = times.fold((f64::INFINITY, 0.0f64), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (0.001, 1.0)
    };
    let top = points
        .iter()
        .map(|p| p.speedup)
        .filter(|s| s.is_finite())
        .fold(most as f64, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(550);
        let mut time = ChartBuilder::on(&left)
            .caption("time per call (ms, log scale)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), (lo..hi).log_scale())
            .map_err(plot_error)?;
        time.configure_mesh()
            .x_desc("workers = MPI ranks x threads per rank")
            .y_desc("ms")
            .x_labels(most + 1)
            .draw()
            .map_err(plot_error)?;
        let mut speed = ChartBuilder::on(&right)
            .caption("speed-up over each model's first run", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range, 0.0..top)
            .map_err(plot_error)?;
        speed
            .configure_mesh()
            .x_desc("workers = MPI ranks x threads per rank")
            .y_desc("speed-up")
            .x_labels(most + 1)
            .draw()
            .map_err(plot_error)?;
        speed
            .draw_series(LineSeries::new(
                (1..=most).map(|r| (r as f64, r as f64)),
                BLACK.mix(0.3),
            ))
            .map_err(plot_error)?
            .label("ideal (linear in workers, one per core)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
        for (i, (label, pts)) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            time.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color))
                .map_err(plot_error)?;
            time.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
            )
            .map_err(plot_error)?;
            speed
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.2)), color))
                .map_err(plot_error)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            speed
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.0, p.2), 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
        draw_legend(&mut speed, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A line of the plan's plot: its label and its points as (ranks, ms per batch).
pub type PlanLine = (String, Vec<(f64, f64)>);

/// The plan's plot as SVG text: predicted time per batch against ranks (both log scale).
pub fn plan_svg(title: &str, lines: &[PlanLine]) -> Result<String> {
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let (x_hi, lo, hi) = all.fold((1.0f64, f64::INFINITY, 0.0f64), |(x, lo, hi), p| {
        (x.max(p.0), lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (0.001, 1.0)
    };
    let x_lo = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(x_hi, f64::min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo / 1.2..x_hi * 1.2).log_scale(), (lo..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("ranks (one per node)")
            .y_desc("predicted ms per batch")
            .draw()
            .map_err(plot_error)?;
        for (i, (label, pts)) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color))
                .map_err(plot_error)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_error)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
