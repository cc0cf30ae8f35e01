//! The backward pass over one rank's shard, held apart from the engine's communicator: a
//! data-parallel trainer runs it on a thread of its own and sums each finished piece of the
//! gradients over the data groups while the layers below are still being differentiated.

use super::{Gradients, ShardLayer};
use crate::cluster::watchdog;
use crate::kernels::Par;
use crate::kernels::activation::activation_backward;
use crate::kernels::dense;
use crate::model::Weights;

/// A piece of one layer's gradients that the backward pass will not touch again: some rows'
/// weight gradients and the same rows' bias gradients (the whole layer when its weights are
/// sparse).
#[derive(Debug)]
pub struct GradientPiece<'g> {
    /// The layer.
    pub layer: usize,
    /// Weight gradients of the rows, row after row.
    pub weights: &'g mut [f32],
    /// Bias gradients of the rows.
    pub bias: &'g mut [f32],
}

/// Sums a model-parallel group's partial input gradients: called with the layer `l` whose
/// input gradient it is, this rank's partial sum `[inputs of l, batch]`, and the rows this
/// rank owns in layer `l - 1` to fill.
pub type InputGradientSum<'a> = &'a mut dyn FnMut(usize, &[f32], &mut [f32]);

/// What a backward pass reads and writes besides the communicator (see
/// [`super::Engine::local_backprop`]).
pub struct Backprop<'e> {
    pub(super) layers: &'e [ShardLayer],
    pub(super) acts: &'e [Vec<f32>],
    pub(super) pre: &'e [Vec<f32>],
    pub(super) deltas: &'e mut [Vec<f32>],
    pub(super) partial: &'e mut [f32],
    pub(super) out_delta: &'e [f32],
    pub(super) par: Par,
}

impl Backprop<'_> {
    /// Differentiates the batch `x` last run forward, from the output layer's `dL/dz`, into
    /// `grads`, last layer first. Each piece of the gradients is handed to `finished` as soon
    /// as it is final: a dense layer's weight gradients in blocks of rows of about
    /// `bucket_values` values (whole layers when it is `usize::MAX`), a sparse layer's whole.
    /// `exchange` sums the partial input gradients of a sharded layer (`None` when this rank
    /// holds whole layers).
    ///
    /// # Panics
    /// If `grads` is not shaped like the shard (see [`super::Engine::zero_gradients`]).
    pub fn run<'g>(
        self,
        x: &[f32],
        batch: usize,
        grads: &'g mut Gradients,
        bucket_values: usize,
        mut exchange: Option<InputGradientSum<'_>>,
        finished: &mut dyn FnMut(GradientPiece<'g>),
    ) {
        let last = self.layers.len() - 1;
        let own_out = self.layers[last].rows.clone();
        self.deltas[last][..own_out.len() * batch]
            .copy_from_slice(&self.out_delta[own_out.start * batch..own_out.end * batch]);
        let mut slots: Vec<_> = grads.weights.iter_mut().zip(&mut grads.bias).collect();
        assert_eq!(
            slots.len(),
            self.layers.len(),
            "Backprop::run: gradients for another depth"
        );
        for (l, shard) in self.layers.iter().enumerate().rev() {
            watchdog::set_layer(l);
            let (below, here) = self.deltas.split_at_mut(l);
            let delta = &here[0][..shard.len() * batch];
            let input = if l == 0 {
                x
            } else {
                &self.acts[l - 1][..shard.inputs * batch]
            };
            let (dw, db) = slots.pop().expect("one slot per layer");
            assert_eq!(
                (dw.len(), db.len()),
                (shard.weights.stored(), shard.len()),
                "Backprop::run: gradients of layer {l} are not shaped like its shard"
            );
            weight_gradients(
                self.par,
                shard,
                l,
                delta,
                input,
                batch,
                bucket_values,
                dw,
                db,
            )
            .for_each(&mut *finished);
            if l == 0 {
                continue;
            }
            let prev = &self.layers[l - 1];
            let dx = &mut below[l - 1][..prev.len() * batch];
            match exchange.as_mut() {
                Some(sum) => {
                    let partial = &mut self.partial[..shard.inputs * batch];
                    shard
                        .weights
                        .backward_input(self.par, delta, batch, partial);
                    sum(l, partial, dx);
                }
                None => shard.weights.backward_input(self.par, delta, batch, dx),
            }
            let y = &input[prev.rows.start * batch..prev.rows.end * batch];
            let z = prev
                .activation
                .needs_pre_activation()
                .then(|| &self.pre[l - 1][..prev.len() * batch]);
            activation_backward(y, z, dx, batch, prev.activation);
        }
    }
}

/// Layer `l`'s weight and bias gradients, computed piece by piece as the returned iterator is
/// advanced: blocks of rows of about `bucket_values` values for dense weights (every element
/// is the same sum over the batch as in one product), the whole layer for sparse ones.
#[allow(clippy::too_many_arguments)]
fn weight_gradients<'g, 'a>(
    par: Par,
    shard: &'a ShardLayer,
    layer: usize,
    delta: &'a [f32],
    input: &'a [f32],
    batch: usize,
    bucket_values: usize,
    dw: &'g mut [f32],
    db: &'g mut [f32],
) -> impl Iterator<Item = GradientPiece<'g>> + 'a
where
    'g: 'a,
{
    let sparse = matches!(shard.weights, Weights::Sparse(_));
    let rows_per_piece = if sparse {
        shard.len().max(1)
    } else {
        (bucket_values / shard.inputs.max(1)).clamp(1, shard.len().max(1))
    };
    let (mut dw, mut db, mut row) = (dw, db, 0);
    std::iter::from_fn(move || {
        if row >= shard.len() {
            return None;
        }
        let rows = rows_per_piece.min(shard.len() - row);
        let (w, w_rest) = std::mem::take(&mut dw).split_at_mut(if sparse {
            shard.weights.stored()
        } else {
            rows * shard.inputs
        });
        let (b, b_rest) = std::mem::take(&mut db).split_at_mut(rows);
        let delta = &delta[row * batch..(row + rows) * batch];
        if sparse {
            shard
                .weights
                .backward_params(par, delta, input, batch, w, b);
        } else {
            dense::backward_params(par, delta, input, batch, w, b);
        }
        (dw, db, row) = (w_rest, b_rest, row + rows);
        Some(GradientPiece {
            layer,
            weights: w,
            bias: b,
        })
    })
}
