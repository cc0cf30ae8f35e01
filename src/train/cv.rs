//! k-fold cross-validation.

use super::metrics::Evaluation;
use super::trainer::{Silent, TrainConfig, Trainer};
use crate::data::{Dataset, NormKind, Normalizer, kfold};
use crate::dist::{Comm, Topology};
use crate::error::{Error, Result};
use crate::kernels::Par;
use crate::model::Network;

/// Results of k-fold cross-validation.
#[derive(Clone, Debug, PartialEq)]
pub struct CvReport {
    /// Held-out evaluation of every fold.
    pub folds: Vec<Evaluation>,
}

impl CvReport {
    /// Mean held-out accuracy (classification).
    pub fn mean_accuracy(&self) -> Option<f64> {
        let accs: Option<Vec<f64>> = self.folds.iter().map(|f| f.accuracy).collect();
        accs.map(|a| a.iter().sum::<f64>() / a.len().max(1) as f64)
    }

    /// Standard deviation of the folds' accuracies.
    pub fn std_accuracy(&self) -> Option<f64> {
        let mean = self.mean_accuracy()?;
        let n = self.folds.len().max(1) as f64;
        Some(
            (self
                .folds
                .iter()
                .filter_map(|f| f.accuracy)
                .map(|a| (a - mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt(),
        )
    }

    /// Mean held-out loss.
    pub fn mean_loss(&self) -> f64 {
        self.folds.iter().map(|f| f.loss).sum::<f64>() / self.folds.len().max(1) as f64
    }
}

/// Trains a fresh network (`make_network(fold)`) on k-1 folds and tests it on the k-th, for
/// every fold. The normaliser is fitted on each fold's training part only. Every rank of
/// `topology` takes part (pass `&Topology::single()` for one process).
#[allow(clippy::too_many_arguments)]
pub fn cross_validate<C: Comm>(
    topology: &Topology<C>,
    data: &Dataset,
    k: usize,
    norm: NormKind,
    config: &TrainConfig,
    par: Par,
    make_network: impl Fn(usize) -> Result<Network>,
    on_fold: &mut dyn FnMut(usize, &Evaluation),
) -> Result<CvReport> {
    if k < 2 || k > data.len() {
        return Err(Error::config(format!(
            "--kfold {k} needs 2 <= k <= {} (the number of samples)",
            data.len()
        )));
    }
    let mut folds = Vec::with_capacity(k);
    for (f, (train_idx, test_idx)) in kfold(&data.targets, data.len(), k, config.seed)
        .into_iter()
        .enumerate()
    {
        let mut train = data.subset(&train_idx);
        let mut test = data.subset(&test_idx);
        let normalizer = Normalizer::fit(norm, train.features.view());
        normalizer.apply(&mut train.features);
        normalizer.apply(&mut test.features);
        let mut trainer = Trainer::distributed(&make_network(f)?, config.clone(), par, topology)?;
        trainer.fit(&train, None, &mut Silent)?;
        let eval = trainer.evaluate(&test)?;
        on_fold(f, &eval);
        folds.push(eval);
    }
    Ok(CvReport { folds })
}
