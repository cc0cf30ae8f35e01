//! The README's accuracy claims, run as tests: Sonar 5-fold cross-validation (bundled data),
//! dense and pruned to 90%, and MNIST (../shared/data, skipped with a message when it is absent).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn run(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_nnmpi"))
        .args(args)
        .output()
        .expect("run nnmpi");
    assert!(
        o.status.success(),
        "nnmpi {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn percent_after(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' in {text}"));
    let after = &line[prefix.len()..];
    after
        .trim()
        .split('%')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn sonar_five_fold_accuracy_is_at_least_80_percent() {
    let data = format!("{}/data/sonar.csv", env!("CARGO_MANIFEST_DIR"));
    let out = run(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "60",
        "--normalize",
        "zscore",
        "--epochs",
        "100",
        "--kfold",
        "5",
    ]);
    let acc = percent_after(&out, "5-fold accuracy:");
    assert!(acc >= 80.0, "Sonar 5-fold accuracy {acc}%:\n{out}");
}

#[test]
fn sonar_pruned_to_90_percent_loses_at_most_2_points() {
    // Every fold trains the dense network, tests it, prunes it to 90% of its connections in
    // 10 steps with 50 epochs of fine-tuning each (mask held), and tests it again.
    let data = format!("{}/data/sonar.csv", env!("CARGO_MANIFEST_DIR"));
    let out = run(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "60",
        "--normalize",
        "zscore",
        "--epochs",
        "100",
        "--kfold",
        "5",
        "--prune-to",
        "0.9",
        "--prune-steps",
        "10",
        "--finetune-epochs",
        "50",
        "--prune-scope",
        "global",
    ]);
    let dense = percent_after(&out, "5-fold accuracy:");
    let pruned = percent_after(&out, "5-fold accuracy after pruning to 90% sparsity:");
    assert!(
        pruned >= dense - 2.0,
        "dense {dense}%, pruned {pruned}%:\n{out}"
    );
}

fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.join("t10k-images-idx3-ubyte.gz").exists() {
        Some(p)
    } else {
        // Written to the stderr handle itself, which the test harness does not capture, so
        // the skip shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: ../shared/data/t10k-images-idx3-ubyte.gz is absent (the MNIST tests need ../shared beside the repository)"
        );
        None
    }
}

#[test]
fn mnist_idx_loader_reads_the_test_set() {
    let Some(dir) = shared_data() else { return };
    let d = nnmpi::data::load_idx(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        Some(&dir.join("t10k-labels-idx1-ubyte.gz")),
    )
    .unwrap();
    assert_eq!((d.n_features(), d.len()), (784, 10000));
    assert_eq!(
        d.classes,
        (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
    );
    let nnmpi::data::Targets::Classes(ids) = &d.targets else {
        panic!("labels expected")
    };
    let count = |c: u32| ids.iter().filter(|&&i| i == c).count();
    assert_eq!((count(0), count(1), count(9)), (980, 1135, 1009)); // the published counts
    assert!(
        d.features
            .resident()
            .unwrap()
            .iter()
            .all(|&p| (0.0..=255.0).contains(&p))
    );
}

#[test]
fn mnist_8000_train_2000_test_reaches_95_percent() {
    let Some(dir) = shared_data() else { return };
    let (images, labels) = (
        dir.join("t10k-images-idx3-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte.gz"),
    );
    let (images, labels) = (images.to_str().unwrap(), labels.to_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mnist.nnmpi");
    let m = model.to_str().unwrap();
    run(&[
        "train", "--data", images, "--labels", labels, "--rows", "0:8000", "--hidden", "256",
        "--epochs", "20", "--out", m, "--quiet",
    ]);
    let out = run(&[
        "eval",
        "--model",
        m,
        "--data",
        images,
        "--labels",
        labels,
        "--rows",
        "8000:10000",
    ]);
    let acc = percent_after(&out, "accuracy");
    assert!(acc >= 95.0, "MNIST held-out accuracy {acc}%:\n{out}");
}
