//! The engine: owns a network and the activation buffers, and runs forward (predict) and
//! backward (train) passes over features-major batches without allocating once its buffers
//! have grown to the largest batch seen.

use crate::kernels::{Par, activation::activation_backward, dense};
use crate::model::Network;

/// Gradients of the loss for every layer: `weights[l]` is `[out, in]`, `bias[l]` is `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    /// Weight gradients per layer.
    pub weights: Vec<Vec<f32>>,
    /// Bias gradients per layer.
    pub bias: Vec<Vec<f32>>,
}

impl Gradients {
    /// Zeroed gradients shaped like `net`.
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
}

/// Runs a [`Network`] on batches. Buffers are features-major: `acts[l]` is layer `l`'s output
/// `[out_l, batch]`, `deltas[l]` the loss gradient with respect to its pre-activation.
#[derive(Clone, Debug)]
pub struct Engine {
    net: Network,
    par: Par,
    capacity: usize,
    acts: Vec<Vec<f32>>,
    deltas: Vec<Vec<f32>>,
}

impl Engine {
    /// An engine for `net`, using threads as `par` allows.
    pub fn new(net: Network, par: Par) -> Self {
        let layers = net.layers().len();
        Engine {
            net,
            par,
            capacity: 0,
            acts: vec![Vec::new(); layers],
            deltas: vec![Vec::new(); layers],
        }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The network, for updating its parameters.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Gives the network back.
    pub fn into_network(self) -> Network {
        self.net
    }

    /// Grows the buffers to hold `batch` samples (no-op when they already can).
    pub fn reserve(&mut self, batch: usize) {
        if batch <= self.capacity {
            return;
        }
        for (l, layer) in self.net.layers().iter().enumerate() {
            self.acts[l].resize(layer.outputs() * batch, 0.0);
            self.deltas[l].resize(layer.outputs() * batch, 0.0);
        }
        self.capacity = batch;
    }

    /// Forward pass on `x` (`[inputs, batch]`); returns the output `[outputs, batch]`.
    ///
    /// # Panics
    /// If `x.len() != inputs * batch`.
    pub fn forward(&mut self, x: &[f32], batch: usize) -> &[f32] {
        assert_eq!(
            x.len(),
            self.net.inputs() * batch,
            "Engine::forward: x is not [inputs, batch]"
        );
        self.reserve(batch);
        for (l, layer) in self.net.layers().iter().enumerate() {
            let (done, rest) = self.acts.split_at_mut(l);
            let input = if l == 0 {
                x
            } else {
                &done[l - 1][..layer.inputs() * batch]
            };
            let y = &mut rest[0][..layer.outputs() * batch];
            dense::forward(
                self.par,
                layer.weight_slice(),
                layer.bias(),
                input,
                batch,
                layer.activation(),
                y,
            );
        }
        self.output(batch)
    }

    /// The last forward pass's output `[outputs, batch]`.
    pub fn output(&self, batch: usize) -> &[f32] {
        let last = self.acts.len() - 1;
        &self.acts[last][..self.net.outputs() * batch]
    }

    /// The last output and the buffer for `dL/dz` of the output layer, which the loss fills
    /// before [`Engine::backward`].
    pub fn output_and_delta(&mut self, batch: usize) -> (&[f32], &mut [f32]) {
        let last = self.acts.len() - 1;
        let n = self.net.outputs() * batch;
        (&self.acts[last][..n], &mut self.deltas[last][..n])
    }

    /// Backward pass for the batch `x` last run through [`Engine::forward`], starting from the
    /// output layer's `dL/dz` (see [`Engine::output_and_delta`]). Writes every layer's
    /// parameter gradients into `grads`.
    ///
    /// # Panics
    /// If `x` or `grads` do not match the network and batch.
    pub fn backward(&mut self, x: &[f32], batch: usize, grads: &mut Gradients) {
        assert_eq!(
            x.len(),
            self.net.inputs() * batch,
            "Engine::backward: x is not [inputs, batch]"
        );
        for (l, layer) in self.net.layers().iter().enumerate().rev() {
            let (below, here) = self.deltas.split_at_mut(l);
            let delta = &here[0][..layer.outputs() * batch];
            let input = if l == 0 {
                x
            } else {
                &self.acts[l - 1][..layer.inputs() * batch]
            };
            dense::backward_params(
                self.par,
                delta,
                input,
                batch,
                &mut grads.weights[l],
                &mut grads.bias[l],
            );
            if l > 0 {
                let dx = &mut below[l - 1][..layer.inputs() * batch];
                dense::backward_input(self.par, layer.weight_slice(), delta, batch, dx);
                let prev = &self.net.layers()[l - 1];
                activation_backward(input, dx, batch, prev.activation());
            }
        }
    }
}
