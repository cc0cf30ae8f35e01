//! Activation functions and their names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A layer's non-linearity, applied after the bias.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    /// `1 / (1 + e^-z)`, the seed's transfer function.
    Sigmoid,
    /// `tanh(z)`.
    Tanh,
    /// `max(z, 0)`.
    Relu,
    /// `z` for `z > 0`, `alpha * z` otherwise.
    LeakyRelu(f32),
    /// `z` (linear output, regression).
    Identity,
    /// `e^z_i / sum_j e^z_j` over a sample's neurons; output layers only.
    Softmax,
    /// `z · Φ(z)` with `Φ` the standard normal CDF (the exact GELU, PyTorch's `nn.GELU()`).
    Gelu,
    /// `z · σ(z)` (SiLU, also called swish; PyTorch's `nn.SiLU()`).
    Silu,
    /// `min(max(z, 0), cap)`: ReLU clipped at `cap > 0` (the GraphChallenge sparse networks
    /// use 32; ReLU6 is `relu-cap:6`).
    CappedRelu(f32),
}

impl Activation {
    /// Default slope of leaky ReLU for negative inputs.
    pub const DEFAULT_LEAK: f32 = 0.01;

    /// Whether the function acts on each neuron alone (everything but softmax).
    pub fn is_elementwise(self) -> bool {
        !matches!(self, Activation::Softmax)
    }

    /// Whether the derivative needs the pre-activation `z`, not only the output `f(z)`
    /// (GELU and SiLU are not invertible): training then keeps `z`.
    pub fn needs_pre_activation(self) -> bool {
        matches!(self, Activation::Gelu | Activation::Silu)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Sigmoid => write!(f, "sigmoid"),
            Activation::Tanh => write!(f, "tanh"),
            Activation::Relu => write!(f, "relu"),
            Activation::LeakyRelu(a) if *a == Self::DEFAULT_LEAK => write!(f, "leaky-relu"),
            Activation::LeakyRelu(a) => write!(f, "leaky-relu:{a}"),
            Activation::Identity => write!(f, "identity"),
            Activation::Softmax => write!(f, "softmax"),
            Activation::Gelu => write!(f, "gelu"),
            Activation::Silu => write!(f, "silu"),
            Activation::CappedRelu(cap) => write!(f, "relu-cap:{cap}"),
        }
    }
}

impl FromStr for Activation {
    type Err = String;

    /// Parses `sigmoid`, `tanh`, `relu`, `leaky-relu[:alpha]`, `relu-cap:cap`, `gelu`, `silu`
    /// (or `swish`), `identity` (or `linear`), `softmax`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, arg) = match lower.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (lower.as_str(), None),
        };
        let act = match name {
            "sigmoid" | "logistic" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "leaky-relu" | "leaky_relu" | "leakyrelu" => {
                let alpha = match arg {
                    None => Self::DEFAULT_LEAK,
                    Some(a) => a
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1.0)
                        .ok_or_else(|| {
                            format!("leaky-relu slope '{a}' must be a number in [0, 1)")
                        })?,
                };
                return Ok(Activation::LeakyRelu(alpha));
            }
            "relu-cap" | "relu_cap" | "capped-relu" => {
                let cap = arg
                    .and_then(|c| c.parse::<f32>().ok())
                    .filter(|c| c.is_finite() && *c > 0.0)
                    .ok_or_else(|| {
                        format!("relu-cap needs a cap above 0, e.g. relu-cap:32 (got '{s}')")
                    })?;
                return Ok(Activation::CappedRelu(cap));
            }
            "identity" | "linear" | "none" => Activation::Identity,
            "softmax" => Activation::Softmax,
            "gelu" => Activation::Gelu,
            "silu" | "swish" => Activation::Silu,
            _ => {
                return Err(format!(
                    "unknown activation '{s}': expected sigmoid, tanh, relu, leaky-relu[:alpha], relu-cap:cap, gelu, silu, identity or softmax"
                ));
            }
        };
        if arg.is_some() {
            return Err(format!(
                "activation '{name}' takes no parameter (got '{s}')"
            ));
        }
        Ok(act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_name() {
        for act in [
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Relu,
            Activation::LeakyRelu(0.01),
            Activation::LeakyRelu(0.2),
            Activation::Identity,
            Activation::Softmax,
            Activation::Gelu,
            Activation::Silu,
            Activation::CappedRelu(32.0),
            Activation::CappedRelu(0.5),
        ] {
            assert_eq!(act.to_string().parse::<Activation>().unwrap(), act);
        }
        assert!("relu-cap".parse::<Activation>().is_err());
        assert!("relu-cap:0".parse::<Activation>().is_err());
        assert!("relu-cap:inf".parse::<Activation>().is_err());
        assert_eq!("swish".parse::<Activation>(), Ok(Activation::Silu));
        assert!("mish".parse::<Activation>().is_err());
        assert!("relu:3".parse::<Activation>().is_err());
        assert!("leaky-relu:2".parse::<Activation>().is_err());
    }
}
