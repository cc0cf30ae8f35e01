//! Policy: the defaults and steps that turn what a user wants (a task, a data file, a
//! validation fraction) into the library's settings, so that every front end (the command
//! line, a Python binding) gets the same model from the same intent.
//!
//! - the output head: output activation and loss for a task ([`output_head`],
//!   [`implied_loss`]);
//! - the weight initialisation for a hidden activation ([`default_init`]);
//! - the optimisers' default hyper-parameters ([`optimizer`]), and the settings to fine-tune
//!   a model that carries none ([`fine_tuning`]);
//! - the data format of a file, read by content ([`load_dataset`]);
//! - the validation split and normalisation ([`split_and_normalize`]).

use crate::data::{
    CsvOptions, Dataset, LabelKind, Normalizer, load_csv, load_idx, looks_like_idx, train_val_split,
};
use crate::error::{Error, Result};
use crate::model::{Activation, Init, Task};
use crate::train::{Loss, OptimizerConfig, TrainConfig};
use std::path::Path;

/// The output activation and loss for `classes` classes (0 for regression), each taken from
/// `output` and `loss` when given: sigmoid and binary cross-entropy for two classes, softmax
/// and cross-entropy for more, identity and mean squared error for regression.
pub fn output_head(
    classes: usize,
    output: Option<Activation>,
    loss: Option<Loss>,
) -> Result<(Activation, Loss)> {
    let act = output.unwrap_or(match classes {
        0 => Activation::Identity,
        1 | 2 => Activation::Sigmoid,
        _ => Activation::Softmax,
    });
    let loss = loss.unwrap_or(match act {
        Activation::Sigmoid if classes > 0 => Loss::BinaryCrossEntropy,
        _ => implied_loss(act, &Task::Regression),
    });
    loss.check(act)?;
    Ok((act, loss))
}

/// The loss a trained model's output implies (for evaluating it): cross-entropy after
/// softmax, binary cross-entropy after a sigmoid classifier, else mean squared error.
pub fn implied_loss(output: Activation, task: &Task) -> Loss {
    match (output, task) {
        (Activation::Softmax, _) => Loss::SoftmaxCrossEntropy,
        (Activation::Sigmoid, Task::Classification { .. }) => Loss::BinaryCrossEntropy,
        _ => Loss::Mse,
    }
}

/// He initialisation for the ReLU family (ReLU, leaky ReLU, GELU, SiLU), Xavier otherwise.
pub fn default_init(hidden: Activation) -> Init {
    match hidden {
        Activation::Relu | Activation::LeakyRelu(_) | Activation::Gelu | Activation::Silu => {
            Init::He
        }
        _ => Init::Xavier,
    }
}

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam (bias-corrected; decoupled weight decay).
    Adam,
    /// Stochastic gradient descent, with optional momentum.
    Sgd,
}

/// The optimiser's settings: the learning rate `lr` when given, else 0.001 for Adam and 0.1
/// for SGD; Adam's betas 0.9 and 0.999, epsilon 1e-8.
pub fn optimizer(
    kind: OptimizerKind,
    lr: Option<f32>,
    momentum: f32,
    weight_decay: f32,
) -> OptimizerConfig {
    match kind {
        OptimizerKind::Sgd => OptimizerConfig::Sgd {
            lr: lr.unwrap_or(0.1),
            momentum,
            weight_decay,
        },
        OptimizerKind::Adam => OptimizerConfig::Adam {
            lr: lr.unwrap_or(0.001),
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        },
    }
}

/// The settings to fine-tune a model that carries none (one imported, or saved without its
/// training state) with `loss`: batch 32, Adam at its default rate, seed 42, shuffled, no
/// early stopping; the epochs are the caller's to set.
pub fn fine_tuning(loss: Loss) -> TrainConfig {
    TrainConfig {
        epochs: 0,
        batch_size: 32,
        loss,
        optimizer: optimizer(OptimizerKind::Adam, None, 0.0, 0.0),
        seed: 42,
        patience: None,
        shuffle: true,
    }
}

/// Reads `path` as what its content says: an IDX image file (MNIST format, with `labels`, an
/// IDX label file) or CSV (read with `csv`). Class names or regression targets follow
/// `csv.labels`, and a model's feature count `csv.expect_features` when given.
pub fn load_dataset(path: &Path, labels: Option<&Path>, csv: &CsvOptions) -> Result<Dataset> {
    let data = if looks_like_idx(path)? {
        let d = load_idx(path, labels)?;
        match &csv.labels {
            LabelKind::Classes(Some(classes)) => d.with_classes(classes)?,
            LabelKind::Values if labels.is_some() => {
                return Err(Error::parameter(
                    "labels",
                    "are classes in an IDX file; this model does regression",
                ));
            }
            _ => d,
        }
    } else {
        if labels.is_some() {
            return Err(Error::parameter(
                "labels",
                format!(
                    "is for IDX image files; {} is read as CSV (its label is one of its columns)",
                    path.display()
                ),
            ));
        }
        load_csv(path, csv)?
    };
    if let Some(n) = csv.expect_features
        && data.n_features() != n
    {
        return Err(Error::data(
            path,
            0,
            format!(
                "{} features per sample, but the model expects {n}",
                data.n_features()
            ),
        ));
    }
    if data.is_empty() {
        return Err(Error::data(path, 0, "no samples"));
    }
    Ok(data)
}

/// Splits off `fraction` of `data` for validation (seeded) and normalises both parts with the
/// normaliser `fit` makes from the training part. Both parts must keep a sample.
pub fn split_and_normalize(
    data: &Dataset,
    fraction: f64,
    seed: u64,
    fit: impl FnOnce(&Dataset) -> Normalizer,
) -> Result<(Dataset, Option<Dataset>, Normalizer)> {
    let n = data.len();
    let (train_idx, val_idx) = train_val_split(n, fraction, seed);
    if train_idx.is_empty() {
        return Err(Error::parameter(
            "val_split",
            format!(
                "{fraction} holds out all {n} samples of {} for validation: no training sample is left",
                data.origin.display()
            ),
        ));
    }
    if fraction > 0.0 && val_idx.is_empty() {
        return Err(Error::parameter(
            "val_split",
            format!(
                "{fraction} of {n} samples is less than one sample: give a larger fraction or none"
            ),
        ));
    }
    let mut train = data.subset(&train_idx);
    let mut val = (!val_idx.is_empty()).then(|| data.subset(&val_idx));
    let normalizer = fit(&train);
    train.normalize(&normalizer)?;
    if let Some(v) = &mut val {
        v.normalize(&normalizer)?;
    }
    Ok((train, val, normalizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_follow_the_task_and_respect_what_is_given() {
        let head = |c, o, l| output_head(c, o, l).unwrap();
        assert_eq!(
            head(2, None, None),
            (Activation::Sigmoid, Loss::BinaryCrossEntropy)
        );
        assert_eq!(
            head(5, None, None),
            (Activation::Softmax, Loss::SoftmaxCrossEntropy)
        );
        assert_eq!(head(0, None, None), (Activation::Identity, Loss::Mse));
        assert_eq!(
            head(2, None, Some(Loss::Mse)),
            (Activation::Sigmoid, Loss::Mse)
        );
        assert!(output_head(2, Some(Activation::Tanh), Some(Loss::BinaryCrossEntropy)).is_err());
        assert_eq!(default_init(Activation::Gelu), Init::He);
        assert_eq!(default_init(Activation::Tanh), Init::Xavier);
        assert!(matches!(
            optimizer(OptimizerKind::Sgd, None, 0.9, 0.0),
            OptimizerConfig::Sgd { lr, momentum, .. } if lr == 0.1 && momentum == 0.9
        ));
    }
}
