//! The pluggable ranking of usable orchestrators (spec §7.4): what a selector sees of each
//! candidate, and go-livepeer's default rule with its probability draw.

/// What the selector sees of one usable orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Position in the pool (returned by the selector).
    pub index: usize,
    /// Latency score (request time / max(1.5 s, segment duration)) moving average;
    /// `None` until the orchestrator has transcoded something for this gateway.
    pub latency_score: Option<f64>,
    /// Share of recent attempts that succeeded (moving average; 1.0 when unknown).
    pub success_rate: f64,
    /// Price per pixel in wei, when quoted.
    pub price: Option<f64>,
    /// Stake, when known (no chain access here: always `None` for now).
    pub stake: Option<f64>,
    /// In one of the operator's preferred regions.
    pub preferred_region: bool,
}

/// Picks an orchestrator among usable candidates. `random` is uniform in [0, 1), drawn by
/// the caller so selection is deterministic under test.
pub trait Selector: Send + Sync {
    /// The chosen candidate's `index`, or `None` to choose nothing.
    fn select(&self, candidates: &[Candidate], random: f64) -> Option<usize>;
}

/// go-livepeer's weights (`-selectStakeWeight`, `-selectPriceWeight`,
/// `-selectRandFreq`) and price scale (`priceExpFactor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of stake in the draw among untried orchestrators.
    pub stake: f64,
    /// Weight of price (e^(−price/price_exp_factor)).
    pub price: f64,
    /// Weight of a uniform draw.
    pub random: f64,
    /// Price scale, wei per pixel.
    pub price_exp_factor: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { stake: 0.7, price: 0.0, random: 0.3, price_exp_factor: 100.0 }
    }
}

/// The default selector (spec §7.4, `MinLSSelector` plus the probability draw):
/// 1. only preferred-region orchestrators, if any of them is usable;
/// 2. the known orchestrator with the best latency score if that score is at most 1.0
///    (faster than real time), weighted by its success rate;
/// 3. else an untried orchestrator, drawn with P = price·e^(−price/f)/Σ + stake·s/Σs +
///    random/N;
/// 4. else the least bad known one.
#[derive(Debug, Clone, Default)]
pub struct DefaultSelector {
    /// Draw weights.
    pub weights: Weights,
}

impl Selector for DefaultSelector {
    fn select(&self, all: &[Candidate], random: f64) -> Option<usize> {
        // Only preferred-region candidates if any is usable; no allocation either way.
        let any_preferred = all.iter().any(|c| c.preferred_region);
        let in_pool = |c: &&Candidate| !any_preferred || c.preferred_region;
        // Effective score: latency inflated by failures (a 50 % success rate doubles it).
        let effective = |c: &Candidate| c.latency_score.map(|s| s / c.success_rate.max(0.05));
        let best_known = all
            .iter()
            .filter(in_pool)
            .filter_map(|c| effective(c).map(|s| (s, c.index)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((score, i)) = best_known
            && score <= 1.0
        {
            return Some(i);
        }
        let untried = |c: &&Candidate| in_pool(c) && c.latency_score.is_none();
        if all.iter().any(|c| untried(&c)) {
            return self.draw(all.iter().filter(untried), random);
        }
        best_known.map(|(_, i)| i)
    }
}

impl DefaultSelector {
    /// go-livepeer's `ProbabilitySelectionAlgorithm` over `c`: P = price·e^(−price/f)/Σ
    /// + stake·s/Σs + random/N. Returns the drawn candidate's `index`.
    fn draw<'a>(&self, c: impl Iterator<Item = &'a Candidate> + Clone, random: f64) -> Option<usize> {
        let w = &self.weights;
        let price_term = |x: &Candidate| (-(x.price.unwrap_or(0.0)) / w.price_exp_factor.max(f64::MIN_POSITIVE)).exp();
        let (mut n, mut price_sum, mut stake_sum) = (0.0, 0.0, 0.0);
        for x in c.clone() {
            n += 1.0;
            if w.price > 0.0 {
                price_sum += price_term(x);
            }
            stake_sum += x.stake.unwrap_or(0.0);
        }
        let prob = |x: &Candidate| {
            let price = if w.price > 0.0 && price_sum > 0.0 { price_term(x) / price_sum } else { 1.0 };
            let stake = if stake_sum > 0.0 { x.stake.unwrap_or(0.0) / stake_sum } else { 1.0 };
            w.price * price + w.stake * stake + w.random / n
        };
        let total: f64 = c.clone().map(prob).sum();
        let mut target = random.clamp(0.0, 1.0) * total;
        let mut last = None;
        for x in c {
            let p = prob(x);
            if target < p {
                return Some(x.index);
            }
            target -= p;
            last = Some(x.index);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_honours_stake_and_price_weights() {
        let s = DefaultSelector { weights: Weights { stake: 1.0, price: 0.0, random: 0.0, price_exp_factor: 100.0 } };
        let c = |i, stake| Candidate {
            index: i,
            latency_score: None,
            success_rate: 1.0,
            price: None,
            stake: Some(stake),
            preferred_region: false,
        };
        let cands = [c(0, 1.0), c(1, 3.0)];
        assert_eq!(s.select(&cands, 0.2), Some(0));
        assert_eq!(s.select(&cands, 0.3), Some(1), "stake 3 of 4 takes [0.25, 1)");
        let s = DefaultSelector { weights: Weights { stake: 0.0, price: 1.0, random: 0.0, price_exp_factor: 1.0 } };
        let p = |i, price| Candidate { price: Some(price), stake: None, ..c(i, 0.0) };
        // e^0 = 1 against e^-5 ≈ 0.007: the cheap one takes almost the whole range.
        assert_eq!(s.select(&[p(0, 5.0), p(1, 0.0)], 0.5), Some(1));
        assert_eq!(s.select(&[], 0.5), None);
    }
}
