//! The epoch loop: seeded shuffling, mini-batches, validation, early stopping.

use super::loss::Loss;
use super::metrics::{Evaluation, check_targets, encode_targets, evaluate, predicted_class};
use super::optim::{Optimizer, OptimizerConfig, OptimizerState};
use crate::cluster::{Comm, Partition, SelfComm, Topology};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::exec::{Engine, Gradients, Plan, ShardLayer};
use crate::kernels::Par;
use crate::model::{Network, StreamPosition, UniformStream, Weights};
use crate::prune::{Pruning, Schedule, Scope, Target, prune_shard};
use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Gradient values (of a rank's shard) from which a data-parallel step sums them while the
/// backward pass goes on, on a thread of its own; below, the thread costs more than the sum
/// (one 1 MiB all-reduce between two processes takes well under a millisecond).
const OVERLAP_MIN_VALUES: usize = 1 << 18;

/// Gradient values summed as one piece while the backward pass goes on (8 MiB of `f32`: 512
/// rows of a 4096-input layer).
const BUCKET_VALUES: usize = 1 << 21;

/// How long [`next_helping_the_pool`] waits for an item before it looks for pool work again.
const HELP_POLL: Duration = Duration::from_micros(50);

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
    /// Mean loss of the run's first mini-batch (the divergence check compares with it).
    pub start_loss: Option<f64>,
    /// An epoch a stop request interrupted, to be continued at its next mini-batch.
    pub progress: Option<EpochProgress>,
}

/// How far an interrupted epoch got: enough to continue it at its next mini-batch with the
/// same shuffle, as if it had not been interrupted.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochProgress {
    /// Mini-batches finished.
    pub batches: usize,
    /// Position of the shuffle stream before the epoch's shuffle.
    pub shuffle: StreamPosition,
    /// Sums over the finished mini-batches and all data groups: loss, correct predictions,
    /// and the loss of the run's first mini-batch (when this is the run's first epoch).
    pub totals: [f64; 3],
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
    /// Whether a stop request ([`Observer::stop_requested`]) ended this epoch before its last
    /// mini-batch: the figures cover the batches run, and the epoch does not count as done.
    pub interrupted: bool,
}

/// Gradual pruning: the schedule, the scope, and the fine-tuning after each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrunePlan {
    /// Sparsity per step.
    pub schedule: Schedule,
    /// Per layer or over the whole network.
    pub scope: Scope,
    /// Epochs of fine-tuning after every step.
    pub finetune_epochs: usize,
    /// Rows per pruned block (1: single connections; see [`Pruning::block`]).
    pub block: usize,
}

/// What one pruning step reached.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneStep {
    /// Step number, 1-based.
    pub step: usize,
    /// Absent connections over all connections.
    pub sparsity: f64,
    /// Evaluation after the step's fine-tuning, when validation data was given.
    pub evaluation: Option<Evaluation>,
}

/// Hooks for progress display, logging and checkpointing. All methods default to nothing.
/// Every rank calls them; only world rank 0 should print or write.
pub trait Observer<C: Comm = SelfComm> {
    /// An epoch with `batches` mini-batches begins.
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    /// `done` mini-batches of the current epoch are finished.
    fn batch_done(&mut self, _done: usize) {}
    /// An epoch is finished; `trainer` can be checkpointed here (collectively: see
    /// [`Trainer::snapshot`]).
    fn epoch_done(&mut self, _trainer: &Trainer<C>, _report: &EpochReport) -> Result<()> {
        Ok(())
    }
    /// Whether this observer ever asks to stop: only then is [`Observer::stop_requested`]
    /// asked, and the ranks' answers combined (one small all-reduce per mini-batch).
    fn may_stop(&self) -> bool {
        false
    }
    /// Whether this rank asks training to stop now (e.g. on Ctrl-C or a signal from the batch
    /// system). Asked after every mini-batch and every epoch; a request from any rank stops
    /// every rank at the same mini-batch, with the weights it reached.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Silent;
impl<C: Comm> Observer<C> for Silent {}

/// The best shard seen so far under early stopping.
#[derive(Clone, Debug)]
struct BestShard {
    epoch: usize,
    val_loss: f64,
    layers: Vec<ShardLayer>,
}

/// Trains one network, alone or as one rank of a data × model grid ([`Topology`]).
///
/// Every rank walks the same sequence of global mini-batches (same seed, same shuffles); data
/// group `d` of `D` takes its even share of each batch (the first `b % D` groups one sample
/// more), and the gradients are summed over the groups before every update. So every rank
/// takes the same number of steps per epoch whatever the data size (no padding, no dropped
/// samples); a group whose share of a small last batch is empty contributes a zero gradient.
pub struct Trainer<C: Comm = SelfComm> {
    engine: Engine<C>,
    groups: C,
    config: TrainConfig,
    optimizer: Optimizer,
    grads: Gradients,
    rng: UniformStream,
    epoch: usize,
    best: Option<BestShard>,
    bad_epochs: usize,
    order: Vec<usize>,
    x: Vec<f32>,
    t: Vec<f32>,
    /// Mean loss of the first mini-batch this trainer ran (before its update).
    start_loss: Option<f64>,
    /// Whether the last [`Trainer::fit`] ended on a stop request.
    stopped: bool,
    /// The epoch a stop request interrupted, continued by the next [`Trainer::run_epoch`].
    progress: Option<EpochProgress>,
    /// Mini-batches between two checks for a stop request (`None`: by the work they hold).
    stop_check: Option<usize>,
    /// Gradient values from which a data-parallel step sums them during the backward pass.
    overlap_from: usize,
    /// Gradient values summed as one piece during the backward pass.
    bucket_values: usize,
}

/// Floating-point operations of training work between two checks for a stop request when
/// the ranks must agree on it (one small all-reduce): about 0.1 ms of compute, so the check
/// costs well under 2% even on the smallest networks, and a stop lands within a millisecond.
const WORK_PER_STOP_CHECK: usize = 4_000_000;

/// A run whose epoch loss is over this many times the loss it started at (and over it by
/// more than 1) has blown up: training does not raise the loss that far.
pub const BLOWN_UP: f64 = 3.0;

/// Lengths of the parameter tensors (weights, bias per layer) of a shard.
fn tensor_lens(layers: &[ShardLayer]) -> Vec<usize> {
    layers
        .iter()
        .flat_map(|l| [l.weights.stored(), l.bias.len()])
        .collect()
}

/// Where tensor `i` (stored weights of layer `i / 2`, or its bias) of rank `r`'s shard lies
/// in the whole tensor, and the whole tensor's length.
fn tensor_rows(plan: &Plan, i: usize, r: usize) -> (Range<usize>, usize) {
    let part = if i.is_multiple_of(2) {
        plan.values(i / 2)
    } else {
        plan.layer(i / 2)
    };
    (part.range(r), part.total())
}

/// This rank's part of a whole optimiser state.
fn shard_state(state: OptimizerState, plan: &Plan, rank: usize) -> OptimizerState {
    let cut = |tensors: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        tensors
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if i / 2 >= plan.depth() {
                    return t; // not a tensor of this network: Optimizer::resume rejects it
                }
                let (range, whole) = tensor_rows(plan, i, rank);
                if t.len() == whole {
                    t[range].to_vec()
                } else {
                    t
                }
            })
            .collect()
    };
    OptimizerState {
        step: state.step,
        first: cut(state.first),
        second: cut(state.second),
    }
}

impl Trainer<SelfComm> {
    /// A single-process trainer starting at epoch 0.
    pub fn new(network: Network, config: TrainConfig, par: Par) -> Result<Self> {
        Trainer::distributed(&network, config, par, &Topology::single())
    }

    /// A single-process trainer continuing from `state` (saved by [`Trainer::state`]).
    pub fn resume(
        network: Network,
        config: TrainConfig,
        state: TrainState,
        par: Par,
    ) -> Result<Self> {
        Trainer::resume_distributed(&network, config, state, par, &Topology::single())
    }

    /// The network as trained so far (a copy).
    pub fn network(&self) -> Network {
        self.engine.network()
    }

    /// A snapshot of the state needed to resume exactly.
    pub fn state(&self) -> TrainState {
        self.snapshot().expect("one rank is the root").1
    }

    /// The final network: the best one under early stopping, else the last.
    pub fn into_network(self) -> Network {
        self.finish().expect("one rank is the root")
    }
}

impl<C: Comm> Trainer<C> {
    /// A trainer for rank `topology.world.rank()`, starting at epoch 0. Every rank passes the
    /// same `network` and keeps its shard.
    pub fn distributed(
        network: &Network,
        config: TrainConfig,
        par: Par,
        topology: &Topology<C>,
    ) -> Result<Self> {
        let state = TrainState {
            epoch: 0,
            rng: UniformStream::new(config.seed, SHUFFLE_STREAM).position(),
            optimizer: OptimizerState::default(),
            best: None,
            bad_epochs: 0,
            start_loss: None,
            progress: None,
        };
        Trainer::resume_distributed(network, config, state, par, topology)
    }

    /// A trainer for rank `topology.world.rank()` continuing from the whole `state` (as
    /// [`Trainer::snapshot`] gathers it; an empty optimiser state means a fresh optimiser).
    pub fn resume_distributed(
        network: &Network,
        config: TrainConfig,
        state: TrainState,
        par: Par,
        topology: &Topology<C>,
    ) -> Result<Self> {
        config.loss.check(network.output_activation())?;
        if config.batch_size == 0 {
            return Err(Error::parameter("batch_size", "must be at least 1"));
        }
        let engine = Engine::sharded(network, topology.model.clone(), par);
        let rank = topology.model.rank();
        let lens = tensor_lens(engine.layers());
        let optimizer = if state.optimizer == OptimizerState::default() {
            Optimizer::new(config.optimizer, &lens)
        } else {
            let shard = shard_state(state.optimizer, engine.plan(), rank);
            Optimizer::resume(config.optimizer, &lens, shard)
                .ok_or_else(|| Error::parameter("optimizer", "does not match the saved optimiser state (was the optimiser or its momentum changed?)"))?
        };
        let best = state.best.map(|b| BestShard {
            epoch: b.epoch,
            val_loss: b.val_loss,
            layers: Engine::sharded(&b.network, topology.model.clone(), par)
                .layers()
                .to_vec(),
        });
        Ok(Trainer {
            grads: engine.zero_gradients(),
            engine,
            groups: topology.data.clone(),
            config,
            optimizer,
            rng: UniformStream::at(state.rng),
            epoch: state.epoch,
            best,
            bad_epochs: state.bad_epochs,
            order: Vec::new(),
            x: Vec::new(),
            t: Vec::new(),
            start_loss: state.start_loss,
            stopped: false,
            progress: state.progress,
            stop_check: None,
            overlap_from: OVERLAP_MIN_VALUES,
            bucket_values: BUCKET_VALUES,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// This rank's rows of every layer (its shard of the network).
    pub fn shard(&self) -> &[ShardLayer] {
        self.engine.layers()
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Whether this rank is the one that receives [`Trainer::snapshot`]s (world rank 0).
    pub fn is_root(&self) -> bool {
        self.groups.rank() == 0 && self.engine.comm().rank() == 0
    }

    /// Collects the current network and the whole training state on the root (every rank
    /// must call it; `None` elsewhere). The result does not depend on the number of ranks.
    pub fn snapshot(&self) -> Option<(Network, TrainState)> {
        // Every data group holds the same model: only group 0 gathers.
        if self.groups.rank() != 0 {
            return None;
        }
        let network = self.engine.gather();
        let optimizer = self.gather_optimizer();
        let best = self
            .best
            .as_ref()
            .map(|b| (b.epoch, b.val_loss, self.engine.gather_layers(&b.layers)));
        let network = network?;
        let best = match best {
            Some((epoch, val_loss, Some(network))) => Some(Best {
                epoch,
                val_loss,
                network,
            }),
            _ => None,
        };
        let state = TrainState {
            epoch: self.epoch,
            rng: self.rng.position(),
            optimizer: optimizer?,
            best,
            bad_epochs: self.bad_epochs,
            start_loss: self.start_loss,
            progress: self.progress.clone(),
        };
        Some((network, state))
    }

    /// The optimiser state of the whole network, on model rank 0 of the group.
    fn gather_optimizer(&self) -> Option<OptimizerState> {
        let comm = self.engine.comm();
        let plan = self.engine.plan();
        let at_root = comm.rank() == 0;
        let gather = |tensors: &[Vec<f32>]| -> Vec<Vec<f32>> {
            tensors
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.is_empty() {
                        return Vec::new();
                    }
                    let (_, whole) = tensor_rows(plan, i, 0);
                    let counts: Vec<usize> = (0..comm.size())
                        .map(|r| tensor_rows(plan, i, r).0.len())
                        .collect();
                    let mut all = vec![0.0; if at_root { whole } else { 0 }];
                    comm.gather_varcount(0, t, &mut all, &counts);
                    all
                })
                .collect()
        };
        let state = self.optimizer.state();
        let first = gather(&state.first);
        let second = gather(&state.second);
        at_root.then_some(OptimizerState {
            step: state.step,
            first,
            second,
        })
    }

    /// The final network on the root (collective): the best one under early stopping, else
    /// the last.
    pub fn finish(mut self) -> Option<Network> {
        if let Some(best) = self.best.take() {
            self.engine.set_layers(best.layers);
        }
        if self.groups.rank() != 0 {
            return None;
        }
        self.engine.gather()
    }

    /// Prunes connections of the network being trained (see [`prune_shard`]): afterwards
    /// every layer is sparse and its structure is the mask that later training keeps. The
    /// optimiser restarts (its memory was shaped like the old connections) and early stopping
    /// forgets its best network. Every rank must call it. Returns the network's sparsity
    /// (absent connections over all connections).
    pub fn prune(&mut self, rule: Pruning) -> f64 {
        let sizes = self.engine.plan().sizes().to_vec();
        let totals: Vec<usize> = sizes.windows(2).map(|p| p[0] * p[1]).collect();
        let shard: Vec<&Weights> = self.engine.layers().iter().map(|l| &l.weights).collect();
        let pruned = prune_shard(self.engine.comm(), &shard, rule);
        let layers = self
            .engine
            .layers()
            .iter()
            .zip(pruned)
            .map(|(l, weights)| ShardLayer {
                weights,
                ..l.clone()
            })
            .collect();
        self.engine.set_layers(layers);
        self.optimizer = Optimizer::new(self.config.optimizer, &tensor_lens(self.engine.layers()));
        self.grads = self.engine.zero_gradients();
        self.best = None;
        self.bad_epochs = 0;
        // An interrupted epoch is not continued on a different network.
        self.progress = None;
        let plan = self.engine.plan();
        let stored: usize = (0..plan.depth()).map(|l| plan.values(l).total()).sum();
        1.0 - stored as f64 / totals.iter().sum::<usize>() as f64
    }

    /// Makes the best network seen under early stopping the current one (nothing without
    /// one). Every rank must call it.
    pub fn use_best(&mut self) {
        if let Some(best) = self.best.take() {
            self.engine.set_layers(best.layers);
        }
    }

    /// Prunes along `plan.schedule`, fine-tuning `plan.finetune_epochs` epochs on `train`
    /// (with the mask held) after every step and keeping the best epoch under early stopping;
    /// `on_step` sees every step, evaluated on `val` when given.
    pub fn prune_gradually(
        &mut self,
        plan: &PrunePlan,
        train: &Dataset,
        val: Option<&Dataset>,
        on_step: &mut dyn FnMut(&PruneStep),
    ) -> Result<Vec<PruneStep>> {
        let mut steps = Vec::with_capacity(plan.schedule.steps);
        for t in 1..=plan.schedule.steps {
            let target = Target::Sparsity(plan.schedule.sparsity_at(t));
            let sparsity =
                self.prune(Pruning::connections(target, plan.scope).in_blocks(plan.block));
            if plan.finetune_epochs > 0 {
                self.train_more(plan.finetune_epochs, train, val, &mut Silent)?;
                self.use_best();
            }
            let evaluation = val.map(|v| self.evaluate(v)).transpose()?;
            let step = PruneStep {
                step: t,
                sparsity,
                evaluation,
            };
            on_step(&step);
            steps.push(step);
        }
        Ok(steps)
    }

    /// Trains `epochs` more epochs (early stopping as configured).
    pub fn train_more(
        &mut self,
        epochs: usize,
        train: &Dataset,
        val: Option<&Dataset>,
        observer: &mut dyn Observer<C>,
    ) -> Result<Vec<EpochReport>> {
        self.config.epochs = self.epoch + epochs;
        self.fit(train, val, observer)
    }

    /// Evaluates the current network on `data` (rows split over the data groups; every rank
    /// gets the result).
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        evaluate(
            &mut self.engine,
            &self.groups,
            data,
            self.config.loss,
            self.config.batch_size.max(256),
        )
    }

    /// The epoch of the best network under early stopping, if one is kept.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best.as_ref().map(|b| b.epoch)
    }

    /// Evaluates the network [`Trainer::finish`] would give (the best one under early
    /// stopping, else the current one) on `data`, leaving the training state as it is.
    /// Every rank must call it.
    pub fn evaluate_final(&mut self, data: &Dataset) -> Result<Evaluation> {
        let Some(best) = self.best.as_ref().map(|b| b.layers.clone()) else {
            return self.evaluate(data);
        };
        let current = self.engine.layers().to_vec();
        self.engine.set_layers(best);
        let eval = self.evaluate(data);
        self.engine.set_layers(current);
        eval
    }

    /// Trains until `config.epochs` epochs are done or early stopping ends it.
    pub fn fit(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        observer: &mut dyn Observer<C>,
    ) -> Result<Vec<EpochReport>> {
        check_targets(self.engine.outputs(), train)?;
        if train.n_features() != self.engine.inputs() {
            return Err(Error::config(format!(
                "{} has {} features but the network has {} inputs",
                train.origin.display(),
                train.n_features(),
                self.engine.inputs()
            )));
        }
        let mut reports = Vec::new();
        self.stopped = false;
        while self.epoch < self.config.epochs {
            let mut report = self.run_epoch(train, observer)?;
            if report.interrupted {
                reports.push(report);
                break;
            }
            if let Some(v) = val {
                let eval = self.evaluate(v)?;
                report.stopped_early = self.track_best(eval.loss);
                report.validation = Some(eval);
            }
            observer.epoch_done(self, &report)?;
            let stop = report.stopped_early;
            reports.push(report);
            // After the last epoch there is nothing left to stop.
            if stop || (self.epoch < self.config.epochs && self.agreed_stop(observer)) {
                break;
            }
        }
        Ok(reports)
    }

    /// The epoch a stop request interrupted, if the last one was (the next
    /// [`Trainer::run_epoch`] continues it).
    pub fn interrupted_epoch(&self) -> Option<&EpochProgress> {
        self.progress.as_ref()
    }

    /// Whether the last [`Trainer::fit`] ended on a stop request of its observer (after an
    /// epoch, or inside one: then its last report says `interrupted`).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether any rank's observer asks to stop (collective when the observer may ask).
    fn agreed_stop(&mut self, observer: &mut dyn Observer<C>) -> bool {
        if !observer.may_stop() {
            return false;
        }
        let mut asked = [f64::from(u8::from(observer.stop_requested()))];
        self.engine.comm().all_reduce_sum(&mut asked);
        self.groups.all_reduce_sum(&mut asked);
        self.stopped |= asked[0] > 0.0;
        self.stopped
    }

    /// Early-stopping bookkeeping after an epoch; returns whether to stop. Every rank sees the
    /// same (reduced) validation loss, so every rank decides alike.
    fn track_best(&mut self, val_loss: f64) -> bool {
        let Some(patience) = self.config.patience else {
            return false;
        };
        if self.best.as_ref().is_none_or(|b| val_loss < b.val_loss) {
            self.best = Some(BestShard {
                epoch: self.epoch,
                val_loss,
                layers: self.engine.layers().to_vec(),
            });
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        self.bad_epochs >= patience
    }

    /// One optimisation step on this data group's share of a mini-batch of `batch_size`
    /// samples: `x` is `[inputs, b]`, `t` the targets `[outputs, b]` (`b` may be 0 when the
    /// group's share is empty). Gradients are summed over the data groups, so every rank of
    /// every group must call it. Returns the loss summed over this group's samples (before
    /// the update).
    ///
    /// # Panics
    /// If `x` and `t` are not `[inputs, b]`, `[outputs, b]` for the same `b`.
    pub fn step(&mut self, x: &[f32], t: &[f32], batch_size: usize) -> f64 {
        let b = x.len() / self.engine.inputs();
        assert_eq!(
            x.len(),
            self.engine.inputs() * b,
            "Trainer::step: x is not [inputs, b]"
        );
        assert_eq!(
            t.len(),
            self.engine.outputs() * b,
            "Trainer::step: t is not [outputs, b]"
        );
        let (inputs, outputs) = (self.engine.inputs(), self.engine.outputs());
        self.x.resize(self.x.len().max(inputs * b), 0.0);
        self.t.resize(self.t.len().max(outputs * b), 0.0);
        self.x[..inputs * b].copy_from_slice(x);
        self.t[..outputs * b].copy_from_slice(t);
        self.step_on(b, batch_size)
    }

    /// [`Trainer::step`] on the first `b` samples of the `x` and `t` buffers.
    fn step_on(&mut self, b: usize, batch_size: usize) -> f64 {
        let (inputs, outputs) = (self.engine.inputs(), self.engine.outputs());
        let mut loss = 0.0;
        if b == 0 {
            self.grads.clear();
        } else {
            let (x, t) = (&self.x[..inputs * b], &self.t[..outputs * b]);
            let out_act = self.engine.output_activation();
            self.engine.forward(x, b);
            let (y, dz) = self.engine.output_and_delta(b);
            loss = self.config.loss.sum(y, t);
            self.config
                .loss
                .output_delta(out_act, y, t, b, batch_size, dz);
            let overlap = self.groups.size() > 1 && self.gradient_values() >= self.overlap_from;
            if overlap && self.backward_while_summing(b) {
                return self.update(loss);
            }
            self.engine
                .backward(&self.x[..inputs * b], b, &mut self.grads);
        }
        if self.groups.size() > 1 {
            for g in self.grads.weights.iter_mut().chain(&mut self.grads.bias) {
                self.groups.all_reduce_sum(g);
            }
        }
        self.update(loss)
    }

    /// Gradient values of this rank's shard.
    fn gradient_values(&self) -> usize {
        self.grads
            .weights
            .iter()
            .chain(&self.grads.bias)
            .map(Vec::len)
            .sum()
    }

    /// The backward pass on another thread while this one sums its finished pieces over the
    /// data groups, last layer first (a dense layer in blocks of [`BUCKET_VALUES`]), as PyTorch
    /// DDP does: only the sum of the last piece waits for the end of the pass. Every element is
    /// the same sum as after the pass (one all-reduce over the same ranks). While it waits for
    /// a piece, this thread runs the pass's pending parallel work when it is a worker of the
    /// pool (the command's thread is), so the pass keeps every thread of the pool; the pass
    /// runs its parallel products on the global rayon pool. Returns `false`, having done
    /// nothing, when this rank's model group shards the layers (the backward pass then
    /// communicates itself, and MPI calls stay on this thread).
    fn backward_while_summing(&mut self, b: usize) -> bool {
        let x = &self.x[..self.engine.inputs() * b];
        let Some(backprop) = self.engine.local_backprop(x, b) else {
            return false;
        };
        let (groups, grads, bucket) = (&self.groups, &mut self.grads, self.bucket_values);
        let (pieces, arrive) = std::sync::mpsc::channel();
        let mut summing = Vec::new();
        let done = std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                backprop.run(x, b, grads, bucket, None, &mut |piece| {
                    // The receiver lives until this thread ends.
                    let _ = pieces.send(piece);
                });
                Instant::now()
            });
            while let Some(piece) = next_helping_the_pool(&arrive) {
                let start = Instant::now();
                groups.all_reduce_sum(piece.weights);
                groups.all_reduce_sum(piece.bias);
                summing.push(start..Instant::now());
            }
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        let hidden: f64 = summing
            .iter()
            .map(|span| {
                span.end
                    .min(done)
                    .saturating_duration_since(span.start)
                    .as_secs_f64()
            })
            .sum();
        groups.overlapped(hidden);
        true
    }

    /// The optimiser's step with the summed gradients; passes `loss` through.
    fn update(&mut self, loss: f64) -> f64 {
        self.optimizer.begin_step();
        let par = self.engine.par();
        for (l, layer) in self.engine.layers_mut().iter_mut().enumerate() {
            let (w, bias) = layer.params_mut();
            self.optimizer
                .update(par, 2 * l, w, &self.grads.weights[l], true);
            self.optimizer
                .update(par, 2 * l + 1, bias, &self.grads.bias[l], false);
        }
        loss
    }

    /// An error if the epoch just ended has blown the run up: a NaN or infinite loss,
    /// weight or bias (every rank checks its shard; the count is summed over the model's
    /// ranks, so every rank decides alike), or a loss [`BLOWN_UP`] times where the run
    /// started (the loss of its first mini-batch). A checkpoint is only written after an
    /// epoch that passed.
    fn check_diverged(&self, train_loss: f64) -> Result<()> {
        let epoch = self.epoch;
        if !train_loss.is_finite() {
            return Err(Error::Diverged {
                reason: format!("the loss is {train_loss} in epoch {epoch}"),
            });
        }
        let mut bad = [self
            .engine
            .layers()
            .iter()
            .map(ShardLayer::non_finite)
            .sum::<usize>() as f64];
        self.engine.comm().all_reduce_sum(&mut bad);
        if bad[0] > 0.0 {
            return Err(Error::Diverged {
                reason: format!(
                    "{} weights and biases are NaN or infinite after epoch {epoch}",
                    bad[0]
                ),
            });
        }
        if let Some(start) = self.start_loss
            && train_loss > BLOWN_UP * start
            && train_loss > start + 1.0
        {
            return Err(Error::Diverged {
                reason: format!(
                    "the loss went from {start:.4} at the start to {train_loss:.4} in epoch {epoch}"
                ),
            });
        }
        Ok(())
    }

    /// Checks for a stop request every `batches` mini-batches (at least 1) instead of the
    /// default: after every one in one process, else about every [`WORK_PER_STOP_CHECK`]
    /// floating-point operations. Every rank must set the same.
    pub fn set_stop_check_interval(&mut self, batches: usize) {
        self.stop_check = Some(batches.max(1));
    }

    /// Mini-batches between two checks for a stop request: every one when the check is free
    /// (one process), else about [`WORK_PER_STOP_CHECK`] of work apart. Every rank computes
    /// the same number, so they check at the same mini-batches.
    fn stop_check_interval(&self, batch_size: usize) -> usize {
        if let Some(batches) = self.stop_check {
            return batches;
        }
        if self.groups.size() * self.engine.comm().size() == 1 {
            return 1;
        }
        let sizes = self.engine.plan().sizes();
        let weights: usize = sizes.windows(2).map(|p| p[0] * p[1]).sum();
        // Forward, input gradient and weight gradient: three products of 2 flops a weight.
        let work = (6 * weights * batch_size).max(1);
        WORK_PER_STOP_CHECK.div_ceil(work)
    }

    /// One pass over `train` in shuffled mini-batches, or the rest of the epoch a stop
    /// request interrupted (same shuffle, from its next mini-batch).
    pub fn run_epoch(
        &mut self,
        train: &Dataset,
        observer: &mut dyn Observer<C>,
    ) -> Result<EpochReport> {
        let started = Instant::now();
        let n = train.len();
        let bs = self.config.batch_size.min(n.max(1));
        let (inputs, outputs) = (self.engine.inputs(), self.engine.outputs());
        let (groups, group) = (self.groups.size(), self.groups.rank());
        let continued = self.progress.take();
        if let Some(p) = &continued {
            self.rng = UniformStream::at(p.shuffle);
        }
        let shuffle = self.rng.position();
        self.order.clear();
        self.order.extend(0..n);
        if self.config.shuffle {
            self.rng.shuffle(&mut self.order);
        }
        let most = bs.div_ceil(groups);
        self.x.resize(inputs * most, 0.0);
        self.t.resize(outputs * most, 0.0);
        let batches = n.div_ceil(bs);
        let check_every = self.stop_check_interval(bs);
        observer.epoch_started(self.epoch + 1, batches);
        // [loss sum, correct, loss of the run's first batch], summed over the data groups at
        // the end of the epoch (a continued epoch's sums so far count once, on group 0).
        let (skipped, mut totals) = match &continued {
            Some(p) if group == 0 => (p.batches, p.totals),
            Some(p) => (p.batches, [0.0; 3]),
            None => (0, [0.0; 3]),
        };
        if skipped > 0 {
            observer.batch_done(skipped);
        }
        let first_batch = self.start_loss.is_none().then(|| n.min(bs));
        let order = std::mem::take(&mut self.order);
        let mut seen = (skipped * bs).min(n);
        let mut done = skipped;
        for (bi, batch) in order.chunks(bs).enumerate().skip(skipped) {
            let mine = &batch[Partition::share(batch.len(), groups, group)];
            let b = mine.len();
            let (x, t) = (&mut self.x[..inputs * b], &mut self.t[..outputs * b]);
            train.gather_features(mine, x)?;
            encode_targets(&train.targets, mine, outputs, t);
            let loss = self.step_on(b, batch.len());
            totals[0] += loss;
            if bi == 0 && first_batch.is_some() {
                totals[2] = loss;
            }
            if let (Targets::Classes(ids), true) = (&train.targets, b > 0) {
                let y = self.engine.output(b);
                totals[1] += mine
                    .iter()
                    .enumerate()
                    .filter(|&(col, &i)| predicted_class(y, b, col) == ids[i] as usize)
                    .count() as f64;
            }
            done = bi + 1;
            observer.batch_done(done);
            seen += batch.len();
            if seen < n && done.is_multiple_of(check_every) && self.agreed_stop(observer) {
                break;
            }
        }
        self.order = order;
        self.groups.all_reduce_sum(&mut totals);
        // A stop request ends the epoch early: its figures cover the batches run, and it
        // does not count as done (nor is it checked for divergence); the next run_epoch (or a
        // run resumed from a checkpoint of this state) continues it.
        let interrupted = seen < n;
        let samples = seen.max(1) as f64;
        let train_loss = totals[0] / samples;
        if interrupted {
            self.progress = Some(EpochProgress {
                batches: done,
                shuffle,
                totals,
            });
        } else {
            self.epoch += 1;
            if let Some(size) = first_batch {
                self.start_loss = Some(totals[2] / size.max(1) as f64);
            }
            self.check_diverged(train_loss)?;
        }
        let secs = started.elapsed().as_secs_f64();
        let run_now = seen - (skipped * bs).min(n);
        Ok(EpochReport {
            epoch: self.epoch + usize::from(interrupted),
            train_loss,
            train_accuracy: matches!(train.targets, Targets::Classes(_))
                .then(|| totals[1] / samples),
            validation: None,
            samples_per_sec: run_now as f64 / secs.max(1e-9),
            stopped_early: false,
            interrupted,
        })
    }
}

/// The next item from `arrive` (`None` once every sender is gone). Until it comes, a worker of
/// a rayon pool of several threads runs the pool's pending jobs, one at a time, checking for
/// the item after each and waiting up to [`HELP_POLL`] when none is pending; any other thread
/// just waits.
fn next_helping_the_pool<T>(arrive: &Receiver<T>) -> Option<T> {
    let in_pool = rayon::current_thread_index().is_some() && rayon::current_num_threads() > 1;
    if !in_pool {
        return arrive.recv().ok();
    }
    loop {
        match arrive.try_recv() {
            Ok(item) => return Some(item),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            continue;
        }
        match arrive.recv_timeout(HELP_POLL) {
            Ok(item) => return Some(item),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Grid, ThreadComm};
    use crate::model::{Activation, Init};

    /// 48 samples of 5 features, 3 classes by the sign pattern of two features.
    fn data() -> Dataset {
        let mut rng = UniformStream::new(11, 0);
        let n = 48;
        let features = ndarray::Array2::from_shape_fn((5, n), |_| rng.next_unit() * 2.0 - 1.0);
        let labels = (0..n)
            .map(|s| u32::from(features[[0, s]] > 0.0) + u32::from(features[[1, s]] > 0.3))
            .collect();
        Dataset {
            features: features.into(),
            targets: Targets::Classes(labels),
            classes: vec!["a".into(), "b".into(), "c".into()],
            origin: "synthetic".into(),
        }
    }

    fn network() -> Network {
        Network::new(
            &[5, 9, 7, 3],
            Activation::Tanh,
            Activation::Softmax,
            Init::Xavier,
            4,
        )
        .unwrap()
    }

    fn config() -> TrainConfig {
        TrainConfig {
            epochs: 3,
            batch_size: 8,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: OptimizerConfig::adam(0.01),
            seed: 5,
            patience: None,
            shuffle: true,
        }
    }

    /// Trains on `grid` (ranks as threads), prunes to `prune` if given, and returns rank 0's
    /// gathered network.
    fn train_on(grid: Grid, prune: Option<f64>) -> Network {
        train_with(grid, prune, |_| {})
    }

    /// [`train_on`] with each rank's trainer set up by `setup` first.
    fn train_with(
        grid: Grid,
        prune: Option<f64>,
        setup: impl Fn(&mut Trainer<ThreadComm>) + Sync,
    ) -> Network {
        let data = data();
        let mut nets = ThreadComm::run(grid.ranks(), |world| {
            let topology = Topology::new(world, grid).unwrap();
            let mut t = Trainer::distributed(&network(), config(), Par::Seq, &topology).unwrap();
            setup(&mut t);
            t.fit(&data, None, &mut Silent).unwrap();
            if let Some(s) = prune {
                t.prune(Pruning::connections(Target::Sparsity(s), Scope::Global));
                t.train_more(1, &data, None, &mut Silent).unwrap();
            }
            t.finish()
        });
        nets.remove(0).expect("rank 0 gathers the network")
    }

    fn max_difference(a: &Network, b: &Network) -> f32 {
        a.layers()
            .iter()
            .zip(b.layers())
            .flat_map(|(x, y)| {
                let w = x.dense_weights().into_iter().zip(y.dense_weights());
                w.chain(x.bias().iter().copied().zip(y.bias().iter().copied()))
                    .map(|(p, q)| (p - q).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn training_on_a_grid_of_threads_matches_one_process() {
        let one = train_on(Grid::model(1), None);
        assert_ne!(one, network(), "training changed nothing");
        for grid in [
            Grid::model(2),
            Grid::data(2),
            Grid::model(3),
            "2x2".parse().unwrap(),
        ] {
            let diff = max_difference(&train_on(grid, None), &one);
            assert!(
                diff <= 1e-5,
                "grid {grid}: largest weight difference {diff}"
            );
        }
    }

    #[test]
    fn gradients_summed_during_the_backward_pass_train_the_same_model() {
        // Every step of these small networks sums during the pass, in pieces of 20 values
        // (two or three rows of a dense layer, a whole pruned layer), and must give the model
        // the sums after the pass give, bit for bit.
        let during = |t: &mut Trainer<ThreadComm>| (t.overlap_from, t.bucket_values) = (0, 20);
        let after = |t: &mut Trainer<ThreadComm>| t.overlap_from = usize::MAX;
        for grid in [Grid::data(2), Grid::data(3), "2x2".parse().unwrap()] {
            for prune in [None, Some(0.6)] {
                let (a, b) = (
                    train_with(grid, prune, during),
                    train_with(grid, prune, after),
                );
                assert_eq!(a, b, "grid {grid}, pruned to {prune:?}");
            }
        }
        assert_ne!(train_with(Grid::data(2), None, during), network());
    }

    /// Asks to stop (on one rank only) after `after` mini-batches of epoch `epoch`, or at the
    /// end of epoch `epoch` when `after` is `None`.
    struct StopAt {
        epoch: usize,
        after: Option<usize>,
        asks: bool,
        current: usize,
        done: usize,
    }

    impl<C: Comm> Observer<C> for StopAt {
        fn epoch_started(&mut self, epoch: usize, _batches: usize) {
            (self.current, self.done) = (epoch, 0);
        }
        fn batch_done(&mut self, done: usize) {
            self.done = done;
        }
        fn may_stop(&self) -> bool {
            true
        }
        fn stop_requested(&mut self) -> bool {
            let here = match self.after {
                Some(b) => self.done == b,
                None => self.done == 0 || self.done == 48usize.div_ceil(8),
            };
            self.asks && self.current == self.epoch && here
        }
    }

    /// Trains on `grid` until the last rank asks to stop as `StopAt` says; returns rank 0's
    /// network, the epochs done and whether the last report was interrupted.
    fn train_until(grid: Grid, epoch: usize, after: Option<usize>) -> (Network, usize, bool) {
        let data = data();
        let mut runs = ThreadComm::run(grid.ranks(), |world| {
            let asks = world.rank() + 1 == grid.ranks();
            let topology = Topology::new(world, grid).unwrap();
            let mut t = Trainer::distributed(&network(), config(), Par::Seq, &topology).unwrap();
            t.set_stop_check_interval(1);
            let mut stop = StopAt {
                epoch,
                after,
                asks,
                current: 0,
                done: 0,
            };
            let reports = t.fit(&data, None, &mut stop).unwrap();
            assert!(t.stopped(), "every rank stops");
            let interrupted = reports.last().unwrap().interrupted;
            (t.epoch(), interrupted, t.finish())
        });
        let (epochs, interrupted, net) = runs.remove(0);
        (net.unwrap(), epochs, interrupted)
    }

    #[test]
    fn a_stop_request_on_any_rank_stops_every_rank_at_the_same_batch() {
        // At the end of epoch 1: the network of a one-epoch run, bit for bit.
        let one_epoch = {
            let config = TrainConfig {
                epochs: 1,
                ..config()
            };
            let mut t = Trainer::new(network(), config, Par::Seq).unwrap();
            t.fit(&data(), None, &mut Silent).unwrap();
            t.into_network()
        };
        let (net, epochs, interrupted) = train_until(Grid::model(1), 1, None);
        assert_eq!((epochs, interrupted), (1, false));
        assert_eq!(net, one_epoch);
        // Inside epoch 2, after 3 of its 6 batches: not epoch 1's or the full run's weights;
        // the same on a grid where only the last rank asks.
        let (mid, epochs, interrupted) = train_until(Grid::model(1), 2, Some(3));
        assert_eq!((epochs, interrupted), (1, true));
        assert!(max_difference(&mid, &one_epoch) > 1e-4);
        assert!(max_difference(&mid, &train_on(Grid::model(1), None)) > 1e-4);
        for grid in [Grid::model(2), Grid::data(2), "2x2".parse().unwrap()] {
            let (net, epochs, interrupted) = train_until(grid, 2, Some(3));
            assert_eq!((epochs, interrupted), (1, true), "grid {grid}");
            let diff = max_difference(&net, &mid);
            assert!(
                diff <= 1e-5,
                "grid {grid}: largest weight difference {diff}"
            );
        }
    }

    /// Trains on `grid` until the last rank asks to stop after `after` batches of epoch 2,
    /// passes the whole state through a checkpoint, resumes on the same grid and trains to the
    /// end: the network and state then, on rank 0.
    fn interrupt_and_resume(grid: Grid, after: usize) -> (Network, TrainState) {
        let data = data();
        let mut ends = ThreadComm::run(grid.ranks(), |world| {
            let asks = world.rank() + 1 == grid.ranks();
            let topology = Topology::new(world, grid).unwrap();
            let mut t = Trainer::distributed(&network(), config(), Par::Seq, &topology).unwrap();
            t.set_stop_check_interval(1);
            let mut stop = StopAt {
                epoch: 2,
                after: Some(after),
                asks,
                current: 0,
                done: 0,
            };
            t.fit(&data, None, &mut stop).unwrap();
            assert_eq!(t.interrupted_epoch().map(|p| p.batches), Some(after));
            // Through the checkpoint format, as a preempted job's state goes.
            let mut bytes = match t.snapshot() {
                Some((network, state)) => crate::io::encode(&crate::io::Checkpoint {
                    model: crate::model::Model {
                        network,
                        normalizer: crate::data::Normalizer::identity(),
                        task: crate::model::Task::Regression,
                    },
                    training: Some(crate::io::TrainingCheckpoint {
                        config: config(),
                        validation_split: 0.0,
                        state,
                    }),
                })
                .unwrap(),
                None => Vec::new(),
            };
            topology.world.broadcast_bytes(0, &mut bytes);
            let saved = crate::io::decode(std::path::Path::new("saved"), &bytes).unwrap();
            let training = saved.training.unwrap();
            let mut t = Trainer::resume_distributed(
                &saved.model.network,
                training.config,
                training.state,
                Par::Seq,
                &topology,
            )
            .unwrap();
            let reports = t.fit(&data, None, &mut Silent).unwrap();
            assert!(!reports[0].interrupted && reports.len() == 2);
            t.snapshot()
        });
        ends.remove(0).expect("rank 0 gathers")
    }

    #[test]
    fn a_run_interrupted_inside_an_epoch_resumes_to_the_uninterrupted_result() {
        for grid in [
            Grid::model(1),
            Grid::model(2),
            Grid::data(2),
            "2x2".parse().unwrap(),
        ] {
            let whole = ThreadComm::run(grid.ranks(), |world| {
                let topology = Topology::new(world, grid).unwrap();
                let mut t =
                    Trainer::distributed(&network(), config(), Par::Seq, &topology).unwrap();
                t.fit(&data(), None, &mut Silent).unwrap();
                t.snapshot()
            })
            .remove(0)
            .unwrap();
            for after in [1, 3, 5] {
                let (network, state) = interrupt_and_resume(grid, after);
                assert_eq!(network, whole.0, "grid {grid}, stopped after batch {after}");
                assert_eq!(state, whole.1, "grid {grid}, stopped after batch {after}");
                assert!(state.progress.is_none() && state.start_loss.is_some());
            }
        }
    }

    #[test]
    fn errors_name_the_parameter_not_a_flag() {
        let config = TrainConfig {
            batch_size: 0,
            ..config()
        };
        let err = Trainer::new(network(), config, Par::Seq)
            .err()
            .expect("an error");
        assert!(
            matches!(
                err,
                Error::Parameter {
                    name: "batch_size",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), "batch_size must be at least 1");
    }

    #[test]
    fn distributed_pruning_keeps_the_mask_of_one_process() {
        let one = train_on(Grid::model(1), Some(0.6));
        let mask = |n: &Network| -> Vec<bool> {
            n.layers()
                .iter()
                .flat_map(|l| {
                    l.dense_weights()
                        .into_iter()
                        .map(|w| w != 0.0)
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let absent = mask(&one).iter().filter(|&&m| !m).count() as f64;
        assert!(absent / mask(&one).len() as f64 > 0.55, "pruned {absent}");
        for grid in [Grid::model(3), "2x2".parse().unwrap()] {
            let got = train_on(grid, Some(0.6));
            assert_eq!(mask(&got), mask(&one), "grid {grid}");
            assert!(max_difference(&got, &one) <= 1e-5, "grid {grid}");
        }
    }
}
