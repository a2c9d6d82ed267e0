//! A line chart drawn as inline SVG in the page's own colours (so it follows light, dark and
//! high contrast), each series told apart by its dash as well as its colour, a dashed limit line
//! (the SLO), and a name for screen readers. With nothing to draw it says "no data".

use std::fmt::Write;

use super::esc;

/// One line: its name (in the legend) and its points `(x, y)`.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

pub struct LineChart<'a> {
    /// The chart's accessible name: what it shows.
    pub label: &'a str,
    pub y_unit: &'a str,
    pub series: Vec<Series<'a>>,
    /// A horizontal limit line and its name.
    pub limit: Option<(f64, &'a str)>,
    /// Labels along x at these x values.
    pub x_ticks: Vec<(f64, String)>,
    /// What to say when there is nothing to draw.
    pub empty: &'a str,
}

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Colour and dash per series: told apart without colour too.
const STYLES: [(&str, &str); 4] = [("--s1", ""), ("--s2", "6 3"), ("--s3", "2 3"), ("--s4", "10 3 2 3")];

pub fn line_chart(c: &LineChart<'_>) -> String {
    let points = c.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    let mut any = false;
    for (x, y) in points {
        any = true;
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    if !any {
        return format!("<p class=\"nodata\">no data: {}</p>", esc(c.empty));
    }
    if let Some((l, _)) = c.limit {
        y1 = y1.max(l);
    }
    for (x, _) in &c.x_ticks {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
    }
    let y1 = nice_ceiling(y1 * 1.08);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (1.0 - y / y1) * (H - TOP - BOTTOM);
    let mut s = format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" focusable=\"false\" \
         style=\"font-size:11px\">",
        esc(c.label)
    );
    for i in 0..=4 {
        let v = y1 * f64::from(i) / 4.0;
        let y = py(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" style=\"stroke:var(--line);stroke-width:0.5\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" style=\"fill:var(--fg)\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            esc(&tick(v, c.y_unit))
        );
    }
    for (x, label) in &c.x_ticks {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\" style=\"fill:var(--fg)\">{}</text>",
            px(*x),
            H - 8.0,
            // The last label ends at the edge, the first starts at the axis.
            if (*x - x1).abs() < f64::EPSILON {
                "end"
            } else if (*x - x0).abs() < f64::EPSILON {
                "start"
            } else {
                "middle"
            },
            esc(label)
        );
    }
    if let Some((l, _)) = c.limit {
        let y = py(l);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" style=\"stroke:var(--bad);stroke-width:1.5;stroke-dasharray:8 4\"/>",
            W - RIGHT
        );
    }
    for (i, series) in c.series.iter().enumerate() {
        let (colour, dash) = STYLES[i % STYLES.len()];
        let mut d = String::new();
        for (x, y) in series.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
            let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, px(*x), py(*y));
        }
        let _ = write!(
            s,
            "<path d=\"{d}\" style=\"fill:none;stroke:var({colour});stroke-width:2;stroke-dasharray:{}\"/>",
            if dash.is_empty() { "none" } else { dash }
        );
        if series.points.len() == 1 {
            let (x, y) = series.points[0];
            let _ = write!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" style=\"fill:var({colour})\"/>", px(x), py(y));
        }
    }
    s.push_str("</svg><figcaption>");
    for (i, series) in c.series.iter().enumerate() {
        let (colour, dash) = STYLES[i % STYLES.len()];
        let _ = write!(
            s,
            "<span class=\"key\"><svg width=\"24\" height=\"8\" aria-hidden=\"true\"><line x1=\"0\" x2=\"24\" y1=\"4\" y2=\"4\" \
             style=\"stroke:var({colour});stroke-width:2;stroke-dasharray:{}\"/></svg> {}</span> ",
            if dash.is_empty() { "none" } else { dash },
            esc(series.name)
        );
    }
    if let Some((_, name)) = c.limit {
        let _ = write!(
            s,
            "<span class=\"key\"><svg width=\"24\" height=\"8\" aria-hidden=\"true\"><line x1=\"0\" x2=\"24\" y1=\"4\" y2=\"4\" \
             style=\"stroke:var(--bad);stroke-width:1.5;stroke-dasharray:8 4\"/></svg> {}</span>",
            esc(name)
        );
    }
    s.push_str("</figcaption></figure>");
    s
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

/// A tick label: whole numbers, or one decimal under 10; milliseconds from a second up as seconds.
fn tick(v: f64, unit: &str) -> String {
    let (v, unit) = if unit == "ms" && v >= 1000.0 { (v / 1000.0, "s") } else { (v, unit) };
    let n = if v >= 10.0 || v == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    if unit.is_empty() { n } else { format!("{n} {unit}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_draw_says_so_and_a_chart_has_a_name() {
        let empty = LineChart {
            label: "l",
            y_unit: "ms",
            series: vec![Series { name: "p95", points: vec![] }],
            limit: Some((5000.0, "SLO")),
            x_ticks: vec![],
            empty: "no replies",
        };
        assert_eq!(line_chart(&empty), "<p class=\"nodata\">no data: no replies</p>");
        let one = LineChart { series: vec![Series { name: "<p95>", points: vec![(0.0, 120.0)] }], ..empty };
        let svg = line_chart(&one);
        assert!(
            svg.contains("role=\"img\" aria-label=\"l\"") && svg.contains("&lt;p95&gt;") && svg.contains("<circle")
        );
        assert_eq!((nice_ceiling(5400.0), nice_ceiling(0.0), nice_ceiling(1.0)), (10000.0, 1.0, 1.0));
        assert_eq!(
            (tick(2500.0, "ms"), tick(250.0, "ms"), tick(0.5, "")),
            ("2.5 s".into(), "250 ms".into(), "0.5".into())
        );
    }
}
