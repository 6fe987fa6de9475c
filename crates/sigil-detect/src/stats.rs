//! Robust statistics for baselines: the median and the median absolute deviation (MAD), which a
//! few outliers in the window do not move, and percentiles for cohort thresholds.

use serde::Serialize;

/// 1.4826 × MAD estimates the standard deviation for normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// A baseline: the median of the samples and their MAD scaled to a standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Robust {
    pub median: f64,
    pub mad: f64,
    pub samples: usize,
}

/// The median and the scaled MAD of `values` (`None` if empty).
pub fn median_mad(values: &[f64]) -> Option<Robust> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let median = median_of_sorted(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    Some(Robust {
        median,
        mad: median_of_sorted(&deviations) * MAD_TO_SIGMA,
        samples: sorted.len(),
    })
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The `p`th percentile (0 to 100) of `values` by linear interpolation between closest ranks
/// (`None` if empty).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let weight = rank - low as f64;
    Some(sorted[low] + (sorted[high] - sorted[low]) * weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        let r = median_mad(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(r.median, 3.0);
        assert!((r.mad - 1.4826).abs() < 1e-9);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0], 90.0), Some(1.9));
        assert_eq!(percentile(&[], 90.0), None);
        assert_eq!(median_mad(&[]), None);
    }

    proptest! {
        /// Fewer than half the samples, however wild, cannot move the median outside the range
        /// of the others: the baseline resists the very anomalies it is there to find.
        #[test]
        fn the_median_resists_outliers(
            normal in prop::collection::vec(10.0f64..20.0, 11..40),
            wild in prop::collection::vec(1e6f64..1e12, 0..5),
        ) {
            prop_assume!(wild.len() * 2 < normal.len());
            let mut all = normal.clone();
            all.extend(&wild);
            let r = median_mad(&all).unwrap();
            prop_assert!((10.0..=20.0).contains(&r.median));
            prop_assert!(r.mad <= 10.0 * MAD_TO_SIGMA);
        }

        #[test]
        fn percentiles_are_monotone_and_within_range(
            values in prop::collection::vec(-1e6f64..1e6, 1..60), p in 0.0f64..100.0, q in 0.0f64..100.0,
        ) {
            let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
            let a = percentile(&values, lo).unwrap();
            let b = percentile(&values, hi).unwrap();
            prop_assert!(a <= b);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(min <= a && b <= max);
        }
    }
}
