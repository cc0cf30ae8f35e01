//! Timing on synthetic networks (`nnmpi bench`): forward passes, training steps and whole
//! training epochs, with the share of the time spent in communication. (The scaling sweeps of
//! `nnmpi bench --sweep`, which start `mpirun` and draw plots, belong to the command line.)
//!
//! A repetition runs the work `inner` times (enough to last about 10 ms when not given, so
//! a 60-3-1 forward pass of a fraction of a microsecond is timed over many calls); the
//! reported time is the median over repetitions of the time per call, taken on the slowest
//! rank (repetitions start and end with a barrier).

pub mod cost;

use crate::cluster::{Comm, Grid, Partition, Timed, Topology, check_memory};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::exec::Engine;
use crate::kernels::Par;
use crate::model::{Activation, Format, Init, Network, UniformStream, shape_of};
use crate::prune::{Pruning, Scope, Target, prune_network};
use crate::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer, memory};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// What one call of the timed work does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A forward pass of one batch.
    Predict,
    /// One optimisation step (forward, backward, SGD update) on one batch.
    Train,
    /// A training epoch over `samples` synthetic samples in batches (softmax cross-entropy).
    Epoch,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "predict" => Ok(Mode::Predict),
            "train" => Ok(Mode::Train),
            "epoch" => Ok(Mode::Epoch),
            _ => Err(format!("'{s}' is not predict, train or epoch")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Predict => "predict",
            Mode::Train => "train",
            Mode::Epoch => "epoch",
        })
    }
}

/// One benchmark: the network, the work and how often to time it.
#[derive(Clone, Debug)]
pub struct Case {
    /// Layer sizes, inputs first.
    pub layers: Vec<usize>,
    /// Samples per batch (the whole job's).
    pub batch: usize,
    /// The work.
    pub mode: Mode,
    /// Hidden activation.
    pub activation: Activation,
    /// Output activation (`Mode::Epoch` always uses softmax).
    pub output: Activation,
    /// Fraction of every layer's connections pruned first (magnitude, per layer).
    pub sparsity: f64,
    /// Rows per pruned block (1: single connections; see `prune::Pruning::block`).
    pub block: usize,
    /// How the layers are stored.
    pub format: Format,
    /// Timed repetitions.
    pub reps: usize,
    /// Untimed repetitions first.
    pub warmup: usize,
    /// Samples of the synthetic epoch (`Mode::Epoch`).
    pub samples: usize,
    /// Calls per repetition; `None` calibrates it to about 10 ms.
    pub inner: Option<usize>,
}

impl Case {
    /// Checks the numbers a user gave.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, m: String| Err(Error::parameter(name, m));
        if self.layers.len() < 2 || self.layers.contains(&0) {
            return bad(
                "layers",
                format!(
                    "{:?}: give at least inputs and outputs, every layer at least one neuron",
                    self.layers
                ),
            );
        }
        for (name, v) in [
            ("batch", self.batch),
            ("reps", self.reps),
            ("samples", self.samples),
            ("block", self.block),
            ("inner", self.inner.unwrap_or(1)),
        ] {
            if v == 0 {
                return bad(name, "must be at least 1".into());
            }
        }
        if !(0.0..1.0).contains(&self.sparsity) {
            return bad("sparsity", format!("{} must be in [0, 1)", self.sparsity));
        }
        if self.mode == Mode::Epoch && self.layers.last() == Some(&1) {
            return bad(
                "mode",
                "epoch trains a classifier: give at least 2 outputs".into(),
            );
        }
        Ok(())
    }
}

/// What one benchmark measured (`--json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Layer sizes.
    pub layers: Vec<usize>,
    /// Fraction of pruned connections.
    pub sparsity: f64,
    /// Rows per pruned block.
    #[serde(default = "one")]
    pub block: usize,
    /// Storage of every layer, e.g. `sparse,dense`.
    pub format: String,
    /// Samples per batch.
    pub batch: usize,
    /// The work.
    pub mode: Mode,
    /// Ranks of the job.
    pub ranks: usize,
    /// Data × model grid.
    pub grid: String,
    /// Rayon threads per rank.
    pub threads_per_rank: usize,
    /// Timed repetitions.
    pub reps: usize,
    /// Calls per repetition.
    pub inner: usize,
    /// Median time of one call (a batch, a step or an epoch), milliseconds.
    pub median_ms: f64,
    /// Fastest repetition, per call.
    pub min_ms: f64,
    /// Slowest repetition, per call.
    pub max_ms: f64,
    /// Samples through the network per second.
    pub samples_per_sec: f64,
    /// Useful floating-point operations per second (2 per multiply-add on stored weights).
    pub gflops: f64,
    /// Median share of the time held up in collectives (mean over ranks): the collectives
    /// that ran while the computation went on (a data-parallel gradient sum behind the
    /// backward pass) are not in it.
    pub comm_share: f64,
    /// Median share of the time in collectives that ran while the computation went on (mean
    /// over ranks).
    #[serde(default)]
    pub overlapped_share: f64,
    /// Bytes of weights and biases in memory.
    pub weight_bytes: usize,
    /// Bytes the same layers take dense.
    pub dense_weight_bytes: usize,
}

/// Something to time, once per call.
trait Work {
    fn run(&mut self);
}

struct Predict<C: Comm> {
    engine: Engine<C>,
    x: Vec<f32>,
    b: usize,
}

impl<C: Comm> Work for Predict<C> {
    fn run(&mut self) {
        if self.b > 0 {
            self.engine.forward(&self.x, self.b);
        }
    }
}

struct Step<C: Comm> {
    trainer: Trainer<C>,
    x: Vec<f32>,
    t: Vec<f32>,
    batch: usize,
}

impl<C: Comm> Work for Step<C> {
    fn run(&mut self) {
        self.trainer.step(&self.x, &self.t, self.batch);
    }
}

struct Epoch<C: Comm> {
    trainer: Trainer<C>,
    data: Dataset,
}

impl<C: Comm> Work for Epoch<C> {
    fn run(&mut self) {
        // Synthetic data cannot diverge at this learning rate; a failure is a bug.
        self.trainer
            .run_epoch(&self.data, &mut Silent)
            .expect("a synthetic epoch trains");
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The layers' storage, e.g. `sparse,dense`.
pub fn formats(net: &Network) -> String {
    let names: Vec<String> = net
        .layers()
        .iter()
        .map(|l| l.weights().format().to_string())
        .collect();
    names.join(",")
}

/// The synthetic network of `case` (He initialisation, seed 42, pruned as asked).
pub fn network(case: &Case) -> Result<Network> {
    let output = match case.mode {
        Mode::Epoch => Activation::Softmax,
        _ => case.output,
    };
    let mut net = Network::new(&case.layers, case.activation, output, Init::He, 42)?;
    if case.sparsity > 0.0 {
        let rule = Pruning::connections(Target::Sparsity(case.sparsity), Scope::Layer);
        net = prune_network(&net, rule.in_blocks(case.block));
    }
    Ok(net.with_format(case.format))
}

/// Bytes one rank needs for `case` on `grid`: the network and its buffers, the training
/// state (Adam's, the largest) and an epoch's synthetic data.
fn case_memory(case: &Case, grid: Grid) -> u64 {
    let sizes = &case.layers;
    match case.mode {
        Mode::Predict => memory::forward(sizes, case.batch, grid.model),
        _ => {
            let data = match case.mode {
                Mode::Epoch => ((sizes[0] + sizes[sizes.len() - 1]) as u64)
                    .saturating_mul(case.samples as u64)
                    .saturating_mul(4),
                _ => 0,
            };
            let adam = OptimizerConfig::adam(1e-3);
            memory::training(sizes, adam, false, case.batch, grid.data, grid.model)
                .saturating_add(data)
        }
    }
}

/// Runs `case` on every rank of `world` arranged as `grid`, with the current rayon pool.
/// Rank 0 gets the report.
pub fn measure<C: Comm>(world: &C, grid: Grid, par: Par, case: &Case) -> Result<Option<Report>> {
    case.validate()?;
    check_memory(
        &format!("the benchmark's {} network", shape_of(&case.layers)),
        case_memory(case, grid),
    )?;
    let timed = Topology::new(Timed::new(world.clone()), grid)?;
    let net = network(case)?;
    let (inputs, outputs) = (net.inputs(), net.outputs());
    let mine = Partition::share(case.batch, grid.data, timed.data.rank());
    let b = mine.len();
    let mut rng = UniformStream::new(7, 1);
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_symmetric(1.0)).collect() };
    let config = |loss| TrainConfig {
        epochs: usize::MAX,
        batch_size: case.batch,
        loss,
        optimizer: OptimizerConfig::sgd(1e-4),
        seed: 42,
        patience: None,
        shuffle: false,
    };
    let clock = timed.world.clone();
    let mut work: Box<dyn Work> = match case.mode {
        Mode::Predict => Box::new(Predict {
            engine: Engine::sharded(&net, timed.model.clone(), par).for_inference(),
            x: random(inputs * b),
            b,
        }),
        Mode::Train => Box::new(Step {
            trainer: Trainer::distributed(&net, config(Loss::Mse), par, &timed)?,
            x: random(inputs * b),
            t: random(outputs * b),
            batch: case.batch,
        }),
        Mode::Epoch => {
            let features =
                Array2::from_shape_vec((inputs, case.samples), random(inputs * case.samples))
                    .expect("[inputs, samples]");
            let ids = (0..case.samples)
                .map(|i| (i * 7919 % outputs) as u32)
                .collect();
            let data = Dataset {
                features: features.into(),
                targets: Targets::Classes(ids),
                classes: (0..outputs).map(|c| c.to_string()).collect(),
                origin: "synthetic".into(),
            };
            Box::new(Epoch {
                trainer: Trainer::distributed(
                    &net,
                    config(Loss::SoftmaxCrossEntropy),
                    par,
                    &timed,
                )?,
                data,
            })
        }
    };
    for _ in 0..case.warmup {
        work.run();
    }
    let inner = match (case.inner, case.mode) {
        (Some(n), _) => n,
        (None, Mode::Epoch) => 1,
        (None, _) => {
            let start = Instant::now();
            work.run();
            let once = start.elapsed().as_secs_f64().max(1e-9);
            // Every rank must run the same number of calls: take the mean of their wishes.
            let mut wish = [(0.01 / once).ceil().clamp(1.0, 1e6)];
            world.all_reduce_sum(&mut wish);
            (wish[0] / world.size() as f64).ceil() as usize
        }
    };
    let mut times = Vec::with_capacity(case.reps);
    let (mut shares, mut hidden) = (times.clone(), times.clone());
    for _ in 0..case.reps {
        world.barrier();
        clock.reset();
        let start = Instant::now();
        for _ in 0..inner {
            work.run();
        }
        let comm = clock.tally().read();
        world.barrier();
        let seconds = start.elapsed().as_secs_f64();
        times.push(seconds / inner as f64);
        shares.push(comm.visible_seconds() / seconds);
        hidden.push(comm.overlapped_seconds / seconds);
    }
    world.all_reduce_sum(&mut shares);
    world.all_reduce_sum(&mut hidden);
    let ranks = world.size();
    let mean_over_ranks =
        |v: Vec<f64>| -> Vec<f64> { v.iter().map(|s| s / ranks as f64).collect() };
    let (mut shares, mut hidden) = (mean_over_ranks(shares), mean_over_ranks(hidden));
    let (min, max) = (
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    let time = median(&mut times);
    if world.rank() != 0 {
        return Ok(None);
    }
    let macs = net.macs_per_sample() as f64;
    let first = net.layers()[0].weights().stored() as f64;
    let flops_per_sample = match case.mode {
        Mode::Predict => 2.0 * macs,
        Mode::Train | Mode::Epoch => 2.0 * (3.0 * macs - first),
    };
    let samples = match case.mode {
        Mode::Epoch => case.samples,
        _ => case.batch,
    } as f64;
    let layer_bytes = |dense: bool| -> usize {
        net.layers()
            .iter()
            .map(|l| {
                let w = if dense {
                    l.inputs() * l.outputs() * 4
                } else {
                    l.weights().bytes()
                };
                w + l.outputs() * 4
            })
            .sum()
    };
    Ok(Some(Report {
        layers: case.layers.clone(),
        sparsity: case.sparsity,
        block: case.block,
        format: formats(&net),
        batch: case.batch,
        mode: case.mode,
        ranks,
        grid: grid.to_string(),
        threads_per_rank: par.degree(),
        reps: case.reps,
        inner,
        median_ms: time * 1e3,
        min_ms: min * 1e3,
        max_ms: max * 1e3,
        samples_per_sec: samples / time,
        gflops: flops_per_sample * samples / time / 1e9,
        comm_share: median(&mut shares),
        overlapped_share: median(&mut hidden),
        weight_bytes: layer_bytes(false),
        dense_weight_bytes: layer_bytes(true),
    }))
}

/// Reports written before blocks existed pruned single connections.
fn one() -> usize {
    1
}

impl fmt::Display for Report {
    /// The human-readable table of `nnmpi bench`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        writeln!(
            f,
            "nnmpi bench: {} {} ({}, sparsity {}{}), batch {}, {} rank(s) (grid {}) x {} thread(s), {} reps x {} calls",
            self.mode,
            shape.join("-"),
            self.format,
            self.sparsity,
            if self.block > 1 {
                format!(" in {}-row blocks", self.block)
            } else {
                String::new()
            },
            self.batch,
            self.ranks,
            self.grid,
            self.threads_per_rank,
            self.reps,
            self.inner
        )?;
        let what = match self.mode {
            Mode::Predict => "time/batch",
            Mode::Train => "time/step ",
            Mode::Epoch => "time/epoch",
        };
        writeln!(
            f,
            "  {what}  {} median (min {}, max {})",
            duration(self.median_ms),
            duration(self.min_ms),
            duration(self.max_ms)
        )?;
        writeln!(f, "  samples/s   {:.0}", self.samples_per_sec)?;
        writeln!(f, "  GFLOP/s     {:.1}", self.gflops)?;
        writeln!(
            f,
            "  parameters  {} bytes in memory ({:.1}% of the {} dense)",
            self.weight_bytes,
            100.0 * self.weight_bytes as f64 / self.dense_weight_bytes as f64,
            self.dense_weight_bytes
        )?;
        write!(
            f,
            "  comm        {:.1}% of the time (median over reps, mean over ranks)",
            100.0 * self.comm_share
        )?;
        if self.overlapped_share > 0.0 {
            write!(
                f,
                "\n  overlapped  {:.1}% of the time in collectives while the backward pass went on",
                100.0 * self.overlapped_share
            )?;
        }
        Ok(())
    }
}

/// `ms` milliseconds in the unit that reads best.
pub fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.3} s", ms / 1e3)
    } else if ms >= 1.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{:.3} µs", ms * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SelfComm;

    fn case(mode: Mode, layers: Vec<usize>) -> Case {
        Case {
            layers,
            batch: 8,
            mode,
            activation: Activation::Relu,
            output: Activation::Identity,
            sparsity: 0.5,
            block: 1,
            format: Format::Sparse,
            reps: 3,
            warmup: 1,
            samples: 40,
            inner: None,
        }
    }

    #[test]
    fn every_mode_reports_consistent_figures() {
        for mode in [Mode::Predict, Mode::Train, Mode::Epoch] {
            let c = case(mode, vec![6, 5, 3]);
            let r = measure(&SelfComm, Grid::model(1), Par::Seq, &c)
                .expect("measures")
                .expect("rank 0 reports");
            assert_eq!(
                (r.mode, r.ranks, r.format.as_str()),
                (mode, 1, "sparse,sparse")
            );
            let samples = if mode == Mode::Epoch { 40.0 } else { 8.0 };
            let rate = samples / (r.median_ms / 1e3);
            assert!((r.samples_per_sec - rate).abs() <= 1e-6 * rate, "{r:?}");
            assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
            assert!(r.weight_bytes < r.dense_weight_bytes, "{r:?}");
            assert_eq!(r.dense_weight_bytes, (6 * 5 + 5 + 5 * 3 + 3) * 4);
            if mode == Mode::Epoch {
                assert_eq!(r.inner, 1);
            }
        }
    }

    #[test]
    fn bad_cases_are_refused() {
        let bad = [
            case(Mode::Epoch, vec![6, 1]),
            case(Mode::Predict, vec![6]),
            case(Mode::Predict, vec![6, 0, 2]),
            Case {
                sparsity: 1.0,
                ..case(Mode::Predict, vec![6, 2])
            },
            Case {
                block: 0,
                ..case(Mode::Predict, vec![6, 2])
            },
            Case {
                inner: Some(0),
                ..case(Mode::Predict, vec![6, 2])
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
