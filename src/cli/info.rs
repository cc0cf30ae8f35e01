//! `nnmpi info`: what a checkpoint holds, and how a network splits over ranks.

use super::Cli;
use super::context::Ctx;
use anyhow::{Result, bail};
use clap::Args;
use nnmpi::cluster::{Comm, Partition};
use nnmpi::exec::{Plan, Split};
use nnmpi::io::{Checkpoint, load};
use nnmpi::model::Task;
use std::path::PathBuf;

/// Flags of `nnmpi info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint to describe.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "layers",
        conflicts_with = "layers"
    )]
    pub model: Option<PathBuf>,
    /// Describe a network of these layer sizes instead (inputs first), e.g. 4096,4096,4096.
    #[arg(long, value_delimiter = ',', value_parser = super::ranges::at_least_one)]
    pub layers: Option<Vec<usize>>,
    /// Show how the network splits over N ranks (with --grid DxM or --parallel data: the grid of N ranks).
    #[arg(long, value_name = "N", value_parser = super::ranges::at_least_one)]
    pub ranks: Option<usize>,
    /// Samples per batch, for the communication volume per batch.
    #[arg(long, default_value_t = 256, value_parser = super::ranges::at_least_one)]
    pub batch_size: usize,
}

fn bytes(n: usize) -> String {
    nnmpi::cluster::human_bytes(n as u64)
}

/// Runs `nnmpi info` (on rank 0 only: it reads one file and prints).
pub fn run<C: Comm>(ctx: &Ctx<C>, cli: &Cli, args: &InfoArgs) -> Result<()> {
    if !ctx.is_root() {
        return Ok(());
    }
    let network = match (&args.model, &args.layers) {
        (Some(path), _) => {
            let ckpt = load(path)?;
            describe(path, &ckpt);
            Some(ckpt.model.network)
        }
        (None, Some(layers)) => {
            if layers.len() < 2 || layers.contains(&0) {
                bail!("--layers {layers:?}: give at least 2 sizes (inputs first), each at least 1");
            }
            describe_sizes(layers);
            None
        }
        (None, None) => bail!("give --model PATH or --layers SIZES"),
    };
    if let Some(ranks) = args.ranks {
        if ranks == 0 {
            bail!("--ranks must be at least 1");
        }
        let grid = cli.grid_for(ranks);
        if grid.ranks() != ranks {
            bail!(
                "--grid {grid} needs {} ranks, not --ranks {ranks}",
                grid.ranks()
            );
        }
        let plans = match &network {
            Some(net) => {
                [Split::Balanced, Split::Even].map(|s| Plan::for_network(net, grid.model, s))
            }
            None => {
                [0, 1].map(|_| Plan::new(args.layers.as_deref().unwrap_or_default(), grid.model))
            }
        };
        print_plan(&plans[0], grid, args.batch_size);
        if let Some(net) = &network {
            for (l, layer) in net.layers().iter().enumerate() {
                if layer.weights().is_sparse() {
                    println!(
                        "sparse layer {l}: largest / mean connections per rank {:.3} split by connections (used), {:.3} split by neuron counts",
                        plans[0].imbalance(l),
                        plans[1].imbalance(l)
                    );
                }
            }
        }
    }
    Ok(())
}

/// A dense network of these sizes: parameters, memory and work per sample.
fn describe_sizes(layers: &[usize]) {
    let shape: Vec<String> = layers.iter().map(usize::to_string).collect();
    let macs: usize = layers.windows(2).map(|p| p[0] * p[1]).sum();
    let parameters = macs + layers[1..].iter().sum::<usize>();
    println!("layers     {} (dense)", shape.join("-"));
    println!("parameters {parameters} ({} as f32)", bytes(4 * parameters));
    println!("forward pass: {macs} multiply-adds per sample");
}

/// The checkpoint's layers, task and training state.
fn describe(path: &std::path::Path, ckpt: &Checkpoint) {
    let net = &ckpt.model.network;
    let file_size = std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    println!("model     {} ({})", path.display(), bytes(file_size));
    println!("layers    {}", net.shape());
    match &ckpt.model.task {
        Task::Classification { classes } => println!(
            "task      classification, {} classes: {}",
            classes.len(),
            classes.join(", ")
        ),
        Task::Regression => println!("task      regression"),
    }
    println!("normalise {}", ckpt.model.normalizer.kind());
    println!();
    let row = |cells: [&str; 9]| {
        let [a, b, c, d, e, f, q, g, h] = cells;
        println!("{a:>5}  {b:>8}  {c:>8}  {d:<12} {e:<7} {f:>8}  {q:>9}  {g:>12}  {h:>10}")
    };
    row([
        "layer",
        "inputs",
        "neurons",
        "activation",
        "format",
        "sparsity",
        "quad rows",
        "parameters",
        "memory",
    ]);
    for (i, l) in net.layers().iter().enumerate() {
        let w = l.weights();
        row([
            &i.to_string(),
            &l.inputs().to_string(),
            &l.outputs().to_string(),
            &l.activation().to_string(),
            &w.format().to_string(),
            &format!("{:.1}%", 100.0 * (1.0 - l.density())),
            &w.quad_share()
                .map_or("-".into(), |q| format!("{:.0}%", 100.0 * q)),
            &l.parameter_count().to_string(),
            &bytes(w.bytes() + l.outputs() * 4),
        ]);
    }
    let total = net.parameter_count();
    let memory: usize = net
        .layers()
        .iter()
        .map(|l| l.weights().bytes() + l.outputs() * 4)
        .sum();
    row([
        "total",
        "",
        "",
        "",
        "",
        "",
        "",
        &total.to_string(),
        &bytes(memory),
    ]);
    println!(
        "\nforward pass: {} multiply-adds per sample",
        net.macs_per_sample()
    );
    if let Some(t) = &ckpt.training {
        let within = match &t.state.progress {
            Some(p) => format!(
                " and {} mini-batches of epoch {} (stopped by a signal; --resume continues it)",
                p.batches,
                t.state.epoch + 1
            ),
            None => String::new(),
        };
        println!(
            "training: {} of {} epochs done{within}, batch {}, loss {}, optimiser {}",
            t.state.epoch, t.config.epochs, t.config.batch_size, t.config.loss, t.config.optimizer
        );
    }
}

/// Neurons, parameters, memory and communication of every model-parallel rank of `grid`.
fn print_plan(plan: &Plan, grid: nnmpi::cluster::Grid, batch: usize) {
    let shape: Vec<String> = plan.sizes().iter().map(usize::to_string).collect();
    println!(
        "\nplan for {} on {} ranks: grid {grid} ({} data-parallel group(s) of {} model-parallel rank(s)), batch {batch}",
        shape.join("-"),
        grid.ranks(),
        grid.data,
        grid.model
    );
    let per_group = Partition::even(batch, grid.data).count(0);
    if grid.data > 1 {
        println!(
            "each group runs up to {per_group} samples of every batch; the groups hold the same model"
        );
    }
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        println!("{a:>5}  {b:>9}  {c:>12}  {d:>10}  {e:>14}  {f:>14}")
    };
    row(
        "rank",
        "neurons",
        "parameters",
        "weights",
        "fwd gather",
        "bwd reduce",
    );
    for r in 0..grid.model {
        let params = plan.parameters_on(r);
        row(
            &r.to_string(),
            &plan.neurons_on(r).to_string(),
            &params.to_string(),
            &bytes(params * 4),
            &bytes(plan.forward_values_on(r) * per_group * 4),
            &bytes(plan.backward_values_on(r) * per_group * 4),
        );
    }
    println!(
        "fwd gather: activations each rank receives per batch (one all-gather per layer); \
         bwd reduce: input-gradient partial sums each rank sends per batch when training \
         (one reduce-scatter per layer)"
    );
    if grid.data > 1 {
        let most = (0..grid.model)
            .map(|r| plan.parameters_on(r))
            .max()
            .unwrap_or(0);
        println!(
            "training also sums each rank's gradients over the {} groups: an all-reduce of up to {} per step",
            grid.data,
            bytes(most * 4)
        );
    }
}
