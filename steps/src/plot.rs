//! PNG line charts for step reports (loss curves, scores with thresholds, features).
//!
//! Rendered with plotters' bitmap backend; text uses the DejaVu Sans font bundled in
//! `steps/assets/` (embedded at compile time), so plots look the same everywhere and
//! nothing depends on system fonts. Long series are decimated to per-bucket minimum and
//! maximum before drawing, which keeps spikes visible and plotting fast.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub use plotters::style::RGBColor;

/// Points per drawn line at most; longer series are decimated (min and max per bucket).
pub const MAX_POINTS: usize = 4000;

/// Colors that stay distinguishable on white, in the order lines get them.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line: `values[i]` is drawn at x = `x_start + i`.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub label: String,
    pub x_start: usize,
    pub values: &'a [f64],
    pub color: RGBColor,
}

/// A horizontal reference line (a threshold).
#[derive(Debug, Clone)]
pub struct Level {
    pub label: String,
    pub value: f64,
    pub color: RGBColor,
}

/// One chart of a figure.
#[derive(Debug, Clone, Default)]
pub struct Panel<'a> {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line<'a>>,
    pub levels: Vec<Level>,
    /// x ranges shaded in light red (true anomaly segments).
    pub shaded: Vec<Range<usize>>,
}

/// Draws `panels` stacked vertically into one PNG at `path`.
pub fn draw_panels(path: &Path, panels: &[Panel], width: u32, panel_height: u32) -> Result<()> {
    if panels.is_empty() {
        return Ok(());
    }
    register_font();
    let height = panel_height * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw `{}`: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        draw_panel(area, panel).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Keeps at most about `max_points` points of `values` (x = `x_start + i`): the minimum
/// and maximum of each bucket, in order. Non-finite values are dropped.
pub fn decimate(values: &[f64], x_start: usize, max_points: usize) -> Vec<(f64, f64)> {
    let finite = |(i, v): (usize, &f64)| v.is_finite().then_some(((x_start + i) as f64, *v));
    if values.len() <= max_points {
        return values.iter().enumerate().filter_map(finite).collect();
    }
    let n_buckets = (max_points / 2).max(1);
    let bucket = values.len().div_ceil(n_buckets);
    let mut out = Vec::with_capacity(2 * n_buckets);
    for (b, chunk) in values.chunks(bucket).enumerate() {
        let offset = x_start + b * bucket;
        let points: Vec<(f64, f64)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, v)| finite((offset - x_start + i, v)))
            .collect();
        let Some(min) = points.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)) else {
            continue;
        };
        let Some(max) = points.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            continue;
        };
        if min.0 <= max.0 {
            out.push(min);
            out.push(max);
        } else {
            out.push(max);
            out.push(min);
        }
    }
    out.dedup();
    out
}

/// One series of a grouped bar chart: `values[i]` is the bar of category `i` (NaN: no bar).
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    pub label: String,
    pub values: &'a [f64],
    pub color: RGBColor,
}

/// Draws grouped bars, one group per category and one bar per series, into a PNG at `path`.
pub fn draw_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Bars],
    size: (u32, u32),
) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw `{}`: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    draw_bar_chart(&root, title, y_label, categories, series).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

fn draw_bar_chart<'a>(
    area: &Area<'a>,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Bars],
) -> DrawResult<'a> {
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let n = categories.len().max(1);
    let rotate = n > 12;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(if rotate { 110 } else { 40 })
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..top * 1.12)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_label)
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // The category names, centred under their groups (plotters' own ticks fall on round
    // numbers, not on the groups).
    let style = ("sans-serif", 12).into_font();
    for (i, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        let text = if rotate {
            Text::new(
                name.clone(),
                (x - 6, y + 6),
                style.clone().transform(FontTransform::Rotate90),
            )
        } else {
            Text::new(
                name.clone(),
                (x, y + 6),
                TextStyle::from(style.clone()).pos(Pos::new(HPos::Center, VPos::Top)),
            )
        };
        area.draw(&text)?;
    }
    let width = 0.8 / series.len().max(1) as f64;
    for (s, bars) in series.iter().enumerate() {
        let color = bars.color;
        chart
            .draw_series(
                bars.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, &v)| {
                        let x0 = i as f64 + 0.1 + s as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled())
                    }),
            )?
            .label(bars.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The bundled font is a valid TrueType file; a failure would only lose text.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    std::result::Result<(), DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>;

fn draw_panel<'a>(area: &Area<'a>, panel: &Panel) -> DrawResult<'a> {
    let lines: Vec<(&Line, Vec<(f64, f64)>)> = panel
        .lines
        .iter()
        .map(|line| (line, decimate(line.values, line.x_start, MAX_POINTS)))
        .collect();
    let (x_range, y_range) = bounds(&lines, panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), y_range.clone())?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let shade = RGBColor(214, 39, 40).mix(0.18).filled();
    chart.draw_series(panel.shaded.iter().map(|r| {
        Rectangle::new(
            [(r.start as f64, y_range.start), (r.end as f64, y_range.end)],
            shade,
        )
    }))?;
    for (line, points) in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(1)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    for level in &panel.levels {
        let color = level.color;
        chart
            .draw_series(LineSeries::new(
                [(x_range.start, level.value), (x_range.end, level.value)],
                color.stroke_width(2),
            ))?
            .label(format!("{} = {:.4}", level.label, level.value))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    if !panel.lines.is_empty() || !panel.levels.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    Ok(())
}

/// The x and y extent of everything drawn, padded so nothing sits on the frame.
fn bounds(lines: &[(&Line, Vec<(f64, f64)>)], panel: &Panel) -> (Range<f64>, Range<f64>) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in lines.iter().flat_map(|(_, points)| points.iter().copied()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    for level in panel.levels.iter().filter(|l| l.value.is_finite()) {
        (y0, y1) = (y0.min(level.value), y1.max(level.value));
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = if y1 > y0 {
        (y1 - y0) * 0.05
    } else {
        y0.abs().max(1.0) * 0.05
    };
    (x0..x1, (y0 - pad)..(y1 + pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_are_kept_whole_minus_non_finite() {
        let points = decimate(&[1.0, f64::NAN, 3.0], 10, 100);
        assert_eq!(points, vec![(10.0, 1.0), (12.0, 3.0)]);
    }

    #[test]
    fn decimation_keeps_spikes_and_order() {
        let mut values = vec![0.0; 100_000];
        values[54_321] = 9.0;
        values[7] = -4.0;
        let points = decimate(&values, 0, 1000);
        assert!(points.len() <= 1000);
        assert!(points.contains(&(54_321.0, 9.0)));
        assert!(points.contains(&(7.0, -4.0)));
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn draws_a_png_with_text_lines_levels_and_shading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let values: Vec<f64> = (0..500).map(|i| (i as f64 / 20.0).sin()).collect();
        let panel = Panel {
            title: "score".into(),
            x_label: "row".into(),
            y_label: "value".into(),
            lines: vec![Line {
                label: "sin".into(),
                x_start: 100,
                values: &values,
                color: PALETTE[0],
            }],
            levels: vec![Level {
                label: "pot".into(),
                value: 0.8,
                color: PALETTE[3],
            }],
            shaded: vec![200..260, 400..420],
        };
        draw_panels(&path, &[panel.clone(), panel], 640, 240).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(
            bytes.len() > 5000,
            "suspiciously small PNG: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn draws_grouped_bars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bars.png");
        let categories: Vec<String> = ["machine-1-1", "machine-2-1", "mean"]
            .map(String::from)
            .to_vec();
        let (a, b) = ([0.9, 0.5, 0.7], [0.8, f64::NAN, 0.8]);
        let series = [
            Bars {
                label: "pot".into(),
                values: &a,
                color: PALETTE[3],
            },
            Bars {
                label: "epsilon".into(),
                values: &b,
                color: PALETTE[2],
            },
        ];
        draw_bars(&path, "F1", "F1", &categories, &series, (640, 360)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 3000, "{} bytes", bytes.len());
    }

    #[test]
    fn an_empty_figure_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.png");
        draw_panels(&path, &[], 100, 100).unwrap();
        assert!(!path.exists());
    }
}
