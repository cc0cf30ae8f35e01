//! Activations: the [`Activation`] enum and its names (in `kind.rs`), fused bias + activation
//! (forward) and the activation's derivative (backward) on features-major blocks
//! `[neurons, batch]`.

mod kind;

pub use kind::Activation;

/// Runs `$body` with `$f` bound to `$act`'s element-wise function (the identity for softmax,
/// whose normalisation over a column is the caller's): one copy of the body per activation,
/// so every loop is compiled, and vectorised, for its own function. The one list of the
/// formulas that every layout shares.
macro_rules! with_function {
    ($act:expr, $f:ident => $body:block) => {
        match $act {
            Activation::Sigmoid => {
                let $f = sigmoid;
                $body
            }
            Activation::Tanh => {
                let $f = f32::tanh;
                $body
            }
            Activation::Relu => {
                let $f = |z: f32| z.max(0.0);
                $body
            }
            Activation::CappedRelu(cap) => {
                let $f = |z: f32| capped_relu(z, cap);
                $body
            }
            Activation::LeakyRelu(a) => {
                let $f = |z: f32| if z > 0.0 { z } else { a * z };
                $body
            }
            Activation::Gelu => {
                let $f = gelu;
                $body
            }
            Activation::Silu => {
                let $f = silu;
                $body
            }
            Activation::Identity | Activation::Softmax => {
                let $f = |z: f32| z;
                $body
            }
        }
    };
}

/// `y[i, :] = f(y[i, :] + bias[i])` for every row of the block `y` (`[bias.len(), batch]`).
/// Softmax is taken over the rows of each column (one sample's neurons), so it must be given
/// the whole layer.
///
/// # Panics
/// If `y.len() != bias.len() * batch`.
pub fn bias_activation(y: &mut [f32], bias: &[f32], batch: usize, act: Activation) {
    assert_eq!(
        y.len(),
        bias.len() * batch,
        "bias_activation: shape mismatch"
    );
    if batch == 0 {
        return;
    }
    with_function!(act, f => {
        for (row, &b) in y.chunks_exact_mut(batch).zip(bias) {
            row.iter_mut().for_each(|v| *v = f(*v + b));
        }
    });
    if act == Activation::Softmax {
        softmax_columns(y, bias.len(), batch);
    }
}

/// `y[s, j] = f(y[s, j] + bias[j])` for every sample `s` of a **samples-major** block `y`
/// (`[batch, bias.len()]`), an element-wise `act`: the same values as [`bias_activation`]
/// gives the features-major block.
///
/// # Panics
/// If `act` is softmax or `y.len()` is not a multiple of `bias.len()`.
pub fn bias_activation_by_sample(y: &mut [f32], bias: &[f32], act: Activation) {
    assert!(act.is_elementwise(), "bias_activation_by_sample: softmax");
    assert!(
        !bias.is_empty() && y.len().is_multiple_of(bias.len()),
        "bias_activation_by_sample: shape mismatch"
    );
    with_function!(act, f => {
        for ys in y.chunks_exact_mut(bias.len()) {
            ys.iter_mut().zip(bias).for_each(|(v, &b)| *v = f(*v + b));
        }
    });
}

/// `y = f(y)` element-wise, for an element-wise activation `act` applied after the product.
pub fn apply_activation(y: &mut [f32], act: Activation) {
    debug_assert!(
        act.is_elementwise(),
        "apply_activation: {act} is not element-wise"
    );
    bias_activation(y, &[0.0], y.len(), act);
}

/// Numerically stable softmax of every column of `y` (`[rows, batch]`).
pub fn softmax_columns(y: &mut [f32], rows: usize, batch: usize) {
    for col in 0..batch {
        let max = (0..rows)
            .map(|i| y[i * batch + col])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for i in 0..rows {
            let e = (y[i * batch + col] - max).exp();
            y[i * batch + col] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for i in 0..rows {
            y[i * batch + col] *= inv;
        }
    }
}

/// The logistic function, stable for large |z|.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `z · Φ(z)`, Φ the standard normal CDF.
#[inline]
pub fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + libm::erff(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// `min(max(z, 0), cap)`.
#[inline]
pub fn capped_relu(z: f32, cap: f32) -> f32 {
    z.max(0.0).min(cap)
}

/// `z · σ(z)`.
#[inline]
pub fn silu(z: f32) -> f32 {
    z * sigmoid(z)
}

/// Turns `g = dL/dy` into `dL/dz` in place (all `[rows, batch]`). This differentiates
/// [`bias_activation`]: `y = f(z)`, so `dz = f'(z) * dy`. `f'` is written in terms of the
/// outputs `y` where it can be; GELU and SiLU need the pre-activation `z`
/// ([`Activation::needs_pre_activation`]); for softmax `dz_i = y_i (g_i - sum_j y_j g_j)` per
/// column.
///
/// # Panics
/// If the lengths differ or are not a multiple of `batch`, or `z` is missing where needed.
pub fn activation_backward(
    y: &[f32],
    z: Option<&[f32]>,
    g: &mut [f32],
    batch: usize,
    act: Activation,
) {
    assert_eq!(y.len(), g.len(), "activation_backward: shape mismatch");
    let pre = || {
        let z = z.expect("activation_backward: this activation needs the pre-activation");
        assert_eq!(z.len(), g.len(), "activation_backward: shape mismatch");
        z
    };
    match act {
        Activation::Gelu => zip_apply(pre(), g, |z| {
            let cdf = 0.5 * (1.0 + libm::erff(z * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * z * z).exp()
                * (0.5 * std::f32::consts::FRAC_2_SQRT_PI)
                * std::f32::consts::FRAC_1_SQRT_2;
            cdf + z * pdf
        }),
        Activation::Silu => zip_apply(pre(), g, |z| {
            let s = sigmoid(z);
            s * (1.0 + z * (1.0 - s))
        }),
        Activation::Sigmoid => zip_apply(y, g, |y| y * (1.0 - y)),
        Activation::Tanh => zip_apply(y, g, |y| 1.0 - y * y),
        Activation::Relu => zip_apply(y, g, |y| if y > 0.0 { 1.0 } else { 0.0 }),
        Activation::LeakyRelu(a) => zip_apply(y, g, |y| if y > 0.0 { 1.0 } else { a }),
        // Flat at both ends: an output at the cap (or at 0) passes no gradient.
        Activation::CappedRelu(cap) => {
            zip_apply(y, g, |y| if y > 0.0 && y < cap { 1.0 } else { 0.0 })
        }
        Activation::Identity => {}
        Activation::Softmax => {
            assert!(
                batch > 0 && y.len().is_multiple_of(batch),
                "activation_backward: bad batch"
            );
            let rows = y.len() / batch;
            for col in 0..batch {
                let s: f32 = (0..rows)
                    .map(|i| y[i * batch + col] * g[i * batch + col])
                    .sum();
                for i in 0..rows {
                    let k = i * batch + col;
                    g[k] = y[k] * (g[k] - s);
                }
            }
        }
    }
}

/// `g[k] *= derivative(saved[k])`: `saved` is the output or the pre-activation.
#[inline]
fn zip_apply(saved: &[f32], g: &mut [f32], derivative: impl Fn(f32) -> f32) {
    for (gi, &s) in g.iter_mut().zip(saved) {
        *gi *= derivative(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_act(act: Activation, z: &[f64]) -> Vec<f64> {
        match act {
            Activation::Sigmoid => z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(),
            Activation::Tanh => z.iter().map(|z| z.tanh()).collect(),
            Activation::Relu => z.iter().map(|z| z.max(0.0)).collect(),
            Activation::LeakyRelu(a) => z
                .iter()
                .map(|&z| if z > 0.0 { z } else { a as f64 * z })
                .collect(),
            Activation::Identity => z.to_vec(),
            Activation::Softmax => {
                let s: f64 = z.iter().map(|z| z.exp()).sum();
                z.iter().map(|z| z.exp() / s).collect()
            }
            Activation::Gelu => z
                .iter()
                .map(|z| 0.5 * z * (1.0 + libm::erf(z / 2f64.sqrt())))
                .collect(),
            Activation::Silu => z.iter().map(|z| z / (1.0 + (-z).exp())).collect(),
            Activation::CappedRelu(c) => z.iter().map(|z| z.max(0.0).min(c as f64)).collect(),
        }
    }

    /// The battery every activation passes: forward against an f64 definition, backward
    /// against central finite differences of it.
    const ALL: [Activation; 9] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Identity,
        Activation::Softmax,
        Activation::Gelu,
        Activation::Silu,
        Activation::CappedRelu(1.0),
    ];

    #[test]
    fn forward_matches_definitions() {
        // 3 neurons x 2 samples, features-major.
        let z = [0.5f32, -2.0, 1.5, 0.25, -0.75, 3.0];
        let bias = [0.1f32, -0.2, 0.3];
        for act in ALL {
            let mut y = z;
            bias_activation(&mut y, &bias, 2, act);
            for col in 0..2 {
                let zc: Vec<f64> = (0..3).map(|i| (z[i * 2 + col] + bias[i]) as f64).collect();
                let want = f64_act(act, &zc);
                for i in 0..3 {
                    assert!((y[i * 2 + col] as f64 - want[i]).abs() < 1e-6, "{act}");
                }
            }
        }
        assert_eq!(sigmoid(-100.0), 0.0f32.max(sigmoid(-100.0)));
        assert!(sigmoid(-100.0).is_finite() && sigmoid(100.0) == 1.0);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let z = [0.5f64, -2.0, 1.5, 0.25, -0.75, 3.0];
        let g = [0.3f64, -1.0, 0.7, 0.2, 0.9, -0.4];
        for act in ALL {
            let pre = z.map(|v| v as f32);
            let mut y = pre;
            bias_activation(&mut y, &[0.0; 3], 2, act);
            let mut dz = g.map(|v| v as f32);
            activation_backward(&y, Some(&pre), &mut dz, 2, act);
            // L = sum g * f(z); dL/dz by central differences, column by column.
            for (k, &got) in dz.iter().enumerate() {
                let (row, col) = (k / 2, k % 2);
                let l = |delta: f64| {
                    let zc: Vec<f64> = (0..3)
                        .map(|i| z[i * 2 + col] + if i == row { delta } else { 0.0 })
                        .collect();
                    f64_act(act, &zc)
                        .iter()
                        .enumerate()
                        .map(|(i, y)| y * g[i * 2 + col])
                        .sum::<f64>()
                };
                let fd = (l(1e-6) - l(-1e-6)) / 2e-6;
                assert!((got as f64 - fd).abs() < 1e-5, "{act} [{k}]: {got} vs {fd}");
            }
        }
    }

    #[test]
    fn by_sample_equals_by_feature_bit_for_bit() {
        // 3 neurons x 4 samples, with zeros of both signs.
        let by_feature = [
            0.5f32, -0.0, 1.5, 0.25, -0.75, 3.0, 0.0, -2.5, 40.0, -0.3, 0.3, 1e-3,
        ];
        let bias = [0.1f32, -0.2, 0.3];
        for act in ALL.into_iter().filter(|a| a.is_elementwise()) {
            let mut want = by_feature;
            bias_activation(&mut want, &bias, 4, act);
            let mut by_sample: Vec<f32> =
                (0..12).map(|k| by_feature[(k % 3) * 4 + k / 3]).collect();
            bias_activation_by_sample(&mut by_sample, &bias, act);
            for k in 0..12 {
                assert_eq!(
                    by_sample[k].to_bits(),
                    want[(k % 3) * 4 + k / 3].to_bits(),
                    "{act}"
                );
            }
        }
    }
}
