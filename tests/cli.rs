//! The `nnmpi` binary end to end: bad input gives clear errors, training and prediction work,
//! a kill during checkpointing never corrupts the checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnmpi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnmpi"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run nnmpi")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn sonar() -> String {
    format!("{}/data/sonar.csv", env!("CARGO_MANIFEST_DIR"))
}

/// `nnmpi train` of a 60-4-1 network on Sonar, with `extra` flags.
fn train_small(extra: &[&str]) -> Output {
    let data = sonar();
    let mut args = vec!["train", "--data", &data, "--hidden", "4"];
    args.extend_from_slice(extra);
    nnmpi(&args)
}

#[test]
fn bad_training_data_names_file_line_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "nonnumeric.csv",
            "1,2,a\n3,x,b\n",
            ":2: column 2: 'x' is not a number",
        ),
        (
            "ragged.csv",
            "1,2,a\n3,4,b\n5,b\n",
            ":3: 2 fields, expected 3",
        ),
        ("empty.csv", "", "the file is empty"),
        (
            "nan.csv",
            "1,2,a\n3,NaN,b\n",
            ":2: column 2: 'NaN' is not a finite number",
        ),
        (
            "inf.csv",
            "1,2,a\n-inf,4,b\n",
            ":2: column 1: '-inf' is not a finite number",
        ),
    ];
    for (name, text, want) in cases {
        let p = write(dir.path(), name, text);
        let o = nnmpi(&["train", "--data", p.to_str().unwrap(), "--epochs", "1"]);
        assert!(!o.status.success(), "{name} should fail");
        let err = stderr(&o);
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let o = nnmpi(&["train", "--data", "/nonexistent/file.csv"]);
    assert!(
        stderr(&o).contains("/nonexistent/file.csv: No such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn train_save_predict_eval_and_bad_prediction_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sonar.nnmpi");
    let m = model.to_str().unwrap();
    let o = nnmpi(&[
        "train",
        "--data",
        &sonar(),
        "--hidden",
        "16",
        "--epochs",
        "20",
        "--normalize",
        "zscore",
        "--out",
        m,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = nnmpi(&["eval", "--model", m, "--data", &sonar()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc: f64 = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("accuracy"))
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(acc > 75.0, "training-set accuracy {acc}");

    let preds = dir.path().join("p.csv");
    let o = nnmpi(&[
        "predict",
        "--model",
        m,
        "--data",
        &sonar(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&preds).unwrap();
    assert_eq!(text.lines().count(), 209);
    assert!(text.starts_with("prediction,p_M,p_R\n"));

    // Sonar rows without their label column are accepted for prediction.
    let unlabeled: String = std::fs::read_to_string(sonar())
        .unwrap()
        .lines()
        .take(3)
        .map(|l| l.rsplit_once(',').unwrap().0.to_owned() + "\n")
        .collect();
    let p = write(dir.path(), "unlabeled.csv", &unlabeled);
    let o = nnmpi(&["predict", "--model", m, "--data", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 4);

    let row = "0.1,".repeat(60);
    let p = write(dir.path(), "unknown.csv", &format!("{row}M\n{row}Z\n"));
    let err = stderr(&nnmpi(&[
        "eval",
        "--model",
        m,
        "--data",
        p.to_str().unwrap(),
    ]));
    assert!(
        err.contains("unknown.csv:2") && err.contains("unknown label 'Z'") && err.contains("M, R"),
        "{err}"
    );

    let p = write(
        dir.path(),
        "short.csv",
        &format!("{}R\n", "0.1,".repeat(40)),
    );
    let err = stderr(&nnmpi(&[
        "predict",
        "--model",
        m,
        "--data",
        p.to_str().unwrap(),
    ]));
    assert!(
        err.contains("short.csv:1")
            && err.contains("41 columns")
            && err.contains("expects 60 features"),
        "{err}"
    );

    let o = nnmpi(&["info", "--model", m]);
    assert!(stdout(&o).contains("60-16-1"), "{}", stdout(&o));
    // A network by its sizes: 60·30 + 30 + 30·1 + 1 parameters.
    let o = nnmpi(&["info", "--layers", "60,30,1"]);
    assert!(stdout(&o).contains("parameters 1861 "), "{}", stdout(&o));
    let err = stderr(&nnmpi(&[
        "train",
        "--resume",
        m,
        "--data",
        &sonar(),
        "--lr",
        "0.5",
    ]));
    assert!(err.contains("--lr cannot be given with --resume"), "{err}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `true` exits without reading, so every line nnmpi prints goes into a closed pipe.
    let script = format!(
        "'{}' train --data '{}' --hidden 4 --epochs 3 | true; echo status=${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_nnmpi"),
        sonar()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.contains("status=0") || out.contains("status=141"),
        "{out}{err}"
    );
}

#[test]
fn cli_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.nnmpi"), dir.path().join("b.nnmpi"));
    let common = [
        "--data",
        &sonar(),
        "--hidden",
        "8",
        "--val-split",
        "0.2",
        "--quiet",
    ];
    let o = nnmpi(
        &[
            &["train", "--epochs", "6", "--out", a.to_str().unwrap()],
            &common[..],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(
        &[
            &["train", "--epochs", "2", "--out", b.to_str().unwrap()],
            &common[..],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--data",
        &sonar(),
        "--epochs",
        "6",
        "--out",
        b.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (ca, cb) = (nnmpi::io::load(&a).unwrap(), nnmpi::io::load(&b).unwrap());
    assert_eq!(ca.model, cb.model);
    // The whole training state too, the first loss the divergence check compares with
    // included.
    assert_eq!(ca.training, cb.training);
    assert_eq!(ca.training.unwrap().state.epoch, 6);
}

#[test]
fn killing_a_run_while_it_checkpoints_never_leaves_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("big.nnmpi");
    // A wide network on a tiny data set: each epoch is short and each checkpoint is ~10 MB,
    // so kills land during saves as well as between them.
    let p = write(dir.path(), "tiny.csv", "0,1,a\n1,0,b\n1,1,a\n0,0,b\n");
    let mut loaded = 0;
    for delay_ms in [150u64, 230, 310, 420, 530, 700, 1500] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnmpi"))
            .args([
                "train",
                "--data",
                p.to_str().unwrap(),
                "--hidden",
                "800,800",
                "--epochs",
                "100000",
                "--checkpoint-every",
                "1",
            ])
            .args(["--out", ckpt.to_str().unwrap(), "--quiet"])
            .env("RAYON_NUM_THREADS", "1")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if ckpt.exists() {
            let c = nnmpi::io::load(&ckpt)
                .unwrap_or_else(|e| panic!("after a kill at {delay_ms} ms: {e}"));
            assert_eq!(c.model.network.sizes(), vec![2, 800, 800, 1]);
            loaded += 1;
        }
    }
    assert!(
        loaded > 0,
        "no checkpoint was ever written: the kills came too early to test anything"
    );
}

#[test]
fn export_then_import_predicts_the_same_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (model, exported, again) = (path("m.nnmpi"), path("m.safetensors"), path("again.nnmpi"));
    let o = nnmpi(&[
        "train",
        "--data",
        &sonar(),
        "--hidden",
        "8",
        "--epochs",
        "5",
        "--normalize",
        "minmax",
        "--out",
        &model,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(&[
        "prune",
        "--model",
        &model,
        "--out",
        &model,
        "--sparsity",
        "0.9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(&["export", "--model", &model, "--out", &exported]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(&["import", "--in", &exported, "--out", &again]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("60-8-1"), "{}", stdout(&o));
    let predict = |m: &str| nnmpi(&["predict", "--model", m, "--data", &sonar(), "--exact"]);
    let (a, b) = (predict(&model), predict(&again));
    assert!(a.status.success() && b.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    // The sparse layers come back sparse.
    let info = nnmpi(&["info", "--model", &again]);
    assert!(stdout(&info).contains("sparse"), "{}", stdout(&info));
    // A file that is not safetensors is named in the error.
    let o = nnmpi(&["import", "--in", &sonar(), "--out", &again]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("sonar.csv") && stderr(&o).contains("not a safetensors file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn predictions_quote_class_names_that_need_it() {
    // Class names with a comma or a quote used to be written bare, shifting every column after
    // them; the file is now read back by any CSV reader as two-plus-classes columns.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.nnmpi");
    let o = train_small(&["--epochs", "2", "--out", model.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ckpt = nnmpi::io::load(&model).unwrap();
    let names = ["rock, hard".to_string(), "mine \"M\"".to_string()];
    ckpt.model.task = nnmpi::model::Task::Classification {
        classes: names.to_vec(),
    };
    nnmpi::io::save(&model, &ckpt).unwrap();
    // Sonar's features without their label column.
    let features: String = std::fs::read_to_string(sonar())
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", &l[..l.rfind(',').unwrap()]))
        .collect();
    let data = write(dir.path(), "x.csv", &features);
    let out = dir.path().join("p.csv");
    let o = nnmpi(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--label-col",
        "none",
        "--header",
        "no",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(r#"prediction,"p_rock, hard","p_mine ""M""""#)
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 208);
    for row in rows {
        let (label, probs) = if let Some(rest) = row.strip_prefix(r#""rock, hard","#) {
            ("rock", rest)
        } else if let Some(rest) = row.strip_prefix(r#""mine ""M""","#) {
            ("mine", rest)
        } else {
            panic!("unquoted or unknown label in {row}")
        };
        assert_eq!(probs.split(',').count(), 2, "{label}: {row}");
    }
}

#[test]
fn an_unwritable_out_or_log_stops_training_before_the_first_epoch() {
    // Both used to be found out only after the last epoch, throwing the training away.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    for flag in ["--out", "--log"] {
        let target = missing.join("file");
        let o = train_small(&["--epochs", "5", flag, target.to_str().unwrap()]);
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(!o.status.success());
        assert!(
            err.contains(&format!("{flag} {}", target.display()))
                && err.contains("nothing was done"),
            "{err}"
        );
        assert!(
            !out.contains("epoch") && !err.contains("epoch "),
            "{out}{err}"
        );
    }
}

#[test]
fn a_run_that_blows_up_stops_and_never_checkpoints_non_finite_weights() {
    let dir = tempfile::tempdir().unwrap();
    // A finite loss far above where it started (0.69 → 7 at lr 1e6): used to exit 0 and
    // save a model that predicts one class.
    let out = dir.path().join("blown.nnmpi");
    let o = train_small(&[
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--epochs",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("training diverged: the loss went from") && err.contains("smaller --lr"),
        "{err}"
    );
    assert!(err.contains("no checkpoint was written"), "{err}");
    assert!(!out.exists());
    // Regression at lr 10 with a checkpoint every epoch: the weights overflow in the epoch's
    // last updates, before the loss shows it; the epoch-3 checkpoint used to hold NaNs.
    let table: String = std::fs::read_to_string(sonar())
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    let data = write(dir.path(), "regression.csv", &table);
    let out = dir.path().join("reg.nnmpi");
    let o = nnmpi(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--task",
        "regress",
        "--label-col",
        "0",
        "--optimizer",
        "sgd",
        "--lr",
        "10",
        "--epochs",
        "8",
        "--checkpoint-every",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("training diverged"), "{}", stderr(&o));
    if out.exists() {
        let info = nnmpi(&["info", "--model", out.to_str().unwrap()]);
        assert!(info.status.success(), "{}", stderr(&info));
    }
}

#[test]
fn numeric_flags_out_of_range_are_refused_with_the_allowed_range() {
    let cases: &[(&[&str], &str)] = &[
        (&["--lr=-1"], "expected a number above 0"),
        (&["--lr", "-1"], "expected a number above 0"),
        (&["--momentum=-5"], "expected a fraction in [0, 1)"),
        (&["--weight-decay=-1"], "expected a number of at least 0"),
        (&["--epochs", "0"], "expected a whole number of at least 1"),
        (
            &["--batch-size", "0"],
            "expected a whole number of at least 1",
        ),
        (&["--val-split", "1.5"], "expected a fraction in [0, 1)"),
        (&["--kfold", "1"], "expected at least 2 folds"),
        (
            &["--hidden", "8,0"],
            "expected a whole number of at least 1",
        ),
        (&["--val-split", "0.999"], "no training sample is left"),
        (&["--val-split", "0.001"], "less than one sample"),
        (&["--rows", "0:99999"], "START < END <= 208"),
    ];
    for (flags, want) in cases {
        let o = train_small(flags);
        assert!(!o.status.success(), "{flags:?} was accepted");
        assert!(stderr(&o).contains(want), "{flags:?}: {}", stderr(&o));
    }
    // --epochs on resume is the total to reach: one already reached is an error, not a
    // silent copy of the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnmpi");
    let o = train_small(&["--epochs", "3", "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnmpi(&[
        "train",
        "--data",
        &sonar(),
        "--resume",
        out.to_str().unwrap(),
        "--epochs",
        "3",
    ]);
    assert!(
        stderr(&o).contains("has already trained 3 epochs"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_value_the_normaliser_cannot_scale_is_named_not_predicted_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    // Feature 2 hardly varies in training (spread 1e-7), so its min-max scale is 1e7; a
    // value of 1e35 then normalises past f32 and used to come out as a NaN prediction.
    let train: String = (0..40)
        .map(|i| format!("{},{},{}\n", i % 7, 1.0 + (i % 2) as f32 * 1e-7, i % 2))
        .collect();
    let data = write(dir.path(), "train.csv", &train);
    let model = dir.path().join("m.nnmpi");
    let o = nnmpi(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--out",
        model.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = write(dir.path(), "new.csv", "3,1e35\n");
    let o = nnmpi(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("new.csv")
            && err.contains("feature 2: the value 100000000000000000000000000000000000"),
        "{err}"
    );
}

#[test]
fn an_imported_model_trains_further_from_its_own_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let ok = |o: Output| assert!(o.status.success(), "{}", stderr(&o));
    ok(train_small(&[
        "--epochs",
        "5",
        "--out",
        &path("base.nnmpi"),
        "--quiet",
    ]));
    ok(nnmpi(&[
        "export",
        "--model",
        &path("base.nnmpi"),
        "--out",
        &path("m.safetensors"),
    ]));
    ok(nnmpi(&[
        "import",
        "--in",
        &path("m.safetensors"),
        "--out",
        &path("imp.nnmpi"),
    ]));
    // --resume needs training state an imported model does not have, and says what to use.
    let o = nnmpi(&["train", "--data", &sonar(), "--resume", &path("imp.nnmpi")]);
    assert!(stderr(&o).contains("--init-from"), "{}", stderr(&o));
    // One epoch of SGD at a negligible rate from the imported weights: the model it saves
    // is the imported one, to within that step (so the weights were taken, not re-drawn).
    let o = nnmpi(&[
        "train",
        "--data",
        &sonar(),
        "--init-from",
        &path("imp.nnmpi"),
        "--optimizer",
        "sgd",
        "--lr",
        "1e-12",
        "--epochs",
        "1",
        "--out",
        &path("tuned.nnmpi"),
        "--quiet",
    ]);
    ok(o);
    let base = nnmpi::io::load(Path::new(&path("base.nnmpi")))
        .unwrap()
        .model;
    let tuned = nnmpi::io::load(Path::new(&path("tuned.nnmpi"))).unwrap();
    assert!(tuned.training.is_some(), "the tuned model can be resumed");
    assert_eq!(tuned.model.task, base.task);
    assert_eq!(tuned.model.normalizer, base.normalizer);
    for (a, b) in base
        .network
        .layers()
        .iter()
        .zip(tuned.model.network.layers())
    {
        for (x, y) in a.weight_slice().iter().zip(b.weight_slice()) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }
    // The architecture comes from the model: flags that would change it are refused.
    let o = train_small(&["--init-from", &path("imp.nnmpi")]);
    let err = stderr(&o);
    assert!(
        err.contains("cannot be used with") && err.contains("--init-from"),
        "{err}"
    );
}

#[test]
fn the_final_accuracy_printed_is_that_of_the_saved_model() {
    // The epoch lines show running figures (the weights move during the epoch); the line
    // at the end used to repeat the last one, which `eval` of the saved model contradicted.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.nnmpi");
    let o = train_small(&[
        "--epochs",
        "7",
        "--lr",
        "0.05",
        "--out",
        model.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    let figure = |text: &str, after: &str| -> String {
        let at = text
            .find(after)
            .unwrap_or_else(|| panic!("no '{after}' in {text}"));
        text[at + after.len()..]
            .split('%')
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let trained = figure(&printed, "training accuracy");
    let e = nnmpi(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &sonar(),
    ]);
    assert_eq!(trained, figure(&stdout(&e), "accuracy"), "{printed}");
}

#[test]
fn a_network_too_big_for_the_machine_is_an_error_that_says_how_much() {
    // 60-100000-100000-1 needs 40 GB for its weights alone: it used to abort on the
    // allocation (SIGABRT) after the data was read.
    let o = nnmpi(&["train", "--data", &sonar(), "--hidden", "100000,100000"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("training a 60-100000-100000-1 network needs about")
            && err.contains("GiB of memory available"),
        "{err}"
    );
    let o = nnmpi(&["bench", "--layers", "100000,100000,100000", "--batch", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs about"), "{}", stderr(&o));
}

#[test]
fn a_slurm_step_of_two_tasks_without_mpi_stops_with_the_srun_to_use() {
    // srun -n 2 without --mpi=pmix: each task sees no MPI and would run everything alone.
    let run = |tasks: &str| {
        Command::new(env!("CARGO_BIN_EXE_nnmpi"))
            .args(["info", "--layers", "4,3,2"])
            .env("SLURM_STEP_NUM_TASKS", tasks)
            .env("NNMPI_MPI", "0")
            .output()
            .unwrap()
    };
    let two = run("2");
    assert_eq!(two.status.code(), Some(1), "{}", stderr(&two));
    assert!(
        stderr(&two).contains("Slurm started 2 tasks") && stderr(&two).contains("srun --mpi=pmix"),
        "{}",
        stderr(&two)
    );
    assert!(stdout(&two).is_empty(), "{}", stdout(&two));
    let one = run("1");
    assert!(one.status.success(), "{}", stderr(&one));
}

/// `nnmpi train` of 8 hidden neurons for 3 epochs on `data` (with `extra` flags); the
/// checkpoint's bytes.
fn trained_bytes(data: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let (data, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", "--data", data, "--hidden", "8", "--epochs", "3"];
    args.extend_from_slice(&["--seed", "5", "--quiet", "--out", out_s]);
    args.extend_from_slice(extra);
    let o = nnmpi(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(out).unwrap()
}

#[test]
fn convert_streams_a_gzipped_csv_with_a_header_into_the_rows_asked_for() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 60 samples of 3 features with a header and text labels, gzipped.
    let value = |s: usize, f: usize| (s * 10 + f) as f32 / 4.0;
    let label = |s: usize| ["cat", "dog", "eel"][s % 3];
    let mut csv = String::from("a,b,c,kind\n");
    for s in 0..60 {
        let x: Vec<String> = (0..3).map(|f| value(s, f).to_string()).collect();
        csv.push_str(&format!("{},{}\n", x.join(","), label(s)));
    }
    let gz = d.join("animals.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(csv.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let out = d.join("npy");
    let convert = |rows: &str| {
        let (data, out) = (gz.to_str().unwrap(), out.to_str().unwrap());
        nnmpi(&["convert", "--data", data, "--rows", rows, "--out", out])
    };
    let o = convert("5:40");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote 35 samples of 3 features, 3 classes"));
    let features: ndarray::Array2<f32> = ndarray_npy::read_npy(out.join("features.npy")).unwrap();
    assert_eq!(
        features,
        ndarray::Array2::from_shape_fn((35, 3), |(s, f)| value(s + 5, f))
    );
    // The labels are text (np.load reads them as '<U3'); nnmpi reads them back as the classes.
    let labels = std::fs::read(out.join("labels.npy")).unwrap();
    assert!(String::from_utf8_lossy(&labels[..128]).contains("'descr': '<U3'"));
    let utf32 = |t: &str| {
        t.chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let want: Vec<u8> = (5..40).flat_map(|s| utf32(label(s))).collect();
    assert_eq!(labels[labels.len() - want.len()..], want[..]);
    // The same rows train the same model as the CSV read whole.
    assert_eq!(
        trained_bytes(&out, &d.join("npy.nnmpi"), &[]),
        trained_bytes(&gz, &d.join("csv.nnmpi"), &["--rows", "5:40"])
    );

    // A range past the end, or a bad cell, fails naming it and leaves the files there alone.
    let before = std::fs::read(out.join("features.npy")).unwrap();
    let o = convert("50:70");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--rows 50:70 does not fit") && stderr(&o).contains("(60 samples)"),
        "{}",
        stderr(&o)
    );
    let bad = write(d, "bad.csv", &csv.replace("72.5,", "72.5x,"));
    let o = nnmpi(&[
        "convert",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("bad.csv:31: column 1: '72.5x' is not a number"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(out.join("features.npy")).unwrap(), before);
}

#[test]
fn npy_data_of_every_type_trains_exactly_as_the_same_data_in_csv() {
    use ndarray::Array2;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Sonar converted: the directory nnmpi convert writes (float32 features, text labels).
    let npy_dir = d.join("sonar-npy");
    let o = nnmpi(&[
        "convert",
        "--data",
        &sonar(),
        "--out",
        npy_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote 208 samples of 60 features, 2 classes"));
    assert_eq!(
        trained_bytes(Path::new(&sonar()), &d.join("csv.nnmpi"), &[]),
        trained_bytes(&npy_dir, &d.join("npy.nnmpi"), &[])
    );

    // 48 samples of 5 features whose values every type holds exactly, integer labels.
    let value = |s: usize, f: usize| ((s * 37 + f * 11) % 200) as f64;
    let labels: Vec<i64> = (0..48).map(|s| [3, 10, 7][s % 3]).collect();
    let csv: String = (0..48)
        .map(|s| {
            let x: Vec<String> = (0..5).map(|f| value(s, f).to_string()).collect();
            format!("{},{}\n", x.join(","), labels[s])
        })
        .collect();
    let csv_path = write(d, "small.csv", &csv);
    let want = trained_bytes(&csv_path, &d.join("small.nnmpi"), &["--header", "no"]);
    let y = d.join("y.npy");
    ndarray_npy::write_npy(&y, &ndarray::Array1::from(labels.clone())).unwrap();
    let x = |name: &str| d.join(name);
    let (f32s, f64s, u8s) = (x("x32.npy"), x("x64.npy"), x("x8.npy"));
    ndarray_npy::write_npy(
        &f32s,
        &Array2::from_shape_fn((48, 5), |(s, f)| value(s, f) as f32),
    )
    .unwrap();
    ndarray_npy::write_npy(&f64s, &Array2::from_shape_fn((48, 5), |(s, f)| value(s, f))).unwrap();
    ndarray_npy::write_npy(
        &u8s,
        &Array2::from_shape_fn((48, 5), |(s, f)| value(s, f) as u8),
    )
    .unwrap();
    for features in [&f32s, &f64s, &u8s] {
        let got = trained_bytes(
            features,
            &d.join("n.nnmpi"),
            &["--labels", y.to_str().unwrap()],
        );
        assert!(got == want, "{} trains another model", features.display());
    }
    // A directory of shards, in name order, of mixed types: the same samples, the same model.
    let shards = d.join("shards");
    std::fs::create_dir(&shards).unwrap();
    let part = |p: usize, (s, f): (usize, usize)| value(16 * p + s, f);
    let at = |name: &str| shards.join(name);
    ndarray_npy::write_npy(
        at("features-0.npy"),
        &Array2::from_shape_fn((16, 5), |i| part(0, i) as f32),
    )
    .unwrap();
    ndarray_npy::write_npy(
        at("features-1.npy"),
        &Array2::from_shape_fn((16, 5), |i| part(1, i)),
    )
    .unwrap();
    ndarray_npy::write_npy(
        at("features-2.npy"),
        &Array2::from_shape_fn((16, 5), |i| part(2, i) as u8),
    )
    .unwrap();
    for p in 0..3 {
        let y = ndarray::Array1::from(labels[16 * p..16 * (p + 1)].to_vec());
        ndarray_npy::write_npy(at(&format!("labels-{p}.npy")), &y).unwrap();
    }
    let got = trained_bytes(&shards, &d.join("shards.nnmpi"), &[]);
    assert!(got == want, "the shards train another model");
    // A labels shard missing is named.
    std::fs::remove_file(at("labels-1.npy")).unwrap();
    let o = nnmpi(&["train", "--data", shards.to_str().unwrap(), "--hidden", "2"]);
    assert!(
        stderr(&o).contains("no labels-1.npy for features-1.npy"),
        "{}",
        stderr(&o)
    );

    // And a model predicts NPY input as it predicts the CSV.
    let model = d.join("small.nnmpi");
    let predict = |data: &Path, extra: &[&str]| {
        let out = d.join("p.csv");
        let (m, data, o) = (
            model.to_str().unwrap(),
            data.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        let mut args = vec!["predict", "--model", m, "--data", data, "--out", o];
        args.extend_from_slice(extra);
        let r = nnmpi(&args);
        assert!(r.status.success(), "{}", stderr(&r));
        std::fs::read_to_string(out).unwrap()
    };
    assert_eq!(predict(&csv_path, &["--header", "no"]), predict(&u8s, &[]));

    // Bad files are named with what was expected.
    let short = d.join("short.npy");
    ndarray_npy::write_npy(&short, &ndarray::Array1::from(vec![1i64, 2])).unwrap();
    let o = nnmpi(&[
        "train",
        "--data",
        f32s.to_str().unwrap(),
        "--labels",
        short.to_str().unwrap(),
        "--hidden",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("short.npy") && stderr(&o).contains("expected [48]"),
        "{}",
        stderr(&o)
    );
    let o = nnmpi(&["train", "--data", y.to_str().unwrap(), "--hidden", "2"]);
    assert!(
        stderr(&o).contains("expected numbers of shape [samples, features]"),
        "{}",
        stderr(&o)
    );
    let o = nnmpi(&["train", "--data", d.to_str().unwrap(), "--hidden", "2"]);
    assert!(
        stderr(&o).contains("a directory without features.npy"),
        "{}",
        stderr(&o)
    );
}
