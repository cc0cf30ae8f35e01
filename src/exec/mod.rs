//! The engine: owns this rank's shard of every layer and the activation buffers, and runs
//! forward (predict) and backward (train) passes over features-major batches with the
//! communication pattern of `src/cluster/README.md`. On one rank ([`SelfComm`]) it is the plain
//! single-process engine and never communicates.

mod backprop;
mod distinct;
mod plan;
mod share;

pub use backprop::{Backprop, GradientPiece, InputGradientSum};
pub use distinct::{Distinct, DistinctColumns, forward_distinct, nonzero_samples_dealt};
pub use plan::{Plan, Split};
pub use share::broadcast_dataset;

use crate::cluster::{Comm, SelfComm, watchdog};
use crate::kernels::Par;
use crate::kernels::activation::{apply_activation, softmax_columns};
use crate::kernels::dense::Input;
use crate::kernels::gemm::PackedRows;
use crate::model::{Activation, Layer, Network, Structure, Weights};
use ndarray::Array1;
use std::ops::Range;

/// This rank's rows of one layer: `weights` is `[rows, in]` (dense or sparse), `bias` is
/// `[rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardLayer {
    /// The neurons of the layer this rank owns.
    pub rows: Range<usize>,
    /// Inputs of the layer.
    pub inputs: usize,
    /// Weights of the owned neurons, `[rows, in]`.
    pub weights: Weights,
    /// Biases of the owned neurons.
    pub bias: Vec<f32>,
    /// The layer's activation.
    pub activation: Activation,
}

impl ShardLayer {
    /// Rows `rows` of `layer`.
    fn of(layer: &Layer, rows: Range<usize>) -> Self {
        ShardLayer {
            weights: layer.weights().slice_rows(rows.clone()),
            bias: layer.bias()[rows.clone()].to_vec(),
            rows,
            inputs: layer.inputs(),
            activation: layer.activation(),
        }
    }

    /// Number of owned neurons.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether this rank owns no neuron of the layer.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Weights and biases that are NaN or infinite.
    pub fn non_finite(&self) -> usize {
        crate::model::non_finite(self.weights.values()) + crate::model::non_finite(&self.bias)
    }

    /// Stored weight values and bias, for optimisers.
    pub fn params_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (self.weights.values_mut(), &mut self.bias)
    }

    /// `y = f(W x + b)` for the owned rows (`f` element-wise), from `packed` (these weights
    /// packed) when given.
    fn forward(
        &self,
        par: Par,
        packed: Option<&PackedRows>,
        x: Input<'_>,
        batch: usize,
        act: Activation,
        y: &mut [f32],
    ) {
        self.weights
            .forward(par, packed, &self.bias, x, batch, act, y)
    }
}

/// Gradients of the loss for every layer's shard: `weights[l]` is `[rows, in]`, `bias[l]` is
/// `[rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    /// Weight gradients per layer.
    pub weights: Vec<Vec<f32>>,
    /// Bias gradients per layer.
    pub bias: Vec<Vec<f32>>,
}

impl Gradients {
    /// Zeroed gradients shaped like the whole of `net`.
    pub fn zeros_like(net: &Network) -> Self {
        Gradients {
            weights: net
                .layers()
                .iter()
                .map(|l| vec![0.0; l.inputs() * l.outputs()])
                .collect(),
            bias: net
                .layers()
                .iter()
                .map(|l| vec![0.0; l.outputs()])
                .collect(),
        }
    }

    /// Sets every gradient to zero.
    pub fn clear(&mut self) {
        self.weights
            .iter_mut()
            .chain(&mut self.bias)
            .for_each(|g| g.fill(0.0));
    }
}

/// Runs a [`Network`] on batches, as one rank of a model-parallel group `comm` (or alone).
///
/// Buffers are features-major: `acts[l]` is layer `l`'s whole output `[out_l, batch]` (every
/// rank has it after the layer's all-gather), `own[l]` this rank's rows of it before the
/// gather, `deltas[l]` the loss gradient with respect to the pre-activation of the owned rows.
///
/// An engine made [`Engine::for_inference`] keeps two activation buffers instead (layer `l`
/// writes buffer `l mod 2`), so its memory grows with the widest layer, not with the depth.
///
/// Weights that serve several forward passes unchanged (prediction, evaluation) are packed for
/// the dense kernel on the second such pass (a copy of each large dense layer, kept until the
/// layers change: [`Engine::layers_mut`], [`Engine::set_layers`]); results are the same bits.
#[derive(Clone, Debug)]
pub struct Engine<C: Comm = SelfComm> {
    comm: C,
    plan: Plan,
    layers: Vec<ShardLayer>,
    /// `layers` packed for the dense kernel (`None` per layer where it does not pay).
    packed: Option<Vec<Option<PackedRows>>>,
    /// Forward passes since `layers` last changed.
    unchanged_passes: usize,
    par: Par,
    capacity: usize,
    /// Forward passes only: two activation buffers, no gradients.
    inference_only: bool,
    acts: Vec<Vec<f32>>,
    /// Pre-activations of the owned rows, for layers whose activation's derivative needs
    /// them (GELU, SiLU); empty for the others.
    pre: Vec<Vec<f32>>,
    own: Vec<Vec<f32>>,
    deltas: Vec<Vec<f32>>,
    partial: Vec<f32>,
    out_delta: Vec<f32>,
    /// Sample-major input transposed for a sparse first layer (kept from call to call).
    transposed: Vec<f32>,
}

impl Engine<SelfComm> {
    /// A single-process engine for `net`, using threads as `par` allows.
    pub fn new(net: Network, par: Par) -> Self {
        Engine::sharded(&net, SelfComm, par)
    }

    /// The network (a copy).
    pub fn network(&self) -> Network {
        self.gather().expect("one rank is its own root")
    }
}

impl<C: Comm> Engine<C> {
    /// The engine of rank `comm.rank()` of a model-parallel group: it keeps only its rows of
    /// every layer of `net` (see [`Plan`]).
    pub fn sharded(net: &Network, comm: C, par: Par) -> Self {
        let plan = Plan::for_network(net, comm.size(), Split::Balanced);
        let layers = net
            .layers()
            .iter()
            .enumerate()
            .map(|(l, layer)| ShardLayer::of(layer, plan.rows(l, comm.rank())))
            .collect();
        let depth = plan.depth();
        Engine {
            comm,
            plan,
            layers,
            packed: None,
            unchanged_passes: 0,
            par,
            capacity: 0,
            inference_only: false,
            acts: vec![Vec::new(); depth],
            pre: vec![Vec::new(); depth],
            own: vec![Vec::new(); depth],
            deltas: vec![Vec::new(); depth],
            partial: Vec::new(),
            out_delta: Vec::new(),
            transposed: Vec::new(),
        }
    }

    /// How the math uses threads.
    pub fn par(&self) -> Par {
        self.par
    }

    /// The model-parallel group.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// Who owns what.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Network inputs.
    pub fn inputs(&self) -> usize {
        self.plan.sizes()[0]
    }

    /// Network outputs.
    pub fn outputs(&self) -> usize {
        self.plan.sizes()[self.plan.depth()]
    }

    /// The activation of the output layer.
    pub fn output_activation(&self) -> Activation {
        self.layers[self.layers.len() - 1].activation
    }

    /// This rank's shard of every layer.
    pub fn layers(&self) -> &[ShardLayer] {
        &self.layers
    }

    /// This rank's shard of every layer, for updating parameters.
    pub fn layers_mut(&mut self) -> &mut [ShardLayer] {
        self.layers_changed();
        &mut self.layers
    }

    /// Drops what was derived from the layers' weights.
    fn layers_changed(&mut self) {
        self.packed = None;
        self.unchanged_passes = 0;
    }

    /// Replaces the shard: a saved copy of [`Engine::layers`], or the same rows with another
    /// set of connections (after pruning). Every rank of the group must call it (the split of
    /// the stored weights is exchanged).
    ///
    /// # Panics
    /// If `layers` does not hold this rank's rows.
    pub fn set_layers(&mut self, layers: Vec<ShardLayer>) {
        assert!(
            layers.len() == self.layers.len()
                && layers
                    .iter()
                    .zip(&self.layers)
                    .all(|(a, b)| a.rows == b.rows),
            "Engine::set_layers: not this rank's shard"
        );
        self.layers = layers;
        self.layers_changed();
        for (l, shard) in self.layers.iter().enumerate() {
            let mut counts = vec![0u64; self.comm.size()];
            let mine = [shard.weights.stored() as u64];
            self.comm
                .all_gather_varcount(&mine, &mut counts, &vec![1; self.comm.size()]);
            let counts: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
            self.plan.set_values(l, &counts);
        }
    }

    /// Zeroed gradients shaped like this rank's shard.
    pub fn zero_gradients(&self) -> Gradients {
        Gradients {
            weights: self
                .layers
                .iter()
                .map(|l| vec![0.0; l.weights.stored()])
                .collect(),
            bias: self
                .layers
                .iter()
                .map(|l| vec![0.0; l.bias.len()])
                .collect(),
        }
    }

    /// Collects the whole network from every rank's `layers` (this rank's shard, or a saved
    /// copy of it) on rank 0 of the group (`None` elsewhere). Every rank of the group must
    /// call it.
    ///
    /// # Panics
    /// If `layers` is not shaped like this rank's shard.
    pub fn gather_layers(&self, layers: &[ShardLayer]) -> Option<Network> {
        assert_eq!(
            layers.len(),
            self.layers.len(),
            "Engine::gather_layers: not a shard"
        );
        let at_root = self.comm.rank() == 0;
        let size = |n: usize| if at_root { n } else { 0 };
        let mut whole = Vec::with_capacity(layers.len());
        for (l, shard) in layers.iter().enumerate() {
            let (rows, values) = (self.plan.layer(l), self.plan.values(l));
            let mut val = vec![0.0; size(values.total())];
            let mut b = vec![0.0; size(rows.total())];
            self.comm
                .gather_varcount(0, shard.weights.values(), &mut val, &values.counts());
            self.comm
                .gather_varcount(0, &shard.bias, &mut b, &rows.counts());
            // A sparse layer's structure travels beside its values; the shards' parts
            // concatenate into the whole layer's.
            let structure = shard.weights.structure().map(|mine| {
                let mut whole = Structure {
                    row_lens: vec![0; size(rows.total())],
                    cols: vec![0; size(values.total())],
                };
                self.comm
                    .gather_varcount(0, &mine.cols, &mut whole.cols, &values.counts());
                self.comm
                    .gather_varcount(0, &mine.row_lens, &mut whole.row_lens, &rows.counts());
                whole
            });
            let weights = at_root.then(|| {
                Weights::from_structure(rows.total(), shard.inputs, val, structure)
                    .expect("gathered rows form the original matrix")
            });
            if let Some(weights) = weights {
                whole.push(
                    Layer::from_weights(weights, Array1::from(b), shard.activation)
                        .expect("a gathered layer has the shape of the network it came from"),
                );
            }
        }
        at_root
            .then(|| Network::from_layers(whole).expect("gathered layers chain like the original"))
    }

    /// Collects the whole network on rank 0 of the group (`None` elsewhere).
    pub fn gather(&self) -> Option<Network> {
        self.gather_layers(&self.layers)
    }

    /// This engine for forward passes only (prediction, evaluation): two activation buffers
    /// of the widest layer instead of one per layer, no gradient buffers;
    /// [`Engine::backward`] then panics. Results are the same bits.
    pub fn for_inference(mut self) -> Self {
        self.inference_only = true;
        self.capacity = 0;
        // Two buffers even for a single layer (`slot` alternates between them).
        let two = self.acts.len().max(2);
        self.acts.resize(two, Vec::new());
        self.own.resize(two, Vec::new());
        for buffers in [
            &mut self.acts,
            &mut self.pre,
            &mut self.own,
            &mut self.deltas,
        ] {
            buffers.iter_mut().for_each(|b| *b = Vec::new());
        }
        self.partial = Vec::new();
        self.out_delta = Vec::new();
        self
    }

    /// The activation buffer layer `l` writes.
    fn slot(&self, l: usize) -> usize {
        if self.inference_only { l % 2 } else { l }
    }

    /// Grows the buffers to hold `batch` samples (no-op when they already can).
    pub fn reserve(&mut self, batch: usize) {
        if batch <= self.capacity {
            return;
        }
        let sharded = self.comm.size() > 1;
        for (l, shard) in self.layers.iter().enumerate() {
            watchdog::set_layer(l);
            let out = self.plan.layer(l).total();
            let slot = if self.inference_only { l % 2 } else { l };
            if self.acts[slot].len() < out * batch {
                self.acts[slot].resize(out * batch, 0.0);
            }
            if sharded && self.own[slot].len() < shard.len() * batch {
                self.own[slot].resize(shard.len() * batch, 0.0);
            }
            if self.inference_only {
                continue;
            }
            self.deltas[l].resize(shard.len() * batch, 0.0);
            if shard.activation.needs_pre_activation() {
                self.pre[l].resize(shard.len() * batch, 0.0);
            }
        }
        if self.inference_only {
            self.capacity = batch;
            return;
        }
        if sharded {
            let widest_input = self.plan.sizes()[1..self.plan.depth()].iter().max();
            self.partial
                .resize(widest_input.copied().unwrap_or(0) * batch, 0.0);
        }
        self.out_delta.resize(self.outputs() * batch, 0.0);
        self.capacity = batch;
    }

    /// Forward pass on `x` (`[inputs, batch]`, the same on every rank of the group); returns
    /// the whole output `[outputs, batch]` (on every rank). The result has the same bits
    /// whatever the number of ranks.
    ///
    /// # Panics
    /// If `batch` is 0 or `x.len() != inputs * batch`.
    pub fn forward(&mut self, x: &[f32], batch: usize) -> &[f32] {
        self.forward_input(Input::FeaturesMajor(x), batch)
    }

    /// [`Engine::forward`] on `x` given sample-major (`[batch, inputs]`, one sample after the
    /// other, as callers hold data): a dense first layer reads it in place (its product packs
    /// the input either way), a sparse one from a transposed copy. The same bits as
    /// [`Engine::forward`] on the transposed `x`.
    ///
    /// # Panics
    /// If `batch` is 0 or `x.len() != inputs * batch`.
    pub fn forward_samples(&mut self, x: &[f32], batch: usize) -> &[f32] {
        if matches!(self.layers[0].weights, Weights::Dense(_)) || batch == 1 {
            return self.forward_input(Input::SampleMajor(x), batch);
        }
        let inputs = self.inputs();
        assert_eq!(
            x.len(),
            inputs * batch,
            "Engine::forward_samples: x is not [batch, inputs]"
        );
        let mut columns = std::mem::take(&mut self.transposed);
        columns.resize(x.len(), 0.0);
        crate::kernels::transpose::transpose(x, batch, inputs, &mut columns);
        self.forward_input(Input::FeaturesMajor(&columns), batch);
        self.transposed = columns;
        self.output(batch)
    }

    fn forward_input(&mut self, x: Input<'_>, batch: usize) -> &[f32] {
        assert!(batch > 0, "Engine::forward: empty batch");
        assert_eq!(
            x.values().len(),
            self.inputs() * batch,
            "Engine::forward: x is not [inputs, batch]"
        );
        // One sample is the same values in either layout.
        let x = if batch == 1 {
            Input::FeaturesMajor(x.values())
        } else {
            x
        };
        self.reserve(batch);
        // Packed weights pay from the second pass with the same weights on (a training step
        // changes them after every pass); matrix-vector products read them as they are.
        self.unchanged_passes += 1;
        if self.packed.is_none() && self.unchanged_passes >= 2 && batch > 1 {
            self.packed = Some(self.layers.iter().map(|s| s.weights.pack()).collect());
        }
        let packed = self.packed.as_deref().filter(|_| batch > 1);
        let sharded = self.comm.size() > 1;
        let inference_only = self.inference_only;
        for (l, shard) in self.layers.iter().enumerate() {
            let out = self.plan.layer(l).total();
            // Layer l reads the buffer of layer l - 1 and writes its own (in inference, the
            // two alternate).
            let (input_buf, rest): (&[f32], _) = if inference_only {
                let (a, b) = self.acts.split_at_mut(1);
                if l % 2 == 0 { (&b[0], a) } else { (&a[0], b) }
            } else {
                let (done, rest) = self.acts.split_at_mut(l);
                (done.last().map_or(&[][..], |v| &v[..]), rest)
            };
            let input = if l == 0 {
                x
            } else {
                Input::FeaturesMajor(&input_buf[..shard.inputs * batch])
            };
            let own = if inference_only { l % 2 } else { l };
            // Softmax spans the whole layer, and GELU/SiLU keep `z`: both are applied after
            // the product; the other activations are fused into it.
            let keeps_pre = shard.activation.needs_pre_activation();
            let fused = if shard.activation.is_elementwise() && !keeps_pre {
                shard.activation
            } else {
                Activation::Identity
            };
            // Alone, the rank writes the whole layer in place; in a group, its own rows first.
            let rows = shard.len() * batch;
            let y = if sharded {
                &mut self.own[own][..rows]
            } else {
                &mut rest[0][..out * batch]
            };
            let packed = packed.and_then(|p| p[l].as_ref());
            shard.forward(self.par, packed, input, batch, fused, y);
            if keeps_pre {
                if !inference_only {
                    self.pre[l][..rows].copy_from_slice(&y[..rows]);
                }
                apply_activation(&mut y[..rows], shard.activation);
            }
            let whole = &mut rest[0][..out * batch];
            if sharded {
                let counts = self.plan.layer(l).counts_times(batch);
                self.comm
                    .all_gather_varcount(&self.own[own][..rows], whole, &counts);
            }
            if shard.activation == Activation::Softmax {
                softmax_columns(whole, out, batch);
            }
        }
        self.output(batch)
    }

    /// The last forward pass's output `[outputs, batch]`.
    pub fn output(&self, batch: usize) -> &[f32] {
        let last = self.slot(self.layers.len() - 1);
        &self.acts[last][..self.outputs() * batch]
    }

    /// The last output and the buffer for `dL/dz` of the whole output layer, which the loss
    /// fills (on every rank) before [`Engine::backward`].
    pub fn output_and_delta(&mut self, batch: usize) -> (&[f32], &mut [f32]) {
        assert!(
            !self.inference_only,
            "Engine::output_and_delta: this engine is for inference only"
        );
        let last = self.acts.len() - 1;
        let n = self.outputs() * batch;
        (&self.acts[last][..n], &mut self.out_delta[..n])
    }

    /// Backward pass for the batch `x` last run through [`Engine::forward`], starting from the
    /// output layer's `dL/dz` (see [`Engine::output_and_delta`]). Writes the gradients of this
    /// rank's parameters into `grads` (see [`Engine::zero_gradients`]).
    ///
    /// Per layer: weight gradients of the owned rows need no communication; the input
    /// gradient is this rank's partial sum, and one reduce-scatter gives every rank the sum
    /// for the rows it owns in the layer below.
    ///
    /// # Panics
    /// If `x` or `grads` do not match the network and batch.
    pub fn backward(&mut self, x: &[f32], batch: usize, grads: &mut Gradients) {
        self.check_backward(x, batch);
        let (comm, plan, backprop) = self.backprop_parts();
        let mut sum = |l: usize, partial: &[f32], dx: &mut [f32]| {
            let counts = plan.layer(l - 1).counts_times(batch);
            comm.reduce_scatter_varcount(partial, dx, &counts);
        };
        let exchange = (comm.size() > 1).then_some(&mut sum as InputGradientSum<'_>);
        backprop.run(x, batch, grads, usize::MAX, exchange, &mut |_| {});
    }

    /// The backward pass of [`Engine::backward`] without the communicator, for a thread of
    /// its own (see [`Backprop::run`]), when this rank holds whole layers (a group of one
    /// rank: nothing to exchange); `None` for a shard of a model-parallel group.
    ///
    /// # Panics
    /// As [`Engine::backward`].
    pub fn local_backprop(&mut self, x: &[f32], batch: usize) -> Option<Backprop<'_>> {
        self.check_backward(x, batch);
        let (comm, _, backprop) = self.backprop_parts();
        (comm.size() == 1).then_some(backprop)
    }

    /// The communicator and the plan beside the backward pass over this engine's buffers.
    fn backprop_parts(&mut self) -> (&C, &Plan, Backprop<'_>) {
        let Engine {
            comm,
            plan,
            layers,
            acts,
            pre,
            deltas,
            partial,
            out_delta,
            par,
            ..
        } = self;
        let backprop = Backprop {
            layers,
            acts,
            pre,
            deltas,
            partial,
            out_delta,
            par: *par,
        };
        (comm, plan, backprop)
    }

    /// The checks of [`Engine::backward`].
    fn check_backward(&self, x: &[f32], batch: usize) {
        assert!(
            !self.inference_only,
            "Engine::backward: this engine is for inference only"
        );
        assert!(batch > 0, "Engine::backward: empty batch");
        assert_eq!(
            x.len(),
            self.inputs() * batch,
            "Engine::backward: x is not [inputs, batch]"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ThreadComm;
    use crate::model::Init;

    /// Forward output and the gradients of every parameter after one backward pass from
    /// `dL/dz = y - t` at the output, on `ranks` model-parallel ranks (threads); the
    /// gradients are this rank's rows, returned per rank.
    fn pass_on(net: &Network, ranks: usize, x: &[f32], batch: usize) -> Vec<(Vec<f32>, Gradients)> {
        ThreadComm::run(ranks, |comm| {
            let mut engine = Engine::sharded(net, comm, Par::Seq);
            let y = engine.forward(x, batch).to_vec();
            let (out, dz) = engine.output_and_delta(batch);
            for (d, &o) in dz.iter_mut().zip(out) {
                *d = o - 0.25;
            }
            let mut grads = engine.zero_gradients();
            engine.backward(x, batch, &mut grads);
            (y, grads)
        })
    }

    #[test]
    fn ranks_as_threads_give_the_forward_bits_and_the_gradients_of_one_process() {
        let net = Network::new(
            &[7, 11, 5, 3],
            Activation::Gelu,
            Activation::Sigmoid,
            Init::He,
            9,
        )
        .unwrap();
        let (batch, x) = (6, batch_of(7, 6));
        let one = pass_on(&net, 1, &x, batch).remove(0);
        for ranks in 2..=4 {
            let plan = Plan::for_network(&net, ranks, Split::Balanced);
            for (r, (y, grads)) in pass_on(&net, ranks, &x, batch).into_iter().enumerate() {
                assert_eq!(y, one.0, "{ranks} ranks: forward bits differ on rank {r}");
                for l in 0..net.layers().len() {
                    let rows = plan.rows(l, r);
                    let inputs = net.layers()[l].inputs();
                    let want_w = &one.1.weights[l][rows.start * inputs..rows.end * inputs];
                    let want_b = &one.1.bias[l][rows.clone()];
                    // The input gradients are summed over ranks (a reduce-scatter), in
                    // another order than one process sums them.
                    for (got, want) in grads.weights[l]
                        .iter()
                        .chain(&grads.bias[l])
                        .zip(want_w.iter().chain(want_b))
                    {
                        assert!(
                            (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                            "{ranks} ranks, rank {r}, layer {l}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    fn batch_of(inputs: usize, batch: usize) -> Vec<f32> {
        crate::kernels::test_values(inputs * batch, 7)
    }

    #[test]
    fn inference_buffers_give_the_bits_of_the_training_engine() {
        for (sizes, hidden, out) in [
            (&[6, 4][..], Activation::Tanh, Activation::Softmax),
            (&[6, 9, 5][..], Activation::Gelu, Activation::Sigmoid),
            (&[6, 9, 12, 5, 3][..], Activation::Relu, Activation::Softmax),
        ] {
            let net = Network::new(sizes, hidden, out, Init::Xavier, 4).unwrap();
            let batch = 5;
            let x: Vec<f32> = (0..6 * batch).map(|i| (i as f32 * 0.37).sin()).collect();
            for ranks in [1, 2, 3] {
                let got = ThreadComm::run(ranks, |comm| {
                    let mut full = Engine::sharded(&net, comm.clone(), Par::Seq);
                    let mut lean = Engine::sharded(&net, comm, Par::Seq).for_inference();
                    let want = full.forward(&x, batch).to_vec();
                    // Twice, at two batch sizes: the buffers alternate and regrow.
                    let small = lean.forward(&x[..6 * 2], 2).to_vec();
                    let y = lean.forward(&x, batch).to_vec();
                    (want, y, small, full.forward(&x[..6 * 2], 2).to_vec())
                });
                for (want, y, small, want_small) in got {
                    assert_eq!(y, want, "{sizes:?} on {ranks} ranks");
                    assert_eq!(small, want_small, "{sizes:?} on {ranks} ranks, batch 2");
                }
            }
        }
    }

    #[test]
    fn packed_passes_give_the_bits_of_the_first_and_follow_weight_changes() {
        // 300 x 300 weights: large enough to be packed from the second pass on.
        let net = Network::new(
            &[300, 300, 4],
            Activation::Tanh,
            Activation::Identity,
            Init::Xavier,
            3,
        )
        .unwrap();
        let mut engine = Engine::new(net.clone(), Par::Seq);
        let x = batch_of(300, 5);
        let first = engine.forward(&x, 5).to_vec();
        assert!(engine.packed.is_none());
        let second = engine.forward(&x, 5).to_vec();
        assert!(
            engine
                .packed
                .as_ref()
                .is_some_and(|p| p[0].is_some() && p[1].is_none())
        );
        assert_eq!(first, second);
        // A changed weight must be seen by the next pass (the packed copy is dropped).
        engine.layers_mut()[0].params_mut().0[0] += 1.0;
        let changed = engine.forward(&x, 5).to_vec();
        let mut fresh = Engine::new(engine.network(), Par::Seq);
        assert_eq!(changed, fresh.forward(&x, 5));
        assert_ne!(changed, first);
    }

    #[test]
    fn sample_major_input_gives_the_bits_of_features_major_input() {
        // 300 inputs: the first layer is packed from the second pass on; 33 samples cross
        // the microkernel's tile width; one sample is the matrix-vector path.
        let dense = Network::new(
            &[300, 40, 3],
            Activation::Relu,
            Activation::Softmax,
            Init::He,
            8,
        )
        .unwrap();
        let sparse = dense.with_format(crate::model::Format::Sparse);
        for net in [dense, sparse] {
            for (batch, threads) in [(1, 1), (7, 1), (33, 1), (33, 3)] {
                let rows = batch_of(300, batch);
                let mut columns = vec![0.0; rows.len()];
                crate::kernels::transpose::transpose(&rows, batch, 300, &mut columns);
                let par = Par::threads(threads);
                let mut engine = Engine::new(net.clone(), par).for_inference();
                let want = engine.forward(&columns, batch).to_vec();
                for pass in 0..2 {
                    let got = engine.forward_samples(&rows, batch);
                    assert_eq!(got, want, "batch {batch}, {threads} threads, pass {pass}");
                }
            }
        }
    }
}
