//! The next token from the model's logits: the most likely one (greedy), or drawn from the
//! distribution that temperature, top-k and top-p (nucleus) leave, applied in HF `generate`'s
//! order (temperature, then top-k, then top-p) and with its rules for ties and boundaries.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decoding {
    /// The most likely token (the first on ties, as `argmax`).
    Greedy,
    /// A draw from the warped distribution.
    Sample(Sampling),
}

/// The warpers of sampling (HF's `TemperatureLogitsWarper`, `TopKLogitsWarper`,
/// `TopPLogitsWarper`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sampling {
    /// Logits are divided by it: below 1 sharpens, above 1 flattens. Positive and finite.
    pub temperature: f64,
    /// Only the `k` most likely tokens stay (and every token tied with the k-th).
    pub top_k: Option<usize>,
    /// Only the most likely tokens whose probabilities sum to at least `p` stay (at least one).
    pub top_p: Option<f64>,
}

impl Sampling {
    /// Why these settings choose nothing, if they do not.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("--temperature {}: must be positive (use greedy decoding, without --sample, for 0)", self.temperature));
        }
        if self.top_k == Some(0) {
            return Err("--top-k 0: keeps no token; at least 1 (leave it out to keep every token)".to_owned());
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(format!("--top-p {p}: must be in (0, 1]"));
        }
        Ok(())
    }

    /// The distribution the draw is from: `(token, probability)` of the tokens that stay, in
    /// order of falling probability; the probabilities sum to 1.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let mut ranked: Vec<(u32, f64)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, f64::from(l) / self.temperature)).collect();
        // Stable: equal logits stay in token order.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = self.top_k {
            let kth = ranked[k.min(ranked.len()) - 1].1;
            ranked.retain(|&(_, score)| score >= kth);
        }
        let mut probabilities = softmax(&ranked);
        if let Some(p) = self.top_p {
            // HF removes, in ascending order, every token whose cumulative probability is at most
            // 1 − p, and never the most likely one.
            let mut cumulative = 0.0;
            let mut keep = probabilities.len();
            for (i, (_, probability)) in probabilities.iter().enumerate().rev() {
                cumulative += probability;
                if cumulative <= 1.0 - p && i > 0 {
                    keep = i;
                }
            }
            probabilities.truncate(keep);
            let total: f64 = probabilities.iter().map(|(_, q)| q).sum();
            probabilities.iter_mut().for_each(|(_, q)| *q /= total);
        }
        probabilities
    }
}

/// `(token, softmax of the scores)` of scores in falling order.
fn softmax(ranked: &[(u32, f64)]) -> Vec<(u32, f64)> {
    let max = ranked[0].1;
    let total: f64 = ranked.iter().map(|(_, s)| (s - max).exp()).sum();
    ranked.iter().map(|&(token, s)| (token, (s - max).exp() / total)).collect()
}

/// Chooses tokens one after the other, seeded.
pub struct TokenPicker {
    decoding: Decoding,
    rng: StdRng,
}

impl TokenPicker {
    pub fn new(decoding: Decoding, seed: u64) -> Self {
        Self { decoding, rng: StdRng::seed_from_u64(seed) }
    }

    /// The next token after `logits` (one per vocabulary id); `None` when a logit is NaN (the
    /// model diverged).
    pub fn pick(&mut self, logits: &[f32]) -> Option<u32> {
        if logits.is_empty() || logits.iter().any(|l| l.is_nan()) {
            return None;
        }
        match self.decoding {
            Decoding::Greedy => {
                let best = logits.iter().enumerate().fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
                Some(best as u32)
            }
            Decoding::Sample(sampling) => {
                let distribution = sampling.distribution(logits);
                let mut u: f64 = self.rng.random();
                for &(token, probability) in &distribution {
                    if u < probability {
                        return Some(token);
                    }
                    u -= probability;
                }
                // Rounding left a sliver of the unit interval past the last token.
                distribution.last().map(|&(token, _)| token)
            }
        }
    }
}

/// The model's log-probability of `token` under `logits` (the distribution before any warper).
pub fn log_probability(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let log_total = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum::<f64>().ln() + max;
    f64::from(logits[token as usize]) - log_total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
        Sampling { temperature, top_k, top_p }
    }

    /// Logits whose softmax is exactly [0.5, 0.3, 0.15, 0.05] (in a shuffled token order).
    fn four_tokens() -> Vec<f32> {
        [0.15f64, 0.5, 0.05, 0.3].iter().map(|p| p.ln() as f32).collect()
    }

    fn assert_distribution(got: &[(u32, f64)], expected: &[(u32, f64)]) {
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for ((token, p), (want_token, want_p)) in got.iter().zip(expected) {
            assert_eq!(token, want_token, "{got:?} vs {expected:?}");
            assert!((p - want_p).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn greedy_takes_the_first_most_likely_token() {
        let mut picker = TokenPicker::new(Decoding::Greedy, 0);
        assert_eq!(picker.pick(&[0.1, 2.0, -1.0, 2.0]), Some(1));
        assert_eq!(picker.pick(&four_tokens()), Some(1));
        assert_eq!(picker.pick(&[0.0, f32::NAN]), None);
    }

    #[test]
    fn temperature_top_k_and_top_p_leave_the_distributions_hf_computes() {
        let logits = four_tokens();
        assert_distribution(&sampling(1.0, None, None).distribution(&logits), &[(1, 0.5), (3, 0.3), (0, 0.15), (2, 0.05)]);
        // Temperature 0.5 squares the probabilities before normalising: 0.25, 0.09, 0.0225, 0.0025.
        let total = 0.25 + 0.09 + 0.0225 + 0.0025;
        assert_distribution(
            &sampling(0.5, None, None).distribution(&logits),
            &[(1, 0.25 / total), (3, 0.09 / total), (0, 0.0225 / total), (2, 0.0025 / total)],
        );
        assert_distribution(&sampling(1.0, Some(2), None).distribution(&logits), &[(1, 0.625), (3, 0.375)]);
        // Ascending cumulative 0.05, 0.2, 0.5, 1: top-p 0.75 removes what is <= 0.25.
        assert_distribution(&sampling(1.0, None, Some(0.75)).distribution(&logits), &[(1, 0.625), (3, 0.375)]);
        assert_distribution(&sampling(1.0, None, Some(0.9)).distribution(&logits), &[(1, 0.5 / 0.95), (3, 0.3 / 0.95), (0, 0.15 / 0.95)]);
        // The most likely token always stays; top-k keeps every token tied with the k-th.
        assert_distribution(&sampling(1.0, None, Some(0.01)).distribution(&logits), &[(1, 1.0)]);
        assert_distribution(&sampling(1.0, Some(1), None).distribution(&[1.0, 3.0, 3.0]), &[(1, 0.5), (2, 0.5)]);
    }

    #[test]
    fn seeded_draws_follow_the_distribution_and_repeat() {
        let logits = four_tokens();
        let draw = |seed| {
            let mut picker = TokenPicker::new(Decoding::Sample(sampling(1.0, None, None)), seed);
            (0..20_000).map(|_| picker.pick(&logits).unwrap()).collect::<Vec<u32>>()
        };
        let draws = draw(3);
        assert_eq!(draws, draw(3));
        assert_ne!(draws, draw(4));
        for (token, p) in [(1u32, 0.5f64), (3, 0.3), (0, 0.15), (2, 0.05)] {
            let frequency = draws.iter().filter(|&&t| t == token).count() as f64 / draws.len() as f64;
            // Four standard deviations of a binomial frequency over 20,000 draws.
            let sigma = (p * (1.0 - p) / draws.len() as f64).sqrt();
            assert!((frequency - p).abs() < 4.0 * sigma, "token {token}: frequency {frequency}, probability {p}");
        }
    }

    #[test]
    fn settings_that_choose_nothing_are_refused() {
        assert!(sampling(0.0, None, None).validate().unwrap_err().contains("--temperature"));
        assert!(sampling(f64::NAN, None, None).validate().is_err());
        assert!(sampling(1.0, Some(0), None).validate().unwrap_err().contains("--top-k"));
        assert!(sampling(1.0, None, Some(0.0)).validate().unwrap_err().contains("--top-p"));
        assert!(sampling(1.0, None, Some(1.5)).validate().is_err());
        assert!(sampling(0.7, Some(40), Some(0.95)).validate().is_ok());
    }

    #[test]
    fn log_probability_is_the_log_softmax() {
        let logits = four_tokens();
        assert!((log_probability(&logits, 3) - 0.3f64.ln()).abs() < 1e-6);
        assert!((log_probability(&[1000.0, 1000.0], 0) - 0.5f64.ln()).abs() < 1e-12);
    }
}
