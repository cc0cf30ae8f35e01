//! Policy: the defaults and steps that turn what a user wants (a task, a data file, a
//! validation fraction) into the library's settings, so that every front end (the command
//! line, a Python binding) gets the same model from the same intent.
//!
//! - the task a data set asks for and the network for it ([`task_of`], [`Architecture`],
//!   [`Blueprint`]);
//! - the output head: output activation and loss for a task ([`output_head`],
//!   [`implied_loss`]);
//! - the weight initialisation for a hidden activation ([`default_init`]);
//! - the optimisers' default hyper-parameters ([`optimizer`]), and the settings to fine-tune
//!   a model that carries none ([`fine_tuning`]);
//! - the data format of a file, read by content ([`load_dataset`]);
//! - the validation split and normalisation ([`split_and_normalize`]);
//! - a whole training run: the settings and their shared defaults ([`TrainSettings`]), and
//!   the run on a data set ([`Run`]).

use crate::data::Targets;
use crate::data::{
    CsvOptions, Dataset, LabelKind, Normalizer, load_csv, load_idx, load_npy, load_npy_shards,
    looks_like_idx, looks_like_npy, npy_directory, train_val_split,
};
use crate::error::{Error, Result};
use crate::model::{Activation, Init, Network, Task};
use crate::train::{Loss, OptimizerConfig, TrainConfig};
use std::path::Path;

mod training;
pub use training::{PruneSettings, Run, TrainSettings, check_training_memory};

/// What `data`'s targets ask for: classification over its class names, or regression (a
/// data set without targets counts as regression). An error when every sample has the same
/// class: there is nothing to learn.
pub fn task_of(data: &Dataset) -> Result<Task> {
    match &data.targets {
        Targets::Classes(_) if data.classes.len() == 1 => Err(Error::data(
            &data.origin,
            0,
            format!(
                "every sample has the same label '{}': nothing to learn",
                data.classes[0]
            ),
        )),
        Targets::Classes(_) => Ok(Task::Classification {
            classes: data.classes.clone(),
        }),
        _ => Ok(Task::Regression),
    }
}

/// The network a user asks for: its hidden layers and their activation; the output head and
/// the initialisation follow from the task and the activation unless given.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// Hidden layer sizes, input side first (none: a linear or logistic model).
    pub hidden: Vec<usize>,
    /// The hidden layers' activation.
    pub activation: Activation,
    /// The output activation (default: [`output_head`]'s).
    pub output_activation: Option<Activation>,
    /// The loss (default: [`output_head`]'s).
    pub loss: Option<Loss>,
    /// The initialisation (default: [`default_init`] of the hidden activation).
    pub init: Option<Init>,
}

/// An [`Architecture`] fitted to a data set: everything needed to build its networks.
#[derive(Clone, Debug, PartialEq)]
pub struct Blueprint {
    /// What the outputs mean.
    pub task: Task,
    /// Layer sizes, inputs first.
    pub sizes: Vec<usize>,
    /// The hidden layers' activation.
    pub activation: Activation,
    /// The output activation.
    pub output: Activation,
    /// The loss to train with.
    pub loss: Loss,
    /// The initialisation.
    pub init: Init,
}

impl Architecture {
    /// The blueprint for `data`: its features in, its task's outputs out (one per class
    /// under softmax, one for two classes under a sigmoid, one for regression).
    pub fn for_data(&self, data: &Dataset) -> Result<Blueprint> {
        let task = task_of(data)?;
        let classes = task.classes().map_or(0, <[String]>::len);
        let (output, loss) = output_head(classes, self.output_activation, self.loss)?;
        let outputs = if output == Activation::Softmax {
            classes.max(1)
        } else {
            task.output_size()
        };
        let sizes = std::iter::once(data.n_features())
            .chain(self.hidden.iter().copied())
            .chain([outputs])
            .collect();
        Ok(Blueprint {
            task,
            sizes,
            activation: self.activation,
            output,
            loss,
            init: self.init.unwrap_or(default_init(self.activation)),
        })
    }
}

impl Blueprint {
    /// A network of this blueprint, initialised from `seed`.
    pub fn build(&self, seed: u64) -> Result<Network> {
        Network::new(&self.sizes, self.activation, self.output, self.init, seed)
    }
}

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

/// He initialisation for the ReLU family (ReLU, leaky and capped ReLU, GELU, SiLU), Xavier
/// otherwise.
pub fn default_init(hidden: Activation) -> Init {
    match hidden {
        Activation::Relu
        | Activation::LeakyRelu(_)
        | Activation::CappedRelu(_)
        | Activation::Gelu
        | Activation::Silu => Init::He,
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

/// Reads `path` as what its content says: a directory of NPY files ([`NPY_FEATURES`] and,
/// unless `labels` names another, [`NPY_LABELS`]), an NPY file (with `labels`, an NPY label
/// file), an IDX image file (MNIST format, with `labels`, an IDX label file) or CSV (read
/// with `csv`). Class names or regression targets follow
/// `csv.labels`, and a model's feature count `csv.expect_features` when given.
pub fn load_dataset(path: &Path, labels: Option<&Path>, csv: &CsvOptions) -> Result<Dataset> {
    let data = if path.is_dir() {
        let (features, labels) = npy_directory(path, labels)?;
        load_npy_shards(path, &features, &labels, &csv.labels)?
    } else if looks_like_npy(path)? {
        load_npy(path, labels, &csv.labels)?
    } else if looks_like_idx(path)? {
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
                    "is for IDX image and NPY files; {} is read as CSV (its label is one of its columns)",
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
    fit: impl FnOnce(&Dataset) -> Result<Normalizer>,
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
    let normalizer = fit(&train)?;
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

    #[test]
    fn a_blueprint_sizes_the_network_for_the_data() {
        let data = |targets: Targets, classes: &[&str]| Dataset {
            features: ndarray::Array2::zeros((4, 6)).into(),
            targets,
            classes: classes.iter().map(|c| c.to_string()).collect(),
            origin: "d.csv".into(),
        };
        let arch = Architecture {
            hidden: vec![8, 5],
            activation: Activation::Relu,
            output_activation: None,
            loss: None,
            init: None,
        };
        let three = arch
            .for_data(&data(
                Targets::Classes(vec![0, 1, 2, 0, 1, 2]),
                &["a", "b", "c"],
            ))
            .unwrap();
        assert_eq!(three.sizes, vec![4, 8, 5, 3]);
        assert_eq!(
            (three.output, three.loss, three.init),
            (Activation::Softmax, Loss::SoftmaxCrossEntropy, Init::He)
        );
        let two = arch
            .for_data(&data(Targets::Classes(vec![0, 1, 0, 1, 0, 1]), &["a", "b"]))
            .unwrap();
        assert_eq!((two.sizes[3], two.output), (1, Activation::Sigmoid));
        let regression = arch
            .for_data(&data(Targets::Values(vec![0.0; 6]), &[]))
            .unwrap();
        assert_eq!(
            (regression.task, regression.sizes[3], regression.loss),
            (Task::Regression, 1, Loss::Mse)
        );
        let err = arch
            .for_data(&data(Targets::Classes(vec![0; 6]), &["only"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.csv: every sample has the same label 'only': nothing to learn"
        );
        let net = three.build(7).unwrap();
        assert_eq!(
            (net.sizes(), net.output_activation()),
            (three.sizes.clone(), Activation::Softmax)
        );
    }
}
