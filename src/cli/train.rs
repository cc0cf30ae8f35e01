//! `nnmpi train`.

use super::context::{Ctx, say};
use super::data_args::DataArgs;
use super::preempt::{self, Preempted, StopSignals};
use super::progress::{MetricsLog, Progress};
use super::rank_log::RankLog;
use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args, parser::ValueSource};
use nnmpi::cluster::{Comm, watchdog};
use nnmpi::data::{LabelKind, NormKind, Targets};
use nnmpi::io::{PeriodicCheckpoints, TrainingCheckpoint};
use nnmpi::model::{Activation, Init, Model};
use nnmpi::prune::Scope;
use nnmpi::recipe::{self, PruneSettings, Run, TrainSettings};
use nnmpi::train::{Evaluation, Loss, Trainer, cross_validate};
use std::path::PathBuf;

/// What the labels are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskKind {
    /// Labels are class names.
    Classify,
    /// The label is a number.
    Regress,
}

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    /// Adam (bias-corrected; decoupled weight decay).
    Adam,
    /// Stochastic gradient descent, with optional momentum.
    Sgd,
}

/// The defaults of every front end (the Python package shares them).
fn defaults() -> TrainSettings {
    TrainSettings::default()
}

impl From<recipe::OptimizerKind> for OptimizerKind {
    fn from(kind: recipe::OptimizerKind) -> Self {
        match kind {
            recipe::OptimizerKind::Adam => OptimizerKind::Adam,
            recipe::OptimizerKind::Sgd => OptimizerKind::Sgd,
        }
    }
}

/// Flags of `nnmpi train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// classify (labels are class names) or regress (the label is a number).
    #[arg(long, value_enum, default_value_t = TaskKind::Classify)]
    pub task: TaskKind,
    /// Hidden layer sizes, comma-separated (e.g. 128,64); --hidden with no value for none (logistic regression).
    #[arg(long, default_values_t = defaults().architecture.hidden, value_delimiter = ',', num_args = 0.., value_parser = super::ranges::at_least_one)]
    pub hidden: Vec<usize>,
    /// Hidden activation: sigmoid, tanh, relu, leaky-relu[:alpha], relu-cap:cap, gelu, silu, identity.
    #[arg(long, default_value_t = defaults().architecture.activation)]
    pub activation: Activation,
    /// Output activation [default: sigmoid for 2 classes, softmax for more, identity for regression].
    #[arg(long)]
    pub output_activation: Option<Activation>,
    /// Loss: mse, bce or ce [default: bce after sigmoid, ce after softmax, mse otherwise].
    /// mse is ½·Σ over outputs of the squared error, averaged over samples: with one output,
    /// half of PyTorch's default MSELoss (which averages over outputs too), and half its
    /// gradient.
    #[arg(long)]
    pub loss: Option<Loss>,
    /// Weight initialisation: uniform (the seed's, U[0,1)), xavier or he [default: he for ReLU, leaky ReLU, GELU and SiLU, xavier otherwise].
    #[arg(long)]
    pub init: Option<Init>,
    /// Optimiser: adam or sgd.
    #[arg(long, value_enum, default_value_t = defaults().optimizer.into())]
    pub optimizer: OptimizerKind,
    /// Learning rate [default: 0.001 for adam, 0.1 for sgd].
    #[arg(long, value_parser = super::ranges::positive, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// SGD momentum (0 = plain SGD).
    #[arg(long, default_value_t = defaults().momentum, value_parser = super::ranges::momentum, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Weight decay (L2 for sgd, decoupled for adam); biases are not decayed.
    #[arg(long, default_value_t = defaults().weight_decay, value_parser = super::ranges::non_negative, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Samples per mini-batch; 1 is the seed's online SGD.
    #[arg(long, default_value_t = defaults().batch_size, value_parser = super::ranges::at_least_one)]
    pub batch_size: usize,
    /// Epochs to train (with --resume: the total to reach).
    #[arg(long, default_value_t = defaults().epochs, value_parser = super::ranges::at_least_one)]
    pub epochs: usize,
    /// Seed of initialisation, splits and shuffles: the same seed gives the same model.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Fraction of the samples held out for validation each epoch.
    #[arg(long, default_value_t = defaults().val_split, value_parser = super::ranges::fraction, allow_negative_numbers = true)]
    pub val_split: f64,
    /// Stop after this many epochs without a better validation loss, keeping the best model (needs --val-split).
    #[arg(long, value_parser = super::ranges::at_least_one)]
    pub patience: Option<usize>,
    /// Keep the file's sample order (the seed's behaviour) instead of shuffling every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Feature normalisation, fitted on the training samples and stored in the model: none, minmax, zscore.
    #[arg(long, default_value_t = defaults().normalize)]
    pub normalize: NormKind,
    /// Run K-fold cross-validation (stratified) and report held-out accuracy; with --out, then train on all samples.
    #[arg(long, value_name = "K", value_parser = super::ranges::folds)]
    pub kfold: Option<usize>,
    /// Write the trained model (with its training state) to this checkpoint file.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Also write --out every N epochs while training (crash-safe), so a run can be resumed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue training from a checkpoint written by --out; its settings are kept (only
    /// --epochs, data, output and display flags may be given). `--resume auto` resumes from
    /// --out when that file exists and starts afresh with the other flags otherwise, so a job
    /// script can be requeued unchanged after a preemption (the flags must then match the
    /// checkpoint's settings).
    #[arg(long, value_name = "PATH|auto")]
    pub resume: Option<ResumeFrom>,
    /// Start from the weights of this model (a checkpoint, e.g. made by `nnmpi import` or a
    /// finished run) with fresh optimiser state: its layers, activations, normaliser and
    /// classes are kept, the other flags apply.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["resume", "kfold", "hidden", "activation", "output_activation", "init", "normalize", "task"])]
    pub init_from: Option<PathBuf>,
    /// Append one line of metrics per epoch to this file: CSV, or JSON lines if it ends in .json/.jsonl.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Under MPI too: every rank writes DIR/rank-R.csv, a line per epoch with its wall,
    /// compute and communication seconds, collectives called, bytes it passed into them, and
    /// the neurons and connections it holds (DIR is created on each rank's node).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Print only the final result.
    #[arg(long)]
    pub quiet: bool,
    /// After training, prune gradually to this sparsity (fraction of absent connections, e.g. 0.9), fine-tuning after every step; with --kfold, every fold too (reports accuracy before and after).
    #[arg(long, value_name = "S", value_parser = super::ranges::fraction, allow_negative_numbers = true)]
    pub prune_to: Option<f64>,
    /// Pruning steps of the polynomial schedule (TensorFlow's PolynomialDecay, power 3).
    #[arg(long, value_name = "K", default_value_t = defaults().prune.steps, value_parser = super::ranges::at_least_one)]
    pub prune_steps: usize,
    /// Fine-tuning epochs after every pruning step (the mask is held).
    #[arg(long, value_name = "E", default_value_t = defaults().prune.finetune_epochs)]
    pub finetune_epochs: usize,
    /// Pruning scope: global (all weights compete, so small layers keep more) or layer (every layer to the target).
    #[arg(long, default_value_t = defaults().prune.scope)]
    pub prune_scope: Scope,
    /// Prune blocks of this many consecutive neurons reading the same input (as `nnmpi prune
    /// --block`; 4 lets the sparse kernels run four rows at a time).
    #[arg(long, value_name = "ROWS", default_value_t = defaults().prune.block, value_parser = super::ranges::at_least_one)]
    pub prune_block: usize,
}

/// Where `--resume` continues from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeFrom {
    /// `--out`, when it exists; else a fresh start.
    Auto,
    /// This checkpoint.
    File(PathBuf),
}

impl std::str::FromStr for ResumeFrom {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "auto" => ResumeFrom::Auto,
            path => ResumeFrom::File(path.into()),
        })
    }
}

/// Flags that a resumed run takes from the checkpoint and so may not be given again.
const FIXED_ON_RESUME: &[&str] = &[
    "task",
    "hidden",
    "activation",
    "output_activation",
    "loss",
    "init",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "batch_size",
    "seed",
    "val_split",
    "patience",
    "no_shuffle",
    "normalize",
    "kfold",
];

impl TrainArgs {
    /// The settings these flags give (the library checks them and names the setting; clap
    /// has already checked each flag's range).
    fn settings(&self) -> TrainSettings {
        TrainSettings {
            architecture: recipe::Architecture {
                hidden: self.hidden.clone(),
                activation: self.activation,
                output_activation: self.output_activation,
                loss: self.loss,
                init: self.init,
            },
            optimizer: match self.optimizer {
                OptimizerKind::Adam => recipe::OptimizerKind::Adam,
                OptimizerKind::Sgd => recipe::OptimizerKind::Sgd,
            },
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            val_split: self.val_split,
            patience: self.patience,
            shuffle: !self.no_shuffle,
            normalize: self.normalize,
            prune: PruneSettings {
                to: self.prune_to,
                steps: self.prune_steps,
                finetune_epochs: self.finetune_epochs,
                scope: self.prune_scope,
                block: self.prune_block,
            },
        }
    }

    fn label_kind(&self) -> LabelKind {
        if self.task == TaskKind::Regress {
            LabelKind::Values
        } else {
            LabelKind::Classes(None)
        }
    }
}

/// Accuracy (classification) or loss of an evaluation, for a line of output.
pub(super) fn describe(eval: &Evaluation) -> String {
    match eval.accuracy {
        Some(a) => format!("accuracy {:.2}%  loss {:.4}", 100.0 * a, eval.loss),
        None => format!("loss {:.4}", eval.loss),
    }
}

/// Runs `nnmpi train` on every rank of `ctx`.
pub fn run<C: Comm>(ctx: &Ctx<C>, args: &TrainArgs, matches: &ArgMatches) -> Result<()> {
    // A missing directory must stop the job before the first epoch, not after the last one.
    ctx.check_outputs(&[
        ("--out", args.out.as_deref()),
        ("--log", args.log.as_deref()),
    ])?;
    match &args.resume {
        Some(ResumeFrom::File(path)) => {
            for flag in FIXED_ON_RESUME {
                if matches.value_source(flag) == Some(ValueSource::CommandLine) {
                    bail!(
                        "--{} cannot be given with --resume: the run continues with the settings stored in {}",
                        flag.replace('_', "-"),
                        path.display()
                    );
                }
            }
            return resume(ctx, args, path, false);
        }
        Some(ResumeFrom::Auto) => {
            let Some(out) = &args.out else {
                bail!(
                    "--resume auto needs --out: it resumes from the --out checkpoint when that exists"
                );
            };
            // Rank 0 reads and writes the files, so it decides for every rank.
            let mut exists = [u8::from(ctx.is_root() && out.exists())];
            ctx.world().broadcast(0, &mut exists);
            if exists[0] == 1 {
                return resume(ctx, args, out, true);
            }
            if !args.quiet {
                say!(ctx, "{} does not exist yet: starting afresh", out.display());
            }
        }
        None => {}
    }
    if args.patience.is_some() && args.val_split <= 0.0 {
        bail!("--patience needs validation data: add --val-split (e.g. 0.2)");
    }
    if let Some(path) = &args.init_from {
        return fine_tune(ctx, args, path);
    }
    let data = ctx.load_data(&args.data, || args.data.load(args.label_kind(), None))?;
    let settings = args.settings();
    settings.check()?;
    let blueprint = settings.architecture.for_data(&data)?;
    let config = settings.config(blueprint.loss);
    let prune = settings.prune_plan();
    recipe::check_training_memory(&config, &blueprint.sizes, &ctx.topology)?;
    if let Some(k) = args.kfold {
        let net0 = blueprint.build(args.seed)?;
        if !args.quiet {
            say!(
                ctx,
                "{k}-fold cross-validation of a {} network on {} ({} samples)",
                net0.shape(),
                data.origin.display(),
                data.len()
            );
        }
        let quiet = args.quiet || !ctx.is_root();
        let report = cross_validate(
            &ctx.topology,
            &data,
            k,
            args.normalize,
            &config,
            ctx.par,
            |fold| blueprint.build(args.seed.wrapping_add(fold as u64)),
            prune.as_ref(),
            &mut |fold, eval, pruned| {
                if !quiet {
                    let mut line = format!("fold {}/{k}: {}", fold + 1, describe(eval));
                    if let Some(p) = pruned {
                        line += &format!("; pruned: {}", describe(p));
                    }
                    println!("{line}");
                }
            },
        )?;
        match (report.mean_accuracy(), report.std_accuracy()) {
            (Some(m), Some(s)) => say!(
                ctx,
                "{k}-fold accuracy: {:.2}% ± {:.2}% (mean ± std over folds)",
                100.0 * m,
                100.0 * s
            ),
            _ => say!(ctx, "{k}-fold loss: {:.4}", report.mean_loss()),
        }
        if let (Some(plan), Some(m), Some(s)) = (
            &prune,
            report.pruned_mean_accuracy(),
            report.pruned_std_accuracy(),
        ) {
            say!(
                ctx,
                "{k}-fold accuracy after pruning to {:.0}% sparsity: {:.2}% ± {:.2}%",
                100.0 * plan.schedule.final_sparsity,
                100.0 * m,
                100.0 * s
            );
        }
        if args.out.is_none() {
            return Ok(());
        }
    }

    let run = settings.start(&data, ctx.par, &ctx.topology)?;
    // From here on each rank holds only its shard of the network.
    drop(data);
    let parameters = nnmpi::train::memory::parameters(&blueprint.sizes) as usize;
    announce(
        ctx,
        args,
        (nnmpi::model::shape_of(&blueprint.sizes), parameters),
        &run,
    );
    fit_and_save(ctx, args, run, false)
}

/// What a run is about to do, on one line.
fn announce<C: Comm>(
    ctx: &Ctx<C>,
    args: &TrainArgs,
    (shape, parameters): (String, usize),
    run: &Run<C>,
) {
    if args.quiet {
        return;
    }
    say!(
        ctx,
        "training a {shape} network ({parameters} parameters) on {} samples{}, {} epochs, batch {}",
        run.train.len(),
        run.val
            .as_ref()
            .map(|v| format!(" (+{} for validation)", v.len()))
            .unwrap_or_default(),
        run.trainer.config().epochs,
        run.trainer.config().batch_size
    );
}

/// Trains a saved model's weights further with fresh optimiser state (`--init-from`): its
/// layers, activations, normaliser and classes are kept; the optimiser and run flags are
/// this command's.
fn fine_tune<C: Comm>(ctx: &Ctx<C>, args: &TrainArgs, path: &std::path::Path) -> Result<()> {
    let model = ctx.load_checkpoint(path)?.model;
    let data = ctx.load_data(&args.data, || args.data.load_for(&model))?;
    let Model {
        network,
        normalizer,
        task,
    } = model;
    if matches!(data.targets, Targets::None) {
        bail!(
            "{} has no label column for the model's {} outputs: training needs labels (see --label-col)",
            data.origin.display(),
            network.outputs()
        );
    }
    let out_act = network.output_activation();
    let loss = args
        .loss
        .unwrap_or_else(|| recipe::implied_loss(out_act, &task));
    loss.check(out_act)?;
    let config = args.settings().config(loss);
    recipe::check_training_memory(&config, &network.sizes(), &ctx.topology)?;
    if !args.quiet {
        say!(
            ctx,
            "starting from the weights of {} (fresh optimiser state)",
            path.display()
        );
    }
    let what = (network.shape(), network.parameter_count());
    let run = Run::new(
        network,
        task,
        config,
        (&data, args.val_split),
        |_| Ok(normalizer),
        ctx.par,
        &ctx.topology,
    )?;
    drop(data);
    announce(ctx, args, what, &run);
    fit_and_save(ctx, args, run, false)
}

/// The flags of this command that differ from the settings `training` was started with,
/// each as "--flag given (the checkpoint has stored)": `--resume auto` continues the run its
/// flags describe, and says so when they describe another.
fn differences(args: &TrainArgs, model: &Model, training: &TrainingCheckpoint) -> Vec<String> {
    let stored = &training.config;
    let given = args.settings().config(args.loss.unwrap_or(stored.loss));
    let sizes = model.network.sizes();
    let stored_hidden = &sizes[1..sizes.len() - 1];
    let stored_activation = model.network.layers()[0].activation();
    let pairs = [
        (
            "batch-size",
            given.batch_size.to_string(),
            stored.batch_size.to_string(),
        ),
        ("seed", given.seed.to_string(), stored.seed.to_string()),
        (
            "no-shuffle",
            (!given.shuffle).to_string(),
            (!stored.shuffle).to_string(),
        ),
        (
            "patience",
            format!("{:?}", given.patience),
            format!("{:?}", stored.patience),
        ),
        ("loss", given.loss.to_string(), stored.loss.to_string()),
        (
            "optimizer/--lr/--momentum/--weight-decay",
            given.optimizer.to_string(),
            stored.optimizer.to_string(),
        ),
        (
            "val-split",
            args.val_split.to_string(),
            training.validation_split.to_string(),
        ),
        ("hidden", join(&args.hidden), join(stored_hidden)),
        (
            "normalize",
            args.normalize.to_string(),
            model.normalizer.kind().to_string(),
        ),
    ];
    let mut out: Vec<String> = pairs
        .into_iter()
        .filter(|(_, given, stored)| given != stored)
        .map(|(flag, given, stored)| format!("--{flag} {given} (the checkpoint has {stored})"))
        .collect();
    if !stored_hidden.is_empty() && args.activation != stored_activation {
        out.push(format!(
            "--activation {} (the checkpoint has {stored_activation})",
            args.activation
        ));
    }
    out
}

/// Layer sizes as the flag takes them: "128,64".
fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Continues a run from its checkpoint; `auto` (`--resume auto`): the command's flags must
/// describe the run it continues, and a run that has trained all its epochs is left alone.
fn resume<C: Comm>(
    ctx: &Ctx<C>,
    args: &TrainArgs,
    path: &std::path::Path,
    auto: bool,
) -> Result<()> {
    let ckpt = ctx.load_checkpoint(path)?;
    let Some(training) = ckpt.training else {
        bail!(
            "{} holds a model without training state: it cannot be resumed; --init-from trains its weights further with fresh optimiser state",
            path.display()
        );
    };
    let model = ckpt.model;
    if auto {
        let differ = differences(args, &model, &training);
        if !differ.is_empty() {
            bail!(
                "--resume auto: {} was trained with other settings than this command gives: {}; give the same flags, or remove the file to start afresh",
                path.display(),
                differ.join(", ")
            );
        }
        if training.state.epoch >= args.epochs && training.state.progress.is_none() {
            say!(
                ctx,
                "{} has trained all {} epochs: nothing to do",
                path.display(),
                training.state.epoch
            );
            return Ok(());
        }
    }
    let data = ctx.load_data(&args.data, || args.data.load_for(&model))?;
    let Model {
        network,
        normalizer,
        task,
    } = model;
    let (train, val, _) = recipe::split_and_normalize(
        &data,
        training.validation_split,
        training.config.seed,
        |_| Ok(normalizer.clone()),
    )?;
    drop(data);
    if args.epochs <= training.state.epoch {
        bail!(
            "--epochs {} is the total to reach, and {} has already trained {} epochs: give a larger --epochs",
            args.epochs,
            path.display(),
            training.state.epoch
        );
    }
    let mut config = training.config;
    config.epochs = args.epochs;
    if !args.quiet {
        let within = match &training.state.progress {
            Some(p) => format!(
                " and batch {} of epoch {}",
                p.batches,
                training.state.epoch + 1
            ),
            None => String::new(),
        };
        say!(
            ctx,
            "resuming {} after epoch {}{within} of {}",
            path.display(),
            training.state.epoch,
            config.epochs
        );
    }
    let trainer =
        Trainer::resume_distributed(&network, config, training.state, ctx.par, &ctx.topology)?;
    drop(network);
    let run = Run {
        trainer,
        train,
        val,
        normalizer,
        task,
        val_split: training.validation_split,
    };
    fit_and_save(ctx, args, run, true)
}

/// Trains, printing progress and writing checkpoints, then saves the final model to `--out`.
fn fit_and_save<C: Comm>(
    ctx: &Ctx<C>,
    args: &TrainArgs,
    mut run: Run<C>,
    appending: bool,
) -> Result<()> {
    let log = ctx
        .on_root(|| {
            args.log
                .as_deref()
                .map(|p| MetricsLog::open(p, appending))
                .transpose()
        })?
        .flatten();
    let checkpoints = args.out.as_ref().map(|path| {
        PeriodicCheckpoints::new(
            path.clone(),
            args.checkpoint_every,
            run.normalizer.clone(),
            run.task.clone(),
            run.val_split,
        )
    });
    let mut progress = Progress::new(
        ctx.is_root(),
        args.quiet,
        run.trainer.config().epochs,
        log,
        checkpoints,
    )
    .stopping_on(StopSignals::install()?)
    .logging_rank(
        args.log_dir
            .as_deref()
            .map(|dir| RankLog::open(ctx, dir, appending))
            .transpose()?,
    );
    watchdog::set_phase("training", false);
    let reports = run.fit(&mut progress).map_err(|e| {
        anyhow::Error::new(e).context(format!("training stopped ({})", progress.what_is_kept()))
    })?;
    if run.trainer.stopped() {
        progress.keep_catching_signals();
        return Err(stop_for_signal(ctx, &run, &mut progress)?.into());
    }
    let checkpoints = progress.into_checkpoints();
    if let Some(plan) = args.settings().prune_plan() {
        watchdog::set_phase("pruning", false);
        let steps = plan.schedule.steps;
        run.prune_gradually(&plan, &mut |step| {
            if !args.quiet {
                let eval = step.evaluation.as_ref().map(describe).unwrap_or_default();
                say!(
                    ctx,
                    "prune step {}/{steps}: sparsity {:.2}%  {eval}",
                    step.step,
                    100.0 * step.sparsity
                );
            }
        })?;
    }
    if !reports.is_empty() {
        // The model saved, evaluated: the epoch lines show running figures of the weights
        // as they moved during each epoch, which are not the saved model's.
        watchdog::set_phase("evaluating the final model", false);
        let (train, val) = run.evaluate_final()?;
        let mut summary = format!("training {}", describe(&train));
        if let Some(v) = val {
            summary += &format!("; validation {}", describe(&v));
        }
        say!(
            ctx,
            "done after {} epochs; the final model{}: {summary}",
            run.trainer.epoch(),
            match run.trainer.best_epoch() {
                Some(e) => format!(" (epoch {e}, the best under early stopping)"),
                None => String::new(),
            }
        );
    }
    if let Some(c) = checkpoints {
        let written = c
            .save_final(run.trainer)
            .with_context(|| format!("saving the model to {}", c.path().display()))?;
        if written && !args.quiet {
            println!("saved the model to {}", c.path().display());
        }
    }
    Ok(())
}

/// After a stop signal: the training state written to `--out` (when given), and the message
/// to end the job with.
fn stop_for_signal<C: Comm>(
    ctx: &Ctx<C>,
    run: &Run<C>,
    progress: &mut Progress,
) -> Result<Preempted> {
    let signals = preempt::tally(ctx.world(), progress.stop_signal());
    let trainer = &run.trainer;
    let place = match trainer.interrupted_epoch() {
        Some(p) => format!("in epoch {} after batch {}", trainer.epoch() + 1, p.batches),
        None => format!("after epoch {}", trainer.epoch()),
    };
    let saved = match progress.interrupted() {
        Some(c) => {
            c.save_now(trainer)
                .with_context(|| format!("saving the training state to {}", c.path().display()))?;
            format!(
                "saved the training state to {0}; the same command with --resume auto (or --resume {0}) continues it",
                c.path().display()
            )
        }
        None => "nothing was saved (no --out)".into(),
    };
    let message = format!("stopped by {signals} {place}: {saved}");
    Ok(Preempted(if ctx.is_root() {
        message
    } else {
        String::new()
    }))
}
