//! The report's SVG chart, drawn with plotters: P50/P95/P99 per bucket against the SLO line
//! with the replies over the SLO as bars (the shared drawing is `crate::chart`).

use plotters::prelude::*;

use super::model::SlaReport;
use crate::chart::{SIZE, err, legend, line_glyph};

const SERIES: [(&str, RGBColor); 3] =
    [("p50", RGBColor(31, 119, 180)), ("p95", RGBColor(255, 127, 14)), ("p99", RGBColor(148, 103, 189))];

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
