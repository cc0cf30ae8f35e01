//! A fully connected layer (or a block of its rows) on features-major activations.
//!
//! Shapes: `w` is `[out, in]`, `b` is `[out]`, `x` is `[in, batch]`, `y` and `delta` are
//! `[out, batch]`, with `batch >= 1`. `out` may be 0 (a rank that owns no neuron of a layer).
//! A forward pass may also read its input sample-major (`[batch, in]`, [`Input`]): the
//! product packs its input either way, so a caller's rows need no transposed copy, and the
//! result is the same bits.

use super::Par;
use super::activation::Activation;
use super::activation::bias_activation;
use super::gemm::{Mat, PackedRows, gemm, gemm_packed};

/// A forward pass's input.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// `[in, batch]`: the engine's layout.
    FeaturesMajor(&'a [f32]),
    /// `[batch, in]`: one sample after the other, as callers hold data.
    SampleMajor(&'a [f32]),
}

impl<'a> Input<'a> {
    /// The values.
    pub fn values(&self) -> &'a [f32] {
        match *self {
            Input::FeaturesMajor(x) | Input::SampleMajor(x) => x,
        }
    }

    /// The input as the `[in, batch]` operand of the product.
    fn operand(&self, inputs: usize, batch: usize) -> Mat<'a> {
        match *self {
            Input::FeaturesMajor(x) => Mat::row_major(x, batch),
            Input::SampleMajor(x) => Mat::transposed(x, inputs),
        }
    }
}

/// `y = f(w · x + b)` for an element-wise `f`; bias and activation are applied to each row
/// block right after its product. Softmax spans every row of a column, so it is the caller's
/// (after the whole layer is known): pass [`Activation::Identity`] and apply it afterwards.
///
/// # Panics
/// If `act` is softmax, `batch` is 0 or the slice lengths do not match `[out, in]`,
/// `[in, batch]`, `[out, batch]`.
pub fn forward(
    par: Par,
    w: &[f32],
    b: &[f32],
    x: Input<'_>,
    batch: usize,
    act: Activation,
    y: &mut [f32],
) {
    let (out, inputs) = check_forward(b, x, batch, act);
    assert_eq!(w.len(), out * inputs, "dense::forward: w is not [out, in]");
    gemm(
        par,
        out,
        inputs,
        batch,
        Mat::row_major(w, inputs),
        x.operand(inputs, batch),
        y,
        bias_then(b, batch, act),
    );
}

/// [`forward`] with the weights packed beforehand ([`PackedRows`], `[out, in]`): the same
/// bits, faster when the same weights serve many batches.
///
/// # Panics
/// As [`forward`].
pub fn forward_packed(
    par: Par,
    w: &PackedRows,
    b: &[f32],
    x: Input<'_>,
    batch: usize,
    act: Activation,
    y: &mut [f32],
) {
    let (out, inputs) = check_forward(b, x, batch, act);
    assert_eq!(
        (w.rows(), w.cols()),
        (out, inputs),
        "dense::forward: w is not [out, in]"
    );
    gemm_packed(
        par,
        w,
        batch,
        x.operand(inputs, batch),
        y,
        bias_then(b, batch, act),
    );
}

/// Checks the arguments of a forward pass; returns `(out, in)`.
fn check_forward(b: &[f32], x: Input<'_>, batch: usize, act: Activation) -> (usize, usize) {
    assert!(
        act.is_elementwise(),
        "dense::forward: softmax is applied by the caller"
    );
    assert!(batch > 0, "dense::forward: empty batch");
    let x = x.values();
    let inputs = x.len() / batch;
    assert_eq!(
        x.len(),
        inputs * batch,
        "dense::forward: x is not [in, batch]"
    );
    (b.len(), inputs)
}

/// The epilogue of a forward pass: bias and activation on each block of finished rows.
fn bias_then(b: &[f32], batch: usize, act: Activation) -> impl Fn(usize, &mut [f32]) + Sync {
    move |first, block| {
        let rows = block.len() / batch;
        bias_activation(block, &b[first..first + rows], batch, act);
    }
}

/// Differentiates `z = w · x + b` for the parameters: `dw = delta · xᵀ` (`[out, in]`) and
/// `db = sum over the batch of delta` (`[out]`), where `delta = dL/dz`.
///
/// # Panics
/// If `batch` is 0 or the slice lengths do not match.
pub fn backward_params(
    par: Par,
    delta: &[f32],
    x: &[f32],
    batch: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    assert!(batch > 0, "dense::backward_params: empty batch");
    let (out, inputs) = (db.len(), x.len() / batch);
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
        Mat::row_major(delta, batch),
        Mat::transposed(x, batch),
        dw,
        |_, _| {},
    );
    for (d, row) in db.iter_mut().zip(delta.chunks_exact(batch)) {
        *d = row.iter().sum();
    }
}

/// Differentiates `z = w · x + b` for the input: `dx = wᵀ · delta` (`[in, batch]`). With
/// `w` a block of rows, this is that block's part of the sum (zero for an empty block).
///
/// # Panics
/// If `batch` is 0 or the slice lengths do not match.
pub fn backward_input(par: Par, w: &[f32], delta: &[f32], batch: usize, dx: &mut [f32]) {
    assert!(batch > 0, "dense::backward_input: empty batch");
    let (out, inputs) = (delta.len() / batch, dx.len() / batch);
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
        Mat::transposed(w, inputs),
        Mat::row_major(delta, batch),
        dx,
        |_, _| {},
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_block_of_rows_contributes_zero() {
        let mut dx = [f32::NAN; 6];
        backward_input(Par::Seq, &[], &[], 2, &mut dx);
        assert_eq!(dx, [0.0; 6]);
        let (mut dw, mut db) = ([0.0f32; 0], [0.0f32; 0]);
        backward_params(Par::Seq, &[], &[1.0; 6], 2, &mut dw, &mut db);
        let mut y = [0.0f32; 0];
        forward(
            Par::Seq,
            &[],
            &[],
            Input::FeaturesMajor(&[1.0; 6]),
            2,
            Activation::Relu,
            &mut y,
        );
    }

    #[test]
    fn packed_weights_give_the_bits_of_the_plain_layer() {
        let (out, inputs, batch) = (29, 70, 5);
        let w = crate::kernels::test_values(out * inputs, 1);
        let b = crate::kernels::test_values(out, 2);
        let x = crate::kernels::test_values(inputs * batch, 3);
        let (mut plain, mut packed) = (vec![0.0; out * batch], vec![0.0; out * batch]);
        forward(
            Par::Seq,
            &w,
            &b,
            Input::FeaturesMajor(&x),
            batch,
            Activation::Tanh,
            &mut plain,
        );
        let w = PackedRows::new(&w, out, inputs);
        forward_packed(
            Par::Seq,
            &w,
            &b,
            Input::FeaturesMajor(&x),
            batch,
            Activation::Tanh,
            &mut packed,
        );
        assert_eq!(plain, packed);
    }

    #[test]
    fn a_two_by_two_layer_by_hand() {
        // w = [[1, 2], [3, 4]], b = [0.5, -1], x = two samples (1, 1) and (2, 0).
        let w = [1.0, 2.0, 3.0, 4.0];
        let x = [1.0, 2.0, 1.0, 0.0]; // [in, batch]: row 0 = first feature of both samples
        let mut y = [0.0; 4];
        forward(
            Par::Seq,
            &w,
            &[0.5, -1.0],
            Input::FeaturesMajor(&x),
            2,
            Activation::Identity,
            &mut y,
        );
        assert_eq!(y, [3.5, 2.5, 6.0, 5.0]);
        let mut dx = [0.0; 4];
        backward_input(Par::Seq, &w, &[1.0, 0.0, 0.0, 1.0], 2, &mut dx);
        assert_eq!(dx, [1.0, 3.0, 2.0, 4.0]);
    }
}
