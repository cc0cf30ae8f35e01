//! The hot loops and nothing else: pure functions on slices, no I/O, no MPI.
//!
//! Activations are features-major: a layer's output is `[neurons, batch]`, row `i` being
//! neuron `i`'s outputs over the batch. Weights are `[out, in]` row-major.

/// Defines `$name` that runs `$body` compiled for AVX-512 or AVX2 (with FMA) when the CPU has
/// them, else for the baseline target. The body is the same code; only the vector width the
/// compiler may use changes.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                fn v512($($arg: $ty),*) { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v256($($arg: $ty),*) { inner($($arg),*) }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features v512 is compiled for.
                    return unsafe { v512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features v256 is compiled for.
                    return unsafe { v256($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

use std::num::NonZeroUsize;

pub mod activation;
pub mod columns;
pub mod dense;
pub mod gemm;
pub mod sparse;
pub mod transpose;

/// How many threads a kernel may use: passed to every parallel call, never read from a
/// global. Results are the same bits whatever the choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread only.
    Seq,
    /// Split into at most this many parts, run on the current rayon pool (the global one, or
    /// the pool the caller `install`ed), when the work is large enough to pay for it. The
    /// pool should have at least this many threads.
    Rayon(NonZeroUsize),
}

impl Par {
    /// `n` threads: [`Par::Seq`] for 0 or 1.
    pub fn threads(n: usize) -> Par {
        match NonZeroUsize::new(n) {
            Some(n) if n.get() > 1 => Par::Rayon(n),
            _ => Par::Seq,
        }
    }

    /// As many threads as the current rayon pool has (the global pool is sized by
    /// `RAYON_NUM_THREADS`, or the number of cores).
    pub fn current_pool() -> Par {
        Par::threads(rayon::current_num_threads())
    }

    /// The most threads this allows (1 for [`Par::Seq`]).
    pub fn degree(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Rayon(n) => n.get(),
        }
    }
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
