//! The command line: parse flags, set up the ranks, call the library, report errors.

mod bench;
mod context;
mod convert;
mod data_args;
mod info;
mod plan;
mod predict;
mod preempt;
mod progress;
mod prune;
mod ranges;
mod rank_log;
mod sdnn;
mod train;

use anyhow::{Result, bail};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use context::Ctx;
use nnmpi::cluster::{Comm, Grid, SelfComm, Timed};
pub use preempt::{EXIT_PREEMPTED, Preempted};

/// nnmpi trains, evaluates and serves feed-forward neural networks (MLPs), on one machine or
/// across an MPI cluster.
///
/// Typical use:
///   nnmpi train --data data/sonar.csv --hidden 60 --kfold 5 --out sonar.nnmpi
///   nnmpi eval --model sonar.nnmpi --data data/sonar.csv
///   nnmpi predict --model sonar.nnmpi --data data/sonar.csv --out predictions.csv
///
/// On a cluster, start it with mpirun (every command works unchanged; rank 0 reads, prints
/// and writes):
///   mpirun -np 4 --bind-to none -x RAYON_NUM_THREADS=2 nnmpi train ...
#[derive(Parser, Debug)]
#[command(name = "nnmpi", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Threads per rank for the math [default: RAYON_NUM_THREADS, else one per core].
    #[arg(long, global = true, value_name = "N", value_parser = ranges::at_least_one)]
    pub threads: Option<usize>,
    /// Under mpirun: model (every layer's neurons split over the ranks) or data (a whole model
    /// per rank, each batch split over the ranks) [default: model; for sdnn: data].
    #[arg(long, global = true, value_name = "MODE", value_enum)]
    pub parallel: Option<Parallel>,
    /// Under mpirun: D data-parallel groups of M model-parallel ranks (D x M = the number of
    /// ranks); overrides --parallel (model = 1xP, data = Px1).
    #[arg(long, global = true, value_name = "DxM")]
    pub grid: Option<Grid>,
    /// Under MPI: end the job with exit code 124 and a message saying where each rank waited
    /// when a rank has waited this many seconds in one collective (another rank stopped, stuck
    /// or cut off); phases where rank 0 reads or writes files alone allow 6 times as long. 0
    /// turns the watchdog off.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 600)]
    pub stall_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

/// How the ranks share the work when no --grid is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Parallel {
    /// Every layer's neurons split over the ranks.
    Model,
    /// A whole model per rank, each batch split over the ranks.
    Data,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on a CSV, IDX or NPY data set (optionally with k-fold cross-validation) and save it.
    Train(Box<train::TrainArgs>),
    /// Write a saved model's predictions for a data set as CSV.
    Predict(predict::PredictArgs),
    /// Score a saved model on labelled data: loss, accuracy, confusion matrix.
    Eval(predict::EvalArgs),
    /// Remove connections (magnitude) and neurons from a saved model, fine-tuning between steps, and store it compactly.
    Prune(prune::PruneArgs),
    /// Describe a saved model (or a layer list), and how it splits over ranks.
    Info(info::InfoArgs),
    /// Time forward (predict) or training steps of a synthetic network; run it under mpirun for scaling.
    Bench(bench::BenchArgs),
    /// Predict the time per batch of every grid of N ranks from `bench --calibrate`'s figures, and recommend one.
    Plan(plan::PlanArgs),
    /// Write a model as safetensors, for PyTorch, NumPy and other frameworks.
    Export(convert::ExportArgs),
    /// Read a safetensors model (as written by export) into an nnmpi checkpoint.
    Import(convert::ImportArgs),
    /// Write a data set (CSV, IDX) as NPY files that every rank maps and reads only in part
    /// (a CSV file is read one sample at a time: its size is not bounded by memory).
    Convert(convert::ConvertArgs),
    /// Run the GraphChallenge sparse deep neural network benchmark: read its files, time inference, check the categories.
    ///
    /// Under mpirun the inputs are dealt over the ranks, each rank holding the whole network
    /// (the default here is --parallel data). With --parallel model, or --grid DxM, the ranks
    /// (of each group of M) split every layer's neurons instead, for networks too big for one
    /// rank: each reads or generates only its neurons of each layer.
    Sdnn(sdnn::SdnnArgs),
}

impl Cli {
    /// The grid of `ranks` ranks these flags ask for. Without --parallel, sdnn deals its
    /// inputs over the ranks (data); every other command splits the neurons (model).
    pub fn grid_for(&self, ranks: usize) -> Grid {
        let default = match self.command {
            Command::Sdnn(_) => Parallel::Data,
            _ => Parallel::Model,
        };
        self.grid.unwrap_or(match self.parallel.unwrap_or(default) {
            Parallel::Data => Grid::data(ranks),
            Parallel::Model => Grid::model(ranks),
        })
    }
}

/// Parses the process arguments, starts MPI when launched by mpirun, and runs the command.
pub fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut Cli::command()).exit())
        .unwrap_or_else(|never| never);
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
    }
    // The whole command runs on a worker of the rayon pool: a parallel product started from
    // outside the pool is injected into it and the caller sleeps until a worker wakes to run
    // it (and wakes it back), which cost more than the work for small products (batch 1 on 2
    // threads: 87 µs, now 62 µs). MPI is initialised on that same thread, so its
    // calls all come from the thread that initialised it (MPI_THREAD_FUNNELED).
    rayon::scope(|_| run_command(&cli, &matches))
}

/// Starts MPI when launched by mpirun, and runs the command.
fn run_command(cli: &Cli, matches: &ArgMatches) -> Result<()> {
    #[cfg(feature = "mpi")]
    if nnmpi::cluster::launched_by_mpi() {
        let runtime = nnmpi::cluster::MpiRuntime::init()?;
        let world = runtime.world();
        if world.size() > 1 {
            runtime.abort_job_on_panic();
            runtime.abort_job_on_stall(
                (cli.stall_timeout > 0).then(|| std::time::Duration::from_secs(cli.stall_timeout)),
                "--stall-timeout",
            );
        }
        let result = run(cli, matches, world.clone());
        if let Err(e) = &result
            && !e.is::<Preempted>()
        {
            end_job(&world, e);
        }
        drop(world);
        drop(runtime);
        return result;
    }
    run(cli, matches, SelfComm)
}

/// How long a rank other than 0 waits before printing its error and ending the job itself.
#[cfg(feature = "mpi")]
const QUIET_RANKS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// On more than one rank, an error must end every rank, not leave the others waiting in a
/// collective: print it and `MPI_Abort`. Rank 0 speaks first; another rank waits
/// [`QUIET_RANKS_WAIT`], so that when every rank fails alike (a bad flag), rank 0's abort
/// ends it first (an abort takes seconds to cross hosts) and the job shows the message once.
#[cfg(feature = "mpi")]
fn end_job<C: Comm>(world: &C, e: &anyhow::Error) {
    if world.size() == 1 {
        return;
    }
    if world.rank() == 0 {
        eprintln!("error: {}", describe(e));
    } else {
        std::thread::sleep(QUIET_RANKS_WAIT);
        eprintln!(
            "error on rank {} of {}: {}",
            world.rank(),
            world.size(),
            describe(e)
        );
    }
    world.abort(1);
}

/// An error as the command line says it: the library names a parameter as the library calls
/// it (`batch_size`, `k`), the user gave a flag (`--batch-size`, `--kfold`).
pub fn describe(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<nnmpi::Error>() {
            Some(library) => in_flags(library),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// A library error as the command line says it: parameters by their flags.
fn in_flags(e: &nnmpi::Error) -> String {
    match e {
        nnmpi::Error::Parameter { name, message } => {
            let flag = match *name {
                "k" => "--kfold".to_string(),
                other => format!("--{}", other.replace('_', "-")),
            };
            format!("{flag} {message}")
        }
        nnmpi::Error::Diverged { reason } => format!(
            "training diverged: {reason}; try a smaller --lr, or normalised inputs (--normalize zscore)"
        ),
        other => other.to_string(),
    }
}

/// Every rank must run the same command with the same flags (an MPMD launch with different
/// ones would pair up mismatched collectives and hang): compare with rank 0's. Every rank
/// learns which ranks differ, so rank 0 reports it (once, for the job) and all of them stop.
fn check_same_arguments<C: Comm>(world: &C) -> Result<()> {
    let mine = std::env::args().skip(1).collect::<Vec<_>>().join("\0");
    let mut root = mine.clone().into_bytes();
    world.broadcast_bytes(0, &mut root);
    let mut differs = vec![0u8; world.size()];
    let own = [u8::from(root != mine.as_bytes())];
    world.all_gather_varcount(&own, &mut differs, &vec![1; world.size()]);
    let others: Vec<String> = (0..world.size())
        .filter(|&r| differs[r] != 0)
        .map(|r| r.to_string())
        .collect();
    if !others.is_empty() {
        let root = String::from_utf8_lossy(&root).replace('\0', " ");
        let noun = if others.len() == 1 { "rank" } else { "ranks" };
        let mut message = format!(
            "{noun} {} of {} started with other arguments than rank 0 ({root:?}); every rank must run the same command",
            others.join(", "),
            world.size()
        );
        if differs[world.rank()] != 0 {
            message += &format!(" (this rank: {:?})", mine.replace('\0', " "));
        }
        bail!(message);
    }
    Ok(())
}

/// For the test suite: `NNMPI_INJECT_PANIC=R` makes rank `R` panic here, while the other
/// ranks go on into the command and wait for it in a collective.
fn inject_test_fault<C: Comm>(world: &C) {
    if let Ok(rank) = std::env::var("NNMPI_INJECT_PANIC")
        && rank.parse() == Ok(world.rank())
    {
        panic!("injected panic on rank {rank} (NNMPI_INJECT_PANIC)");
    }
}

/// Refuses a Slurm step of several tasks that are not one MPI job of as many ranks: with
/// Slurm's default `MpiDefault=none`, `srun -n 2 nnmpi ...` starts two processes that each see
/// no MPI, and each would run the whole command alone and write the same files. `env` reads
/// an environment variable.
/// Only task 0 of the step says so; the others end with [`ReportedElsewhere`].
fn check_slurm_launch(world_size: usize, env: impl Fn(&str) -> Option<String>) -> Result<()> {
    let Some(tasks) = env("SLURM_STEP_NUM_TASKS").and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return Ok(());
    };
    if tasks > 1 && world_size != tasks {
        let task = env("SLURM_PROCID").and_then(|v| v.trim().parse::<usize>().ok());
        if task.is_some_and(|t| t > 0) {
            return Err(ReportedElsewhere.into());
        }
        bail!(
            "Slurm started {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) but they are {}: each would run the whole command alone and write the same files. Start nnmpi with `srun --mpi=pmix ...` (`srun --mpi=list` shows the plugins this cluster has), or with mpirun inside the allocation",
            if world_size == 1 {
                "not one MPI job".to_string()
            } else {
                format!("an MPI job of {world_size} ranks")
            }
        );
    }
    Ok(())
}

/// The error of a process whose failure another process of the job reports: `main` exits
/// with status 1 and prints nothing, so the user reads the message once.
#[derive(Debug)]
pub struct ReportedElsewhere;

impl std::fmt::Display for ReportedElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the failure is reported by another process of the job")
    }
}

impl std::error::Error for ReportedElsewhere {}

fn run<C: Comm>(cli: &Cli, matches: &ArgMatches, world: C) -> Result<()> {
    check_slurm_launch(world.size(), |name| std::env::var(name).ok())?;
    check_same_arguments(&world)?;
    inject_test_fault(&world);
    // `info` only describes a plan (its --grid is the one to describe), so it runs on any job.
    let grid = match cli.command {
        Command::Info(_) => Grid::model(world.size()),
        _ => cli.grid_for(world.size()),
    };
    let world = Timed::new(world);
    let comm_tally = world.tally();
    let ctx = Ctx::new(world, grid, comm_tally)?;
    match &cli.command {
        Command::Train(args) => {
            let sub = matches
                .subcommand_matches("train")
                .expect("train subcommand matched");
            train::run(&ctx, args, sub)
        }
        Command::Predict(args) => predict::run_predict(&ctx, args),
        Command::Eval(args) => predict::run_eval(&ctx, args),
        Command::Prune(args) => prune::run(&ctx, args),
        Command::Info(args) => info::run(&ctx, cli, args),
        Command::Bench(args) => bench::run(&ctx, args),
        // It only computes: rank 0 prints.
        Command::Plan(args) if ctx.is_root() => plan::run(args),
        Command::Plan(_) => Ok(()),
        Command::Export(args) => convert::run_export(&ctx, args),
        Command::Import(args) => convert::run_import(&ctx, args),
        Command::Convert(args) => convert::run_convert(&ctx, args),
        Command::Sdnn(args) => sdnn::run(&ctx, args),
    }
}

#[cfg(test)]
mod tests {
    use super::check_slurm_launch;

    #[test]
    fn a_slurm_step_of_several_tasks_must_be_one_mpi_job_of_as_many_ranks() {
        let step = |n: &'static str| {
            move |name: &str| (name == "SLURM_STEP_NUM_TASKS").then(|| n.to_string())
        };
        let outside = |_: &str| None;
        assert!(check_slurm_launch(1, outside).is_ok());
        assert!(check_slurm_launch(1, step("1")).is_ok());
        assert!(check_slurm_launch(2, step("2")).is_ok());
        let alone = check_slurm_launch(1, step("2")).unwrap_err().to_string();
        assert!(
            alone.contains("not one MPI job") && alone.contains("srun --mpi=pmix"),
            "{alone}"
        );
        let second_task = |name: &str| match name {
            "SLURM_STEP_NUM_TASKS" => Some("2".to_string()),
            "SLURM_PROCID" => Some("1".to_string()),
            _ => None,
        };
        let quiet = check_slurm_launch(1, second_task).unwrap_err();
        assert!(quiet.is::<super::ReportedElsewhere>(), "{quiet}");
        let fewer = check_slurm_launch(2, step("4")).unwrap_err().to_string();
        assert!(fewer.contains("an MPI job of 2 ranks"), "{fewer}");
    }
}
