//! Magnitude pruning of connections (or of blocks of them, see [`super::blocks`]), on the
//! shards of a model-parallel group.
//!
//! The `k` largest magnitudes are kept, the rest pruned. Ties at the cut are broken by
//! position: layer order, then row-major order inside a layer. Because a rank owns a
//! contiguous block of rows of every layer, that order is (layer, rank, index on the rank), so
//! the ranks can find the cut together — a binary search over the magnitudes' bit patterns,
//! one all-reduce of a count per step, then an exchange of tie counts — and every rank ends
//! with exactly the mask one process would compute on the whole network.

use super::blocks::LayerBlocks;
use crate::cluster::Comm;
use crate::model::Weights;
use std::ops::Range;

/// Which weights compete for the connections that stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every layer is pruned to the target on its own.
    Layer,
    /// All weights of the network compete together (layers end at different sparsities).
    Global,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "layer" => Ok(Scope::Layer),
            "global" => Ok(Scope::Global),
            _ => Err(format!("unknown scope '{s}': expected layer or global")),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Layer => "layer",
            Scope::Global => "global",
        })
    }
}

/// How much to prune.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// This fraction of the connections is absent afterwards: exactly
    /// `round(sparsity · out · in)` of a layer (scope layer) or of all layers (scope global).
    /// Connections pruned before count; pruning never brings one back.
    Sparsity(f64),
    /// Connections with `|w| < t` are pruned.
    Threshold(f32),
}

/// How connections are pruned: how much, which compete, and in what units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pruning {
    /// How much to prune.
    pub target: Target,
    /// Which weights compete.
    pub scope: Scope,
    /// Connections are pruned in blocks of this many consecutive neurons reading the same
    /// input, ranked by the block's L2 norm (see [`super::blocks`]); 1 prunes single
    /// connections by magnitude. Counts and thresholds then apply to blocks. The sparse
    /// kernels run blocks of 4 rows (or a multiple) four rows at a time.
    pub block: usize,
}

impl Pruning {
    /// Single connections, by magnitude.
    pub fn connections(target: Target, scope: Scope) -> Self {
        Pruning {
            target,
            scope,
            block: 1,
        }
    }

    /// The same rule on blocks of `rows` neurons.
    pub fn in_blocks(self, rows: usize) -> Self {
        Pruning {
            block: rows,
            ..self
        }
    }
}

/// Prunes this rank's shard: `shard[l]` holds this rank's rows of layer `l` (ranks hold
/// consecutive rows in rank order; the layer's size is gathered from them). Returns the kept
/// connections as sparse weights. Every rank of `comm` (the model-parallel group) must call
/// it with its shard.
///
/// With `Target::Sparsity(s)` exactly `round(s · blocks)` blocks are absent afterwards, of a
/// layer's `ceil(out / block) · in` (scope layer) or of all layers' (scope global); blocks
/// pruned before count, and pruning never brings a connection back.
///
/// # Panics
/// If `rule.block` is 0.
pub fn prune_shard<C: Comm>(comm: &C, shard: &[&Weights], rule: Pruning) -> Vec<Weights> {
    assert!(rule.block > 0, "prune_shard: blocks of at least one row");
    let (ranks, depth) = (comm.size(), shard.len());
    let mut rows = vec![0u64; ranks * depth];
    let mine: Vec<u64> = shard.iter().map(|w| w.rows() as u64).collect();
    comm.all_gather_varcount(&mine, &mut rows, &vec![depth; ranks]);
    let blocks: Vec<LayerBlocks> = shard
        .iter()
        .enumerate()
        .map(|(l, w)| {
            let mut at = 0;
            let ranges: Vec<Range<usize>> = (0..ranks)
                .map(|r| {
                    let n = rows[r * depth + l] as usize;
                    at += n;
                    at - n..at
                })
                .collect();
            LayerBlocks::score(comm, w, ranges, at, rule.block)
        })
        .collect();
    let block_totals: Vec<usize> = blocks.iter().map(LayerBlocks::total).collect();
    let keep: Vec<Vec<bool>> = match rule.target {
        Target::Threshold(t) => {
            let t = t.abs().to_bits();
            blocks
                .iter()
                .map(|b| b.scores.iter().map(|&s| s >= t).collect())
                .collect()
        }
        Target::Sparsity(s) => {
            let kept = |total: usize| total - ((s.clamp(0.0, 1.0) * total as f64).round() as usize);
            match rule.scope {
                Scope::Global => {
                    let groups: Vec<&[u32]> = blocks.iter().map(|b| b.scores.as_slice()).collect();
                    keep_largest(comm, &groups, kept(block_totals.iter().sum()) as u64)
                }
                Scope::Layer => blocks
                    .iter()
                    .zip(&block_totals)
                    .flat_map(|(b, &t)| keep_largest(comm, &[b.scores.as_slice()], kept(t) as u64))
                    .collect(),
            }
        }
    };
    shard
        .iter()
        .zip(&blocks)
        .zip(&keep)
        .map(|((w, b), k)| w.retain(&b.connection_flags(comm, w, k)))
        .collect()
}

/// Flags the `keep` largest values over every rank's `groups` (magnitudes as f32 bit
/// patterns, which order like the magnitudes), ties taken in (group, rank, index) order.
fn keep_largest<C: Comm>(comm: &C, groups: &[&[u32]], keep: u64) -> Vec<Vec<bool>> {
    let count = |pred: &dyn Fn(u32) -> bool| -> u64 {
        let mut n = [groups
            .iter()
            .map(|g| g.iter().filter(|&&b| pred(b)).count() as u64)
            .sum::<u64>()];
        comm.all_reduce_sum(&mut n);
        n[0]
    };
    let available = count(&|_| true);
    if keep >= available {
        return groups.iter().map(|g| vec![true; g.len()]).collect();
    }
    if keep == 0 {
        return groups.iter().map(|g| vec![false; g.len()]).collect();
    }
    // The largest cut with at least `keep` values at or above it.
    let (mut lo, mut hi) = (0u32, u32::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if count(&|b| b >= mid) >= keep {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let cut = lo;
    let ties_wanted = keep - count(&|b| b > cut);
    // Ties before this rank's: earlier groups on every rank, then this group on lower ranks.
    let mine: Vec<u64> = groups
        .iter()
        .map(|g| g.iter().filter(|&&b| b == cut).count() as u64)
        .collect();
    let (ranks, n) = (comm.size(), groups.len());
    let mut all = vec![0u64; ranks * n];
    comm.all_gather_varcount(&mine, &mut all, &vec![n; ranks]);
    let tie_count = |r: usize, g: usize| all[r * n + g];
    let mut before = 0u64;
    let mut flags = Vec::with_capacity(n);
    for (g, values) in groups.iter().enumerate() {
        let here = before + (0..comm.rank()).map(|r| tie_count(r, g)).sum::<u64>();
        let mut take = ties_wanted.saturating_sub(here).min(mine[g]);
        flags.push(
            values
                .iter()
                .map(|&b| {
                    if b > cut {
                        true
                    } else if b == cut && take > 0 {
                        take -= 1;
                        true
                    } else {
                        false
                    }
                })
                .collect(),
        );
        before += (0..ranks).map(|r| tie_count(r, g)).sum::<u64>();
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{SelfComm, ThreadComm};
    use ndarray::Array2;

    fn dense(rows: usize, cols: usize, v: Vec<f32>) -> Weights {
        Weights::Dense(Array2::from_shape_vec((rows, cols), v).unwrap())
    }

    #[test]
    fn keeps_exactly_the_largest_with_ties_by_position() {
        // |w| = 3, 1, 2, 2, 2, 0.5: keeping 3 takes 3, then the first two 2s.
        let w = dense(2, 3, vec![3.0, -1.0, 2.0, -2.0, 2.0, 0.5]);
        let out = prune_shard(
            &SelfComm,
            &[&w],
            Pruning::connections(Target::Sparsity(0.5), Scope::Layer),
        );
        assert_eq!(
            out[0].to_dense().into_raw_vec_and_offset().0,
            vec![3.0, 0.0, 2.0, -2.0, 0.0, 0.0]
        );
        assert_eq!(out[0].stored(), 3);
    }

    #[test]
    fn global_scope_and_threshold() {
        let a = dense(1, 4, vec![0.1, 0.2, 0.3, 0.4]);
        let b = dense(1, 4, vec![1.0, 2.0, 3.0, 4.0]);
        let out = prune_shard(
            &SelfComm,
            &[&a, &b],
            Pruning::connections(Target::Sparsity(0.75), Scope::Global),
        );
        assert_eq!((out[0].stored(), out[1].stored()), (0, 2));
        let out = prune_shard(
            &SelfComm,
            &[&a, &b],
            Pruning::connections(Target::Threshold(0.25), Scope::Layer),
        );
        assert_eq!((out[0].stored(), out[1].stored()), (2, 4));
        // Pruning a pruned layer further never brings a connection back.
        let again = prune_shard(
            &SelfComm,
            &[&out[0]],
            Pruning::connections(Target::Sparsity(0.25), Scope::Layer),
        );
        assert_eq!(again[0].stored(), 2);
    }

    #[test]
    fn sparsity_is_hit_exactly_on_random_weights() {
        let n = 1000 * 37;
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 - 506.0).collect(); // many ties
        let w = dense(1000, 37, v);
        for s in [0.0, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0] {
            let rule = Pruning::connections(Target::Sparsity(s), Scope::Layer);
            let out = prune_shard(&SelfComm, &[&w], rule);
            assert_eq!(
                out[0].stored(),
                n - (s * n as f64).round() as usize,
                "sparsity {s}"
            );
            // In blocks of 4 rows: exactly that many blocks of the 250 × 37.
            let blocks = n / 4;
            let out = prune_shard(&SelfComm, &[&w], rule.in_blocks(4));
            assert_eq!(
                out[0].stored(),
                4 * (blocks - (s * blocks as f64).round() as usize),
                "sparsity {s} in blocks"
            );
        }
    }

    #[test]
    fn blocks_of_rows_are_kept_or_pruned_together_by_their_norm() {
        // Blocks of 2 rows: norms 5, 0.14, 1.41 (rows 0-1) and 0, 2.83, 0.71 (rows 2-3).
        let w = dense(
            4,
            3,
            vec![
                3.0, 0.1, 1.0, 4.0, -0.1, 1.0, 0.0, 2.0, 0.5, 0.0, -2.0, -0.5,
            ],
        );
        let expected = vec![3.0, 0.0, 1.0, 4.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, -2.0, 0.0];
        let rule = Pruning::connections(Target::Sparsity(0.5), Scope::Layer).in_blocks(2);
        let out = prune_shard(&SelfComm, &[&w], rule);
        assert_eq!(out[0].to_dense().into_raw_vec_and_offset().0, expected);
        let rule = Pruning::connections(Target::Threshold(1.0), Scope::Layer).in_blocks(2);
        let out = prune_shard(&SelfComm, &[&w], rule);
        assert_eq!(out[0].to_dense().into_raw_vec_and_offset().0, expected);
        // A pruned connection stays pruned in a block that is kept (row 0, column 2).
        let sparse = prune_shard(
            &SelfComm,
            &[&w],
            Pruning::connections(Target::Threshold(0.9), Scope::Layer),
        );
        let out = prune_shard(&SelfComm, &[&sparse[0]], rule);
        assert_eq!(out[0].stored(), 6);
        // Five rows in blocks of 2, the last of one row. Norms: 2, 3.2 (rows 0-1), 7.2, 8.6
        // (rows 2-3), 8, 9 (row 4): 3 of the 6 blocks stay.
        let v: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let w = dense(5, 2, v);
        let rule = Pruning::connections(Target::Sparsity(0.5), Scope::Layer).in_blocks(2);
        let out = prune_shard(&SelfComm, &[&w], rule);
        assert_eq!(
            out[0].to_dense().into_raw_vec_and_offset().0,
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 7.0, 8.0, 9.0]
        );
    }

    #[test]
    fn ranks_on_threads_prune_as_one_process_does() {
        // Two layers of 10 and 7 rows; on 3 ranks the blocks of 4 rows straddle ranks.
        let layer = |rows: usize, cols: usize, seed: usize| {
            let v = (0..rows * cols)
                .map(|i| (((i + seed) * 7919) % 101) as f32 - 50.0)
                .collect();
            dense(rows, cols, v)
        };
        let whole = [layer(10, 6, 1), layer(7, 10, 2)];
        for rule in [
            Pruning::connections(Target::Sparsity(0.6), Scope::Global),
            Pruning::connections(Target::Sparsity(0.5), Scope::Layer).in_blocks(4),
            Pruning::connections(Target::Threshold(20.0), Scope::Layer).in_blocks(3),
        ] {
            let one = prune_shard(&SelfComm, &[&whole[0], &whole[1]], rule);
            for ranks in [2, 3, 4] {
                let shards = ThreadComm::run(ranks, |comm| {
                    let mine: Vec<Weights> = whole
                        .iter()
                        .map(|w| {
                            let (r, n) = (comm.rank(), w.rows());
                            w.slice_rows(n * r / ranks..n * (r + 1) / ranks)
                        })
                        .collect();
                    prune_shard(&comm, &[&mine[0], &mine[1]], rule)
                });
                for l in 0..2 {
                    let rows: Vec<f32> = shards
                        .iter()
                        .flat_map(|s| s[l].to_dense().into_raw_vec_and_offset().0)
                        .collect();
                    assert_eq!(
                        rows,
                        one[l].to_dense().into_raw_vec_and_offset().0,
                        "{rule:?}, {ranks} ranks, layer {l}"
                    );
                }
            }
        }
    }
}
