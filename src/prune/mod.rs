//! Pruning: removing connections ([`connections`]) or whole neurons ([`neurons`]), and the
//! iterative schedule that alternates pruning with fine-tuning ([`schedule`]).

pub mod blocks;
pub mod connections;
pub mod neurons;
pub mod schedule;

pub use connections::{Pruning, Scope, Target, prune_shard};
pub use neurons::{NeuronReport, NeuronTarget, prune_neurons};
pub use schedule::Schedule;

use crate::cluster::SelfComm;
use crate::model::{Layer, Network};
use ndarray::Array1;

/// Prunes the connections of a whole network in one process (every layer becomes sparse).
pub fn prune_network(net: &Network, rule: Pruning) -> Network {
    let shard: Vec<&crate::model::Weights> = net.layers().iter().map(Layer::weights).collect();
    let pruned = prune_shard(&SelfComm, &shard, rule);
    let layers = net
        .layers()
        .iter()
        .zip(pruned)
        .map(|(l, w)| {
            Layer::from_weights(w, Array1::from(l.bias().to_vec()), l.activation())
                .expect("pruning keeps the layer's shape")
        })
        .collect();
    Network::from_layers(layers).expect("pruning keeps the network's shape")
}
