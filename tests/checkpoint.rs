//! Checkpoints: exact round trip, exact resume, and clear errors on damaged or crafted files.

use nnmpi::data::{Dataset, NormKind, Normalizer, Targets};
use nnmpi::io::{Checkpoint, TrainingCheckpoint, decode, encode, load, save};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init, Model, Network, Task, UniformStream};
use nnmpi::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer};
use std::path::Path;

fn data() -> Dataset {
    let mut rng = UniformStream::new(3, 0);
    let n = 64;
    let features = ndarray::Array2::from_shape_fn((5, n), |_| rng.next_unit());
    let labels = (0..n)
        .map(|s| u32::from(features[[0, s]] + features[[1, s]] > 1.0))
        .collect();
    Dataset {
        features: features.into(),
        targets: Targets::Classes(labels),
        classes: vec!["no".into(), "yes".into()],
        origin: "synthetic".into(),
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        loss: Loss::BinaryCrossEntropy,
        optimizer: OptimizerConfig::adam(0.01),
        seed: 7,
        patience: None,
        shuffle: true,
    }
}

fn network() -> Network {
    Network::new(
        &[5, 8, 1],
        Activation::Tanh,
        Activation::Sigmoid,
        Init::Xavier,
        1,
    )
    .unwrap()
}

fn checkpoint_of(trainer: &Trainer, data: &Dataset) -> Checkpoint {
    Checkpoint {
        model: Model {
            network: trainer.network().clone(),
            normalizer: Normalizer::fit_dataset(NormKind::ZScore, data, &nnmpi::cluster::SelfComm)
                .unwrap(),
            task: Task::Classification {
                classes: data.classes.clone(),
            },
        },
        training: Some(TrainingCheckpoint {
            config: trainer.config().clone(),
            validation_split: 0.0,
            state: trainer.state(),
        }),
    }
}

#[test]
fn round_trip_is_exact() {
    let d = data();
    let mut t = Trainer::new(network(), config(3), Par::Seq).unwrap();
    t.fit(&d, None, &mut Silent).unwrap();
    let ckpt = checkpoint_of(&t, &d);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nnmpi");
    save(&path, &ckpt).unwrap();
    assert_eq!(load(&path).unwrap(), ckpt);
}

#[test]
fn resume_after_k_epochs_is_bit_identical() {
    let d = data();
    let mut straight = Trainer::new(network(), config(6), Par::Seq).unwrap();
    straight.fit(&d, None, &mut Silent).unwrap();

    let mut first = Trainer::new(network(), config(6), Par::Seq).unwrap();
    for _ in 0..2 {
        first.run_epoch(&d, &mut Silent).unwrap();
    }
    let bytes = encode(&checkpoint_of(&first, &d)).unwrap();
    drop(first);
    let back = decode(Path::new("mem"), &bytes).unwrap();
    let training = back.training.unwrap();
    let mut resumed = Trainer::resume(
        back.model.network,
        training.config,
        training.state,
        Par::Seq,
    )
    .unwrap();
    resumed.fit(&d, None, &mut Silent).unwrap();
    assert_eq!(resumed.epoch(), 6);
    assert_eq!(resumed.network(), straight.network());
}

fn valid_bytes() -> Vec<u8> {
    let d = data();
    let t = Trainer::new(network(), config(1), Par::Seq).unwrap();
    encode(&checkpoint_of(&t, &d)).unwrap()
}

fn error_of(bytes: &[u8]) -> String {
    decode(Path::new("bad.nnmpi"), bytes)
        .unwrap_err()
        .to_string()
}

#[test]
fn truncated_file_is_a_clear_error() {
    let bytes = valid_bytes();
    for cut in [0, 10, 23, 24, bytes.len() / 2, bytes.len() - 1] {
        let err = error_of(&bytes[..cut]);
        assert!(
            err.contains("bad.nnmpi") && (err.contains("truncated") || err.contains("too short")),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn bit_flips_anywhere_are_detected() {
    let bytes = valid_bytes();
    for pos in (0..bytes.len())
        .step_by(97)
        .chain([8, 12, 20, bytes.len() - 1])
    {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        let err = error_of(&b);
        assert!(
            err.starts_with("checkpoint bad.nnmpi:"),
            "flip at {pos}: {err}"
        );
    }
}

#[test]
fn huge_length_fields_are_rejected_without_allocating() {
    let bytes = valid_bytes();
    // The header's payload length.
    let mut b = bytes.clone();
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        error_of(&b).contains("exceeds the limit"),
        "{}",
        error_of(&b)
    );
    // A vector length inside the payload, with a recomputed checksum (a crafted file): the
    // writer string's length is the payload's first varint; 0xFD = u64 length follows.
    let mut body = bytes[24..].to_vec();
    let mut crafted = vec![0xFD];
    crafted.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    body.splice(0..1, crafted);
    let mut b = bytes[..24].to_vec();
    b[12..20].copy_from_slice(&(body.len() as u64).to_le_bytes());
    b[20..24].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    b.extend_from_slice(&body);
    let err = error_of(&b);
    assert!(err.contains("cannot decode payload"), "{err}");
}

#[test]
fn inconsistent_shapes_in_a_crafted_file_are_rejected() {
    // A layer whose declared shape does not match its weights, with a valid checksum.
    let net = network();
    let ckpt = Checkpoint {
        model: Model {
            network: net.clone(),
            normalizer: Normalizer::identity(),
            task: Task::Regression,
        },
        training: None,
    };
    let good = encode(&ckpt).unwrap();
    assert!(decode(Path::new("x"), &good).is_ok());
    // Change the first layer's declared output count (varint right after the writer string).
    let body = &good[24..];
    let writer_len = body[0] as usize;
    let layer_count_at = 1 + writer_len;
    let outputs_at = layer_count_at + 1;
    let mut body = body.to_vec();
    assert_eq!(body[outputs_at], 8);
    body[outputs_at] = 9;
    let mut b = good[..24].to_vec();
    b[20..24].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    b.extend_from_slice(&body);
    let err = decode(Path::new("x"), &b).unwrap_err().to_string();
    assert!(err.contains("do not fit its shape 9x5"), "{err}");
}

#[test]
fn a_model_with_non_finite_weights_is_refused() {
    let bytes = valid_bytes();
    let ckpt = decode(Path::new("x"), &bytes).unwrap();
    // Overwrite the first weight's bytes in the payload with a NaN, re-framed validly.
    let first = ckpt.model.network.layers()[0].weight_slice()[0].to_le_bytes();
    let mut body = bytes[24..].to_vec();
    let at = body
        .windows(4)
        .position(|w| w == first)
        .expect("the first weight is in the payload");
    body[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut b = bytes[..24].to_vec();
    b[20..24].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    b.extend_from_slice(&body);
    let err = error_of(&b);
    assert!(
        err.contains("layer 1 has 1 weights and 0 biases that are NaN or infinite"),
        "{err}"
    );
    // Nor is one written.
    let mut bad = ckpt.clone();
    bad.model.network.layers_mut()[1].bias_mut()[0] = f32::INFINITY;
    assert!(encode(&bad).is_err());
}

#[test]
fn a_version_2_file_from_before_the_record_types_reads_with_the_same_meaning() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let ckpt = load(&dir.join("v2-sonar-sparse-adam.nnmpi")).expect("the old file loads");
    let net = &ckpt.model.network;
    assert_eq!(net.sizes(), vec![60, 8, 1]);
    assert_eq!(net.layers()[0].activation(), Activation::LeakyRelu(0.1));
    assert_eq!(net.output_activation(), Activation::Sigmoid);
    assert!(net.layers()[0].weights().is_sparse());
    assert_eq!(ckpt.model.normalizer.kind(), NormKind::ZScore);
    assert_eq!(
        ckpt.model.task,
        Task::Classification {
            classes: vec!["M".into(), "R".into()]
        }
    );
    let training = ckpt.training.expect("training state");
    assert_eq!(training.state.epoch, 7);
    assert_eq!(training.config.loss, Loss::BinaryCrossEntropy);
    assert_eq!(training.config.patience, Some(3));
    assert!(matches!(training.config.optimizer, OptimizerConfig::Adam { lr, .. } if lr == 0.001));
    // And it predicts what it predicted then (the CSV holds 6 decimals).
    let sonar = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sonar.csv");
    let mut data = nnmpi::data::load_csv(&sonar, &Default::default()).unwrap();
    data.normalize(&ckpt.model.normalizer).unwrap();
    let mut engine = nnmpi::exec::Engine::new(ckpt.model.network.clone(), Par::Seq);
    let x = data.features.to_resident().unwrap();
    let p = engine.forward(x.as_slice().unwrap(), data.len()).to_vec();
    let then = std::fs::read_to_string(dir.join("v2-sonar-predictions.csv")).unwrap();
    for (i, line) in then.lines().skip(1).enumerate() {
        let p_r: f32 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert!((p[i] - p_r).abs() < 1e-6, "sample {i}: {} then {p_r}", p[i]);
    }
}
