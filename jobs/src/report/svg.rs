//! Horizontal bar charts as inline SVG, so the run report is one file that draws without a
//! network or a script. Every bar carries its label and exact value as data attributes
//! (`data-label`, `data-value`) and a `<title>` tooltip, which is what tests and screen readers
//! read; the numbers are also printed beside the bars.

use std::fmt::Write;

/// Width of the label column, the bars and the value column, in pixels.
const LABEL_WIDTH: f64 = 220.0;
const BAR_WIDTH: f64 = 420.0;
const VALUE_WIDTH: f64 = 140.0;
const ROW_HEIGHT: f64 = 22.0;

/// A chart `id` of `bars` (label, value); values below zero are drawn as zero-length bars.
pub fn bar_chart(id: &str, title: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let height = ROW_HEIGHT * bars.len().max(1) as f64 + 8.0;
    let width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH;
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{}\" role=\"img\" aria-label=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n",
        escape(id),
        escape(title)
    );
    for (row, (label, value)) in bars.iter().enumerate() {
        let y = 4.0 + ROW_HEIGHT * row as f64;
        let length = if max > 0.0 {
            (value.max(0.0) / max) * BAR_WIDTH
        } else {
            0.0
        };
        let _ = writeln!(
            svg,
            "<g class=\"bar\" data-label=\"{label}\" data-value=\"{value}\"><title>{label}: {shown}</title>\
<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
<rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length:.1}\" height=\"{h}\"/>\
<text x=\"{vx:.1}\" y=\"{ty}\">{shown}</text></g>",
            label = escape(label),
            shown = number(*value),
            lx = LABEL_WIDTH - 8.0,
            ty = y + ROW_HEIGHT * 0.7,
            h = ROW_HEIGHT - 6.0,
            vx = LABEL_WIDTH + length + 6.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A number as the report prints it: whole numbers without decimals, others with two, and
/// thousands separated by a thin space.
pub fn number(value: f64) -> String {
    let text = if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    let (sign, rest) = text.strip_prefix('-').map_or(("", text.as_str()), |r| ("-", r));
    let (whole, fraction) = rest.split_once('.').map_or((rest, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('\u{2009}');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Text safe inside HTML and SVG elements and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_carry_their_exact_values_and_escaped_labels() {
        let svg = bar_chart("c", "T", &[("<a&b>".into(), 1500.5), ("z".into(), 0.0)]);
        assert!(
            svg.contains("data-label=\"&lt;a&amp;b&gt;\" data-value=\"1500.5\""),
            "{svg}"
        );
        assert!(
            svg.contains("width=\"420.0\""),
            "the largest bar spans the chart: {svg}"
        );
        assert!(svg.contains("width=\"0.0\""), "{svg}");
        assert_eq!(number(1234567.0), "1\u{2009}234\u{2009}567");
        assert_eq!(number(-1234.5), "-1\u{2009}234.50");
    }
}
