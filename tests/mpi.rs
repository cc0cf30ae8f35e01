//! The engine under real `mpirun` (1 to 4 ranks, oversubscribed on a small machine): forward
//! passes give the same bits as one process, training agrees with one process to a stated
//! tolerance in model, data and grid modes, checkpoints move between rank counts, and an error
//! on one rank ends the whole job promptly.
#![cfg(feature = "mpi")]

use nnmpi::data::Normalizer;
use nnmpi::io::{Checkpoint, load, save};
use nnmpi::model::{Activation, Init, Model, Network, Task};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NNMPI: &str = env!("CARGO_BIN_EXE_nnmpi");

/// Largest difference allowed between a weight trained on several ranks and on one: the
/// ranks sum the same products in another order (reduce-scatter, all-reduce), so the f32
/// results differ in the last bits (measured: at most 3e-8 after these 3 epochs of Adam).
const TRAIN_TOLERANCE: f32 = 1e-5;

fn mpirun_flavour() -> &'static str {
    let out = Command::new("mpirun")
        .arg("--version")
        .output()
        .expect("mpirun is not on PATH: the mpi feature needs an MPI installation (scripts/install-deps.sh)");
    if String::from_utf8_lossy(&out.stdout).contains("Open MPI") {
        "openmpi"
    } else {
        "other"
    }
}

/// `mpirun -np <ranks> nnmpi <args>`; Open MPI may oversubscribe and run as root (CI).
fn mpirun_command(ranks: usize, args: &[&str]) -> Command {
    mpirun_with(&[], ranks, args)
}

/// `mpirun <launcher options> -np <ranks> nnmpi <args>`.
fn mpirun_with(options: &[&str], ranks: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(options);
    if mpirun_flavour() == "openmpi" {
        cmd.args(["--oversubscribe", "--bind-to", "none"]);
    }
    cmd.args(["-np", &ranks.to_string(), NNMPI])
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd
}

/// Runs nnmpi on `ranks` ranks (0 = one plain process without mpirun) and expects success.
fn run(ranks: usize, args: &[&str]) -> String {
    let cmd = if ranks == 0 {
        let mut cmd = Command::new(NNMPI);
        cmd.args(args).env("RAYON_NUM_THREADS", "1");
        cmd
    } else {
        mpirun_command(ranks, args)
    };
    // A mismatched collective hangs: fail the test instead of the whole CI run.
    let (out, in_time) = run_with_limit(cmd, Duration::from_secs(300));
    assert!(
        in_time,
        "nnmpi {args:?} on {ranks} ranks hung for 5 minutes"
    );
    assert!(
        out.status.success(),
        "nnmpi {args:?} on {ranks} ranks failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A random model of layer sizes `sizes` saved at `path`, with a CSV of `samples` unlabelled
/// inputs beside it.
fn model_and_inputs(
    dir: &Path,
    sizes: &[usize],
    hidden: Activation,
    samples: usize,
) -> (PathBuf, PathBuf) {
    let outputs = *sizes.last().unwrap();
    let output = if outputs == 1 {
        Activation::Sigmoid
    } else {
        Activation::Softmax
    };
    let network = Network::new(sizes, hidden, output, Init::Xavier, sizes.len() as u64).unwrap();
    let classes = (0..outputs.max(2)).map(|c| format!("c{c}")).collect();
    let model = Model {
        network,
        normalizer: Normalizer::identity(),
        task: Task::Classification { classes },
    };
    let name = sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("-");
    let path = dir.join(format!("{name}.nnmpi"));
    save(
        &path,
        &Checkpoint {
            model,
            training: None,
        },
    )
    .unwrap();
    let mut csv = String::new();
    for s in 0..samples {
        let row: Vec<String> = (0..sizes[0])
            .map(|f| format!("{:.4}", ((s * 31 + f * 17) % 101) as f32 / 50.0 - 1.0))
            .collect();
        csv += &row.join(",");
        csv += "\n";
    }
    let data = dir.join(format!("{name}.csv"));
    std::fs::write(&data, csv).unwrap();
    (path, data)
}

fn predict(ranks: usize, model: &Path, data: &Path, extra: &[&str]) -> String {
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let mut args = vec!["predict", "--model", m, "--data", d, "--exact"];
    if !extra.contains(&"--label-col") {
        args.extend(["--label-col", "none"]);
    }
    args.extend_from_slice(extra);
    run(ranks, &args)
}

#[test]
fn predictions_are_bit_identical_on_1_to_4_ranks() {
    let dir = tempfile::tempdir().unwrap();
    // The seed's 60-3-1 (fewer neurons than ranks), a 1-neuron hidden layer, a softmax output,
    // inputs wider than the 512-deep GEMM slices, and a deeper tanh network.
    let shapes: [(&[usize], Activation); 5] = [
        (&[60, 3, 1], Activation::Sigmoid),
        (&[7, 1, 5, 3], Activation::Relu),
        (&[600, 33, 4], Activation::Relu),
        (&[20, 64, 48, 2], Activation::Tanh),
        (&[9, 130, 1], Activation::LeakyRelu(0.01)),
    ];
    for (sizes, act) in shapes {
        let (model, data) = model_and_inputs(dir.path(), sizes, act, 37);
        let reference = predict(0, &model, &data, &["--batch-size", "16"]);
        assert_eq!(reference.lines().count(), 38, "{reference}");
        for ranks in 1..=4 {
            let got = predict(ranks, &model, &data, &["--batch-size", "16"]);
            assert_eq!(got, reference, "{sizes:?} on {ranks} ranks");
        }
        // Rows shared between data-parallel groups, alone and in a 2x2 grid.
        assert_eq!(
            predict(3, &model, &data, &["--parallel", "data"]),
            reference,
            "{sizes:?} data"
        );
        assert_eq!(
            predict(4, &model, &data, &["--grid", "2x2"]),
            reference,
            "{sizes:?} 2x2"
        );
    }
}

fn sonar() -> String {
    format!("{}/data/sonar.csv", env!("CARGO_MANIFEST_DIR"))
}

fn train(ranks: usize, out: &Path, extra: &[&str]) -> Network {
    let data = sonar();
    let mut args = vec![
        "train",
        "--data",
        &data,
        "--batch-size",
        "16",
        "--val-split",
        "0.2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "3"]);
    }
    if !extra.contains(&"--hidden") {
        args.extend(["--hidden", "24,10"]);
    }
    args.extend_from_slice(extra);
    run(ranks, &args);
    load(out).unwrap().model.network
}

fn max_difference(a: &Network, b: &Network) -> f32 {
    assert_eq!(a.sizes(), b.sizes());
    a.layers()
        .iter()
        .zip(b.layers())
        .flat_map(|(x, y)| {
            let w = x.weight_slice().iter().zip(y.weight_slice());
            w.chain(x.bias().iter().zip(y.bias()))
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

#[test]
fn training_on_several_ranks_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let reference = train(0, &dir.path().join("one.nnmpi"), &[]);
    let runs: [(usize, &[&str]); 5] = [
        (2, &["--parallel", "model"]),
        (3, &[]),
        (2, &["--parallel", "data"]),
        (3, &["--parallel", "data"]),
        (4, &["--grid", "2x2"]),
    ];
    for (ranks, flags) in runs {
        let path = dir.path().join(format!("r{ranks}{}.nnmpi", flags.join("")));
        let got = train(ranks, &path, flags);
        let diff = max_difference(&got, &reference);
        eprintln!("{ranks} ranks {flags:?}: largest weight difference {diff:e}");
        assert!(diff <= TRAIN_TOLERANCE, "{ranks} ranks {flags:?}: {diff}");
        assert!(
            got != Network::new(
                &[60, 24, 10, 1],
                Activation::Relu,
                Activation::Sigmoid,
                Init::He,
                42
            )
            .unwrap()
        );
    }
}

#[test]
fn a_data_parallel_model_summing_its_gradients_during_the_backward_pass_matches_one_process() {
    // 60-512-512-1 holds 294,000 gradients: over the size from which the data groups sum them
    // on the main thread while a second one runs the backward pass (MPI called from the main
    // thread only).
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--hidden", "512,512", "--epochs", "1"];
    let reference = train(0, &dir.path().join("one.nnmpi"), &flags);
    for ranks in [2, 3] {
        let path = dir.path().join(format!("{ranks}.nnmpi"));
        let got = train(
            ranks,
            &path,
            &[&flags[..], &["--parallel", "data"]].concat(),
        );
        let diff = max_difference(&got, &reference);
        eprintln!("{ranks} data-parallel ranks: largest weight difference {diff:e}");
        assert!(diff <= TRAIN_TOLERANCE, "{ranks} ranks: {diff}");
    }
}

#[test]
fn gelu_and_silu_train_alike_on_one_and_three_ranks() {
    // Their backward pass reads the pre-activations each rank keeps for its own rows.
    let dir = tempfile::tempdir().unwrap();
    for act in ["gelu", "silu"] {
        let flags = ["--activation", act];
        let one = train(0, &dir.path().join(format!("{act}1.nnmpi")), &flags);
        let three = train(3, &dir.path().join(format!("{act}3.nnmpi")), &flags);
        let diff = max_difference(&one, &three);
        assert!(diff <= TRAIN_TOLERANCE, "{act}: {diff}");
    }
}

#[test]
fn a_checkpoint_from_3_ranks_loads_and_predicts_alike_on_1_and_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.nnmpi");
    train(3, &path, &[]);
    let data = PathBuf::from(sonar());
    let on_three = predict(3, &path, &data, &["--label-col", "last"]);
    for ranks in [0, 1, 2] {
        assert_eq!(
            predict(ranks, &path, &data, &["--label-col", "last"]),
            on_three,
            "{ranks} ranks"
        );
    }
    // And a 3-rank run resumes on 2 ranks.
    let out = path.to_str().unwrap();
    run(
        2,
        &[
            "train",
            "--resume",
            out,
            "--data",
            &sonar(),
            "--epochs",
            "4",
            "--out",
            out,
            "--quiet",
        ],
    );
    assert!(run(0, &["info", "--model", out]).contains("4 of 4 epochs"));
}

/// Runs `cmd` and kills it if it has not ended after `limit`; returns its output and whether
/// it ended in time.
fn run_with_limit(mut cmd: Command, limit: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mpirun");
    let start = Instant::now();
    let in_time = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (child.wait_with_output().unwrap(), in_time)
}

#[test]
fn an_error_on_one_rank_ends_the_job_within_10_seconds() {
    let limit = Duration::from_secs(10);
    // Rank 0 cannot read the data: the other ranks are waiting for it.
    let (out, in_time) = run_with_limit(
        mpirun_command(3, &["train", "--data", "/nonexistent/data.csv"]),
        limit,
    );
    assert!(in_time, "the job hung");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/data.csv"));

    // Rank 2 of 3 is given other flags (an MPMD launch): it must fail, not hang the others
    // in mismatched collectives.
    let data = sonar();
    let mut cmd = mpirun_command(2, &["train", "--data", &data, "--epochs", "500"]);
    cmd.args([
        ":", "-np", "1", NNMPI, "train", "--data", &data, "--epochs", "5",
    ]);
    let (out, in_time) = run_with_limit(cmd, limit);
    assert!(in_time, "the job hung");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: rank 2 of 3 started with other arguments than rank 0")
            && !err.contains("error on rank"),
        "{err}"
    );
}

/// The process id of rank `rank` among the children of mpirun `parent` (its environment
/// says which rank it is).
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().find_map(|pid| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        env.split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
            .then(|| pid.parse().ok())?
    })
}

#[test]
fn a_stopped_rank_ends_the_job_through_the_stall_watchdog() {
    if mpirun_flavour() != "openmpi" {
        eprintln!("skipped: finding rank 1's process needs Open MPI's environment variables");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.csv");
    let data = sonar();
    let args = [
        "train",
        "--data",
        &data,
        "--epochs",
        "10000000",
        "--quiet",
        "--stall-timeout",
        "3",
        "--log",
        log.to_str().unwrap(),
    ];
    let mut child = mpirun_command(3, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |l| l.lines().count()) < 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "no epochs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rank_pid(child.id(), 1).expect("rank 1 among mpirun's children");
    let stopped = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
            panic!("the job still ran 60 s after rank 1 stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = stopped.elapsed();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The timeout (3 s) + 10 s, as the issue asks.
    assert!(took < Duration::from_secs(13), "{took:?}\n{err}");
    assert_eq!(out.status.code(), Some(124), "{err}");
    // One message, from rank 0 (the lowest rank that waits), naming the stopped rank.
    let verdicts: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(verdicts.len(), 1, "{err}");
    let verdict = verdicts[0];
    assert!(
        verdict.starts_with("error: rank 1 of 3 (on ")
            && verdict.contains(") does not answer: stopped, stuck or cut off from the network; ranks 0, 2 of 3 waited ")
            && verdict.contains(" values (training, epoch ")
            && verdict.ends_with("the stall timeout is 3 s: --stall-timeout)"),
        "{err}"
    );
}

#[test]
fn a_panic_on_one_rank_ends_the_job_within_10_seconds() {
    // Rank 1 of 3 panics (a test-only hook) while ranks 0 and 2 go on into training and wait
    // for it in a collective. Unwinding into MPI_Finalize used to hang the job for ever.
    let data = sonar();
    for _ in 0..3 {
        let mut cmd = mpirun_command(3, &["train", "--data", &data, "--epochs", "3"]);
        cmd.env("NNMPI_INJECT_PANIC", "1")
            .env("RUST_BACKTRACE", "0");
        let (out, in_time) = run_with_limit(cmd, Duration::from_secs(10));
        assert!(in_time, "the job hung after a panic on rank 1");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("injected panic on rank 1") && err.contains("ending the whole MPI job"),
            "{err}"
        );
    }
}

#[test]
fn a_network_too_big_for_the_node_ends_every_rank_with_the_memory_it_needs() {
    let data = sonar();
    let (out, in_time) = run_with_limit(
        mpirun_command(2, &["train", "--data", &data, "--hidden", "100000,100000"]),
        Duration::from_secs(30),
    );
    assert!(in_time, "the job hung");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("per rank, 2 ranks on this node"), "{err}");
}

#[test]
fn info_prints_the_plan_for_any_number_of_ranks() {
    let text = run(
        0,
        &[
            "info",
            "--layers",
            "10,5,1",
            "--ranks",
            "4",
            "--batch-size",
            "2",
        ],
    );
    // 5 neurons over 4 ranks: 2,1,1,1; the output neuron on rank 0.
    let rank_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert_eq!(rank_rows.len(), 4, "{text}");
    assert!(
        rank_rows[0].split_whitespace().take(3).eq(["0", "3", "28"]),
        "{text}"
    );
    assert!(
        rank_rows[3].split_whitespace().take(3).eq(["3", "1", "11"]),
        "{text}"
    );
}

#[test]
fn cross_validation_and_early_stopping_report_alike_on_two_ranks() {
    let data = sonar();
    let kfold = [
        "train", "--data", &data, "--hidden", "12", "--epochs", "4", "--kfold", "3",
    ];
    let last_line = |text: String| text.lines().last().unwrap_or_default().to_owned();
    let one = last_line(run(0, &kfold));
    assert!(one.starts_with("3-fold accuracy"), "{one}");
    assert_eq!(last_line(run(2, &kfold)), one);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("early.nnmpi");
    let early = [
        "--epochs",
        "40",
        "--patience",
        "2",
        "--lr",
        "0.05",
        "--checkpoint-every",
        "1",
    ];
    let single = train(0, &out, &early);
    let single_info = run(0, &["info", "--model", out.to_str().unwrap()]);
    let pair = train(2, &out, &[&early[..], &["--parallel", "data"]].concat());
    let pair_info = run(0, &["info", "--model", out.to_str().unwrap()]);
    assert!(max_difference(&single, &pair) <= TRAIN_TOLERANCE);
    let epochs = |info: &str| {
        info.lines()
            .find(|l| l.starts_with("training:"))
            .map(str::to_owned)
    };
    assert_eq!(
        epochs(&pair_info),
        epochs(&single_info),
        "early stopping stopped elsewhere"
    );
    assert!(
        !single_info.contains("40 of 40"),
        "no early stop happened: {single_info}"
    );
}

#[test]
fn the_localhost_hostfile_runs_a_json_bench() {
    let hostfile = format!("{}/hostfiles/localhost", env!("CARGO_MANIFEST_DIR"));
    let bench = [
        "bench", "--layers", "64,32,8", "--batch", "8", "--reps", "3", "--json", "--mode", "train",
    ];
    let out = mpirun_with(&["--hostfile", &hostfile], 2, &bench)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(json["ranks"], 2, "{json}");
    assert_eq!(json["grid"], "1x2", "{json}");
    let share = json["comm_share"].as_f64().expect("a comm_share field");
    assert!((0.0..=1.0).contains(&share), "{json}");
}

/// A 400-256-10 model whose first layer is pruned unevenly: neurons 0..128 keep 1% of their
/// connections, neurons 128..256 keep 50%.
fn unevenly_pruned(dir: &Path) -> (PathBuf, PathBuf) {
    use nnmpi::model::{Layer, Weights};
    use nnmpi::sparse::Csr;
    let (model, data) = model_and_inputs(dir, &[400, 256, 10], Activation::Relu, 21);
    let mut ckpt = load(&model).unwrap();
    let net = &ckpt.model.network;
    let first = &net.layers()[0];
    let csr = Csr::from_dense_where(first.weight_slice(), 256, 400, |k, _| {
        let (row, col) = (k / 400, k % 400);
        if row < 128 {
            col % 100 == 0
        } else {
            col % 2 == 0
        }
    });
    let bias = ndarray::Array1::from(first.bias().to_vec());
    let sparse = Layer::from_weights(Weights::Sparse(csr), bias, Activation::Relu).unwrap();
    ckpt.model.network = Network::from_layers(vec![sparse, net.layers()[1].clone()]).unwrap();
    save(&model, &ckpt).unwrap();
    (model, data)
}

#[test]
fn sparse_predictions_are_bit_identical_and_shards_balance_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = unevenly_pruned(dir.path());
    let reference = predict(0, &model, &data, &["--batch-size", "8"]);
    for ranks in 1..=4 {
        assert_eq!(
            predict(ranks, &model, &data, &["--batch-size", "8"]),
            reference,
            "{ranks} ranks"
        );
    }
    let info = run(
        0,
        &["info", "--model", model.to_str().unwrap(), "--ranks", "4"],
    );
    let line = info
        .lines()
        .find(|l| l.starts_with("sparse layer 0"))
        .unwrap_or_else(|| panic!("no balance line in {info}"));
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // [balance split by connections, split by neuron counts]
    let (balanced, even) = (numbers[0], numbers[1]);
    eprintln!("{line}");
    assert!(balanced <= 1.05, "{line}");
    assert!(even > 1.5, "{line}");
}

#[test]
fn pruning_on_several_ranks_gives_the_mask_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = model_and_inputs(dir.path(), &[60, 37, 20, 3], Activation::Tanh, 5);
    let m = model.to_str().unwrap();
    let prune = |ranks: usize, scope: &str, block: &str, name: &str| -> Network {
        let out = dir.path().join(name);
        run(
            ranks,
            &[
                "prune",
                "--model",
                m,
                "--out",
                out.to_str().unwrap(),
                "--sparsity",
                "0.9",
                "--scope",
                scope,
                "--block",
                block,
                "--format",
                "sparse",
            ],
        );
        load(&out).unwrap().model.network
    };
    // Blocks of 3 and 4 rows straddle the shards (37 and 20 rows over 2 and 3 ranks).
    for (scope, block) in [("global", "1"), ("layer", "4"), ("global", "3")] {
        let one = prune(0, scope, block, "one-blocks.nnmpi");
        for ranks in [2, 3] {
            assert_eq!(
                prune(ranks, scope, block, "many.nnmpi"),
                one,
                "{scope}, blocks of {block}, on {ranks} ranks"
            );
        }
    }
    let one = prune(0, "layer", "1", "one.nnmpi");
    for ranks in [2, 3] {
        assert_eq!(
            prune(ranks, "layer", "1", "many.nnmpi"),
            one,
            "layer on {ranks} ranks"
        );
    }
    // Fine-tuning a pruned model on 2 ranks keeps its mask and agrees with one process.
    let pruned = dir.path().join("pruned.nnmpi");
    std::fs::copy(dir.path().join("one.nnmpi"), &pruned).unwrap();
    let csv = std::fs::read_to_string(&data).unwrap();
    let labelled: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{l},c{}\n", i % 3))
        .collect();
    let labelled_path = dir.path().join("labelled.csv");
    std::fs::write(&labelled_path, labelled).unwrap();
    let tune = |ranks: usize, name: &str| -> Network {
        let out = dir.path().join(name);
        run(
            ranks,
            &[
                "prune",
                "--model",
                pruned.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--sparsity",
                "0.9",
                "--finetune-epochs",
                "3",
                "--data",
                labelled_path.to_str().unwrap(),
                "--format",
                "sparse",
            ],
        );
        load(&out).unwrap().model.network
    };
    let (a, b) = (tune(0, "t1.nnmpi"), tune(2, "t2.nnmpi"));
    assert!(max_difference(&a, &b) <= TRAIN_TOLERANCE);
    let structure = |n: &Network| -> Vec<(Vec<usize>, Vec<u32>)> {
        n.layers()
            .iter()
            .map(|l| match l.weights() {
                nnmpi::model::Weights::Sparse(c) => (c.row_offsets(), c.col_indices()),
                nnmpi::model::Weights::Dense(_) => panic!("stored sparse"),
            })
            .collect()
    };
    assert_eq!(structure(&a), structure(&b));
    assert_eq!(
        structure(&a),
        structure(&load(&pruned).unwrap().model.network)
    );
}

#[test]
fn the_graphchallenge_subset_passes_with_its_inputs_dealt_over_3_ranks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/graphchallenge");
    if !dir.join("neuron1024/n1024-l14.tsv.gz").exists() {
        eprintln!("SKIPPED: ../shared/data/graphchallenge is absent");
        return;
    }
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let out = run(
        3,
        &[
            "sdnn",
            "--weights",
            &d("neuron1024"),
            "--neurons",
            "1024",
            "--layers",
            "14",
            "--inputs",
            &d("sparse-images-1024_subset.mtx.gz"),
            "--truth",
            &d("neuron1024-l120-categories_subset.mtx.gz"),
        ],
    );
    assert!(
        out.contains("categories: 19 - PASS") && out.contains("on 3 rank(s)"),
        "{out}"
    );
}

#[test]
fn ranks_splitting_a_generated_networks_neurons_find_the_categories_of_one_process() {
    // Each rank generates only its neurons of every layer; 2 ranks split each layer, and a
    // 2x2 grid deals the inputs over 2 groups of 2 such ranks.
    let args = [
        "sdnn",
        "--generate",
        "--neurons",
        "1024",
        "--layers",
        "12",
        "--samples",
        "400",
        "--json",
    ];
    let categories = |out: &str| -> String {
        let at = out.find("\"categories\":").expect("categories") + "\"categories\":".len();
        out[at..].split([',', '}']).next().unwrap().to_string()
    };
    let alone = run(0, &args);
    let want = categories(&alone);
    assert_ne!(want, "0", "some inputs must survive: {alone}");
    let split = run(2, &[&args[..], &["--parallel", "model"]].concat());
    assert!(split.contains("\"ranks_per_layer\":2"), "{split}");
    assert_eq!(categories(&split), want, "{split}");
    let grid = run(4, &[&args[..], &["--grid", "2x2"]].concat());
    assert!(grid.contains("\"ranks_per_layer\":2"), "{grid}");
    assert_eq!(categories(&grid), want, "{grid}");
    // Without --parallel, sdnn deals the inputs (every rank holds the whole network).
    let dealt = run(2, &args);
    assert!(dealt.contains("\"ranks_per_layer\":1"), "{dealt}");
    assert_eq!(categories(&dealt), want, "{dealt}");
}

#[test]
fn a_data_set_broadcast_and_gradients_summed_in_small_chunks_train_the_same_model() {
    // NNMPI_MPI_MAX_COUNT=100 cuts every broadcast (Sonar's 12,480 features, the labels, the
    // class names) into calls of at most 100 values, as a data set of 2^31 values or more
    // is cut at MPI's limit, and every all-reduce too (the 506 gradients of the data-parallel
    // run, as a long one is cut into pieces); the model must come out byte for byte the same.
    let dir = tempfile::tempdir().unwrap();
    let train = |chunk: Option<&str>, parallel: &str| {
        let out = dir.path().join(format!("{parallel}-{chunk:?}.nnmpi"));
        let out_s = out.to_string_lossy().into_owned();
        let args = [
            "train",
            "--data",
            &sonar(),
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--seed",
            "4",
            "--parallel",
            parallel,
            "--out",
            &out_s,
            "--quiet",
        ];
        let mut cmd = mpirun_with(&[], 2, &args);
        if let Some(c) = chunk {
            cmd.env("NNMPI_MPI_MAX_COUNT", c);
        }
        let (o, in_time) = run_with_limit(cmd, Duration::from_secs(300));
        assert!(
            in_time && o.status.success(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read(out).unwrap()
    };
    for parallel in ["model", "data"] {
        assert_eq!(
            train(Some("100"), parallel),
            train(None, parallel),
            "--parallel {parallel}"
        );
    }
}

/// The lines of `dir/rank-R.csv` for `ranks` ranks, as columns by name.
fn rank_logs(dir: &Path, ranks: usize) -> Vec<Vec<std::collections::HashMap<String, String>>> {
    (0..ranks)
        .map(|r| {
            let text = std::fs::read_to_string(dir.join(format!("rank-{r}.csv"))).unwrap();
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            lines
                .map(|l| {
                    header
                        .iter()
                        .zip(l.split(','))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_rank_logs_its_time_its_bytes_and_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let logs = |name: &str| dir.path().join(name);
    let num = |line: &std::collections::HashMap<String, String>, key: &str| -> f64 {
        line[key].parse().unwrap()
    };
    // Sonar 60-24-10-1: 35 neurons, 60*24 + 24*10 + 10*1 = 1690 connections.
    let (neurons, connections) = (35.0, 1690.0);
    let model = logs("model");
    train(
        3,
        &dir.path().join("m.nnmpi"),
        &["--grid", "1x3", "--log-dir", model.to_str().unwrap()],
    );
    let by_rank = rank_logs(&model, 3);
    for (rank, lines) in by_rank.iter().enumerate() {
        assert_eq!(lines.len(), 3, "rank {rank}: one line per epoch");
        for (e, line) in lines.iter().enumerate() {
            assert_eq!(line["epoch"], (e + 1).to_string());
            assert_eq!(line["rank"], rank.to_string());
            let parts = num(line, "compute_s") + num(line, "comm_s");
            assert!((parts - num(line, "seconds")).abs() < 2e-6, "{line:?}");
            assert!(num(line, "bytes_sent") > 0.0, "{line:?}");
            // Collectives are matched: every rank called as many.
            assert_eq!(line["comm_calls"], by_rank[0][e]["comm_calls"]);
        }
    }
    // Model parallel: the shards add up to the network.
    let sum = |key: &str| by_rank.iter().map(|l| num(&l[0], key)).sum::<f64>();
    assert_eq!((sum("neurons"), sum("connections")), (neurons, connections));

    // Data parallel: each of 2 ranks holds the whole network and all-reduces its gradients
    // (1690 weights + 35 biases, 4 bytes each) once per mini-batch of 16: at least 11 steps
    // for the 166 training samples of Sonar's 80%.
    let data = logs("data");
    train(
        2,
        &dir.path().join("d.nnmpi"),
        &["--parallel", "data", "--log-dir", data.to_str().unwrap()],
    );
    for lines in rank_logs(&data, 2) {
        for line in &lines {
            assert_eq!(
                (num(line, "neurons"), num(line, "connections")),
                (neurons, connections)
            );
            assert!(num(line, "bytes_sent") >= 11.0 * 1725.0 * 4.0, "{line:?}");
        }
    }

    // One process exchanges nothing.
    let alone = logs("alone");
    train(
        0,
        &dir.path().join("a.nnmpi"),
        &["--log-dir", alone.to_str().unwrap()],
    );
    for line in &rank_logs(&alone, 1)[0] {
        assert_eq!(
            (line["comm_calls"].as_str(), line["bytes_sent"].as_str()),
            ("0", "0")
        );
        assert_eq!(
            (num(line, "neurons"), num(line, "connections")),
            (neurons, connections)
        );
    }
}

#[test]
fn a_calibration_on_two_ranks_plans_every_grid_and_one_rank_needs_the_network_given() {
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.json");
    let calibrate = |ranks: usize, path: &Path| {
        let args = [
            "bench",
            "--calibrate",
            "--layers",
            "64,64,8",
            "--batch",
            "16",
            "--reps",
            "1",
            "--calibration",
            path.to_str().unwrap(),
        ];
        run(ranks, &args)
    };
    let printed = calibrate(2, &two);
    assert!(printed.contains("network: latency"), "{printed}");
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&two).unwrap()).unwrap();
    assert_eq!(cal["ranks"], 2);
    assert!(cal["network"]["beta"].as_f64().unwrap() > 0.0, "{cal}");

    let plan = run(
        0,
        &[
            "plan",
            "--calibration",
            two.to_str().unwrap(),
            "--ranks",
            "2,4",
            "--json",
        ],
    );
    let rows: Vec<serde_json::Value> = plan
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let grids: Vec<&str> = rows.iter().map(|r| r["grid"].as_str().unwrap()).collect();
    assert_eq!(grids, ["1x2", "2x1", "1x4", "2x2", "4x1"]);
    for r in &rows {
        let (p, t) = (
            r["predict_ms"].as_f64().unwrap(),
            r["train_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p && p < t, "{r}");
    }

    // One rank measures no network: the plan asks for it, naming the flags.
    let one = dir.path().join("one.json");
    calibrate(0, &one);
    let out = Command::new(NNMPI)
        .args([
            "plan",
            "--calibration",
            one.to_str().unwrap(),
            "--ranks",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--latency-us") && err.contains("--bandwidth-gbs"),
        "{err}"
    );
    let given = run(
        0,
        &[
            "plan",
            "--calibration",
            one.to_str().unwrap(),
            "--ranks",
            "2",
            "--latency-us",
            "2",
            "--bandwidth-gbs",
            "10",
        ],
    );
    assert!(given.contains("recommended: --grid"), "{given}");
}

#[test]
fn ranks_of_a_data_parallel_run_read_only_their_samples_of_an_npy_file() {
    // Sonar as NPY (nnmpi convert), trained with --parallel data on 2 and 3 ranks: each rank
    // reads exactly its share of every mini-batch of 16 (208 samples: 13 batches; 8 each on
    // 2 ranks, 6/5/5 on 3), and the model is byte for byte the one trained from the CSV,
    // which rank 0 reads and broadcasts.
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("sonar-npy");
    run(
        0,
        &[
            "convert",
            "--data",
            &sonar(),
            "--out",
            npy.to_str().unwrap(),
        ],
    );
    let num = |line: &std::collections::HashMap<String, String>, key: &str| -> u64 {
        line[key].parse().unwrap()
    };
    for (ranks, shares) in [(2, vec![104, 104]), (3, vec![78, 65, 65])] {
        let logs = dir.path().join(format!("logs{ranks}"));
        let train_on = |data: &Path, out: &str, extra: &[&str]| {
            let out = dir.path().join(out);
            let mut args = vec!["train", "--data", data.to_str().unwrap(), "--hidden", "8"];
            args.extend(["--epochs", "2", "--batch-size", "16", "--val-split", "0"]);
            args.extend([
                "--parallel",
                "data",
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ]);
            args.extend_from_slice(extra);
            run(ranks, &args);
            std::fs::read(out).unwrap()
        };
        let from_npy = train_on(&npy, "npy.nnmpi", &["--log-dir", logs.to_str().unwrap()]);
        let from_csv = train_on(Path::new(&sonar()), "csv.nnmpi", &[]);
        assert!(
            from_npy == from_csv,
            "{ranks} ranks: NPY and CSV train differently"
        );
        for (rank, lines) in rank_logs(&logs, ranks).iter().enumerate() {
            for line in lines {
                assert_eq!(
                    num(line, "samples_read"),
                    shares[rank],
                    "{ranks} ranks: {line:?}"
                );
            }
        }
    }
}
