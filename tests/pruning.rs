//! Pruning and the compact layout, checked against the dense engine: sparse networks compute
//! what their dense equivalents compute, pruning hits its target exactly, fine-tuning keeps
//! the mask, and neuron removal of dead neurons changes nothing.

use nnmpi::exec::Engine;
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Format, Init, Network, Weights};
use nnmpi::prune::{NeuronTarget, Pruning, Scope, Target, prune_network, prune_neurons};
use nnmpi::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer};

fn inputs(n: usize, batch: usize) -> Vec<f32> {
    (0..n * batch)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.7)
        .collect()
}

/// Largest |a - b| relative to the largest |b|.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn a_sparse_network_computes_what_its_dense_twin_computes() {
    let net = Network::new(
        &[300, 200, 100, 10],
        Activation::Tanh,
        Activation::Softmax,
        Init::Xavier,
        4,
    )
    .unwrap();
    for s in [0.5, 0.9, 0.99] {
        let sparse = prune_network(
            &net,
            Pruning::connections(Target::Sparsity(s), Scope::Layer),
        )
        .with_format(Format::Sparse);
        let dense = sparse.with_format(Format::Dense);
        assert!(sparse.layers().iter().all(|l| l.weights().is_sparse()));
        assert!(dense.layers().iter().all(|l| !l.weights().is_sparse()));
        let x = inputs(300, 33);
        let ys = Engine::new(sparse.clone(), Par::current_pool())
            .forward(&x, 33)
            .to_vec();
        let yd = Engine::new(dense.clone(), Par::current_pool())
            .forward(&x, 33)
            .to_vec();
        let diff = relative_difference(&ys, &yd);
        assert!(
            diff <= 1e-6,
            "sparsity {s}: whole network differs by {diff}"
        );
        // And layer by layer: the first layer's pre-activations.
        let first = |n: &Network| {
            let layer = nnmpi::model::Layer::from_weights(
                n.layers()[0].weights().clone(),
                ndarray::Array1::from(n.layers()[0].bias().to_vec()),
                Activation::Identity,
            )
            .unwrap();
            let one = Network::from_layers(vec![layer]).unwrap();
            Engine::new(one, Par::Seq).forward(&x, 33).to_vec()
        };
        let diff = relative_difference(&first(&sparse), &first(&dense));
        assert!(diff <= 1e-6, "sparsity {s}: first layer differs by {diff}");
    }
}

#[test]
fn pruning_hits_the_target_exactly() {
    let net = Network::new(
        &[123, 77, 31, 3],
        Activation::Relu,
        Activation::Softmax,
        Init::He,
        8,
    )
    .unwrap();
    for s in [0.1, 0.5, 0.9, 0.95, 0.99] {
        let layer = prune_network(
            &net,
            Pruning::connections(Target::Sparsity(s), Scope::Layer),
        );
        for (l, (a, b)) in layer.layers().iter().zip(net.layers()).enumerate() {
            let total = b.inputs() * b.outputs();
            let want = total - (s * total as f64).round() as usize;
            assert_eq!(
                a.weights().stored(),
                want,
                "layer scope, sparsity {s}, layer {l}"
            );
        }
        let global = prune_network(
            &net,
            Pruning::connections(Target::Sparsity(s), Scope::Global),
        );
        let total: usize = net.layers().iter().map(|l| l.inputs() * l.outputs()).sum();
        let stored: usize = global.layers().iter().map(|l| l.weights().stored()).sum();
        assert_eq!(
            stored,
            total - (s * total as f64).round() as usize,
            "global, sparsity {s}"
        );
    }
}

#[test]
fn fine_tuning_keeps_zeros_exactly_where_the_mask_says() {
    let net = Network::new(
        &[20, 16, 3],
        Activation::Relu,
        Activation::Softmax,
        Init::He,
        2,
    )
    .unwrap();
    let pruned = prune_network(
        &net,
        Pruning::connections(Target::Sparsity(0.8), Scope::Layer),
    );
    let n = 90;
    let features = ndarray::Array2::from_shape_vec((20, n), inputs(20, n)).unwrap();
    let ids: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let data = nnmpi::data::Dataset {
        features: features.into(),
        targets: nnmpi::data::Targets::Classes(ids),
        classes: vec!["a".into(), "b".into(), "c".into()],
        origin: "synthetic".into(),
    };
    let config = TrainConfig {
        epochs: 5,
        batch_size: 8,
        loss: Loss::SoftmaxCrossEntropy,
        optimizer: OptimizerConfig::adam(0.01),
        seed: 1,
        patience: None,
        shuffle: true,
    };
    let mut trainer = Trainer::new(pruned.clone(), config, Par::Seq).unwrap();
    trainer.fit(&data, None, &mut Silent).unwrap();
    let tuned = trainer.network();
    for (before, after) in pruned.layers().iter().zip(tuned.layers()) {
        let (Weights::Sparse(a), Weights::Sparse(b)) = (before.weights(), after.weights()) else {
            panic!("pruned layers stay sparse");
        };
        assert_eq!(
            (a.row_offsets(), a.col_indices()),
            (b.row_offsets(), b.col_indices()),
            "the mask moved"
        );
        assert_ne!(a.val(), b.val(), "training changed nothing");
        let (d0, d1) = (before.dense_weights(), after.dense_weights());
        for (x, y) in d0.iter().zip(d1.iter()) {
            assert!(*x != 0.0 || *y == 0.0, "a pruned connection came back");
        }
    }
}

#[test]
fn removing_dead_neurons_of_a_pruned_network_changes_nothing() {
    // Pruning 97% of a layer leaves some neurons without any input.
    let net = Network::new(
        &[10, 40, 30, 2],
        Activation::Sigmoid,
        Activation::Softmax,
        Init::Xavier,
        6,
    )
    .unwrap();
    let pruned = prune_network(
        &net,
        Pruning::connections(Target::Sparsity(0.97), Scope::Layer),
    );
    let (small, report) = prune_neurons(&pruned, NeuronTarget::DeadOnly).unwrap();
    assert!(report.dead.iter().sum::<usize>() > 0, "{report:?}");
    assert!(small.sizes()[1] < 40);
    let x = inputs(10, 7);
    let a = Engine::new(pruned, Par::Seq).forward(&x, 7).to_vec();
    let b = Engine::new(small, Par::Seq).forward(&x, 7).to_vec();
    assert!(relative_difference(&b, &a) <= 1e-6, "{a:?} vs {b:?}");
}
