//! Optimisers: SGD (momentum, weight decay) and Adam (decoupled weight decay, as AdamW).

use crate::kernels::Par;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Tensors shorter than this are updated on one thread (a parallel update of 2^16 values
/// cost more in waking a worker than it saved).
const PAR_MIN_LEN: usize = 1 << 20;
const CHUNK: usize = 1 << 14;

/// An optimiser and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// `v = momentum·v + g + wd·w; w -= lr·v` (plain SGD when momentum is 0).
    Sgd {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    },
    /// Adam with bias correction; weight decay is decoupled: `w -= lr·wd·w`.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl std::fmt::Display for OptimizerConfig {
    /// As a user would name it: `adam (lr 0.001, weight decay 0)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            } => write!(
                f,
                "sgd (lr {lr}, momentum {momentum}, weight decay {weight_decay})"
            ),
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => write!(
                f,
                "adam (lr {lr}, betas {beta1}/{beta2}, eps {eps:e}, weight decay {weight_decay})"
            ),
        }
    }
}

impl OptimizerConfig {
    /// Adam with the usual defaults.
    pub fn adam(lr: f32) -> Self {
        OptimizerConfig::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Plain SGD.
    pub fn sgd(lr: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// What an optimiser remembers between steps (saved in checkpoints for exact resume).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Steps taken.
    pub step: u64,
    /// Velocity (SGD) or first moment (Adam), per parameter tensor; empty until needed.
    pub first: Vec<Vec<f32>>,
    /// Second moment (Adam), per parameter tensor.
    pub second: Vec<Vec<f32>>,
}

/// Updates parameter tensors from their gradients.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: OptimizerState,
}

impl Optimizer {
    /// An optimiser for tensors of the given lengths.
    pub fn new(config: OptimizerConfig, tensor_lens: &[usize]) -> Self {
        let slots = |on: bool| -> Vec<Vec<f32>> {
            tensor_lens
                .iter()
                .map(|&n| if on { vec![0.0; n] } else { Vec::new() })
                .collect()
        };
        let (first, second) = match config {
            OptimizerConfig::Sgd { momentum, .. } => (slots(momentum != 0.0), slots(false)),
            OptimizerConfig::Adam { .. } => (slots(true), slots(true)),
        };
        Optimizer {
            config,
            state: OptimizerState {
                step: 0,
                first,
                second,
            },
        }
    }

    /// An optimiser continuing from saved state; `None` if the state does not fit the tensors.
    pub fn resume(
        config: OptimizerConfig,
        tensor_lens: &[usize],
        state: OptimizerState,
    ) -> Option<Self> {
        let fresh = Optimizer::new(config, tensor_lens);
        let shape = |v: &Vec<Vec<f32>>| v.iter().map(Vec::len).collect::<Vec<_>>();
        let fits = shape(&fresh.state.first) == shape(&state.first)
            && shape(&fresh.state.second) == shape(&state.second);
        fits.then_some(Optimizer { config, state })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// The state to save.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Starts a step (call once per batch, before the tensors' updates).
    pub fn begin_step(&mut self) {
        self.state.step += 1;
    }

    /// Updates tensor number `tensor` (`param -= ...` from `grad`); `decay` says whether weight
    /// decay applies (weights yes, biases no).
    /// Splits long tensors over `par`'s threads (element-wise: the same bits either way).
    pub fn update(
        &mut self,
        par: Par,
        tensor: usize,
        param: &mut [f32],
        grad: &[f32],
        decay: bool,
    ) {
        assert_eq!(
            param.len(),
            grad.len(),
            "Optimizer::update: gradient length differs"
        );
        match self.config {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let wd = if decay { weight_decay } else { 0.0 };
                if momentum == 0.0 {
                    chunked2(par, param, grad, |p, g| {
                        for (w, &g) in p.iter_mut().zip(g) {
                            *w -= lr * (g + wd * *w);
                        }
                    });
                } else {
                    let v = &mut self.state.first[tensor];
                    chunked3(par, param, grad, v, |p, g, v| {
                        for ((w, &g), v) in p.iter_mut().zip(g).zip(v) {
                            *v = momentum * *v + g + wd * *w;
                            *w -= lr * *v;
                        }
                    });
                }
            }
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let wd = if decay { weight_decay } else { 0.0 };
                let t = self.state.step.max(1) as i32;
                let c1 = 1.0 / (1.0 - beta1.powi(t));
                let c2 = 1.0 / (1.0 - beta2.powi(t));
                let (m, v) = (
                    &mut self.state.first[tensor],
                    &mut self.state.second[tensor],
                );
                chunked4(par, param, grad, m, v, |p, g, m, v| {
                    for (((w, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= lr * ((*m * c1) / ((*v * c2).sqrt() + eps) + wd * *w);
                    }
                });
            }
        }
    }
}

/// The length of the parts a tensor of `len` values is updated in on `par`'s threads, or
/// `None` when it is updated in one piece.
fn part_len(par: Par, len: usize) -> Option<usize> {
    (par.degree() > 1 && len >= PAR_MIN_LEN).then(|| len.div_ceil(par.degree()).max(CHUNK))
}

fn chunked2(par: Par, p: &mut [f32], g: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    let Some(part) = part_len(par, p.len()) else {
        return f(p, g);
    };
    p.par_chunks_mut(part)
        .zip(g.par_chunks(part))
        .for_each(|(p, g)| f(p, g));
}

fn chunked3(
    par: Par,
    p: &mut [f32],
    g: &[f32],
    a: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) {
    let Some(part) = part_len(par, p.len()) else {
        return f(p, g, a);
    };
    p.par_chunks_mut(part)
        .zip(g.par_chunks(part))
        .zip(a.par_chunks_mut(part))
        .for_each(|((p, g), a)| f(p, g, a));
}

fn chunked4(
    par: Par,
    p: &mut [f32],
    g: &[f32],
    a: &mut [f32],
    b: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let Some(part) = part_len(par, p.len()) else {
        return f(p, g, a, b);
    };
    p.par_chunks_mut(part)
        .zip(g.par_chunks(part))
        .zip(a.par_chunks_mut(part).zip(b.par_chunks_mut(part)))
        .for_each(|((p, g), (a, b))| f(p, g, a, b));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_momentum_by_hand() {
        let cfg = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 0.01,
        };
        let mut opt = Optimizer::new(cfg, &[2]);
        let mut w = [1.0f32, -2.0];
        opt.begin_step();
        opt.update(Par::Seq, 0, &mut w, &[0.5, 0.25], true);
        // v = g + wd*w = [0.51, 0.23]; w = [1 - 0.051, -2 - 0.023]
        assert!(
            (w[0] - 0.949).abs() < 1e-6 && (w[1] + 2.023).abs() < 1e-6,
            "{w:?}"
        );
        opt.begin_step();
        opt.update(Par::Seq, 0, &mut w, &[0.5, 0.25], true);
        // v = 0.5*0.51 + 0.5 + 0.01*0.949 = 0.76449; w = 0.949 - 0.076449
        assert!((w[0] - 0.872551).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
        let mut opt = Optimizer::new(OptimizerConfig::adam(0.01), &[3]);
        let mut w = [0.0f32, 1.0, 2.0];
        opt.begin_step();
        opt.update(Par::Seq, 0, &mut w, &[3.0, -0.2, 0.0], false);
        assert!(
            (w[0] + 0.01).abs() < 1e-6 && (w[1] - 1.01).abs() < 1e-6 && w[2] == 2.0,
            "{w:?}"
        );
    }

    #[test]
    fn parallel_chunks_equal_sequential() {
        let n = PAR_MIN_LEN + 12345;
        let g: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 10.0).collect();
        let mut a = vec![0.5f32; n];
        let mut b = vec![0.5f32; n];
        let mut big = Optimizer::new(OptimizerConfig::adam(0.001), &[n]);
        big.begin_step();
        big.update(Par::threads(3), 0, &mut a, &g, true);
        for (i, w) in b.iter_mut().enumerate() {
            let mut one = Optimizer::new(OptimizerConfig::adam(0.001), &[1]);
            one.begin_step();
            one.update(Par::Seq, 0, std::slice::from_mut(w), &g[i..i + 1], true);
        }
        assert_eq!(a, b);
    }
}
