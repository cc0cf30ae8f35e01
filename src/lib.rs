//! nnmpi: train, prune and serve feed-forward neural networks (MLPs), on one machine or
//! across an MPI cluster.
//!
//! The pieces, in the order data flows through them:
//! [`data`] loads and normalises samples, [`model`] holds the network, [`exec`] runs it
//! with the [`kernels`], [`train`] fits it, [`io`] saves it; [`bench`](mod@bench) times it.
//!
//! ```
//! use nnmpi::exec::Engine;
//! use nnmpi::kernels::Par;
//! use nnmpi::model::{Activation, Init, Network};
//!
//! let net = Network::new(&[2, 3, 1], Activation::Tanh, Activation::Sigmoid, Init::Xavier, 42).unwrap();
//! let mut engine = Engine::new(net, Par::Seq);
//! let x = [0.5f32, -1.0]; // one sample: [inputs, batch = 1]
//! let y = engine.forward(&x, 1);
//! assert!(y[0] > 0.0 && y[0] < 1.0);
//! ```

pub mod bench;
pub mod cluster;
pub mod data;
pub mod error;
pub mod exec;
pub mod io;
pub mod kernels;
pub mod model;
pub mod prune;
pub mod recipe;
pub mod rng;
pub mod sparse;
pub mod train;

pub use error::{Error, Result};
