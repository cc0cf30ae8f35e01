//! How the neurons of a layer are spread over ranks.

use std::ops::Range;

/// A split of `n` items over `p` ranks into contiguous chunks: rank `r` gets
/// `n / p` items, plus one if `r < n % p` (the remainder goes to the first ranks). A rank may
/// get nothing (1 output neuron on 4 ranks).
///
/// ```
/// use nnmpi::cluster::Partition;
/// let p = Partition::even(10, 4);
/// assert_eq!(p.counts(), &[3, 3, 2, 2]);
/// assert_eq!(p.range(2), 6..8);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    offsets: Vec<usize>,
}

impl Partition {
    /// `n` items over `parts` ranks, as even as possible.
    ///
    /// # Panics
    /// If `parts` is 0.
    pub fn even(n: usize, parts: usize) -> Self {
        assert!(parts > 0, "Partition::even: zero parts");
        let (base, extra) = (n / parts, n % parts);
        let mut offsets = Vec::with_capacity(parts + 1);
        offsets.push(0);
        for r in 0..parts {
            let last = offsets[r];
            offsets.push(last + base + usize::from(r < extra));
        }
        Partition { offsets }
    }

    /// The partition with these boundaries: rank `r` gets `offsets[r]..offsets[r + 1]`.
    ///
    /// # Panics
    /// If `offsets` has fewer than 2 entries, does not start at 0 or decreases.
    pub fn from_offsets(offsets: Vec<usize>) -> Self {
        assert!(
            offsets.len() >= 2 && offsets[0] == 0 && offsets.windows(2).all(|w| w[0] <= w[1]),
            "Partition::from_offsets: offsets must start at 0 and not decrease"
        );
        Partition { offsets }
    }

    /// The partition giving rank `r` `counts[r]` items.
    pub fn from_counts(counts: &[usize]) -> Self {
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        offsets.push(0);
        for c in counts {
            offsets.push(offsets[offsets.len() - 1] + c);
        }
        Partition::from_offsets(offsets)
    }

    /// Rank `r`'s chunk of `n` items over `parts` ranks, without building the partition.
    pub fn share(n: usize, parts: usize, r: usize) -> Range<usize> {
        let (base, extra) = (n / parts, n % parts);
        let start = r * base + r.min(extra);
        start..start + base + usize::from(r < extra)
    }

    /// Number of ranks.
    pub fn parts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Total number of items.
    pub fn total(&self) -> usize {
        self.offsets[self.parts()]
    }

    /// The items of rank `r`.
    pub fn range(&self, r: usize) -> Range<usize> {
        self.offsets[r]..self.offsets[r + 1]
    }

    /// How many items rank `r` owns.
    pub fn count(&self, r: usize) -> usize {
        self.offsets[r + 1] - self.offsets[r]
    }

    /// Items per rank.
    pub fn counts(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Items per rank times `width` (values per item, e.g. the batch size for a row of
    /// features-major activations): the counts of a variable-count collective.
    pub fn counts_times(&self, width: usize) -> Vec<usize> {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) * width)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_everything_once_with_the_remainder_first() {
        for n in 0..40 {
            for p in 1..9 {
                let part = Partition::even(n, p);
                assert_eq!(part.parts(), p);
                assert_eq!(part.total(), n);
                let mut next = 0;
                for r in 0..p {
                    let range = part.range(r);
                    assert_eq!(range.start, next);
                    next = range.end;
                    let want = n / p + usize::from(r < n % p);
                    assert_eq!(part.count(r), want, "n={n} p={p} r={r}");
                    assert_eq!(Partition::share(n, p, r), part.range(r));
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn one_neuron_on_four_ranks() {
        let p = Partition::even(1, 4);
        assert_eq!(p.counts(), vec![1, 0, 0, 0]);
        assert_eq!(p.range(3), 1..1);
        assert_eq!(p.counts_times(5), vec![5, 0, 0, 0]);
    }
}
