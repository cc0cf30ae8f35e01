//! The cost model behind `nnmpi plan`: the time of one batch (a forward pass, or a training
//! step) of a dense network on a `D x M` grid of ranks, from a [`Calibration`] measured on the
//! user's machines by [`calibrate`] (`nnmpi bench --calibrate`).
//!
//! A rank's time is its compute plus its communication, one after the other. A data-parallel
//! step of a large model sums its gradients while the backward pass goes on, so its
//! communication is not all in the way; but the shared-memory sums are CPU work on the rank's
//! cores, and on one node they hid little of their cost (4096³, 2 ranks × 1 thread: the
//! visible share fell from 29% to 4% while the step gained 6%), so the model keeps the sum —
//! an upper bound on the step, and a communication share above what `bench` now reports as
//! visible:
//!
//! - **compute**: `flops * seconds_per_flop + parameters * seconds_per_parameter`, for the
//!   flops and parameters of the rank's share: the largest of the `M` row blocks of every layer
//!   and the largest of the `D` shares of the batch. The per-parameter term is what does not
//!   shrink with the batch (streaming the weights, the optimiser's update). Both are fitted to
//!   timed forward passes and training steps of one rank at two batch sizes.
//! - **communication**, with the α–β–γ model (α seconds per message step, β seconds per byte
//!   moved, γ seconds per byte reduced): forward, an all-gather of every layer's outputs among
//!   the `M` ranks of a model group; backward, a reduce-scatter of every layer's input
//!   gradients but the first's; per training step, an all-reduce of the rank's gradients among
//!   the `D` groups. For `p` ranks and `n` bytes (the whole gathered or reduced vector), with
//!   `L = ⌈log2 p⌉` and `f = (p-1)/p`: an all-gather takes `L α + f n β`, a reduce-scatter
//!   `L α + f n (β + γ)`, an all-reduce `2 L α + f n (2 β + γ)` (recursive doubling and
//!   Rabenseifner's algorithm, which MPI libraries use for large messages; Thakur, Rabenseifner
//!   and Gropp, 2005).
//!
//! What it leaves out: the few scalars a step reduces besides the gradients, a network of two
//! levels (a node's ranks talk faster among themselves than across nodes: one α and β cover
//! both), contention between collectives of different groups, and compute rates that change
//! with the shape of the product (narrow shards of small layers run below the calibrated rate).

use super::{Case, Mode, measure};
use crate::cluster::{Comm, Grid, SelfComm};
use crate::error::{Error, Result};
use crate::kernels::Par;
use crate::model::{Activation, Format};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The compute time of one rank as a function of its work.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeRate {
    /// Seconds per floating-point operation of the products.
    pub seconds_per_flop: f64,
    /// Seconds per parameter held, per call, whatever the batch.
    pub seconds_per_parameter: f64,
}

/// The network between ranks in the α–β–γ model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlphaBeta {
    /// Seconds per message step (latency).
    pub alpha: f64,
    /// Seconds per byte moved (the inverse of the bandwidth).
    pub beta: f64,
    /// Seconds per byte summed by a reduction (memory traffic and adds).
    pub gamma: f64,
}

/// A collective the cost model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Collective {
    /// Every rank gets every rank's block.
    AllGather,
    /// Every rank gets its block of the sum.
    ReduceScatter,
    /// Every rank gets the whole sum.
    AllReduce,
}

impl Collective {
    /// The multipliers of α, β and γ for `p` ranks and `n` bytes.
    fn terms(self, p: usize, n: f64) -> [f64; 3] {
        if p <= 1 {
            return [0.0; 3];
        }
        let (l, fnb) = (log2_ceil(p), (p - 1) as f64 / p as f64 * n);
        match self {
            Collective::AllGather => [l, fnb, 0.0],
            Collective::ReduceScatter => [l, fnb, fnb],
            Collective::AllReduce => [2.0 * l, 2.0 * fnb, fnb],
        }
    }
}

/// What [`calibrate`] measured: everything the cost model needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The network the compute rates were timed on.
    pub layers: Vec<usize>,
    /// Its batch (and a quarter of it).
    pub batch: usize,
    /// Ranks that were timed at once (the slowest counts).
    pub ranks: usize,
    /// Rayon threads per rank.
    pub threads_per_rank: usize,
    /// Forward passes.
    pub predict: ComputeRate,
    /// Training steps (forward, backward, SGD update).
    pub train: ComputeRate,
    /// The network between the ranks (`None` when calibrated on one rank).
    pub network: Option<AlphaBeta>,
    /// The collectives timed: (kind, ranks, bytes in all, seconds).
    pub collectives: Vec<(Collective, usize, usize, f64)>,
}

/// The predicted time of one batch on one grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The grid.
    pub grid: Grid,
    /// Seconds computing.
    pub compute: f64,
    /// Seconds in the model group's all-gathers and reduce-scatters.
    pub model_comm: f64,
    /// Seconds in the gradients' all-reduce between data groups.
    pub data_comm: f64,
    /// Bytes this rank passes into collectives per batch.
    pub bytes: f64,
}

impl Estimate {
    /// Seconds per batch.
    pub fn total(&self) -> f64 {
        self.compute + self.model_comm + self.data_comm
    }

    /// Share of the time in communication.
    pub fn comm_share(&self) -> f64 {
        (self.model_comm + self.data_comm) / self.total()
    }
}

fn log2_ceil(p: usize) -> f64 {
    (p.max(1) as f64).log2().ceil()
}

impl AlphaBeta {
    /// The predicted seconds of `collective` on `p` ranks over `bytes` in all.
    pub fn time(&self, collective: Collective, p: usize, bytes: f64) -> f64 {
        let [a, b, c] = collective.terms(p, bytes);
        a * self.alpha + b * self.beta + c * self.gamma
    }

    /// The α, β and γ (none below zero) that fit timed collectives best, by least squares on
    /// the relative error (small and large messages count alike): `samples` are
    /// (collective, ranks, bytes, seconds).
    pub fn fit(samples: &[(Collective, usize, f64, f64)]) -> Result<Self> {
        let rows: Vec<([f64; 3], f64)> = samples
            .iter()
            .filter(|s| s.1 >= 2 && s.3 > 0.0)
            .map(|&(c, p, n, t)| (c.terms(p, n).map(|x| x / t), 1.0))
            .collect();
        // Non-negative least squares by trying every subset of the three parameters: the
        // best fit with all of them at or above zero.
        let mut best: Option<([f64; 3], f64)> = None;
        for mask in 1u8..8 {
            let free: Vec<usize> = (0..3).filter(|i| mask >> i & 1 == 1).collect();
            let Some(x) = least_squares(&rows, &free) else {
                continue;
            };
            if x.iter().any(|&v| v < 0.0) {
                continue;
            }
            let residual: f64 = rows
                .iter()
                .map(|(a, y)| (a[0] * x[0] + a[1] * x[1] + a[2] * x[2] - y).powi(2))
                .sum();
            if best.is_none_or(|(_, r)| residual < r) {
                best = Some((x, residual));
            }
        }
        match best {
            Some(([alpha, beta, gamma], _)) if beta > 0.0 => Ok(AlphaBeta { alpha, beta, gamma }),
            _ => Err(Error::parameter(
                "collectives",
                "too few timed collectives of different sizes on 2 ranks or more to fit a latency and a bandwidth",
            )),
        }
    }
}

/// The least-squares solution of `rows` (coefficients, value) over the parameters `free`
/// (the others zero), by the normal equations; `None` when they are singular.
fn least_squares(rows: &[([f64; 3], f64)], free: &[usize]) -> Option<[f64; 3]> {
    let k = free.len();
    let mut m = vec![vec![0.0; k + 1]; k];
    for (a, y) in rows {
        for (i, &fi) in free.iter().enumerate() {
            for (j, &fj) in free.iter().enumerate() {
                m[i][j] += a[fi] * a[fj];
            }
            m[i][k] += a[fi] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..k {
        let pivot = (col..k).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))?;
        m.swap(col, pivot);
        let scale = m.iter().map(|r| r[col].abs()).fold(0.0, f64::max);
        if m[col][col].abs() <= 1e-12 * scale || m[col][col] == 0.0 {
            return None;
        }
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / pivot_row[col];
                for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= factor * p;
                }
            }
        }
    }
    let mut x = [0.0; 3];
    for (i, &fi) in free.iter().enumerate() {
        x[fi] = m[i][k] / m[i][i];
    }
    Some(x)
}

/// The work of one rank for one batch: products' flops and parameters held.
fn rank_work(layers: &[usize], batch: usize, grid: Grid, mode: Mode) -> (f64, f64) {
    let b = batch.div_ceil(grid.data) as f64;
    let (mut flops, mut params) = (0.0, 0.0);
    for (l, pair) in layers.windows(2).enumerate() {
        let (inputs, rows) = (pair[0] as f64, pair[1].div_ceil(grid.model) as f64);
        let macs = b * inputs * rows;
        flops += 2.0
            * match mode {
                Mode::Predict => macs,
                // Forward, weight gradients, input gradients (none for the first layer).
                _ if l == 0 => 2.0 * macs,
                _ => 3.0 * macs,
            };
        params += (inputs + 1.0) * rows;
    }
    (flops, params)
}

/// The predicted time of one batch of `batch` samples (`Mode::Predict`: a forward pass;
/// otherwise a training step) of the dense network `layers` on `grid`.
pub fn estimate(
    calibration: &Calibration,
    network: AlphaBeta,
    layers: &[usize],
    batch: usize,
    grid: Grid,
    mode: Mode,
) -> Estimate {
    let rate = match mode {
        Mode::Predict => calibration.predict,
        _ => calibration.train,
    };
    let (flops, params) = rank_work(layers, batch, grid, mode);
    let compute = flops * rate.seconds_per_flop + params * rate.seconds_per_parameter;
    let b = batch.div_ceil(grid.data) as f64;
    let m = grid.model;
    let mut model_comm = 0.0;
    let mut bytes = 0.0;
    if m > 1 {
        for (l, &n) in layers.iter().enumerate().skip(1) {
            let gathered = b * n as f64 * 4.0;
            model_comm += network.time(Collective::AllGather, m, gathered);
            bytes += gathered / m as f64;
            if mode != Mode::Predict && l >= 2 {
                let partial = b * layers[l - 1] as f64 * 4.0;
                model_comm += network.time(Collective::ReduceScatter, m, partial);
                bytes += partial;
            }
        }
    }
    let data_comm = if mode != Mode::Predict && grid.data > 1 {
        bytes += params * 4.0;
        network.time(Collective::AllReduce, grid.data, params * 4.0)
    } else {
        0.0
    };
    Estimate {
        grid,
        compute,
        model_comm,
        data_comm,
        bytes,
    }
}

/// Every grid `D x M` of `ranks` ranks whose data groups each get a sample of `batch`.
pub fn grids(ranks: usize, batch: usize) -> Vec<Grid> {
    (1..=ranks)
        .filter(|d| ranks.is_multiple_of(*d) && *d <= batch)
        .map(|d| Grid {
            data: d,
            model: ranks / d,
        })
        .collect()
}

/// Collective sizes timed by [`calibrate`], in f32 values per rank: 1 to 16M in steps of 4
/// (the largest, 64 MB per rank, is the size of a 4096-4096-4096 network's gradients).
const SIZES: [usize; 13] = [
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1 << 20,
    1 << 22,
    1 << 24,
];

/// The median over ranks' slowest of `reps` timed calls of `op`, each started together.
fn time_collective<C: Comm>(world: &C, reps: usize, mut op: impl FnMut()) -> f64 {
    op();
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        world.barrier();
        let start = Instant::now();
        op();
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    slowest(world, times[reps / 2])
}

/// The largest of every rank's `seconds` (the collective waits for the slowest rank).
fn slowest<C: Comm>(world: &C, seconds: f64) -> f64 {
    let mut all = vec![0.0; world.size()];
    world.all_gather_varcount(&[seconds], &mut all, &vec![1; world.size()]);
    all.into_iter().fold(0.0, f64::max)
}

/// Times one rank's forward passes and training steps of `layers` at `batch` and a quarter
/// of it, every rank at once, and fits its compute rates (the slowest rank's).
fn compute_rates<C: Comm>(
    world: &C,
    par: Par,
    layers: &[usize],
    batch: usize,
    reps: usize,
) -> Result<(ComputeRate, ComputeRate)> {
    let small = (batch / 4).max(1);
    let mut rates = Vec::new();
    for mode in [Mode::Predict, Mode::Train] {
        let mut times = Vec::new();
        for b in [batch, small] {
            let case = Case {
                layers: layers.to_vec(),
                batch: b,
                mode,
                activation: Activation::Relu,
                output: Activation::Identity,
                sparsity: 0.0,
                block: 1,
                format: Format::Dense,
                reps,
                warmup: 1,
                samples: 1,
                inner: None,
            };
            // Each rank alone (no communication), all ranks at the same time: the node's
            // memory and power are shared as in a real run.
            world.barrier();
            let alone = measure(&SelfComm, Grid::model(1), par, &case)?
                .expect("a single rank is its own root");
            times.push(slowest(world, alone.median_ms / 1e3));
        }
        let grid = Grid::model(1);
        let (f1, p) = rank_work(layers, batch, grid, mode);
        let (f2, _) = rank_work(layers, small, grid, mode);
        // The slope between the two batches; all of the time per flop when there is no
        // slope to take (batch 1) or noise made it flat.
        let slope = (times[0] - times[1]) / (f1 - f2);
        let per_flop = if f1 > f2 && slope > 0.0 {
            slope
        } else {
            times[0] / f1
        };
        let per_param = ((times[0] - f1 * per_flop) / p).max(0.0);
        rates.push(ComputeRate {
            seconds_per_flop: per_flop,
            seconds_per_parameter: per_param,
        });
    }
    Ok((rates[0], rates[1]))
}

/// Measures what the cost model needs on the ranks of `world`: each rank's compute rates on
/// the dense network `layers` at `batch` (and a quarter of it), and the latency and bandwidth
/// of all-gathers and all-reduces among all ranks (none on one rank). Every rank calls it;
/// every rank gets the same calibration.
pub fn calibrate<C: Comm>(
    world: &C,
    par: Par,
    layers: &[usize],
    batch: usize,
    reps: usize,
) -> Result<Calibration> {
    if reps == 0 {
        return Err(Error::parameter("reps", "must be at least 1"));
    }
    let (predict, train) = compute_rates(world, par, layers, batch, reps)?;
    let p = world.size();
    let mut collectives = Vec::new();
    if p > 1 {
        let reps = reps.max(5);
        for &n in &SIZES {
            let counts = vec![n; p];
            let whole = n * p;
            let mut block = vec![1.0f32; n];
            let mut all = vec![1.0f32; whole];
            let seconds = [
                (
                    Collective::AllGather,
                    time_collective(world, reps, || {
                        world.all_gather_varcount(&block, &mut all, &counts)
                    }),
                ),
                (
                    Collective::ReduceScatter,
                    time_collective(world, reps, || {
                        world.reduce_scatter_varcount(&all, &mut block, &counts)
                    }),
                ),
                (
                    Collective::AllReduce,
                    time_collective(world, reps, || world.all_reduce_sum(&mut all)),
                ),
            ];
            for (kind, t) in seconds {
                collectives.push((kind, p, whole * 4, t));
            }
        }
    }
    let samples: Vec<(Collective, usize, f64, f64)> = collectives
        .iter()
        .map(|&(kind, p, bytes, t)| (kind, p, bytes as f64, t))
        .collect();
    let network = (p > 1).then(|| AlphaBeta::fit(&samples)).transpose()?;
    Ok(Calibration {
        layers: layers.to_vec(),
        batch,
        ranks: p,
        threads_per_rank: par.degree(),
        predict,
        train,
        network,
        collectives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ThreadComm;

    fn calibration(alpha: f64, beta: f64) -> Calibration {
        Calibration {
            layers: vec![4, 4],
            batch: 4,
            ranks: 2,
            threads_per_rank: 1,
            predict: ComputeRate {
                seconds_per_flop: 1e-9,
                seconds_per_parameter: 1e-8,
            },
            train: ComputeRate {
                seconds_per_flop: 2e-9,
                seconds_per_parameter: 3e-8,
            },
            network: Some(AlphaBeta {
                alpha,
                beta,
                gamma: beta / 2.0,
            }),
            collectives: Vec::new(),
        }
    }

    #[test]
    fn the_fit_recovers_the_latency_bandwidth_and_reduction_rate_it_was_given() {
        let truth = AlphaBeta {
            alpha: 3e-6,
            beta: 1.0 / 5e9,
            gamma: 1.0 / 2e9,
        };
        let mut samples = Vec::new();
        for p in [2, 3, 4] {
            for bytes in [8.0, 800.0, 8e4, 8e6] {
                for c in [
                    Collective::AllGather,
                    Collective::ReduceScatter,
                    Collective::AllReduce,
                ] {
                    samples.push((c, p, bytes, truth.time(c, p, bytes)));
                }
            }
        }
        let fit = AlphaBeta::fit(&samples).unwrap();
        for (got, want) in [
            (fit.alpha, truth.alpha),
            (fit.beta, truth.beta),
            (fit.gamma, truth.gamma),
        ] {
            assert!((got / want - 1.0).abs() < 1e-6, "{fit:?}");
        }
        // Reductions that cost nothing more than moving: γ stays at zero, not below.
        let free = AlphaBeta {
            gamma: 0.0,
            ..truth
        };
        let noisy: Vec<_> = samples
            .iter()
            .enumerate()
            .map(|(i, &(c, p, n, _))| (c, p, n, free.time(c, p, n) * (1.0 + 0.01 * (i % 3) as f64)))
            .collect();
        let fit = AlphaBeta::fit(&noisy).unwrap();
        assert!(
            fit.gamma >= 0.0 && fit.alpha >= 0.0 && fit.beta > 0.0,
            "{fit:?}"
        );
        assert!(AlphaBeta::fit(&samples[..1]).is_err());
    }

    #[test]
    fn an_estimate_adds_up_by_hand() {
        let cal = calibration(1e-6, 1e-9);
        let net = cal.network.unwrap();
        let layers = [10, 6, 4];
        // alpha 1e-6, beta 1e-9, gamma 0.5e-9.
        // Predict, 1x2, batch 8: rows 3 and 2 per rank; flops 2*8*(10*3 + 6*2) = 672,
        // parameters 11*3 + 7*2 = 47; all-gathers of 8*6*4 = 192 and 8*4*4 = 128 bytes.
        let at = |data, model, mode| estimate(&cal, net, &layers, 8, Grid { data, model }, mode);
        let e = at(1, 2, Mode::Predict);
        assert!((e.compute - (672.0 * 1e-9 + 47.0 * 1e-8)).abs() < 1e-15);
        let gathers = 2.0 * 1e-6 + 0.5 * (192.0 + 128.0) * 1e-9;
        assert!((e.model_comm - gathers).abs() < 1e-15, "{e:?}");
        assert_eq!((e.data_comm, e.bytes), (0.0, 160.0));
        // Train, 2x1, batch 8: 4 samples per group; flops 2*4*(2*60 + 3*24) = 1536,
        // parameters 66 + 28 = 94; one all-reduce of 376 bytes between 2 groups.
        let e = at(2, 1, Mode::Train);
        assert!((e.compute - (1536.0 * 2e-9 + 94.0 * 3e-8)).abs() < 1e-15);
        assert_eq!(e.model_comm, 0.0);
        let all_reduce = 2.0 * 1e-6 + 188.0 * (2e-9 + 0.5e-9);
        assert!((e.data_comm - all_reduce).abs() < 1e-15, "{e:?}");
        // Train, 1x2, batch 8: the all-gathers above and a reduce-scatter of the second
        // layer's input gradients, 8*6*4 = 192 bytes.
        let e = at(1, 2, Mode::Train);
        let scatter = 1e-6 + 96.0 * (1e-9 + 0.5e-9);
        assert!((e.model_comm - (gathers + scatter)).abs() < 1e-15, "{e:?}");
        assert_eq!(e.bytes, 160.0 + 192.0);
        // One rank: no communication at all.
        let one = at(1, 1, Mode::Train);
        assert_eq!(one.model_comm + one.data_comm, 0.0);
    }

    #[test]
    fn grids_give_every_group_a_sample() {
        let shapes = |g: Vec<Grid>| g.iter().map(|g| (g.data, g.model)).collect::<Vec<_>>();
        assert_eq!(shapes(grids(4, 256)), [(1, 4), (2, 2), (4, 1)]);
        assert_eq!(shapes(grids(8, 2)), [(1, 8), (2, 4)]);
    }

    #[test]
    fn calibration_on_threads_fits_a_network_and_rates() {
        let cals = ThreadComm::run(2, |comm| calibrate(&comm, Par::Seq, &[32, 32, 8], 16, 3));
        for cal in cals {
            let cal = cal.unwrap();
            assert_eq!((cal.ranks, cal.collectives.len()), (2, 3 * SIZES.len()));
            let net = cal.network.unwrap();
            assert!(net.alpha >= 0.0 && net.beta > 0.0, "{net:?}");
            assert!(cal.predict.seconds_per_flop > 0.0 && cal.train.seconds_per_flop > 0.0);
        }
    }
}
