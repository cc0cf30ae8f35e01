//! Crafted checkpoints: payloads mutated and re-framed with a valid header and CRC-32, as an
//! attacker (or a buggy tool) would make them. Each must load as a clean error or as a model
//! that validates: no panic, no abort, no hang, and memory bounded (the address space of this
//! test process is capped, so a huge allocation aborts it and the test fails).
//!
//! `NNMPI_MUTANTS=N` sets the mutants per checkpoint (default 3,000; the README reports a
//! longer run).

use ndarray::Array1;
use nnmpi::data::{NormKind, Normalizer};
use nnmpi::io::{Checkpoint, TrainingCheckpoint, decode, encode};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init, Layer, Model, Network, Task, UniformStream, Weights};
use nnmpi::sparse::Csr;
use nnmpi::train::{Loss, OptimizerConfig, TrainConfig, Trainer};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

const HEADER_LEN: usize = 24;

/// A classifier with Adam state and a normaliser, as `train --checkpoint-every` writes it.
fn dense_checkpoint() -> Checkpoint {
    let net = Network::new(
        &[6, 10, 3],
        Activation::Relu,
        Activation::Softmax,
        Init::He,
        3,
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 4,
        loss: Loss::SoftmaxCrossEntropy,
        optimizer: OptimizerConfig::adam(0.01),
        seed: 5,
        patience: Some(3),
        shuffle: true,
    };
    let trainer = Trainer::new(net.clone(), config.clone(), Par::Seq).unwrap();
    let mut rng = UniformStream::new(9, 0);
    let stats = ndarray::Array2::from_shape_fn((6, 20), |_| rng.next_unit());
    Checkpoint {
        model: Model {
            network: net,
            normalizer: Normalizer::fit(NormKind::ZScore, stats.view()),
            task: Task::Classification {
                classes: vec!["a".into(), "b,c".into(), "d".into()],
            },
        },
        training: Some(TrainingCheckpoint {
            config,
            validation_split: 0.2,
            state: trainer.state(),
        }),
    }
}

/// A pruned regression model: its first layer keeps every 7th connection (a sparse layer).
fn sparse_checkpoint() -> Checkpoint {
    let net = Network::new(
        &[40, 12, 1],
        Activation::Tanh,
        Activation::Identity,
        Init::Xavier,
        4,
    )
    .unwrap();
    let mut layers = net.layers().to_vec();
    let csr = Csr::from_dense_where(layers[0].weight_slice(), 12, 40, |k, _| k % 7 == 0);
    layers[0] = Layer::from_weights(
        Weights::Sparse(csr),
        Array1::from(layers[0].bias().to_vec()),
        Activation::Tanh,
    )
    .unwrap();
    Checkpoint {
        model: Model {
            network: Network::from_layers(layers).unwrap(),
            normalizer: Normalizer::identity(),
            task: Task::Regression,
        },
        training: None,
    }
}

/// A small deterministic generator for the mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `body`: the kinds a fuzzer finds first, plus the ones that hit length
/// fields (bincode's varints: 0xFB, 0xFC, 0xFD announce a u16, u32, u64).
fn mutate(body: &mut Vec<u8>, rng: &mut Rng) {
    // One time in 8 at the first byte: the writer string's length.
    let at = if rng.below(8) == 0 {
        0
    } else {
        rng.below(body.len())
    };
    match rng.below(7) {
        0 => body[at] ^= 1 << rng.below(8),
        1 => body[at] = rng.next() as u8,
        2 => body[at] = [0x00, 0x01, 0x7F, 0xFA, 0xFB, 0xFC, 0xFD, 0xFF][rng.below(8)],
        3 => {
            let mut v = vec![0xFD];
            v.extend_from_slice(&(rng.next() >> rng.below(64)).to_le_bytes());
            let end = (at + 1 + rng.below(9)).min(body.len());
            body.splice(at..end, v);
        }
        4 => {
            let mut v = vec![0xFC];
            v.extend_from_slice(&(rng.next() as u32 >> rng.below(32)).to_le_bytes());
            let end = (at + 1).min(body.len());
            body.splice(at..end, v);
        }
        5 => {
            let end = (at + 1 + rng.below(16)).min(body.len());
            body.drain(at..end);
        }
        _ => {
            let len = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            body.splice(at..at, bytes);
        }
    }
}

/// `body` behind a valid header: magic and version of `template`, true length and CRC-32.
fn reframe(template: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = template[..12].to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Caps this process's address space, so that a loader asking for gigabytes aborts the test
/// instead of succeeding on a machine with memory to spare.
fn cap_address_space(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
}

struct Tally {
    errors: usize,
    loaded: usize,
    panics: Vec<String>,
}

fn attack(name: &str, ckpt: &Checkpoint, mutants: usize, seed: u64) -> Tally {
    let good = encode(ckpt).unwrap();
    let mut rng = Rng(seed);
    let mut tally = Tally {
        errors: 0,
        loaded: 0,
        panics: Vec::new(),
    };
    for m in 0..mutants {
        let mut body = good[HEADER_LEN..].to_vec();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut body, &mut rng);
        }
        let bytes = reframe(&good, &body);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            decode(Path::new("crafted.nnmpi"), &bytes).map(|c| c.model.validate())
        }));
        match outcome {
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("checkpoint crafted.nnmpi:"),
                    "{name} mutant {m}: the error does not name the file: {msg}"
                );
                tally.errors += 1;
            }
            Ok(Ok(Ok(()))) => tally.loaded += 1,
            Ok(Ok(Err(e))) => panic!("{name} mutant {m} loaded but does not validate: {e}"),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tally.panics.push(format!("{name} mutant {m}: {msg}"));
            }
        }
    }
    tally
}

#[test]
fn crafted_checkpoints_are_clean_errors_or_valid_models() {
    cap_address_space(2 << 30);
    let mutants = std::env::var("NNMPI_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    // Quiet the default hook: a panic is recorded and reported below, not printed each time.
    std::panic::set_hook(Box::new(|_| {}));
    let mut panics = Vec::new();
    let mut total = (0, 0);
    for (name, ckpt, seed) in [
        ("dense", dense_checkpoint(), 0x5EED_0001),
        ("sparse", sparse_checkpoint(), 0x5EED_0002),
    ] {
        let t = attack(name, &ckpt, mutants, seed);
        total.0 += t.errors;
        total.1 += t.loaded;
        panics.extend(t.panics);
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "{} mutants: {} clean errors, {} loaded and validated, {} panics",
        2 * mutants,
        total.0,
        total.1,
        panics.len()
    );
    assert!(panics.is_empty(), "{} panics: {:#?}", panics.len(), panics);
}
