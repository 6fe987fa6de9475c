//! Small charts drawn on the server as SVG: they need no script, obey the strict CSP (SVG
//! presentation attributes are not styles) and carry a text alternative for screen readers.

/// A score trend (0 to 100 over time) as an SVG polyline.
pub struct TrendChart {
    /// `x,y x,y ...` in a 200 x 50 box, y growing downwards.
    pub points: String,
    /// What the chart shows, in words.
    pub label: String,
    /// The point drawn for a single run (a line needs two).
    pub single: Option<(f64, f64)>,
}

pub const WIDTH: f64 = 200.0;
pub const HEIGHT: f64 = 50.0;

/// The chart of `points` (time, score), oldest first; none without any point.
pub fn trend(name: &str, points: &[(String, f64)]) -> Option<TrendChart> {
    let (first, last) = (points.first()?, points.last()?);
    let y = |score: f64| HEIGHT - (score.clamp(0.0, 100.0) / 100.0) * (HEIGHT - 4.0) - 2.0;
    let step = if points.len() > 1 {
        WIDTH / (points.len() - 1) as f64
    } else {
        0.0
    };
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, score))| format!("{:.1},{:.1}", i as f64 * step, y(*score)))
        .collect();
    let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    Some(TrendChart {
        points: coords.join(" "),
        label: format!(
            "{name} score over {} runs, from {:.0}% ({}) to {:.0}% ({}); lowest {low:.0}%, highest {high:.0}%",
            points.len(),
            first.1,
            first.0,
            last.1,
            last.0
        ),
        single: (points.len() == 1).then(|| (WIDTH / 2.0, y(first.1))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_spans_the_box_and_says_what_it_shows() {
        let points = vec![
            ("a".to_owned(), 0.0),
            ("b".to_owned(), 50.0),
            ("c".to_owned(), 100.0),
        ];
        let chart = trend("cra", &points).unwrap();
        assert_eq!(chart.points, "0.0,48.0 100.0,25.0 200.0,2.0");
        assert!(
            chart.label.contains("from 0% (a) to 100% (c)"),
            "{}",
            chart.label
        );
        assert!(chart.single.is_none());
        assert!(trend("cra", &[]).is_none());
        let one = trend("cra", &points[1..2]).unwrap();
        assert_eq!(one.single, Some((100.0, 25.0)));
    }
}
