//! What a network needs in memory to be built, run and trained, computed from its sizes
//! before anything is allocated (see [`crate::cluster::check_memory`]).

use super::OptimizerConfig;

/// Bytes of one `f32`.
const F32: u64 = 4;

/// Parameters (weights and biases) of a dense network of layer `sizes`; saturates instead of
/// overflowing for absurd sizes.
pub fn parameters(sizes: &[usize]) -> u64 {
    sizes
        .windows(2)
        .map(|p| {
            (p[0] as u64)
                .saturating_mul(p[1] as u64)
                .saturating_add(p[1] as u64)
        })
        .fold(0u64, u64::saturating_add)
}

/// Bytes of the activation buffers for `batch` samples: every layer's outputs, their
/// gradients and the input, with room for the products' packing.
pub fn activations(sizes: &[usize], batch: usize) -> u64 {
    let values = sizes
        .iter()
        .map(|&s| s as u64)
        .fold(0u64, u64::saturating_add);
    values.saturating_mul(batch as u64).saturating_mul(3 * F32)
}

/// Bytes one rank needs to predict with a network of `sizes` split over `model_ranks` ranks:
/// the whole network while it is built or loaded, its shard, and the activations.
pub fn forward(sizes: &[usize], batch: usize, model_ranks: usize) -> u64 {
    let whole = parameters(sizes).saturating_mul(F32);
    whole
        .saturating_add(whole / model_ranks.max(1) as u64)
        .saturating_add(activations(sizes, batch))
}

/// Bytes one rank needs to train a network of `sizes` over a grid of `data_groups` ×
/// `model_ranks` ranks: the whole network (built, then gathered to save it), and per shard
/// the weights, their gradients, the optimiser's memory (Adam two copies, SGD with momentum
/// one) and the best weights kept for early stopping.
pub fn training(
    sizes: &[usize],
    optimizer: OptimizerConfig,
    keeps_best: bool,
    batch: usize,
    data_groups: usize,
    model_ranks: usize,
) -> u64 {
    let whole = parameters(sizes).saturating_mul(F32);
    let optimiser_copies = match optimizer {
        OptimizerConfig::Adam { .. } => 2,
        OptimizerConfig::Sgd { momentum, .. } if momentum != 0.0 => 1,
        OptimizerConfig::Sgd { .. } => 0,
    };
    let shard_copies = 2 + optimiser_copies + u64::from(keeps_best);
    let shard = whole / model_ranks.max(1) as u64;
    whole
        .saturating_add(shard.saturating_mul(shard_copies))
        .saturating_add(activations(sizes, batch.div_ceil(data_groups.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_the_sizes() {
        // 3-2-1: 3·2 + 2 + 2·1 + 1 = 11 parameters.
        assert_eq!(parameters(&[3, 2, 1]), 11);
        // Adam, no early stopping, one rank: the network, then weights, gradients, two
        // moments: 5 copies of 44 bytes, plus 3 · (3+2+1) · 4 · 4 bytes for a batch of 4.
        let adam = OptimizerConfig::adam(0.01);
        assert_eq!(training(&[3, 2, 1], adam, false, 4, 1, 1), 5 * 44 + 288);
        // The 60-100000-100000-1 network: over 100 GB to train with Adam.
        assert!(training(&[60, 100_000, 100_000, 1], adam, false, 32, 1, 1) > 100 << 30);
        // Absurd sizes saturate instead of wrapping around to a small number.
        assert_eq!(parameters(&[usize::MAX, usize::MAX]), u64::MAX);
    }
}
