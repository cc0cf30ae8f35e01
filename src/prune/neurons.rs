//! Neuron pruning: removing whole hidden neurons, which shrinks a layer and the next layer's
//! columns.
//!
//! A hidden neuron `i` of layer `l` goes when
//! - its incoming weights are all zero: it outputs the constant `f(b_i)`, which is folded into
//!   the next layer's biases (`b'_k += W'_{k,i} · f(b_i)`) — the network computes exactly the
//!   same function without it (the seed's pruned neurons kept emitting `f(0) = 0.5`);
//! - it has no outgoing connections (column `i` of the next layer is zero): nothing reads it;
//! - or, when asked, its score `‖W_l[i,:]‖₂ · ‖W_{l+1}[:,i]‖₂` (how much signal can flow in
//!   times how much flows out) is among the smallest `fraction` of its layer, or below a
//!   threshold. Ties go by index; every layer keeps at least one neuron.
//!
//! Output neurons are never removed. Works on the whole network (every rank does the same).

use crate::error::Result;
use crate::kernels::activation::bias_activation;
use crate::model::{Layer, Network};
use ndarray::{Array1, Array2, Axis};

/// Which neurons to remove besides the dead and the unread ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NeuronTarget {
    /// None.
    DeadOnly,
    /// This fraction of every hidden layer's neurons, smallest scores first.
    Fraction(f64),
    /// Neurons whose score is below this.
    Threshold(f32),
}

/// What neuron pruning removed, per hidden layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NeuronReport {
    /// Neurons with no incoming weights, folded into the next layer's biases.
    pub dead: Vec<usize>,
    /// Neurons no connection reads.
    pub unread: Vec<usize>,
    /// Neurons removed for a small score.
    pub weak: Vec<usize>,
}

/// A hidden layer and the next one, as dense matrices while neurons are removed.
struct Pair {
    w: Array2<f32>,
    b: Vec<f32>,
    next_w: Array2<f32>,
    next_b: Vec<f32>,
}

impl Pair {
    /// Keeps the neurons flagged `true`.
    fn keep(&mut self, keep: &[bool]) {
        let rows: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        self.w = self.w.select(Axis(0), &rows);
        self.b = rows.iter().map(|&i| self.b[i]).collect();
        self.next_w = self.next_w.select(Axis(1), &rows);
    }
}

/// Removes neurons from `net` as described in the module docs; returns the smaller network and
/// what was removed. Layers keep their format (dense or sparse).
pub fn prune_neurons(net: &Network, target: NeuronTarget) -> Result<(Network, NeuronReport)> {
    let mut layers: Vec<Layer> = net.layers().to_vec();
    let mut report = NeuronReport::default();
    for l in 0..layers.len() - 1 {
        let act = layers[l].activation();
        let mut pair = Pair {
            w: layers[l].dense_weights(),
            b: layers[l].bias().to_vec(),
            next_w: layers[l + 1].dense_weights(),
            next_b: layers[l + 1].bias().to_vec(),
        };
        let n = pair.b.len();
        // Dead neurons: fold f(b_i) into the next biases.
        let dead: Vec<bool> = (0..n)
            .map(|i| pair.w.row(i).iter().all(|&v| v == 0.0))
            .collect();
        let mut constant = pair.b.clone();
        bias_activation(&mut constant, &vec![0.0; n], 1, act);
        for i in (0..n).filter(|&i| dead[i]) {
            for (k, nb) in pair.next_b.iter_mut().enumerate() {
                *nb += pair.next_w[[k, i]] * constant[i];
            }
        }
        let unread: Vec<bool> = (0..n)
            .map(|i| !dead[i] && pair.next_w.column(i).iter().all(|&v| v == 0.0))
            .collect();
        let score = |i: usize| -> f32 {
            let norm = |it: &mut dyn Iterator<Item = &f32>| it.map(|v| v * v).sum::<f32>().sqrt();
            norm(&mut pair.w.row(i).iter()) * norm(&mut pair.next_w.column(i).iter())
        };
        let mut remove: Vec<bool> = (0..n).map(|i| dead[i] || unread[i]).collect();
        let mut weak = vec![false; n];
        let mut alive: Vec<usize> = (0..n).filter(|&i| !remove[i]).collect();
        match target {
            NeuronTarget::DeadOnly => {}
            NeuronTarget::Threshold(t) => {
                for &i in &alive {
                    weak[i] = score(i) < t;
                }
            }
            NeuronTarget::Fraction(f) => {
                let drop = ((f.clamp(0.0, 1.0) * n as f64).round() as usize)
                    .saturating_sub(n - alive.len());
                alive.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
                for &i in alive.iter().take(drop) {
                    weak[i] = true;
                }
            }
        }
        for i in 0..n {
            remove[i] |= weak[i];
        }
        if remove.iter().all(|&r| r) {
            // Keep the neuron with the best score (never leave a layer empty).
            let best = (0..n)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
                .unwrap_or(0);
            remove[best] = false;
            weak[best] = false;
        }
        let count = |flags: &[bool]| (0..n).filter(|&i| flags[i] && remove[i]).count();
        report.dead.push(count(&dead));
        report.unread.push(count(&unread));
        report.weak.push(count(&weak));
        let keep: Vec<bool> = remove.iter().map(|r| !r).collect();
        pair.keep(&keep);
        layers[l] = rebuild(&layers[l], pair.w, pair.b)?;
        layers[l + 1] = rebuild(&layers[l + 1], pair.next_w, pair.next_b)?;
    }
    Ok((Network::from_layers(layers)?, report))
}

/// `old`'s activation and format with new weights and biases.
fn rebuild(old: &Layer, w: Array2<f32>, b: Vec<f32>) -> Result<Layer> {
    Layer::from_weights(
        old.weights().in_same_format(w),
        Array1::from(b),
        old.activation(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Engine;
    use crate::kernels::Par;
    use crate::model::{Activation, Init};

    fn outputs(net: &Network, x: &[f32], batch: usize) -> Vec<f32> {
        Engine::new(net.clone(), Par::Seq)
            .forward(x, batch)
            .to_vec()
    }

    #[test]
    fn dead_and_unread_neurons_go_without_changing_the_outputs() {
        let net = Network::new(
            &[6, 8, 5, 3],
            Activation::Sigmoid,
            Activation::Softmax,
            Init::Xavier,
            3,
        )
        .unwrap();
        let mut layers = net.layers().to_vec();
        // Layer 0: neurons 1 and 4 get no input (they emit sigmoid(b) = a constant);
        // layer 1: nothing reads neuron 2 of layer 1.
        let mut w0 = layers[0].dense_weights();
        w0.row_mut(1).fill(0.0);
        w0.row_mut(4).fill(0.0);
        layers[0] = Layer::new(
            w0,
            Array1::from(layers[0].bias().to_vec()),
            Activation::Sigmoid,
        )
        .unwrap();
        let mut w2 = layers[2].dense_weights();
        w2.column_mut(2).fill(0.0);
        layers[2] = Layer::new(
            w2,
            Array1::from(layers[2].bias().to_vec()),
            Activation::Softmax,
        )
        .unwrap();
        let net = Network::from_layers(layers).unwrap();
        let (small, report) = prune_neurons(&net, NeuronTarget::DeadOnly).unwrap();
        assert_eq!(small.sizes(), vec![6, 6, 4, 3]);
        assert_eq!(report.dead, vec![2, 0]);
        assert_eq!(report.unread, vec![0, 1]);
        let x: Vec<f32> = (0..6 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        let (a, b) = (outputs(&net, &x, 4), outputs(&small, &x, 4));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-6, "{p} vs {q}");
        }
    }

    #[test]
    fn a_fraction_removes_the_weakest_and_keeps_at_least_one() {
        let net = Network::new(
            &[4, 10, 2],
            Activation::Relu,
            Activation::Sigmoid,
            Init::He,
            9,
        )
        .unwrap();
        let (small, report) = prune_neurons(&net, NeuronTarget::Fraction(0.3)).unwrap();
        assert_eq!(small.sizes(), vec![4, 7, 2]);
        assert_eq!(report.weak, vec![3]);
        let (tiny, _) = prune_neurons(&net, NeuronTarget::Fraction(1.0)).unwrap();
        assert_eq!(tiny.sizes(), vec![4, 1, 2]);
        // The kept neurons are the 7 strongest, in their order.
        let w = net.layers()[0].dense_weights();
        let v = net.layers()[1].dense_weights();
        let score =
            |i: usize| w.row(i).dot(&w.row(i)).sqrt() * v.column(i).dot(&v.column(i)).sqrt();
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
        let mut kept = order[3..].to_vec();
        kept.sort();
        assert_eq!(small.layers()[0].dense_weights(), w.select(Axis(0), &kept));
        assert_eq!(small.layers()[1].dense_weights(), v.select(Axis(1), &kept));
    }
}
