//! Weight initialisation from a seeded, portable random stream ([`UniformStream`]).

use crate::rng::UniformStream;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a layer's weights are drawn (biases start at zero, except `Uniform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// The seed's scheme: weights and biases uniform in [0, 1).
    Uniform,
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = sqrt(6 / (in + out))`; biases 0.
    Xavier,
    /// He/Kaiming uniform: `U(-a, a)`, `a = sqrt(6 / in)`; biases 0.
    He,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Init::Uniform => "uniform",
            Init::Xavier => "xavier",
            Init::He => "he",
        })
    }
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" | "seed" => Ok(Init::Uniform),
            "xavier" | "glorot" => Ok(Init::Xavier),
            "he" | "kaiming" => Ok(Init::He),
            _ => Err(format!(
                "unknown initialisation '{s}': expected uniform, xavier or he"
            )),
        }
    }
}

/// Fills `weights` (`[out, in]`, row-major) and `bias` (`[out]`) for one layer.
pub fn fill_layer(init: Init, rng: &mut UniformStream, weights: &mut [f32], bias: &mut [f32]) {
    let out = bias.len();
    let inputs = weights.len().checked_div(out).unwrap_or(0);
    match init {
        Init::Uniform => {
            weights.iter_mut().for_each(|w| *w = rng.next_unit());
            bias.iter_mut().for_each(|b| *b = rng.next_unit());
        }
        Init::Xavier | Init::He => {
            let a = if init == Init::Xavier {
                (6.0 / (inputs + out).max(1) as f32).sqrt()
            } else {
                (6.0 / inputs.max(1) as f32).sqrt()
            };
            weights.iter_mut().for_each(|w| *w = rng.next_symmetric(a));
            bias.iter_mut().for_each(|b| *b = 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn he_bound_is_respected() {
        let mut rng = UniformStream::new(1, 0);
        let mut w = vec![0.0; 24 * 6];
        let mut b = vec![1.0; 24];
        fill_layer(Init::He, &mut rng, &mut w, &mut b);
        let a = 1.0f32; // sqrt(6 / 6)
        assert!(w.iter().all(|x| x.abs() <= a));
        assert!(w.iter().any(|x| x.abs() > 0.5 * a));
        assert!(b.iter().all(|&x| x == 0.0));
    }
}
