//! Which rank owns which neurons of every layer, and what that costs each rank.

use crate::cluster::Partition;
use crate::model::Network;
use std::ops::Range;

/// How a sparse layer's rows are split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Equal neuron counts (the seed's `chunk = neurons / processes`), for every layer.
    Even,
    /// Sparse layers: contiguous row ranges with about equal numbers of connections, so every
    /// rank has the same work. Dense layers are split evenly either way.
    Balanced,
}

/// The split of every layer's neurons over the `ranks` model-parallel ranks of a group, and
/// of each layer's stored weights that follows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    sizes: Vec<usize>,
    layers: Vec<Partition>,
    values: Vec<Partition>,
}

impl Plan {
    /// The plan for a dense network of layer sizes `sizes` (inputs first) over `ranks` ranks.
    ///
    /// # Panics
    /// If `ranks` is 0 or `sizes` has fewer than 2 entries.
    pub fn new(sizes: &[usize], ranks: usize) -> Self {
        assert!(
            sizes.len() >= 2,
            "Plan::new: a network has at least 2 sizes"
        );
        let layers: Vec<Partition> = sizes[1..]
            .iter()
            .map(|&n| Partition::even(n, ranks))
            .collect();
        let values = layers
            .iter()
            .zip(sizes)
            .map(|(p, &inputs)| Partition::from_counts(&p.counts_times(inputs)))
            .collect();
        Plan {
            sizes: sizes.to_vec(),
            layers,
            values,
        }
    }

    /// The plan for `net` over `ranks` ranks, sparse layers split as `split` says.
    pub fn for_network(net: &Network, ranks: usize, split: Split) -> Self {
        let mut plan = Plan::new(&net.sizes(), ranks);
        for (l, layer) in net.layers().iter().enumerate() {
            let w = layer.weights();
            if split == Split::Balanced
                && let Some(blocks) = w.balanced_rows(ranks)
            {
                let mut offsets: Vec<usize> = blocks.iter().map(|r| r.start).collect();
                offsets.push(w.rows());
                plan.layers[l] = Partition::from_offsets(offsets);
            }
            let offsets = (0..ranks)
                .map(|r| w.stored_before(plan.layers[l].range(r).start))
                .chain([w.stored()]);
            plan.values[l] = Partition::from_offsets(offsets.collect());
        }
        plan
    }

    /// Replaces the split of layer `l`'s stored weights (after pruning changed them).
    pub fn set_values(&mut self, l: usize, counts: &[usize]) {
        self.values[l] = Partition::from_counts(counts);
    }

    /// Model-parallel ranks.
    pub fn ranks(&self) -> usize {
        self.layers[0].parts()
    }

    /// Layer sizes, inputs first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of layers.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// The split of layer `l`'s neurons.
    pub fn layer(&self, l: usize) -> &Partition {
        &self.layers[l]
    }

    /// The split of layer `l`'s stored weights (rank `r`'s rows' weights, in order).
    pub fn values(&self, l: usize) -> &Partition {
        &self.values[l]
    }

    /// The neurons of layer `l` that rank `r` owns.
    pub fn rows(&self, l: usize, r: usize) -> Range<usize> {
        self.layers[l].range(r)
    }

    /// Neurons rank `r` owns over all layers.
    pub fn neurons_on(&self, r: usize) -> usize {
        self.layers.iter().map(|p| p.count(r)).sum()
    }

    /// Stored weights of rank `r` over all layers.
    pub fn weights_on(&self, r: usize) -> usize {
        self.values.iter().map(|p| p.count(r)).sum()
    }

    /// Parameters (stored weights and biases) rank `r` holds.
    pub fn parameters_on(&self, r: usize) -> usize {
        self.weights_on(r) + self.neurons_on(r)
    }

    /// Largest over mean of layer `l`'s stored weights per rank (1 = perfectly even work).
    pub fn imbalance(&self, l: usize) -> f64 {
        let per_rank = self.values[l].counts();
        let mean = per_rank.iter().sum::<usize>() as f64 / per_rank.len() as f64;
        per_rank.iter().copied().max().unwrap_or(0) as f64 / mean.max(f64::MIN_POSITIVE)
    }

    /// Values rank `r` receives per sample in the forward all-gathers (every layer's outputs
    /// but its own; nothing on one rank).
    pub fn forward_values_on(&self, r: usize) -> usize {
        if self.ranks() == 1 {
            return 0;
        }
        self.layers.iter().map(|p| p.total() - p.count(r)).sum()
    }

    /// Values rank `r` contributes per sample to the backward reduce-scatters (a partial sum
    /// for every input of layers 1.., less its own share; nothing on one rank).
    pub fn backward_values_on(&self, r: usize) -> usize {
        if self.ranks() == 1 {
            return 0;
        }
        self.layers[..self.depth() - 1]
            .iter()
            .map(|p| p.total() - p.count(r))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Layer, Weights};
    use crate::sparse::Csr;
    use ndarray::Array1;

    #[test]
    fn a_plan_by_hand() {
        // 3 inputs -> 5 -> 1 on 2 ranks: rank 0 owns 3 + 1 neurons, rank 1 owns 2 + 0.
        let p = Plan::new(&[3, 5, 1], 2);
        assert_eq!(p.rows(0, 0), 0..3);
        assert_eq!(p.rows(0, 1), 3..5);
        assert_eq!(p.rows(1, 1), 1..1);
        assert_eq!(p.neurons_on(0), 4);
        assert_eq!(p.parameters_on(0), 3 * 4 + 6);
        assert_eq!(p.parameters_on(1), 2 * 4);
        assert_eq!(p.forward_values_on(0), 2);
        assert_eq!(p.forward_values_on(1), 3 + 1);
        assert_eq!(p.backward_values_on(1), 3);
        assert_eq!(Plan::new(&[3, 5, 1], 1).forward_values_on(0), 0);
    }

    #[test]
    fn a_sparse_layer_is_split_by_its_connections() {
        // 8 neurons of 10 inputs: the first 4 keep 1 connection, the last 4 all 10.
        let mut d = vec![0.0f32; 80];
        for i in 0..8 {
            let n = if i < 4 { 1 } else { 10 };
            d[i * 10..i * 10 + n].fill(1.0);
        }
        let layer = Layer::from_weights(
            Weights::Sparse(Csr::from_dense(&d, 8, 10)),
            Array1::zeros(8),
            Activation::Relu,
        )
        .unwrap();
        let net = Network::from_layers(vec![layer]).unwrap();
        let even = Plan::for_network(&net, 2, Split::Even);
        assert_eq!(even.values(0).counts(), vec![4, 40]);
        assert!((even.imbalance(0) - 40.0 / 22.0).abs() < 1e-9);
        let balanced = Plan::for_network(&net, 2, Split::Balanced);
        assert_eq!(balanced.rows(0, 0), 0..6);
        assert_eq!(balanced.values(0).counts(), vec![24, 20]);
        assert!(balanced.imbalance(0) < even.imbalance(0));
    }
}
