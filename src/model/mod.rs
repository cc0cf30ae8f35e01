//! The model: a [`Network`] of fully connected [`Layer`]s, plus what a trained model needs to
//! read raw data ([`Model`]: normaliser and class names). A `Network` is the whole model,
//! independent of how many processes or threads run it.

mod init;
mod weights;

pub use crate::kernels::activation::Activation;
pub use crate::rng::{StreamPosition, UniformStream};
pub use init::{Init, fill_layer};
pub use weights::{Format, SharedRows, Structure, Unpacked, Weights};

use crate::data::Normalizer;
use crate::error::{Error, Result};
use crate::sparse::Csr;
use ndarray::{Array1, Array2, ArrayViewMut1};

/// Below this fraction of nonzero weights the sparse kernels beat the dense GEMM (measured
/// with `nnmpi --threads 1 bench --layers 4096,4096 --batch 256 --sparsity S --format
/// dense|sparse` on an Intel Xeon, family 6 model 207, 2026-11-30: dense 64-75 ms at any S;
/// sparse 82 ms at density 0.2, 59 ms at 0.15, 40 ms at 0.1; see README). It was 0.4 before
/// the dense GEMM doubled its speed.
pub const SPARSE_BELOW_DENSITY: f64 = 0.15;

/// The same for a layer whose rows mostly share their columns in fours (block pruning, see
/// `sparse::QUAD`): measured as above with `--block 4`, sparse 75 ms at density 0.3, 48 ms at
/// 0.2, 25 ms at 0.15, against dense 62-71 ms.
pub const QUAD_SPARSE_BELOW_DENSITY: f64 = 0.25;

/// One fully connected layer: `y = f(W x + b)`.
///
/// Row `i` of the weights holds neuron `i`'s incoming weights (the seed's per-neuron
/// `weights` list without the trailing bias, which lives in `bias[i]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    weights: Weights,
    bias: Array1<f32>,
    activation: Activation,
}

impl Layer {
    /// A dense layer from its weights `[out, in]`, bias `[out]` and activation.
    pub fn new(weights: Array2<f32>, bias: Array1<f32>, activation: Activation) -> Result<Self> {
        Layer::from_weights(Weights::Dense(weights), bias, activation)
    }

    /// A layer from dense (any memory order) or sparse weights.
    pub fn from_weights(
        weights: Weights,
        bias: Array1<f32>,
        activation: Activation,
    ) -> Result<Self> {
        let weights = match weights {
            Weights::Dense(w) if !w.is_standard_layout() => {
                Weights::Dense(w.as_standard_layout().into_owned())
            }
            w => w,
        };
        if weights.rows() != bias.len() {
            return Err(Error::config(format!(
                "layer has {} weight rows but {} biases",
                weights.rows(),
                bias.len()
            )));
        }
        if weights.rows() == 0 || weights.cols() == 0 {
            return Err(Error::config(format!(
                "layer shape {}x{} has no neurons or no inputs",
                weights.rows(),
                weights.cols()
            )));
        }
        Ok(Layer {
            weights,
            bias,
            activation,
        })
    }

    /// Number of neurons (outputs).
    pub fn outputs(&self) -> usize {
        self.weights.rows()
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weights.cols()
    }

    /// The activation applied after the bias.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The weights, dense or sparse.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The weights as a dense `[out, in]` matrix (a copy; absent connections are 0).
    pub fn dense_weights(&self) -> Array2<f32> {
        self.weights.to_dense()
    }

    /// Bias `[out]`.
    pub fn bias(&self) -> &[f32] {
        self.bias.as_slice().expect("bias is contiguous")
    }

    /// Mutable bias `[out]`.
    pub fn bias_mut(&mut self) -> ArrayViewMut1<'_, f32> {
        self.bias.view_mut()
    }

    /// The stored weight values: all `out * in` row-major for a dense layer, the present
    /// connections for a sparse one.
    pub fn weight_slice(&self) -> &[f32] {
        self.weights.values()
    }

    /// Stored weight values and bias as mutable slices, for optimisers.
    pub fn params_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (
            self.weights.values_mut(),
            self.bias.as_slice_mut().expect("bias is contiguous"),
        )
    }

    /// Number of trainable parameters (stored weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.weights.stored() + self.bias.len()
    }

    /// Neurons `rows` of this layer alone (a rank's share of a layer split by neurons).
    ///
    /// # Panics
    /// If `rows` is not inside `0..outputs`.
    pub fn neurons(&self, rows: std::ops::Range<usize>) -> Layer {
        Layer {
            weights: self.weights.slice_rows(rows.clone()),
            bias: Array1::from(self.bias.as_slice().expect("a bias vector")[rows].to_vec()),
            activation: self.activation,
        }
    }

    /// Nonzero weights over all `out · in` connections.
    pub fn density(&self) -> f64 {
        self.weights.nonzeros() as f64 / (self.outputs() * self.inputs()) as f64
    }

    /// This layer stored as `format` says (same function: only zeros move in or out).
    pub fn to_format(&self, format: Format) -> Layer {
        let as_sparse = || match &self.weights {
            Weights::Sparse(c) => c.clone(),
            Weights::Dense(w) => {
                Csr::from_dense(w.as_slice().expect("standard layout"), w.nrows(), w.ncols())
            }
        };
        let density = self.density();
        let weights = match format {
            Format::Dense => Weights::Dense(self.weights.to_dense()),
            Format::Sparse => Weights::Sparse(as_sparse()),
            Format::Auto if density < SPARSE_BELOW_DENSITY => Weights::Sparse(as_sparse()),
            Format::Auto if density < QUAD_SPARSE_BELOW_DENSITY => {
                let c = as_sparse();
                if c.mostly_quads() {
                    Weights::Sparse(c)
                } else {
                    Weights::Dense(self.weights.to_dense())
                }
            }
            Format::Auto => Weights::Dense(self.weights.to_dense()),
        };
        Layer {
            weights,
            ..self.clone()
        }
    }
}

/// A feed-forward network: layers applied in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    layers: Vec<Layer>,
}

impl Network {
    /// A network with `sizes = [inputs, hidden..., outputs]`, `hidden` activation on every
    /// hidden layer and `output` on the last, initialised by `init` from `seed`.
    ///
    /// ```
    /// use nnmpi::model::{Activation, Init, Network};
    /// let net = Network::new(&[60, 3, 1], Activation::Sigmoid, Activation::Sigmoid, Init::Uniform, 1).unwrap();
    /// assert_eq!(net.parameter_count(), 60 * 3 + 3 + 3 + 1);
    /// ```
    pub fn new(
        sizes: &[usize],
        hidden: Activation,
        output: Activation,
        init: Init,
        seed: u64,
    ) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(Error::config(
                "a network needs at least an input and an output size",
            ));
        }
        if let Some(pos) = sizes.iter().position(|&s| s == 0) {
            return Err(Error::config(format!(
                "layer size {pos} is zero: every layer needs at least one neuron"
            )));
        }
        let mut rng = UniformStream::new(seed, 0);
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (l, pair) in sizes.windows(2).enumerate() {
            let (inputs, outputs) = (pair[0], pair[1]);
            let count = outputs.saturating_mul(inputs);
            let mut w = Array2::from_shape_vec((outputs, inputs), zeroed(count, l)?)
                .expect("outputs × inputs values");
            let mut b = Array1::from(zeroed(outputs, l)?);
            fill_layer(
                init,
                &mut rng,
                w.as_slice_mut().expect("fresh array"),
                b.as_slice_mut().expect("fresh array"),
            );
            let act = if l + 2 == sizes.len() { output } else { hidden };
            layers.push(Layer::new(w, b, act)?);
        }
        Network::from_layers(layers)
    }

    /// A network from explicit layers; checks that sizes chain and softmax is only last.
    pub fn from_layers(layers: Vec<Layer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("a network needs at least one layer"));
        }
        for (l, pair) in layers.windows(2).enumerate() {
            if pair[0].outputs() != pair[1].inputs() {
                return Err(Error::config(format!(
                    "layer {l} has {} outputs but layer {} expects {} inputs",
                    pair[0].outputs(),
                    l + 1,
                    pair[1].inputs()
                )));
            }
        }
        if let Some(l) = layers[..layers.len() - 1]
            .iter()
            .position(|layer| !layer.activation().is_elementwise())
        {
            return Err(Error::config(format!(
                "layer {l} uses softmax, which is only allowed on the output layer"
            )));
        }
        Ok(Network { layers })
    }

    /// An error naming the first layer with NaN or infinite weights or biases: such a model
    /// comes from a run that diverged and predicts nothing useful.
    pub fn check_finite(&self) -> Result<()> {
        for (i, l) in self.layers.iter().enumerate() {
            let (w, b) = (non_finite(l.weight_slice()), non_finite(l.bias()));
            if w + b > 0 {
                return Err(Error::Numerical(format!(
                    "layer {} has {w} weights and {b} biases that are NaN or infinite: the model comes from a training run that diverged",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// The layers, input side first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Mutable access to the layers (their shapes cannot change).
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs()
    }

    /// Number of outputs of the last layer.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs()
    }

    /// `[inputs, layer outputs...]`.
    pub fn sizes(&self) -> Vec<usize> {
        std::iter::once(self.inputs())
            .chain(self.layers.iter().map(Layer::outputs))
            .collect()
    }

    /// The sizes written as `inputs-hidden...-outputs`, e.g. `60-60-1`.
    pub fn shape(&self) -> String {
        shape_of(&self.sizes())
    }

    /// Activation of the output layer.
    pub fn output_activation(&self) -> Activation {
        self.layers[self.layers.len() - 1].activation()
    }

    /// Trainable parameters in all layers.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(Layer::parameter_count).sum()
    }

    /// Every layer stored as `format` says.
    pub fn with_format(&self, format: Format) -> Network {
        Network {
            layers: self.layers.iter().map(|l| l.to_format(format)).collect(),
        }
    }

    /// Multiply-adds for one sample's forward pass (stored connections only).
    pub fn macs_per_sample(&self) -> usize {
        self.layers.iter().map(|l| l.weights().stored()).sum()
    }
}

/// What the network's outputs mean.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Class probabilities. With two classes and one output, the output is P(class 1).
    Classification { classes: Vec<String> },
    /// Real-valued targets, one per output.
    Regression,
}

impl Task {
    /// Class names, if this is a classification task.
    pub fn classes(&self) -> Option<&[String]> {
        match self {
            Task::Classification { classes } => Some(classes),
            Task::Regression => None,
        }
    }

    /// Number of network outputs this task needs (binary classification uses one output).
    pub fn output_size(&self) -> usize {
        match self {
            Task::Classification { classes } if classes.len() == 2 => 1,
            Task::Classification { classes } => classes.len(),
            Task::Regression => 1,
        }
    }
}

/// A trained model: the network plus what it needs to read raw features and name its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The layers.
    pub network: Network,
    /// Applied to raw features before the first layer.
    pub normalizer: Normalizer,
    /// Class names or regression.
    pub task: Task,
}

/// `n` zeros for layer `l`, or an error if the memory cannot be had (an absurd size would
/// otherwise abort the process).
fn zeroed(n: usize, l: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::config(format!(
            "layer {}: cannot allocate {n} weights ({} bytes)",
            l + 1,
            n.saturating_mul(4)
        ))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Layer sizes as text, e.g. `784-128-10`.
pub fn shape_of(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

/// How many of `values` are NaN or infinite.
pub fn non_finite(values: &[f32]) -> usize {
    values.iter().filter(|v| !v.is_finite()).count()
}

impl Model {
    /// Checks that the parameters are finite and that the normaliser and task fit the
    /// network.
    pub fn validate(&self) -> Result<()> {
        self.network.check_finite()?;
        let stats = non_finite(self.normalizer.offset()) + non_finite(self.normalizer.scale());
        if stats > 0 {
            return Err(Error::Numerical(format!(
                "{stats} of the normaliser's statistics are NaN or infinite"
            )));
        }
        if !self.normalizer.is_identity() && self.normalizer.features() != self.network.inputs() {
            return Err(Error::config(format!(
                "normaliser has {} features but the network has {} inputs",
                self.normalizer.features(),
                self.network.inputs()
            )));
        }
        if let Task::Classification { classes } = &self.task {
            let outs = self.network.outputs();
            let ok = outs == classes.len() || (outs == 1 && classes.len() == 2);
            if !ok {
                return Err(Error::config(format!(
                    "{} classes cannot be read from {} network outputs",
                    classes.len(),
                    outs
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_network_is_an_error_not_an_abort() {
        // 2^21 × 2^21 weights: 16 TiB.
        let err = Network::new(
            &[1 << 21, 1 << 21],
            Activation::Relu,
            Activation::Identity,
            Init::He,
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cannot allocate 4398046511104 weights"),
            "{err}"
        );
    }

    #[test]
    fn auto_format_keeps_quads_sparse_at_higher_density() {
        // 8 rows × 10 inputs at density 0.2, between the two thresholds: inputs 0..2 present
        // in every row (two quads sharing their columns), or shifted by one input per row (no
        // quads).
        let layer = |shift: bool| {
            let w = Array2::from_shape_fn((8, 10), |(i, j)| {
                let j = if shift { (j + 10 - i) % 10 } else { j };
                if j < 2 { 1.0 } else { 0.0 }
            });
            Layer::new(w, Array1::zeros(8), Activation::Relu).unwrap()
        };
        let (quads, scattered) = (layer(false), layer(true));
        const { assert!(SPARSE_BELOW_DENSITY < 0.2 && 0.2 < QUAD_SPARSE_BELOW_DENSITY) };
        assert_eq!(quads.density(), 0.2);
        assert_eq!(scattered.density(), 0.2);
        assert!(quads.to_format(Format::Auto).weights().is_sparse());
        assert!(!scattered.to_format(Format::Auto).weights().is_sparse());
        assert!(scattered.to_format(Format::Sparse).weights().is_sparse());
    }

    #[test]
    fn sizes_chain_and_softmax_only_last() {
        let net = Network::new(
            &[4, 5, 3],
            Activation::Relu,
            Activation::Softmax,
            Init::He,
            3,
        )
        .unwrap();
        assert_eq!(net.sizes(), vec![4, 5, 3]);
        assert_eq!(net.parameter_count(), 4 * 5 + 5 + 5 * 3 + 3);
        assert!(
            Network::new(
                &[4, 5, 3],
                Activation::Softmax,
                Activation::Softmax,
                Init::He,
                3
            )
            .is_err()
        );
        assert!(
            Network::new(
                &[4, 0, 3],
                Activation::Relu,
                Activation::Softmax,
                Init::He,
                3
            )
            .is_err()
        );
        let a = Layer::new(Array2::zeros((3, 4)), Array1::zeros(3), Activation::Relu).unwrap();
        let b = Layer::new(Array2::zeros((2, 2)), Array1::zeros(2), Activation::Relu).unwrap();
        let err = Network::from_layers(vec![a, b]).unwrap_err().to_string();
        assert!(err.contains("layer 0 has 3 outputs"), "{err}");
    }

    #[test]
    fn same_seed_same_network() {
        let a = Network::new(
            &[6, 4, 2],
            Activation::Tanh,
            Activation::Sigmoid,
            Init::Xavier,
            9,
        )
        .unwrap();
        let b = Network::new(
            &[6, 4, 2],
            Activation::Tanh,
            Activation::Sigmoid,
            Init::Xavier,
            9,
        )
        .unwrap();
        let c = Network::new(
            &[6, 4, 2],
            Activation::Tanh,
            Activation::Sigmoid,
            Init::Xavier,
            10,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
