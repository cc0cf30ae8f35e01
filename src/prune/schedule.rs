//! The iterative schedule: raise the sparsity step by step, fine-tuning in between.

/// Sparsity after step `t` of `steps` rises along TensorFlow Model Optimization's
/// `PolynomialDecay`: `s_t = s_final · (1 − (1 − t/steps)^power)` (from 0, power 3 by
/// default): big cuts first, while the network can still recover, small ones at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Sparsity after the last step.
    pub final_sparsity: f64,
    /// Pruning steps.
    pub steps: usize,
    /// Exponent of the curve.
    pub power: f64,
}

impl Schedule {
    /// `steps` steps to `final_sparsity` with the usual exponent 3.
    pub fn polynomial(final_sparsity: f64, steps: usize) -> Self {
        Schedule {
            final_sparsity,
            steps: steps.max(1),
            power: 3.0,
        }
    }

    /// The sparsity to reach at step `t` (1-based; `t = steps` gives the final sparsity).
    pub fn sparsity_at(&self, t: usize) -> f64 {
        let progress = (t.min(self.steps) as f64) / self.steps as f64;
        self.final_sparsity * (1.0 - (1.0 - progress).powf(self.power))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_by_hand() {
        let s = Schedule::polynomial(0.9, 4);
        // 1 - (3/4)^3 = 0.578125, 1 - (1/2)^3 = 0.875, 1 - (1/4)^3 = 0.984375, 1.
        let want = [0.9 * 0.578125, 0.9 * 0.875, 0.9 * 0.984375, 0.9];
        for (t, w) in (1..=4).zip(want) {
            assert!((s.sparsity_at(t) - w).abs() < 1e-12, "step {t}");
        }
        assert_eq!(Schedule::polynomial(0.5, 1).sparsity_at(1), 0.5);
    }
}
