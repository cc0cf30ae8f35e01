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
