//! Pruning: removing connections ([`connections`]) or whole neurons ([`neurons`]), and the
//! iterative schedule that alternates pruning with fine-tuning ([`schedule`]).

pub mod connections;
pub mod neurons;
pub mod schedule;

pub use connections::{Scope, Target, prune_shard};
pub use neurons::{NeuronReport, NeuronTarget, prune_neurons};
pub use schedule::Schedule;
