//! `nnmpi predict` and `nnmpi eval`: run a saved model on a data set.

use super::context::Ctx;
use super::data_args::DataArgs;
use anyhow::{Context, Result};
use clap::Args;
use nnmpi::cluster::{Comm, watchdog};
use nnmpi::data::Dataset;
use nnmpi::exec::Engine;
use nnmpi::model::Task;
use nnmpi::train::{Loss, evaluate, predict_all};
use std::io::Write;
use std::path::PathBuf;

/// Flags shared by `predict` and `eval`.
#[derive(Args, Debug)]
pub struct ModelInput {
    /// Checkpoint written by `nnmpi train --out`.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 1024, value_parser = super::ranges::at_least_one)]
    pub batch_size: usize,
}

/// Flags of `nnmpi predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub input: ModelInput,
    /// Where to write the predictions (CSV: the predicted label, then each class's probability); - for stdout.
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub out: PathBuf,
    /// Print every probability with all its digits (the shortest text that reads back as the
    /// same f32) instead of 6 decimals.
    #[arg(long)]
    pub exact: bool,
}

/// Flags of `nnmpi eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub input: ModelInput,
}

impl ModelInput {
    /// Loads the model and the data (read by rank 0), normalised as the model was trained.
    /// Returns the model's task, the loss its output implies, the data and this rank's
    /// engine (which keeps only this rank's shard of the network).
    fn load<C: Comm>(&self, ctx: &Ctx<C>) -> Result<(Task, Loss, Dataset, Engine<C>)> {
        let model = ctx.load_checkpoint(&self.model)?.model;
        let mut data = ctx.load_data(&self.data, || self.data.load_for(&model))?;
        data.normalize(&model.normalizer)?;
        let engine =
            Engine::sharded(&model.network, ctx.topology.model.clone(), ctx.par).for_inference();
        let loss = nnmpi::recipe::implied_loss(model.network.output_activation(), &model.task);
        watchdog::set_phase("predicting", false);
        Ok((model.task, loss, data, engine))
    }
}

/// Runs `nnmpi predict`: the data groups share the rows, rank 0 writes the result.
pub fn run_predict<C: Comm>(ctx: &Ctx<C>, args: &PredictArgs) -> Result<()> {
    let (task, _, data, mut engine) = args.input.load(ctx)?;
    let outputs = engine.outputs();
    let groups = &ctx.topology.data;
    let y = predict_all(&mut engine, groups, &data, args.input.batch_size)?;
    let Some(y) = y.filter(|_| ctx.is_root()) else {
        return Ok(());
    };
    let mut text = String::with_capacity(data.len() * 16 * (outputs + 1));
    match &task {
        Task::Classification { classes } => {
            let header: Vec<String> = classes
                .iter()
                .map(|c| csv_cell(&format!("p_{c}")))
                .collect();
            text += &format!("prediction,{}\n", header.join(","));
            for row in y.chunks_exact(outputs) {
                let probs: Vec<f32> = if outputs == 1 {
                    vec![1.0 - row[0], row[0]]
                } else {
                    row.to_vec()
                };
                let best = nnmpi::train::predicted_class(row, 1, 0);
                let cells: Vec<String> = probs
                    .iter()
                    .map(|p| {
                        if args.exact {
                            format!("{p}")
                        } else {
                            format!("{p:.6}")
                        }
                    })
                    .collect();
                text += &format!("{},{}\n", csv_cell(&classes[best]), cells.join(","));
            }
        }
        Task::Regression => {
            text += "prediction\n";
            for v in &y {
                text += &format!("{v}\n");
            }
        }
    }
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing predictions to stdout")?;
    } else {
        nnmpi::io::write_atomic(&args.out, text.as_bytes())
            .with_context(|| format!("writing predictions to {}", args.out.display()))?;
        eprintln!("wrote {} predictions to {}", data.len(), args.out.display());
    }
    Ok(())
}

/// `field` as one CSV cell (RFC 4180): in double quotes, with its quotes doubled, when it holds
/// a comma, a quote or a line break; as it is otherwise.
fn csv_cell(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Runs `nnmpi eval`: the data groups share the rows, rank 0 prints the totals.
pub fn run_eval<C: Comm>(ctx: &Ctx<C>, args: &EvalArgs) -> Result<()> {
    let (_, loss, data, mut engine) = args.input.load(ctx)?;
    let groups = &ctx.topology.data;
    let eval = evaluate(&mut engine, groups, &data, loss, args.input.batch_size)?;
    if !ctx.is_root() {
        return Ok(());
    }
    println!("samples   {}", eval.samples);
    println!("loss      {:.6} ({loss})", eval.loss);
    if let Some(a) = eval.accuracy {
        println!("accuracy  {:.2}%", 100.0 * a);
    }
    if let Some(confusion) = &eval.confusion {
        let classes = &data.classes;
        let width = classes.iter().map(String::len).max().unwrap_or(1).max(6);
        println!("\nconfusion matrix (rows: true class, columns: predicted)");
        print!("{:>width$}", "");
        for c in classes {
            print!(" {c:>width$}");
        }
        println!();
        for (c, row) in classes.iter().zip(confusion) {
            print!("{c:>width$}");
            for n in row {
                print!(" {n:>width$}");
            }
            println!();
        }
    }
    Ok(())
}
