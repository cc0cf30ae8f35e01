//! Inference over a whole input set that computes every distinct activation column once.
//!
//! A layer maps each sample's column on its own, so samples whose columns are equal (bit for
//! bit) stay equal in every later layer. After each layer the columns are grouped by value
//! and only one of each group goes on; a map says which column each sample reads. Dead
//! samples (all activations zero) are one such group, and in deep sparse networks like the
//! GraphChallenge's the survivors converge to a few columns, so later layers cost almost
//! nothing. The result is exact: each column is computed by the same kernel, in the same
//! summation order, as a plain forward pass computes it.
//!
//! Memory: two activation buffers of the widest layer × the distinct columns, not per-layer
//! activations.

use crate::cluster::{Comm, Partition, SelfComm};
use crate::data::SparseSamples;
use crate::kernels::activation::{Activation, softmax_columns};
use crate::kernels::dense::Input;
use crate::kernels::sparse::NARROW_MAX;
use crate::kernels::{Par, columns};
use crate::model::{Layer, Network, Unpacked, Weights};
use rayon::prelude::*;
use std::collections::HashMap;

/// A network's outputs for a set of samples, each distinct output column stored once.
#[derive(Clone, Debug, PartialEq)]
pub struct DistinctColumns {
    /// Output rows (the network's outputs).
    pub rows: usize,
    /// The distinct columns, features-major `[rows, columns]`.
    pub values: Vec<f32>,
    /// The column each sample's output is.
    pub of_sample: Vec<u32>,
    /// Distinct columns computed by each layer (its input columns), the work done.
    pub per_layer: Vec<usize>,
}

impl DistinctColumns {
    /// Number of distinct columns.
    pub fn columns(&self) -> usize {
        self.values.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Sample `s`'s outputs.
    pub fn sample(&self, s: usize) -> Vec<f32> {
        let (c, n) = (self.of_sample[s] as usize, self.columns());
        (0..self.rows).map(|i| self.values[i * n + c]).collect()
    }

    /// The samples with any nonzero output, increasing (the GraphChallenge's categories).
    pub fn nonzero_samples(&self) -> Vec<usize> {
        let n = self.columns();
        let mut live = vec![false; n];
        for (i, v) in self.values.iter().enumerate() {
            if *v != 0.0 {
                live[i % n] = true;
            }
        }
        (0..self.of_sample.len())
            .filter(|&s| live[self.of_sample[s] as usize])
            .collect()
    }

    /// All outputs as `[rows, samples]`, as a plain forward pass gives them.
    pub fn expand(&self) -> Vec<f32> {
        let (n, samples) = (self.columns(), self.of_sample.len());
        let mut y = vec![0.0; self.rows * samples];
        for i in 0..self.rows {
            for (s, &c) in self.of_sample.iter().enumerate() {
                y[i * samples + s] = self.values[i * n + c as usize];
            }
        }
        y
    }
}

/// Inputs at most this dense (nonzeros / values) go through a sparse layer sample by sample,
/// visiting only the nonzero inputs ([`crate::model::Unpacked::forward_by_sample`]); denser ones, and
/// narrow sets of columns (at most `NARROW_MAX`), through the features-major kernels.
/// Measured on the GraphChallenge 1024-neuron network (1200 inputs, 10% dense; activations
/// 19-32% dense in layers 1-5; Intel Xeon family 6 model 207, 1 thread): layer 1 took 5.7 ms
/// by sample against 13 ms by feature; layer 2 (19% dense) 9 ms by sample against 5.3 ms by
/// feature, layer 3 (22%) 4.3 ms against 3.0 ms.
const BY_SAMPLE_MAX_DENSITY: f64 = 0.15;

/// Columns are compacted when at most this share of them (`NUM / DEN`) is distinct: moving a
/// column costs about a fifth of computing it in a 32-entries-per-row layer (measured on the
/// GraphChallenge network: 4.9 µs to compute a column of 1024 neurons, about 1 µs to move
/// it), so fewer repeats are cheaper to compute again.
const COMPACT_BELOW_NUM: usize = 7;
const COMPACT_BELOW_DEN: usize = 8;

/// How a buffer of activations is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `[columns, rows]`: one sample after another.
    BySample,
    /// `[rows, columns]`: one neuron after another.
    ByFeature,
}

/// `net`'s outputs for the `samples` rows of `x` (samples-major `[samples, inputs]`, one
/// sample after another), each distinct column computed once per layer: [`Distinct::new`]
/// then [`Distinct::run`].
///
/// # Panics
/// If `x` is not `[samples, inputs]`.
pub fn forward_distinct(net: &Network, x: Vec<f32>, samples: usize, par: Par) -> DistinctColumns {
    Distinct::new(net, par).run(x, samples, par)
}

/// A network prepared for inference by distinct columns: its sparse layers unpacked for the
/// narrow and the by-sample kernels, once, so that every run goes straight to the products.
pub struct Distinct<'a> {
    /// The layers (the whole network's, or this rank's neurons of each).
    layers: &'a [Layer],
    prepared: Vec<Prepared>,
    /// For a share of a network split by neurons: each layer's neurons per rank.
    split: Option<Vec<Partition>>,
    /// Buffers of finished runs, for the next ones: a run that allocated its activations
    /// afresh spent a third of its time in page faults (GraphChallenge subset, 1 thread).
    pool: std::sync::Mutex<Vec<Buffers>>,
}

/// What one thread's run writes, kept from run to run: the activations, the next layer's,
/// a spare for transposes and compactions, the narrow kernel's scratch.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    y: Vec<f32>,
    spare: Vec<f32>,
    scratch: Vec<f32>,
}

/// A layer ready for [`Distinct`]: what runs, and how its outputs become the layer's.
struct Prepared {
    /// When the layer's neurons come in groups of equal ones: one neuron of each group.
    few: Option<DistinctNeurons>,
    /// The layer that runs (the network's, or `few`'s) unpacked (sparse layers only).
    unpacked: Option<Unpacked>,
}

/// A layer's distinct neurons alone, and each of the layer's neurons' row among them.
struct DistinctNeurons {
    layer: Layer,
    of_row: Vec<u32>,
}

/// A layer's neurons are computed once per group of equal neurons when at most this share of
/// them (`NUM / DEN`) is distinct, as for columns.
const SHARE_ROWS_BELOW_NUM: usize = 7;
const SHARE_ROWS_BELOW_DEN: usize = 8;

impl Prepared {
    /// The layer that runs in place of `whole`.
    fn runs<'a>(&'a self, whole: &'a Layer) -> &'a Layer {
        self.few.as_ref().map_or(whole, |f| &f.layer)
    }

    /// Each neuron's row among the distinct ones (`None`: every neuron runs).
    fn of_row(&self) -> Option<&[u32]> {
        self.few.as_ref().map(|f| f.of_row.as_slice())
    }

    /// Unpacks `layer` and, if `share` and it is a sparse layer with an elementwise
    /// activation whose neurons repeat (same inputs, weights and bias;
    /// [`Unpacked::shared_rows`]), keeps one of each.
    fn of(layer: &Layer, share: bool) -> Prepared {
        let whole = Prepared {
            few: None,
            unpacked: layer.weights().unpacked(),
        };
        let Some(u) = whole.unpacked.as_ref() else {
            return whole;
        };
        if !share || !layer.activation().is_elementwise() {
            return whole;
        }
        let shared = u.shared_rows(layer.bias());
        let rows = layer.outputs();
        if shared.distinct.len() * SHARE_ROWS_BELOW_DEN > rows * SHARE_ROWS_BELOW_NUM {
            return whole;
        }
        let weights: Weights = u.select_rows(&shared.distinct);
        let bias = shared.distinct.iter().map(|&i| layer.bias()[i]).collect();
        let few = Layer::from_weights(weights, ndarray::Array1::from_vec(bias), layer.activation())
            .expect("a layer's own rows, biases and activation form a layer");
        Prepared {
            unpacked: few.weights().unpacked(),
            few: Some(DistinctNeurons {
                layer: few,
                of_row: shared.of_row,
            }),
        }
    }
}

impl<'a> Distinct<'a> {
    /// Prepares `net` (its layers in parallel over `par`'s threads), to compute each group of
    /// equal neurons once.
    pub fn new(net: &'a Network, par: Par) -> Self {
        Distinct::prepare(net.layers(), None, true, par)
    }

    /// Prepares `net` to compute every neuron, equal ones too (same results; to measure what
    /// [`Distinct::new`] saves).
    pub fn every_neuron(net: &'a Network, par: Par) -> Self {
        Distinct::prepare(net.layers(), None, false, par)
    }

    /// Prepares one rank's share of a network split by neurons, for
    /// [`Distinct::run_sparse_split`]: `layers` are this rank's neurons of each layer
    /// ([`Layer::neurons`]), `parts[l]` says which neurons of layer `l` each rank holds;
    /// `share` computes each group of equal neurons once, as [`Distinct::new`] does.
    ///
    /// # Panics
    /// If `parts` does not give one partition per layer.
    pub fn shard(layers: &'a [Layer], parts: Vec<Partition>, share: bool, par: Par) -> Self {
        assert_eq!(
            layers.len(),
            parts.len(),
            "Distinct::shard: one partition per layer"
        );
        Distinct::prepare(layers, Some(parts), share, par)
    }

    fn prepare(layers: &'a [Layer], split: Option<Vec<Partition>>, share: bool, par: Par) -> Self {
        let of = |l: &Layer| Prepared::of(l, share);
        let prepared = match par {
            Par::Seq => layers.iter().map(of).collect(),
            Par::Rayon(_) => layers.par_iter().map(of).collect(),
        };
        Distinct {
            layers,
            prepared,
            split,
            pool: Default::default(),
        }
    }

    /// Inputs of the first layer.
    fn inputs(&self) -> usize {
        self.layers.first().map_or(0, Layer::inputs)
    }

    /// Neurons the prepared network (or share) computes per column, against its neurons: less
    /// when layers have groups of equal neurons.
    pub fn neurons_computed(&self) -> (usize, usize) {
        let all = self.layers.iter().map(Layer::outputs).sum();
        let run = self
            .prepared
            .iter()
            .zip(self.layers)
            .map(|(p, l)| p.runs(l).outputs())
            .sum();
        (run, all)
    }

    /// The outputs for the `samples` rows of `x` (samples-major `[samples, inputs]`).
    ///
    /// # Panics
    /// If `x` is not `[samples, inputs]`.
    pub fn run(&self, x: Vec<f32>, samples: usize, par: Par) -> DistinctColumns {
        let inputs = self.inputs();
        assert_eq!(
            x.len(),
            inputs * samples,
            "forward_distinct: x is not [samples, inputs]"
        );
        if dealt_threads(samples, par) == 1 {
            return self.run_on_one_thread(|buf| *buf = x, samples, par, &SelfComm);
        }
        self.dealt(samples, par, |group, xg| {
            xg.clear();
            for &s in group {
                xg.extend_from_slice(&x[s * inputs..(s + 1) * inputs]);
            }
        })
    }

    /// The outputs for samples `which` of `inputs` (sparse rows, made dense by the thread
    /// that runs them).
    ///
    /// # Panics
    /// If `inputs` has another feature count than the network's inputs, or a sample index
    /// is out of range.
    pub fn run_sparse(&self, inputs: &SparseSamples, which: &[usize], par: Par) -> DistinctColumns {
        assert_eq!(
            inputs.features,
            self.inputs(),
            "Distinct::run_sparse: the inputs do not fit the network"
        );
        self.dealt(which.len(), par, |group, x| {
            let samples: Vec<usize> = group.iter().map(|&k| which[k]).collect();
            inputs.dense_rows_into(&samples, x)
        })
    }

    /// [`Distinct::run_sparse`] for a share of a network split by neurons over `model` (every
    /// rank of `model` calls it with the same samples and its own share, from
    /// [`Distinct::shard`]): each rank computes its neurons of every distinct column, then
    /// the ranks all-gather the layer's outputs. Every rank gets the whole result. The
    /// products are split over `par`'s threads (the samples stay together: collectives are
    /// called from one thread).
    ///
    /// # Panics
    /// If this is not a share from [`Distinct::shard`] for `model`'s ranks, or as
    /// [`Distinct::run_sparse`].
    pub fn run_sparse_split<C: Comm>(
        &self,
        model: &C,
        inputs: &SparseSamples,
        which: &[usize],
        par: Par,
    ) -> DistinctColumns {
        let parts = self
            .split
            .as_ref()
            .expect("Distinct::run_sparse_split: not a shard");
        for (l, (part, layer)) in parts.iter().zip(self.layers).enumerate() {
            assert!(
                part.parts() == model.size() && part.count(model.rank()) == layer.outputs(),
                "Distinct::run_sparse_split: layer {l} does not hold this rank's neurons"
            );
        }
        assert_eq!(
            inputs.features,
            self.inputs(),
            "Distinct::run_sparse_split: the inputs do not fit the network"
        );
        let fill = |x: &mut Vec<f32>| inputs.dense_rows_into(which, x);
        self.run_on_one_thread(fill, which.len(), par, model)
    }

    /// Runs `samples` samples, `rows(group, x)` writing into `x` the samples-major rows of a
    /// group of them (indices into `0..samples`). On several threads the samples are dealt round-robin to
    /// the threads, each running the whole network on its share alone: no step waits for
    /// another thread, as with ranks. (Splitting every layer's product over the threads
    /// instead ran 1.2x faster than one thread on the GraphChallenge subset; dealing, as 2
    /// ranks do, 1.4x: 30.4 -> 21.6 ms on 2 threads.)
    fn dealt(
        &self,
        samples: usize,
        par: Par,
        rows: impl Fn(&[usize], &mut Vec<f32>) + Sync,
    ) -> DistinctColumns {
        let threads = dealt_threads(samples, par);
        if threads == 1 {
            let all: Vec<usize> = (0..samples).collect();
            return self.run_on_one_thread(|x| rows(&all, x), samples, par, &SelfComm);
        }
        let groups: Vec<Vec<usize>> = (0..threads)
            .map(|t| (t..samples).step_by(threads).collect())
            .collect();
        let parts: Vec<DistinctColumns> = groups
            .par_iter()
            .map(|g| self.run_on_one_thread(|x| rows(g, x), g.len(), Par::Seq, &SelfComm))
            .collect();
        merge(&parts, &groups, samples)
    }

    /// Runs the samples-major rows that `fill` writes (`samples` of them) through the
    /// network (a share's outputs gathered over `model`), with buffers from the pool
    /// (returned to it after).
    fn run_on_one_thread<C: Comm>(
        &self,
        fill: impl FnOnce(&mut Vec<f32>),
        samples: usize,
        par: Par,
        model: &C,
    ) -> DistinctColumns {
        let taken = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut buffers = taken.unwrap_or_default();
        fill(&mut buffers.x);
        let out = self.run_in(&mut buffers, samples, par, model);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(buffers);
        }
        out
    }

    fn run_in<C: Comm>(
        &self,
        buffers: &mut Buffers,
        samples: usize,
        par: Par,
        model: &C,
    ) -> DistinctColumns {
        let Buffers {
            x,
            y,
            spare,
            scratch,
        } = buffers;
        let split = self.split.as_deref().filter(|_| model.size() > 1);
        let mut of_sample: Vec<u32> = (0..samples as u32).collect();
        let mut rows = self.inputs();
        let mut layout = Layout::BySample;
        let (mut n, mut density) = keep_distinct(x, spare, layout, rows, samples, &mut of_sample);
        let mut per_layer = Vec::with_capacity(self.layers.len());
        // The previous layer's outputs are its distinct neurons' until expanded by this map:
        // they are expanded in the layout the next layer reads, after any transpose (of the
        // fewer rows).
        let mut pending: Option<&[u32]> = None;
        for (l, (whole, prepared)) in self.layers.iter().zip(&self.prepared).enumerate() {
            per_layer.push(n);
            let layer = prepared.runs(whole);
            let unpacked = &prepared.unpacked;
            let out = layer.outputs();
            let act = layer.activation();
            let f = if act.is_elementwise() {
                act
            } else {
                Activation::Identity
            };
            let b = layer.bias();
            let by_sample = unpacked.is_some()
                && split.is_none()
                && layout == Layout::BySample
                && n > NARROW_MAX
                && density <= BY_SAMPLE_MAX_DENSITY;
            if !by_sample && layout == Layout::BySample {
                transpose_into(x, n, rows, spare);
                std::mem::swap(x, spare);
                layout = Layout::ByFeature;
            }
            if let Some(of_row) = pending.take() {
                let expanded = expand_rows(x, rows, n, layout, of_row, y);
                debug_assert_eq!(expanded, layer.inputs());
            }
            y.clear();
            y.resize(out * n, 0.0);
            match unpacked {
                Some(u) if by_sample => u.forward_by_sample(par, b, x, n, f, y),
                _ => match unpacked {
                    _ if n == 0 => {}
                    Some(u) if n <= NARROW_MAX => u.forward_narrow(par, b, x, n, f, y, scratch),
                    _ => layer
                        .weights()
                        .forward(par, None, b, Input::FeaturesMajor(x), n, f, y),
                },
            }
            std::mem::swap(x, y);
            rows = out;
            if let Some(parts) = split {
                // This rank's neurons (expanded now: the ranks' blocks of rows, in rank order,
                // make the layer's features-major outputs), then everyone's.
                if let Some(of_row) = prepared.of_row() {
                    let expanded = expand_rows(x, rows, n, layout, of_row, y);
                    debug_assert_eq!(expanded, parts[l].count(model.rank()));
                }
                debug_assert_eq!(layout, Layout::ByFeature);
                spare.clear();
                spare.resize(parts[l].total() * n, 0.0);
                model.all_gather_varcount(x, spare, &parts[l].counts_times(n));
                std::mem::swap(x, spare);
                rows = parts[l].total();
            }
            if !act.is_elementwise() && n > 0 {
                if layout == Layout::BySample {
                    x.chunks_exact_mut(rows)
                        .for_each(|col| softmax_columns(col, rows, 1));
                } else {
                    softmax_columns(x, rows, n);
                }
            }
            (n, density) = keep_distinct(x, spare, layout, rows, n, &mut of_sample);
            // (The density of the distinct neurons stands for the layer's: it only picks the
            // next kernel.)
            if split.is_none() {
                pending = prepared.of_row();
            }
        }
        if let Some(of_row) = pending {
            rows = expand_rows(x, rows, n, layout, of_row, y);
        }
        let values = if layout == Layout::BySample {
            transpose_into(x, n, rows, spare);
            spare.to_vec()
        } else {
            x.to_vec()
        };
        DistinctColumns {
            rows,
            values,
            of_sample,
            per_layer,
        }
    }
}

/// Below this many samples per thread, [`Distinct::run`] keeps the samples together and
/// splits each product over the threads instead.
const DEAL_MIN_SAMPLES: usize = 2 * NARROW_MAX;

/// The threads `samples` samples are dealt to (1: they stay together).
fn dealt_threads(samples: usize, par: Par) -> usize {
    par.degree().min(samples / DEAL_MIN_SAMPLES).max(1)
}

/// The results of disjoint groups of samples (`groups[g]` lists group `g`'s sample indices)
/// as one: their columns side by side.
fn merge(parts: &[DistinctColumns], groups: &[Vec<usize>], samples: usize) -> DistinctColumns {
    let rows = parts[0].rows;
    let total: usize = parts.iter().map(DistinctColumns::columns).sum();
    let mut values = Vec::with_capacity(rows * total);
    for i in 0..rows {
        for p in parts {
            let n = p.columns();
            values.extend_from_slice(&p.values[i * n..(i + 1) * n]);
        }
    }
    let mut of_sample = vec![0u32; samples];
    let mut first = 0u32;
    for (p, g) in parts.iter().zip(groups) {
        for (&s, &c) in g.iter().zip(&p.of_sample) {
            of_sample[s] = first + c;
        }
        first += p.columns() as u32;
    }
    let layers = parts[0].per_layer.len();
    let per_layer = (0..layers)
        .map(|l| parts.iter().map(|p| p.per_layer[l]).sum())
        .collect();
    DistinctColumns {
        rows,
        values,
        of_sample,
        per_layer,
    }
}

/// The samples of `inputs` whose outputs from `net` are nonzero (the GraphChallenge's
/// categories), increasing, on every rank. The samples are dealt round-robin over the ranks
/// of `data` (sample `s` to rank `s mod ranks`), so that every rank gets early- and
/// late-dying samples alike; the ranks of `model` share each of them, `net` being each one's
/// share of a network split by neurons ([`Distinct::shard`]), or hold the whole network when
/// `model` has one rank. Also returns this rank's distinct columns per layer.
pub fn nonzero_samples_dealt<C: Comm>(
    data: &C,
    model: &C,
    net: &Distinct,
    inputs: &SparseSamples,
    par: Par,
) -> (Vec<usize>, Vec<usize>) {
    let mine: Vec<usize> = (data.rank()..inputs.len()).step_by(data.size()).collect();
    let out = if model.size() > 1 {
        net.run_sparse_split(model, inputs, &mine, par)
    } else {
        net.run_sparse(inputs, &mine, par)
    };
    let found: Vec<u64> = out
        .nonzero_samples()
        .into_iter()
        .map(|c| mine[c] as u64)
        .collect();
    let mut counts = vec![0u64; data.size()];
    data.all_gather_varcount(&[found.len() as u64], &mut counts, &vec![1; data.size()]);
    let counts: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
    let mut all = vec![0u64; counts.iter().sum()];
    data.all_gather_varcount(&found, &mut all, &counts);
    let mut all: Vec<usize> = all.into_iter().map(|s| s as usize).collect();
    all.sort_unstable();
    (all, out.per_layer)
}

/// Replaces `x` (`rows` × `n`, laid out as `layout` says) by the `of_row.len()` rows whose
/// row `i` is row `of_row[i]` of `x`, built in `y` (which gets the old `x`). Returns the new
/// number of rows.
fn expand_rows(
    x: &mut Vec<f32>,
    rows: usize,
    n: usize,
    layout: Layout,
    of_row: &[u32],
    y: &mut Vec<f32>,
) -> usize {
    let out = of_row.len();
    y.clear();
    match layout {
        Layout::ByFeature => {
            for &r in of_row {
                y.extend_from_slice(&x[r as usize * n..(r as usize + 1) * n]);
            }
        }
        Layout::BySample => {
            y.reserve(out * n);
            for column in x.chunks_exact(rows).take(n) {
                y.extend(of_row.iter().map(|&r| column[r as usize]));
            }
        }
    }
    std::mem::swap(x, y);
    out
}

/// `[a, b]` to `[b, a]` in `t` (resized).
fn transpose_into(x: &[f32], a: usize, b: usize, t: &mut Vec<f32>) {
    t.clear();
    t.resize(a * b, 0.0);
    crate::kernels::transpose::transpose(x, a, b, t);
}

/// Keeps one of each group of equal columns of `x` (`rows` × `n`, laid out as `layout`
/// says), in order of first appearance, and points `of_sample` at the kept ones; `spare` is
/// the room the kept columns are moved through. Returns their count and the share of nonzero
/// values.
fn keep_distinct(
    x: &mut Vec<f32>,
    spare: &mut Vec<f32>,
    layout: Layout,
    rows: usize,
    n: usize,
    of_sample: &mut [u32],
) -> (usize, f64) {
    if n == 0 || rows == 0 {
        return (n, 0.0);
    }
    let prints = match layout {
        Layout::ByFeature => columns::by_feature(x, n),
        Layout::BySample => columns::by_sample(x, rows),
    };
    let at = |i: usize, c: usize| match layout {
        Layout::ByFeature => i * n + c,
        Layout::BySample => c * rows + i,
    };
    let same = |a: usize, b: usize| {
        prints.nonzero[a] == prints.nonzero[b]
            && (0..rows).all(|i| x[at(i, a)].to_bits() == x[at(i, b)].to_bits())
    };
    // The first kept column of each hash, and after each kept column the next one with its
    // hash (almost never any): no allocation per column.
    const NONE: u32 = u32::MAX;
    let mut first_by_hash: HashMap<u64, u32> = HashMap::with_capacity(n);
    let mut next_same_hash: Vec<u32> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    let new_index: Vec<u32> = (0..n)
        .map(|c| {
            let new = kept.len() as u32;
            let mut k = *first_by_hash.entry(prints.hash[c]).or_insert(new);
            let mut last = NONE;
            while k != new && k != NONE {
                if same(kept[k as usize], c) {
                    return k;
                }
                (last, k) = (k, next_same_hash[k as usize]);
            }
            if last != NONE {
                next_same_hash[last as usize] = new;
            }
            next_same_hash.push(NONE);
            kept.push(c);
            new
        })
        .collect();
    let m = kept.len();
    if m * COMPACT_BELOW_DEN > n * COMPACT_BELOW_NUM {
        // Too few repeats to pay for moving the columns: keep computing them all.
        let nonzero: u64 = prints.nonzero.iter().map(|&z| u64::from(z)).sum();
        return (n, nonzero as f64 / (rows * n) as f64);
    }
    for s in of_sample.iter_mut() {
        *s = new_index[*s as usize];
    }
    let nonzero: u64 = kept.iter().map(|&c| u64::from(prints.nonzero[c])).sum();
    let density = nonzero as f64 / (rows * m) as f64;
    spare.clear();
    match layout {
        Layout::ByFeature => {
            spare.reserve(rows * m);
            for src in x.chunks_exact(n) {
                spare.extend(kept.iter().map(|&c| src[c]));
            }
        }
        Layout::BySample => {
            for &c in &kept {
                spare.extend_from_slice(&x[c * rows..(c + 1) * rows]);
            }
        }
    }
    std::mem::swap(x, spare);
    (m, density)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Engine;
    use crate::model::{Init, Layer, Weights};
    use crate::sparse::Csr;
    use ndarray::Array1;

    /// A random sparse network whose biases have both signs (so dead columns can come back
    /// to life through a positive bias) and whose inputs repeat.
    fn network(act: Activation, seed: u64) -> Network {
        let dense = Network::new(&[40, 30, 30, 20], act, act, Init::He, seed).unwrap();
        let layers = dense
            .layers()
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let w = layer.weights().to_dense();
                let (r, c) = w.dim();
                let v = w.into_raw_vec_and_offset().0;
                let csr = Csr::from_dense_where(&v, r, c, |k, _| (k * 7 + l) % 5 < 2);
                let bias = (0..r)
                    .map(|i| if i % 3 == 0 { 0.2 } else { -0.4 })
                    .collect();
                Layer::from_weights(Weights::Sparse(csr), Array1::from_vec(bias), act).unwrap()
            })
            .collect();
        Network::from_layers(layers).unwrap()
    }

    /// Samples-major inputs: sample s repeats sample s % 7; every fifth is all zero.
    fn inputs(samples: usize) -> Vec<f32> {
        (0..samples * 40)
            .map(|k| {
                let (s, i) = (k / 40, k % 40);
                if s % 5 == 4 {
                    0.0
                } else {
                    (((i * 31 + (s % 7) * 17) % 23) as f32 - 9.0) / 10.0
                }
            })
            .collect()
    }

    /// Samples-major `[samples, 40]` to the engine's features-major `[40, samples]`.
    fn by_feature(x: &[f32], samples: usize) -> Vec<f32> {
        let mut t = Vec::new();
        transpose_into(x, samples, 40, &mut t);
        t
    }

    /// The plain forward pass, features-major `[outputs, samples]`.
    fn plain(net: &Network, x: &[f32], samples: usize) -> Vec<f32> {
        Engine::new(net.clone(), Par::Seq)
            .forward(&by_feature(x, samples), samples)
            .to_vec()
    }

    #[test]
    fn equals_the_plain_forward_pass_bit_for_bit() {
        for act in [
            Activation::Relu,
            Activation::CappedRelu(1.5),
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let net = network(act, 3);
            for samples in [1, 9, 40, 300] {
                let x = inputs(samples);
                let plain = plain(&net, &x, samples);
                for par in [Par::Seq, Par::threads(2)] {
                    let got = forward_distinct(&net, x.clone(), samples, par);
                    let expanded = got.expand();
                    assert!(
                        expanded
                            .iter()
                            .zip(&plain)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{act}, {samples} samples"
                    );
                    // 7 distinct inputs and the zero one, in each thread's share of the samples.
                    assert!(
                        got.columns() <= (7.min(samples) + 1) * par.degree(),
                        "{act}: {} columns",
                        got.columns()
                    );
                }
            }
        }
    }

    #[test]
    fn dead_columns_share_one_column_and_are_not_categories() {
        let net = network(Activation::Relu, 5);
        let x = inputs(50);
        let got = forward_distinct(&net, x.clone(), 50, Par::Seq);
        assert_eq!(got.per_layer[0], 8, "7 distinct inputs and the zero column");
        let plain = plain(&net, &x, 50);
        let want: Vec<usize> = (0..50)
            .filter(|&s| (0..20).any(|i| plain[i * 50 + s] != 0.0))
            .collect();
        assert_eq!(got.nonzero_samples(), want);
        assert_eq!(
            got.sample(3),
            (0..20).map(|i| plain[i * 50 + 3]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn sparse_inputs_sample_by_sample_equal_the_plain_forward_pass() {
        // 300 distinct inputs, 10% nonzero: the first layers run sample by sample.
        let samples = 300;
        let x: Vec<f32> = (0..samples * 40)
            .map(|k| {
                let h = (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                if h.is_multiple_of(10) {
                    (h % 97) as f32 / 50.0
                } else {
                    0.0
                }
            })
            .collect();
        for act in [
            Activation::Relu,
            Activation::CappedRelu(0.7),
            Activation::Sigmoid,
        ] {
            let net = network(act, 9);
            let want = plain(&net, &x, samples);
            for par in [Par::Seq, Par::threads(3)] {
                let got = forward_distinct(&net, x.clone(), samples, par);
                assert!(got.per_layer[0] > 64, "{act}: the by-sample path runs");
                // Equal as numbers: a sum that is exactly zero may differ in its sign.
                assert_eq!(got.expand(), want, "{act}");
            }
        }
    }

    /// `network(act, seed)` with its neurons in groups of 4 that copy the group's first
    /// neuron's inputs and weights; the bias is copied too except in every third group,
    /// whose last neuron gets another (so it is not shared).
    fn network_with_equal_neurons(act: Activation, seed: u64) -> Network {
        let layers = network(act, seed)
            .layers()
            .iter()
            .map(|layer| {
                let w = layer.weights().to_dense();
                let (r, c) = w.dim();
                let mut v = w.into_raw_vec_and_offset().0;
                let mut bias = layer.bias().to_vec();
                for i in 0..r {
                    let first = i / 4 * 4;
                    v.copy_within(first * c..(first + 1) * c, i * c);
                    bias[i] = if i % 4 == 3 && (i / 4) % 3 == 0 {
                        bias[first] + 0.25
                    } else {
                        bias[first]
                    };
                }
                let csr = Csr::from_dense(&v, r, c);
                Layer::from_weights(Weights::Sparse(csr), Array1::from_vec(bias), act).unwrap()
            })
            .collect();
        Network::from_layers(layers).unwrap()
    }

    #[test]
    fn equal_neurons_computed_once_give_the_plain_forward_pass() {
        for act in [
            Activation::Relu,
            Activation::CappedRelu(1.5),
            Activation::Tanh,
        ] {
            let net = network_with_equal_neurons(act, 4);
            let prepared = Distinct::new(&net, Par::Seq);
            let (run, all) = prepared.neurons_computed();
            // 30 -> 8 groups + 3 own-bias neurons; 20 -> 5 + 2.
            assert_eq!((run, all), (11 + 11 + 7, 80), "{act}");
            for samples in [1, 40, 300] {
                let x = inputs(samples);
                let want = plain(&net, &x, samples);
                for par in [Par::Seq, Par::threads(2)] {
                    let got = prepared.run(x.clone(), samples, par).expand();
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{act}, {samples} samples"
                    );
                }
            }
        }
        // A softmax layer's neurons are not elementwise: it runs whole.
        let mut layers = network_with_equal_neurons(Activation::Relu, 4)
            .layers()
            .to_vec();
        let last = layers.pop().unwrap();
        layers.push(
            Layer::from_weights(
                last.weights().clone(),
                Array1::from_vec(last.bias().to_vec()),
                Activation::Softmax,
            )
            .unwrap(),
        );
        let net = Network::from_layers(layers).unwrap();
        assert_eq!(
            Distinct::new(&net, Par::Seq).neurons_computed(),
            (11 + 11 + 20, 80)
        );
        assert_eq!(
            Distinct::every_neuron(&net, Par::Seq).neurons_computed(),
            (80, 80)
        );
    }

    /// `x` (samples-major, 40 features) as sparse rows.
    fn sparse_rows(x: &[f32]) -> SparseSamples {
        let mut rows = SparseSamples {
            features: 40,
            offsets: vec![0],
            feature: Vec::new(),
            value: Vec::new(),
        };
        for sample in x.chunks_exact(40) {
            for (f, &v) in sample.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                rows.feature.push(f as u32);
                rows.value.push(v);
            }
            rows.offsets.push(rows.feature.len());
        }
        rows
    }

    #[test]
    fn ranks_splitting_the_neurons_give_the_plain_forward_pass() {
        use crate::cluster::ThreadComm;
        // Equal neurons shared within each rank's rows, own biases, and a softmax output
        // (normalised over the whole gathered column).
        let mut layers = network_with_equal_neurons(Activation::Relu, 6)
            .layers()
            .to_vec();
        let last = layers.pop().unwrap();
        let head = Layer::from_weights(
            last.weights().clone(),
            Array1::from_vec(last.bias().to_vec()),
            Activation::Softmax,
        )
        .unwrap();
        layers.push(head);
        let net = Network::from_layers(layers).unwrap();
        let samples = 200;
        let x = inputs(samples);
        let want = plain(&net, &x, samples);
        let rows = sparse_rows(&x);
        let which: Vec<usize> = (0..samples).collect();
        for ranks in [2, 3] {
            for share in [true, false] {
                let results = ThreadComm::run(ranks, |comm| {
                    let parts: Vec<Partition> = net
                        .layers()
                        .iter()
                        .map(|l| Partition::even(l.outputs(), ranks))
                        .collect();
                    let mine: Vec<Layer> = net
                        .layers()
                        .iter()
                        .zip(&parts)
                        .map(|(l, p)| l.neurons(p.range(comm.rank())))
                        .collect();
                    let shard = Distinct::shard(&mine, parts, share, Par::Seq);
                    shard
                        .run_sparse_split(&comm, &rows, &which, Par::Seq)
                        .expand()
                });
                for got in results {
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ranks} ranks, sharing {share}"
                    );
                }
            }
        }
    }
}
