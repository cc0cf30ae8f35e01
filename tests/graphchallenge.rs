//! The GraphChallenge sparse DNN (../shared/data/graphchallenge, skipped with a message when
//! it is absent): the challenge's 1024-neuron network on its first 1200 inputs gives exactly
//! the truth's categories, through the library and through `nnmpi sdnn`, and the inference by
//! distinct columns equals the plain forward pass.

use nnmpi::cluster::SelfComm;
use nnmpi::exec::{Distinct, Engine, forward_distinct, nonzero_samples_dealt};
use nnmpi::io::challenge::{read_inputs, read_network, read_truth};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Network};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn challenge() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/graphchallenge");
    if p.join("neuron1024/n1024-l120.tsv.gz").exists() {
        Some(p)
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: ../shared/data/graphchallenge is absent (the GraphChallenge tests need ../shared beside the repository)"
        );
        None
    }
}

fn network(dir: &std::path::Path, layers: usize) -> Network {
    read_network(
        &dir.join("neuron1024"),
        1024,
        layers,
        -0.3,
        Activation::CappedRelu(32.0),
        Par::current_pool(),
    )
    .unwrap()
}

#[test]
fn the_subset_gives_the_truth_after_14_and_after_120_layers() {
    let Some(dir) = challenge() else { return };
    let inputs = read_inputs(&dir.join("sparse-images-1024_subset.mtx.gz"), 1024).unwrap();
    assert_eq!((inputs.len(), inputs.value.len()), (1200, 122713));
    let truth = read_truth(&dir.join("neuron1024-l120-categories_subset.mtx.gz")).unwrap();
    assert_eq!(truth.len(), 19);
    // The full list of 60000 inputs' categories agrees on the first 1200.
    let all = read_truth(&dir.join("neuron1024-l120-categories.tsv")).unwrap();
    assert_eq!(
        all.iter()
            .copied()
            .filter(|&s| s < 1200)
            .collect::<Vec<_>>(),
        truth
    );
    for layers in [14, 120] {
        let net = network(&dir, layers);
        let (found, per_layer) = nonzero_samples_dealt(
            &SelfComm,
            &SelfComm,
            &Distinct::new(&net, Par::current_pool()),
            &inputs,
            Par::current_pool(),
        );
        assert_eq!(found, truth, "{layers} layers");
        assert_eq!(per_layer.len(), layers);
    }
}

#[test]
fn distinct_columns_equal_the_plain_forward_pass_on_the_challenge_network() {
    let Some(dir) = challenge() else { return };
    let net = network(&dir, 6);
    let inputs = read_inputs(&dir.join("sparse-images-1024_subset.mtx.gz"), 1024).unwrap();
    let which: Vec<usize> = (0..300).collect();
    let by_sample = inputs.dense_rows(&which);
    let by_feature: Vec<f32> = (0..1024 * 300)
        .map(|k| by_sample[(k % 300) * 1024 + k / 300])
        .collect();
    let want = Engine::new(net.clone(), Par::Seq)
        .forward(&by_feature, 300)
        .to_vec();
    let got = forward_distinct(&net, by_sample, 300, Par::current_pool());
    // Equal as numbers (a sum that is exactly zero may differ in its sign).
    assert_eq!(got.expand(), want);
}

#[test]
fn nnmpi_sdnn_passes_on_14_layers_and_saves_a_checkpoint() {
    let Some(dir) = challenge() else { return };
    let tmp = std::env::temp_dir().join(format!("nnmpi-sdnn-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let saved = tmp.join("n1024-l14.nnmpi");
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let o = Command::new(env!("CARGO_BIN_EXE_nnmpi"))
        .args([
            "sdnn",
            "--weights",
            &d("neuron1024"),
            "--neurons",
            "1024",
            "--layers",
            "14",
        ])
        .args(["--inputs", &d("sparse-images-1024_subset.mtx.gz")])
        .args([
            "--truth",
            &d("neuron1024-l120-categories_subset.mtx.gz"),
            "--json",
        ])
        .args(["--save", saved.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("\"categories\":19") && out.contains("\"pass\":true"),
        "{out}"
    );
    assert!(out.contains("\"edges\":458752"), "{out}");
    // The saved checkpoint runs the same way, and is compact.
    // (at most 8 bytes a connection; dense, a layer alone is 4 MiB)
    assert!(std::fs::metadata(&saved).unwrap().len() < 14 * 32768 * 8);
    let o = Command::new(env!("CARGO_BIN_EXE_nnmpi"))
        .args(["sdnn", "--model", saved.to_str().unwrap()])
        .args(["--inputs", &d("sparse-images-1024_subset.mtx.gz")])
        .args(["--truth", &d("neuron1024-l120-categories_subset.mtx.gz")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("categories: 19 - PASS"),
        "{out}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
