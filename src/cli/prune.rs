//! `nnmpi prune`: remove connections and neurons from a saved model, optionally fine-tuning
//! between steps, and save it in the compact layout.

use super::context::{Ctx, say};
use super::data_args::DataArgs;
use super::train::describe;
use anyhow::{Context, Result, bail};
use clap::Args;
use nnmpi::cluster::Comm;
use nnmpi::io::{Checkpoint, TrainingCheckpoint, save};
use nnmpi::model::{Format, Model, Network};
use nnmpi::prune::{NeuronTarget, Pruning, Schedule, Scope, Target, prune_neurons};
use nnmpi::train::{PrunePlan, Silent, TrainConfig, Trainer};
use std::path::PathBuf;

/// Flags of `nnmpi prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Checkpoint to prune.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Where to write the pruned model.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Prune connections to this sparsity (fraction absent, exact count), smallest magnitudes first.
    #[arg(long, value_name = "S", conflicts_with = "threshold", value_parser = super::ranges::fraction, allow_negative_numbers = true)]
    pub sparsity: Option<f64>,
    /// Prune connections with |w| below this instead.
    #[arg(long, value_name = "T", value_parser = super::ranges::non_negative, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// layer: every layer to the sparsity; global: all weights compete (small layers keep more).
    #[arg(long, default_value = "global")]
    pub scope: Scope,
    /// Prune blocks of this many consecutive neurons that read the same input, ranked by
    /// the block's L2 norm (--sparsity and --threshold then count blocks). The sparse
    /// kernels run 4-row blocks (or multiples) four rows at a time: several times faster
    /// than single connections at the same sparsity, for some accuracy.
    #[arg(long, default_value_t = 1, value_name = "ROWS", value_parser = super::ranges::at_least_one)]
    pub block: usize,
    /// Remove this fraction of every hidden layer's neurons (smallest ‖in‖·‖out‖ first).
    #[arg(long, value_name = "F", conflicts_with = "neuron_threshold", value_parser = super::ranges::fraction, allow_negative_numbers = true)]
    pub neurons: Option<f64>,
    /// Remove hidden neurons whose ‖in‖·‖out‖ is below this instead.
    #[arg(long, value_name = "T", value_parser = super::ranges::non_negative, allow_negative_numbers = true)]
    pub neuron_threshold: Option<f32>,
    /// Also remove neurons left without inputs (their constant output folded into the next
    /// layer's biases: same outputs) or without readers; implied by --neurons. A model whose
    /// shape changed is saved without training state (it cannot be resumed).
    #[arg(long)]
    pub drop_dead_neurons: bool,
    /// Reach --sparsity in this many steps (polynomial schedule), fine-tuning after each.
    #[arg(long, default_value_t = 1, value_parser = super::ranges::at_least_one)]
    pub steps: usize,
    /// Epochs of fine-tuning after every step, with the mask held (needs --data).
    #[arg(long, default_value_t = 0)]
    pub finetune_epochs: usize,
    /// How to store the layers: auto (sparse below the measured crossover density), dense or sparse.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Data to fine-tune on and to evaluate before and after (normalised as the model was trained;
    /// the checkpoint's validation split, if any, is held out and reported).
    #[command(flatten)]
    pub data: Option<DataArgs>,
}

impl PruneArgs {
    fn neuron_target(&self) -> Option<NeuronTarget> {
        match (self.neurons, self.neuron_threshold) {
            (Some(f), _) => Some(NeuronTarget::Fraction(f)),
            (None, Some(t)) => Some(NeuronTarget::Threshold(t)),
            (None, None) => None,
        }
    }
}

/// Runs `nnmpi prune` on every rank.
pub fn run<C: Comm>(ctx: &Ctx<C>, args: &PruneArgs) -> Result<()> {
    ctx.check_outputs(&[("--out", Some(&args.out))])?;
    if let Some(s) = args.sparsity
        && !(0.0..1.0).contains(&s)
    {
        bail!("--sparsity {s} must be in [0, 1)");
    }
    if args.neurons.is_some_and(|f| !(0.0..1.0).contains(&f)) {
        bail!("--neurons must be in [0, 1)");
    }
    if args.block == 0 {
        bail!("--block must be at least 1 (rows per pruned block)");
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if args.finetune_epochs > 0 && args.data.is_none() {
        bail!("--finetune-epochs needs --data to train on");
    }
    let ckpt = ctx.load_checkpoint(&args.model)?;
    let Model {
        network,
        normalizer,
        task,
    } = ckpt.model;
    let loss = nnmpi::recipe::implied_loss(network.output_activation(), &task);
    let (config, split) = match &ckpt.training {
        Some(t) => (t.config.clone(), t.validation_split),
        None => (nnmpi::recipe::fine_tuning(loss), 0.0),
    };
    let data = match &args.data {
        Some(d) => {
            let model = Model {
                network: network.clone(),
                normalizer: normalizer.clone(),
                task: task.clone(),
            };
            let data = ctx.load_data(d, || d.load_for(&model))?;
            let (train, val, _) =
                nnmpi::recipe::split_and_normalize(&data, split, config.seed, |_| {
                    Ok(normalizer.clone())
                })?;
            Some((train, val))
        }
        None => None,
    };
    let (train, val) = match &data {
        Some((t, v)) => (Some(t), v.as_ref()),
        None => (None, None),
    };
    let shown = val.or(train);
    let rule = |target| Pruning::connections(target, args.scope).in_blocks(args.block);
    let mut trainer = Trainer::distributed(&network, config.clone(), ctx.par, &ctx.topology)?;
    drop(network);
    if let Some(d) = shown {
        // Every rank evaluates (a collective); rank 0 prints.
        let before = trainer.evaluate(d)?;
        say!(ctx, "before: {}", describe(&before));
    }
    match (args.sparsity, args.threshold) {
        (Some(s), _) => {
            let plan = PrunePlan {
                schedule: Schedule::polynomial(s, args.steps),
                scope: args.scope,
                finetune_epochs: args.finetune_epochs,
                block: args.block,
            };
            let fit_data = train.filter(|_| args.finetune_epochs > 0);
            let steps = args.steps;
            let mut report = |step: &nnmpi::train::PruneStep| {
                let eval = step.evaluation.as_ref().map(describe).unwrap_or_default();
                say!(
                    ctx,
                    "step {}/{steps}: sparsity {:.2}%  {eval}",
                    step.step,
                    100.0 * step.sparsity
                );
            };
            match fit_data {
                Some(t) => trainer.prune_gradually(&plan, t, shown, &mut report)?,
                None => {
                    // No fine-tuning: the schedule's last step is the whole cut.
                    let sparsity = trainer.prune(rule(Target::Sparsity(s)));
                    say!(ctx, "sparsity {:.2}%", 100.0 * sparsity);
                    Vec::new()
                }
            };
        }
        (None, Some(t)) => {
            let sparsity = trainer.prune(rule(Target::Threshold(t)));
            say!(ctx, "|w| < {t} pruned: sparsity {:.2}%", 100.0 * sparsity);
            if let (Some(t), true) = (train, args.finetune_epochs > 0) {
                trainer.train_more(args.finetune_epochs, t, val, &mut Silent)?;
                trainer.use_best();
            }
        }
        (None, None) => {}
    }
    let snapshot = trainer.snapshot();
    let network = trainer.finish();
    let (Some((_, state)), Some(network)) = (snapshot, network) else {
        return Ok(());
    };
    finish_on_root(
        ctx, args, network, normalizer, task, config, split, state, shown,
    )
}

/// Neuron pruning, the storage format and the file: rank 0's part.
#[allow(clippy::too_many_arguments)]
fn finish_on_root<C: Comm>(
    ctx: &Ctx<C>,
    args: &PruneArgs,
    network: Network,
    normalizer: nnmpi::data::Normalizer,
    task: nnmpi::model::Task,
    config: TrainConfig,
    validation_split: f64,
    state: nnmpi::train::TrainState,
    shown: Option<&nnmpi::data::Dataset>,
) -> Result<()> {
    let before = network.sizes();
    let (network, report) = match (args.neuron_target(), args.drop_dead_neurons) {
        (Some(target), _) => prune_neurons(&network, target)?,
        (None, true) => prune_neurons(&network, NeuronTarget::DeadOnly)?,
        (None, false) => (network, Default::default()),
    };
    let network = network.with_format(args.format);
    let shrunk = network.sizes() != before;
    if shrunk {
        say!(
            ctx,
            "neurons: {} -> {} (dead, folded into the next biases: {:?}; unread: {:?}; weakest: {:?})",
            before
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("-"),
            network.shape(),
            report.dead,
            report.unread,
            report.weak
        );
    }
    if let (Some(d), true) = (shown, shrunk) {
        let mut engine = nnmpi::exec::Engine::new(network.clone(), ctx.par).for_inference();
        let eval =
            nnmpi::train::evaluate(&mut engine, &nnmpi::cluster::SelfComm, d, config.loss, 1024)?;
        say!(ctx, "after removing neurons: {}", describe(&eval));
    }
    let layers: Vec<String> = network
        .layers()
        .iter()
        .map(|l| {
            format!(
                "{} {:.1}%",
                l.weights().format(),
                100.0 * (1.0 - l.density())
            )
        })
        .collect();
    say!(ctx, "layers (format, sparsity): {}", layers.join(", "));
    // The optimiser state fits the connections only while no neuron was removed.
    if shrunk {
        say!(
            ctx,
            "the network's shape changed: the model is saved without training state"
        );
    }
    let training = (!shrunk).then_some(TrainingCheckpoint {
        config,
        validation_split,
        state,
    });
    let ckpt = Checkpoint {
        model: Model {
            network,
            normalizer,
            task,
        },
        training,
    };
    save(&args.out, &ckpt)
        .with_context(|| format!("saving the pruned model to {}", args.out.display()))?;
    say!(ctx, "saved the pruned model to {}", args.out.display());
    Ok(())
}
