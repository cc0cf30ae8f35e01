//! A fully connected layer on features-major activations.
//!
//! Shapes: `w` is `[out, in]`, `b` is `[out]`, `x` is `[in, batch]`, `y` and `delta` are
//! `[out, batch]`.

use super::Par;
use super::activation::{bias_activation, softmax_columns};
use super::gemm::{Mat, gemm};
use crate::model::Activation;

/// `y = f(w · x + b)`; bias and activation are applied to each row block right after its
/// product (softmax, which spans all rows, after the whole product).
///
/// # Panics
/// If the slice lengths do not match `[out, in]`, `[in, batch]`, `[out, batch]`.
pub fn forward(
    par: Par,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    batch: usize,
    act: Activation,
    y: &mut [f32],
) {
    let out = b.len();
    let inputs = w.len().checked_div(out).unwrap_or(0);
    assert_eq!(w.len(), out * inputs, "dense::forward: w is not [out, in]");
    assert_eq!(
        x.len(),
        inputs * batch,
        "dense::forward: x is not [in, batch]"
    );
    let fused = if act.is_elementwise() {
        act
    } else {
        Activation::Identity
    };
    gemm(
        par,
        out,
        inputs,
        batch,
        1.0,
        Mat::row_major(w, inputs),
        Mat::row_major(x, batch),
        0.0,
        y,
        |first, block| {
            let rows = block.len() / batch.max(1);
            bias_activation(block, &b[first..first + rows], batch, fused);
        },
    );
    if act == Activation::Softmax {
        softmax_columns(y, out, batch);
    }
}

/// Differentiates `z = w · x + b` for the parameters: `dw = delta · xᵀ` (`[out, in]`) and
/// `db = sum over the batch of delta` (`[out]`), where `delta = dL/dz`.
///
/// # Panics
/// If the slice lengths do not match.
pub fn backward_params(
    par: Par,
    delta: &[f32],
    x: &[f32],
    batch: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let out = db.len();
    let inputs = dw.len().checked_div(out).unwrap_or(0);
    assert_eq!(
        delta.len(),
        out * batch,
        "dense::backward_params: delta is not [out, batch]"
    );
    assert_eq!(
        x.len(),
        inputs * batch,
        "dense::backward_params: x is not [in, batch]"
    );
    gemm(
        par,
        out,
        batch,
        inputs,
        1.0,
        Mat::row_major(delta, batch),
        Mat::transposed(x, batch),
        0.0,
        dw,
        |_, _| {},
    );
    for (d, row) in db.iter_mut().zip(delta.chunks_exact(batch.max(1))) {
        *d = row.iter().sum();
    }
}

/// Differentiates `z = w · x + b` for the input: `dx = wᵀ · delta` (`[in, batch]`).
///
/// # Panics
/// If the slice lengths do not match.
pub fn backward_input(par: Par, w: &[f32], delta: &[f32], batch: usize, dx: &mut [f32]) {
    let out = delta.len().checked_div(batch).unwrap_or(0);
    let inputs = w.len().checked_div(out).unwrap_or(0);
    assert_eq!(
        w.len(),
        out * inputs,
        "dense::backward_input: w is not [out, in]"
    );
    assert_eq!(
        dx.len(),
        inputs * batch,
        "dense::backward_input: dx is not [in, batch]"
    );
    gemm(
        par,
        inputs,
        out,
        batch,
        1.0,
        Mat::transposed(w, inputs),
        Mat::row_major(delta, batch),
        0.0,
        dx,
        |_, _| {},
    );
}
