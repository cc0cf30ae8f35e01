//! `nnmpi info`: what a checkpoint holds.

use anyhow::Result;
use clap::Args;
use nnmpi::io::load;
use nnmpi::model::Task;
use std::path::PathBuf;

/// Flags of `nnmpi info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint to describe.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Runs `nnmpi info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let ckpt = load(&args.model)?;
    let net = &ckpt.model.network;
    let file_size = std::fs::metadata(&args.model)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    println!("model     {} ({})", args.model.display(), bytes(file_size));
    println!("layers    {}", net.shape());
    match &ckpt.model.task {
        Task::Classification { classes } => println!(
            "task      classification, {} classes: {}",
            classes.len(),
            classes.join(", ")
        ),
        Task::Regression => println!("task      regression"),
    }
    println!("normalise {}", ckpt.model.normalizer.kind());
    println!();
    println!(
        "{:>5}  {:>8}  {:>8}  {:<12} {:>12}  {:>10}",
        "layer", "inputs", "neurons", "activation", "parameters", "memory"
    );
    for (i, l) in net.layers().iter().enumerate() {
        println!(
            "{:>5}  {:>8}  {:>8}  {:<12} {:>12}  {:>10}",
            i,
            l.inputs(),
            l.outputs(),
            l.activation().to_string(),
            l.parameter_count(),
            bytes(l.parameter_count() * 4)
        );
    }
    println!(
        "{:>5}  {:>8}  {:>8}  {:<12} {:>12}  {:>10}",
        "total",
        "",
        "",
        "",
        net.parameter_count(),
        bytes(net.parameter_count() * 4)
    );
    println!(
        "\nforward pass: {} multiply-adds per sample",
        net.macs_per_sample()
    );
    if let Some(t) = &ckpt.training {
        println!(
            "training: {} of {} epochs done, batch {}, loss {}, optimiser {:?}",
            t.state.epoch, t.config.epochs, t.config.batch_size, t.config.loss, t.config.optimizer
        );
    }
    Ok(())
}
