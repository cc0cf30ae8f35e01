//! Checkpoints of a training run as it goes: every few epochs, and the final model.

use super::checkpoint::{Checkpoint, TrainingCheckpoint, save};
use crate::cluster::Comm;
use crate::data::Normalizer;
use crate::error::Result;
use crate::model::{Model, Task};
use crate::train::Trainer;
use std::path::{Path, PathBuf};

/// Where and how often a training run is saved, and what it needs besides the trainer's
/// state to make a checkpoint a whole model (normaliser, task) that can be resumed
/// (validation split). Call [`PeriodicCheckpoints::epoch_done`] from an observer after each
/// epoch, on every rank.
pub struct PeriodicCheckpoints {
    path: PathBuf,
    every: usize,
    normalizer: Normalizer,
    task: Task,
    validation_split: f64,
    saved_epoch: Option<usize>,
}

impl PeriodicCheckpoints {
    /// Checkpoints to `path` every `every` epochs (0: only [`PeriodicCheckpoints::save_final`]).
    pub fn new(
        path: PathBuf,
        every: usize,
        normalizer: Normalizer,
        task: Task,
        validation_split: f64,
    ) -> Self {
        PeriodicCheckpoints {
            path,
            every,
            normalizer,
            task,
            validation_split,
            saved_epoch: None,
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The epoch of the last checkpoint written, if any.
    pub fn saved_epoch(&self) -> Option<usize> {
        self.saved_epoch
    }

    /// The checkpoint of `trainer` now, on rank 0 (`None` elsewhere). Every rank must call
    /// it: the shards are gathered.
    pub fn snapshot<C: Comm>(&self, trainer: &Trainer<C>) -> Option<Checkpoint> {
        let (network, state) = trainer.snapshot()?;
        Some(Checkpoint {
            model: Model {
                network,
                normalizer: self.normalizer.clone(),
                task: self.task.clone(),
            },
            training: Some(TrainingCheckpoint {
                config: trainer.config().clone(),
                validation_split: self.validation_split,
                state,
            }),
        })
    }

    /// Writes a checkpoint if epoch `epoch` (just finished and checked) is one of every
    /// `every`-th. Every rank must call it.
    pub fn epoch_done<C: Comm>(&mut self, trainer: &Trainer<C>, epoch: usize) -> Result<()> {
        if self.every > 0
            && epoch.is_multiple_of(self.every)
            && let Some(snapshot) = self.snapshot(trainer)
        {
            save(&self.path, &snapshot)?;
            self.saved_epoch = Some(epoch);
        }
        Ok(())
    }

    /// Writes the checkpoint of `trainer` as it is now, to continue exactly from here (also
    /// inside an epoch a stop request interrupted). Every rank must call it; rank 0 writes and
    /// returns `true`.
    pub fn save_now<C: Comm>(&self, trainer: &Trainer<C>) -> Result<bool> {
        match self.snapshot(trainer) {
            Some(snapshot) => save(&self.path, &snapshot).map(|()| true),
            None => Ok(false),
        }
    }

    /// Ends the run and writes its checkpoint: the training state of the last epoch, with
    /// the network [`Trainer::finish`] returns (the best under early stopping, else the
    /// last). Every rank must call it; rank 0 writes and returns `true`.
    pub fn save_final<C: Comm>(&self, trainer: Trainer<C>) -> Result<bool> {
        let snapshot = self.snapshot(&trainer);
        let network = trainer.finish();
        match (snapshot, network) {
            (Some(mut snapshot), Some(network)) => {
                snapshot.model.network = network;
                save(&self.path, &snapshot)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Targets};
    use crate::io::load;
    use crate::kernels::Par;
    use crate::model::{Activation, Init, Network};
    use crate::train::{EpochReport, Loss, Observer, OptimizerConfig, TrainConfig};

    struct Saver(PeriodicCheckpoints);

    impl<C: Comm> Observer<C> for Saver {
        fn epoch_done(&mut self, trainer: &Trainer<C>, report: &EpochReport) -> Result<()> {
            self.0.epoch_done(trainer, report.epoch)
        }
    }

    #[test]
    fn saves_every_few_epochs_and_at_the_end() {
        let dir = std::env::temp_dir().join(format!("nnmpi-periodic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.nnmpi");
        let features = ndarray::Array2::from_shape_fn((2, 20), |(i, s)| (i + s) as f32 / 20.0);
        let data = Dataset {
            features: features.into(),
            targets: Targets::Values((0..20).map(|s| s as f32 / 20.0).collect()),
            classes: vec![],
            origin: "synthetic".into(),
        };
        let net = Network::new(
            &[2, 3, 1],
            Activation::Tanh,
            Activation::Identity,
            Init::Xavier,
            1,
        )
        .unwrap();
        let config = TrainConfig {
            epochs: 5,
            batch_size: 4,
            loss: Loss::Mse,
            optimizer: OptimizerConfig::adam(0.01),
            seed: 3,
            patience: None,
            shuffle: true,
        };
        let mut trainer = Trainer::new(net, config, Par::Seq).unwrap();
        let checkpoints = PeriodicCheckpoints::new(
            path.clone(),
            2,
            Normalizer::identity(),
            Task::Regression,
            0.0,
        );
        let mut saver = Saver(checkpoints);
        trainer.fit(&data, None, &mut saver).unwrap();
        assert_eq!(saver.0.saved_epoch(), Some(4));
        let at_4 = load(&path).unwrap().training.unwrap();
        assert_eq!(at_4.state.epoch, 4);
        assert!(saver.0.save_final(trainer).unwrap());
        let last = load(&path).unwrap();
        assert_eq!(last.training.unwrap().state.epoch, 5);
        assert_eq!(last.model.task, Task::Regression);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
