//! A seeded, portable random stream. Floats are drawn from the raw `u32` output of ChaCha8
//! with our own conversion, so a seed gives the same numbers (models, splits, shuffles) on
//! every platform and with every version of the `rand` family.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A portable random stream over ChaCha8 (floats, bounded integers, shuffles).
#[derive(Clone, Debug)]
pub struct UniformStream {
    rng: ChaCha8Rng,
    seed: u64,
}

/// Where a [`UniformStream`] is: enough to rebuild it exactly (for resuming training).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The seed the stream was made from.
    pub seed: u64,
    /// The ChaCha stream number.
    pub stream: u64,
    /// How many 32-bit words have been used.
    pub word_pos: u128,
}

impl UniformStream {
    /// A stream for `seed`; `stream` separates independent uses of one seed.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        UniformStream { rng, seed }
    }

    /// The stream's current position.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            seed: self.seed,
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        }
    }

    /// A stream continuing exactly at `pos`.
    pub fn at(pos: StreamPosition) -> Self {
        let mut s = UniformStream::new(pos.seed, pos.stream);
        s.rng.set_word_pos(pos.word_pos);
        s
    }

    /// An integer uniform in `0..n` (`n > 0`), without modulo bias.
    pub fn next_below(&mut self, n: usize) -> usize {
        assert!(n > 0, "next_below(0)");
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX - n + 1) % n;
        loop {
            let v = self.rng.next_u64();
            if v <= zone {
                return (v % n) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.next_below(i + 1);
            items.swap(i, j);
        }
    }

    /// A float uniform in [0, 1) with 24 random bits.
    pub fn next_unit(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A float uniform in [-a, a).
    pub fn next_symmetric(&mut self, a: f32) -> f32 {
        (2.0 * self.next_unit() - 1.0) * a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_ranges_hold() {
        let mut a = UniformStream::new(7, 0);
        let mut b = UniformStream::new(7, 0);
        let mut c = UniformStream::new(7, 1);
        let xs: Vec<f32> = (0..1000).map(|_| a.next_unit()).collect();
        let ys: Vec<f32> = (0..1000).map(|_| b.next_unit()).collect();
        let zs: Vec<f32> = (0..1000).map(|_| c.next_unit()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn position_round_trip_continues_the_stream() {
        let mut a = UniformStream::new(3, 2);
        let _ = (0..17).map(|_| a.next_below(10)).count();
        let mut b = UniformStream::at(a.position());
        let xs: Vec<usize> = (0..50).map(|_| a.next_below(1000)).collect();
        let ys: Vec<usize> = (0..50).map(|_| b.next_below(1000)).collect();
        assert_eq!(xs, ys);
        let mut v: Vec<u32> = (0..100).collect();
        a.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
