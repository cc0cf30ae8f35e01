//! The hot loops and nothing else: pure functions on slices, no I/O, no MPI.
//!
//! Activations are features-major: a layer's output is `[neurons, batch]`, row `i` being
//! neuron `i`'s outputs over the batch. Weights are `[out, in]` row-major.

pub mod activation;
pub mod dense;
pub mod gemm;
pub mod sparse;

/// How a kernel may use threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread only.
    Seq,
    /// Split over the current rayon pool when the work is large enough to pay for it.
    Rayon,
}

/// Deterministic test values in [-1, 1) without a random number generator.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 1000) as f32 / 500.0
                - 1.0
        })
        .collect()
}
