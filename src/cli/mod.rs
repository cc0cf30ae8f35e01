//! The command line: parse flags, call the library, report errors with context.

mod data_args;
mod info;
mod predict;
mod progress;
mod train;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// nnmpi trains, evaluates and serves feed-forward neural networks (MLPs).
///
/// Typical use:
///   nnmpi train --data data/sonar.csv --hidden 60 --kfold 5 --out sonar.nnmpi
///   nnmpi eval --model sonar.nnmpi --data data/sonar.csv
///   nnmpi predict --model sonar.nnmpi --data data/sonar.csv --out predictions.csv
#[derive(Parser, Debug)]
#[command(name = "nnmpi", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Threads for the math [default: RAYON_NUM_THREADS, else one per core].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on a CSV or IDX data set (optionally with k-fold cross-validation) and save it.
    Train(train::TrainArgs),
    /// Write a saved model's predictions for a data set as CSV.
    Predict(predict::PredictArgs),
    /// Score a saved model on labelled data: loss, accuracy, confusion matrix.
    Eval(predict::EvalArgs),
    /// Describe a saved model: layers, parameters, memory, training state.
    Info(info::InfoArgs),
}

/// Parses the process arguments and runs the command.
pub fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.exit())
        .unwrap_or_else(|never| never);
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
    }
    match &cli.command {
        Command::Train(args) => {
            let sub = matches
                .subcommand_matches("train")
                .expect("train subcommand matched");
            train::run(args, sub)
        }
        Command::Predict(args) => predict::run_predict(args),
        Command::Eval(args) => predict::run_eval(args),
        Command::Info(args) => info::run(args),
    }
}
