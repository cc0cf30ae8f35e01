//! Flags shared by every command that reads a data set.

use anyhow::{Context, Result};
use clap::Args;
use nnmpi::data::{
    CsvOptions, Dataset, HeaderMode, LabelColumn, LabelKind, looks_like_idx, looks_like_npy,
    parse_row_range,
};
use nnmpi::model::{Model, Task};
use std::ops::Range;
use std::path::PathBuf;

/// Where samples come from. `--data` is required wherever these flags are (the group form lets
/// `nnmpi prune` take them as a whole or not at all).
#[derive(Args, Debug, Clone)]
#[group(requires = "data")]
pub struct DataArgs {
    /// Samples: a CSV file (plain or .gz; one sample per line), an IDX image file (MNIST
    /// format, plain or .gz), an NPY file [samples, features] (float32, float64 or uint8;
    /// memory-mapped: each rank reads only the samples it uses), or a directory holding
    /// features.npy and labels.npy (what `nnmpi convert` writes) or shards features-NAME.npy
    /// (taken in name order) with labels.npy or labels-NAME.npy.
    #[arg(long, value_name = "PATH", required = false)]
    pub data: PathBuf,
    /// Label file to go with IDX images (IDX) or NPY features (NPY [samples]: class names as
    /// text or numbers, or regression targets) given by --data.
    #[arg(long, value_name = "PATH")]
    pub labels: Option<PathBuf>,
    /// CSV column holding the label: last, first, a 0-based index, a header name, or none.
    #[arg(long, value_name = "COL", default_value = "last", value_parser = parse_label_col)]
    pub label_col: LabelColumn,
    /// Whether the CSV's first line is a header: auto (detect), yes or no.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_header)]
    pub header: HeaderMode,
    /// CSV field separator.
    #[arg(long, value_name = "CHAR", default_value = ",")]
    pub delimiter: char,
    /// Use only samples START..END (0-based, END exclusive; either may be left out), e.g. 0:8000.
    #[arg(long, value_name = "START:END", value_parser = parse_row_range)]
    pub rows: Option<Range<usize>>,
}

fn parse_label_col(s: &str) -> Result<LabelColumn, String> {
    s.parse()
}

fn parse_header(s: &str) -> Result<HeaderMode, String> {
    s.parse()
}

impl DataArgs {
    /// Whether `--data` is read in place by every rank (an NPY file or a directory holding
    /// one) rather than by rank 0.
    pub fn is_mapped(&self) -> bool {
        self.data.is_dir() || nnmpi::data::looks_like_npy(&self.data).unwrap_or(false)
    }

    /// Loads the data set in `model`'s schema: its feature count and its classes (or
    /// regression targets); the label column is optional. Features are left raw.
    pub fn load_for(&self, model: &Model) -> Result<Dataset> {
        let labels = match &model.task {
            Task::Classification { classes } => LabelKind::Classes(Some(classes.clone())),
            Task::Regression => LabelKind::Values,
        };
        self.load(labels, Some(model.network.inputs()))
    }

    /// Whether `--data` is a CSV file (neither a directory nor an NPY or IDX file).
    pub fn is_csv(&self) -> Result<bool> {
        let path = &self.data;
        Ok(!path.is_dir() && !looks_like_npy(path)? && !looks_like_idx(path)?)
    }

    /// How these flags read a CSV file; `expect_features` is the model's input count when
    /// one is given.
    pub fn csv_options(&self, labels: LabelKind, expect_features: Option<usize>) -> CsvOptions {
        CsvOptions {
            header: self.header,
            label: self.label_col.clone(),
            labels,
            expect_features,
            delimiter: self.delimiter,
        }
    }

    /// Loads the data set; `expect_features` is the model's input count when one is given.
    pub fn load(&self, labels: LabelKind, expect_features: Option<usize>) -> Result<Dataset> {
        let opts = self.csv_options(labels, expect_features);
        let data = nnmpi::recipe::load_dataset(&self.data, self.labels.as_deref(), &opts)?;
        match &self.rows {
            Some(r) => {
                // An END left out means the last sample; one given must exist.
                let end = if r.end == usize::MAX {
                    data.len()
                } else {
                    r.end
                };
                data.rows(r.start..end)
                    .with_context(|| format!("selecting --rows from {}", self.data.display()))
            }
            None => Ok(data),
        }
    }
}
