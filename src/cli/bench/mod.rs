//! `nnmpi bench`: time forward passes, training steps or epochs of a synthetic network, as a
//! table or JSON, with the share of the time spent in communication; or a scaling sweep
//! (`--sweep`). The measuring is `nnmpi::bench`'s.

mod plot;
pub use plot::{PlanLine, plan_svg};
mod sweep;

use super::context::{Ctx, say};
use anyhow::{Context, Result, bail};
use clap::Args;
use nnmpi::bench::{Case, Mode, measure};
use nnmpi::cluster::Comm;
use nnmpi::model::{Activation, Format};
use std::path::PathBuf;
use sweep::{Combo, Launcher};

/// Flags of `nnmpi bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Layer sizes, inputs first.
    #[arg(long, value_delimiter = ',', default_value = "4096,4096,4096", value_parser = super::ranges::at_least_one)]
    pub layers: Vec<usize>,
    /// Samples per batch (the whole job's; data-parallel groups share it).
    #[arg(long, default_value_t = 256, value_parser = super::ranges::at_least_one)]
    pub batch: usize,
    /// predict (a forward pass), train (forward, backward and an SGD update on one batch) or
    /// epoch (a training epoch of --samples synthetic samples, softmax cross-entropy).
    #[arg(long, default_value = "predict")]
    pub mode: Mode,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = super::ranges::at_least_one)]
    pub reps: usize,
    /// Untimed repetitions first (buffers, caches, MPI connections).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Calls per repetition [default: enough for about 10 ms; 1 for epochs].
    #[arg(long, value_parser = super::ranges::at_least_one)]
    pub inner: Option<usize>,
    /// Samples of the synthetic epoch (--mode epoch).
    #[arg(long, default_value_t = 60000, value_parser = super::ranges::at_least_one)]
    pub samples: usize,
    /// Hidden activation.
    #[arg(long, default_value = "relu")]
    pub activation: Activation,
    /// Output activation (--mode epoch always uses softmax).
    #[arg(long, default_value = "identity")]
    pub output_activation: Activation,
    /// Prune every layer to this fraction of absent connections first (magnitude, per layer).
    #[arg(long, default_value_t = 0.0, value_parser = super::ranges::fraction, allow_negative_numbers = true)]
    pub sparsity: f64,
    /// Prune blocks of this many consecutive neurons reading the same input (as `nnmpi prune
    /// --block`); 4 lets the sparse kernels run four rows at a time.
    #[arg(long, default_value_t = 1, value_name = "ROWS", value_parser = super::ranges::at_least_one)]
    pub block: usize,
    /// How the (pruned) layers are stored and run: auto (sparse below the measured crossover density), dense or sparse.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Print one JSON object instead of the table (with --sweep: the points).
    #[arg(long)]
    pub json: bool,
    /// Scaling sweep over these RANKSxTHREADS combinations (e.g. 1x1,2x1,1x2,2x2), for every
    /// --models size; writes sweep.csv, sweep.json and sweep.svg into --out-dir.
    #[arg(long, value_delimiter = ',', value_name = "RxT,...")]
    pub sweep: Option<Vec<Combo>>,
    /// Model sizes of the sweep: small (60-60-1), medium (1000-1000-1000-1), large
    /// (4096-4096-4096); or the --layers network with `custom`.
    #[arg(long, value_delimiter = ',', default_value = "small,medium,large")]
    pub models: Vec<String>,
    /// Directory for the sweep's files.
    #[arg(long, default_value = "sweep")]
    pub out_dir: PathBuf,
    /// Redraw --out-dir's sweep.svg (and sweep.csv) from its sweep.json, measuring nothing.
    #[arg(long, conflicts_with = "sweep")]
    pub replot: bool,
    /// Start `mpirun -np R --bind-to none` for every sweep combination (run nnmpi itself
    /// without mpirun); otherwise the sweep runs inside this job on its first R ranks.
    #[arg(long, requires = "sweep")]
    pub launch: bool,
    /// The launcher --launch calls.
    #[arg(long, default_value = "mpirun", requires = "launch")]
    pub mpirun: PathBuf,
    /// Extra launcher arguments for --launch, e.g. "--hostfile hostfiles/localhost".
    #[arg(
        long,
        default_value = "",
        requires = "launch",
        allow_hyphen_values = true
    )]
    pub mpirun_args: String,
    /// Measure what `nnmpi plan` needs instead: every rank's compute rates on the --layers
    /// network at --batch and a quarter of it (all ranks at once), and the latency and bandwidth
    /// of all-gathers and all-reduces among all ranks; writes them to --calibration. Run it
    /// under mpirun on the nodes (and with the threads per rank) you will train on.
    #[arg(long, conflicts_with_all = ["sweep", "replot"])]
    pub calibrate: bool,
    /// The file --calibrate writes (JSON).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "calibration.json",
        requires = "calibrate"
    )]
    pub calibration: PathBuf,
}

impl BenchArgs {
    /// The benchmark these flags describe, for `layers`.
    fn case(&self, layers: Vec<usize>) -> Case {
        Case {
            layers,
            batch: self.batch,
            mode: self.mode,
            activation: self.activation,
            output: self.output_activation,
            sparsity: self.sparsity,
            block: self.block,
            format: self.format,
            reps: self.reps,
            warmup: self.warmup,
            samples: self.samples,
            inner: self.inner,
        }
    }
}

/// Runs `nnmpi bench` on every rank.
pub fn run<C: Comm>(ctx: &Ctx<C>, args: &BenchArgs) -> Result<()> {
    if args.replot {
        let written = ctx.on_root(|| {
            let points = sweep::read(&args.out_dir)?;
            sweep::write(&args.out_dir, &points)
        })?;
        for f in written.into_iter().flatten() {
            say!(ctx, "wrote {}", f.display());
        }
        return Ok(());
    }
    if args.calibrate {
        return run_calibration(ctx, args);
    }
    if let Some(combos) = &args.sweep {
        return run_sweep(ctx, args, combos);
    }
    let report = measure(
        ctx.world(),
        ctx.topology.grid(),
        ctx.par,
        &args.case(args.layers.clone()),
    )?;
    if let Some(r) = report {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{r}");
        }
    }
    Ok(())
}

/// `nnmpi bench --calibrate`: measures, prints and writes the calibration.
fn run_calibration<C: Comm>(ctx: &Ctx<C>, args: &BenchArgs) -> Result<()> {
    ctx.check_outputs(&[("--calibration", Some(&args.calibration))])?;
    let cal =
        nnmpi::bench::cost::calibrate(ctx.world(), ctx.par, &args.layers, args.batch, args.reps)?;
    ctx.on_root(|| {
        let json = serde_json::to_string_pretty(&cal)?;
        nnmpi::io::write_atomic(&args.calibration, json.as_bytes())
            .with_context(|| format!("writing --calibration {}", args.calibration.display()))
    })?;
    say!(ctx, "{}", super::plan::describe_calibration(&cal));
    say!(ctx, "wrote {}", args.calibration.display());
    Ok(())
}

fn run_sweep<C: Comm>(ctx: &Ctx<C>, args: &BenchArgs, combos: &[Combo]) -> Result<()> {
    let mut models = Vec::new();
    for name in &args.models {
        let layers = match name.as_str() {
            "custom" => args.layers.clone(),
            other => match sweep::model_size(other) {
                Some(l) => l,
                None => bail!("--models: '{other}' is not small, medium, large or custom"),
            },
        };
        models.push((name.clone(), args.case(layers)));
    }
    let points = if args.launch {
        if ctx.world().size() > 1 {
            bail!("--launch starts its own mpirun jobs: run nnmpi bench --launch without mpirun");
        }
        let launcher = Launcher {
            mpirun: args.mpirun.clone(),
            args: args
                .mpirun_args
                .split_whitespace()
                .map(String::from)
                .collect(),
            exe: std::env::current_exe().context("finding the nnmpi executable")?,
        };
        Some(sweep::run_launched(&launcher, &models, combos)?)
    } else {
        sweep::run_in_job(ctx.world(), &models, combos)?
    };
    let Some(points) = points else {
        return Ok(());
    };
    let files = sweep::write(&args.out_dir, &points)?;
    if args.json {
        println!("{}", serde_json::to_string(&points)?);
        return Ok(());
    }
    say!(ctx, "model   RxT   time/call     speed-up  comm");
    for p in &points {
        say!(
            ctx,
            "{:<7} {:<5} {:>12}  {:>7.2}x  {:>4.1}%",
            p.model,
            p.combo.to_string(),
            nnmpi::bench::duration(p.report.median_ms),
            p.speedup,
            100.0 * p.report.comm_share
        );
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    say!(ctx, "wrote {}", names.join(", "));
    Ok(())
}
