//! Means and 95% bootstrap intervals: paired (twin − baseline on the same items) and of a
//! difference between two independent sets, with a seeded generator so that a run repeats.

use serde::Serialize;

/// Resamples drawn for an interval.
const RESAMPLES: usize = 2000;

/// A figure with its interval and the number of items it stands on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// The 95% interval's lower end.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// Items measured.
    pub n: usize,
}

/// The mean of `values` (0 when there are none).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

/// The 2.5th and 97.5th percentiles of `samples`.
fn interval(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// The mean of `values` with a bootstrap interval (for paired data, pass the differences).
pub fn bootstrap_mean(values: &[f64], seed: u64) -> Option<Estimate> {
    if values.is_empty() {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = values.len();
    let means: Vec<f64> =
        (0..RESAMPLES).map(|_| (0..n).map(|_| values[rng.usize(..n)]).sum::<f64>() / n as f64).collect();
    let (low, high) = interval(means);
    Some(Estimate { value: mean(values), low, high, n })
}

/// The paired difference `a[i] − b[i]`, its mean and interval.
pub fn paired_difference(a: &[f64], b: &[f64], seed: u64) -> Option<Estimate> {
    let differences: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    bootstrap_mean(&differences, seed)
}

/// `mean(a) − mean(b)` for two independent sets, each resampled on its own; `n` is the smaller.
pub fn difference_of_means(a: &[f64], b: &[f64], seed: u64) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let resample_mean = |values: &[f64], rng: &mut fastrand::Rng| {
        (0..values.len()).map(|_| values[rng.usize(..values.len())]).sum::<f64>() / values.len() as f64
    };
    let differences: Vec<f64> =
        (0..RESAMPLES).map(|_| resample_mean(a, &mut rng) - resample_mean(b, &mut rng)).collect();
    let (low, high) = interval(differences);
    Some(Estimate { value: mean(a) - mean(b), low, high, n: a.len().min(b.len()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_paired_difference_has_an_interval_above_zero_and_repeats_with_its_seed() {
        let a: Vec<f64> = (0..50).map(|i| 2.0 + (i % 5) as f64 * 0.1).collect();
        let b: Vec<f64> = (0..50).map(|i| 1.0 + (i % 7) as f64 * 0.1).collect();
        let estimate = paired_difference(&a, &b, 7).unwrap();
        assert!(estimate.low > 0.5 && estimate.high < 1.5, "{estimate:?}");
        assert!(estimate.low <= estimate.value && estimate.value <= estimate.high);
        assert_eq!(estimate.n, 50);
        assert_eq!(paired_difference(&a, &b, 7), Some(estimate));
    }

    #[test]
    fn noise_around_zero_gives_an_interval_across_zero() {
        let a: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let estimate = bootstrap_mean(&a, 1).unwrap();
        assert!(estimate.low < 0.0 && estimate.high > 0.0, "{estimate:?}");
        assert_eq!(bootstrap_mean(&[], 1), None);
        let independent = difference_of_means(&[3.0, 3.2, 2.8], &[1.0, 1.1], 3).unwrap();
        assert!((independent.value - 1.95).abs() < 1e-9 && independent.low > 1.0);
    }
}
