//! SVG charts, drawn with plotters: the report's P50/P95/P99 per bucket against the SLO line
//! with the replies over the SLO as bars, and the smoke run's percentile spectrum (the
//! HdrHistogram plot: latency against 1/(1-percentile) on a log scale).

use plotters::prelude::*;

use super::model::SlaReport;
use crate::histogram::LatencyHistogram;

const SIZE: (u32, u32) = (960, 480);
const SERIES: [(&str, RGBColor); 3] =
    [("p50", RGBColor(31, 119, 180)), ("p95", RGBColor(255, 127, 14)), ("p99", RGBColor(148, 103, 189))];

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the chart: {e:?}")
}

/// The legend box, the same on every chart: upper left, on a light background.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    mut labels: plotters::chart::SeriesLabelStyle<'a, '_, DB, CT>,
) -> Result<(), String> {
    labels
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// A legend entry drawn as a short line in `style`.
fn line_glyph(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

/// Runs of consecutive buckets that have a value, as line segments.
fn segments(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => run.push((i as f64 + 0.5, *v)),
            None if !run.is_empty() => out.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// The report chart as an SVG document.
pub fn report_svg(r: &SlaReport) -> Result<String, String> {
    let n = r.buckets.len().max(1) as f64;
    let pick = |f: fn(&super::model::ReplyStats) -> Option<f64>| -> Vec<Option<f64>> {
        r.buckets.iter().map(|b| f(&b.reply_ms)).collect()
    };
    let lines = [pick(|s| s.p50), pick(|s| s.p95), pick(|s| s.p99)];
    let ymax = lines.iter().flatten().flatten().fold(r.slo_ms * 1.2, |a, b| a.max(*b)) * 1.05;
    let bars_max = r.buckets.iter().map(|b| b.over_slo.count).max().unwrap_or(0).max(1) as f64 * 1.1;
    let labels: Vec<String> = r.buckets.iter().map(|b| b.start.format("%m-%d %H:%M").to_string()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title =
            format!("Reply time per bucket ({} to {})", r.window.since.format("%F %R"), r.window.until.format("%F %R"));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0f64..n, 0f64..ymax)
            .map_err(err)?
            .set_secondary_coord(0f64..n, 0f64..bars_max);
        let label_of = |x: &f64| labels.get(x.floor() as usize).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&label_of)
            .y_desc("reply time (ms)")
            .draw()
            .map_err(err)?;
        chart.configure_secondary_axes().y_desc("replies over the SLO").draw().map_err(err)?;
        let bar = RGBColor(214, 39, 40).mix(0.25).filled();
        chart
            .draw_secondary_series(
                r.buckets.iter().enumerate().filter(|(_, b)| b.over_slo.count > 0).map(|(i, b)| {
                    Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, b.over_slo.count as f64)], bar)
                }),
            )
            .map_err(err)?
            .label("over SLO (right axis)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], bar));
        for ((name, color), values) in SERIES.iter().zip(&lines) {
            let segs = segments(values);
            let mut first = true;
            for seg in segs {
                let s = chart.draw_series(LineSeries::new(seg, color.stroke_width(2))).map_err(err)?;
                if std::mem::take(&mut first) {
                    s.label(*name).legend(line_glyph(color.stroke_width(2)));
                }
            }
        }
        let slo = BLACK.stroke_width(1);
        chart
            .draw_series(LineSeries::new(vec![(0.0, r.slo_ms), (n, r.slo_ms)], slo))
            .map_err(err)?
            .label(format!("SLO {} ms", r.slo_ms))
            .legend(line_glyph(slo));
        legend(chart.configure_series_labels())?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The percentile spectrum of one histogram per phase: x is log10(1/(1-p)), 0 (p0) to 5
/// (p99.999), y the latency at that percentile in ms.
pub fn spectrum_svg(title: &str, phases: &[(&str, &LatencyHistogram)]) -> Result<String, String> {
    let phases: Vec<_> = phases.iter().filter(|(_, h)| !h.is_empty()).collect();
    let ymax = phases.iter().map(|(_, h)| h.max_ms()).fold(1.0, f64::max) * 1.05;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..5f64, 0f64..ymax)
            .map_err(err)?;
        let pct = |x: &f64| match x.round() as i32 {
            0 => "0%".to_string(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            4 => "99.99%".into(),
            _ => "99.999%".into(),
        };
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&pct)
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .draw()
            .map_err(err)?;
        for (i, (name, h)) in phases.iter().enumerate() {
            let color = palette[i % palette.len()];
            let points: Vec<(f64, f64)> = (0..=500)
                .map(|k| {
                    let x = k as f64 / 100.0;
                    let p = (1.0 - 10f64.powf(-x)) * 100.0;
                    (x, h.percentile_ms(p))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(line_glyph(color.stroke_width(2)));
        }
        legend(chart.configure_series_labels())?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
