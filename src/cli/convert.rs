//! `nnmpi export` and `nnmpi import`: a model to and from safetensors, for PyTorch, NumPy and
//! other frameworks (the layout is documented in `nnmpi::io::safetensors`); `nnmpi convert`:
//! a data set to NPY files, which every rank then maps and reads only in part.

use super::context::{Ctx, say};
use super::data_args::DataArgs;
use super::train::TaskKind;
use anyhow::{Context, Result};
use clap::Args;
use nnmpi::cluster::Comm;
use nnmpi::data::{
    CsvSamples, LabelKind, Labels, NPY_FEATURES, NPY_LABELS, Targets, rows_do_not_fit,
};
use nnmpi::io::npy::{write_features, write_labels};
use nnmpi::io::{Checkpoint, load, safetensors, save};
use nnmpi::model::Format;
use std::path::PathBuf;

/// Flags of `nnmpi export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The nnmpi checkpoint to export.
    #[arg(long)]
    pub model: PathBuf,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Format of the output: safetensors (tensors `layers.{i}.weight` [out, in] and
    /// `layers.{i}.bias`, activations, normaliser and classes in the metadata; a compact layer
    /// as CSR: `layers.{i}.weight.size`, `.crow_indices`, `.col_indices`, `.values`).
    #[arg(long, default_value = "safetensors", value_parser = ["safetensors"])]
    pub format: String,
}

/// Flags of `nnmpi import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The safetensors file to read (as written by `nnmpi export`, or with the same tensor
    /// names; without nnmpi metadata, hidden layers are taken as relu and the last as identity).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The nnmpi checkpoint to write.
    #[arg(long)]
    pub out: PathBuf,
    /// How to store the layers: as exported (sparse where the model was sparse), or auto
    /// (sparse below the measured crossover density), dense or sparse.
    #[arg(long)]
    pub format: Option<Format>,
}

/// Flags of `nnmpi convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// classify (labels are class names) or regress (the label is a number).
    #[arg(long, value_enum, default_value_t = TaskKind::Classify)]
    pub task: TaskKind,
    /// The directory to write features.npy ([samples, features], float32) and labels.npy
    /// ([samples]: class names as int64, float32 or text; regression targets as float32)
    /// into; `--data DIR` then reads them.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `nnmpi convert` (rank 0 does the work).
pub fn run_convert<C: Comm>(ctx: &Ctx<C>, args: &ConvertArgs) -> Result<()> {
    let labels = match args.task {
        TaskKind::Classify => LabelKind::Classes(None),
        TaskKind::Regress => LabelKind::Values,
    };
    let shape = ctx.on_root(|| {
        let shape = if args.data.is_csv()? && args.data.labels.is_none() {
            convert_csv(args, labels)
        } else {
            let data = args.data.load(labels, None)?;
            nnmpi::io::npy::write_dataset(&data, &args.out)?;
            Ok((data.len(), data.n_features(), data.classes.len()))
        };
        shape.with_context(|| format!("converting to {}", args.out.display()))
    })?;
    if let Some((samples, features, classes)) = shape {
        let classes = match classes {
            0 => String::new(),
            k => format!(", {k} classes"),
        };
        say!(
            ctx,
            "wrote {samples} samples of {features} features{classes} to {} ({NPY_FEATURES}, {NPY_LABELS})",
            args.out.display()
        );
    }
    Ok(())
}

/// Converts a CSV file one sample at a time: what stays in memory is a row and the labels
/// (4 bytes a sample), whatever the file's size. Returns the samples, features and classes
/// written.
fn convert_csv(args: &ConvertArgs, labels: LabelKind) -> Result<(usize, usize, usize)> {
    let path = &args.data.data;
    let mut file = CsvSamples::open(path, &args.data.csv_options(labels, None))?;
    let mut labels = file.labels();
    let rows = args.data.rows.clone().unwrap_or(0..usize::MAX);
    let mut read = 0;
    let written = write_features(&args.out, file.n_features(), |row| {
        while read < rows.end {
            let Some((line, label)) = file.next_sample(row)? else {
                break;
            };
            read += 1;
            if read > rows.start {
                if let (Some(labels), Some(cell)) = (&mut labels, label) {
                    labels.push(line, cell)?;
                }
                return Ok(true);
            }
        }
        // A range given must lie within the file (an END left out means the last sample).
        if read <= rows.start || (read < rows.end && rows.end != usize::MAX) {
            return Err(rows_do_not_fit(&rows, path, read));
        }
        Ok(false)
    })?;
    let (targets, classes) = labels.map_or((Targets::None, Vec::new()), Labels::finish);
    write_labels(&args.out, &targets, &classes)?;
    Ok((written, file.n_features(), classes.len()))
}

/// Runs `nnmpi export` (rank 0 does the work).
pub fn run_export<C: Comm>(ctx: &Ctx<C>, args: &ExportArgs) -> Result<()> {
    ctx.on_root(|| {
        let ckpt = load(&args.model)?;
        safetensors::export(&ckpt.model, &args.out)
            .with_context(|| format!("exporting to {}", args.out.display()))?;
        Ok(())
    })?;
    say!(
        ctx,
        "exported {} to {} ({})",
        args.model.display(),
        args.out.display(),
        args.format
    );
    Ok(())
}

/// Runs `nnmpi import` (rank 0 does the work).
pub fn run_import<C: Comm>(ctx: &Ctx<C>, args: &ImportArgs) -> Result<()> {
    let shape = ctx.on_root(|| {
        let safetensors::Imported { mut model, assumed } = safetensors::import(&args.input)?;
        if !assumed.is_empty() {
            println!(
                "{} leaves nnmpi metadata out; assumed: {}",
                args.input.display(),
                assumed.join("; ")
            );
        }
        if let Some(format) = args.format {
            model.network = model.network.with_format(format);
        }
        let shape = model.network.shape();
        let ckpt = Checkpoint {
            model,
            training: None,
        };
        save(&args.out, &ckpt).with_context(|| format!("saving {}", args.out.display()))?;
        Ok(shape)
    })?;
    if let Some(shape) = shape {
        say!(
            ctx,
            "imported {} ({shape}) to {}",
            args.input.display(),
            args.out.display()
        );
    }
    Ok(())
}
