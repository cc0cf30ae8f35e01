//! Preemption for real: a signal in the middle of `nnmpi train` (one process, or `mpirun -np
//! 2` with the signal sent to mpirun or to the ranks as a batch system does) writes the
//! checkpoint and exits with status 75, and the same command with `--resume auto` then trains
//! to exactly the model and state of a run that was never interrupted.

use nnmpi::io::load;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NNMPI: &str = env!("CARGO_BIN_EXE_nnmpi");
/// The documented exit status of a run stopped by a signal after saving.
const EXIT_PREEMPTED: i32 = 75;

/// The training command (without `--epochs`): Sonar, 26 mini-batches an epoch, so a signal
/// usually lands inside an epoch.
fn train_args(out: &Path) -> Vec<String> {
    let sonar = format!("{}/data/sonar.csv", env!("CARGO_MANIFEST_DIR"));
    [
        "train",
        "--data",
        &sonar,
        "--hidden",
        "8",
        "--batch-size",
        "8",
        "--val-split",
        "0.2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// `nnmpi <args>` alone (`ranks` 0) or under `mpirun -np <ranks>`.
fn command(ranks: usize, args: &[String]) -> Command {
    let mut cmd = if ranks == 0 {
        Command::new(NNMPI)
    } else {
        let mut cmd = Command::new("mpirun");
        cmd.args(["--oversubscribe", "--bind-to", "none", "-np"])
            .arg(ranks.to_string())
            .arg(NNMPI)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        cmd
    };
    cmd.args(args).env("RAYON_NUM_THREADS", "1");
    cmd
}

/// Runs to the end within 5 minutes and returns the exit status and stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(300) {
            child.kill().ok();
            panic!("the run did not end within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Trains with far more epochs than it will run, sends `signal` once the metrics log shows
/// 20 epochs (to mpirun, or to its ranks when `to_ranks`), checks the stop, resumes with
/// `--resume auto` to 3 epochs past the stop, and compares with an uninterrupted run of as
/// many epochs on as many ranks.
fn preempt_and_resume(ranks: usize, signal: &str, to_ranks: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (stopped, whole) = (
        dir.path().join("stopped.nnmpi"),
        dir.path().join("whole.nnmpi"),
    );
    let log = dir.path().join("log.csv");
    let mut args = train_args(&stopped);
    args.extend(["--log", log.to_str().unwrap(), "--epochs", "10000000"].map(String::from));
    let child = command(ranks, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nnmpi");
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |l| l.lines().count()) < 21 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no 20 epochs in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut kill = Command::new(if to_ranks { "pkill" } else { "kill" });
    kill.arg(format!("-{signal}"));
    if to_ranks {
        kill.args(["-P", &child.id().to_string()]);
    } else {
        kill.arg(child.id().to_string());
    }
    assert!(kill.status().unwrap().success(), "{kill:?}");
    let (status, err) = finish(child);
    assert_eq!(status, Some(EXIT_PREEMPTED), "{err}");
    assert!(
        err.contains(&format!("stopped by SIG{signal}")) && err.contains("--resume auto"),
        "{err}"
    );
    let state = load(&stopped).unwrap().training.unwrap().state;
    let total = (state.epoch + 3).to_string();

    args.truncate(args.len() - 4);
    let mut again = args.clone();
    again.extend(["--epochs", &total, "--resume", "auto"].map(String::from));
    let (status, err) = finish(
        command(ranks, &again)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(status, Some(0), "{err}");
    let mut reference = train_args(&whole);
    reference.extend(["--epochs", &total].map(String::from));
    let (status, err) = finish(
        command(ranks, &reference)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(status, Some(0), "{err}");
    let (resumed, uninterrupted) = (load(&stopped).unwrap(), load(&whole).unwrap());
    assert_eq!(resumed.model, uninterrupted.model, "stopped in {state:?}");
    assert_eq!(resumed.training, uninterrupted.training);
}

#[test]
fn sigterm_to_one_process_saves_and_resume_auto_ends_where_an_uninterrupted_run_does() {
    preempt_and_resume(0, "TERM", false);
}

#[test]
fn ctrl_c_stops_cleanly_too() {
    preempt_and_resume(0, "INT", false);
}

#[test]
#[cfg(feature = "mpi")]
fn sigusr1_to_mpirun_is_forwarded_and_two_ranks_save_and_resume_exactly() {
    preempt_and_resume(2, "USR1", false);
}

#[test]
#[cfg(feature = "mpi")]
fn sigterm_to_the_ranks_of_mpirun_saves_and_resumes_exactly() {
    preempt_and_resume(2, "TERM", true);
}

#[test]
fn resume_auto_starts_afresh_without_the_file_and_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnmpi");
    let mut args = train_args(&out);
    args.extend(["--epochs", "2", "--resume", "auto"].map(String::from));
    let (status, err) = finish(command(0, &args).stderr(Stdio::piped()).spawn().unwrap());
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(load(&out).unwrap().training.unwrap().state.epoch, 2);
    // Run again: all epochs are done, nothing changes.
    let before = std::fs::read(&out).unwrap();
    let (status, err) = finish(command(0, &args).stderr(Stdio::piped()).spawn().unwrap());
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    // Other settings than the checkpoint's are refused, naming them.
    let hidden = args.iter().position(|a| a == "--hidden").unwrap();
    args[hidden + 1] = "5".into();
    args.extend(["--lr", "0.5"].map(String::from));
    let (status, err) = finish(command(0, &args).stderr(Stdio::piped()).spawn().unwrap());
    assert_eq!(status, Some(1));
    assert!(
        err.contains("--hidden 5 (the checkpoint has 8)")
            && err.contains("adam (lr 0.5, betas 0.9/0.999, eps 1e-8, weight decay 0) (the checkpoint has adam (lr 0.001"),
        "{err}"
    );
    // Without --out there is nothing to resume from.
    let no_out = ["train", "--data", "data/sonar.csv", "--resume", "auto"].map(String::from);
    let (status, err) = finish(command(0, &no_out).stderr(Stdio::piped()).spawn().unwrap());
    assert_eq!(status, Some(1));
    assert!(err.contains("--resume auto needs --out"), "{err}");
}
