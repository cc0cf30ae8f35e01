//! One training run from a user's settings: the settings with the defaults every front end
//! shares ([`TrainSettings`]), and the run they start on a data set ([`Run`]): the network
//! built and split over the ranks, the validation split and normaliser, the epochs, the
//! gradual pruning, the final model.
//!
//! The command line (`nnmpi train`) and the Python package both train through here, so the
//! same settings on the same data give the same model bit for bit.

use super::{Architecture, OptimizerKind, optimizer, split_and_normalize};
use crate::cluster::{Comm, Topology};
use crate::data::{Dataset, NormKind, Normalizer};
use crate::error::{Error, Result};
use crate::kernels::Par;
use crate::model::{Activation, Model, Network, Task};
use crate::prune::{Schedule, Scope};
use crate::train::{
    EpochReport, Evaluation, Loss, Observer, OptimizerConfig, PrunePlan, PruneStep, TrainConfig,
    Trainer,
};

/// Gradual pruning after training (none unless `to` is given).
#[derive(Clone, Debug, PartialEq)]
pub struct PruneSettings {
    /// The final sparsity (fraction of absent connections), e.g. 0.9.
    pub to: Option<f64>,
    /// Steps of the polynomial schedule (TensorFlow's `PolynomialDecay`, power 3).
    pub steps: usize,
    /// Fine-tuning epochs after every step (the mask is held).
    pub finetune_epochs: usize,
    /// Whether all weights compete (global) or every layer reaches the target (layer).
    pub scope: Scope,
    /// Rows pruned together as one block (1: single connections).
    pub block: usize,
}

impl Default for PruneSettings {
    fn default() -> Self {
        PruneSettings {
            to: None,
            steps: 5,
            finetune_epochs: 10,
            scope: Scope::Global,
            block: 1,
        }
    }
}

/// Everything a user chooses for one training run. [`Default`] gives the defaults of every
/// front end (the command line's flags and the Python package's arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    /// The network (hidden layers, activations, loss, initialisation).
    pub architecture: Architecture,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Learning rate (default: [`optimizer`]'s for the optimiser).
    pub lr: Option<f32>,
    /// SGD momentum (0: plain SGD).
    pub momentum: f32,
    /// Weight decay (L2 for SGD, decoupled for Adam); biases are not decayed.
    pub weight_decay: f32,
    /// Samples per mini-batch (1: the seed's online SGD).
    pub batch_size: usize,
    /// Epochs to train.
    pub epochs: usize,
    /// Seed of the initialisation, the validation split and the shuffles.
    pub seed: u64,
    /// Fraction of the samples held out for validation.
    pub val_split: f64,
    /// Early stopping: epochs without a better validation loss before stopping.
    pub patience: Option<usize>,
    /// Whether to shuffle the samples every epoch.
    pub shuffle: bool,
    /// Feature normalisation, fitted on the training samples and kept in the model.
    pub normalize: NormKind,
    /// Gradual pruning after training.
    pub prune: PruneSettings,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            architecture: Architecture {
                hidden: vec![60],
                activation: Activation::Relu,
                output_activation: None,
                loss: None,
                init: None,
            },
            optimizer: OptimizerKind::Adam,
            lr: None,
            momentum: 0.0,
            weight_decay: 0.0,
            batch_size: 32,
            epochs: 100,
            seed: 42,
            val_split: 0.0,
            patience: None,
            shuffle: true,
            normalize: NormKind::MinMax,
            prune: PruneSettings::default(),
        }
    }
}

impl TrainSettings {
    /// An error naming the setting when a value is out of its range or settings contradict.
    pub fn check(&self) -> Result<()> {
        let bad = |name: &'static str, what: String| Err(Error::parameter(name, what));
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return bad("val_split", format!("{} must be in [0, 1)", self.val_split));
        }
        if let Some(lr) = self.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return bad("lr", format!("{lr} must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", format!("{} must be in [0, 1)", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("{} must be 0 or more", self.weight_decay),
            );
        }
        if self.patience == Some(0) {
            return bad("patience", "must be at least 1".into());
        }
        if self.patience.is_some() && self.val_split <= 0.0 {
            return bad(
                "patience",
                "needs validation data: give val_split too (e.g. 0.2)".into(),
            );
        }
        if self.architecture.hidden.contains(&0) {
            return bad("hidden", "layer sizes must be at least 1".into());
        }
        let p = &self.prune;
        if let Some(s) = p.to.filter(|s| !(0.0..1.0).contains(s)) {
            return bad("prune_to", format!("{s} must be in [0, 1)"));
        }
        if p.steps == 0 || p.block == 0 {
            return bad("prune_steps", "and prune_block must be at least 1".into());
        }
        Ok(())
    }

    /// The optimiser these settings give.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
    }

    /// The training configuration these settings give, training with `loss`.
    pub fn config(&self, loss: Loss) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            loss,
            optimizer: self.optimizer_config(),
            seed: self.seed,
            patience: self.patience,
            shuffle: self.shuffle,
        }
    }

    /// The gradual pruning asked for, if any.
    pub fn prune_plan(&self) -> Option<PrunePlan> {
        let p = &self.prune;
        p.to.map(|s| PrunePlan {
            schedule: Schedule::polynomial(s, p.steps),
            scope: p.scope,
            finetune_epochs: p.finetune_epochs,
            block: p.block,
        })
    }

    /// Builds the network these settings ask for `data` (initialised from the seed) and
    /// starts a run on it, on this rank of `topology`.
    pub fn start<C: Comm>(
        &self,
        data: &Dataset,
        par: Par,
        topology: &Topology<C>,
    ) -> Result<Run<C>> {
        self.check()?;
        let blueprint = self.architecture.for_data(data)?;
        let config = self.config(blueprint.loss);
        check_training_memory(&config, &blueprint.sizes, topology)?;
        let network = blueprint.build(self.seed)?;
        let kind = self.normalize;
        Run::new(
            network,
            blueprint.task,
            config,
            (data, self.val_split),
            |train| Normalizer::fit_dataset(kind, train, &topology.data),
            par,
            topology,
        )
    }
}

/// An error, before anything is allocated, when training a network of `sizes` with `config`
/// would need more memory than this node has (the estimate of
/// [`crate::train::memory::training`]).
pub fn check_training_memory<C: Comm>(
    config: &TrainConfig,
    sizes: &[usize],
    topology: &Topology<C>,
) -> Result<()> {
    let bytes = crate::train::memory::training(
        sizes,
        config.optimizer,
        config.patience.is_some(),
        config.batch_size,
        topology.data.size(),
        topology.model.size(),
    );
    let what = format!("training a {} network", crate::model::shape_of(sizes));
    crate::cluster::check_memory(&what, bytes)
}

/// A training run on this rank: the trainer (this rank's shard of the network), the data it
/// trains and validates on (normalised), and what the saved model keeps beside the network.
pub struct Run<C: Comm> {
    /// The trainer.
    pub trainer: Trainer<C>,
    /// The training samples, normalised.
    pub train: Dataset,
    /// The validation samples, normalised, when a fraction was held out.
    pub val: Option<Dataset>,
    /// The normaliser fitted on the training samples (or given).
    pub normalizer: Normalizer,
    /// What the outputs mean.
    pub task: Task,
    /// The fraction held out for validation.
    pub val_split: f64,
}

impl<C: Comm> Run<C> {
    /// A run training `network` from the weights it has: `data` split (the `fraction` held
    /// out for validation, seeded by `config.seed`) and normalised with the normaliser `fit`
    /// makes from the training part. Every rank passes the same network and keeps its shard.
    pub fn new(
        network: Network,
        task: Task,
        config: TrainConfig,
        (data, fraction): (&Dataset, f64),
        fit: impl FnOnce(&Dataset) -> Result<Normalizer>,
        par: Par,
        topology: &Topology<C>,
    ) -> Result<Self> {
        let (train, val, normalizer) = split_and_normalize(data, fraction, config.seed, fit)?;
        let trainer = Trainer::distributed(&network, config, par, topology)?;
        Ok(Run {
            trainer,
            train,
            val,
            normalizer,
            task,
            val_split: fraction,
        })
    }

    /// Trains the configured epochs (or until early stopping or a stop request).
    pub fn fit(&mut self, observer: &mut dyn Observer<C>) -> Result<Vec<EpochReport>> {
        self.trainer.fit(&self.train, self.val.as_ref(), observer)
    }

    /// Prunes along `plan` from the best network seen (under early stopping, else the
    /// current one), fine-tuning after every step; `on_step` sees every step.
    pub fn prune_gradually(
        &mut self,
        plan: &PrunePlan,
        on_step: &mut dyn FnMut(&PruneStep),
    ) -> Result<Vec<PruneStep>> {
        self.trainer.use_best();
        self.trainer
            .prune_gradually(plan, &self.train, self.val.as_ref(), on_step)
    }

    /// The final network (the best one under early stopping) evaluated on the training and
    /// the validation samples. Every rank must call it.
    pub fn evaluate_final(&mut self) -> Result<(Evaluation, Option<Evaluation>)> {
        let train = self.trainer.evaluate_final(&self.train)?;
        let val = match &self.val {
            Some(v) => Some(self.trainer.evaluate_final(v)?),
            None => None,
        };
        Ok((train, val))
    }

    /// The trained model on the root (collective; `None` on the other ranks).
    pub fn finish(self) -> Option<Model> {
        let network = self.trainer.finish()?;
        Some(Model {
            network,
            normalizer: self.normalizer,
            task: self.task,
        })
    }
}
