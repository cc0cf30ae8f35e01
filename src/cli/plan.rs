//! `nnmpi plan`: the predicted time per batch of a forward pass and of a training step for
//! every grid `DxM` of N ranks, from a calibration that `nnmpi bench --calibrate` measured
//! (the model is `nnmpi::bench::cost`'s), and the grid to choose, with the reason.

use super::bench::{PlanLine, plan_svg};
use anyhow::{Context, Result, bail};
use clap::Args;
use nnmpi::bench::cost::{AlphaBeta, Calibration, Estimate, estimate, grids};
use nnmpi::bench::{Mode, duration};
use nnmpi::cluster::Grid;
use nnmpi::model::shape_of;
use std::path::PathBuf;

/// Flags of `nnmpi plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The calibration that `nnmpi bench --calibrate` wrote.
    #[arg(long, value_name = "PATH", default_value = "calibration.json")]
    pub calibration: PathBuf,
    /// Layer sizes, inputs first [default: the calibration's network].
    #[arg(long, value_delimiter = ',', value_parser = super::ranges::at_least_one)]
    pub layers: Option<Vec<usize>>,
    /// Samples per batch, the whole job's [default: the calibration's].
    #[arg(long, value_parser = super::ranges::at_least_one)]
    pub batch: Option<usize>,
    /// Numbers of ranks to plan for, e.g. 2 or 16,64,256,1024.
    #[arg(long, value_delimiter = ',', required = true, value_parser = super::ranges::at_least_one)]
    pub ranks: Vec<usize>,
    /// The network's latency per message step in microseconds, instead of the calibration's
    /// (e.g. for a cluster not calibrated yet).
    #[arg(long, value_name = "US")]
    pub latency_us: Option<f64>,
    /// The network's bandwidth in GB/s, instead of the calibration's.
    #[arg(long, value_name = "GB/S")]
    pub bandwidth_gbs: Option<f64>,
    /// Also draw the predicted time per batch against the ranks (best grid, model and data
    /// parallel) into this SVG file.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Print the estimates as JSON lines instead of the table (one object per rank count and grid).
    #[arg(long)]
    pub json: bool,
}

/// A calibration in two lines.
pub fn describe_calibration(cal: &Calibration) -> String {
    let gflops = |s: f64| 1e-9 / s;
    let mut text = format!(
        "calibration: {} at batch {} and {}, {} rank(s) x {} thread(s) timed at once (the slowest counts):\n  \
         predict {:.1} GFLOP/s + {:.2} ns per parameter per batch; train {:.1} GFLOP/s + {:.2} ns per parameter per step",
        shape_of(&cal.layers),
        cal.batch,
        (cal.batch / 4).max(1),
        cal.ranks,
        cal.threads_per_rank,
        gflops(cal.predict.seconds_per_flop),
        cal.predict.seconds_per_parameter * 1e9,
        gflops(cal.train.seconds_per_flop),
        cal.train.seconds_per_parameter * 1e9,
    );
    text += &match cal.network {
        Some(n) => format!("\n  {}", describe_network(n)),
        None => {
            "\n  network: not measured (one rank); give --latency-us and --bandwidth-gbs to plan"
                .into()
        }
    };
    text
}

fn describe_network(n: AlphaBeta) -> String {
    let reduce = if n.gamma > 0.0 {
        format!(", reductions {:.2} GB/s", 1e-9 / n.gamma)
    } else {
        String::new()
    };
    format!(
        "network: latency {:.1} us per message step, bandwidth {:.2} GB/s{reduce}",
        n.alpha * 1e6,
        1e-9 / n.beta
    )
}

/// The network to plan with: the calibration's, with the user's overrides.
fn network(cal: &Calibration, args: &PlanArgs) -> Result<AlphaBeta> {
    let measured = cal.network;
    let alpha = match (args.latency_us, measured) {
        (Some(us), _) if us.is_finite() && us >= 0.0 => us * 1e-6,
        (Some(us), _) => bail!("--latency-us {us}: give microseconds, 0 or more"),
        (None, Some(n)) => n.alpha,
        (None, None) => bail!(
            "{} was measured on one rank and has no network figures: give --latency-us and --bandwidth-gbs",
            args.calibration.display()
        ),
    };
    let beta = match (args.bandwidth_gbs, measured) {
        (Some(g), _) if g.is_finite() && g > 0.0 => 1e-9 / g,
        (Some(g), _) => bail!("--bandwidth-gbs {g}: give GB/s, more than 0"),
        (None, Some(n)) => n.beta,
        (None, None) => bail!(
            "{} was measured on one rank and has no network figures: give --latency-us and --bandwidth-gbs",
            args.calibration.display()
        ),
    };
    let gamma = measured.map_or(0.0, |n| n.gamma);
    Ok(AlphaBeta { alpha, beta, gamma })
}

fn ms(s: f64) -> String {
    duration(s * 1e3)
}

fn grid_name(g: Grid) -> String {
    match (g.data, g.model) {
        (1, 1) => "1x1".into(),
        (1, m) => format!("1x{m} (model)"),
        (d, 1) => format!("{d}x1 (data)"),
        (d, m) => format!("{d}x{m}"),
    }
}

/// What a step's time is made of.
fn parts(e: &Estimate) -> String {
    let mut text = format!("compute {}", ms(e.compute));
    if e.model_comm > 0.0 {
        text += &format!(", model-group collectives {}", ms(e.model_comm));
    }
    if e.data_comm > 0.0 {
        text += &format!(", gradient all-reduce {}", ms(e.data_comm));
    }
    text
}

/// The grid that trains fastest and why, against the runner-up.
fn recommendation(train: &[Estimate]) -> String {
    let mut order: Vec<&Estimate> = train.iter().collect();
    order.sort_by(|a, b| a.total().total_cmp(&b.total()));
    let best = order[0];
    let mut text = format!(
        "recommended: --grid {}x{}: {} per training step ({})",
        best.grid.data,
        best.grid.model,
        ms(best.total()),
        parts(best)
    );
    if let Some(next) = order.get(1) {
        text += &format!(
            "; next, {}: {} ({}), {:.0}% slower",
            grid_name(next.grid),
            ms(next.total()),
            parts(next),
            100.0 * (next.total() / best.total() - 1.0)
        );
    }
    text
}

/// Runs `nnmpi plan` (on one process: it only computes).
pub fn run(args: &PlanArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.calibration).with_context(|| {
        format!(
            "cannot read --calibration {} (write one with nnmpi bench --calibrate)",
            args.calibration.display()
        )
    })?;
    let cal: Calibration = serde_json::from_str(&text).with_context(|| {
        format!(
            "--calibration {} is not a calibration written by nnmpi bench --calibrate",
            args.calibration.display()
        )
    })?;
    let layers = args.layers.clone().unwrap_or_else(|| cal.layers.clone());
    if layers.len() < 2 {
        bail!("--layers: give at least inputs and outputs");
    }
    let batch = args.batch.unwrap_or(cal.batch);
    let net = network(&cal, args)?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    say(describe_calibration(&cal));
    if args.latency_us.is_some() || args.bandwidth_gbs.is_some() {
        say(format!("  planned with the {}", describe_network(net)));
    }
    say(format!(
        "plan: {}, batch {batch}, dense, {} thread(s) per rank as calibrated\n\
         ranks  grid            predict/batch  comm    train/step     comm    bytes/rank/step",
        shape_of(&layers),
        cal.threads_per_rank
    ));
    let mut lines: Vec<PlanLine> = [
        "train, best grid",
        "train, 1xN (model)",
        "train, Nx1 (data)",
        "predict, best grid",
    ]
    .iter()
    .map(|l| (l.to_string(), Vec::new()))
    .collect();
    for &n in &args.ranks {
        let options = grids(n, batch);
        let predict: Vec<Estimate> = options
            .iter()
            .map(|&g| estimate(&cal, net, &layers, batch, g, Mode::Predict))
            .collect();
        let train: Vec<Estimate> = options
            .iter()
            .map(|&g| estimate(&cal, net, &layers, batch, g, Mode::Train))
            .collect();
        for (p, t) in predict.iter().zip(&train) {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ranks": n,
                        "grid": format!("{}x{}", t.grid.data, t.grid.model),
                        "predict_ms": p.total() * 1e3,
                        "predict_comm_share": p.comm_share(),
                        "train_ms": t.total() * 1e3,
                        "train_comm_share": t.comm_share(),
                        "bytes_per_step": t.bytes,
                    })
                );
                continue;
            }
            println!(
                "{n:<6} {:<15} {:>13}  {:>4.0}%  {:>13}  {:>4.0}%   {}",
                grid_name(t.grid),
                ms(p.total()),
                100.0 * p.comm_share(),
                ms(t.total()),
                100.0 * t.comm_share(),
                nnmpi::cluster::human_bytes(t.bytes as u64)
            );
        }
        say(format!("  {}", recommendation(&train)));
        let best = |v: &[Estimate]| v.iter().map(Estimate::total).fold(f64::INFINITY, f64::min);
        let x = n as f64;
        lines[0].1.push((x, best(&train) * 1e3));
        for (line, data) in [(1, 1), (2, n)] {
            if let Some(e) = train.iter().find(|e| e.grid.data == data) {
                lines[line].1.push((x, e.total() * 1e3));
            }
        }
        lines[3].1.push((x, best(&predict) * 1e3));
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "{} batch {batch}: {}, {:.0} GFLOP/s per rank (train)",
            shape_of(&layers),
            describe_network(net).trim_start_matches("network: "),
            1e-9 / cal.train.seconds_per_flop
        );
        let svg = plan_svg(&title, &lines)?;
        nnmpi::io::write_atomic(path, svg.as_bytes())
            .with_context(|| format!("writing --svg {}", path.display()))?;
        say(format!("wrote {}", path.display()));
    }
    Ok(())
}
