//! Training: losses, optimisers, the epoch loop, metrics and cross-validation.

mod cv;
mod loss;
pub mod memory;
mod metrics;
mod optim;
mod trainer;

pub use cv::{CvReport, cross_validate};
pub use loss::Loss;
pub use metrics::{
    Evaluation, check_targets, encode_targets, evaluate, predict_all, predicted_class,
};
pub use optim::{Optimizer, OptimizerConfig, OptimizerState};
pub use trainer::{
    Best, EpochProgress, EpochReport, Observer, PrunePlan, PruneStep, Silent, TrainConfig,
    TrainState, Trainer,
};
