//! PNG line charts (training curves) without a plotting library.
//!
//! A small software rasterizer draws grid, axes, polylines and a legend into an RGB buffer; text
//! comes from an embedded 5×7 bitmap font (with two descender rows), so the only dependency is
//! the `png` encoder. Output is deterministic: the same chart always gives the same bytes.

use std::borrow::Cow;
use std::path::Path;

/// One curve of a [`Chart`].
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Name in the legend; a series with an empty label is left out of the legend.
    pub label: &'a str,
    /// `(x, y)` points, joined in the given order. Points with a NaN or infinite coordinate are
    /// skipped and break the line there, so a diverged run shows a gap, not a made-up segment.
    pub points: &'a [(f64, f64)],
    /// Line color (RGB).
    pub color: [u8; 3],
}

impl<'a> Series<'a> {
    /// A curve named `label` through `points`, drawn in `color`.
    pub fn new(label: &'a str, points: &'a [(f64, f64)], color: [u8; 3]) -> Series<'a> {
        Series {
            label,
            points,
            color,
        }
    }
}

/// Line colours of the run plots, in series order (matplotlib's first five).
pub const PALETTE: [[u8; 3]; 5] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
];

/// The colour of reference curves in the run plots (ANP, ITOP).
pub const GREY: [u8; 3] = [127, 127, 127];

/// A line chart: title, axis labels, curves and the image size in pixels.
///
/// The x axis spans the finite data from its minimum to its maximum, the y axis the finite data
/// plus a 5 % margin above and below; a range of a single value is widened around it. The
/// legend goes to the corner of the plot where it hides the least of the curves, and is left
/// out when it would cover more than 40 % of the plot. Text too long for the image is cut, ending
/// in "...".
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Centered above the plot; may be empty.
    pub title: &'a str,
    /// Under the x axis; may be empty.
    pub x_label: &'a str,
    /// Left of the y axis, reading upwards; may be empty.
    pub y_label: &'a str,
    /// The curves, drawn in order (later ones on top).
    pub series: Vec<Series<'a>>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl<'a> Chart<'a> {
    /// A chart of the size every run plot has (800 × 500 pixels).
    pub fn run_plot(
        title: &'a str,
        x_label: &'a str,
        y_label: &'a str,
        series: Vec<Series<'a>>,
    ) -> Chart<'a> {
        Chart {
            title,
            x_label,
            y_label,
            series,
            width: 800,
            height: 500,
        }
    }

    /// Renders the chart and encodes it as an 8-bit RGB PNG.
    ///
    /// Fails if the image is too small to hold the labels and a usable plot area, or larger
    /// than [`MAX_SIDE`] pixels on a side.
    pub fn render_png(&self) -> Result<Vec<u8>, PlotError> {
        self.render()?.encode()
    }

    /// Renders the chart and writes it to `path` as a PNG.
    ///
    /// Written atomically ([`cht_sparse::io::write_atomic`]): a reader never sees a half-written
    /// image, and on error the temporary file is removed.
    pub fn save_png(&self, path: &Path) -> Result<(), PlotError> {
        let bytes = self.render_png()?;
        cht_sparse::io::write_atomic(path, "plot", &bytes)?;
        Ok(())
    }
}

/// Why a chart could not be rendered or saved.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The image cannot hold the title, labels and a plot area of a useful size.
    #[error(
        "a {width}x{height} px chart is too small for its labels: it needs at least \
         {min_width}x{min_height} px"
    )]
    TooSmall {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Smallest width that fits this chart's labels.
        min_width: u32,
        /// Smallest height that fits this chart's labels.
        min_height: u32,
    },
    /// A side is over [`MAX_SIDE`] pixels (a guard against absurd allocations).
    #[error("a {width}x{height} px chart is too large: at most {MAX_SIDE} px a side")]
    TooLarge {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed")]
    Encode(#[from] png::EncodingError),
    /// Writing the file failed.
    /// The file cannot be written (see [`cht_sparse::io::write_atomic`]).
    #[error(transparent)]
    Io(#[from] cht_sparse::io::FileError),
}

/// The largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 8192;

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [255, 255, 255];
const TEXT: Rgb = [34, 34, 34];
const AXIS: Rgb = [85, 85, 85];
const GRID: Rgb = [229, 229, 229];
const LEGEND_BORDER: Rgb = [190, 190, 190];

/// Font scale: 5×7 glyphs become 10×14 px, readable at 100 % zoom without looking blocky.
const SCALE: i64 = 2;
/// Horizontal advance per character: 5 glyph columns plus one blank column.
const ADVANCE: i64 = 6 * SCALE;
/// Height of capitals and digits.
const CAP_H: i64 = 7 * SCALE;
/// Height of a text line including descenders.
const LINE_H: i64 = 9 * SCALE;

/// Blank space around the whole image.
const MARGIN: i64 = 14;
/// Space between a label and what it labels.
const GAP: i64 = 8;
/// Length of the tick marks outside the frame.
const TICK_LEN: i64 = 5;
/// Data never touches the frame: the first and last x sit this many pixels inside it.
const INSET: i64 = 4;
/// The plot area must be at least this many pixels on each side.
const MIN_PLOT: i64 = 80;
/// Legend swatch length.
const SWATCH: i64 = 24;

/// Where everything goes: the plot frame and both axes with their ticks.
#[derive(Debug)]
struct Layout {
    /// The plot frame (inclusive pixel coordinates); curves are clipped to its inside.
    frame: Rect,
    x: Axis,
    y: Axis,
}

/// An inclusive pixel rectangle.
#[derive(Debug, Clone, Copy)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.left as f64
            && x <= self.right as f64
            && y >= self.top as f64
            && y <= self.bottom as f64
    }
}

/// A linear data-to-pixel mapping with its ticks.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    /// Pixel coordinates of `lo` and `hi` (for y, `px_lo` is below `px_hi`).
    px_lo: f64,
    px_hi: f64,
    step: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

impl Axis {
    /// An axis over `[lo, hi]` with nice ticks; the pixel span is set once the layout is known.
    fn new(lo: f64, hi: f64) -> Self {
        let (step, ticks) = nice_ticks(lo, hi);
        let labels = format_ticks(&ticks, step);
        Axis {
            lo,
            hi,
            px_lo: 0.0,
            px_hi: 1.0,
            step,
            ticks,
            labels,
        }
    }

    fn to_px(&self, v: f64) -> f64 {
        // Halving first keeps the arithmetic finite for ranges near ±f64::MAX.
        let t = (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0);
        self.px_lo + t * (self.px_hi - self.px_lo)
    }

    /// Pixel distance between neighbouring ticks (infinite with fewer than two ticks).
    fn tick_spacing(&self) -> f64 {
        match self.ticks.as_slice() {
            [a, b, ..] => (self.to_px(*b) - self.to_px(*a)).abs(),
            _ => f64::INFINITY,
        }
    }

    /// Switches to coarser steps until neighbouring ticks are at least `needed(labels)` pixels
    /// apart, so that tick labels never overlap.
    fn coarsen(&mut self, needed: impl Fn(&[String]) -> f64) {
        // Each round at least doubles the step, so this ends long before 64 rounds.
        for _ in 0..64 {
            if self.ticks.len() <= 2 || self.tick_spacing() >= needed(&self.labels) {
                return;
            }
            self.step = next_step(self.step);
            self.ticks = ticks_for(self.lo, self.hi, self.step);
            self.labels = format_ticks(&self.ticks, self.step);
        }
    }
}

impl Chart<'_> {
    fn render(&self) -> Result<Canvas, PlotError> {
        let layout = self.layout()?;
        let frame = layout.frame;
        let mut canvas = Canvas::new(self.width, self.height);

        // Grid first so that curves and the frame are drawn over it.
        for &t in &layout.x.ticks {
            let x = layout.x.to_px(t).round() as i64;
            canvas.vline(x, frame.top + 1, frame.bottom - 1, GRID);
        }
        for &t in &layout.y.ticks {
            let y = layout.y.to_px(t).round() as i64;
            canvas.hline(frame.left + 1, frame.right - 1, y, GRID);
        }

        let inside = Rect {
            left: frame.left + 1,
            top: frame.top + 1,
            right: frame.right - 1,
            bottom: frame.bottom - 1,
        };
        for s in &self.series {
            for run in runs(s.points) {
                let px: Vec<(f64, f64)> = run
                    .iter()
                    .map(|&(x, y)| (layout.x.to_px(x), layout.y.to_px(y)))
                    .collect();
                if let [(x, y)] = px.as_slice() {
                    // A lone point has no segment to draw: mark it so it stays visible.
                    let (x, y) = (x.round() as i64, y.round() as i64);
                    for dy in -1..=2 {
                        for dx in -1..=2 {
                            canvas.put_clipped(x + dx, y + dy, s.color, inside);
                        }
                    }
                }
                for pair in px.windows(2) {
                    canvas.line(pair[0], pair[1], s.color, inside);
                }
            }
        }

        canvas.outline(frame, AXIS);
        self.draw_ticks(&mut canvas, &layout);
        self.draw_legend(&mut canvas, &layout);
        self.draw_titles(&mut canvas, &layout);
        Ok(canvas)
    }

    fn draw_ticks(&self, canvas: &mut Canvas, layout: &Layout) {
        let frame = layout.frame;
        for (&t, label) in layout.x.ticks.iter().zip(&layout.x.labels) {
            let x = layout.x.to_px(t).round() as i64;
            canvas.vline(x, frame.bottom + 1, frame.bottom + TICK_LEN, AXIS);
            let top = frame.bottom + TICK_LEN + GAP / 2;
            canvas.text(x - text_width(label) / 2, top, label, TEXT);
        }
        for (&t, label) in layout.y.ticks.iter().zip(&layout.y.labels) {
            let y = layout.y.to_px(t).round() as i64;
            canvas.hline(frame.left - TICK_LEN, frame.left - 1, y, AXIS);
            let right = frame.left - TICK_LEN - GAP / 2;
            canvas.text(right - text_width(label), y - CAP_H / 2, label, TEXT);
        }
    }

    fn draw_legend(&self, canvas: &mut Canvas, layout: &Layout) {
        let entries: Vec<&Series> = self.series.iter().filter(|s| !s.label.is_empty()).collect();
        if entries.is_empty() {
            return;
        }
        let (pad, off) = (8, 10);
        let frame = layout.frame;
        // Long labels are cut so that the legend never spills out of the plot.
        let room = frame.right - frame.left - 2 * off - (pad + SWATCH + GAP + pad + 2);
        let labels: Vec<Cow<str>> = entries.iter().map(|s| fit_text(s.label, room)).collect();
        let text_w = labels.iter().map(|l| text_width(l)).max().unwrap_or(0);
        let w = pad + SWATCH + GAP + text_w + pad + 2;
        let rows = entries.len() as i64;
        let h = pad + rows * LINE_H + (rows - 1) * 6 + pad - 2;
        let (frame_w, frame_h) = (frame.right - frame.left, frame.bottom - frame.top);
        // In a small chart a legend would hide most of the data or show only "...": the curves
        // are worth more then.
        if room < text_width("abc...") || w * h * 5 > frame_w * frame_h * 2 {
            return;
        }
        let (left, right) = (frame.left + off, frame.right - off - w);
        let (top, bottom) = (frame.top + off, frame.bottom - off - h);
        // Preference order on ties: top right, top left, bottom right, bottom left.
        let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
        let samples = self.curve_samples(layout);
        let (x0, y0) = corners
            .into_iter()
            .min_by_key(|&(x, y)| {
                let r = Rect {
                    left: x - 2,
                    top: y - 2,
                    right: x + w + 2,
                    bottom: y + h + 2,
                };
                samples
                    .iter()
                    .filter(|&&(sx, sy)| r.contains(sx, sy))
                    .count()
            })
            .unwrap_or((right, top));
        let rect = Rect {
            left: x0,
            top: y0,
            right: x0 + w,
            bottom: y0 + h,
        };
        canvas.fill(rect, BACKGROUND);
        canvas.outline(rect, LEGEND_BORDER);
        for (i, (s, label)) in entries.iter().zip(&labels).enumerate() {
            let row_top = y0 + pad + i as i64 * (LINE_H + 6);
            // Center the swatch on the capitals, where the eye reads the label.
            let sy = (row_top + CAP_H / 2 - 1) as f64;
            let sx = (x0 + pad) as f64;
            canvas.line((sx, sy), (sx + SWATCH as f64, sy), s.color, rect);
            canvas.text(x0 + pad + SWATCH + GAP, row_top, label, TEXT);
        }
    }

    /// Points along every curve, about two pixels apart, to find where the legend hides least.
    fn curve_samples(&self, layout: &Layout) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for s in &self.series {
            for run in runs(s.points) {
                let px: Vec<(f64, f64)> = run
                    .iter()
                    .map(|&(x, y)| (layout.x.to_px(x), layout.y.to_px(y)))
                    .collect();
                out.extend(px.first());
                for pair in px.windows(2) {
                    let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                    let len = (bx - ax).hypot(by - ay);
                    // Points lie inside the frame, so `n` is bounded by its diagonal.
                    let n = (len / 2.0).ceil().clamp(1.0, 100_000.0) as usize;
                    out.extend((1..=n).map(|i| {
                        let t = i as f64 / n as f64;
                        (ax + t * (bx - ax), ay + t * (by - ay))
                    }));
                }
            }
        }
        out
    }

    fn draw_titles(&self, canvas: &mut Canvas, layout: &Layout) {
        let frame = layout.frame;
        if !self.title.is_empty() {
            // One pixel more for the bold face below.
            let title = fit_text(self.title, self.width as i64 - 2 * MARGIN - 1);
            let w = text_width(&title) + 1;
            let center = (frame.left + frame.right) / 2;
            // Center over the plot, but stay inside the image when the title is wide.
            let x = (center - w / 2)
                .min(self.width as i64 - MARGIN - w)
                .max(MARGIN);
            // Drawing twice, one pixel apart, gives a bold face without a second font.
            canvas.text(x, MARGIN, &title, TEXT);
            canvas.text(x + 1, MARGIN, &title, TEXT);
        }
        if !self.x_label.is_empty() {
            let label = fit_text(self.x_label, frame.right - frame.left + 1);
            let x = (frame.left + frame.right) / 2 - text_width(&label) / 2;
            let y = frame.bottom + TICK_LEN + GAP / 2 + CAP_H + GAP;
            canvas.text(x, y, &label, TEXT);
        }
        if !self.y_label.is_empty() {
            let label = fit_text(self.y_label, frame.bottom - frame.top + 1);
            let y = (frame.top + frame.bottom) / 2 + text_width(&label) / 2;
            canvas.text_up(MARGIN, y, &label, TEXT);
        }
    }

    fn layout(&self) -> Result<Layout, PlotError> {
        let (width, height) = (self.width, self.height);
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(PlotError::TooLarge { width, height });
        }
        let (x_lo, x_hi) = widen_degenerate(self.bounds(|p| p.0));
        let (y_lo, y_hi) = with_margin(widen_degenerate(self.bounds(|p| p.1)));
        let mut x = Axis::new(x_lo, x_hi);
        let mut y = Axis::new(y_lo, y_hi);

        let top = MARGIN
            + if self.title.is_empty() {
                0
            } else {
                LINE_H + GAP + 4
            };
        let x_label_h = if self.x_label.is_empty() {
            0
        } else {
            GAP + LINE_H
        };
        let bottom = TICK_LEN + GAP / 2 + CAP_H + x_label_h + MARGIN;
        let y_label_w = if self.y_label.is_empty() {
            0
        } else {
            LINE_H + GAP
        };
        // The right margin leaves room for half of the last x label, centered on its tick.
        let widest_x = x.labels.iter().map(|l| text_width(l)).max().unwrap_or(0);
        let right = MARGIN + widest_x / 2;
        let min_height = top + bottom + MIN_PLOT;

        // Vertical space does not depend on the labels' widths, so y ticks can be settled first
        // and then size the left margin.
        let frame_top = top;
        let frame_bottom = height as i64 - 1 - bottom;
        y.px_lo = (frame_bottom - INSET) as f64;
        y.px_hi = (frame_top + INSET) as f64;
        // Too short a chart is an error below; its minimum width then comes from the finest
        // ticks, which is conservative since coarser ticks never have wider labels.
        if height as i64 >= min_height {
            y.coarsen(|_| (CAP_H + 6) as f64);
        }
        let widest_y = y.labels.iter().map(|l| text_width(l)).max().unwrap_or(0);
        let left = MARGIN + y_label_w + widest_y + GAP / 2 + TICK_LEN;
        let min_width = left + right + MIN_PLOT;
        if (width as i64) < min_width || (height as i64) < min_height {
            return Err(PlotError::TooSmall {
                width,
                height,
                min_width: min_width as u32,
                min_height: min_height as u32,
            });
        }

        let frame = Rect {
            left,
            top: frame_top,
            right: width as i64 - 1 - right,
            bottom: frame_bottom,
        };
        x.px_lo = (frame.left + INSET) as f64;
        x.px_hi = (frame.right - INSET) as f64;
        x.coarsen(|labels| {
            let widest = labels.iter().map(|l| text_width(l)).max().unwrap_or(0);
            (widest + ADVANCE) as f64
        });
        Ok(Layout { frame, x, y })
    }

    /// The finite extent of one coordinate over all series, `None` without finite points.
    fn bounds(&self, coord: impl Fn(&(f64, f64)) -> f64) -> Option<(f64, f64)> {
        self.series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
            })
            .map(coord)
            .fold(None, |acc, v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
            })
    }
}

/// The maximal runs of consecutive finite points: each run is drawn as one polyline.
fn runs(points: &[(f64, f64)]) -> impl Iterator<Item = &[(f64, f64)]> {
    points
        .split(|p| !(p.0.is_finite() && p.1.is_finite()))
        .filter(|run| !run.is_empty())
}

/// A usable range from data bounds: `[0, 1]` without data, and a range of (nearly) one value
/// widened around it, since a zero-width range has no scale to draw.
fn widen_degenerate(bounds: Option<(f64, f64)>) -> (f64, f64) {
    let Some((lo, hi)) = bounds else {
        return (0.0, 1.0);
    };
    let magnitude = lo.abs().max(hi.abs());
    // Under a millionth of the magnitude, tick labels would need more digits than fit, and
    // such a curve is flat to the eye anyway.
    if hi / 2.0 - lo / 2.0 > magnitude * 0.5e-6 {
        return (lo, hi);
    }
    let center = lo / 2.0 + hi / 2.0;
    let mut half = center.abs() * 0.1;
    if !half.is_normal() {
        // Zero (or subnormal) values: any unit range shows them.
        half = 1.0;
    }
    (
        (center - half).max(-f64::MAX),
        (center + half).min(f64::MAX),
    )
}

/// Adds 5 % of the span on both sides so curves do not run along the frame.
fn with_margin((lo, hi): (f64, f64)) -> (f64, f64) {
    let m = (hi / 2.0 - lo / 2.0) * 0.1;
    ((lo - m).max(-f64::MAX), (hi + m).min(f64::MAX))
}

/// "Nice" ticks inside `[lo, hi]`: multiples of a step of 1, 2 or 5 × 10^k, picked so that
/// there are 5 to 8 ticks where such a step exists (otherwise as close to that as possible).
/// Returns the step and the ticks, ascending; no ticks if the range is not finite and positive.
fn nice_ticks(lo: f64, hi: f64) -> (f64, Vec<f64>) {
    // Aim at about 6 intervals; the candidates around it cover every case.
    let raw = (hi / 2.0 - lo / 2.0) / 3.0;
    if !(raw.is_finite() && raw > 0.0 && lo.is_finite() && hi.is_finite()) {
        return (0.0, Vec::new());
    }
    let decade = raw.log10().floor() as i32;
    let mut best: Option<(f64, f64, f64)> = None; // (miss, off-center, step)
    for k in decade - 1..=decade + 1 {
        for mantissa in [1.0, 2.0, 5.0] {
            let step = mantissa * 10f64.powi(k);
            if !(step.is_finite() && step > 0.0) {
                continue;
            }
            let n = tick_count(lo, hi, step);
            // Distance from the 5..=8 band first, then from its middle.
            let miss = if n < 5.0 { 5.0 - n } else { (n - 8.0).max(0.0) };
            let key = (miss, (n - 6.5).abs(), step);
            // Strictly better only: on a tie (9 ticks against 4) the finer step, seen first,
            // stays, since more grid lines make values easier to read off.
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
    }
    match best {
        Some((_, _, step)) => (step, ticks_for(lo, hi, step)),
        None => (0.0, Vec::new()),
    }
}

/// Tolerance (in steps) so that ticks landing on the range ends by rounding still count.
const TICK_EPS: f64 = 1e-9;

/// How many multiples of `step` lie in `[lo, hi]` (a float: it may be astronomically large).
fn tick_count(lo: f64, hi: f64, step: f64) -> f64 {
    let first = (lo / step - TICK_EPS).ceil();
    let last = (hi / step + TICK_EPS).floor();
    (last - first + 1.0).max(0.0)
}

/// Multiples of `step` inside `[lo, hi]` (empty if there would be absurdly many).
fn ticks_for(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - TICK_EPS).ceil();
    let count = tick_count(lo, hi, step);
    if !(step > 0.0 && count <= 1000.0) {
        return Vec::new();
    }
    (0..count as i64)
        .map(|i| {
            let v = (first + i as f64) * step;
            // Snap to exact zero: `-0` or `1e-17` would print badly.
            if v.abs() < step * TICK_EPS { 0.0 } else { v }
        })
        .filter(|v| v.is_finite())
        .collect()
}

/// The next coarser nice step: 1 → 2 → 5 → 10.
fn next_step(step: f64) -> f64 {
    let base = 10f64.powi(decade(step));
    let mantissa = (step / base).round();
    let next = if mantissa < 1.5 {
        2.0
    } else if mantissa < 3.5 {
        5.0
    } else {
        10.0
    };
    next * base
}

/// `floor(log10(|v|))`, robust to `log10` landing just under an exact power of ten; 0 for zero
/// and non-finite `v`, which have no decade (and would overflow the callers' arithmetic).
fn decade(v: f64) -> i32 {
    if v == 0.0 || !v.is_finite() {
        return 0;
    }
    (v.abs().log10() + 1e-9).floor() as i32
}

/// Tick labels with just enough digits for the step, in a compact scientific form (`2.5e5`,
/// `1e-4`) when plain decimals would be long, so all labels on an axis share one format.
fn format_ticks(ticks: &[f64], step: f64) -> Vec<String> {
    let largest = ticks.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scientific = largest >= 1e5 || (largest > 0.0 && largest < 1e-3);
    let step_decade = decade(step);
    ticks
        .iter()
        .map(|&v| {
            if scientific {
                format_scientific(v, step_decade)
            } else {
                let decimals = (-step_decade).clamp(0, 15) as usize;
                format!("{v:.decimals$}")
            }
        })
        .collect()
}

/// `v` as `MANTISSAeEXP` with the mantissa digits down to `step_decade`, trailing zeros cut.
fn format_scientific(v: f64, step_decade: i32) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let mut exp = decade(v);
    let mut mantissa = v / 10f64.powi(exp);
    let digits = (exp - step_decade).clamp(0, 15) as usize;
    let mut text = format!("{mantissa:.digits$}");
    // Rounding can carry into a new decade (9.97 → "10.0").
    if text.trim_start_matches('-').starts_with("10") {
        exp += 1;
        mantissa /= 10.0;
        text = format!("{mantissa:.digits$}");
    }
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}e{exp}")
}

/// Width in pixels of `text` in the embedded font.
fn text_width(text: &str) -> i64 {
    let n = text.chars().count() as i64;
    if n == 0 { 0 } else { n * ADVANCE - SCALE }
}

/// `text` cut to at most `max_px` pixels wide, ending in "..." where it was cut.
fn fit_text(text: &str, max_px: i64) -> Cow<'_, str> {
    if text_width(text) <= max_px {
        return Cow::Borrowed(text);
    }
    let fitting = ((max_px + SCALE) / ADVANCE).max(0) as usize;
    if fitting < 3 {
        return Cow::Owned(".".repeat(fitting));
    }
    let kept: String = text.chars().take(fitting - 3).collect();
    Cow::Owned(kept.trim_end().to_owned() + "...")
}

/// An RGB image being drawn; every write outside it is dropped, which is the clipping.
#[derive(Debug)]
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let pixels = BACKGROUND.repeat(width as usize * height as usize);
        Canvas {
            width,
            height,
            pixels,
        }
    }

    fn put(&mut self, x: i64, y: i64, color: Rgb) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&color);
    }

    fn put_clipped(&mut self, x: i64, y: i64, color: Rgb, clip: Rect) {
        if x >= clip.left && x <= clip.right && y >= clip.top && y <= clip.bottom {
            self.put(x, y, color);
        }
    }

    fn hline(&mut self, x0: i64, x1: i64, y: i64, color: Rgb) {
        for x in x0.max(0)..=x1.min(self.width as i64 - 1) {
            self.put(x, y, color);
        }
    }

    fn vline(&mut self, x: i64, y0: i64, y1: i64, color: Rgb) {
        for y in y0.max(0)..=y1.min(self.height as i64 - 1) {
            self.put(x, y, color);
        }
    }

    fn fill(&mut self, r: Rect, color: Rgb) {
        for y in r.top..=r.bottom {
            self.hline(r.left, r.right, y, color);
        }
    }

    fn outline(&mut self, r: Rect, color: Rgb) {
        self.hline(r.left, r.right, r.top, color);
        self.hline(r.left, r.right, r.bottom, color);
        self.vline(r.left, r.top, r.bottom, color);
        self.vline(r.right, r.top, r.bottom, color);
    }

    /// A 2-px line from `a` to `b` (pixel coordinates), without anti-aliasing, clipped to
    /// `clip`. Bresenham steps along the line and a 2×2 brush gives it its width.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), color: Rgb, clip: Rect) {
        // Clipping the segment first bounds the loop below by the clip rectangle's size, even
        // for far-away endpoints.
        let Some((a, b)) = clip_segment(a, b, clip) else {
            return;
        };
        let (mut x, mut y) = (a.0.round() as i64, a.1.round() as i64);
        let (x1, y1) = (b.0.round() as i64, b.1.round() as i64);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            for (bx, by) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                self.put_clipped(x + bx, y + by, color, clip);
            }
            if x == x1 && y == y1 {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// `text` with the top of its capitals at `y`, starting at `x`.
    fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb) {
        self.glyphs(text, color, |along, across| (x + along, y + across));
    }

    /// `text` rotated a quarter turn counter-clockwise (reading upwards), starting at `y` and
    /// with the tops of its capitals at `x`.
    fn text_up(&mut self, x: i64, y: i64, text: &str, color: Rgb) {
        self.glyphs(text, color, |along, across| {
            (x + across, y - along - SCALE + 1)
        });
    }

    /// Draws the font's pixel blocks for `text`, placed by `at(along, across)`: the offset of a
    /// block along the line of text and across it (downwards from the top of the capitals).
    fn glyphs(&mut self, text: &str, color: Rgb, at: impl Fn(i64, i64) -> (i64, i64)) {
        for (i, ch) in text.chars().enumerate() {
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) == 0 {
                        continue;
                    }
                    let along = i as i64 * ADVANCE + col * SCALE;
                    let across = row as i64 * SCALE;
                    for d_along in 0..SCALE {
                        for d_across in 0..SCALE {
                            let (px, py) = at(along + d_along, across + d_across);
                            self.put(px, py, color);
                        }
                    }
                }
            }
        }
    }

    fn encode(&self) -> Result<Vec<u8>, PlotError> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        Ok(out)
    }
}

/// Liang–Barsky: the part of segment `a`–`b` inside `r`, if any.
fn clip_segment(a: (f64, f64), b: (f64, f64), r: Rect) -> Option<((f64, f64), (f64, f64))> {
    // An empty rectangle would also make `clamp` below panic.
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) || r.left > r.right || r.top > r.bottom {
        return None;
    }
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (left, right, top, bottom) = (r.left as f64, r.right as f64, r.top as f64, r.bottom as f64);
    // Each edge as (p, q, edge): the segment is inside where t * p <= q.
    let edges = [
        (-dx, a.0 - left, Edge::X(left)),
        (dx, right - a.0, Edge::X(right)),
        (-dy, a.1 - top, Edge::Y(top)),
        (dy, bottom - a.1, Edge::Y(bottom)),
    ];
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    let (mut e0, mut e1) = (None, None);
    for (p, q, edge) in edges {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else if p < 0.0 {
            if q / p > t0 {
                (t0, e0) = (q / p, Some(edge));
            }
        } else if q / p < t1 {
            (t1, e1) = (q / p, Some(edge));
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f64, edge: Option<Edge>| {
        let (mut x, mut y) = (a.0 + t * dx, a.1 + t * dy);
        // The coordinate of the edge that cut the segment is known exactly, and interpolating it
        // from far-away endpoints would lose it to rounding.
        match edge {
            Some(Edge::X(v)) => x = v,
            Some(Edge::Y(v)) => y = v,
            None => {}
        }
        (x.clamp(left, right), y.clamp(top, bottom))
    };
    Some((at(t0, e0), at(t1, e1)))
}

/// A clip edge: a vertical line at x, or a horizontal one at y.
#[derive(Debug, Clone, Copy)]
enum Edge {
    X(f64),
    Y(f64),
}

/// The glyph for `ch`, or a hollow box for characters the font lacks.
fn glyph(ch: char) -> &'static [u8; 9] {
    FONT.iter()
        .find(|(c, _)| *c == ch)
        .map_or(&UNKNOWN, |(_, g)| g)
}

/// Drawn for characters outside the font, so a missing glyph is visible rather than silent.
const UNKNOWN: [u8; 9] = [
    0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0, 0,
];

/// A 5×7 font, one row of 5 bits per byte (most significant bit on the left), with rows 0–6
/// from the cap line down to the baseline and rows 7–8 for descenders.
#[rustfmt::skip]
static FONT: [(char, [u8; 9]); 95] = [
    (' ', [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ('!', [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0b00100, 0, 0]),
    ('"', [0b01010, 0b01010, 0, 0, 0, 0, 0, 0, 0]),
    ('#', [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0, 0]),
    ('$', [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0, 0]),
    ('%', [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0, 0]),
    ('&', [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0, 0]),
    ('\'', [0b00100, 0b00100, 0b01000, 0, 0, 0, 0, 0, 0]),
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0, 0]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0, 0]),
    ('*', [0, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0, 0, 0]),
    ('+', [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0, 0, 0]),
    (',', [0, 0, 0, 0, 0, 0b01100, 0b01100, 0b00100, 0b01000]),
    ('-', [0, 0, 0, 0b11111, 0, 0, 0, 0, 0]),
    ('.', [0, 0, 0, 0, 0, 0b01100, 0b01100, 0, 0]),
    ('/', [0, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0, 0, 0]),
    ('0', [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0, 0]),
    ('1', [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0, 0]),
    ('2', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0, 0]),
    ('3', [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0, 0]),
    ('4', [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0, 0]),
    ('5', [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0, 0]),
    ('6', [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0, 0]),
    ('7', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0, 0]),
    ('8', [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0, 0]),
    ('9', [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0, 0]),
    (':', [0, 0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0, 0]),
    (';', [0, 0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0b00100, 0b01000]),
    ('<', [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0, 0]),
    ('=', [0, 0, 0b11111, 0, 0b11111, 0, 0, 0, 0]),
    ('>', [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0, 0]),
    ('?', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100, 0, 0]),
    ('@', [0b01110, 0b10001, 0b10111, 0b10101, 0b10111, 0b10000, 0b01110, 0, 0]),
    ('A', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0, 0]),
    ('B', [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0, 0]),
    ('C', [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0, 0]),
    ('D', [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0, 0]),
    ('E', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0, 0]),
    ('F', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0, 0]),
    ('G', [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0, 0]),
    ('H', [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0, 0]),
    ('I', [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0, 0]),
    ('J', [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0, 0]),
    ('K', [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0, 0]),
    ('L', [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0, 0]),
    ('M', [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0, 0]),
    ('N', [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0, 0]),
    ('O', [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0, 0]),
    ('P', [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0, 0]),
    ('Q', [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0, 0]),
    ('R', [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0, 0]),
    ('S', [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0, 0]),
    ('T', [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0]),
    ('U', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0, 0]),
    ('V', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0, 0]),
    ('W', [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0, 0]),
    ('X', [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0, 0]),
    ('Y', [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0]),
    ('Z', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0, 0]),
    ('[', [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0, 0]),
    ('\\', [0, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0, 0, 0]),
    (']', [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0, 0]),
    ('^', [0b00100, 0b01010, 0b10001, 0, 0, 0, 0, 0, 0]),
    ('_', [0, 0, 0, 0, 0, 0, 0, 0b11111, 0]),
    ('`', [0b01000, 0b00100, 0b00010, 0, 0, 0, 0, 0, 0]),
    ('a', [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0, 0]),
    ('b', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0, 0]),
    ('c', [0, 0, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0, 0]),
    ('d', [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0, 0]),
    ('e', [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0, 0]),
    ('f', [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0, 0]),
    ('g', [0, 0, 0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('h', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0, 0]),
    ('i', [0b00100, 0, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0, 0]),
    ('j', [0b00010, 0, 0b00110, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('k', [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0, 0]),
    ('l', [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0, 0]),
    ('m', [0, 0, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0, 0]),
    ('n', [0, 0, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0, 0]),
    ('o', [0, 0, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0, 0]),
    ('p', [0, 0, 0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000]),
    ('q', [0, 0, 0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001]),
    ('r', [0, 0, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0, 0]),
    ('s', [0, 0, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110, 0, 0]),
    ('t', [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0, 0]),
    ('u', [0, 0, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0, 0]),
    ('v', [0, 0, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0, 0]),
    ('w', [0, 0, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0, 0]),
    ('x', [0, 0, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0, 0]),
    ('y', [0, 0, 0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('z', [0, 0, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0, 0]),
    ('{', [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0, 0]),
    ('|', [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0]),
    ('}', [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0, 0]),
    ('~', [0, 0, 0b01000, 0b10101, 0b00010, 0, 0, 0, 0]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::fs;

    /// Decodes a PNG into (width, height, RGB bytes), failing on anything but 8-bit RGB.
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(bytes).read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(rgb: &[u8], width: u32, x: i64, y: i64) -> Rgb {
        let i = (y as usize * width as usize + x as usize) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    const RED: Rgb = [214, 39, 40];
    const BLUE: Rgb = [31, 119, 180];

    type Points = Vec<(f64, f64)>;

    fn curves() -> (Points, Points) {
        let acc = (0..=40)
            .map(|i| (i as f64, 0.1 + 0.85 * (1.0 - (-i as f64 / 8.0).exp())))
            .collect();
        let loss = (0..=40)
            .map(|i| (i as f64, 0.2 + 2.1 * (-i as f64 / 6.0).exp()))
            .collect();
        (acc, loss)
    }

    fn chart<'a>(series: Vec<Series<'a>>, width: u32, height: u32) -> Chart<'a> {
        Chart {
            title: "Training",
            x_label: "epoch",
            y_label: "value",
            series,
            width,
            height,
        }
    }

    #[test]
    fn two_series_decode_with_the_requested_size() {
        let (acc, loss) = curves();
        let series = vec![
            Series {
                label: "accuracy",
                points: &acc,
                color: BLUE,
            },
            Series {
                label: "loss",
                points: &loss,
                color: RED,
            },
        ];
        let bytes = chart(series, 640, 400).render_png().unwrap();
        let (w, h, rgb) = decode(&bytes);
        assert_eq!((w, h), (640, 400));
        assert_eq!(rgb.len(), 640 * 400 * 3);
        // The corner is background, and both colors were drawn.
        assert_eq!(pixel(&rgb, w, 0, 0), BACKGROUND);
        let count = |c: Rgb| rgb.chunks(3).filter(|p| *p == c).count();
        assert!(count(BLUE) > 200, "accuracy curve missing");
        assert!(count(RED) > 200, "loss curve missing");
    }

    #[test]
    fn data_points_carry_their_series_color() {
        let (acc, loss) = curves();
        let series = vec![
            Series {
                label: "accuracy",
                points: &acc,
                color: BLUE,
            },
            Series {
                label: "loss",
                points: &loss,
                color: RED,
            },
        ];
        let c = chart(series, 640, 400);
        let layout = c.layout().unwrap();
        let (w, _, rgb) = decode(&c.render_png().unwrap());
        // Points away from where the curves cross and from the frame.
        for (points, color, i) in [(&acc, BLUE, 30), (&loss, RED, 2), (&loss, RED, 35)] {
            let (x, y) = points[i];
            let (px, py) = (
                layout.x.to_px(x).round() as i64,
                layout.y.to_px(y).round() as i64,
            );
            assert_eq!(pixel(&rgb, w, px, py), color, "point {i} at ({px}, {py})");
        }
    }

    #[test]
    fn non_finite_points_break_the_line() {
        let points = [
            (0.0, 0.0),
            (1.0, 1.0),
            (1.5, f64::NAN),
            (2.0, 0.0),
            (3.0, 1.0),
        ];
        let c = chart(
            vec![Series {
                label: "",
                points: &points,
                color: RED,
            }],
            400,
            300,
        );
        let layout = c.layout().unwrap();
        let (w, _, rgb) = decode(&c.render_png().unwrap());
        let at = |x: f64, y: f64| {
            let (px, py) = (
                layout.x.to_px(x).round() as i64,
                layout.y.to_px(y).round() as i64,
            );
            pixel(&rgb, w, px, py)
        };
        assert_eq!(at(0.5, 0.5), RED, "the segment before the gap is drawn");
        assert_ne!(at(1.5, 0.5), RED, "no segment bridges the NaN");
        assert_eq!(at(2.5, 0.5), RED, "the segment after the gap is drawn");
    }

    #[test]
    fn edge_cases_render_without_panicking() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases: Vec<Vec<(f64, f64)>> = vec![
            vec![],
            vec![(3.0, 7.0)],
            vec![(0.0, 0.0)],
            vec![(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)],
            vec![(2.0, 1.0), (2.0, 3.0)],
            vec![(nan, 1.0), (1.0, inf), (-inf, nan)],
            vec![(0.0, 1.0), (1.0, nan), (2.0, 3.0), (inf, 4.0), (4.0, 2.0)],
            vec![(0.0, 1e-6), (1.0, 3e-5), (2.0, 1.2e-4)],
            vec![(0.0, 1e9), (5e5, 3e12), (1e6, -2e11)],
            vec![(-f64::MAX, f64::MAX), (f64::MAX, -f64::MAX)],
            vec![(f64::MAX, f64::MAX), (f64::MAX, f64::MAX)],
            vec![(0.0, f64::MIN_POSITIVE), (1.0, 5e-324), (2.0, 1e-310)],
            vec![(1.0, 1.0), (2.0, 1.0 + 1e-12)],
            vec![(-3.0, -0.0), (-1.0, 0.0)],
        ];
        for points in &cases {
            let series = vec![Series {
                label: "x",
                points,
                color: RED,
            }];
            let bytes = chart(series, 320, 240)
                .render_png()
                .unwrap_or_else(|e| panic!("{points:?}: {e}"));
            assert_eq!(decode(&bytes).0, 320);
        }
        // No series at all, empty labels, characters the font lacks.
        let empty = Chart {
            title: "",
            x_label: "",
            y_label: "",
            series: vec![],
            width: 200,
            height: 200,
        };
        assert_eq!(decode(&empty.render_png().unwrap()).1, 200);
        let odd = chart(
            vec![Series {
                label: "ünïcode ✓",
                points: &[],
                color: RED,
            }],
            300,
            200,
        );
        odd.render_png().unwrap();
    }

    #[test]
    fn tiny_and_huge_sizes_are_errors() {
        let (acc, _) = curves();
        for (w, h) in [(0, 0), (1, 1), (50, 400), (640, 40), (150, 120)] {
            let c = chart(
                vec![Series {
                    label: "a",
                    points: &acc,
                    color: RED,
                }],
                w,
                h,
            );
            match c.render_png() {
                Err(PlotError::TooSmall {
                    min_width,
                    min_height,
                    ..
                }) => {
                    assert!(w < min_width || h < min_height);
                    // The minimum it names is really enough.
                    let fits = chart(c.series.clone(), min_width, min_height);
                    fits.render_png().unwrap();
                }
                other => panic!("{w}x{h}: expected TooSmall, got {other:?}"),
            }
        }
        let c = chart(vec![], MAX_SIDE + 1, 100);
        assert!(matches!(c.render_png(), Err(PlotError::TooLarge { .. })));
    }

    #[test]
    fn save_png_writes_the_file_and_no_leftovers() {
        let dir = std::env::temp_dir().join(format!("cht-plot-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curve.png");
        let (acc, _) = curves();
        let c = chart(
            vec![Series {
                label: "a",
                points: &acc,
                color: RED,
            }],
            300,
            200,
        );
        c.save_png(&path).unwrap();
        // Saving again replaces the file.
        c.save_png(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), c.render_png().unwrap());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("curve.png")]);
        let err = c.save_png(&dir.join("missing").join("x.png")).unwrap_err();
        assert!(matches!(err, PlotError::Io(_)), "{err:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn assert_ticks(lo: f64, hi: f64, expected: &[f64]) {
        let (_, ticks) = nice_ticks(lo, hi);
        assert_eq!(ticks.len(), expected.len(), "{lo}..{hi}: {ticks:?}");
        for (t, e) in ticks.iter().zip(expected) {
            assert!(
                (t - e).abs() < 1e-9 * e.abs().max(1.0),
                "{lo}..{hi}: {ticks:?}"
            );
        }
    }

    #[test]
    fn nice_ticks_on_known_ranges() {
        assert_ticks(0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_ticks(0.0, 100.0, &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_ticks(-1.0, 1.0, &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_ticks(1.0, 50.0, &[10.0, 20.0, 30.0, 40.0, 50.0]);
        let (step, ticks) = nice_ticks(97.3, 98.9);
        assert!(step == 0.2 || step == 0.5, "step {step}");
        assert!((ticks[0] - 97.4).abs() < 1e-9, "{ticks:?}");
        assert!(nice_ticks(f64::NAN, 1.0).1.is_empty());
        assert!(nice_ticks(1.0, 1.0).1.is_empty());
    }

    #[test]
    fn nice_ticks_are_nice_on_many_ranges() {
        // A deterministic spread of ranges over many magnitudes and offsets.
        for i in 0..2000 {
            let f = i as f64;
            let lo = ((f * 0.618_034).fract() - 0.5) * 10f64.powi(i % 13 - 6);
            let span = (1.0 + (f * 0.414_214).fract() * 9.0) * 10f64.powi((i * 7) % 15 - 7);
            let hi = lo + span;
            let (step, ticks) = nice_ticks(lo, hi);
            let mantissa = step / 10f64.powi(decade(step));
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
                "{lo}..{hi}: step {step}"
            );
            assert!((4..=10).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            // Rounding error grows with the offset from zero, not with the step.
            let tol = step * 1e-6 + lo.abs().max(hi.abs()) * 1e-14;
            assert!(
                ticks.iter().all(|&t| t >= lo - tol && t <= hi + tol),
                "{lo}..{hi}"
            );
            assert!(
                ticks.windows(2).all(|p| (p[1] - p[0] - step).abs() < tol),
                "{ticks:?}"
            );
        }
    }

    #[test]
    fn tick_labels_are_compact() {
        let labels = |lo, hi| {
            let (step, ticks) = nice_ticks(lo, hi);
            format_ticks(&ticks, step)
        };
        assert_eq!(labels(0.0, 1.0), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(
            labels(0.0, 1e-4),
            ["0", "2e-5", "4e-5", "6e-5", "8e-5", "1e-4"]
        );
        assert_eq!(
            labels(0.0, 2.5e5),
            ["0", "5e4", "1e5", "1.5e5", "2e5", "2.5e5"]
        );
        assert_eq!(
            labels(-30.0, 30.0),
            ["-30", "-20", "-10", "0", "10", "20", "30"]
        );
        assert_eq!(labels(97.3, 98.9)[0], "97.4");
        assert_eq!(format_scientific(9.97e5, 3), "9.97e5");
        assert_eq!(format_scientific(9.996e5, 3), "1e6");
        assert_eq!(format_scientific(-2.5e-7, -8), "-2.5e-7");
    }

    #[test]
    fn font_covers_the_required_characters() {
        let required = "0123456789.-%+e :()/_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for ch in required.chars() {
            assert!(FONT.iter().any(|(c, _)| *c == ch), "no glyph for {ch:?}");
        }
        assert!(
            FONT.windows(2).all(|w| w[0].0 < w[1].0),
            "duplicate or unsorted glyphs"
        );
        assert!(
            FONT.iter().all(|(_, g)| g.iter().all(|row| *row < 32)),
            "glyph wider than 5"
        );
        assert_eq!(glyph('€'), &UNKNOWN);
        assert_ne!(glyph('a'), &UNKNOWN);
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        assert_eq!(fit_text("accuracy", 1000), "accuracy");
        let cut = fit_text("a rather long title", text_width("a rather"));
        assert_eq!(cut, "a rat...");
        assert!(text_width(&cut) <= text_width("a rather"));
        assert_eq!(fit_text("abcdef", 2 * ADVANCE), "..");
        assert_eq!(fit_text("abcdef", -5), "");
        // Counted in characters, not bytes.
        assert_eq!(fit_text("ééééééé", text_width("éééé")), "é...");
    }

    #[test]
    fn lines_are_clipped() {
        let mut canvas = Canvas::new(20, 20);
        let clip = Rect {
            left: 5,
            top: 5,
            right: 14,
            bottom: 14,
        };
        canvas.line((-1e300, 10.0), (1e300, 10.0), RED, clip);
        for x in 0..20i64 {
            let inside = (5..=14).contains(&x);
            let i = ((10 * 20 + x) * 3) as usize;
            assert_eq!(canvas.pixels[i..i + 3] == RED, inside, "x = {x}");
        }
        // Entirely outside: nothing drawn.
        canvas.line((0.0, 0.0), (3.0, 19.0), BLUE, clip);
        assert!(!canvas.pixels.chunks(3).any(|p| p == BLUE));
    }
}
