//! Losses, averaged over the batch, and their gradients at the output layer's pre-activation.

use crate::error::{Error, Result};
use crate::kernels::activation::activation_backward;
use crate::model::Activation;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Probabilities are clamped to `[EPS, 1 - EPS]` inside logarithms.
const EPS: f64 = 1e-7;

/// A training loss. Per sample:
/// - `Mse`: `½ Σ_i (y_i - t_i)²` (the seed's; its gradient is `y - t`),
/// - `BinaryCrossEntropy`: `-Σ_i [t_i ln y_i + (1 - t_i) ln(1 - y_i)]` (sigmoid outputs),
/// - `SoftmaxCrossEntropy`: `-Σ_i t_i ln y_i` (softmax outputs, one-hot targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Half the squared error summed over outputs (averaged over samples when reported):
    /// with one output, half of PyTorch's default `MSELoss`.
    Mse,
    /// Binary cross-entropy.
    BinaryCrossEntropy,
    /// Categorical cross-entropy after softmax.
    SoftmaxCrossEntropy,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::Mse => "mse",
            Loss::BinaryCrossEntropy => "bce",
            Loss::SoftmaxCrossEntropy => "ce",
        })
    }
}

impl FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mse" => Ok(Loss::Mse),
            "bce" | "binary-cross-entropy" => Ok(Loss::BinaryCrossEntropy),
            "ce" | "cross-entropy" | "softmax-cross-entropy" => Ok(Loss::SoftmaxCrossEntropy),
            _ => Err(format!("unknown loss '{s}': expected mse, bce or ce")),
        }
    }
}

impl Loss {
    /// Checks that the output activation suits this loss.
    pub fn check(self, output: Activation) -> Result<()> {
        if output.needs_pre_activation() {
            return Err(Error::config(format!(
                "{output} is an activation for hidden layers: the output layer's gradient is computed from its outputs, so it needs identity, sigmoid or softmax (or tanh, relu, leaky-relu, relu-cap)"
            )));
        }
        let ok = match self {
            Loss::Mse => true,
            Loss::BinaryCrossEntropy => output == Activation::Sigmoid,
            Loss::SoftmaxCrossEntropy => output == Activation::Softmax,
        };
        if ok {
            Ok(())
        } else {
            let need = if self == Loss::BinaryCrossEntropy {
                "sigmoid"
            } else {
                "softmax"
            };
            Err(Error::config(format!(
                "loss {self} needs a {need} output layer, but the output activation is {output}"
            )))
        }
    }

    /// The loss summed over the samples of a batch (`y`, `t`: `[outputs, batch]`).
    pub fn sum(self, y: &[f32], t: &[f32]) -> f64 {
        y.iter()
            .zip(t)
            .map(|(&y, &t)| {
                let (y, t) = (y as f64, t as f64);
                match self {
                    Loss::Mse => 0.5 * (y - t) * (y - t),
                    Loss::BinaryCrossEntropy => {
                        let p = y.clamp(EPS, 1.0 - EPS);
                        -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
                    }
                    Loss::SoftmaxCrossEntropy => -t * y.clamp(EPS, 1.0).ln(),
                }
            })
            .sum()
    }

    /// Writes `dL/dz` of the output layer (`[outputs, batch]`) for the loss averaged over
    /// `mean_over` samples (the whole batch, of which this `batch` may be one rank's share):
    /// `(y - t) / mean_over` for the matched pairs (sigmoid + BCE, softmax + CE), else `dL/dy`
    /// through the activation.
    pub fn output_delta(
        self,
        act: Activation,
        y: &[f32],
        t: &[f32],
        batch: usize,
        mean_over: usize,
        dz: &mut [f32],
    ) {
        let inv = 1.0 / mean_over as f32;
        for ((d, &y), &t) in dz.iter_mut().zip(y).zip(t) {
            *d = (y - t) * inv;
        }
        if self == Loss::Mse {
            // `check` keeps activations that need their pre-activation off the output.
            activation_backward(y, None, dz, batch, act);
        }
    }
}
