//! One step of the seed's algorithm (2-2-2 network, sigmoid, MSE = ½Σ(y−t)², online SGD)
//! against values worked out by hand: the network, inputs and results of Matt Mazur's
//! "A Step by Step Backpropagation Example" (2015), with the bias updates computed here by
//! hand from the deltas that example derives.

use ndarray::{Array1, array};
use nnmpi::data::{Dataset, Targets};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Layer, Network};
use nnmpi::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer};

#[test]
fn one_online_sgd_step_matches_the_hand_computed_example() {
    let hidden = Layer::new(
        array![[0.15, 0.20], [0.25, 0.30]],
        Array1::from(vec![0.35, 0.35]),
        Activation::Sigmoid,
    )
    .unwrap();
    let output = Layer::new(
        array![[0.40, 0.45], [0.50, 0.55]],
        Array1::from(vec![0.60, 0.60]),
        Activation::Sigmoid,
    )
    .unwrap();
    let net = Network::from_layers(vec![hidden, output]).unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 1,
        loss: Loss::Mse,
        optimizer: OptimizerConfig::sgd(0.5),
        seed: 0,
        patience: None,
        shuffle: false,
    };
    // The example's targets (0.01, 0.99) are not a class encoding, so drive the engine and
    // optimiser directly for this step.
    let mut engine = nnmpi::exec::Engine::new(net.clone(), Par::Seq);
    let x = [0.05f32, 0.10];
    let t = [0.01f32, 0.99];
    engine.forward(&x, 1);
    let (y, dz) = engine.output_and_delta(1);
    let y = y.to_vec();
    assert!(
        (Loss::Mse.sum(&y, &t) - 0.298371109).abs() < 1e-6,
        "total error before the step"
    );
    assert!((y[0] as f64 - 0.75136507).abs() < 1e-6 && (y[1] as f64 - 0.772928465).abs() < 1e-6);
    Loss::Mse.output_delta(Activation::Sigmoid, &y, &t, 1, 1, dz);
    let mut grads = nnmpi::exec::Gradients::zeros_like(&net);
    engine.backward(&x, 1, &mut grads);
    let mut opt = nnmpi::train::Optimizer::new(config.optimizer, &[4, 2, 4, 2]);
    opt.begin_step();
    let mut updated = net.clone();
    for (l, layer) in updated.layers_mut().iter_mut().enumerate() {
        let (w, b) = layer.params_mut();
        opt.update(Par::Seq, 2 * l, w, &grads.weights[l], true);
        opt.update(Par::Seq, 2 * l + 1, b, &grads.bias[l], false);
    }
    let w1 = updated.layers()[0].weight_slice();
    let w2 = updated.layers()[1].weight_slice();
    let want_w1 = [0.149780716, 0.19956143, 0.24975114, 0.29950229];
    let want_w2 = [0.35891648, 0.408666186, 0.511301270, 0.561370121];
    for (got, want) in w1.iter().zip(want_w1).chain(w2.iter().zip(want_w2)) {
        assert!((*got as f64 - want).abs() < 1e-6, "weight {got} vs {want}");
    }
    // Biases: b -= lr * delta, with delta_o1 = 0.138498562, delta_o2 = -0.038098236,
    // delta_h1 = 0.008771354, delta_h2 = 0.00995425 (= dE/dw3 / i1 in the example).
    let want_b1 = [0.35 - 0.5 * 0.008771354, 0.35 - 0.5 * 0.00995425];
    let want_b2 = [0.60 - 0.5 * 0.138498562, 0.60 + 0.5 * 0.038098236];
    for (got, want) in updated.layers()[0]
        .bias()
        .iter()
        .zip(want_b1)
        .chain(updated.layers()[1].bias().iter().zip(want_b2))
    {
        assert!((*got as f64 - want).abs() < 1e-6, "bias {got} vs {want}");
    }

    // The same step through the trainer (batch 1, no shuffle) gives the same network, when
    // the two outputs are read as a one-hot class target: here class 1 = (0, 1), so check
    // only that the trainer's online step equals the engine step above for that target.
    let data = Dataset {
        features: array![[0.05f32], [0.10]].into(),
        targets: Targets::Classes(vec![1]),
        classes: vec!["a".into(), "b".into()],
        origin: "inline".into(),
    };
    let mut engine2 = nnmpi::exec::Engine::new(net.clone(), Par::Seq);
    engine2.forward(&x, 1);
    let (y2, dz2) = engine2.output_and_delta(1);
    let y2 = y2.to_vec();
    Loss::Mse.output_delta(Activation::Sigmoid, &y2, &[0.0, 1.0], 1, 1, dz2);
    let mut g2 = nnmpi::exec::Gradients::zeros_like(&net);
    engine2.backward(&x, 1, &mut g2);
    let mut expected = net.clone();
    for (l, layer) in expected.layers_mut().iter_mut().enumerate() {
        let (w, b) = layer.params_mut();
        w.iter_mut()
            .zip(&g2.weights[l])
            .for_each(|(w, g)| *w -= 0.5 * g);
        b.iter_mut()
            .zip(&g2.bias[l])
            .for_each(|(b, g)| *b -= 0.5 * g);
    }
    let mut trainer = Trainer::new(net, config, Par::Seq).unwrap();
    trainer.fit(&data, None, &mut Silent).unwrap();
    assert_eq!(trainer.network(), expected);
}
