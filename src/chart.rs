//! SVG drawing shared by every chart, with plotters: the size, the legend box and its line
//! glyphs, and the smoke run's percentile spectrum (the HdrHistogram plot: latency against
//! 1/(1-percentile) on a log scale). The report's chart builds on it (`analytics::chart`).

use plotters::prelude::*;

use crate::histogram::LatencyHistogram;

pub const SIZE: (u32, u32) = (960, 480);
pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the chart: {e:?}")
}

/// The legend box, the same on every chart: upper left, on a light background.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
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
pub fn line_glyph(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
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
