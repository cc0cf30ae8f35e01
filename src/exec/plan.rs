//! Which rank owns which neurons of every layer, and what that costs each rank.

use crate::dist::Partition;
use std::ops::Range;

/// The split of every layer's neurons over the `ranks` model-parallel ranks of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    sizes: Vec<usize>,
    layers: Vec<Partition>,
}

impl Plan {
    /// The plan for a network of layer sizes `sizes` (inputs first) over `ranks` ranks.
    ///
    /// # Panics
    /// If `ranks` is 0 or `sizes` has fewer than 2 entries.
    pub fn new(sizes: &[usize], ranks: usize) -> Self {
        assert!(
            sizes.len() >= 2,
            "Plan::new: a network has at least 2 sizes"
        );
        Plan {
            sizes: sizes.to_vec(),
            layers: sizes[1..]
                .iter()
                .map(|&n| Partition::even(n, ranks))
                .collect(),
        }
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

    /// The neurons of layer `l` that rank `r` owns.
    pub fn rows(&self, l: usize, r: usize) -> Range<usize> {
        self.layers[l].range(r)
    }

    /// Neurons rank `r` owns over all layers.
    pub fn neurons_on(&self, r: usize) -> usize {
        self.layers.iter().map(|p| p.count(r)).sum()
    }

    /// Parameters (weights and biases) rank `r` holds.
    pub fn parameters_on(&self, r: usize) -> usize {
        self.layers
            .iter()
            .zip(&self.sizes)
            .map(|(p, &inputs)| p.count(r) * (inputs + 1))
            .sum()
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
}
