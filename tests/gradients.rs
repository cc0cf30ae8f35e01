//! Analytic gradients (the engine's backward pass, f32) against central finite differences of
//! an independent, obvious f64 forward pass, for every hidden activation × (output activation,
//! loss) pair the library accepts.

use nnmpi::exec::{Engine, Gradients};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init, Network};
use nnmpi::train::Loss;

/// The loss of the batch mean, computed from scratch in f64 (sample-major, no shared code).
fn reference_loss(net: &Network, x: &[f64], t: &[f64], batch: usize, loss: Loss) -> f64 {
    let mut total = 0.0;
    for s in 0..batch {
        let mut a: Vec<f64> = (0..net.inputs()).map(|i| x[i * batch + s]).collect();
        for layer in net.layers() {
            let w = layer.dense_weights();
            let z: Vec<f64> = (0..layer.outputs())
                .map(|o| {
                    layer.bias()[o] as f64
                        + (0..layer.inputs())
                            .map(|i| w[[o, i]] as f64 * a[i])
                            .sum::<f64>()
                })
                .collect();
            a = match layer.activation() {
                Activation::Sigmoid => z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(),
                Activation::Tanh => z.iter().map(|z| z.tanh()).collect(),
                Activation::Relu => z.iter().map(|z| z.max(0.0)).collect(),
                Activation::LeakyRelu(al) => z
                    .iter()
                    .map(|&z| if z > 0.0 { z } else { al as f64 * z })
                    .collect(),
                Activation::Identity => z,
                Activation::Gelu => z
                    .iter()
                    .map(|z| 0.5 * z * (1.0 + libm::erf(z / 2f64.sqrt())))
                    .collect(),
                Activation::Silu => z.iter().map(|z| z / (1.0 + (-z).exp())).collect(),
                Activation::CappedRelu(c) => z.iter().map(|z| z.max(0.0).min(c as f64)).collect(),
                Activation::Softmax => {
                    let m = z.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = z.iter().map(|z| (z - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    e.iter().map(|e| e / sum).collect()
                }
            };
        }
        for (o, y) in a.iter().enumerate() {
            let t = t[o * batch + s];
            total += match loss {
                Loss::Mse => 0.5 * (y - t).powi(2),
                Loss::BinaryCrossEntropy => -(t * y.ln() + (1.0 - t) * (1.0 - y).ln()),
                Loss::SoftmaxCrossEntropy => -t * y.ln(),
            };
        }
    }
    total / batch as f64
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(b.iter().map(|x| x * x).sum::<f64>().sqrt());
    if scale < 1e-12 { diff } else { diff / scale }
}

#[test]
fn analytic_gradients_match_finite_differences_for_every_pair() {
    let hidden = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Identity,
        Activation::Gelu,
        Activation::Silu,
        Activation::CappedRelu(0.5),
    ];
    let heads = [
        (Activation::Sigmoid, Loss::Mse),
        (Activation::Tanh, Loss::Mse),
        (Activation::Relu, Loss::Mse),
        (Activation::LeakyRelu(0.1), Loss::Mse),
        (Activation::Identity, Loss::Mse),
        (Activation::CappedRelu(0.5), Loss::Mse),
        (Activation::Softmax, Loss::Mse),
        (Activation::Sigmoid, Loss::BinaryCrossEntropy),
        (Activation::Softmax, Loss::SoftmaxCrossEntropy),
    ];
    let (inputs, batch, outputs) = (5, 4, 3);
    let mut checked = 0;
    for (hi, &h) in hidden.iter().enumerate() {
        for (oi, &(out_act, loss)) in heads.iter().enumerate() {
            let seed = (hi * 10 + oi) as u64;
            let mut net =
                Network::new(&[inputs, 6, 4, outputs], h, out_act, Init::Xavier, seed).unwrap();
            // Non-zero biases so that ReLU kinks are not hit at exactly zero.
            for (l, layer) in net.layers_mut().iter_mut().enumerate() {
                layer
                    .bias_mut()
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = 0.05 * ((i + l) as f32 - 1.5));
            }
            let x: Vec<f32> = (0..inputs * batch)
                .map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0)
                .collect();
            let t: Vec<f32> = match loss {
                Loss::SoftmaxCrossEntropy => (0..outputs * batch)
                    .map(|i| {
                        if i / batch == (i % batch) % outputs {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                _ => (0..outputs * batch)
                    .map(|i| ((i * 7 % 5) as f32) / 5.0 + 0.1)
                    .collect(),
            };
            let mut engine = Engine::new(net.clone(), Par::Seq);
            engine.forward(&x, batch);
            let (y, dz) = engine.output_and_delta(batch);
            let y = y.to_vec();
            loss.output_delta(out_act, &y, &t, batch, batch, dz);
            let mut grads = Gradients::zeros_like(&net);
            engine.backward(&x, batch, &mut grads);

            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let t64: Vec<f64> = t.iter().map(|&v| v as f64).collect();
            let h_step = 1e-4f32;
            for l in 0..net.layers().len() {
                let (mut fd, mut an) = (Vec::new(), Vec::new());
                let n_w = grads.weights[l].len();
                for p in 0..n_w + grads.bias[l].len() {
                    let eval = |delta: f32| {
                        let mut probe = net.clone();
                        let layer = &mut probe.layers_mut()[l];
                        if p < n_w {
                            let (w, _) = layer.params_mut();
                            w[p] += delta;
                        } else {
                            let (_, b) = layer.params_mut();
                            b[p - n_w] += delta;
                        }
                        let actual = if p < n_w {
                            probe.layers()[l].weight_slice()[p] - net.layers()[l].weight_slice()[p]
                        } else {
                            probe.layers()[l].bias()[p - n_w] - net.layers()[l].bias()[p - n_w]
                        };
                        (
                            reference_loss(&probe, &x64, &t64, batch, loss),
                            actual as f64,
                        )
                    };
                    let ((lp, dp), (lm, dm)) = (eval(h_step), eval(-h_step));
                    fd.push((lp - lm) / (dp - dm));
                    an.push(if p < n_w {
                        grads.weights[l][p]
                    } else {
                        grads.bias[l][p - n_w]
                    } as f64);
                }
                let err = rel_err(&an, &fd);
                assert!(
                    err < 1e-2,
                    "hidden {h}, output {out_act}, loss {loss}, layer {l}: relative error {err:.2e}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, hidden.len() * heads.len() * 3);
}
