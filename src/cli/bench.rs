//! `nnmpi bench`: time forward passes or training steps of a synthetic network, as a table or
//! JSON, with the share of the time spent in communication. Run under mpirun for scaling.

use super::context::Ctx;
use anyhow::{Result, bail};
use clap::Args;
use nnmpi::dist::{Comm, Partition, Timed, Topology};
use nnmpi::exec::Engine;
use nnmpi::model::{Activation, Format, Init, Network, UniformStream};
use nnmpi::prune::{Scope, Target, prune_network};
use nnmpi::train::{Loss, OptimizerConfig, TrainConfig, Trainer};
use serde::Serialize;
use std::time::Instant;

/// Flags of `nnmpi bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Layer sizes, inputs first.
    #[arg(long, value_delimiter = ',', default_value = "4096,4096,4096")]
    pub layers: Vec<usize>,
    /// Samples per batch (the whole job's; data-parallel groups share it).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// predict (forward passes) or train (forward, backward and an SGD update).
    #[arg(long, default_value = "predict", value_parser = ["predict", "train"])]
    pub mode: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Untimed repetitions first (buffers, caches, MPI connections).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Hidden activation.
    #[arg(long, default_value = "relu")]
    pub activation: Activation,
    /// Prune every layer to this fraction of absent connections first (magnitude, per layer).
    #[arg(long, default_value_t = 0.0)]
    pub sparsity: f64,
    /// How the (pruned) layers are stored and run: auto (sparse below the measured crossover density), dense or sparse.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints: one object per run.
#[derive(Serialize)]
struct Report<'a> {
    layers: &'a [usize],
    sparsity: f64,
    format: String,
    batch: usize,
    mode: &'a str,
    ranks: usize,
    grid: String,
    threads_per_rank: usize,
    reps: usize,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    samples_per_sec: f64,
    gflops: f64,
    comm_share: f64,
    weight_bytes: usize,
    dense_weight_bytes: usize,
}

/// One timed repetition: wall seconds (slowest rank) and this rank's seconds in collectives.
struct Rep {
    seconds: f64,
    comm: f64,
}

/// Something to time once per repetition.
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

struct Train<C: Comm> {
    trainer: Trainer<C>,
    x: Vec<f32>,
    t: Vec<f32>,
    batch: usize,
}

impl<C: Comm> Work for Train<C> {
    fn run(&mut self) {
        self.trainer.step(&self.x, &self.t, self.batch);
    }
}

/// The layers' storage, e.g. `sparse,dense`.
fn formats(net: &Network) -> String {
    let names: Vec<&str> = net
        .layers()
        .iter()
        .map(|l| {
            if l.weights().is_sparse() {
                "sparse"
            } else {
                "dense"
            }
        })
        .collect();
    names.join(",")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `nnmpi bench` on every rank.
pub fn run<C: Comm>(ctx: &Ctx<C>, args: &BenchArgs) -> Result<()> {
    if args.layers.contains(&0) {
        bail!(
            "--layers {:?}: every layer needs at least one neuron",
            args.layers
        );
    }
    if args.batch == 0 || args.reps == 0 {
        bail!("--batch and --reps must be at least 1");
    }
    let grid = ctx.topology.grid();
    let timed = Topology::new(Timed::new(ctx.world().clone()), grid)?;
    if !(0.0..1.0).contains(&args.sparsity) {
        bail!("--sparsity {} must be in [0, 1)", args.sparsity);
    }
    let mut net = Network::new(
        &args.layers,
        args.activation,
        Activation::Identity,
        Init::He,
        42,
    )?;
    if args.sparsity > 0.0 {
        net = prune_network(&net, Target::Sparsity(args.sparsity), Scope::Layer);
    }
    let net = net.with_format(args.format);
    let (inputs, outputs) = (net.inputs(), net.outputs());
    let mine = Partition::share(args.batch, grid.data, timed.data.rank());
    let b = mine.len();
    let mut rng = UniformStream::new(7, 1);
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_symmetric(1.0)).collect() };
    let x = random(inputs * b);
    let clock = timed.world.clone();
    let mut work: Box<dyn Work> = if args.mode == "train" {
        let config = TrainConfig {
            epochs: 1,
            batch_size: args.batch,
            loss: Loss::Mse,
            optimizer: OptimizerConfig::sgd(1e-4),
            seed: 42,
            patience: None,
            shuffle: false,
        };
        Box::new(Train {
            trainer: Trainer::distributed(&net, config, ctx.par, &timed)?,
            t: random(outputs * b),
            x,
            batch: args.batch,
        })
    } else {
        Box::new(Predict {
            engine: Engine::sharded(&net, timed.model.clone(), ctx.par),
            x,
            b,
        })
    };
    for _ in 0..args.warmup {
        work.run();
    }
    let mut reps = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        ctx.world().barrier();
        clock.reset();
        let start = Instant::now();
        work.run();
        let comm = clock.seconds();
        ctx.world().barrier();
        reps.push(Rep {
            seconds: start.elapsed().as_secs_f64(),
            comm,
        });
    }
    // The slowest rank's time, and the mean over ranks of the communication share.
    let mut shares: Vec<f64> = reps.iter().map(|r| r.comm / r.seconds).collect();
    ctx.world().all_reduce_sum(&mut shares);
    let ranks = ctx.world().size() as f64;
    let mut shares: Vec<f64> = shares.iter().map(|s| s / ranks).collect();
    let mut times: Vec<f64> = reps.iter().map(|r| r.seconds).collect();
    let (min, max) = (
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    let time = median(&mut times);
    let share = median(&mut shares);
    let macs = net.macs_per_sample() as f64;
    let first = net.layers()[0].weights().stored() as f64;
    let flops_per_sample = if args.mode == "train" {
        2.0 * (3.0 * macs - first)
    } else {
        2.0 * macs
    };
    let batch = args.batch as f64;
    let weight_bytes: usize = net
        .layers()
        .iter()
        .map(|l| l.weights().bytes() + l.outputs() * 4)
        .sum();
    let dense_bytes: usize = net
        .layers()
        .iter()
        .map(|l| (l.inputs() + 1) * l.outputs() * 4)
        .sum();
    let gflops = flops_per_sample * batch / time / 1e9;
    if !ctx.is_root() {
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let shape: Vec<String> = args.layers.iter().map(usize::to_string).collect();
    if args.json {
        let report = Report {
            layers: &args.layers,
            sparsity: args.sparsity,
            format: formats(&net),
            batch: args.batch,
            mode: &args.mode,
            ranks: ctx.world().size(),
            grid: grid.to_string(),
            threads_per_rank: threads,
            reps: args.reps,
            median_ms: time * 1e3,
            min_ms: min * 1e3,
            max_ms: max * 1e3,
            samples_per_sec: batch / time,
            gflops,
            comm_share: share,
            weight_bytes,
            dense_weight_bytes: dense_bytes,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "nnmpi bench: {} {} ({}, sparsity {}), batch {}, {} rank(s) (grid {grid}) x {threads} thread(s), {} reps",
            args.mode,
            shape.join("-"),
            formats(&net),
            args.sparsity,
            args.batch,
            ctx.world().size(),
            args.reps
        );
        println!(
            "  time/batch  {:.3} ms median (min {:.3}, max {:.3})",
            time * 1e3,
            min * 1e3,
            max * 1e3
        );
        println!("  samples/s   {:.0}", batch / time);
        println!("  GFLOP/s     {gflops:.1}");
        println!(
            "  parameters  {weight_bytes} bytes in memory ({:.1}% of the {dense_bytes} dense)",
            100.0 * weight_bytes as f64 / dense_bytes as f64
        );
        println!(
            "  comm        {:.1}% of the time (median over reps, mean over ranks)",
            100.0 * share
        );
    }
    Ok(())
}
