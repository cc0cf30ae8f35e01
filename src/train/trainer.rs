//! The epoch loop: seeded shuffling, mini-batches, validation, early stopping.

use super::loss::Loss;
use super::metrics::{Evaluation, check_targets, encode_targets, evaluate, predicted_class};
use super::optim::{Optimizer, OptimizerConfig, OptimizerState};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::exec::{Engine, Gradients};
use crate::kernels::Par;
use crate::model::{Network, StreamPosition, UniformStream};
use std::time::Instant;

/// Random stream number of the training shuffles.
const SHUFFLE_STREAM: u64 = 21;

/// How to train.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Epochs to run in total (a resumed run continues up to this number).
    pub epochs: usize,
    /// Samples per mini-batch (1 = the seed's online SGD).
    pub batch_size: usize,
    /// The loss.
    pub loss: Loss,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss (needs validation data);
    /// the best network is kept.
    pub patience: Option<usize>,
    /// Whether to shuffle the samples every epoch (the seed did not).
    pub shuffle: bool,
}

/// The best network seen so far under early stopping.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    /// Epoch (1-based) it was seen after.
    pub epoch: usize,
    /// Its validation loss.
    pub val_loss: f64,
    /// The network then.
    pub network: Network,
}

/// Everything needed to continue training exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Position of the shuffle stream.
    pub rng: StreamPosition,
    /// Optimiser memory.
    pub optimizer: OptimizerState,
    /// Early stopping: the best so far.
    pub best: Option<Best>,
    /// Early stopping: epochs since the best.
    pub bad_epochs: usize,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch (measured before each batch's update).
    pub train_loss: f64,
    /// Training accuracy over the epoch (classification).
    pub train_accuracy: Option<f64>,
    /// Validation result, when validation data was given.
    pub validation: Option<Evaluation>,
    /// Training throughput.
    pub samples_per_sec: f64,
    /// Whether early stopping ended training after this epoch.
    pub stopped_early: bool,
}

/// Hooks for progress display, logging and checkpointing. All methods default to nothing.
pub trait Observer {
    /// An epoch with `batches` mini-batches begins.
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    /// `done` mini-batches of the current epoch are finished.
    fn batch_done(&mut self, _done: usize) {}
    /// An epoch is finished; `trainer` can be checkpointed here.
    fn epoch_done(&mut self, _trainer: &Trainer, _report: &EpochReport) -> Result<()> {
        Ok(())
    }
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// Trains one network.
pub struct Trainer {
    engine: Engine,
    config: TrainConfig,
    optimizer: Optimizer,
    grads: Gradients,
    rng: UniformStream,
    epoch: usize,
    best: Option<Best>,
    bad_epochs: usize,
    order: Vec<usize>,
    x: Vec<f32>,
    t: Vec<f32>,
}

fn tensor_lens(net: &Network) -> Vec<usize> {
    net.layers()
        .iter()
        .flat_map(|l| [l.inputs() * l.outputs(), l.outputs()])
        .collect()
}

impl Trainer {
    /// A trainer starting at epoch 0.
    pub fn new(network: Network, config: TrainConfig, par: Par) -> Result<Self> {
        let lens = tensor_lens(&network);
        let state = TrainState {
            epoch: 0,
            rng: UniformStream::new(config.seed, SHUFFLE_STREAM).position(),
            optimizer: Optimizer::new(config.optimizer, &lens).state().clone(),
            best: None,
            bad_epochs: 0,
        };
        Trainer::resume(network, config, state, par)
    }

    /// A trainer continuing from `state` (saved by [`Trainer::state`]).
    pub fn resume(
        network: Network,
        config: TrainConfig,
        state: TrainState,
        par: Par,
    ) -> Result<Self> {
        config.loss.check(network.output_activation())?;
        if config.batch_size == 0 {
            return Err(Error::config("--batch-size must be at least 1"));
        }
        let optimizer = Optimizer::resume(config.optimizer, &tensor_lens(&network), state.optimizer)
            .ok_or_else(|| Error::config("the saved optimiser state does not fit this network or optimiser (was --optimizer or --momentum changed?)"))?;
        let grads = Gradients::zeros_like(&network);
        Ok(Trainer {
            engine: Engine::new(network, par),
            config,
            optimizer,
            grads,
            rng: UniformStream::at(state.rng),
            epoch: state.epoch,
            best: state.best,
            bad_epochs: state.bad_epochs,
            order: Vec::new(),
            x: Vec::new(),
            t: Vec::new(),
        })
    }

    /// The network as trained so far.
    pub fn network(&self) -> &Network {
        self.engine.network()
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// A snapshot of the state needed to resume exactly.
    pub fn state(&self) -> TrainState {
        TrainState {
            epoch: self.epoch,
            rng: self.rng.position(),
            optimizer: self.optimizer.state().clone(),
            best: self.best.clone(),
            bad_epochs: self.bad_epochs,
        }
    }

    /// The final network: the best one under early stopping, else the last.
    pub fn into_network(self) -> Network {
        match self.best {
            Some(best) => best.network,
            None => self.engine.into_network(),
        }
    }

    /// Evaluates the current network on `data`.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        evaluate(
            &mut self.engine,
            data,
            self.config.loss,
            self.config.batch_size.max(256),
        )
    }

    /// Trains until `config.epochs` epochs are done or early stopping ends it.
    pub fn fit(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<EpochReport>> {
        check_targets(self.network().outputs(), train)?;
        if train.n_features() != self.network().inputs() {
            return Err(Error::config(format!(
                "{} has {} features but the network has {} inputs",
                train.origin.display(),
                train.n_features(),
                self.network().inputs()
            )));
        }
        let mut reports = Vec::new();
        while self.epoch < self.config.epochs {
            let mut report = self.run_epoch(train, observer)?;
            if let Some(v) = val {
                let eval = self.evaluate(v)?;
                report.stopped_early = self.track_best(eval.loss);
                report.validation = Some(eval);
            }
            observer.epoch_done(self, &report)?;
            let stop = report.stopped_early;
            reports.push(report);
            if stop {
                break;
            }
        }
        Ok(reports)
    }

    /// Early-stopping bookkeeping after an epoch; returns whether to stop.
    fn track_best(&mut self, val_loss: f64) -> bool {
        let Some(patience) = self.config.patience else {
            return false;
        };
        if self.best.as_ref().is_none_or(|b| val_loss < b.val_loss) {
            self.best = Some(Best {
                epoch: self.epoch,
                val_loss,
                network: self.network().clone(),
            });
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        self.bad_epochs >= patience
    }

    /// One pass over `train` in shuffled mini-batches.
    pub fn run_epoch(
        &mut self,
        train: &Dataset,
        observer: &mut dyn Observer,
    ) -> Result<EpochReport> {
        let started = Instant::now();
        let n = train.len();
        let bs = self.config.batch_size.min(n.max(1));
        let (inputs, outputs) = (self.network().inputs(), self.network().outputs());
        let out_act = self.network().output_activation();
        self.order.clear();
        self.order.extend(0..n);
        if self.config.shuffle {
            self.rng.shuffle(&mut self.order);
        }
        self.x.resize(inputs * bs, 0.0);
        self.t.resize(outputs * bs, 0.0);
        observer.epoch_started(self.epoch + 1, n.div_ceil(bs));
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (bi, chunk) in self.order.chunks(bs).enumerate() {
            let b = chunk.len();
            let (x, t) = (&mut self.x[..inputs * b], &mut self.t[..outputs * b]);
            train.gather_features(chunk, x);
            encode_targets(&train.targets, chunk, outputs, t);
            self.engine.forward(x, b);
            let (y, dz) = self.engine.output_and_delta(b);
            loss_sum += self.config.loss.sum(y, t);
            if let Targets::Classes(ids) = &train.targets {
                correct += chunk
                    .iter()
                    .enumerate()
                    .filter(|&(col, &i)| predicted_class(y, b, col) == ids[i] as usize)
                    .count();
            }
            self.config.loss.output_delta(out_act, y, t, b, dz);
            self.engine.backward(x, b, &mut self.grads);
            self.optimizer.begin_step();
            for (l, layer) in self
                .engine
                .network_mut()
                .layers_mut()
                .iter_mut()
                .enumerate()
            {
                let (w, bias) = layer.params_mut();
                self.optimizer
                    .update(2 * l, w, &self.grads.weights[l], true);
                self.optimizer
                    .update(2 * l + 1, bias, &self.grads.bias[l], false);
            }
            observer.batch_done(bi + 1);
        }
        self.epoch += 1;
        let train_loss = loss_sum / n.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(Error::Numerical(format!(
                "training diverged: the loss is {train_loss} in epoch {}; try a smaller --lr or normalised inputs (--normalize zscore)",
                self.epoch
            )));
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(EpochReport {
            epoch: self.epoch,
            train_loss,
            train_accuracy: matches!(train.targets, Targets::Classes(_))
                .then(|| correct as f64 / n.max(1) as f64),
            validation: None,
            samples_per_sec: n as f64 / secs.max(1e-9),
            stopped_early: false,
        })
    }
}
