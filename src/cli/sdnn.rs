//! `nnmpi sdnn`: the GraphChallenge sparse deep neural network benchmark, end to end.

use super::context::{Ctx, say};
use anyhow::{Context, Result, bail};
use clap::Args;
use nnmpi::cluster::{Comm, Partition};
use nnmpi::data::Normalizer;
use nnmpi::data::SparseSamples;
use nnmpi::exec::{Distinct, nonzero_samples_dealt};
use nnmpi::io::challenge::{
    challenge_bias, generate_inputs, generate_network_rows, read_inputs, read_network_rows,
    read_truth,
};
use nnmpi::model::{Activation, Layer, Model, Network, Task};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `nnmpi sdnn`.
#[derive(Args, Debug)]
pub struct SdnnArgs {
    /// Folder of the challenge's weight layers, n{N}-l{k}.tsv (or .tsv.gz, .mtx, .mtx.gz) for k = 1..L.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["model", "generate"],
        conflicts_with_all = ["model", "generate"]
    )]
    pub weights: Option<PathBuf>,
    /// Instead of files: a generated stand-in network of the challenge's shape (N neurons, L
    /// layers, exactly 32 connections in and out of every neuron, weights 1/16) and --samples
    /// random binary inputs, for sizes that cannot be downloaded here.
    #[arg(long, conflicts_with_all = ["model", "inputs", "truth"])]
    pub generate: bool,
    /// Neurons per layer (N: 1024, 4096, 16384 or 65536 in the challenge).
    #[arg(long, value_name = "N", value_parser = super::ranges::at_least_one)]
    pub neurons: Option<usize>,
    /// Layers (L: 120, 480 or 1920 in the challenge; with --weights, fewer runs the first L).
    #[arg(long, value_name = "L", value_parser = super::ranges::at_least_one)]
    pub layers: Option<usize>,
    /// Bias of every neuron [default: the challenge's for N: -0.3, -0.35, -0.4, -0.45].
    #[arg(long, allow_negative_numbers = true)]
    pub bias: Option<f32>,
    /// The activation's cap: min(max(x, 0), cap).
    #[arg(long, default_value_t = 32.0)]
    pub cap: f32,
    /// With --generate: the number of inputs.
    #[arg(long, default_value_t = 10000, requires = "generate", value_parser = super::ranges::at_least_one)]
    pub samples: usize,
    /// With --generate: the share of each input's features that are on, or a range LO:HI from
    /// which each input draws its own share (so inputs die out at different layers)
    /// [default: -bias-0.1 : -bias, e.g. 0.2:0.3 for N = 1024].
    #[arg(long, requires = "generate", value_parser = density_range)]
    pub density: Option<(f64, f64)>,
    /// With --generate: the seed of the network and inputs.
    #[arg(long, default_value_t = 1, requires = "generate")]
    pub seed: u64,
    /// A network saved by --save instead of --weights (an ordinary nnmpi checkpoint).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Input images: TSV triples (sample feature [value]) or MatrixMarket, plain or gzipped.
    #[arg(long, value_name = "FILE", required_unless_present = "generate")]
    pub inputs: Option<PathBuf>,
    /// Truth categories (TSV list of 1-based sample indices, or MatrixMarket) to check the answer against.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Save the network (read or generated) as an nnmpi checkpoint (sparse layers, compact).
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Compute every neuron, even where a layer's neurons come in groups with the same inputs,
    /// weights and bias (which are otherwise computed once per group): same answer, to measure
    /// what sharing saves.
    #[arg(long)]
    pub every_neuron: bool,
    /// Time inference this many times and report the median.
    #[arg(long, default_value_t = 1, value_parser = super::ranges::at_least_one)]
    pub reps: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The network as this rank holds it.
enum Held {
    /// The whole network.
    Whole(Network),
    /// This rank's neurons of every layer (`parts[l]`: each rank's neurons of layer `l`).
    Share {
        layers: Vec<Layer>,
        parts: Vec<Partition>,
    },
}

impl Held {
    fn layers(&self) -> &[Layer] {
        match self {
            Held::Whole(net) => net.layers(),
            Held::Share { layers, .. } => layers,
        }
    }
}

impl SdnnArgs {
    /// The network, whole or (when `model` ranks split it by neurons) this rank's share: read
    /// from the challenge's files (by every rank, each keeping its share), generated (each
    /// rank its share) or loaded from a checkpoint.
    fn network<C: Comm>(&self, ctx: &Ctx<C>, model: &C) -> Result<Held> {
        if let Some(path) = &self.model {
            let net = ctx.load_checkpoint(path)?.model.network;
            if model.size() == 1 {
                return Ok(Held::Whole(net));
            }
            let parts: Vec<Partition> = net
                .layers()
                .iter()
                .map(|l| Partition::even(l.outputs(), model.size()))
                .collect();
            let layers = net
                .layers()
                .iter()
                .zip(&parts)
                .map(|(l, p)| l.neurons(p.range(model.rank())))
                .collect();
            return Ok(Held::Share { layers, parts });
        }
        let (Some(neurons), Some(layers)) = (self.neurons, self.layers) else {
            bail!("--weights and --generate need --neurons and --layers");
        };
        let bias = self.bias(neurons)?;
        if !(self.cap.is_finite() && self.cap > 0.0) {
            bail!("--cap {} must be a number above 0", self.cap);
        }
        let act = Activation::CappedRelu(self.cap);
        if model.size() > neurons {
            bail!(
                "{} ranks share each layer but a layer has only {neurons} neurons",
                model.size()
            );
        }
        let part = Partition::even(neurons, model.size());
        let rows = part.range(model.rank());
        let share = match &self.weights {
            Some(dir) => read_network_rows(dir, neurons, layers, bias, act, rows, ctx.par)?,
            None => generate_network_rows(neurons, layers, bias, act, self.seed, rows)?,
        };
        Ok(if model.size() == 1 {
            Held::Whole(Network::from_layers(share)?)
        } else {
            Held::Share {
                layers: share,
                parts: vec![part; layers],
            }
        })
    }

    /// The neurons' bias: --bias, or the challenge's for `neurons`.
    fn bias(&self, neurons: usize) -> Result<f32> {
        match self.bias.or(challenge_bias(neurons)) {
            Some(b) => Ok(b),
            None => bail!(
                "--neurons {neurons} is not a challenge size (1024, 4096, 16384, 65536): give --bias"
            ),
        }
    }

    /// The inputs: read from --inputs, or generated.
    fn inputs(&self, features: usize) -> Result<SparseSamples> {
        match &self.inputs {
            Some(path) => Ok(read_inputs(path, features)?),
            None => {
                let seed = self.seed.wrapping_add(1);
                let density = match self.density {
                    Some(d) => d,
                    None => default_density(self.bias(features)?),
                };
                Ok(generate_inputs(self.samples, features, density, seed))
            }
        }
    }
}

/// The generated inputs' densities when --density is not given, for neurons of bias `bias`:
/// a neuron of a generated network turns on when more than 16·|bias| of its 32 inputs are on,
/// and inputs with densities in [|bias| - 0.1, |bias|] then die out over the first layers at
/// about the rate the challenge's images do on the real 1024-neuron network (measured; see
/// BENCHMARKS.md).
fn default_density(bias: f32) -> (f64, f64) {
    let b = f64::from(bias).abs();
    ((b - 0.1).clamp(0.0, 1.0), b.clamp(0.0, 1.0))
}

/// Parses `--density`: a share in [0, 1], or `LO:HI` with 0 <= LO <= HI <= 1.
fn density_range(text: &str) -> std::result::Result<(f64, f64), String> {
    let share = |t: &str| match t.trim().parse::<f64>() {
        Ok(d) if (0.0..=1.0).contains(&d) => Ok(d),
        _ => Err(format!("'{t}' is not a share between 0 and 1")),
    };
    let (lo, hi) = match text.split_once(':') {
        Some((lo, hi)) => (share(lo)?, share(hi)?),
        None => (share(text)?, share(text)?),
    };
    if lo > hi {
        return Err(format!(
            "the range {text} goes down (expected LO:HI with LO <= HI)"
        ));
    }
    Ok((lo, hi))
}

/// Runs `nnmpi sdnn`: every rank holds the whole network and a round-robin share of the
/// inputs; rank 0 prints.
pub fn run<C: Comm>(ctx: &Ctx<C>, args: &SdnnArgs) -> Result<()> {
    ctx.check_outputs(&[("--save", args.save.as_deref())])?;
    let (data, model) = (&ctx.topology.data, &ctx.topology.model);
    if model.size() > 1 && args.save.is_some() {
        bail!(
            "--save writes the whole network, which no rank holds when {} ranks split it by neurons: run without --parallel model / --grid to save",
            model.size()
        );
    }
    let started = Instant::now();
    let held = args.network(ctx, model)?;
    let read_seconds = started.elapsed().as_secs_f64();
    let share = !args.every_neuron;
    let prepared = match &held {
        Held::Whole(net) if share => Distinct::new(net, ctx.par),
        Held::Whole(net) => Distinct::every_neuron(net, ctx.par),
        Held::Share { layers, parts } => Distinct::shard(layers, parts.clone(), share, ctx.par),
    };
    let prepare_seconds = started.elapsed().as_secs_f64() - read_seconds;
    // Sums over the ranks that share the layers (each holds its neurons of each).
    let (mut neurons_run, mut neurons) = prepared.neurons_computed();
    let mut edges: usize = held.layers().iter().map(|l| l.weights().stored()).sum();
    let mut counts = [neurons_run as u64, neurons as u64, edges as u64];
    model.all_reduce_sum(&mut counts);
    [neurons_run, neurons, edges] = counts.map(|c| c as usize);
    let features = held.layers().first().map_or(0, Layer::inputs);
    if let (Some(path), Held::Whole(net)) = (&args.save, &held)
        && ctx.is_root()
    {
        let model = Model {
            network: net.clone(),
            normalizer: Normalizer::identity(),
            task: Task::Regression,
        };
        let checkpoint = nnmpi::io::Checkpoint {
            model,
            training: None,
        };
        nnmpi::io::save(path, &checkpoint)
            .with_context(|| format!("saving the network to {}", path.display()))?;
    }
    let inputs = args.inputs(features)?;
    let truth = args.truth.as_deref().map(read_truth).transpose()?;
    let mut times = Vec::with_capacity(args.reps);
    let mut answer = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        ctx.world().barrier();
        let t = Instant::now();
        answer = nonzero_samples_dealt(data, model, &prepared, &inputs, ctx.par);
        times.push(t.elapsed().as_secs_f64());
    }
    // Every rank's time counts: the job is done when the slowest rank is.
    let ranks = ctx.world().size();
    let mut all = vec![0.0f64; ranks * args.reps];
    ctx.world()
        .all_gather_varcount(&times, &mut all, &vec![args.reps; ranks]);
    let mut slowest: Vec<f64> = (0..args.reps)
        .map(|i| {
            (0..ranks)
                .map(|r| all[r * args.reps + i])
                .fold(0.0, f64::max)
        })
        .collect();
    slowest.sort_by(f64::total_cmp);
    let seconds = slowest[slowest.len() / 2];
    let (categories, per_layer) = answer;
    let rate = inputs.len() as f64 * edges as f64 / seconds;
    let verdict = truth.as_ref().map(|t| *t == categories);
    if !ctx.is_root() {
        return Ok(());
    }
    if args.json {
        println!(
            "{{\"layers\":{},\"neurons\":{},\"edges\":{edges},\"inputs\":{},\"input_nonzeros\":{},\"ranks\":{},\"ranks_per_layer\":{},\"threads_per_rank\":{},\"read_seconds\":{read_seconds:.4},\"prepare_seconds\":{prepare_seconds:.4},\"seconds\":{seconds:.6},\"edges_per_second\":{rate:.4e},\"neurons_computed\":{neurons_run},\"neurons_in_layers\":{neurons},\"categories\":{},\"pass\":{},\"distinct\":[{}]}}",
            held.layers().len(),
            features,
            inputs.len(),
            inputs.value.len(),
            ctx.world().size(),
            model.size(),
            ctx.par.degree(),
            categories.len(),
            verdict.map_or("null".to_string(), |v| v.to_string()),
            per_layer
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    } else {
        say!(
            ctx,
            "network: {} layers of {} neurons, {edges} connections (read in {read_seconds:.3} s, prepared in {prepare_seconds:.3} s)",
            held.layers().len(),
            features
        );
        say!(
            ctx,
            "inputs: {} samples, {} nonzeros ({})",
            inputs.len(),
            inputs.value.len(),
            args.inputs
                .as_ref()
                .map_or("generated".into(), |p| p.display().to_string())
        );
        say!(
            ctx,
            "inference: {seconds:.4} s (median of {}), {rate:.3e} edges/s on {} rank(s) x {} thread(s){}",
            args.reps,
            ctx.world().size(),
            ctx.par.degree(),
            if model.size() > 1 {
                format!(", each layer's neurons split over {} ranks", model.size())
            } else {
                String::new()
            }
        );
        say!(
            ctx,
            "neurons computed per column: {neurons_run} of {neurons}{}",
            if neurons_run < neurons {
                " (each group of neurons with equal inputs, weights and bias once; --every-neuron: all)"
            } else {
                ""
            }
        );
        let shown: Vec<String> = per_layer.iter().take(16).map(usize::to_string).collect();
        say!(
            ctx,
            "distinct columns per layer (rank 0): {}{}",
            shown.join(" "),
            if per_layer.len() > 16 { " ..." } else { "" }
        );
        match (&truth, verdict) {
            (Some(t), Some(true)) => say!(
                ctx,
                "categories: {} - PASS (the truth has {})",
                categories.len(),
                t.len()
            ),
            (Some(t), _) => say!(
                ctx,
                "categories: {} - FAIL (the truth has {})",
                categories.len(),
                t.len()
            ),
            _ => say!(ctx, "categories: {}", categories.len()),
        }
    }
    if verdict == Some(false) {
        bail!(
            "the categories differ from the truth in {}",
            args.truth
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_is_a_share_or_a_range_of_shares() {
        assert_eq!(density_range("0.1"), Ok((0.1, 0.1)));
        assert_eq!(density_range("0.2:0.3"), Ok((0.2, 0.3)));
        assert!(density_range("0.3:0.2").unwrap_err().contains("goes down"));
        assert!(
            density_range("1.5")
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(density_range("a:0.2").unwrap_err().contains("'a'"));
        let (lo, hi) = default_density(-0.3);
        assert!((lo - 0.2).abs() < 1e-6 && (hi - 0.3).abs() < 1e-6);
    }
}
