//! Spearman's ρ and Kendall's τ-b with two-sided p-values, computed as `scipy.stats.spearmanr`
//! and `kendalltau` compute them (the official similarity analysis calls both):
//! * ρ is Pearson's r of the mid-ranks (ties share their mean rank); its p-value is from
//!   Student's t with n − 2 degrees of freedom, `t = ρ √((n − 2) / (1 − ρ²))`.
//! * τ-b = (C − D) / √((n₀ − n₁)(n₀ − n₂)) over the n₀ pairs, n₁ and n₂ the pairs tied in x and
//!   in y. Its p-value is exact without ties for n ≤ 33 (or one inversion or fewer from a perfect
//!   order): twice the probability of at most min(D, n₀ − D) inversions among the n!
//!   permutations. Otherwise it is the normal approximation with the tie-corrected variance of
//!   C − D (scipy's `method="auto"`).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A rank correlation and its two-sided p-value (no association as the null hypothesis).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Correlation {
    pub coefficient: f64,
    pub p_value: f64,
}

/// Why a correlation is undefined.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CorrelationError {
    #[error("the two series differ in length ({0} and {1})")]
    Lengths(usize, usize),
    #[error("{0} pairs: at least 3 are needed")]
    TooFew(usize),
    #[error("a series is constant: its ranks carry no order")]
    Constant,
}

/// The largest n whose τ p-value is exact when there are no ties (scipy's bound).
const EXACT_KENDALL_MAX_N: usize = 33;

fn check(x: &[f64], y: &[f64]) -> Result<usize, CorrelationError> {
    if x.len() != y.len() {
        return Err(CorrelationError::Lengths(x.len(), y.len()));
    }
    if x.len() < 3 {
        return Err(CorrelationError::TooFew(x.len()));
    }
    Ok(x.len())
}

/// 1-based ranks, tied values sharing their mean rank.
pub fn mid_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let end = (start..order.len()).find(|&k| values[order[k]] != values[order[start]]).unwrap_or(order.len());
        let rank = (start + 1 + end) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = rank);
        start = end;
    }
    ranks
}

/// Spearman's ρ of `x` and `y` with its p-value.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Correlation, CorrelationError> {
    let n = check(x, y)?;
    let (rx, ry) = (mid_ranks(x), mid_ranks(y));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        let (dx, dy) = (a - mean, b - mean);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(CorrelationError::Constant);
    }
    let rho = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
    let dof = (n - 2) as f64;
    let p_value = if rho.abs() == 1.0 {
        0.0
    } else {
        let t = rho * (dof / ((1.0 - rho) * (1.0 + rho))).sqrt();
        let student = StudentsT::new(0.0, 1.0, dof).expect("n − 2 ≥ 1 degrees of freedom");
        2.0 * student.sf(t.abs())
    };
    Ok(Correlation { coefficient: rho, p_value })
}

/// Σ over tie groups of sizes t of `f(t)`.
fn tie_sum(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.chunk_by(|a, b| a == b).map(|group| group.len() as f64).filter(|&t| t > 1.0).map(f).sum()
}

/// Kendall's τ-b of `x` and `y` with its p-value.
pub fn kendall(x: &[f64], y: &[f64]) -> Result<Correlation, CorrelationError> {
    let n = check(x, y)?;
    let (mut concordant, mut discordant) = (0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let s = (x[i] - x[j]).signum() * (y[i] - y[j]).signum();
            let tied = x[i] == x[j] || y[i] == y[j];
            if !tied && s > 0.0 {
                concordant += 1;
            } else if !tied && s < 0.0 {
                discordant += 1;
            }
        }
    }
    let pairs = (n * (n - 1) / 2) as f64;
    let tied_pairs = |v: &[f64]| tie_sum(v, |t| t * (t - 1.0) / 2.0);
    let (x_ties, y_ties) = (tied_pairs(x), tied_pairs(y));
    if x_ties == pairs || y_ties == pairs {
        return Err(CorrelationError::Constant);
    }
    let difference = concordant as f64 - discordant as f64;
    let tau = (difference / ((pairs - x_ties) * (pairs - y_ties)).sqrt()).clamp(-1.0, 1.0);
    let inversions = discordant.min(concordant) as usize;
    let p_value = if x_ties == 0.0 && y_ties == 0.0 && (n <= EXACT_KENDALL_MAX_N || inversions <= 1) {
        exact_kendall_p(n, inversions)
    } else {
        let m = (n * (n - 1)) as f64;
        let nf = n as f64;
        let v1 = |v: &[f64]| tie_sum(v, |t| t * (t - 1.0) * (2.0 * t + 5.0));
        let v2 = |v: &[f64]| tie_sum(v, |t| t * (t - 1.0) * (t - 2.0));
        let variance = (m * (2.0 * nf + 5.0) - v1(x) - v1(y)) / 18.0 + 2.0 * x_ties * y_ties / m + v2(x) * v2(y) / (9.0 * m * (nf - 2.0));
        let z = difference / variance.sqrt();
        2.0 * Normal::standard().sf(z.abs())
    };
    Ok(Correlation { coefficient: tau, p_value: p_value.min(1.0) })
}

/// Twice the probability that a uniformly random permutation of n items has at most `c`
/// inversions. The distribution is built one item at a time: inserting the j-th item adds 0 to
/// j − 1 inversions with equal probability.
fn exact_kendall_p(n: usize, c: usize) -> f64 {
    let mut probability = vec![0.0; c + 1];
    probability[0] = 1.0;
    for j in 2..=n {
        let previous = probability.clone();
        for (k, p) in probability.iter_mut().enumerate() {
            *p = previous[k.saturating_sub(j - 1)..=k].iter().sum::<f64>() / j as f64;
        }
    }
    (2.0 * probability.iter().sum::<f64>()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(x, y, ρ, p(ρ), τ, p(τ))`: the coefficients and p-values from scipy 1.17.1
    /// (`spearmanr`, `kendalltau` with its defaults), covering the exact τ test (n ≤ 33 without
    /// ties), the normal approximation with ties and without (n = 40).
    type Case = (Vec<f64>, Vec<f64>, f64, f64, f64, f64);

    fn scipy_cases() -> Vec<Case> {
        let x40 = [
            2.0409191213851825,
            -2.5556650313141818,
            0.41809884672577885,
            -0.5677696061279298,
            -0.45264929211044586,
            -0.2155971630897659,
            -2.019986129147251,
            -0.23193237764418947,
            -0.8652130762749417,
            3.3229995166448827,
            0.22578661322792176,
            -0.3526307943415954,
            -0.2812874181513504,
            -0.6680463461089501,
            -1.0551505512051214,
            -0.39080097723465473,
            0.48194538850678587,
            -0.2385536065733667,
            0.9577587029597641,
            -0.19980212906658,
            0.024259565076664623,
            1.545820851212812,
            0.5451055226876446,
            -0.505228735614018,
            -0.1828389745977349,
            0.5405251317548021,
            1.9350880340988528,
            -0.2696203273419135,
            -0.24355867907910456,
            1.0023136012756912,
            -0.8864599431605871,
            -0.291720232439864,
            0.8825389674564839,
            0.5803500161908991,
            0.09151670328235219,
            0.6701043548284794,
            -2.8281623068437627,
            1.02130681750008,
            -0.9596447598081417,
            -1.6686198426559695,
        ];
        let y40 = [
            2.317364880906182,
            -1.8551201459647917,
            -0.026668608957005235,
            -1.6441754462287375,
            -0.42652445857641225,
            -0.26834447133264516,
            -0.6143879631291584,
            0.5154756098351609,
            -0.6713974300103217,
            4.434632721868875,
            0.02026356332212928,
            -1.2785303679899633,
            0.3027708928738976,
            -0.08550792745325997,
            -1.2699794623319771,
            -1.173609555198621,
            0.7110992937200484,
            -2.732447885031357,
            1.647883473122576,
            0.29156613167841117,
            -1.6145975788138238,
            1.6071743610509837,
            -0.4189941408535959,
            0.2519923091441324,
            -2.2170062480411628,
            -0.3739694062397866,
            2.6446680218409204,
            0.8867807210902434,
            -2.4015640592053127,
            0.5042737565243879,
            -0.5584398506180102,
            -0.9009363703897346,
            2.4731791987796274,
            -0.6108766654268817,
            0.4460486495692782,
            -0.37830116371603173,
            -1.4221993637088775,
            0.9996555884445215,
            -1.3318953238087576,
            -3.386804792388586,
        ];
        vec![
            (
                vec![3.1, 1.2, 4.4, 1.2, 5.9, 2.6, 5.3, 5.8, 9.7, 9.3],
                vec![2.7, 1.8, 2.8, 1.9, 8.4, 5.9, 0.4, 5.2, 9.9, 9.8],
                0.7294866524160775,
                0.016646879953377037,
                0.6292532049656926,
                0.011921001496914019,
            ),
            (
                vec![0.5, 2.1, -1.3, 4.2, 3.3, 0.9, -0.4, 1.8, 2.9, 5.5, -2.2, 1.1],
                vec![1.0, 2.5, -0.7, 3.1, 4.8, 0.2, 0.1, 2.2, 1.9, 6.0, -1.5, 2.7],
                0.9230769230769231,
                1.8621951098680993e-05,
                0.7878787878787877,
                0.00010742344075677409,
            ),
            (x40.to_vec(), y40.to_vec(), 0.6941838649155723, 6.771811417573116e-07, 0.5025641025641026, 4.942692777271822e-06),
        ]
    }

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs()
    }

    #[test]
    fn a_tie_by_hand() {
        // Ranks of x: 1, 2.5, 2.5, 4; of y: 1, 3, 2, 4. ρ = 4.5 / √(4.5 · 5); of the 6 pairs 5 are
        // concordant and one is tied in x: τ-b = 5 / √(5 · 6). p-values from scipy.
        let (x, y) = ([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0]);
        assert_eq!(mid_ranks(&x), [1.0, 2.5, 2.5, 4.0]);
        let rho = spearman(&x, &y).unwrap();
        assert!(close(rho.coefficient, 4.5 / (4.5f64 * 5.0).sqrt(), 1e-14) && close(rho.p_value, 0.05131670194948613, 1e-9), "{rho:?}");
        let tau = kendall(&x, &y).unwrap();
        assert!(close(tau.coefficient, 5.0 / 30f64.sqrt(), 1e-14) && close(tau.p_value, 0.07095149242730563, 1e-9), "{tau:?}");
    }

    #[test]
    fn a_perfect_order_has_the_exact_smallest_p() {
        let (x, y) = ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0]);
        let tau = kendall(&x, &y).unwrap();
        // One permutation of 120 has no inversion, one has all ten: p = 2 / 5!.
        assert_eq!(tau.coefficient, 1.0);
        assert!(close(tau.p_value, 2.0 / 120.0, 1e-14), "{tau:?}");
        let reversed: Vec<f64> = y.iter().rev().copied().collect();
        assert_eq!(kendall(&x, &reversed).unwrap().coefficient, -1.0);
        let rho = spearman(&x, &y).unwrap();
        assert_eq!((rho.coefficient, rho.p_value), (1.0, 0.0));
    }

    #[test]
    fn coefficients_and_p_values_match_scipy() {
        for (x, y, rho, p_rho, tau, p_tau) in scipy_cases() {
            let s = spearman(&x, &y).unwrap();
            let k = kendall(&x, &y).unwrap();
            assert!(close(s.coefficient, rho, 1e-12) && close(s.p_value, p_rho, 1e-8), "n = {}: {s:?} vs {rho} {p_rho}", x.len());
            assert!(close(k.coefficient, tau, 1e-12) && close(k.p_value, p_tau, 1e-8), "n = {}: {k:?} vs {tau} {p_tau}", x.len());
        }
    }

    #[test]
    fn undefined_correlations_are_errors() {
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), Err(CorrelationError::TooFew(2)));
        assert_eq!(kendall(&[1.0, 2.0, 3.0], &[1.0, 2.0]), Err(CorrelationError::Lengths(3, 2)));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), Err(CorrelationError::Constant));
        assert_eq!(kendall(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]), Err(CorrelationError::Constant));
    }
}
