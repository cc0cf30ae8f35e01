//! Blocks of connections pruned together: `size` consecutive neurons (rows) of a layer that
//! read the same input (column) form a block, kept or pruned as one. Block `b` holds rows
//! `b·size..(b+1)·size` (fewer in a layer's last block). A block is a candidate when at least
//! one of its connections exists; its score is the L2 norm of its connections (for size 1,
//! the weight's magnitude).
//!
//! Under MPI a rank holds a contiguous block of rows, so a block may straddle ranks. It is
//! *owned* by the rank that holds its first row: the other ranks send that owner their rows
//! of it, the owner scores and decides it, and sends its decision back. Every rank thus
//! scores every block from the same values in the same order as one process would.

use crate::cluster::Comm;
use crate::model::Weights;
use std::ops::Range;

/// How a layer's rows fall into blocks and onto ranks.
struct Layout {
    size: usize,
    rows: usize,
    /// Every rank's rows.
    ranges: Vec<Range<usize>>,
}

impl Layout {
    fn block_rows(&self, b: usize) -> Range<usize> {
        b * self.size..((b + 1) * self.size).min(self.rows)
    }

    /// Blocks that rows `r` touch.
    fn blocks_touched(&self, r: &Range<usize>) -> Range<usize> {
        if r.is_empty() {
            return 0..0;
        }
        r.start / self.size..(r.end - 1) / self.size + 1
    }

    /// Blocks whose first row is in `r` (the ones its rank owns).
    fn blocks_owned(&self, r: &Range<usize>) -> Range<usize> {
        r.start.div_ceil(self.size)..r.end.div_ceil(self.size)
    }

    /// Whether block `b` lies wholly in `r`.
    fn inside(&self, b: usize, r: &Range<usize>) -> bool {
        let rows = self.block_rows(b);
        rows.start >= r.start && rows.end <= r.end
    }

    /// Rows of `r` that belong to blocks straddling its edges, in order (what its rank sends
    /// to the owners of those blocks).
    fn shared_rows(&self, r: &Range<usize>) -> Vec<usize> {
        let mut rows = Vec::new();
        for b in self.blocks_touched(r) {
            if !self.inside(b, r) {
                let own = self.block_rows(b);
                rows.extend(own.start.max(r.start)..own.end.min(r.end));
            }
        }
        rows
    }

    /// The owned block that continues past the end of `r` (its owner sends the decision).
    fn open_tail(&self, r: &Range<usize>) -> Option<usize> {
        self.blocks_owned(r)
            .last()
            .filter(|&b| self.block_rows(b).end > r.end)
    }

    /// The block at the start of `r` owned by an earlier rank.
    fn borrowed_head(&self, r: &Range<usize>) -> Option<usize> {
        (!r.is_empty() && !r.start.is_multiple_of(self.size)).then_some(r.start / self.size)
    }
}

/// The blocks of one layer that this rank owns.
pub struct LayerBlocks {
    layout: Layout,
    rank: usize,
    cols: usize,
    /// Candidates among the owned blocks, `[owned block, column]`.
    exists: Vec<bool>,
    /// Scores of the candidates (`f32` bits, which order like the norms), in
    /// (block, column) order.
    pub scores: Vec<u32>,
}

impl LayerBlocks {
    /// Scores the blocks this rank owns of a layer with `rows` rows in all, of which this
    /// rank holds `shard` and every rank `ranges`. Every rank of `comm` must call it (it
    /// exchanges the rows of straddling blocks).
    pub fn score<C: Comm>(
        comm: &C,
        shard: &Weights,
        ranges: Vec<Range<usize>>,
        rows: usize,
        size: usize,
    ) -> Self {
        let layout = Layout {
            size: size.max(1),
            rows,
            ranges,
        };
        let (rank, cols) = (comm.rank(), shard.cols());
        let mine = layout.ranges[rank].clone();
        // Rows of straddling blocks, from every rank: values and which connections exist.
        let shared: Vec<Vec<usize>> = layout
            .ranges
            .iter()
            .map(|r| layout.shared_rows(r))
            .collect();
        let counts: Vec<usize> = shared.iter().map(|s| s.len() * cols).collect();
        let (mut values, mut present) = (Vec::new(), Vec::new());
        for &g in &shared[rank] {
            let (mut v, mut p) = (vec![0.0f32; cols], vec![0u8; cols]);
            shard.for_each_in_row(g - mine.start, |j, w| (v[j], p[j]) = (w, 1));
            values.extend(v);
            present.extend(p);
        }
        let total: usize = counts.iter().sum();
        let (mut all_values, mut all_present) = (vec![0.0f32; total], vec![0u8; total]);
        comm.all_gather_varcount(&values, &mut all_values, &counts);
        comm.all_gather_varcount(&present, &mut all_present, &counts);
        let from_others: Vec<usize> = shared.iter().flatten().copied().collect();
        let received = |g: usize| -> usize {
            from_others
                .iter()
                .position(|&s| s == g)
                .expect("a shared row of this block")
        };

        let owned = layout.blocks_owned(&mine);
        let mut exists = vec![false; owned.len() * cols];
        let mut scores = Vec::new();
        // Sums of squares in row order, or for blocks of one the magnitude itself.
        let square = layout.size > 1;
        let (mut sum, mut here) = (vec![0.0f32; cols], vec![false; cols]);
        for (n, b) in owned.enumerate() {
            sum.fill(0.0);
            here.fill(false);
            for g in layout.block_rows(b) {
                let mut add = |j: usize, w: f32| {
                    sum[j] = if square {
                        w.mul_add(w, sum[j])
                    } else {
                        w.abs()
                    };
                    here[j] = true;
                };
                if mine.contains(&g) {
                    shard.for_each_in_row(g - mine.start, &mut add);
                } else {
                    let at = received(g) * cols;
                    for j in 0..cols {
                        if all_present[at + j] != 0 {
                            add(j, all_values[at + j]);
                        }
                    }
                }
            }
            for j in 0..cols {
                if here[j] {
                    exists[n * cols + j] = true;
                    scores.push(if square { sum[j].sqrt() } else { sum[j] }.to_bits());
                }
            }
        }
        LayerBlocks {
            layout,
            rank,
            cols,
            exists,
            scores,
        }
    }

    /// Blocks of the whole layer (`ceil(rows / size) · cols`), candidates or not.
    pub fn total(&self) -> usize {
        self.layout.rows.div_ceil(self.layout.size) * self.cols
    }

    /// One flag per connection of `shard` (row-major over stored entries), given the
    /// decision for every score. Every rank of `comm` must call it (owners send the
    /// decisions on blocks that straddle ranks).
    pub fn connection_flags<C: Comm>(&self, comm: &C, shard: &Weights, keep: &[bool]) -> Vec<bool> {
        assert_eq!(
            keep.len(),
            self.scores.len(),
            "one decision per candidate block"
        );
        let cols = self.cols;
        let mut decided = vec![false; self.exists.len()];
        let mut next = keep.iter();
        for (d, &e) in decided.iter_mut().zip(&self.exists) {
            if e {
                *d = *next.next().expect("a decision per candidate");
            }
        }
        let layout = &self.layout;
        let mine = &layout.ranges[self.rank];
        let owned = layout.blocks_owned(mine);
        let tails: Vec<Option<usize>> = layout.ranges.iter().map(|r| layout.open_tail(r)).collect();
        let counts: Vec<usize> = tails.iter().map(|t| t.map_or(0, |_| cols)).collect();
        let send: Vec<u8> = match tails[self.rank] {
            Some(b) => {
                let n = b - owned.start;
                decided[n * cols..(n + 1) * cols]
                    .iter()
                    .map(|&k| k as u8)
                    .collect()
            }
            None => Vec::new(),
        };
        let mut all = vec![0u8; counts.iter().sum()];
        comm.all_gather_varcount(&send, &mut all, &counts);
        let head: Option<Vec<bool>> = layout.borrowed_head(mine).map(|b| {
            let owner = tails
                .iter()
                .position(|&t| t == Some(b))
                .expect("the owner of a straddling block sends its decision");
            let at: usize = counts[..owner].iter().sum();
            all[at..at + cols].iter().map(|&k| k != 0).collect()
        });

        let mut flags = Vec::with_capacity(shard.stored());
        for g in mine.clone() {
            let b = g / layout.size;
            let row: &[bool] = if owned.contains(&b) {
                let n = b - owned.start;
                &decided[n * cols..(n + 1) * cols]
            } else {
                head.as_deref().expect("the borrowed block's decision")
            };
            shard.for_each_in_row(g - mine.start, |j, _| flags.push(row[j]));
        }
        flags
    }
}
