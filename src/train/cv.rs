//! k-fold cross-validation.

use super::metrics::Evaluation;
use super::trainer::{PrunePlan, Silent, TrainConfig, Trainer};
use crate::cluster::{Comm, Topology};
use crate::data::{Dataset, NormKind, Normalizer, kfold};
use crate::error::{Error, Result};
use crate::kernels::Par;
use crate::model::Network;

/// Results of k-fold cross-validation.
#[derive(Clone, Debug, PartialEq)]
pub struct CvReport {
    /// Held-out evaluation of every fold.
    pub folds: Vec<Evaluation>,
    /// Held-out evaluation of every fold's network after gradual pruning (when asked).
    pub pruned: Vec<Evaluation>,
}

impl CvReport {
    /// Mean held-out accuracy (classification).
    pub fn mean_accuracy(&self) -> Option<f64> {
        mean_accuracy(&self.folds)
    }

    /// Standard deviation of the folds' accuracies.
    pub fn std_accuracy(&self) -> Option<f64> {
        std_accuracy(&self.folds)
    }

    /// Mean held-out accuracy of the pruned networks.
    pub fn pruned_mean_accuracy(&self) -> Option<f64> {
        mean_accuracy(&self.pruned)
    }

    /// Standard deviation of the pruned networks' accuracies.
    pub fn pruned_std_accuracy(&self) -> Option<f64> {
        std_accuracy(&self.pruned)
    }

    /// Mean held-out loss.
    pub fn mean_loss(&self) -> f64 {
        self.folds.iter().map(|f| f.loss).sum::<f64>() / self.folds.len().max(1) as f64
    }
}

fn mean_accuracy(folds: &[Evaluation]) -> Option<f64> {
    let accs: Option<Vec<f64>> = folds.iter().map(|f| f.accuracy).collect();
    accs.filter(|a| !a.is_empty())
        .map(|a| a.iter().sum::<f64>() / a.len() as f64)
}

fn std_accuracy(folds: &[Evaluation]) -> Option<f64> {
    let mean = mean_accuracy(folds)?;
    let n = folds.len().max(1) as f64;
    Some(
        (folds
            .iter()
            .filter_map(|f| f.accuracy)
            .map(|a| (a - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt(),
    )
}

/// Trains a fresh network (`make_network(fold)`) on k-1 folds and tests it on the k-th, for
/// every fold. The normaliser is fitted on each fold's training part only. With `prune`, each
/// fold's trained network is then pruned gradually (fine-tuned on the same training part) and
/// tested again. Every rank of `topology` takes part (pass `&Topology::single()` for one
/// process).
#[allow(clippy::too_many_arguments)]
pub fn cross_validate<C: Comm>(
    topology: &Topology<C>,
    data: &Dataset,
    k: usize,
    norm: NormKind,
    config: &TrainConfig,
    par: Par,
    make_network: impl Fn(usize) -> Result<Network>,
    prune: Option<&PrunePlan>,
    on_fold: &mut dyn FnMut(usize, &Evaluation, Option<&Evaluation>),
) -> Result<CvReport> {
    if k < 2 || k > data.len() {
        return Err(Error::parameter(
            "k",
            format!(
                "is {k}: cross-validation needs 2 <= k <= {} (the number of samples)",
                data.len()
            ),
        ));
    }
    let (mut folds, mut pruned) = (Vec::with_capacity(k), Vec::new());
    for (f, (train_idx, test_idx)) in kfold(&data.targets, data.len(), k, config.seed)
        .into_iter()
        .enumerate()
    {
        let mut train = data.subset(&train_idx);
        let mut test = data.subset(&test_idx);
        let normalizer = Normalizer::fit_dataset(norm, &train, &topology.data)?;
        train.normalize(&normalizer)?;
        test.normalize(&normalizer)?;
        let mut trainer = Trainer::distributed(&make_network(f)?, config.clone(), par, topology)?;
        trainer.fit(&train, None, &mut Silent)?;
        let eval = trainer.evaluate(&test)?;
        let after = match prune {
            Some(plan) => {
                trainer.prune_gradually(plan, &train, None, &mut |_| {})?;
                Some(trainer.evaluate(&test)?)
            }
            None => None,
        };
        on_fold(f, &eval, after.as_ref());
        folds.push(eval);
        pruned.extend(after);
    }
    Ok(CvReport { folds, pruned })
}
