//! An SVG chart of latency percentile curves, one line per series, in the style of
//! HdrHistogram's plotter: the x axis is `1/(1-p)` on a log scale, so 90%, 99%, 99.9%... are
//! evenly spaced and the tail gets as much room as the median.
//!
//! Hand-written (about 150 lines of text output) rather than a plotting crate: the chart is a
//! few polylines and labels, and plotters with its SVG backend would add a dependency tree to
//! the library for no capability used here.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{Hgrm, Histogram};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The x axis never goes past 99.9999%: beyond that the tail is a handful of values.
const MAX_DECADES: u32 = 6;
/// Colour-blind-safe palette (Okabe-Ito), repeated when there are more series.
const COLOURS: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

/// One curve: (quantile 0.0..=1.0, latency) points in increasing quantile order.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotSeries {
    /// Legend label.
    pub name: String,
    /// (quantile, value) points.
    pub points: Vec<(f64, f64)>,
}

impl PlotSeries {
    /// The percentile curve of a histogram, values divided by `value_unit_ratio`.
    pub fn from_histogram(name: &str, hist: &Histogram, value_unit_ratio: f64) -> Self {
        let points = hist
            .inner()
            .iter_quantiles(5)
            .map(|tick| (tick.quantile_iterated_to(), tick.value_iterated_to() as f64 / value_unit_ratio))
            .collect();
        Self { name: name.to_string(), points }
    }

    /// The percentile curve of a parsed `.hgrm` file, in the file's unit.
    pub fn from_hgrm(name: &str, hgrm: &Hgrm) -> Self {
        Self { name: name.to_string(), points: hgrm.rows.iter().map(|row| (row.quantile, row.value)).collect() }
    }
}

/// Writes a standalone SVG document plotting every series; `unit` labels the y axis (e.g. "ms").
pub fn write_percentile_plot(title: &str, unit: &str, series: &[PlotSeries], out: &mut impl Write) -> io::Result<()> {
    let mut svg = String::new();
    render(title, unit, series, &mut svg).map_err(io::Error::other)?;
    out.write_all(svg.as_bytes())
}

/// Maps data to the drawing area.
struct Axes {
    decades: u32,
    y_max: f64,
}

impl Axes {
    fn fit(series: &[PlotSeries]) -> Self {
        let points = series.iter().flat_map(|s| s.points.iter());
        let deepest_tail = points.clone().map(|&(q, _)| q).filter(|&q| q < 1.0).fold(0.0_f64, f64::max);
        let decades = (tail_position(deepest_tail).ceil() as u32).clamp(2, MAX_DECADES);
        let largest = points.map(|&(_, v)| v).fold(0.0_f64, f64::max);
        Self { decades, y_max: nice_ceiling(largest) }
    }

    fn x(&self, quantile: f64) -> f64 {
        let position = tail_position(quantile).min(f64::from(self.decades));
        LEFT + position / f64::from(self.decades) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let plot_height = HEIGHT - TOP - BOTTOM;
        HEIGHT - BOTTOM - (value / self.y_max).clamp(0.0, 1.0) * plot_height
    }
}

/// log10(1/(1-q)): 0 at 0%, 1 at 90%, 2 at 99%...; infinite at 100%, callers clamp.
fn tail_position(quantile: f64) -> f64 {
    let remaining = (1.0 - quantile).max(f64::MIN_POSITIVE);
    -remaining.log10()
}

/// The smallest of 1, 2, 2.5, 4, 5 or 8 times a power of ten at or above `value` (1.0 when there
/// is no data): fifths of it are round numbers, and the curves fill most of the height.
fn nice_ceiling(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let magnitude = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 4.0, 5.0, 8.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn render(title: &str, unit: &str, series: &[PlotSeries], svg: &mut String) -> std::fmt::Result {
    let axes = Axes::fit(series);
    let (plot_left, plot_right) = (LEFT, WIDTH - RIGHT);
    let (plot_top, plot_bottom) = (TOP, HEIGHT - BOTTOM);
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        (plot_left + plot_right) / 2.0,
        escape(title)
    )?;

    // Vertical grid at 0%, 90%, 99%, ... and horizontal grid at fifths of the value range.
    for decade in 0..=axes.decades {
        let quantile = 1.0 - 10_f64.powi(-(decade as i32));
        let x = axes.x(quantile);
        writeln!(svg, r##"<line x1="{x:.1}" y1="{plot_top}" x2="{x:.1}" y2="{plot_bottom}" stroke="#ddd"/>"##)?;
        writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            plot_bottom + 18.0,
            percent_label(decade)
        )?;
    }
    for step in 0..=5 {
        let value = axes.y_max * f64::from(step) / 5.0;
        let y = axes.y(value);
        writeln!(svg, r##"<line x1="{plot_left}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#ddd"/>"##)?;
        writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            plot_left - 6.0,
            y + 4.0,
            format_value(value)
        )?;
    }
    writeln!(
        svg,
        r##"<rect x="{plot_left}" y="{plot_top}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        plot_right - plot_left,
        plot_bottom - plot_top
    )?;
    writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (plot_left + plot_right) / 2.0,
        HEIGHT - 18.0
    )?;
    writeln!(
        svg,
        r#"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">latency ({})</text>"#,
        (plot_top + plot_bottom) / 2.0,
        escape(unit)
    )?;

    for (index, curve) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut path = String::new();
        for (point_index, &(quantile, value)) in curve.points.iter().enumerate() {
            let command = if point_index == 0 { 'M' } else { 'L' };
            write!(path, "{command}{:.1},{:.1} ", axes.x(quantile), axes.y(value))?;
        }
        if !path.is_empty() {
            writeln!(svg, r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, path.trim_end())?;
        }
        let legend_y = plot_top + 10.0 + 20.0 * index as f64;
        writeln!(
            svg,
            r#"<line x1="{}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{colour}" stroke-width="3"/>"#,
            plot_right + 12.0,
            plot_right + 36.0
        )?;
        writeln!(svg, r#"<text x="{}" y="{}">{}</text>"#, plot_right + 42.0, legend_y + 4.0, escape(&curve.name))?;
    }
    writeln!(svg, "</svg>")
}

/// "0%", "90%", "99%", "99.9%", ...
fn percent_label(decade: u32) -> String {
    match decade {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        _ => format!("99.{}%", "9".repeat(decade as usize - 2)),
    }
}

fn format_value(value: f64) -> String {
    if value >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::super::{parse_hgrm, write_hgrm, MICROS_PER_MILLI};
    use super::*;

    fn series(name: &str, scale: u64) -> PlotSeries {
        let mut h = Histogram::new();
        for v in 1..=10_000 {
            h.record(v * scale);
        }
        PlotSeries::from_histogram(name, &h, MICROS_PER_MILLI)
    }

    #[test]
    fn draws_one_path_and_legend_entry_per_series() {
        let mut out = Vec::new();
        let all = [series("direct", 1), series("ferrule <fast>", 2)];
        write_percentile_plot("GET p=1", "ms", &all, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<path ").count(), 2);
        assert!(svg.contains("ferrule &lt;fast&gt;"));
        assert!(svg.contains(">99.99%<"));
        assert!(svg.contains(">latency (ms)<"));
        // 20 ms is the largest value, which is already a nice ceiling.
        assert!(svg.contains(">20.0<"), "{svg}");
    }

    #[test]
    fn x_axis_is_logarithmic_in_the_tail() {
        let axes = Axes { decades: 3, y_max: 1.0 };
        let span = WIDTH - LEFT - RIGHT;
        assert!((axes.x(0.0) - LEFT).abs() < 1e-9);
        assert!((axes.x(0.9) - (LEFT + span / 3.0)).abs() < 1e-6);
        assert!((axes.x(0.99) - (LEFT + 2.0 * span / 3.0)).abs() < 1e-6);
        // 100% is drawn at the right edge rather than at infinity.
        assert!((axes.x(1.0) - (LEFT + span)).abs() < 1e-6);
    }

    #[test]
    fn hgrm_series_match_histogram_series() {
        let mut h = Histogram::new();
        for v in [10, 20, 30, 4000] {
            h.record(v);
        }
        let mut text = Vec::new();
        write_hgrm(&h, MICROS_PER_MILLI, &mut text).unwrap();
        let parsed = parse_hgrm(std::str::from_utf8(&text).unwrap()).unwrap();
        let from_file = PlotSeries::from_hgrm("x", &parsed);
        let direct = PlotSeries::from_histogram("x", &h, MICROS_PER_MILLI);
        assert_eq!(from_file.points.len(), direct.points.len());
    }

    #[test]
    fn helpers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 4.0);
        assert_eq!(nice_ceiling(20.6), 25.0);
        assert_eq!(nice_ceiling(0.011), 0.02);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(percent_label(2), "99%");
        assert_eq!(percent_label(4), "99.99%");
        let empty: [PlotSeries; 0] = [];
        let mut out = Vec::new();
        write_percentile_plot("none", "ms", &empty, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("</svg>"));
    }
}
